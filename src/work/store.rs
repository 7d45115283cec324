//! The work service's store, its own rocksdb under `data_dir/work`: every signed
//! receipt this node made or heard (by epoch), the inputs of the batches this node
//! ran (so verifiers can fetch them), the evidence it holds, and each epoch's
//! tally as last computed.
//!
//! Retention: receipts and inputs older than the epochs the auditor keeps are
//! deleted ([`WorkStore::prune`]); tallies and evidence are kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexus_actors::codec;
use plexus_poai::{Digest, EpochWork, Evidence, SignedReceipt};
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch};

/// Where the store lives under a node's data dir.
pub fn work_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("work")
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkStoreError {
    /// rocksdb failed.
    #[error("work store at {path}: {why}")]
    Io {
        /// The store.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// A stored value does not decode.
    #[error("work store: corrupt {what}: {why}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why.
        why: String,
    },
}

/// The work store (cheap to clone; one rocksdb).
#[derive(Clone)]
pub struct WorkStore {
    db: Arc<DB>,
    path: PathBuf,
}

fn key(prefix: &[u8], epoch: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

const RECEIPT: &[u8] = b"receipt/";
const INPUTS: &[u8] = b"inputs/";
const EVIDENCE: &[u8] = b"evidence/";
const TALLY: &[u8] = b"tally/";

impl WorkStore {
    /// Opens (creating) the store.
    pub fn open(path: &Path) -> Result<Self, WorkStoreError> {
        let io = |e: &dyn std::fmt::Display| WorkStoreError::Io {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        std::fs::create_dir_all(path).map_err(|e| io(&e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_paranoid_checks(true);
        // Receipts are small: a small memtable (rocksdb preallocates its WAL to
        // about this size).
        opts.set_write_buffer_size(8 << 20);
        let db = DB::open(&opts, path).map_err(|e| io(&e))?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
        })
    }

    fn io(&self, e: impl std::fmt::Display) -> WorkStoreError {
        WorkStoreError::Io {
            path: self.path.clone(),
            why: e.to_string(),
        }
    }

    fn put<T: serde::Serialize>(&self, k: &[u8], v: &T) -> Result<(), WorkStoreError> {
        let bytes = codec::encode_body(v).map_err(|e| self.io(e))?;
        self.db.put(k, bytes).map_err(|e| self.io(e))
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        k: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, WorkStoreError> {
        match self.db.get(k).map_err(|e| self.io(e))? {
            None => Ok(None),
            Some(b) => codec::decode_body(&b, codec::FRAME_BYTES_MAX)
                .map(Some)
                .map_err(|e| WorkStoreError::Corrupt {
                    what,
                    why: e.to_string(),
                }),
        }
    }

    /// Keeps a signed receipt.
    pub fn put_receipt(&self, hash: &Digest, r: &SignedReceipt) -> Result<(), WorkStoreError> {
        self.put(&key(RECEIPT, r.receipt.epoch, hash), r)
    }

    /// Keeps the inputs of a batch this node ran.
    pub fn put_inputs(
        &self,
        epoch: u64,
        hash: &Digest,
        inputs: &[Vec<u8>],
    ) -> Result<(), WorkStoreError> {
        self.put(&key(INPUTS, epoch, hash), &inputs)
    }

    /// The inputs of a batch this node ran, if still kept.
    pub fn inputs(
        &self,
        epoch: u64,
        hash: &Digest,
    ) -> Result<Option<Vec<Vec<u8>>>, WorkStoreError> {
        self.get(&key(INPUTS, epoch, hash), "inputs")
    }

    /// Keeps a piece of evidence.
    pub fn put_evidence(&self, e: &Evidence) -> Result<(), WorkStoreError> {
        let against = e.against();
        let k = key(EVIDENCE, e.epoch(), against.to_string().as_bytes());
        self.put(&k, e)
    }

    /// Every piece of evidence kept, oldest epoch first.
    pub fn evidence(&self) -> Result<Vec<Evidence>, WorkStoreError> {
        self.scan(EVIDENCE, "evidence")
    }

    /// Keeps an epoch's tally (replacing an earlier one).
    pub fn put_tally(&self, work: &EpochWork) -> Result<(), WorkStoreError> {
        self.put(&key(TALLY, work.epoch, &[]), work)
    }

    /// Every tally kept, oldest first.
    pub fn tallies(&self) -> Result<Vec<EpochWork>, WorkStoreError> {
        self.scan(TALLY, "tally")
    }

    /// Receipts kept for `epoch`.
    pub fn receipts(&self, epoch: u64) -> Result<Vec<SignedReceipt>, WorkStoreError> {
        let prefix = key(RECEIPT, epoch, &[]);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.io(e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(codec::decode_body(&v, codec::FRAME_BYTES_MAX).map_err(|e| {
                WorkStoreError::Corrupt {
                    what: "receipt",
                    why: e.to_string(),
                }
            })?);
        }
        Ok(out)
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        what: &'static str,
    ) -> Result<Vec<T>, WorkStoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.io(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(codec::decode_body(&v, codec::FRAME_BYTES_MAX).map_err(|e| {
                WorkStoreError::Corrupt {
                    what,
                    why: e.to_string(),
                }
            })?);
        }
        Ok(out)
    }

    /// Deletes receipts and inputs of epochs before `epoch`.
    pub fn prune(&self, epoch: u64) -> Result<(), WorkStoreError> {
        let mut batch = WriteBatch::default();
        for prefix in [RECEIPT, INPUTS] {
            batch.delete_range(key(prefix, 0, &[]), key(prefix, epoch, &[]));
        }
        self.db.write(batch).map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_kept_by_epoch_and_pruned() {
        let dir = std::env::temp_dir().join(format!("plexus-work-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = WorkStore::open(&dir).unwrap();
        let h = [7u8; 32];
        store.put_inputs(3, &h, &[vec![1, 2], vec![3]]).unwrap();
        store.put_inputs(5, &h, &[vec![9]]).unwrap();
        assert_eq!(
            store.inputs(3, &h).unwrap(),
            Some(vec![vec![1, 2], vec![3]])
        );
        store.prune(4).unwrap();
        assert_eq!(store.inputs(3, &h).unwrap(), None);
        assert_eq!(store.inputs(5, &h).unwrap(), Some(vec![vec![9]]));
        let work = EpochWork {
            epoch: 5,
            ..EpochWork::default()
        };
        store.put_tally(&work).unwrap();
        assert_eq!(store.tallies().unwrap(), vec![work]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
