//! The storage shard's disk: its own rocksdb under `data_dir/storage`.
//!
//! Column families: `chunks` (id → stored bytes), `meta` (id → replication
//! factor and length), `kv` (key → the key-value store's signed entry) and
//! `state` (the last anti-entropy sync). A chunk's bytes and meta go in one write
//! batch, synced before the write returns: a chunk reported stored survives a
//! crash of the process or the machine. Nothing read from here is trusted: chunk
//! bytes are hashed against their id by the caller before use, and entries are
//! checked against their signature when loaded.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use plexus_actors::codec;
use plexus_storage::ChunkId;
use plexus_storage::kv::Entry;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions,
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

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
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
        // Chunks are large values written once: they live in blob files, so a
        // flush writes them once and compactions move only their references
        // (without this every chunk is rewritten at each level it passes).
        let mut chunks = Options::default();
        chunks.set_enable_blob_files(true);
        chunks.set_min_blob_size(BLOB_MIN_BYTES);
        chunks.set_blob_file_size(BLOB_FILE_BYTES);
        chunks.set_enable_blob_gc(true);
        let cfs = [
            ColumnFamilyDescriptor::new(CHUNKS, chunks),
            ColumnFamilyDescriptor::new(META, Options::default()),
            ColumnFamilyDescriptor::new(KV, Options::default()),
            ColumnFamilyDescriptor::new(STATE, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| io(&e))?;
        let store = ChunkStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
            used: Arc::new(AtomicU64::new(0)),
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

    /// Keeps a chunk, synced. The caller checked `bytes` against `id`.
    pub fn put_chunk(
        &self,
        id: &ChunkId,
        replicas: u8,
        bytes: &[u8],
    ) -> Result<(), ChunkStoreError> {
        let had = self.meta(id)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CHUNKS)?, id.0, bytes);
        let mut meta = vec![replicas];
        meta.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        batch.put_cf(self.cf(META)?, id.0, meta);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync).map_err(|e| self.io(e))?;
        let old = had.map_or(0, |m| m.len);
        self.used
            .fetch_add((bytes.len() as u64).saturating_sub(old), Ordering::Relaxed);
        Ok(())
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

    #[test]
    fn write_ahead_logs_stay_near_their_cap() {
        let dir = std::env::temp_dir().join(format!("plexus-chunk-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cap: u64 = 4 << 20;
        let store = ChunkStore::open_with(&dir, cap).unwrap();
        // A small family with one unflushed write pins the first log: without
        // the cap, every log after it stays too.
        store.set_last_sync_us(1).unwrap();
        let mut chunk = vec![7u8; 1 << 20];
        let written: u64 = 48;
        for i in 0..written {
            chunk[..8].copy_from_slice(&i.to_le_bytes());
            store.put_chunk(&ChunkId::of(&chunk), 1, &chunk).unwrap();
        }
        let logs = log_bytes(&dir);
        assert!(
            logs <= 4 * cap,
            "{logs} bytes of logs for {written} MiB written under a {cap}-byte cap"
        );
        // Every chunk is still there (flushed to blob files).
        assert_eq!(store.held().unwrap().len() as u64, written);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
