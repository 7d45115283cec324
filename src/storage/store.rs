//! The storage shard's disk: its own rocksdb under `data_dir/storage`.
//!
//! Column families: `chunks` (id → stored bytes), `meta` (id → replication
//! factor and length), `kv` (key → the key-value store's signed entry) and
//! `state` (the last anti-entropy sync). Nothing read from here is trusted: chunk
//! bytes are hashed against their id by the caller before use, and entries are
//! checked against their signature when loaded.
//!
//! # Chunk writes: written once, durable by a flush
//!
//! A chunk reported stored survives a crash of the process or the machine. A
//! synced write through rocksdb's write-ahead log would keep that, but every byte
//! would then be written twice: once to the log, again when the memtable is
//! flushed to a blob file. So chunk writes skip the log. One writer thread per
//! store takes the chunk writes waiting for it (at most [`GROUP_BYTES_MAX`]),
//! puts each chunk's bytes and meta in one batch without the log, and flushes
//! the `chunks` and `meta` families together (`atomic_flush`: after a crash
//! either both hold a group or neither does). A write returns when the flush
//! that holds it has been synced to the disk. Writes that arrive while a flush
//! runs form the next group: group commit, so concurrent writers share one flush.
//! The writer's queue holds at most [`QUEUE_MAX`] writes; a caller past that
//! waits (callers are blocking-pool threads, at most the service's writer permits).
//!
//! Each flush starts a blob file. Blob garbage collection is off, so compactions
//! move only the keys and never rewrite a live chunk; a blob file goes when every
//! chunk in it was removed, and [`ChunkStore::maintain`] compacts the family with
//! the collection on once removed chunks are a quarter of the blob bytes (or
//! small files grew too many), which rewrites the live chunks into full-size
//! files.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use plexus_actors::codec;
use plexus_storage::ChunkId;
use plexus_storage::kv::Entry;
use plexus_storage::wire::Bytes;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, FlushOptions, IteratorMode, Options, WriteBatch,
    WriteOptions,
};

const CHUNKS: &str = "chunks";
const META: &str = "meta";
const KV: &str = "kv";
const STATE: &str = "state";
const LAST_SYNC: &[u8] = b"last_sync_us";
/// Chunk values at least this long go to blob files.
const BLOB_MIN_BYTES: u64 = 4 << 10;
/// Write-ahead log bytes kept at most (see `open`).
const WAL_BYTES_MAX: u64 = 256 << 20;
/// A blob file's size before a new one is started.
const BLOB_FILE_BYTES: u64 = 256 << 20;
/// Chunk bytes the writer puts in one group (one flush) at most; a single write
/// larger than this is a group of its own.
pub const GROUP_BYTES_MAX: u64 = 32 << 20;
/// Chunk writes waiting for the writer at most.
pub const QUEUE_MAX: usize = 64;
/// Table and blob files rocksdb keeps open at most (the rest are opened when
/// read): each group commit starts a blob file, so their count grows with the
/// bytes held.
const OPEN_FILES_MAX: i32 = 512;
/// Blob files past which [`ChunkStore::maintain`] compacts them into fewer.
const BLOB_FILES_MAX: u64 = 4096;
/// The share of blob bytes that are removed chunks past which
/// [`ChunkStore::maintain`] reclaims them.
const GARBAGE_SHARE_MAX: f64 = 0.25;
/// Removed chunk bytes below which [`ChunkStore::maintain`] leaves them.
const GARBAGE_BYTES_MIN: u64 = 64 << 20;

/// Why the store failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkStoreError {
    /// rocksdb failed (the disk).
    #[error("the storage store at {path}: {why}")]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// rocksdb's words.
        why: String,
    },
}

/// A chunk's meta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Its replication factor.
    pub replicas: u8,
    /// Its stored length.
    pub len: u64,
}

/// The shard's store (cheap to clone).
#[derive(Clone)]
pub struct ChunkStore {
    db: Arc<DB>,
    path: PathBuf,
    used: Arc<AtomicU64>,
    writer: Arc<Writer>,
}

/// A chunk write waiting for the writer thread.
struct ChunkWrite {
    id: ChunkId,
    replicas: u8,
    bytes: Bytes,
    done: SyncSender<Result<(), ChunkStoreError>>,
}

/// The writer thread and its queue: dropped with the last clone of the store,
/// which closes the queue and waits for the thread (so the database is closed
/// when the store is gone, and can be opened again).
struct Writer {
    queue: Option<SyncSender<ChunkWrite>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue = None;
        let thread = match self.thread.get_mut() {
            Ok(t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// What [`ChunkStore::maintain`] found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Blob files before.
    pub blob_files: u64,
    /// Blob bytes before.
    pub blob_bytes: u64,
    /// Bytes of removed chunks still in blob files before.
    pub garbage_bytes: u64,
    /// Whether the chunks were compacted with garbage collection.
    pub compacted: bool,
}

/// The store's directory in a data dir.
pub fn storage_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("storage")
}

impl ChunkStore {
    /// Opens (creating) the store and counts the bytes it holds.
    pub fn open(path: &Path) -> Result<Self, ChunkStoreError> {
        Self::open_with(path, WAL_BYTES_MAX)
    }

    fn open_with(path: &Path, wal_bytes_max: u64) -> Result<Self, ChunkStoreError> {
        let io = |e: &dyn std::fmt::Display| ChunkStoreError::Io {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        std::fs::create_dir_all(path).map_err(|e| io(&e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        // A write-ahead log is deleted only once every column family has flushed
        // what it holds; the small families (meta, key-value) flush rarely, so
        // without a cap the logs keep a second copy of every chunk ever written.
        // Past the cap, rocksdb flushes the families that pin the oldest log.
        opts.set_max_total_wal_size(wal_bytes_max);
        // Chunk groups are made durable by flushing two families together.
        opts.set_atomic_flush(true);
        opts.set_max_open_files(OPEN_FILES_MAX);
        // Flushes write the chunks straight to the disk, not through the page
        // cache: copying every chunk into the cache cost more CPU than any other
        // step of a put. Reads stay buffered.
        let direct = direct_io_works(path);
        opts.set_use_direct_io_for_flush_and_compaction(direct);
        // Chunks are large values written once: they live in blob files, so a
        // flush writes them once and compactions move only their references
        // (without this every chunk is rewritten at each level it passes).
        // Garbage collection stays off but in `maintain`: on, it rewrites the
        // live chunks of the oldest files at every compaction that meets them.
        let mut chunks = Options::default();
        chunks.set_enable_blob_files(true);
        chunks.set_min_blob_size(BLOB_MIN_BYTES);
        chunks.set_blob_file_size(BLOB_FILE_BYTES);
        chunks.set_enable_blob_gc(false);
        let cfs = [
            ColumnFamilyDescriptor::new(CHUNKS, chunks),
            ColumnFamilyDescriptor::new(META, Options::default()),
            ColumnFamilyDescriptor::new(KV, Options::default()),
            ColumnFamilyDescriptor::new(STATE, Options::default()),
        ];
        let db = Arc::new(DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| io(&e))?);
        let (queue, writes) = sync_channel(QUEUE_MAX);
        let thread = {
            let (db, path) = (db.clone(), path.to_path_buf());
            std::thread::Builder::new()
                .name("chunk-writer".into())
                .spawn(move || write_loop(&db, &path, &writes))
                .map_err(|e| io(&e))?
        };
        let store = ChunkStore {
            db,
            path: path.to_path_buf(),
            used: Arc::new(AtomicU64::new(0)),
            writer: Arc::new(Writer {
                queue: Some(queue),
                thread: Mutex::new(Some(thread)),
            }),
        };
        let used = store.held()?.iter().map(|(_, m)| m.len).sum();
        store.used.store(used, Ordering::Relaxed);
        Ok(store)
    }

    fn io(&self, e: impl std::fmt::Display) -> ChunkStoreError {
        ChunkStoreError::Io {
            path: self.path.clone(),
            why: e.to_string(),
        }
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, ChunkStoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| self.io(format!("column family `{name}` missing")))
    }

    /// Bytes of chunks held.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Keeps a chunk, durably: returns once the flush holding it is synced
    /// (the module's docs). Blocks the calling thread meanwhile. The caller
    /// checked `bytes` against `id`.
    pub fn put_chunk(
        &self,
        id: &ChunkId,
        replicas: u8,
        bytes: Bytes,
    ) -> Result<(), ChunkStoreError> {
        let had = self.meta(id)?;
        let len = bytes.len() as u64;
        let (done, outcome) = sync_channel(1);
        let write = ChunkWrite {
            id: *id,
            replicas,
            bytes,
            done,
        };
        let stopped = || self.io("the chunk writer has stopped");
        let queue = self.writer.queue.as_ref().ok_or_else(stopped)?;
        queue.send(write).map_err(|_| stopped())?;
        outcome.recv().map_err(|_| stopped())??;
        let old = had.map_or(0, |m| m.len);
        self.used
            .fetch_add(len.saturating_sub(old), Ordering::Relaxed);
        Ok(())
    }

    /// Reclaims the space of removed chunks when they are a quarter of the
    /// blob bytes (and at least 64 MiB), or merges blob files when there are
    /// more than 4,096 of under half the full size on average: compacts the
    /// chunk family once with blob garbage collection on, which rewrites the
    /// live chunks of every blob file and drops the old files. Heavy (it reads
    /// and writes every live chunk); run it off the async workers, one at a time.
    pub fn maintain(&self) -> Result<Maintenance, ChunkStoreError> {
        self.maintain_past(GARBAGE_BYTES_MIN, BLOB_FILES_MAX)
    }

    fn maintain_past(
        &self,
        garbage_bytes_min: u64,
        blob_files_max: u64,
    ) -> Result<Maintenance, ChunkStoreError> {
        let cf = self.cf(CHUNKS)?;
        let property = |name: &str| -> Result<u64, ChunkStoreError> {
            Ok(self
                .db
                .property_int_value_cf(cf, name)
                .map_err(|e| self.io(e))?
                .unwrap_or(0))
        };
        let blob_bytes = property("rocksdb.live-blob-file-size")?;
        // rocksdb counts a removed chunk as garbage only once a compaction has
        // met its deletion; the bytes held say it at once.
        let garbage_bytes = property("rocksdb.live-blob-file-garbage-size")?
            .max(blob_bytes.saturating_sub(self.used_bytes()));
        let mut m = Maintenance {
            blob_files: property("rocksdb.num-blob-files")?,
            blob_bytes,
            garbage_bytes,
            compacted: false,
        };
        let garbage = m.garbage_bytes >= garbage_bytes_min
            && m.garbage_bytes as f64 >= GARBAGE_SHARE_MAX * m.blob_bytes as f64;
        // Many files are merged only while they are small on average: a store
        // whose files are already full-size would be rewritten for nothing.
        let small = m.blob_bytes / m.blob_files.max(1) < BLOB_FILE_BYTES / 2;
        if !garbage && (m.blob_files <= blob_files_max || !small) {
            return Ok(m);
        }
        self.db
            .set_options_cf(
                cf,
                &[
                    ("enable_blob_garbage_collection", "true"),
                    ("blob_garbage_collection_age_cutoff", "1.0"),
                ],
            )
            .map_err(|e| self.io(e))?;
        // Automatic compactions (of the keys flushes keep adding) go on beside it.
        let mut compact = rocksdb::CompactOptions::default();
        compact.set_exclusive_manual_compaction(false);
        self.db
            .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &compact);
        self.db
            .set_options_cf(cf, &[("enable_blob_garbage_collection", "false")])
            .map_err(|e| self.io(e))?;
        m.compacted = true;
        Ok(m)
    }

    /// Overwrites a chunk's bytes without touching its meta: a disk fault, for
    /// tests of detection and repair.
    pub fn corrupt_chunk(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), ChunkStoreError> {
        self.db
            .put_cf(self.cf(CHUNKS)?, id.0, bytes)
            .map_err(|e| self.io(e))
    }

    /// A chunk's stored bytes, unverified.
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, ChunkStoreError> {
        self.db
            .get_cf(self.cf(CHUNKS)?, id.0)
            .map_err(|e| self.io(e))
    }

    /// A chunk's meta.
    pub fn meta(&self, id: &ChunkId) -> Result<Option<ChunkMeta>, ChunkStoreError> {
        let raw = self
            .db
            .get_cf(self.cf(META)?, id.0)
            .map_err(|e| self.io(e))?;
        Ok(raw.and_then(|m| decode_meta(&m)))
    }

    /// Removes a chunk (corrupt, or collected).
    pub fn remove(&self, id: &ChunkId) -> Result<(), ChunkStoreError> {
        let had = self.meta(id)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CHUNKS)?, id.0);
        batch.delete_cf(self.cf(META)?, id.0);
        self.db.write(batch).map_err(|e| self.io(e))?;
        if let Some(m) = had {
            let _ = self
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    Some(u.saturating_sub(m.len))
                });
        }
        Ok(())
    }

    /// Every chunk this store has meta for.
    pub fn held(&self) -> Result<Vec<(ChunkId, ChunkMeta)>, ChunkStoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(META)?, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.io(e))?;
            let (Ok(id), Some(meta)) = (<[u8; 32]>::try_from(&k[..]), decode_meta(&v)) else {
                tracing::warn!("an unreadable chunk meta record; skipped");
                continue;
            };
            out.push((ChunkId(id), meta));
        }
        Ok(out)
    }

    /// Keeps a key-value entry.
    pub fn put_entry(&self, entry: &Entry) -> Result<(), ChunkStoreError> {
        let bytes = codec::encode(entry).map_err(|e| self.io(e))?;
        self.db
            .put_cf(self.cf(KV)?, entry.key.as_bytes(), bytes)
            .map_err(|e| self.io(e))
    }

    /// Forgets a key-value entry (a collected tombstone).
    pub fn remove_entry(&self, key: &str) -> Result<(), ChunkStoreError> {
        self.db
            .delete_cf(self.cf(KV)?, key.as_bytes())
            .map_err(|e| self.io(e))
    }

    /// Every key-value entry (undecodable ones are skipped with a warning).
    pub fn entries(&self) -> Result<Vec<Entry>, ChunkStoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(KV)?, IteratorMode::Start) {
            let (_, v) = item.map_err(|e| self.io(e))?;
            match codec::decode_with_limit::<Entry>(&v, 1 << 20) {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(error = %e, "an unreadable key-value entry; skipped"),
            }
        }
        Ok(out)
    }

    /// Drops every key-value entry (a replica out of touch past the tombstone
    /// horizon starts empty).
    pub fn clear_entries(&self) -> Result<(), ChunkStoreError> {
        let keys: Vec<Box<[u8]>> = self
            .db
            .iterator_cf(self.cf(KV)?, IteratorMode::Start)
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .collect();
        let mut batch = WriteBatch::default();
        for k in keys {
            batch.delete_cf(self.cf(KV)?, k);
        }
        self.db.write(batch).map_err(|e| self.io(e))
    }

    /// When the key-value store last synced with a peer (Unix µs).
    pub fn last_sync_us(&self) -> Result<Option<u64>, ChunkStoreError> {
        let raw = self
            .db
            .get_cf(self.cf(STATE)?, LAST_SYNC)
            .map_err(|e| self.io(e))?;
        Ok(raw.and_then(|b| <[u8; 8]>::try_from(&b[..]).ok().map(u64::from_le_bytes)))
    }

    /// Records a sync.
    pub fn set_last_sync_us(&self, us: u64) -> Result<(), ChunkStoreError> {
        self.db
            .put_cf(self.cf(STATE)?, LAST_SYNC, us.to_le_bytes())
            .map_err(|e| self.io(e))
    }
}

/// Whether `dir` takes direct I/O (some filesystems refuse it): rocksdb would
/// otherwise fail every flush. Writes one aligned block to a probe file.
fn direct_io_works(dir: &Path) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    /// Direct I/O wants memory, offsets and lengths aligned to the block.
    #[repr(C, align(4096))]
    struct Block([u8; 4096]);
    let probe = dir.join("DIRECT_IO_PROBE");
    let block = Box::new(Block([0; 4096]));
    let works = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .and_then(|mut f| f.write_all(&block.0))
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    if !works {
        tracing::info!(dir = %dir.display(), "no direct I/O here: chunk flushes go through the page cache");
    }
    works
}

/// The writer thread: takes the writes waiting, writes them as one group, and
/// answers each; ends when the queue closes.
fn write_loop(db: &DB, path: &Path, writes: &Receiver<ChunkWrite>) {
    while let Ok(first) = writes.recv() {
        let mut bytes = first.bytes.len() as u64;
        let mut group = vec![first];
        while bytes < GROUP_BYTES_MAX {
            let Ok(next) = writes.try_recv() else { break };
            bytes = bytes.saturating_add(next.bytes.len() as u64);
            group.push(next);
        }
        let outcome = write_group(db, &group).map_err(|why| ChunkStoreError::Io {
            path: path.to_path_buf(),
            why,
        });
        if let Err(e) = &outcome {
            tracing::error!(error = %e, chunks = group.len(), "a chunk group was not written");
        }
        for w in group {
            // A caller that stopped waiting has nothing to be told.
            let _ = w.done.send(outcome.clone());
        }
    }
}

/// Writes a group of chunks without the log and flushes them (and their meta)
/// to synced files.
fn write_group(db: &DB, group: &[ChunkWrite]) -> Result<(), String> {
    let family = |name: &str| {
        db.cf_handle(name)
            .ok_or_else(|| format!("column family `{name}` missing"))
    };
    let (chunks, meta) = (family(CHUNKS)?, family(META)?);
    // Sized up front: grown as it fills, the batch's buffer would be copied
    // again at every doubling (a 32 MiB group copied about twice over).
    let capacity: usize = group.iter().map(|w| w.bytes.len() + 128).sum();
    let mut batch = WriteBatch::with_capacity_bytes(capacity + 64);
    for w in group {
        batch.put_cf(chunks, w.id.0, &w.bytes[..]);
        let mut m = [0u8; 9];
        m[0] = w.replicas;
        m[1..].copy_from_slice(&(w.bytes.len() as u64).to_le_bytes());
        batch.put_cf(meta, w.id.0, m);
    }
    let mut unlogged = WriteOptions::default();
    unlogged.disable_wal(true);
    db.write_opt(batch, &unlogged).map_err(|e| e.to_string())?;
    let mut flush = FlushOptions::default();
    flush.set_wait(true);
    db.flush_cfs_opt(&[&chunks, &meta], &flush)
        .map_err(|e| e.to_string())
}

fn decode_meta(raw: &[u8]) -> Option<ChunkMeta> {
    let (&replicas, rest) = raw.split_first()?;
    let len = u64::from_le_bytes(rest.try_into().ok()?);
    Some(ChunkMeta { replicas, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    fn fresh(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plexus-chunk-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn chunk(i: u64, len: usize) -> (ChunkId, Bytes) {
        let mut bytes = vec![(i % 251) as u8; len];
        bytes[..8].copy_from_slice(&i.to_le_bytes());
        (ChunkId::of(&bytes), Bytes::from(bytes))
    }

    #[test]
    fn a_chunk_put_is_in_the_files_when_the_put_returns() {
        let (dir, crashed) = (fresh("crash"), fresh("crashed"));
        let store = ChunkStore::open(&dir).unwrap();
        // Written from many threads at once: they share flushes.
        let written: Vec<(ChunkId, Bytes)> = (0..24).map(|i| chunk(i, 300 << 10)).collect();
        std::thread::scope(|s| {
            for part in written.chunks(3) {
                let store = store.clone();
                s.spawn(move || {
                    for (id, bytes) in part {
                        store.put_chunk(id, 2, bytes.clone()).unwrap();
                    }
                });
            }
        });
        // A key-value write goes through the log, unflushed: the copy must
        // not need the chunks' writes to be in it.
        store.set_last_sync_us(9).unwrap();
        // A checkpoint that does not flush first: the files as they are now, as
        // a crash of the process would leave them.
        rocksdb::checkpoint::Checkpoint::new(&store.db)
            .unwrap()
            .create_checkpoint_with_log_size(&crashed, u64::MAX)
            .unwrap();
        let back = ChunkStore::open(&crashed).unwrap();
        for (id, bytes) in &written {
            assert_eq!(
                back.chunk(id).unwrap().as_deref(),
                Some(&bytes[..]),
                "chunk {id}"
            );
            assert_eq!(
                back.meta(id).unwrap(),
                Some(ChunkMeta {
                    replicas: 2,
                    len: bytes.len() as u64
                })
            );
        }
        assert_eq!(back.used_bytes(), 24 * (300 << 10));
        drop((store, back));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&crashed);
    }

    #[test]
    fn the_direct_io_probe_says_no_where_it_cannot_write() {
        assert!(!direct_io_works(Path::new("/nonexistent/plexus")));
        // Whatever the probe says of a memory filesystem, a store there works.
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            let dir = shm.join(format!("plexus-chunk-shm-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let store = ChunkStore::open(&dir).unwrap();
            let (id, bytes) = chunk(1, 64 << 10);
            store.put_chunk(&id, 3, bytes.clone()).unwrap();
            assert_eq!(store.chunk(&id).unwrap().as_deref(), Some(&bytes[..]));
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn maintenance_reclaims_removed_chunks_and_merges_blob_files() {
        let dir = fresh("maintain");
        let store = ChunkStore::open(&dir).unwrap();
        // One at a time: a flush, so a blob file, each.
        let written: Vec<(ChunkId, Bytes)> = (0..8).map(|i| chunk(i, 256 << 10)).collect();
        for (id, bytes) in &written {
            store.put_chunk(id, 1, bytes.clone()).unwrap();
        }
        // Below both bounds: nothing done.
        let m = store.maintain_past(1 << 20, 100).unwrap();
        assert_eq!(m.blob_files, 8);
        assert!(!m.compacted, "{m:?}");
        // Too many files: merged.
        let m = store.maintain_past(1 << 20, 4).unwrap();
        assert!(m.compacted, "{m:?}");
        let after = store.maintain_past(u64::MAX, u64::MAX).unwrap();
        assert!(after.blob_files < 4, "{after:?}");
        // Half removed: reclaimed.
        for (id, _) in written.iter().step_by(2) {
            store.remove(id).unwrap();
        }
        let m = store.maintain_past(512 << 10, 100).unwrap();
        assert!(m.compacted, "{m:?}");
        assert!(m.garbage_bytes >= 4 * (256 << 10), "{m:?}");
        let after = store.maintain_past(u64::MAX, u64::MAX).unwrap();
        assert!(
            after.blob_bytes < 5 * (256 << 10),
            "{} blob bytes for 4 chunks of 256 KiB: {after:?}",
            after.blob_bytes
        );
        for (i, (id, bytes)) in written.iter().enumerate() {
            let want = (i % 2 == 1).then(|| bytes.to_vec());
            assert_eq!(store.chunk(id).unwrap(), want, "chunk {i}");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn write_ahead_logs_stay_near_their_cap() {
        let dir = std::env::temp_dir().join(format!("plexus-chunk-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cap: u64 = 4 << 20;
        let store = ChunkStore::open_with(&dir, cap).unwrap();
        // Chunks skip the log, but other writes go through it (key-value
        // entries; chunk overwrites as a disk-fault test makes them, used here
        // for their size). A small family with one unflushed write pins the
        // first log: without the cap, every log after it stays too.
        store.set_last_sync_us(1).unwrap();
        let written: u64 = 48;
        let chunks: Vec<(ChunkId, Bytes)> = (0..written).map(|i| chunk(i, 1 << 20)).collect();
        for (id, bytes) in &chunks {
            store.corrupt_chunk(id, bytes).unwrap();
            // Whatever flush the cap started (none without it) ends before the
            // next write, so the logs left do not depend on the flushes' pace.
            store
                .db
                .wait_for_compact(&rocksdb::WaitForCompactOptions::default())
                .unwrap();
        }
        let logs = log_bytes(&dir);
        assert!(
            logs <= 2 * cap,
            "{logs} bytes of logs for {written} MiB written under a {cap}-byte cap"
        );
        // Every write is still there (flushed).
        for (id, bytes) in &chunks {
            assert_eq!(store.chunk(id).unwrap().as_deref(), Some(&bytes[..]));
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
