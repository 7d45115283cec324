//! The replica store on disk: one rocksdb database in the node's data dir, one key
//! per durable actor, every write synced before it returns.
//!
//! The durability argument (an acknowledged message's effect is at a majority of
//! replicas) needs the replicas' writes to survive a crash of their process and of
//! their machine, so every `put` and `delete` is a synced write: it returns only
//! once the write-ahead log is on disk. A write that fails is reported to the
//! replica, which answers `Failed` (counted as no answer), so nothing is promised
//! that is not stored.

use std::path::{Path, PathBuf};

use plexus_durable::replica::{Slot, SlotStore, StoreError, decode_slot, encode_slot};
use plexus_durable::types::DurableKey;
use rocksdb::{DB, Options, WriteOptions};

/// Where a node's replica store lives under its data dir.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("durable")
}

/// A rocksdb-backed [`SlotStore`].
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl RocksStore {
    /// Opens (creating it if missing) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Small values, few keys per node: keep the footprint modest.
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(4);
        let db = DB::open(&opts, path).map_err(|e| store_error(path, e))?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
        })
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }
}

fn store_error(path: &Path, e: rocksdb::Error) -> StoreError {
    StoreError::Io(format!("rocksdb at {}: {e}", path.display()))
}

impl SlotStore for RocksStore {
    fn get(&self, key: &DurableKey) -> Result<Option<Slot>, StoreError> {
        let Some(bytes) = self
            .db
            .get(key.as_str().as_bytes())
            .map_err(|e| store_error(&self.path, e))?
        else {
            return Ok(None);
        };
        decode_slot(&bytes)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                key: key.to_string(),
                error,
            })
    }

    fn put(&mut self, key: &DurableKey, slot: &Slot) -> Result<(), StoreError> {
        let bytes = encode_slot(slot).map_err(|e| StoreError::Io(e.to_string()))?;
        self.db
            .put_opt(key.as_str().as_bytes(), bytes, &Self::synced())
            .map_err(|e| store_error(&self.path, e))
    }

    fn delete(&mut self, key: &DurableKey) -> Result<(), StoreError> {
        self.db
            .delete_opt(key.as_str().as_bytes(), &Self::synced())
            .map_err(|e| store_error(&self.path, e))
    }

    fn keys(&self) -> Result<Vec<DurableKey>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator(rocksdb::IteratorMode::Start) {
            let (k, _) = item.map_err(|e| store_error(&self.path, e))?;
            let text = String::from_utf8_lossy(&k);
            if let Ok(key) = DurableKey::new(&text) {
                out.push(key);
            }
        }
        Ok(out)
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
                body: vec![7; 100],
            }),
        }
    }

    #[test]
    fn slots_survive_reopening_and_deletes_stick() {
        let dir = std::env::temp_dir().join(format!(
            "plexus-store-test-{}-{}",
            std::process::id(),
            line!()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let a = DurableKey::new("job/stage/0").unwrap();
        let b = DurableKey::new("job/stage/1").unwrap();
        {
            let mut s = RocksStore::open(&dir).unwrap();
            assert_eq!(s.get(&a).unwrap(), None);
            s.put(&a, &slot(1)).unwrap();
            s.put(&a, &slot(2)).unwrap();
            s.put(&b, &slot(5)).unwrap();
            s.delete(&b).unwrap();
        }
        let s = RocksStore::open(&dir).unwrap();
        assert_eq!(s.get(&a).unwrap(), Some(slot(2)));
        assert_eq!(s.get(&b).unwrap(), None);
        assert_eq!(s.keys().unwrap(), vec![a]);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_slot_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!(
            "plexus-store-test-{}-{}",
            std::process::id(),
            line!()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let s = RocksStore::open(&dir).unwrap();
        s.db.put(b"k", b"\xff garbage").unwrap();
        let k = DurableKey::new("k").unwrap();
        assert!(s.get(&k).is_err());
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
