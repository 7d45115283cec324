//! The epoch service's durable state, in its own rocksdb under `data_dir/epochs`:
//! the vote log (the one-signature-per-epoch rule's memory), the DKG outcome (the
//! node's secret share and the committee's public sharing), and every signed
//! checkpoint this node learned.
//!
//! Votes are written with `sync`: [`VoteLog::record`] returns only once the vote is
//! on disk, and only then does the agreement core release the partial.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use commonware_codec::{Decode, DecodeExt, Encode};
use plexus_actors::NodeId;
use plexus_actors::codec;
use plexus_epochs::agreement::{VoteLog, VoteLogError};
use plexus_epochs::checkpoint::{CheckpointHash, SignedCheckpoint};
use plexus_epochs::dkg::DkgOutcome;
use plexus_epochs::threshold::{PublicSharing, SecretShare};
use rocksdb::{DB, Options, WriteOptions};
use serde::{Deserialize, Serialize};

/// Where the store lives under a node's data dir.
pub fn epochs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("epochs")
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EpochStoreError {
    /// rocksdb failed.
    #[error("epoch store at {path}: {why}")]
    Io {
        /// The store.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// A stored value does not decode.
    #[error("epoch store: corrupt {what}: {why}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why.
        why: String,
    },
}

/// The stored DKG outcome.
#[derive(Serialize, Deserialize)]
struct StoredDkg {
    round: u64,
    committee: Vec<NodeId>,
    #[serde(with = "serde_bytes")]
    sharing: Vec<u8>,
    #[serde(with = "serde_bytes")]
    share: Vec<u8>,
    digest: [u8; 32],
}

/// The epoch store (cheap to clone; one rocksdb).
#[derive(Clone)]
pub struct EpochStore {
    db: Arc<DB>,
    path: PathBuf,
}

fn vote_key(epoch: u64) -> Vec<u8> {
    let mut k = b"vote/".to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

fn checkpoint_key(epoch: u64) -> Vec<u8> {
    let mut k = b"checkpoint/".to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

impl EpochStore {
    /// Opens (creating) the store.
    pub fn open(path: &Path) -> Result<Self, EpochStoreError> {
        let io = |e: &dyn std::fmt::Display| EpochStoreError::Io {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        std::fs::create_dir_all(path).map_err(|e| io(&e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_paranoid_checks(true);
        let db = DB::open(&opts, path).map_err(|e| io(&e))?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
        })
    }

    fn put_sync(&self, key: &[u8], value: &[u8]) -> Result<(), EpochStoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db
            .put_opt(key, value, &w)
            .map_err(|e| EpochStoreError::Io {
                path: self.path.clone(),
                why: e.to_string(),
            })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EpochStoreError> {
        self.db.get(key).map_err(|e| EpochStoreError::Io {
            path: self.path.clone(),
            why: e.to_string(),
        })
    }

    /// Saves the DKG outcome (durably, before the share is used).
    pub fn save_dkg(&self, outcome: &DkgOutcome) -> Result<(), EpochStoreError> {
        let stored = StoredDkg {
            round: outcome.round,
            committee: outcome.committee.clone(),
            sharing: outcome.sharing.encode().to_vec(),
            share: outcome.share.encode().to_vec(),
            digest: outcome.digest,
        };
        let bytes = codec::encode(&stored).map_err(|e| EpochStoreError::Corrupt {
            what: "dkg outcome",
            why: e.to_string(),
        })?;
        self.put_sync(b"dkg", &bytes)
    }

    /// The saved DKG outcome, if any.
    pub fn load_dkg(&self) -> Result<Option<DkgOutcome>, EpochStoreError> {
        let Some(bytes) = self.get(b"dkg")? else {
            return Ok(None);
        };
        let corrupt = |why: String| EpochStoreError::Corrupt {
            what: "dkg outcome",
            why,
        };
        let stored: StoredDkg = codec::decode(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let n = std::num::NonZeroU32::new(stored.committee.len() as u32)
            .ok_or_else(|| corrupt("empty committee".into()))?;
        let sharing = PublicSharing::decode_cfg(
            stored.sharing.clone(),
            &(
                n,
                commonware_cryptography::bls12381::primitives::sharing::ModeVersion::v0(),
            ),
        )
        .map_err(|e| corrupt(e.to_string()))?;
        let share =
            SecretShare::decode(stored.share.clone()).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(DkgOutcome {
            round: stored.round,
            committee: stored.committee,
            sharing,
            share,
            digest: stored.digest,
        }))
    }

    /// Saves a signed checkpoint.
    pub fn save_checkpoint(&self, signed: &SignedCheckpoint) -> Result<(), EpochStoreError> {
        let bytes = signed.encode().map_err(|e| EpochStoreError::Corrupt {
            what: "checkpoint",
            why: e.to_string(),
        })?;
        self.put_sync(&checkpoint_key(signed.checkpoint.epoch), &bytes)
    }

    /// A saved checkpoint.
    pub fn checkpoint(&self, epoch: u64) -> Result<Option<SignedCheckpoint>, EpochStoreError> {
        let Some(bytes) = self.get(&checkpoint_key(epoch))? else {
            return Ok(None);
        };
        SignedCheckpoint::decode(&bytes)
            .map(Some)
            .map_err(|e| EpochStoreError::Corrupt {
                what: "checkpoint",
                why: e.to_string(),
            })
    }

    /// Every saved checkpoint, oldest first (at most `max`, the newest ones).
    pub fn checkpoints(&self, max: usize) -> Result<Vec<SignedCheckpoint>, EpochStoreError> {
        let mut out = Vec::new();
        let iter = self.db.iterator(rocksdb::IteratorMode::From(
            &checkpoint_key(u64::MAX),
            rocksdb::Direction::Reverse,
        ));
        for item in iter {
            let (key, value) = item.map_err(|e| EpochStoreError::Io {
                path: self.path.clone(),
                why: e.to_string(),
            })?;
            if !key.starts_with(b"checkpoint/") || out.len() >= max {
                break;
            }
            out.push(
                SignedCheckpoint::decode(&value).map_err(|e| EpochStoreError::Corrupt {
                    what: "checkpoint",
                    why: e.to_string(),
                })?,
            );
        }
        out.reverse();
        Ok(out)
    }

    /// The vote log over this store.
    pub fn vote_log(&self) -> RocksVoteLog {
        RocksVoteLog {
            store: self.clone(),
        }
    }
}

/// The vote log: one durable record per epoch.
#[derive(Clone)]
pub struct RocksVoteLog {
    store: EpochStore,
}

impl VoteLog for RocksVoteLog {
    fn voted(&self, epoch: u64) -> Option<CheckpointHash> {
        // A read error counts as "voted for something else": refusing to vote is
        // the safe side (the epoch may fail; the member never signs twice).
        match self.store.get(&vote_key(epoch)) {
            Ok(Some(v)) => v.try_into().ok().or(Some([0xFF; 32])),
            Ok(None) => None,
            Err(_) => Some([0xFF; 32]),
        }
    }

    fn record(&mut self, epoch: u64, hash: CheckpointHash) -> Result<(), VoteLogError> {
        if let Some(h) = self.voted(epoch)
            && h != hash
        {
            return Err(VoteLogError::Store(format!(
                "epoch {epoch} already has a vote"
            )));
        }
        self.store
            .put_sync(&vote_key(epoch), &hash)
            .map_err(|e| VoteLogError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vote_survives_reopening_and_a_second_hash_is_refused() {
        let dir = std::env::temp_dir().join(format!("plexus-votes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = EpochStore::open(&dir).unwrap();
            let mut log = store.vote_log();
            assert_eq!(log.voted(3), None);
            log.record(3, [1; 32]).unwrap();
            log.record(3, [1; 32]).unwrap();
        }
        let store = EpochStore::open(&dir).unwrap();
        let mut log = store.vote_log();
        assert_eq!(log.voted(3), Some([1; 32]));
        assert!(log.record(3, [2; 32]).is_err());
        assert_eq!(log.voted(4), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
