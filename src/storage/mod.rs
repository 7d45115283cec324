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
