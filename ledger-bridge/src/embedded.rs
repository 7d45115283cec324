//! The embedded ledger: a hash-linked, append-only log of anchored checkpoints in a
//! local rocksdb. The default ledger; a single machine needs no chain.
//!
//! It keeps the contract's rules (crate docs) itself: it verifies the group
//! signature against the network and group key it was opened with before it accepts
//! anything, one hash per epoch, idempotently. Anchors are final at once: an
//! [`AnchorOutcome::Anchored`] is returned only after the entry is written with a
//! synced write.
//!
//! # Entries and their links
//!
//! Entry `n` (the `n`-th anchor accepted, from 0) holds the epoch, the checkpoint
//! hash, the 48-byte group signature, the previous entry's hash
//! ([`GENESIS_ENTRY`] for entry 0) and its own hash:
//!
//! ```text
//! entry_hash = SHA-256( epoch (u64 big-endian) ‖ checkpoint hash (32) ‖ signature (48) ‖ previous entry hash (32) )
//! ```
//!
//! Beside it the ledger keeps the encoded `SignedCheckpoint`, so the full
//! checkpoint can be read back; it is bound to the entry through the checkpoint
//! hash (SHA-256 of its encoding), which the entry hash covers. The stored copy
//! carries a SHA-256 checksum of its own, because the signer list in it is
//! informational and no hash in the entry covers it.
//!
//! # On-disk layout (format [`FORMAT_VERSION`])
//!
//! | key | value |
//! |---|---|
//! | `m/version` | one byte, [`FORMAT_VERSION`] |
//! | `m/network` | the 32-byte network id the ledger was created for |
//! | `m/group_key` | the 96-byte compressed group key it was created for |
//! | `m/head` | entry count (u64 big-endian) ‖ hash of the last entry (32) |
//! | `e` ‖ n (u64 big-endian) | entry n: version (1) ‖ epoch (8, big-endian) ‖ checkpoint hash (32) ‖ signature (48) ‖ previous entry hash (32) ‖ entry hash (32): [`ENTRY_BYTES`] bytes |
//! | `c` ‖ n (u64 big-endian) | SHA-256 of the next part (32) ‖ entry n's encoded `SignedCheckpoint` (at most `CHECKPOINT_BYTES_MAX` bytes) |
//!
//! An anchor writes its entry, its checkpoint and the new head in one atomic, synced
//! batch.
//!
//! # Invariants, checked on open
//!
//! - Entries are numbered 0, 1, … without gaps, and there are `m/head`'s count of
//!   them, the last with `m/head`'s hash (so a dropped tail is detected).
//! - Each entry's hash is the hash of its contents, and each names its predecessor's
//!   hash (so a changed byte anywhere, or a rewritten entry, is detected).
//! - No epoch appears twice.
//!
//! Opening checks every entry (about 150 bytes each: cheap), not the stored
//! checkpoints, which can be up to a megabyte each. A stored checkpoint is checked
//! against its entry whenever it is read ([`EmbeddedLedger::checkpoint`]), and
//! [`EmbeddedLedger::audit`] checks every one of them and its signature.
//!
//! # Bounds
//!
//! At most [`ENTRIES_MAX`] entries (past it, [`AnchorError::Full`]); the in-memory
//! index holds about 80 bytes per entry.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use plexus_epochs::checkpoint::{
    CHECKPOINT_BYTES_MAX, CheckpointError, CheckpointHash, SignedCheckpoint,
};
use plexus_epochs::threshold::{self, SIGNATURE_BYTES, ThresholdError};
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};
use sha2::{Digest, Sha256};

use crate::{Anchor, AnchorError, AnchorOutcome, AnchorRecord, AnchorStatus, Location};

/// The on-disk format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Most entries one ledger holds (an epoch a day fills it in over two thousand
/// years).
pub const ENTRIES_MAX: u64 = 1 << 20;

/// Bytes of one stored entry.
pub const ENTRY_BYTES: usize = 1 + 8 + 32 + SIGNATURE_BYTES + 32 + 32;

/// The "previous entry hash" of entry 0.
pub const GENESIS_ENTRY: [u8; 32] = [0; 32];

const KEY_VERSION: &[u8] = b"m/version";
const KEY_NETWORK: &[u8] = b"m/network";
const KEY_GROUP_KEY: &[u8] = b"m/group_key";
const KEY_HEAD: &[u8] = b"m/head";
const ENTRY_PREFIX: u8 = b'e';
const BODY_PREFIX: u8 = b'c';

fn key(prefix: u8, sequence: u64) -> [u8; 9] {
    let mut k = [prefix; 9];
    k[1..].copy_from_slice(&sequence.to_be_bytes());
    k
}

/// One entry of the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Position in the ledger (0 for the first).
    pub sequence: u64,
    /// The epoch anchored.
    pub epoch: u64,
    /// Its checkpoint hash.
    pub checkpoint_hash: CheckpointHash,
    /// The group signature over the epoch's signing message.
    pub signature: [u8; SIGNATURE_BYTES],
    /// The previous entry's hash ([`GENESIS_ENTRY`] for entry 0).
    pub previous: [u8; 32],
    /// This entry's hash ([`LedgerEntry::hash_of`] its other fields).
    pub entry_hash: [u8; 32],
}

impl LedgerEntry {
    /// The hash of an entry with these contents (see the module docs).
    pub fn hash_of(
        epoch: u64,
        checkpoint_hash: &CheckpointHash,
        signature: &[u8; SIGNATURE_BYTES],
        previous: &[u8; 32],
    ) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(epoch.to_be_bytes());
        h.update(checkpoint_hash);
        h.update(signature);
        h.update(previous);
        h.finalize().into()
    }

    /// Whether the stored entry hash is the hash of the contents.
    pub fn is_consistent(&self) -> bool {
        self.entry_hash
            == Self::hash_of(
                self.epoch,
                &self.checkpoint_hash,
                &self.signature,
                &self.previous,
            )
    }

    /// The anchor this entry records.
    pub fn record(&self) -> AnchorRecord {
        AnchorRecord {
            epoch: self.epoch,
            checkpoint_hash: self.checkpoint_hash,
            location: Location::Embedded {
                sequence: self.sequence,
                entry_hash: self.entry_hash,
            },
        }
    }

    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[0] = FORMAT_VERSION;
        let mut at = 1;
        for part in [
            &self.epoch.to_be_bytes()[..],
            &self.checkpoint_hash,
            &self.signature,
            &self.previous,
            &self.entry_hash,
        ] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out
    }

    fn decode(sequence: u64, bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != ENTRY_BYTES {
            return Err(format!("{} bytes, {ENTRY_BYTES} expected", bytes.len()));
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(format!("entry format {}", bytes[0]));
        }
        let mut rest = &bytes[1..];
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        };
        let epoch = u64::from_be_bytes(fixed(take(8)));
        Ok(Self {
            sequence,
            epoch,
            checkpoint_hash: fixed(take(32)),
            signature: fixed(take(SIGNATURE_BYTES)),
            previous: fixed(take(32)),
            entry_hash: fixed(take(32)),
        })
    }
}

/// `bytes` (whose length the caller has checked) as an array.
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// Why the embedded ledger could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    // --- The caller is at fault. ---
    /// The group key given is not a valid compressed G2 point.
    #[error("the group key is not a valid compressed G2 point")]
    BadGroupKey,
    /// The ledger was created for another network or group key than the one given.
    #[error("the ledger at this path belongs to another {what}")]
    Mismatch {
        /// `"network"` or `"group key"`.
        what: &'static str,
    },

    // --- The ledger is at fault. ---
    /// The storage failed.
    #[error("ledger storage: {0}")]
    Storage(String),
    /// Written by a build with another format.
    #[error("ledger format {0} is not supported (this build reads {FORMAT_VERSION})")]
    Version(u8),
    /// The stored data fails its checks (module docs, "Invariants").
    #[error("ledger corrupt at entry {sequence:?}: {why}")]
    Corrupt {
        /// The first entry found wrong, if one entry is to blame.
        sequence: Option<u64>,
        /// What is wrong.
        why: String,
    },
}

/// One anchored epoch, as the index holds it.
#[derive(Clone, Copy, Debug)]
struct Indexed {
    sequence: u64,
    checkpoint_hash: CheckpointHash,
    entry_hash: [u8; 32],
}

/// What the ledger knows in memory, rebuilt from disk on open.
#[derive(Debug, Default)]
struct State {
    /// Entries written.
    count: u64,
    /// Hash of the last entry ([`GENESIS_ENTRY`] when empty).
    head: [u8; 32],
    /// Epoch to its entry.
    by_epoch: BTreeMap<u64, Indexed>,
}

impl State {
    fn record(&self, epoch: u64) -> Option<AnchorRecord> {
        self.by_epoch.get(&epoch).map(|i| AnchorRecord {
            epoch,
            checkpoint_hash: i.checkpoint_hash,
            location: Location::Embedded {
                sequence: i.sequence,
                entry_hash: i.entry_hash,
            },
        })
    }
}

/// The embedded ledger (module docs). Cheap to share behind an `Arc`; anchors are
/// serialised by an internal lock, reads take it briefly.
pub struct EmbeddedLedger {
    db: DB,
    network: [u8; 32],
    group_key: Vec<u8>,
    state: Mutex<State>,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger")
            .field("path", &self.db.path())
            .field("entries", &self.len())
            .finish()
    }
}

fn storage(e: rocksdb::Error) -> AnchorError {
    AnchorError::Storage(e.to_string())
}

fn open_storage(e: rocksdb::Error) -> OpenError {
    OpenError::Storage(e.to_string())
}

impl EmbeddedLedger {
    /// Opens (creating if absent) the ledger at `path` for `network` and the
    /// compressed 96-byte `group_key`, and checks every entry (module docs).
    pub fn open(path: &Path, network: [u8; 32], group_key: &[u8]) -> Result<Self, OpenError> {
        threshold::decode_group_key(group_key).map_err(|_| OpenError::BadGroupKey)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path).map_err(open_storage)?;
        match db.get(KEY_VERSION).map_err(open_storage)? {
            None => {
                if db
                    .iterator(IteratorMode::Start)
                    .next()
                    .transpose()
                    .map_err(open_storage)?
                    .is_some()
                {
                    return Err(OpenError::Corrupt {
                        sequence: None,
                        why: "data without a format version".into(),
                    });
                }
                let mut batch = WriteBatch::default();
                batch.put(KEY_VERSION, [FORMAT_VERSION]);
                batch.put(KEY_NETWORK, network);
                batch.put(KEY_GROUP_KEY, group_key);
                batch.put(KEY_HEAD, head_bytes(0, &GENESIS_ENTRY));
                db.write_opt(batch, &synced()).map_err(open_storage)?;
            }
            Some(v) if v.as_slice() == [FORMAT_VERSION] => {}
            Some(v) => return Err(OpenError::Version(v.first().copied().unwrap_or(0))),
        }
        if db.get(KEY_NETWORK).map_err(open_storage)?.as_deref() != Some(&network[..]) {
            return Err(OpenError::Mismatch { what: "network" });
        }
        if db.get(KEY_GROUP_KEY).map_err(open_storage)?.as_deref() != Some(group_key) {
            return Err(OpenError::Mismatch { what: "group key" });
        }
        let state = walk(&db).map_err(|w| match w {
            Walk::Storage(e) => open_storage(e),
            Walk::Corrupt { sequence, why } => OpenError::Corrupt { sequence, why },
        })?;
        Ok(Self {
            db,
            network,
            group_key: group_key.to_vec(),
            state: Mutex::new(state),
        })
    }

    /// The network id the ledger is for.
    pub fn network(&self) -> [u8; 32] {
        self.network
    }

    /// The compressed group key the ledger verifies against.
    pub fn group_key(&self) -> &[u8] {
        &self.group_key
    }

    /// Entries in the ledger.
    pub fn len(&self) -> u64 {
        self.lock().count
    }

    /// Whether the ledger has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hash of the last entry ([`GENESIS_ENTRY`] when empty).
    pub fn head(&self) -> [u8; 32] {
        self.lock().head
    }

    /// The highest anchored epoch.
    pub fn latest_epoch(&self) -> Option<u64> {
        self.lock().by_epoch.keys().next_back().copied()
    }

    /// The anchor of `epoch`, from the in-memory index.
    pub fn record(&self, epoch: u64) -> Option<AnchorRecord> {
        self.lock().record(epoch)
    }

    /// Anchors `signed`: checks the rules (crate docs), then appends an entry with
    /// a synced write.
    pub fn anchor_signed(&self, signed: &SignedCheckpoint) -> Result<AnchorOutcome, AnchorError> {
        let epoch = signed.checkpoint.epoch;
        let malformed = |why: String| AnchorError::Malformed { epoch, why };
        let hash = signed.hash().map_err(|e| malformed(e.to_string()))?;
        // Held to the end: anchors are serialised, so the index cannot change between
        // the idempotency check and the write.
        let mut st = self.lock();
        if let Some(record) = st.record(epoch) {
            return if record.checkpoint_hash == hash {
                Ok(AnchorOutcome::AlreadyAnchored(record))
            } else {
                Err(AnchorError::Conflict {
                    epoch,
                    anchored: record.checkpoint_hash,
                    offered: hash,
                })
            };
        }
        if signed.checkpoint.network != self.network {
            return Err(AnchorError::WrongNetwork { epoch });
        }
        signed.verify(Some(&self.group_key)).map_err(|e| match e {
            CheckpointError::WrongGroupKey => AnchorError::WrongGroupKey { epoch },
            // As on chain: a signature that is not even a point is not the group's.
            CheckpointError::Signature(ThresholdError::Invalid)
            | CheckpointError::Signature(ThresholdError::BadPoint { what: "signature" }) => {
                AnchorError::InvalidSignature { epoch }
            }
            other => malformed(other.to_string()),
        })?;
        if st.count >= ENTRIES_MAX {
            return Err(AnchorError::Full {
                entries_max: ENTRIES_MAX,
            });
        }
        let body = signed.encode().map_err(|e| malformed(e.to_string()))?;
        if body.len() > CHECKPOINT_BYTES_MAX {
            return Err(malformed(format!(
                "encoded checkpoint is {} bytes, over {CHECKPOINT_BYTES_MAX}",
                body.len()
            )));
        }
        let signature: [u8; SIGNATURE_BYTES] = signed
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| malformed("signature is not 48 bytes".into()))?;
        let sequence = st.count;
        let previous = st.head;
        let entry = LedgerEntry {
            sequence,
            epoch,
            checkpoint_hash: hash,
            signature,
            previous,
            entry_hash: LedgerEntry::hash_of(epoch, &hash, &signature, &previous),
        };
        let mut stored = Vec::with_capacity(32 + body.len());
        stored.extend_from_slice(&Sha256::digest(&body));
        stored.extend_from_slice(&body);
        let mut batch = WriteBatch::default();
        batch.put(key(ENTRY_PREFIX, sequence), entry.encode());
        batch.put(key(BODY_PREFIX, sequence), &stored);
        batch.put(KEY_HEAD, head_bytes(sequence + 1, &entry.entry_hash));
        self.db.write_opt(batch, &synced()).map_err(storage)?;
        st.count = sequence + 1;
        st.head = entry.entry_hash;
        st.by_epoch.insert(
            epoch,
            Indexed {
                sequence,
                checkpoint_hash: hash,
                entry_hash: entry.entry_hash,
            },
        );
        Ok(AnchorOutcome::Anchored {
            record: entry.record(),
            transaction: None,
        })
    }

    /// Entry number `sequence`, read from disk and checked against its own hash.
    pub fn entry_at(&self, sequence: u64) -> Result<Option<LedgerEntry>, AnchorError> {
        let Some(bytes) = self.db.get(key(ENTRY_PREFIX, sequence)).map_err(storage)? else {
            return Ok(None);
        };
        let entry = LedgerEntry::decode(sequence, &bytes)
            .map_err(|why| AnchorError::Corrupt(format!("entry {sequence}: {why}")))?;
        if !entry.is_consistent() {
            return Err(AnchorError::Corrupt(format!(
                "entry {sequence}: hash does not match its contents"
            )));
        }
        Ok(Some(entry))
    }

    /// The entry that anchored `epoch`, read from disk and checked.
    pub fn entry(&self, epoch: u64) -> Result<Option<LedgerEntry>, AnchorError> {
        let Some(indexed) = self.lock().by_epoch.get(&epoch).copied() else {
            return Ok(None);
        };
        let entry = self
            .entry_at(indexed.sequence)?
            .ok_or_else(|| AnchorError::Corrupt(format!("entry {} has gone", indexed.sequence)))?;
        if entry.epoch != epoch || entry.entry_hash != indexed.entry_hash {
            return Err(AnchorError::Corrupt(format!(
                "entry {} changed since the ledger was opened",
                indexed.sequence
            )));
        }
        Ok(Some(entry))
    }

    /// The signed checkpoint anchored for `epoch`, read back and checked against its
    /// entry (its hash and signature; the signature itself is not re-verified here,
    /// see [`EmbeddedLedger::audit`]).
    pub fn checkpoint(&self, epoch: u64) -> Result<Option<SignedCheckpoint>, AnchorError> {
        let Some(entry) = self.entry(epoch)? else {
            return Ok(None);
        };
        self.body(&entry).map(Some)
    }

    fn body(&self, entry: &LedgerEntry) -> Result<SignedCheckpoint, AnchorError> {
        let seq = entry.sequence;
        let corrupt = |why: &str| AnchorError::Corrupt(format!("checkpoint of entry {seq}: {why}"));
        let stored = self
            .db
            .get(key(BODY_PREFIX, seq))
            .map_err(storage)?
            .ok_or_else(|| corrupt("missing"))?;
        if stored.len() < 32 || stored.len() > 32 + CHECKPOINT_BYTES_MAX {
            return Err(corrupt("wrong size"));
        }
        let (checksum, bytes) = stored.split_at(32);
        if Sha256::digest(bytes).as_slice() != checksum {
            return Err(corrupt("checksum does not match"));
        }
        let signed = SignedCheckpoint::decode(bytes).map_err(|e| corrupt(&e.to_string()))?;
        if signed.hash().map_err(|e| corrupt(&e.to_string()))? != entry.checkpoint_hash
            || signed.checkpoint.epoch != entry.epoch
            || signed.signature.as_slice() != entry.signature
        {
            return Err(corrupt("does not match the entry"));
        }
        Ok(signed)
    }

    /// Checks the whole ledger from disk: the chain of entries as on open, and every
    /// stored checkpoint against its entry with its group signature verified.
    /// Returns the number of entries checked. Costs a pairing check per entry.
    pub fn audit(&self) -> Result<u64, AnchorError> {
        let state = walk(&self.db).map_err(|w| match w {
            Walk::Storage(e) => storage(e),
            Walk::Corrupt { sequence, why } => {
                AnchorError::Corrupt(format!("entry {sequence:?}: {why}"))
            }
        })?;
        for sequence in 0..state.count {
            let entry = self
                .entry_at(sequence)?
                .ok_or_else(|| AnchorError::Corrupt(format!("entry {sequence} has gone")))?;
            let signed = self.body(&entry)?;
            signed.verify(Some(&self.group_key)).map_err(|e| {
                AnchorError::Corrupt(format!("checkpoint of entry {sequence}: {e}"))
            })?;
            if signed.checkpoint.network != self.network {
                return Err(AnchorError::Corrupt(format!(
                    "checkpoint of entry {sequence} is for another network"
                )));
            }
        }
        Ok(state.count)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state changes only after a successful write, in plain assignments that
        // cannot panic half-way, so a poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn head_bytes(count: u64, hash: &[u8; 32]) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&count.to_be_bytes());
    out[8..].copy_from_slice(hash);
    out
}

enum Walk {
    Storage(rocksdb::Error),
    Corrupt { sequence: Option<u64>, why: String },
}

/// Reads every entry in order and checks the invariants (module docs).
fn walk(db: &DB) -> Result<State, Walk> {
    let corrupt = |sequence: Option<u64>, why: String| Walk::Corrupt { sequence, why };
    let head = db
        .get(KEY_HEAD)
        .map_err(Walk::Storage)?
        .ok_or_else(|| corrupt(None, "no head record".into()))?;
    if head.len() != 40 {
        return Err(corrupt(None, "head record is not 40 bytes".into()));
    }
    let head_count = u64::from_be_bytes(fixed(&head[..8]));
    let head_hash: [u8; 32] = fixed(&head[8..]);

    let mut st = State {
        count: 0,
        head: GENESIS_ENTRY,
        by_epoch: BTreeMap::new(),
    };
    let start = [ENTRY_PREFIX];
    for item in db.iterator(IteratorMode::From(&start[..], Direction::Forward)) {
        let (k, v) = item.map_err(Walk::Storage)?;
        if k.first() != Some(&ENTRY_PREFIX) {
            break;
        }
        let expected = st.count;
        if k.len() != 9 || u64::from_be_bytes(fixed(&k[1..])) != expected {
            return Err(corrupt(
                Some(expected),
                "missing, or an entry key out of sequence".into(),
            ));
        }
        if expected >= ENTRIES_MAX {
            return Err(corrupt(
                Some(expected),
                "more entries than the bound".into(),
            ));
        }
        let entry =
            LedgerEntry::decode(expected, &v).map_err(|why| corrupt(Some(expected), why))?;
        if !entry.is_consistent() {
            return Err(corrupt(
                Some(expected),
                "entry hash does not match its contents".into(),
            ));
        }
        if entry.previous != st.head {
            return Err(corrupt(
                Some(expected),
                "does not link to the previous entry".into(),
            ));
        }
        let indexed = Indexed {
            sequence: expected,
            checkpoint_hash: entry.checkpoint_hash,
            entry_hash: entry.entry_hash,
        };
        if st.by_epoch.insert(entry.epoch, indexed).is_some() {
            return Err(corrupt(
                Some(expected),
                format!("epoch {} anchored twice", entry.epoch),
            ));
        }
        st.count += 1;
        st.head = entry.entry_hash;
    }
    if st.count != head_count || st.head != head_hash {
        return Err(corrupt(
            None,
            format!(
                "the head record names {head_count} entries and a last hash that the {} entries found do not end in (truncated or rewritten)",
                st.count
            ),
        ));
    }
    Ok(st)
}

#[async_trait]
impl Anchor for EmbeddedLedger {
    /// A short synced rocksdb write, done inline on the caller's task.
    async fn anchor(&self, signed: &SignedCheckpoint) -> Result<AnchorOutcome, AnchorError> {
        self.anchor_signed(signed)
    }

    async fn anchored(&self, epoch: u64) -> Result<Option<AnchorRecord>, AnchorError> {
        Ok(self.record(epoch))
    }

    async fn status(&self, epoch: u64) -> Result<AnchorStatus, AnchorError> {
        Ok(match self.record(epoch) {
            Some(_) => AnchorStatus::Final,
            None => AnchorStatus::NotAnchored,
        })
    }

    async fn latest(&self) -> Result<Option<u64>, AnchorError> {
        Ok(self.latest_epoch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_their_hash_covers_every_field() {
        let e = LedgerEntry {
            sequence: 4,
            epoch: 9,
            checkpoint_hash: [1; 32],
            signature: [2; SIGNATURE_BYTES],
            previous: [3; 32],
            entry_hash: LedgerEntry::hash_of(9, &[1; 32], &[2; SIGNATURE_BYTES], &[3; 32]),
        };
        assert!(e.is_consistent());
        assert_eq!(LedgerEntry::decode(4, &e.encode()), Ok(e));
        let bytes = e.encode();
        // Any changed byte of the contents breaks the hash (the hash field itself:
        // the stored hash no longer matches either).
        for i in 1..ENTRY_BYTES {
            let mut b = bytes;
            b[i] ^= 0x01;
            let d = LedgerEntry::decode(4, &b).unwrap();
            assert!(!d.is_consistent(), "byte {i}");
        }
        let mut b = bytes;
        b[0] = 2;
        assert!(LedgerEntry::decode(4, &b).is_err());
        assert!(LedgerEntry::decode(4, &bytes[1..]).is_err());
    }
}
