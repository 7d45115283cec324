//! The replica store on disk: one rocksdb database in the node's data dir, one key
//! per durable actor, every write synced before it returns.
//!
//! The durability argument (an acknowledged message's effect is at a majority of
//! replicas) needs the replicas' writes to survive a crash of their process and of
//! their machine, so nothing a write caused may leave the node before the write's
//! log record is on disk. Two ways to keep that ([`Durability`]):
//!
//! * **Group commit** (the default): `put`, `promise` and `delete` write the log
//!   record without waiting for the disk, and count the write ([`RocksStore::written`]).
//!   The driver holds back everything the host emits after an unsynced write and
//!   asks a [`Syncer`] (off the async workers) to sync the log; one sync covers
//!   every write before it, from every actor this node hosts or replicates, and
//!   the held-back output goes out once its writes are durable
//!   (`super::service`).
//! * **Each write synced**: every write returns only once its log record is on
//!   disk, inside the caller's turn (the previous behaviour; measured against).
//!
//! A write that fails is reported to the replica, which answers `Failed` (counted
//! as no answer), so nothing is promised that is not stored; a failed sync drops
//! the output it held back.
//!
//! Layout: the `default` column family holds each key's slot (promise and record,
//! one codec frame); the `promises` family holds a promise raised since the slot was
//! last written. A fence only raises the promise, so it writes a few bytes there
//! instead of rewriting a record of up to megabytes; `get` returns the higher of the
//! two promises; `put` and `delete` write the slot and clear a raised promise in one
//! atomic, synced batch.
//!
//! Patched records: a commit that reaches a replica as a patch of the record it
//! holds ([`plexus_durable::patch`]) is stored as that patch, in the `patches`
//! family under `key 0x00 index`, after the slot written whole (the *base*). A
//! `get` reads the base and applies its patches in order, checking each one's
//! base order and digest (a mismatch is [`StoreError::Corrupt`]); the slot's
//! promise is the highest of the base's, the patches' ballots and a raised one.
//! A key's chain is at most [`PATCHES_MAX`] patches carrying at most half the
//! body; the write past that stores the record whole and clears the chain in the
//! same batch. So a 1 MiB state changed by a few kilobytes per commit costs its
//! replicas a few kilobytes of log per commit, not a megabyte.
//!
//! The newest slot of recently used keys is kept decoded in memory (at most
//! [`CACHE_BYTES_MAX`] of records; the least recently used goes first), so a
//! replica's write does not read and decode the record it replaces, and a patch
//! chain is replayed only after a restart or an eviction. The cache is
//! written through: it never holds what the disk does not.
//!
//! Recovery refuses a damaged log. rocksdb's default recovery mode stops replaying
//! the write-ahead log at the first bad record and silently drops everything after
//! it, so a replica would forget writes it had acknowledged. The store opens in
//! `TolerateCorruptedTailRecords` mode instead: only an incomplete last record (a
//! write torn by a machine crash, never acknowledged, since every acknowledged
//! write was synced first) is dropped; damage anywhere else fails the open with
//! [`OpenError::Corrupt`], and the node then serves no replica until an operator
//! repairs or removes the store (see `DurableService`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexus_actors::codec;
use plexus_durable::patch::RecordPatch;
use plexus_durable::replica::{Slot, SlotStore, StoreError, decode_slot, encode_slot};
use plexus_durable::types::{Ballot, DurableKey};
use rocksdb::{ColumnFamily, DB, DBRecoveryMode, Options, WriteBatch, WriteOptions};

/// The column family of promises raised by fences.
const PROMISES: &str = "promises";
/// The column family of patched records (see the module docs).
const PATCHES: &str = "patches";
/// Most patches stored after one key's base.
pub const PATCHES_MAX: usize = 64;
/// Most record bytes the slot cache holds.
pub const CACHE_BYTES_MAX: usize = 256 << 20;

/// One key's newest slot, decoded, and its patch chain on disk.
struct Cached {
    slot: Slot,
    /// Patches stored after the base.
    patches: usize,
    /// Bytes those patches insert.
    patch_bytes: usize,
    /// When it was last used (the cache's clock).
    used: u64,
}

/// The slot cache (see the module docs): least recently used out first.
struct Cache {
    /// Most record bytes held.
    max: usize,
    slots: BTreeMap<DurableKey, Cached>,
    /// The keys by when they were last used.
    by_use: BTreeMap<u64, DurableKey>,
    bytes: usize,
    clock: u64,
}

fn body_len(slot: &Slot) -> usize {
    slot.record.as_ref().map_or(0, |r| r.body.len())
}

impl Cache {
    fn new(max: usize) -> Self {
        Self {
            max,
            slots: BTreeMap::new(),
            by_use: BTreeMap::new(),
            bytes: 0,
            clock: 0,
        }
    }

    fn get(&mut self, key: &DurableKey) -> Option<&Cached> {
        self.clock += 1;
        let clock = self.clock;
        let c = self.slots.get_mut(key)?;
        self.by_use.remove(&c.used);
        self.by_use.insert(clock, key.clone());
        c.used = clock;
        Some(c)
    }

    fn insert(&mut self, key: &DurableKey, slot: Slot, patches: usize, patch_bytes: usize) {
        self.remove(key);
        self.clock += 1;
        self.bytes += body_len(&slot);
        let cached = Cached {
            slot,
            patches,
            patch_bytes,
            used: self.clock,
        };
        self.slots.insert(key.clone(), cached);
        self.by_use.insert(self.clock, key.clone());
        // The newest entry stays even alone over the bound.
        while self.bytes > self.max && self.slots.len() > 1 {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(c) = self.slots.remove(&oldest) {
                self.bytes -= body_len(&c.slot);
            }
        }
    }

    fn remove(&mut self, key: &DurableKey) {
        if let Some(c) = self.slots.remove(key) {
            self.bytes -= body_len(&c.slot);
            self.by_use.remove(&c.used);
        }
    }

    /// Sets `key`'s promise, if it is cached.
    fn promise(&mut self, key: &DurableKey, ballot: Ballot) {
        if let Some(c) = self.slots.get_mut(key) {
            c.slot.promised = ballot;
        }
    }
}

/// Where a key's patches start and end in the `patches` family.
fn patch_range(key: &DurableKey) -> (Vec<u8>, Vec<u8>) {
    let mut from = key.as_str().as_bytes().to_vec();
    let mut to = from.clone();
    // Keys hold no control characters, so no other key's patches fall between.
    from.push(0);
    to.push(1);
    (from, to)
}

fn patch_key(key: &DurableKey, index: usize) -> Vec<u8> {
    let mut k = patch_range(key).0;
    // `index < PATCHES_MAX`, so it fits.
    k.extend_from_slice(&(index as u32).to_be_bytes());
    k
}

/// Where a node's replica store lives under its data dir.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("durable")
}

/// Why the store did not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data on disk is damaged (a bad log record, a bad table, a bad
    /// manifest): the node must not serve as a replica until it is repaired.
    #[error(
        "the replica store at {path} is corrupt ({why}); this node serves no durable \
         actors until it is repaired: move the directory aside to rebuild it from \
         the other replicas"
    )]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// rocksdb's words.
        why: String,
    },
    /// Anything else: the directory cannot be created, another process holds the
    /// store's lock, the disk fails.
    #[error("the replica store at {path}: {why}")]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// What failed.
        why: String,
    },
}

/// When a write is durable (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Durability {
    /// Writes are synced in groups by the driver, off the async workers.
    #[default]
    Group,
    /// Every write is synced before it returns.
    Each,
}

/// A rocksdb-backed [`SlotStore`].
pub struct RocksStore {
    db: Arc<DB>,
    path: PathBuf,
    durability: Durability,
    /// Writes made so far without a sync (group commit), counted from open.
    written: u64,
    /// Newest slots (`get` takes `&self`, and fills it on a miss).
    cache: RefCell<Cache>,
}

/// Syncs a [`RocksStore`]'s log from another thread: every write made before
/// [`Syncer::sync`] is called is durable when it returns `Ok`.
#[derive(Clone)]
pub struct Syncer {
    db: Arc<DB>,
    path: PathBuf,
}

impl Syncer {
    /// Syncs the write-ahead log (blocking: run it off the async workers).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db
            .flush_wal(true)
            .map_err(|e| store_error(&self.path, e))
    }
}

impl RocksStore {
    /// Opens (creating it if missing) the store at `path`, with group commit.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        Self::open_with(path, Durability::Group)
    }

    /// Opens the store at `path` with the given durability.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, OpenError> {
        std::fs::create_dir_all(path).map_err(|e| OpenError::Io {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.set_paranoid_checks(true);
        // Small values, few keys per node: keep the footprint modest.
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(4);
        // A write-ahead log is deleted only once both column families have
        // flushed what it holds; promises are written rarely, so without a cap
        // their unflushed memtable would pin every log since. Past the cap
        // rocksdb flushes the family pinning the oldest log.
        opts.set_max_total_wal_size(64 << 20);
        let db = DB::open_cf(&opts, path, ["default", PROMISES, PATCHES]).map_err(|e| {
            let why = e.to_string();
            if e.kind() == rocksdb::ErrorKind::Corruption {
                OpenError::Corrupt {
                    path: path.to_path_buf(),
                    why,
                }
            } else {
                OpenError::Io {
                    path: path.to_path_buf(),
                    why,
                }
            }
        })?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
            durability,
            written: 0,
            cache: RefCell::new(Cache::new(CACHE_BYTES_MAX)),
        })
    }

    /// How writes become durable.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How many writes were made since the store opened that only a sync makes
    /// durable (always 0 when each write is synced).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A handle that syncs this store's log from another thread.
    pub fn syncer(&self) -> Syncer {
        Syncer {
            db: self.db.clone(),
            path: self.path.clone(),
        }
    }

    fn promises(&self) -> Result<&ColumnFamily, StoreError> {
        self.family(PROMISES)
    }

    fn family(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Io(format!("{}: no `{name}` family", self.path.display())))
    }

    /// Writes `batch`, which stores `slot` for `key` (whole, or as the last of
    /// `chain`'s patches: their count and bytes), clearing a raised promise in
    /// the same batch; the cache follows what the disk holds.
    fn write_slot(
        &mut self,
        key: &DurableKey,
        mut batch: WriteBatch,
        slot: Slot,
        chain: (usize, usize),
    ) -> Result<(), StoreError> {
        // Only fences write promises: most writes find none to clear, and a
        // tombstone per write would keep the family's memtable and the shared log
        // growing.
        if self.raised(key)?.is_some() {
            batch.delete_cf(self.promises()?, key.as_str().as_bytes());
        }
        let opts = self.write_options();
        let result = self
            .db
            .write_opt(batch, &opts)
            .map_err(|e| store_error(&self.path, e));
        let mut cache = self.cache.borrow_mut();
        match &result {
            Ok(()) => cache.insert(key, slot, chain.0, chain.1),
            Err(_) => cache.remove(key),
        }
        result
    }

    /// Reads `key`'s slot from disk: the base, then its patches in order. Returns
    /// the slot with the chain's length and bytes.
    fn read(&self, key: &DurableKey) -> Result<Option<(Slot, usize, usize)>, StoreError> {
        let corrupt = |error| StoreError::Corrupt {
            key: key.to_string(),
            error,
        };
        let base = match self
            .db
            .get(key.as_str().as_bytes())
            .map_err(|e| store_error(&self.path, e))?
        {
            Some(bytes) => Some(decode_slot(&bytes).map_err(corrupt)?),
            None => None,
        };
        let mut slot = match (base, self.raised(key)?) {
            (Some(mut slot), Some(p)) => {
                slot.promised = slot.promised.max(p);
                slot
            }
            (Some(slot), None) => slot,
            (None, Some(p)) => {
                return Ok(Some((
                    Slot {
                        promised: p,
                        record: None,
                        digest: None,
                    },
                    0,
                    0,
                )));
            }
            (None, None) => return Ok(None),
        };
        let (from, to) = patch_range(key);
        let mut read = rocksdb::ReadOptions::default();
        read.set_iterate_upper_bound(to);
        let items = self.db.iterator_cf_opt(
            self.family(PATCHES)?,
            read,
            rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
        );
        let (mut patches, mut patch_bytes) = (0, 0);
        for item in items {
            let (_, bytes) = item.map_err(|e| store_error(&self.path, e))?;
            let patch: RecordPatch =
                codec::decode_with_limit(&bytes, plexus_durable::wire::MSG_BYTES_MAX)
                    .map_err(corrupt)?;
            let broken = |why: String| StoreError::Corrupt {
                key: key.to_string(),
                error: codec::CodecError::Malformed(why),
            };
            let Some(base) = slot.record.as_ref() else {
                return Err(broken(format!("patch {patches} has no base")));
            };
            let record = patch
                .apply_to(base, plexus_durable::STATE_BYTES_MAX)
                .map_err(|e| broken(format!("patch {patches}: {e}")))?;
            slot.record = Some(record);
            // `apply_to` checked the body against it.
            slot.digest = Some(patch.digest);
            slot.promised = slot.promised.max(patch.ballot);
            patches += 1;
            patch_bytes += patch.patch.inserted();
        }
        Ok(Some((slot, patches, patch_bytes)))
    }

    fn raised(&self, key: &DurableKey) -> Result<Option<Ballot>, StoreError> {
        let Some(bytes) = self
            .db
            .get_cf(self.promises()?, key.as_str().as_bytes())
            .map_err(|e| store_error(&self.path, e))?
        else {
            return Ok(None);
        };
        codec::decode_with_limit(&bytes, 1024)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                key: key.to_string(),
                error,
            })
    }

    /// The options of one write, counted if it waits for a group sync.
    fn write_options(&mut self) -> WriteOptions {
        let mut w = WriteOptions::default();
        match self.durability {
            Durability::Each => w.set_sync(true),
            Durability::Group => self.written += 1,
        }
        w
    }
}

fn store_error(path: &Path, e: rocksdb::Error) -> StoreError {
    StoreError::Io(format!("rocksdb at {}: {e}", path.display()))
}

impl SlotStore for RocksStore {
    fn get(&self, key: &DurableKey) -> Result<Option<Slot>, StoreError> {
        if let Some(c) = self.cache.borrow_mut().get(key) {
            return Ok(Some(c.slot.clone()));
        }
        let Some((slot, patches, patch_bytes)) = self.read(key)? else {
            return Ok(None);
        };
        self.cache
            .borrow_mut()
            .insert(key, slot.clone(), patches, patch_bytes);
        Ok(Some(slot))
    }

    fn put(&mut self, key: &DurableKey, slot: Slot) -> Result<(), StoreError> {
        let bytes = encode_slot(&slot).map_err(|e| StoreError::Io(e.to_string()))?;
        let mut batch = WriteBatch::default();
        batch.put(key.as_str().as_bytes(), bytes);
        // Clear the chain, unless the cache knows there is none (a range tombstone
        // per whole write would pile up when patches are off).
        let chained = self.cache.borrow_mut().get(key).map(|c| c.patches);
        if chained != Some(0) {
            let (from, to) = patch_range(key);
            batch.delete_range_cf(self.family(PATCHES)?, from, to);
        }
        self.write_slot(key, batch, slot, (0, 0))
    }

    fn put_patched(
        &mut self,
        key: &DurableKey,
        slot: Slot,
        patch: &RecordPatch,
    ) -> Result<(), StoreError> {
        // The chain continues only from the record the cache holds (the one the
        // replica just read); anything else is stored whole.
        let chain = self.cache.borrow_mut().get(key).and_then(|c| {
            let follows = c
                .slot
                .record
                .as_ref()
                .is_some_and(|r| r.order() == patch.base);
            let bytes = c.patch_bytes + patch.patch.inserted();
            (follows && c.patches < PATCHES_MAX && bytes <= body_len(&slot) / 2)
                .then_some((c.patches, bytes))
        });
        let Some((index, patch_bytes)) = chain else {
            return self.put(key, slot);
        };
        let bytes = codec::encode(patch).map_err(|e| StoreError::Io(e.to_string()))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(PATCHES)?, patch_key(key, index), bytes);
        self.write_slot(key, batch, slot, (index + 1, patch_bytes))
    }

    fn promise(&mut self, key: &DurableKey, ballot: Ballot) -> Result<(), StoreError> {
        let bytes = codec::encode(&ballot).map_err(|e| StoreError::Io(e.to_string()))?;
        let opts = self.write_options();
        let result = self
            .db
            .put_cf_opt(self.promises()?, key.as_str().as_bytes(), bytes, &opts)
            .map_err(|e| store_error(&self.path, e));
        let mut cache = self.cache.borrow_mut();
        match &result {
            Ok(()) => cache.promise(key, ballot),
            Err(_) => cache.remove(key),
        }
        result
    }

    fn delete(&mut self, key: &DurableKey) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete(key.as_str().as_bytes());
        batch.delete_cf(self.promises()?, key.as_str().as_bytes());
        let (from, to) = patch_range(key);
        batch.delete_range_cf(self.family(PATCHES)?, from, to);
        let opts = self.write_options();
        let result = self
            .db
            .write_opt(batch, &opts)
            .map_err(|e| store_error(&self.path, e));
        self.cache.borrow_mut().remove(key);
        result
    }

    fn keys(&self) -> Result<Vec<DurableKey>, StoreError> {
        let mut out = std::collections::BTreeSet::new();
        let items = self.db.iterator(rocksdb::IteratorMode::Start).chain(
            self.db
                .iterator_cf(self.promises()?, rocksdb::IteratorMode::Start),
        );
        for item in items {
            let (k, _) = item.map_err(|e| store_error(&self.path, e))?;
            let text = String::from_utf8_lossy(&k);
            if let Ok(key) = DurableKey::new(&text) {
                out.insert(key);
            }
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::NodeId;
    use plexus_durable::types::{Ballot, Record, ReplicaSet};

    fn slot(version: u64) -> Slot {
        let ballot = Ballot {
            round: 2,
            node: NodeId::synthetic(1),
        };
        Slot {
            promised: ballot,
            record: Some(Record {
                ballot,
                version,
                set: ReplicaSet::single(NodeId::synthetic(1)),
                body: vec![7; 100].into(),
            }),
            digest: None,
        }
    }

    /// An empty directory for one test (`tag` tells tests apart).
    fn fresh_dir(tag: u32) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("plexus-store-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn slots_survive_reopening_and_deletes_stick() {
        let dir = fresh_dir(line!());
        let a = DurableKey::new("job/stage/0").unwrap();
        let b = DurableKey::new("job/stage/1").unwrap();
        {
            let mut s = RocksStore::open(&dir).unwrap();
            assert_eq!(s.get(&a).unwrap(), None);
            s.put(&a, slot(1)).unwrap();
            s.put(&a, slot(2)).unwrap();
            s.put(&b, slot(5)).unwrap();
            s.delete(&b).unwrap();
        }
        let mut s = RocksStore::open(&dir).unwrap();
        assert_eq!(s.get(&a).unwrap(), Some(slot(2)));
        assert_eq!(s.get(&b).unwrap(), None);
        assert_eq!(s.keys().unwrap(), vec![a.clone()]);
        // A promise raised alone (a fence) keeps the record and survives reopening;
        // the next put supersedes it.
        let higher = Ballot {
            round: 9,
            node: NodeId::synthetic(3),
        };
        s.promise(&a, higher).unwrap();
        let c = DurableKey::new("job/stage/2").unwrap();
        s.promise(&c, higher).unwrap();
        drop(s);
        let mut s = RocksStore::open(&dir).unwrap();
        let mut expect = slot(2);
        expect.promised = higher;
        assert_eq!(s.get(&a).unwrap(), Some(expect));
        assert_eq!(
            s.get(&c).unwrap(),
            Some(Slot {
                promised: higher,
                record: None,
                digest: None,
            })
        );
        assert_eq!(s.keys().unwrap(), vec![a.clone(), c.clone()]);
        s.put(&a, slot(3)).unwrap();
        assert_eq!(
            s.get(&a).unwrap(),
            Some(slot(3)),
            "the put's promise stands"
        );
        s.delete(&c).unwrap();
        assert_eq!(s.get(&c).unwrap(), None);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn group_commit_counts_writes_and_a_sync_from_another_thread_covers_them() {
        let dir = fresh_dir(line!());
        let a = DurableKey::new("job/stage/0").unwrap();
        {
            let mut s = RocksStore::open(&dir).unwrap();
            assert_eq!(s.durability(), Durability::Group);
            s.put(&a, slot(1)).unwrap();
            s.promise(&a, slot(1).promised).unwrap();
            s.delete(&a).unwrap();
            s.put(&a, slot(2)).unwrap();
            assert_eq!(s.written(), 4, "every write waits for a sync");
            // Reads see writes at once.
            assert_eq!(s.get(&a).unwrap(), Some(slot(2)));
            let syncer = s.syncer();
            std::thread::spawn(move || syncer.sync())
                .join()
                .unwrap()
                .unwrap();
        }
        let mut s = RocksStore::open_with(&dir, Durability::Each).unwrap();
        assert_eq!(s.get(&a).unwrap(), Some(slot(2)));
        s.put(&a, slot(3)).unwrap();
        assert_eq!(s.written(), 0, "each write was synced in place");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A slot with a 1,000-byte body.
    fn base() -> Slot {
        let mut s = slot(1);
        s.record.as_mut().unwrap().body = vec![7; 1_000].into();
        s
    }

    /// The slot after `base()` patched `n` times, one byte each.
    fn patched(n: usize) -> Vec<(Slot, RecordPatch)> {
        let mut out = Vec::new();
        let mut prev = base();
        for i in 0..n {
            let mut next = prev.clone();
            let record = next.record.as_mut().unwrap();
            record.version += 1;
            let mut body = record.body.to_vec();
            body[i] = 100;
            record.body = body.into();
            let old = prev.record.as_ref().unwrap();
            let patch = RecordPatch {
                ballot: record.ballot,
                version: record.version,
                set: record.set.clone(),
                base: old.order(),
                patch: plexus_durable::patch::diff(&old.body, &record.body),
                digest: *blake3::hash(&record.body).as_bytes(),
            };
            out.push((next.clone(), patch));
            prev = next;
        }
        out
    }

    fn stored_patches(s: &RocksStore) -> usize {
        s.db.iterator_cf(s.family(PATCHES).unwrap(), rocksdb::IteratorMode::Start)
            .count()
    }

    #[test]
    fn patched_records_are_stored_as_patches_and_replayed_after_reopening() {
        let dir = fresh_dir(line!());
        let a = DurableKey::new("job/stage/0").unwrap();
        let b = DurableKey::new("job/stage/00").unwrap();
        let chain = patched(PATCHES_MAX + 3);
        {
            let mut s = RocksStore::open(&dir).unwrap();
            s.put(&a, base()).unwrap();
            s.put(&b, base()).unwrap();
            for (next, patch) in &chain[..5] {
                s.put_patched(&a, next.clone(), patch).unwrap();
            }
            assert_eq!(stored_patches(&s), 5, "five patches, no record rewritten");
            assert_eq!(s.get(&a).unwrap().as_ref(), Some(&chain[4].0));
        }
        // Cold: the base plus five patches, replayed; another key's slot intact.
        let mut s = RocksStore::open(&dir).unwrap();
        let replayed = s.get(&a).unwrap();
        assert_eq!(replayed.as_ref(), Some(&chain[4].0));
        // Replaying the chain checked each digest: the last one is the body's.
        let body = &chain[4].0.record.as_ref().unwrap().body;
        assert_eq!(
            replayed.and_then(|s| s.digest),
            Some(*blake3::hash(body).as_bytes())
        );
        assert_eq!(s.get(&b).unwrap(), Some(base()));
        // A fence's promise over a patched record.
        let higher = Ballot {
            round: 9,
            node: NodeId::synthetic(3),
        };
        s.promise(&a, higher).unwrap();
        drop(s);
        let mut s = RocksStore::open(&dir).unwrap();
        let mut expect = chain[4].0.clone();
        expect.promised = higher;
        assert_eq!(s.get(&a).unwrap(), Some(expect));
        // Past the chain's bound the record is stored whole, and the chain restarts:
        // 64 patches, one whole record, two patches.
        for (i, (next, patch)) in chain.iter().enumerate().skip(5) {
            s.put_patched(&a, next.clone(), patch).unwrap();
            if i + 1 == PATCHES_MAX {
                assert_eq!(stored_patches(&s), PATCHES_MAX);
            }
        }
        let last = &chain[chain.len() - 1].0;
        assert_eq!(s.get(&a).unwrap().as_ref(), Some(last));
        assert_eq!(stored_patches(&s), 2);
        // A patch that does not follow the cached record is stored whole.
        let (stray, mut patch) = chain[2].clone();
        patch.base.1 = 999;
        s.put_patched(&b, stray.clone(), &patch).unwrap();
        drop(s);
        let mut s = RocksStore::open(&dir).unwrap();
        assert_eq!(s.get(&a).unwrap().as_ref(), Some(last));
        assert_eq!(s.get(&b).unwrap(), Some(stray));
        s.delete(&a).unwrap();
        assert_eq!(stored_patches(&s), 0, "a delete clears the chain");
        drop(s);
        let s = RocksStore::open(&dir).unwrap();
        assert_eq!(s.get(&a).unwrap(), None);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cache_keeps_its_bound_and_evicts_the_least_recently_used() {
        let mut cache = Cache::new(250);
        let keys: Vec<DurableKey> = (0..3)
            .map(|i| DurableKey::new(&format!("k{i}")).unwrap())
            .collect();
        for k in &keys[..2] {
            cache.insert(k, slot(1), 0, 0);
        }
        assert_eq!(cache.bytes, 200);
        // k0 used since k1: k1 goes when k2 comes.
        assert!(cache.get(&keys[0]).is_some());
        cache.insert(&keys[2], slot(2), 0, 0);
        assert_eq!(cache.bytes, 200);
        assert!(cache.slots.contains_key(&keys[0]));
        assert!(!cache.slots.contains_key(&keys[1]));
        assert_eq!(cache.by_use.len(), cache.slots.len());
        // Replacing an entry counts it once; removing it frees it.
        cache.insert(&keys[2], slot(3), 1, 5);
        assert_eq!(cache.bytes, 200);
        cache.remove(&keys[0]);
        assert_eq!(
            (cache.bytes, cache.slots.len(), cache.by_use.len()),
            (100, 1, 1)
        );
        // One entry over the bound stays: the newest is always kept.
        let mut big = slot(4);
        big.record.as_mut().unwrap().body = vec![0; 1_000].into();
        cache.insert(&keys[1], big, 0, 0);
        assert_eq!(cache.slots.len(), 1);
        assert!(cache.slots.contains_key(&keys[1]));
    }

    #[test]
    fn a_damaged_patch_is_a_corrupt_slot() {
        let dir = fresh_dir(line!());
        let a = DurableKey::new("a").unwrap();
        let chain = patched(2);
        {
            let mut s = RocksStore::open(&dir).unwrap();
            s.put(&a, base()).unwrap();
            for (next, patch) in &chain {
                s.put_patched(&a, next.clone(), patch).unwrap();
            }
            // The second patch's digest no longer matches what it builds.
            let mut bad = chain[1].1.clone();
            bad.digest[0] ^= 1;
            let family = s.family(PATCHES).unwrap();
            s.db.put_cf(family, patch_key(&a, 1), codec::encode(&bad).unwrap())
                .unwrap();
            s.db.put_cf(family, patch_key(&a, 2), b"\xff garbage")
                .unwrap();
        }
        let s = RocksStore::open(&dir).unwrap();
        assert!(matches!(s.get(&a), Err(StoreError::Corrupt { .. })));
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_slot_is_an_error_not_a_panic() {
        let dir = fresh_dir(line!());
        let s = RocksStore::open(&dir).unwrap();
        s.db.put(b"k", b"\xff garbage").unwrap();
        let k = DurableKey::new("k").unwrap();
        assert!(s.get(&k).is_err());
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A record damaged in the middle of the write-ahead log fails the open, where
    /// rocksdb's default recovery would drop it and every later write without a
    /// word. The test writes three slots, flips bytes inside the log after the
    /// first, and reopens.
    #[test]
    fn a_damaged_log_is_refused_not_truncated() {
        let dir = fresh_dir(line!());
        let keys: Vec<DurableKey> = (0..3)
            .map(|i| DurableKey::new(&format!("job/stage/{i}")).unwrap())
            .collect();
        {
            let mut s = RocksStore::open(&dir).unwrap();
            for (i, k) in keys.iter().enumerate() {
                s.put(k, slot(i as u64 + 1)).unwrap();
            }
        }
        let log = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a write-ahead log");
        let mut bytes = std::fs::read(&log).unwrap();
        assert!(bytes.len() > 300, "the log holds the three writes");
        // Inside the second record's payload (each holds a 100-byte body).
        let at = bytes.len() / 2;
        for b in &mut bytes[at..at + 8] {
            *b ^= 0xff;
        }
        std::fs::write(&log, &bytes).unwrap();
        match RocksStore::open(&dir) {
            Err(OpenError::Corrupt { .. }) => {}
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(s) => panic!(
                "a damaged log opened; slots left: {:?}",
                keys.iter()
                    .map(|k| s.get(k).unwrap().is_some())
                    .collect::<Vec<_>>()
            ),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
