//! The storage service of a daemon: the production driver of the
//! `plexus-storage` cores on one node.
//!
//! One actor per node, at the well-known local id [`STORAGE_LOCAL_ID`], under
//! the node's supervision of system services (a crash ends the actor; its state
//! is on disk and in its peers). It only carries bytes in and out:
//!
//! * **Its shard.** Chunks another node sends ([`StorageWire::Store`]) are
//!   hashed against their id, checked against the quota, written synced, and
//!   only then acknowledged. Chunks it is asked for are read, hashed again, and
//!   sent only if intact; a copy that does not hash to its id is removed, counted
//!   and handed to the repair core, which fetches it back.
//! * **Puts and gets for this node's API clients** (the node is their gateway):
//!   a put follows [`PutPlan`] over the chunk's placement order and answers when
//!   the quorum holds it durably; a get reads the holders in placement order until
//!   a copy hashes to its id.
//! * **Repair**: membership, the chunks held, and peers' offers go into
//!   [`Repair`]; its offers and fetches go out, and its hand-off of stray copies
//!   (confirmations asked and answered, and copies dropped once the chunk's
//!   placement has confirmed holding it).
//! * **Scrub**: a few chunks per tick are read back and hashed, so corruption is
//!   found without waiting for a read ([`SCRUB_BYTES_PER_TICK`]).
//! * **The key-value store**: API writes are signed into [`Kv`], persisted, and
//!   synced with peers every [`KV_SYNC_EVERY`]; changes go to watchers.
//!
//! Bounds: the mailbox ([`MAILBOX`], each message at most one chunk, so at most
//! `MAILBOX × 4 MiB` queued); requests in flight ([`REQUESTS_MAX`], beyond which
//! API calls get [`FsError::Busy`]); each request's time ([`REQUEST_TIMEOUT`] for
//! a store, [`FETCH_TIMEOUT`] per holder a get tries, [`QUERY_TIMEOUT`] for a stat);
//! watchers ([`WATCHERS_MAX`]; a watcher that falls [`WATCH_QUEUE`] changes behind
//! is disconnected and must list again); chunk writes in flight ([`WRITES_MAX`],
//! beyond which a store is refused as busy and the put moves on to the next node).
//!
//! Blocking: a synced chunk write runs on tokio's blocking pool, at most
//! [`WRITERS`] at once, so concurrent writes share rocksdb's group commit (one
//! fsync for several chunks) and the actor goes on with other messages; the
//! write's end comes back as [`StorageMsg::Written`]. A chunk is hashed on the
//! actor before its write starts, and counts as held only once it is synced.
//! Reads for a get or a peer's fetch run there too (at most [`READS_MAX`] at
//! once, beyond which they run on the actor) and come back as
//! [`StorageMsg::Read`], where they are hashed before use; the scrub's few reads
//! a tick, and the meta reads of a write, run on the actor's task.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_actors::rng::DetRng;
use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, Context, Message, ProtocolBytes, SpawnOptions, Wire,
};
use plexus_actors::{ActorId, NodeId, Time};
use plexus_mesh::driver::Mesh;
use plexus_mesh::membership::MemberState;
use plexus_storage::ChunkId;
use plexus_storage::kv::{Change, Kv, KvConfig, KvError};
use plexus_storage::manifest::STORED_CHUNK_BYTES_MAX;
use plexus_storage::placement::{self, Candidate};
use plexus_storage::put::{Answer, PutOutcome, PutPlan};
use plexus_storage::repair::{Action, Read, Repair, RepairConfig};
use plexus_storage::wire::{Bytes, QUERY_IDS_MAX, StorageWire, StoreOutcome};
use plexus_vocab::identity::NodeKey;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::store::ChunkStore;

/// The storage service's well-known local actor id.
pub const STORAGE_LOCAL_ID: u64 = 5;
/// The mailbox capacity.
pub const MAILBOX: usize = 128;
/// How often time is handed to the cores.
pub const TICK: Duration = Duration::from_millis(250);
/// How often the key-value store syncs.
pub const KV_SYNC_EVERY: Duration = Duration::from_secs(1);
/// How long a store may take (a synced write of a chunk on a busy disk).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a get waits for one holder before asking the next.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stat waits for each node's answer (one that died and is not yet
/// known dead must not hold it up long).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Chunks being written (or waiting for a writer) at most.
pub const WRITES_MAX: usize = 64;
/// Chunk writes handed to the store's writer at once (each waits on a
/// blocking-pool thread until the flush that holds it; the writes waiting when
/// a flush ends form the next one, so this bounds a group too).
pub const WRITERS: usize = 32;
/// Chunk reads off the actor's task at once.
pub const READS_MAX: usize = 16;
/// Requests in flight for API clients.
pub const REQUESTS_MAX: usize = 256;
/// Bytes read back and hashed per tick.
pub const SCRUB_BYTES_PER_TICK: u64 = 4 << 20;
/// Watchers at once.
pub const WATCHERS_MAX: usize = 64;
/// Changes queued per watcher.
pub const WATCH_QUEUE: usize = 1_024;
/// The wire type name of storage messages.
pub const MESSAGE_TYPE: &str = "plexus.storage";

/// Why a storage request failed, by whose fault.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The client's input is wrong (a chunk over the size bound, a bad key).
    #[error("{0}")]
    Invalid(String),
    /// No live node has the chunk.
    #[error("no live node holds {0}")]
    NotFound(ChunkId),
    /// Too few nodes could take or answer it.
    #[error("{0}")]
    Unavailable(String),
    /// This node's disk failed.
    #[error("this node's storage failed: {0}")]
    Disk(String),
    /// Too many requests in flight: retry.
    #[error("the storage service is busy; retry")]
    Busy,
}

/// A put's answer: the nodes that hold the chunk.
pub type PutReply = oneshot::Sender<Result<(ChunkId, Vec<NodeId>), FsError>>;

/// Requests to the key-value store.
pub enum KvRequest {
    /// Set a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), KvError>>,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), KvError>>,
    },
    /// Read a key.
    Get {
        /// The key.
        key: String,
        /// The value.
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// Keys and values under a prefix.
    List {
        /// The prefix.
        prefix: String,
        /// At most this many.
        limit: usize,
        /// Keys and values in key order.
        reply: oneshot::Sender<Vec<(String, Vec<u8>)>>,
    },
    /// Every later change under a prefix, until the receiver is dropped.
    Watch {
        /// The prefix.
        prefix: String,
        /// Where changes go.
        tx: mpsc::Sender<Change>,
        /// Registered, or too many watchers.
        reply: oneshot::Sender<Result<(), FsError>>,
    },
}

/// Messages to the service.
pub enum StorageMsg {
    /// Storage protocol bytes from another node's service.
    Wire {
        /// The sender, as the mesh authenticated it.
        from: NodeId,
        /// The encoded [`StorageWire`].
        bytes: Bytes,
    },
    /// Time passes.
    Tick,
    /// Store a chunk for a client, `replicas` copies, answered at `quorum`.
    Put {
        /// The chunk's bytes.
        bytes: Bytes,
        /// Copies wanted.
        replicas: u8,
        /// Copies that acknowledge the put.
        quorum: u8,
        /// Where the answer goes.
        reply: PutReply,
    },
    /// Read a chunk for a client, verified.
    Get {
        /// The chunk.
        chunk: ChunkId,
        /// Its bytes, or why not.
        reply: oneshot::Sender<Result<Bytes, FsError>>,
    },
    /// Which live nodes hold each of these chunks.
    Locate {
        /// The chunks.
        chunks: Vec<ChunkId>,
        /// Holders per chunk.
        reply: oneshot::Sender<Result<BTreeMap<ChunkId, Vec<NodeId>>, FsError>>,
    },
    /// The key-value store.
    Kv(KvRequest),
    /// What `/v1/fs/status` shows.
    Status(oneshot::Sender<StorageStatus>),
    /// A garbage collection mark: every pinned file's manifest and chunks
    /// (complete, or the sweep is not made).
    Sweep(plexus_storage::gc::Mark),
    /// A chunk read this service started has ended (sent by its own reader
    /// tasks).
    Read(ReadDone),
    /// A chunk write this service started has ended (sent by its own writer
    /// tasks; peers' bytes only ever arrive as [`StorageMsg::Wire`]).
    Written {
        /// The chunk.
        chunk: ChunkId,
        /// Synced, or why not.
        outcome: StoreOutcome,
    },
}

impl ProtocolBytes for StorageMsg {
    const TYPE_NAME: &'static str = MESSAGE_TYPE;
    const BYTES_MAX: usize = plexus_storage::wire::WIRE_BYTES_MAX;

    fn protocol_bytes(&self) -> Option<Bytes> {
        match self {
            StorageMsg::Wire { bytes, .. } => Some(bytes.clone()),
            _ => None,
        }
    }

    fn from_peer(from: NodeId, bytes: Bytes) -> Self {
        StorageMsg::Wire { from, bytes }
    }
}

impl Message for StorageMsg {
    type Reply = ();
    const WIRE: Option<Wire<Self>> = Some(Wire::protocol_bytes());
}

/// Settings of the service.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// Chunk bytes this node holds at most (`None`: no quota).
    pub quota_bytes: Option<u64>,
    /// The tag replicas spread over.
    pub spread: Option<String>,
    /// The repair's tuning.
    pub repair: RepairConfig,
    /// The key-value store's tuning.
    pub kv: KvConfig,
    /// How often unpinned files are looked for.
    pub gc_every: Duration,
    /// How long a chunk no pinned file names is kept.
    pub gc_grace: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            quota_bytes: None,
            spread: None,
            repair: RepairConfig::default(),
            kv: KvConfig::default(),
            gc_every: Duration::from_secs(60),
            gc_grace: Duration::from_secs(3600),
        }
    }
}

/// Manifests remembered by the collector (a file's chunk list never changes).
const GC_MANIFESTS_MAX: usize = 10_000;
/// A sweep needs the key-value replica to have heard from a peer this recently
/// (a replica cut off may not know of newer pins).
const GC_KV_FRESH: Duration = Duration::from_secs(30);

/// What `/v1/fs/status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct StorageStatus {
    /// This node.
    pub node: NodeId,
    /// Chunks held intact.
    pub chunks: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The quota.
    pub quota_bytes: Option<u64>,
    /// Chunks lost here and being fetched back.
    pub lost: usize,
    /// Repair fetches in flight and queued.
    pub repairing: (usize, usize),
    /// Chunks repaired onto this node.
    pub repaired: u64,
    /// Stray copies dropped here once their placement confirmed holding them.
    pub handed_off: u64,
    /// Copies found corrupt here (by a read or the scrub).
    pub corrupt_found: u64,
    /// Copies from other nodes that did not hash to their id.
    pub bad_copies: u64,
    /// Stores refused because this node was full.
    pub refused_full: u64,
    /// Chunk writes the disk failed.
    pub write_errors: u64,
    /// Messages refused (undecodable, unasked answers, non-members).
    pub refused: u64,
    /// Live keys in the key-value store.
    pub kv_keys: usize,
    /// The key-value store's digest (equal on converged replicas).
    pub kv_root: String,
    /// Chunks no pinned file names, waiting out the grace period.
    pub gc_pending: usize,
    /// Chunks collected.
    pub collected: u64,
}

/// The service.
pub struct StorageService {
    mesh: Mesh,
    key: NodeKey,
    settings: StorageSettings,
    store: ChunkStore,
}

struct PutOp {
    chunk: ChunkId,
    replicas: u8,
    bytes: Bytes,
    plan: PutPlan,
    reply: Option<PutReply>,
    deadline: Instant,
}

struct GetOp {
    chunk: ChunkId,
    sources: Vec<NodeId>,
    reply: oneshot::Sender<Result<Bytes, FsError>>,
}

struct LocateOp {
    chunks: Vec<ChunkId>,
    holders: BTreeMap<ChunkId, Vec<NodeId>>,
    waiting: BTreeSet<u64>,
    reply: oneshot::Sender<Result<BTreeMap<ChunkId, Vec<NodeId>>, FsError>>,
    deadline: Instant,
}

/// A chunk read, as it came off the disk (not yet checked).
pub struct ReadDone {
    chunk: ChunkId,
    bytes: Result<Option<Vec<u8>>, ()>,
    after: AfterRead,
}

/// Who waits for a chunk read.
enum AfterRead {
    /// A client's get through this node.
    Get(oneshot::Sender<Result<Bytes, FsError>>),
    /// A peer's fetch: answer it.
    Fetch { to: NodeId, req: u64 },
}

/// Who waits for a chunk write.
enum AfterWrite {
    /// A peer's store request: answer it.
    Ack { to: NodeId, req: u64 },
    /// A put this node is the gateway of.
    Put { put: u64 },
    /// A repair fetch from `from`.
    Repair { from: NodeId },
}

/// A chunk write under way.
struct Writing {
    replicas: u8,
    len: u64,
    after: Vec<AfterWrite>,
}

/// Outstanding requests to other nodes, by (peer, req).
enum Pending {
    Store { put: u64 },
    Get { get: u64 },
    Repair { chunk: ChunkId, replicas: u8 },
    Query { locate: u64, chunks: Vec<ChunkId> },
    Confirm { chunks: Vec<ChunkId> },
}

/// Its state.
pub struct StorageState {
    repair: Repair,
    gc: plexus_storage::gc::Gc,
    collected: u64,
    kv_heard: Option<Instant>,
    kv: Kv,
    rng: DetRng,
    next_req: u64,
    puts: BTreeMap<u64, PutOp>,
    gets: BTreeMap<u64, GetOp>,
    locates: BTreeMap<u64, LocateOp>,
    pending: BTreeMap<(NodeId, u64), (Pending, Instant)>,
    watchers: Vec<(String, mpsc::Sender<Change>)>,
    next_kv_sync: Instant,
    synced: bool,
    repaired: u64,
    corrupt_found: u64,
    bad_copies: u64,
    refused_full: u64,
    write_errors: u64,
    refused: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Chunk writes under way, and their bytes (counted against the quota).
    writing: BTreeMap<ChunkId, Writing>,
    writing_bytes: u64,
    writers: Arc<tokio::sync::Semaphore>,
    /// Whether [`ChunkStore::maintain`] is running (at most one at a time).
    maintaining: Arc<std::sync::atomic::AtomicBool>,
    /// Chunk reads off the actor's task.
    reading: usize,
    me: ActorRef<StorageMsg>,
}

impl Drop for StorageState {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A chunk's stored bytes (`None` if missing); `Err` if the disk failed
/// (logged).
fn read_chunk(store: &ChunkStore, chunk: &ChunkId) -> Result<Option<Vec<u8>>, ()> {
    store.chunk(chunk).map_err(|e| {
        tracing::error!(error = %e, "cannot read a chunk");
    })
}

fn wall_now() -> Time {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    Time::from_micros(us)
}

impl StorageService {
    /// Starts the service.
    pub async fn start(
        system: &ActorSystem,
        mesh: Mesh,
        key: NodeKey,
        settings: StorageSettings,
        store: ChunkStore,
    ) -> Result<ActorRef<StorageMsg>, String> {
        let me = system.node_id();
        system
            .spawn_with(
                StorageService {
                    mesh,
                    key,
                    settings,
                    store,
                },
                (),
                SpawnOptions {
                    id: Some(ActorId::new(me, STORAGE_LOCAL_ID)),
                    kind: Some("plexus.storage".into()),
                    capacity: Some(MAILBOX),
                    ..SpawnOptions::default()
                },
            )
            .await
            .map_err(|e| e.to_string())
    }

    fn send(&self, system: &ActorSystem, st: &mut StorageState, to: NodeId, wire: &StorageWire) {
        let Ok(bytes) = wire.encode() else {
            return;
        };
        self.send_encoded(system, st, to, bytes.into());
    }

    /// Sends a storage message already encoded.
    fn send_encoded(&self, system: &ActorSystem, st: &mut StorageState, to: NodeId, bytes: Bytes) {
        let peer = system.resolve::<StorageMsg>(ActorId::new(to, STORAGE_LOCAL_ID));
        if peer
            .try_tell(StorageMsg::Wire {
                from: system.node_id(),
                bytes,
            })
            .is_err()
        {
            // A full window or a dead peer: the request times out and the
            // caller's plan moves on.
            st.refused += 1;
        }
    }

    fn admitted(&self) -> BTreeMap<NodeId, plexus_vocab::resources::Tags> {
        self.mesh
            .allowlist()
            .allowlist
            .nodes
            .into_iter()
            .map(|(n, e)| (n, e.tags))
            .collect()
    }

    /// Live admitted nodes (this one included) with their zones.
    fn live(&self, me: NodeId) -> Vec<Candidate> {
        let admitted = self.admitted();
        let zone = |n: &NodeId| {
            let spread = self.settings.spread.as_ref()?;
            admitted.get(n).and_then(|t| t.get(spread)).cloned()
        };
        let mut out: Vec<Candidate> = self
            .mesh
            .members()
            .into_iter()
            .filter(|m| m.state == MemberState::Alive && admitted.contains_key(&m.id))
            .map(|m| Candidate {
                node: m.id,
                zone: zone(&m.id),
            })
            .collect();
        if admitted.contains_key(&me) {
            out.push(Candidate {
                node: me,
                zone: zone(&me),
            });
        }
        out
    }

    fn next_req(st: &mut StorageState) -> u64 {
        st.next_req = st.next_req.wrapping_add(1);
        st.next_req
    }

    /// Stores a chunk here: hashed, within the quota, synced. The outcome now,
    /// or `None` if a write started (or one of the same chunk was under way):
    /// `after` is then told when it ends ([`Self::written`]).
    fn store(
        &self,
        st: &mut StorageState,
        chunk: ChunkId,
        replicas: u8,
        bytes: Bytes,
        after: AfterWrite,
    ) -> Option<StoreOutcome> {
        if bytes.len() > STORED_CHUNK_BYTES_MAX {
            return Some(StoreOutcome::Invalid(format!(
                "{} bytes, over the largest chunk ({STORED_CHUNK_BYTES_MAX})",
                bytes.len()
            )));
        }
        if !chunk.matches(&bytes) {
            return Some(StoreOutcome::Invalid(
                "the bytes do not hash to the chunk's id".into(),
            ));
        }
        if st.repair.holds(&chunk) {
            return Some(StoreOutcome::Stored);
        }
        if let Some(w) = st.writing.get_mut(&chunk) {
            // The same bytes (they hash to the same id) are being written.
            w.after.push(after);
            return None;
        }
        if st.writing.len() >= WRITES_MAX {
            return Some(StoreOutcome::Failed(format!(
                "busy: {WRITES_MAX} chunk writes in flight"
            )));
        }
        let len = bytes.len() as u64;
        if let Some(quota) = self.settings.quota_bytes {
            let used = self.store.used_bytes().saturating_add(st.writing_bytes);
            if used.saturating_add(len) > quota {
                st.refused_full += 1;
                return Some(StoreOutcome::Full {
                    free_bytes: quota.saturating_sub(used),
                });
            }
        }
        st.writing.insert(
            chunk,
            Writing {
                replicas,
                len,
                after: vec![after],
            },
        );
        st.writing_bytes = st.writing_bytes.saturating_add(len);
        let (store, writers, me) = (self.store.clone(), st.writers.clone(), st.me.clone());
        tokio::spawn(async move {
            let outcome = match writers.acquire_owned().await {
                Ok(permit) => tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    match store.put_chunk(&chunk, replicas, bytes) {
                        Ok(()) => StoreOutcome::Stored,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot store a chunk");
                            StoreOutcome::Failed(e.to_string())
                        }
                    }
                })
                .await
                .unwrap_or_else(|e| StoreOutcome::Failed(format!("the writer failed: {e}"))),
                Err(_) => StoreOutcome::Failed("the service is stopping".into()),
            };
            // Fails only if the service has stopped; its successor reads what
            // is on disk when it starts.
            let _ = me.tell(StorageMsg::Written { chunk, outcome }).await;
        });
        None
    }

    /// A chunk write ended: the chunk is held if it was synced, and whoever
    /// waited is told.
    fn written(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        chunk: ChunkId,
        outcome: StoreOutcome,
    ) {
        let Some(w) = st.writing.remove(&chunk) else {
            return;
        };
        st.writing_bytes = st.writing_bytes.saturating_sub(w.len);
        match outcome {
            StoreOutcome::Stored => st.repair.stored(chunk, w.replicas),
            StoreOutcome::Failed(_) => st.write_errors += 1,
            _ => {}
        }
        for after in w.after {
            self.after_write(system, st, chunk, after, outcome.clone());
        }
    }

    fn after_write(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        chunk: ChunkId,
        after: AfterWrite,
        outcome: StoreOutcome,
    ) {
        match after {
            AfterWrite::Ack { to, req } => self.send(
                system,
                st,
                to,
                &StorageWire::Stored {
                    req,
                    chunk,
                    outcome,
                },
            ),
            AfterWrite::Put { put } => {
                if let Some(op) = st.puts.get_mut(&put)
                    && op.chunk == chunk
                {
                    op.plan.handle(system.node_id(), Answer::from(outcome));
                }
                self.advance_put(system, st, put);
            }
            AfterWrite::Repair { from } => {
                if let StoreOutcome::Stored = outcome {
                    st.repaired += 1;
                    tracing::info!(chunk = %chunk, from = %from, "a copy repaired");
                } else {
                    st.repair.fetch_failed(&chunk);
                }
            }
        }
    }

    /// This node's intact copy of `chunk`, if it has one; a corrupt copy is
    /// removed and handed to the repair.
    fn read_here(&self, st: &mut StorageState, chunk: &ChunkId) -> Option<Vec<u8>> {
        if !st.repair.holds(chunk) {
            return None;
        }
        let bytes = read_chunk(&self.store, chunk);
        self.checked(st, chunk, bytes)
    }

    /// Starts reading `chunk` off the actor's task if this node holds it (the
    /// answer comes back as [`StorageMsg::Read`]); otherwise, or with
    /// [`READS_MAX`] reads out, reads it now. `Err(after)` if it is not held.
    fn read_async(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        chunk: ChunkId,
        after: AfterRead,
    ) -> Result<(), AfterRead> {
        if !st.repair.holds(&chunk) {
            return Err(after);
        }
        if st.reading >= READS_MAX {
            let bytes = read_chunk(&self.store, &chunk);
            self.read_done(
                system,
                st,
                ReadDone {
                    chunk,
                    bytes,
                    after,
                },
            );
            return Ok(());
        }
        st.reading += 1;
        let (store, me) = (self.store.clone(), st.me.clone());
        tokio::spawn(async move {
            let bytes = tokio::task::spawn_blocking(move || read_chunk(&store, &chunk))
                .await
                .unwrap_or(Err(()));
            let _ = me
                .tell(StorageMsg::Read(ReadDone {
                    chunk,
                    bytes,
                    after,
                }))
                .await;
        });
        Ok(())
    }

    /// A read came off the disk: checked, then handed on; a get whose copy
    /// here is bad goes on to the other holders.
    fn read_done(&self, system: &ActorSystem, st: &mut StorageState, done: ReadDone) {
        let ReadDone {
            chunk,
            bytes,
            after,
        } = done;
        let good = self.checked(st, &chunk, bytes);
        match (after, good) {
            (AfterRead::Get(reply), Some(bytes)) => {
                let _ = reply.send(Ok(Bytes::from(bytes)));
            }
            (AfterRead::Get(reply), None) => self.get_remote(system, st, chunk, reply),
            (AfterRead::Fetch { to, req }, bytes) => {
                let bytes = bytes.map(Bytes::from);
                self.send(system, st, to, &StorageWire::Chunk { req, chunk, bytes });
            }
        }
    }

    /// `bytes` read for `chunk`, if intact; a corrupt or missing copy is
    /// removed and handed to the repair (a read the disk failed is neither).
    fn checked(
        &self,
        st: &mut StorageState,
        chunk: &ChunkId,
        bytes: Result<Option<Vec<u8>>, ()>,
    ) -> Option<Vec<u8>> {
        let bytes = bytes.ok()?;
        match st.repair.check_read(chunk, bytes.as_deref()) {
            Read::Intact => bytes,
            Read::NotHeld => None,
            Read::Lost => {
                st.corrupt_found += 1;
                tracing::warn!(chunk = %chunk, "a corrupt or missing copy; fetching it back");
                let _ = self.store.remove(chunk);
                None
            }
        }
    }

    fn on_wire(&self, system: &ActorSystem, st: &mut StorageState, from: NodeId, bytes: &Bytes) {
        if !self.admitted().contains_key(&from) {
            st.refused += 1;
            return;
        }
        let wire = match StorageWire::decode(bytes) {
            Ok(w) => w,
            Err(e) => {
                st.refused += 1;
                tracing::debug!(%from, error = %e, "an undecodable storage message");
                return;
            }
        };
        let now = wall_now();
        match wire {
            StorageWire::Store {
                req,
                chunk,
                replicas,
                bytes,
            } => {
                let after = AfterWrite::Ack { to: from, req };
                if let Some(outcome) = self.store(st, chunk, replicas.max(1), bytes, after) {
                    self.after_write(
                        system,
                        st,
                        chunk,
                        AfterWrite::Ack { to: from, req },
                        outcome,
                    );
                }
            }
            StorageWire::Fetch { req, chunk } => {
                let after = AfterRead::Fetch { to: from, req };
                if let Err(AfterRead::Fetch { to, req }) = self.read_async(system, st, chunk, after)
                {
                    self.send(
                        system,
                        st,
                        to,
                        &StorageWire::Chunk {
                            req,
                            chunk,
                            bytes: None,
                        },
                    );
                }
            }
            StorageWire::Offer { chunks } => st.repair.handle_offer(now, from, &chunks),
            StorageWire::Query { req, chunks } => {
                let held = chunks.iter().map(|c| st.repair.holds(c)).collect();
                self.send(system, st, from, &StorageWire::Holding { req, held });
            }
            StorageWire::Confirm { req, chunks } => {
                let held = st.repair.answer_confirm(now, &chunks);
                self.send(system, st, from, &StorageWire::Holding { req, held });
            }
            StorageWire::Stored {
                req,
                chunk,
                outcome,
            } => {
                let Some((Pending::Store { put }, _)) = st.pending.remove(&(from, req)) else {
                    st.refused += 1;
                    return;
                };
                if let StoreOutcome::Full { .. } = outcome {
                    st.repair.full(now, from);
                }
                if let Some(op) = st.puts.get_mut(&put)
                    && op.chunk == chunk
                {
                    op.plan.handle(from, Answer::from(outcome));
                }
                self.advance_put(system, st, put);
            }
            StorageWire::Chunk { req, chunk, bytes } => {
                let Some((pending, _)) = st.pending.remove(&(from, req)) else {
                    st.refused += 1;
                    return;
                };
                let sent = bytes.is_some();
                let good = bytes.filter(|b| chunk.matches(b));
                if sent && good.is_none() {
                    // The sender hashes before sending: a faulty or lying node.
                    st.bad_copies += 1;
                    tracing::warn!(%from, chunk = %chunk, "a copy that does not hash to its id");
                }
                match pending {
                    Pending::Get { get } => self.advance_get(system, st, get, good),
                    Pending::Repair {
                        chunk: want,
                        replicas,
                    } if want == chunk => match good {
                        Some(bytes) => {
                            let after = AfterWrite::Repair { from };
                            if let Some(outcome) = self.store(st, chunk, replicas, bytes, after) {
                                self.after_write(
                                    system,
                                    st,
                                    chunk,
                                    AfterWrite::Repair { from },
                                    outcome,
                                );
                            }
                        }
                        None => st.repair.fetch_failed(&chunk),
                    },
                    _ => st.refused += 1,
                }
            }
            StorageWire::Holding { req, held } => match st.pending.remove(&(from, req)) {
                Some((Pending::Query { locate, chunks }, _)) => {
                    if let Some(op) = st.locates.get_mut(&locate) {
                        for (c, h) in chunks.iter().zip(held) {
                            if h {
                                op.holders.entry(*c).or_default().push(from);
                            }
                        }
                        op.waiting.remove(&req);
                    }
                    self.finish_locate(st, locate, false);
                }
                Some((Pending::Confirm { chunks }, _)) => {
                    let answers: Vec<(ChunkId, bool)> = chunks.into_iter().zip(held).collect();
                    st.repair.handle_holding(from, &answers);
                }
                _ => st.refused += 1,
            },
            StorageWire::Kv(msg) => {
                if st.kv.handle(now, from, msg).is_err() {
                    st.refused += 1;
                } else {
                    st.kv_heard = Some(Instant::now());
                }
                st.synced = true;
            }
            _ => st.refused += 1,
        }
    }

    fn start_put(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        bytes: Bytes,
        replicas: u8,
        quorum: u8,
        reply: PutReply,
    ) {
        if bytes.len() > STORED_CHUNK_BYTES_MAX {
            let _ = reply.send(Err(FsError::Invalid(format!(
                "a chunk of {} bytes is over the bound of {STORED_CHUNK_BYTES_MAX}",
                bytes.len()
            ))));
            return;
        }
        if st.puts.len() >= REQUESTS_MAX {
            let _ = reply.send(Err(FsError::Busy));
            return;
        }
        let chunk = ChunkId::of(&bytes);
        let now = wall_now();
        st.repair.set_live(self.live(system.node_id()));
        let order = placement::order(&chunk, &st.repair.candidates(now));
        let id = Self::next_req(st);
        st.puts.insert(
            id,
            PutOp {
                chunk,
                replicas,
                bytes,
                plan: PutPlan::new(order, replicas, quorum),
                reply: Some(reply),
                deadline: Instant::now() + REQUEST_TIMEOUT,
            },
        );
        self.advance_put(system, st, id);
    }

    /// Sends the put to the nodes its plan names now, and answers once it has an
    /// outcome (the op stays until every node asked has answered or timed out,
    /// so late acks are not counted as strays).
    fn advance_put(&self, system: &ActorSystem, st: &mut StorageState, id: u64) {
        let me = system.node_id();
        for _ in 0..64 {
            let Some(op) = st.puts.get_mut(&id) else {
                return;
            };
            let targets = op.plan.poll_targets();
            if targets.is_empty() {
                break;
            }
            let (chunk, replicas, bytes) = (op.chunk, op.replicas, op.bytes.clone());
            // One request number and one encoding for every node asked now: the
            // chunk is copied into a message once, however many copies go out.
            let req = Self::next_req(st);
            let mut encoded: Option<Bytes> = None;
            for t in targets {
                if t == me {
                    let after = AfterWrite::Put { put: id };
                    if let Some(outcome) = self.store(st, chunk, replicas, bytes.clone(), after)
                        && let Some(op) = st.puts.get_mut(&id)
                    {
                        op.plan.handle(me, Answer::from(outcome));
                    }
                } else {
                    st.pending.insert(
                        (t, req),
                        (Pending::Store { put: id }, Instant::now() + REQUEST_TIMEOUT),
                    );
                    if encoded.is_none() {
                        let store = StorageWire::Store {
                            req,
                            chunk,
                            replicas,
                            bytes: bytes.clone(),
                        };
                        encoded = store.encode().ok().map(Bytes::from);
                    }
                    if let Some(message) = &encoded {
                        self.send_encoded(system, st, t, message.clone());
                    }
                }
            }
        }
        let Some(op) = st.puts.get_mut(&id) else {
            return;
        };
        if let Some(outcome) = op.plan.outcome()
            && let Some(reply) = op.reply.take()
        {
            let answer = match outcome {
                PutOutcome::Stored(nodes) => Ok((op.chunk, nodes)),
                PutOutcome::Failed { stored, refusals } => Err(FsError::Unavailable(format!(
                    "only {} of the {} copies wanted could be stored; refusals: {}",
                    stored.len(),
                    op.replicas,
                    if refusals.is_empty() {
                        "none (too few live nodes)".to_string()
                    } else {
                        refusals
                            .iter()
                            .map(|(n, why)| format!("{}: {why}", n.short()))
                            .collect::<Vec<_>>()
                            .join("; ")
                    }
                ))),
            };
            let _ = reply.send(answer);
        }
        if op.reply.is_none() && op.plan.waiting().is_empty() {
            st.puts.remove(&id);
        }
    }

    fn start_get(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        chunk: ChunkId,
        reply: oneshot::Sender<Result<Bytes, FsError>>,
    ) {
        match self.read_async(system, st, chunk, AfterRead::Get(reply)) {
            Ok(()) => {}
            Err(AfterRead::Get(reply)) => self.get_remote(system, st, chunk, reply),
            Err(AfterRead::Fetch { .. }) => {}
        }
    }

    /// A get from the other holders, in placement order.
    fn get_remote(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        chunk: ChunkId,
        reply: oneshot::Sender<Result<Bytes, FsError>>,
    ) {
        if st.gets.len() >= REQUESTS_MAX {
            let _ = reply.send(Err(FsError::Busy));
            return;
        }
        let me = system.node_id();
        let now = wall_now();
        st.repair.set_live(self.live(me));
        let mut sources: Vec<NodeId> = placement::order(&chunk, &st.repair.candidates(now))
            .into_iter()
            .filter(|n| *n != me)
            .collect();
        sources.reverse(); // popped from the back: best first
        let id = Self::next_req(st);
        st.gets.insert(
            id,
            GetOp {
                chunk,
                sources,
                reply,
            },
        );
        self.advance_get(system, st, id, None);
    }

    /// A get's next step: done with `got`, or ask the next source.
    fn advance_get(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        id: u64,
        got: Option<Bytes>,
    ) {
        let Some(op) = st.gets.remove(&id) else {
            return;
        };
        if let Some(bytes) = got {
            let _ = op.reply.send(Ok(bytes));
            return;
        }
        let mut op = op;
        let Some(next) = op.sources.pop() else {
            let _ = op.reply.send(Err(FsError::NotFound(op.chunk)));
            return;
        };
        let req = Self::next_req(st);
        let chunk = op.chunk;
        st.pending.insert(
            (next, req),
            (Pending::Get { get: id }, Instant::now() + FETCH_TIMEOUT),
        );
        st.gets.insert(id, op);
        self.send(system, st, next, &StorageWire::Fetch { req, chunk });
    }

    fn start_locate(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        chunks: Vec<ChunkId>,
        reply: oneshot::Sender<Result<BTreeMap<ChunkId, Vec<NodeId>>, FsError>>,
    ) {
        if st.locates.len() >= REQUESTS_MAX {
            let _ = reply.send(Err(FsError::Busy));
            return;
        }
        let me = system.node_id();
        let mut holders: BTreeMap<ChunkId, Vec<NodeId>> = BTreeMap::new();
        for c in &chunks {
            holders.insert(*c, if st.repair.holds(c) { vec![me] } else { vec![] });
        }
        let id = Self::next_req(st);
        st.locates.insert(
            id,
            LocateOp {
                chunks: chunks.clone(),
                holders,
                waiting: BTreeSet::new(),
                reply,
                deadline: Instant::now() + QUERY_TIMEOUT,
            },
        );
        let peers: Vec<NodeId> = self
            .live(me)
            .into_iter()
            .map(|c| c.node)
            .filter(|n| *n != me)
            .collect();
        for peer in peers {
            for part in chunks.chunks(QUERY_IDS_MAX) {
                let req = Self::next_req(st);
                st.pending.insert(
                    (peer, req),
                    (
                        Pending::Query {
                            locate: id,
                            chunks: part.to_vec(),
                        },
                        Instant::now() + QUERY_TIMEOUT,
                    ),
                );
                if let Some(op) = st.locates.get_mut(&id) {
                    op.waiting.insert(req);
                }
                self.send(
                    system,
                    st,
                    peer,
                    &StorageWire::Query {
                        req,
                        chunks: part.to_vec(),
                    },
                );
            }
        }
        self.finish_locate(st, id, false);
    }

    fn finish_locate(&self, st: &mut StorageState, id: u64, timed_out: bool) {
        let done = st
            .locates
            .get(&id)
            .is_some_and(|op| op.waiting.is_empty() || timed_out);
        if done && let Some(op) = st.locates.remove(&id) {
            let mut holders = op.holders;
            for c in &op.chunks {
                holders.entry(*c).or_default().sort();
            }
            let _ = op.reply.send(Ok(holders));
        }
    }

    fn on_kv(&self, st: &mut StorageState, req: KvRequest) {
        let now = wall_now();
        match req {
            KvRequest::Put { key, value, reply } => {
                let _ = reply.send(st.kv.put(now, &key, value).map(|_| ()));
            }
            KvRequest::Delete { key, reply } => {
                let _ = reply.send(st.kv.delete(now, &key).map(|_| ()));
            }
            KvRequest::Get { key, reply } => {
                let _ = reply.send(st.kv.get(&key).map(<[u8]>::to_vec));
            }
            KvRequest::List {
                prefix,
                limit,
                reply,
            } => {
                let _ = reply.send(st.kv.list(&prefix, limit));
            }
            KvRequest::Watch { prefix, tx, reply } => {
                st.watchers.retain(|(_, w)| !w.is_closed());
                if st.watchers.len() >= WATCHERS_MAX {
                    let _ = reply.send(Err(FsError::Busy));
                } else {
                    st.watchers.push((prefix, tx));
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }

    /// Carries the cores' outputs out: repair actions, kv messages, kv changes
    /// (to disk and to watchers), collected tombstones.
    fn drain(&self, system: &ActorSystem, st: &mut StorageState) {
        while let Some(action) = st.repair.poll_action() {
            match action {
                Action::Offer { to, chunks } => {
                    self.send(system, st, to, &StorageWire::Offer { chunks });
                }
                Action::Fetch {
                    from,
                    chunk,
                    replicas,
                } => {
                    let req = Self::next_req(st);
                    st.pending.insert(
                        (from, req),
                        (
                            Pending::Repair { chunk, replicas },
                            Instant::now() + self.settings.repair.fetch_timeout,
                        ),
                    );
                    self.send(system, st, from, &StorageWire::Fetch { req, chunk });
                }
                Action::Confirm { to, chunks } => {
                    let req = Self::next_req(st);
                    st.pending.insert(
                        (to, req),
                        (
                            Pending::Confirm {
                                chunks: chunks.clone(),
                            },
                            Instant::now() + QUERY_TIMEOUT,
                        ),
                    );
                    self.send(system, st, to, &StorageWire::Confirm { req, chunks });
                }
                Action::Drop { chunk } => {
                    // Its placement holds it, confirmed: this copy is a stray.
                    match self.store.remove(&chunk) {
                        Ok(()) => tracing::debug!(chunk = %chunk, "a stray copy handed off"),
                        Err(e) => tracing::error!(error = %e, "cannot remove a stray copy"),
                    }
                }
            }
        }
        while let Some((to, msg)) = st.kv.poll_transmit() {
            self.send(system, st, to, &StorageWire::Kv(msg));
        }
        while let Some(change) = st.kv.poll_change() {
            if let Some(entry) = st.kv.entry(&change.key)
                && let Err(e) = self.store.put_entry(entry)
            {
                tracing::error!(error = %e, "cannot persist a key-value entry");
            }
            st.watchers.retain(|(prefix, tx)| {
                if !change.key.starts_with(prefix.as_str()) {
                    return !tx.is_closed();
                }
                // A watcher that cannot keep up is cut off (it lists again).
                tx.try_send(change.clone()).is_ok()
            });
        }
        while let Some(key) = st.kv.poll_collected() {
            let _ = self.store.remove_entry(&key);
        }
    }

    fn tick(&self, system: &ActorSystem, st: &mut StorageState) {
        let me = system.node_id();
        let now = wall_now();
        let at = Instant::now();
        st.repair.set_live(self.live(me));
        st.repair.tick(now);
        // Requests that timed out.
        let late: Vec<(NodeId, u64)> = st
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= at)
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            let Some((pending, _)) = st.pending.remove(&key) else {
                continue;
            };
            match pending {
                Pending::Store { put } => {
                    if let Some(op) = st.puts.get_mut(&put) {
                        op.plan
                            .handle(key.0, Answer::Refused("no answer in time".into()));
                    }
                    self.advance_put(system, st, put);
                }
                Pending::Get { get } => self.advance_get(system, st, get, None),
                Pending::Repair { chunk, .. } => st.repair.fetch_failed(&chunk),
                Pending::Query { locate, .. } => self.finish_locate(st, locate, true),
                // No answer: the copy stays; the next scan asks again.
                Pending::Confirm { .. } => {}
            }
        }
        let stale: Vec<u64> = st
            .puts
            .iter()
            .filter(|(_, op)| op.deadline <= at)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(op) = st.puts.remove(&id)
                && let Some(reply) = op.reply
            {
                let _ = reply.send(Err(FsError::Unavailable(format!(
                    "the put of {} got no quorum within {} s",
                    op.chunk,
                    REQUEST_TIMEOUT.as_secs()
                ))));
            }
        }
        let stale: Vec<u64> = st
            .locates
            .iter()
            .filter(|(_, op)| op.deadline <= at)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.finish_locate(st, id, true);
        }
        self.scrub(st);
        if at >= st.next_kv_sync {
            st.next_kv_sync = at + KV_SYNC_EVERY;
            st.kv.set_members(self.admitted().into_keys());
            st.kv.tick(now, &mut st.rng);
            if std::mem::take(&mut st.synced) {
                let _ = self.store.set_last_sync_us(now.as_micros());
            }
        }
    }

    /// Reads back and hashes a few held chunks, round robin.
    fn scrub(&self, st: &mut StorageState) {
        let mut budget = SCRUB_BYTES_PER_TICK;
        let mut checked = 0;
        while budget > 0 && checked < 64 {
            let Some(chunk) = st.repair.next_to_scrub() else {
                return;
            };
            checked += 1;
            match self.read_here(st, &chunk) {
                Some(b) => budget = budget.saturating_sub(b.len() as u64),
                None => budget = budget.saturating_sub(1 << 20),
            }
        }
    }

    fn status(&self, system: &ActorSystem, st: &StorageState) -> StorageStatus {
        StorageStatus {
            node: system.node_id(),
            chunks: st.repair.held().len(),
            bytes: self.store.used_bytes(),
            quota_bytes: self.settings.quota_bytes,
            lost: st.repair.lost_count(),
            repairing: st.repair.pending(),
            repaired: st.repaired,
            handed_off: st.repair.handed_off(),
            corrupt_found: st.corrupt_found,
            bad_copies: st.bad_copies,
            refused_full: st.refused_full,
            write_errors: st.write_errors,
            refused: st.refused,
            kv_keys: st.kv.len(),
            kv_root: st
                .kv
                .root()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect(),
            gc_pending: st.gc.pending(),
            collected: st.collected,
        }
    }

    /// A mark arrived: the core collects what has been unnamed for the grace, if
    /// the mark is complete and the pins fresh (this node says which).
    fn sweep(
        &self,
        system: &ActorSystem,
        st: &mut StorageState,
        mut mark: plexus_storage::gc::Mark,
    ) {
        let alone = self.admitted().keys().all(|n| *n == system.node_id());
        mark.pins_fresh = alone || st.kv_heard.is_some_and(|t| t.elapsed() < GC_KV_FRESH);
        let held: Vec<ChunkId> = st.repair.held().keys().copied().collect();
        for chunk in st.gc.sweep(wall_now(), &held, &mark) {
            match self.store.remove(&chunk) {
                Ok(()) => {
                    st.repair.removed(&chunk);
                    st.collected += 1;
                }
                Err(e) => tracing::warn!(error = %e, "cannot collect a chunk"),
            }
        }
        self.maintain(st);
    }

    /// Starts the store's maintenance off the actor's task, unless one runs.
    fn maintain(&self, st: &StorageState) {
        use std::sync::atomic::Ordering;
        if st.maintaining.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, running) = (self.store.clone(), st.maintaining.clone());
        tokio::task::spawn_blocking(move || {
            match store.maintain() {
                Ok(m) if m.compacted => tracing::info!(
                    blob_files = m.blob_files,
                    blob_bytes = m.blob_bytes,
                    garbage_bytes = m.garbage_bytes,
                    "chunk blob files compacted"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot maintain the chunk store"),
            }
            running.store(false, Ordering::Release);
        });
    }
}

impl Actor for StorageService {
    type Msg = StorageMsg;
    type State = StorageState;
    type Args = ();

    async fn started(&self, ctx: &Context<StorageMsg>, (): ()) -> Result<StorageState, ActorError> {
        let ticker = crate::ticker::spawn(ctx.myself().clone(), TICK, || StorageMsg::Tick);
        let marker = tokio::spawn(mark_loop(ctx.myself().clone(), self.settings.gc_every));
        let node = ctx.system().node_id();
        let mut repair = Repair::new(node, self.settings.repair.clone());
        let held = self
            .store
            .held()
            .map_err(|e| ActorError::from(e.to_string()))?;
        for (chunk, meta) in held {
            repair.stored(chunk, meta.replicas);
        }
        let mut kv = Kv::new(
            NodeKey::from_seed(self.key.seed()),
            self.settings.kv.clone(),
        );
        let horizon = u64::try_from(self.settings.kv.tombstone_for.as_micros()).unwrap_or(u64::MAX);
        let stale = self
            .store
            .last_sync_us()
            .ok()
            .flatten()
            .is_some_and(|t| wall_now().as_micros().saturating_sub(t) > horizon);
        if stale {
            // Out of touch past the tombstone horizon: its deletes may have been
            // forgotten by the others, so its old values must not come back.
            tracing::warn!(
                "the key-value replica is older than the tombstone horizon; starting it empty"
            );
            let _ = self.store.clear_entries();
        } else {
            for entry in self
                .store
                .entries()
                .map_err(|e| ActorError::from(e.to_string()))?
            {
                if let Err(e) = kv.restore(entry) {
                    tracing::warn!(error = %e, "a stored key-value entry does not verify; dropped");
                }
            }
        }
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&self.key.seed()[..8]);
        Ok(StorageState {
            repair,
            gc: plexus_storage::gc::Gc::new(self.settings.gc_grace),
            collected: 0,
            kv_heard: None,
            kv,
            rng: DetRng::new(u64::from_le_bytes(seed) ^ wall_now().as_micros()),
            next_req: 0,
            puts: BTreeMap::new(),
            gets: BTreeMap::new(),
            locates: BTreeMap::new(),
            pending: BTreeMap::new(),
            watchers: Vec::new(),
            next_kv_sync: Instant::now(),
            synced: false,
            repaired: 0,
            corrupt_found: 0,
            bad_copies: 0,
            refused_full: 0,
            write_errors: 0,
            refused: 0,
            tasks: vec![ticker, marker],
            writing: BTreeMap::new(),
            writing_bytes: 0,
            writers: Arc::new(tokio::sync::Semaphore::new(WRITERS)),
            maintaining: Arc::default(),
            reading: 0,
            me: ctx.myself().clone(),
        })
    }

    async fn handle(
        &self,
        ctx: &Context<StorageMsg>,
        msg: StorageMsg,
        st: &mut StorageState,
    ) -> Result<(), ActorError> {
        let system = ctx.system();
        match msg {
            StorageMsg::Wire { from, bytes } => self.on_wire(system, st, from, &bytes),
            StorageMsg::Tick => self.tick(system, st),
            StorageMsg::Put {
                bytes,
                replicas,
                quorum,
                reply,
            } => self.start_put(system, st, bytes, replicas, quorum, reply),
            StorageMsg::Get { chunk, reply } => self.start_get(system, st, chunk, reply),
            StorageMsg::Locate { chunks, reply } => self.start_locate(system, st, chunks, reply),
            StorageMsg::Kv(req) => self.on_kv(st, req),
            StorageMsg::Status(reply) => {
                let _ = reply.send(self.status(system, st));
            }
            StorageMsg::Sweep(mark) => self.sweep(system, st, mark),
            StorageMsg::Written { chunk, outcome } => self.written(system, st, chunk, outcome),
            StorageMsg::Read(done) => {
                st.reading = st.reading.saturating_sub(1);
                self.read_done(system, st, done);
            }
        }
        self.drain(system, st);
        Ok(())
    }
}

/// The collector's marker: every `every`, lists the pins, reads each pinned
/// file's manifest (through the service, so from any holder, verified), and
/// hands the service the complete mark. A manifest that cannot be read skips the
/// round: an incomplete mark would collect a pinned file.
async fn mark_loop(me: ActorRef<StorageMsg>, every: Duration) {
    let mut manifests: BTreeMap<ChunkId, Vec<ChunkId>> = BTreeMap::new();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let (tx, rx) = oneshot::channel();
        let list = KvRequest::List {
            prefix: crate::api::fs::PIN_PREFIX.into(),
            limit: usize::MAX,
            reply: tx,
        };
        if me.tell(StorageMsg::Kv(list)).await.is_err() {
            return;
        }
        let Ok(pins) = rx.await else { return };
        let mut live = BTreeSet::new();
        let mut whole = true;
        for (key, _) in pins {
            let Ok(file) = key
                .trim_start_matches(crate::api::fs::PIN_PREFIX)
                .parse::<ChunkId>()
            else {
                continue;
            };
            live.insert(file);
            if let Some(chunks) = manifests.get(&file) {
                live.extend(chunks.iter().copied());
                continue;
            }
            let (tx, rx) = oneshot::channel();
            if me
                .tell(StorageMsg::Get {
                    chunk: file,
                    reply: tx,
                })
                .await
                .is_err()
            {
                return;
            }
            match rx.await {
                Ok(Ok(bytes)) => {
                    // A pin on something that is not a file pins just that chunk.
                    if let Ok(m) = plexus_storage::Manifest::decode(&bytes) {
                        live.extend(m.chunks.iter().copied());
                        if manifests.len() >= GC_MANIFESTS_MAX {
                            manifests.pop_first();
                        }
                        manifests.insert(file, m.chunks);
                    }
                }
                _ => whole = false,
            }
        }
        let mark = plexus_storage::gc::Mark {
            live,
            complete: whole,
            pins_fresh: false, // the service knows
        };
        if me.tell(StorageMsg::Sweep(mark)).await.is_err() {
            return;
        }
    }
}
