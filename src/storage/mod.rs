//! Storage in the daemon: the storage service (`service.rs`, the thin driver of
//! the `plexus-storage` cores: this node's shard, puts and gets for its API
//! clients, repair, scrub, the key-value store) and its rocksdb (`store.rs`).
//! The client side (chunking, sealing, envelopes) is in `crate::cli::fs`.

pub mod reader;
pub mod service;
pub mod store;

pub use service::{
    FsError, KvRequest, STORAGE_LOCAL_ID, StorageMsg, StorageService, StorageSettings,
    StorageStatus,
};
pub use store::{ChunkStore, storage_dir};

/// This node's shard, for a metrics scrape.
pub fn metrics(s: &mut crate::metrics::Scrape, st: &StorageStatus) {
    use prometheus_client::registry::Unit;
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    s.gauge(
        "storage_chunks",
        "Chunks held intact here",
        st.chunks as i64,
    );
    s.gauge_in(
        "storage_held",
        "Bytes of the chunks held here",
        Unit::Bytes,
        int(st.bytes),
    );
    if let Some(quota) = st.quota_bytes {
        s.gauge_in(
            "storage_quota",
            "The most chunk bytes this node takes",
            Unit::Bytes,
            int(quota),
        );
    }
    s.gauge(
        "storage_lost_chunks",
        "Chunks lost here and being fetched back",
        st.lost as i64,
    );
    s.gauge(
        "storage_repairs_in_flight",
        "Repair fetches in flight",
        st.repairing.0 as i64,
    );
    s.gauge(
        "storage_repairs_queued",
        "Repair fetches waiting for a slot",
        st.repairing.1 as i64,
    );
    s.gauge(
        "storage_gc_pending_chunks",
        "Chunks no pinned file names, waiting out the grace period",
        st.gc_pending as i64,
    );
    s.gauge(
        "kv_keys",
        "Live keys in the key-value store",
        st.kv_keys as i64,
    );
    for (name, help, value) in [
        (
            "storage_repaired",
            "Chunks repaired onto this node",
            st.repaired,
        ),
        (
            "storage_handed_off",
            "Stray copies dropped here once their placement confirmed holding them",
            st.handed_off,
        ),
        (
            "storage_corrupt_found",
            "Copies found corrupt here by a read or the scrub",
            st.corrupt_found,
        ),
        (
            "storage_bad_copies",
            "Copies from other nodes that did not hash to their id",
            st.bad_copies,
        ),
        (
            "storage_refused_full",
            "Stores refused because this node was at its quota",
            st.refused_full,
        ),
        (
            "storage_write_errors",
            "Chunk writes the disk failed",
            st.write_errors,
        ),
        (
            "storage_refused",
            "Storage messages refused (undecodable, unasked answers, non-members)",
            st.refused,
        ),
        (
            "storage_collected",
            "Chunks garbage-collected",
            st.collected,
        ),
    ] {
        s.counter(name, help, value);
    }
}
