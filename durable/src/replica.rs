//! The replica: one node's slots for the durable actors it keeps snapshots of.
//!
//! A slot holds a promise (the highest ballot that fenced it) and the newest record
//! written to it. The rules are single-decree Paxos's acceptor rules, applied to a
//! stream of records:
//!
//! * `Fence(b)` succeeds iff `b > promised`; the slot then promises `b` and returns
//!   its record (if newer than what the fencer already has).
//! * `Write(r)` succeeds iff `r.ballot >= promised`; the slot then promises
//!   `r.ballot` and keeps `r` if it orders after the stored record.
//! * `Patch(p)` is `Write` of the record `p` rebuilds from the stored one; a
//!   replica that cannot rebuild it (it holds another base, or its copy is
//!   corrupt) changes nothing and answers `WantWhole`.
//! * `Drop(b)` succeeds iff `b == promised` (the holder's own ballot), and forgets
//!   the key.
//!
//! A record is *committed* once a majority of its replica set stored it. Because
//! an activation fences a majority before it serves, and every two majorities of a
//! set intersect, the activation sees every committed record, and no activation with
//! a lower ballot can commit afterwards: at most one activation commits at a time.
//!
//! [`apply`] is the whole decision, a pure function of the slot and the request;
//! [`Replica`] runs it against a [`SlotStore`] (rocksdb in production, a map in the
//! simulator and tests). A store error is answered with `Failed`, which the
//! requester counts as no answer.

use std::collections::BTreeMap;

use plexus_actors::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

use crate::patch::RecordPatch;
use crate::types::{Ballot, DurableKey, Record};
use crate::wire::{ReplicaOp, ReplicaReply};

/// What a replica keeps for one key. Two slots are equal when their promise and
/// record are ([`Slot::digest`] is a memo of the record).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Slot {
    /// The highest ballot that fenced or wrote the slot.
    pub promised: Ballot,
    /// The newest record stored.
    pub record: Option<Record>,
    /// blake3 of the record's body, when known without hashing it: set from the
    /// patch whose rebuilt body was checked against it. Not stored (a store that
    /// reads a slot back sets it from the patches it replays, or leaves it out).
    /// A fence reply carries this digest, so a slot kept as patches answers a
    /// fence without hashing a state of up to megabytes.
    #[serde(skip)]
    pub digest: Option<[u8; 32]>,
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.promised == other.promised && self.record == other.record
    }
}

impl Eq for Slot {}

impl Slot {
    /// The digest of the record's body (from [`Slot::digest`], or hashed).
    pub fn body_digest(&self) -> Option<[u8; 32]> {
        let record = self.record.as_ref()?;
        Some(
            self.digest
                .unwrap_or_else(|| *blake3::hash(&record.body).as_bytes()),
        )
    }
}

/// What to do to the stored slot after a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotChange {
    /// Leave it.
    Keep,
    /// Store this.
    Put(Slot),
    /// Store this slot, whose record is the patch applied to the stored record
    /// (a store may keep the patch instead of the whole record).
    Patched(Slot, RecordPatch),
    /// Raise the promise to this ballot; the record stays as stored (a fence must
    /// not rewrite a large record just to move the promise).
    Promise(Ballot),
    /// Forget the key.
    Delete,
}

/// Decides a request against the current slot: the change to store, then the reply.
/// The reply may be sent only once the change is stored.
pub fn apply(slot: Option<&Slot>, op: &ReplicaOp) -> (SlotChange, ReplicaReply) {
    let promised = slot.map_or(Ballot::ZERO, |s| s.promised);
    let record = slot.and_then(|s| s.record.as_ref());
    match op {
        ReplicaOp::Fence { ballot, have } => {
            if *ballot <= promised {
                return (SlotChange::Keep, ReplicaReply::Refused { promised });
            }
            let order = record.map(Record::order);
            let newer = match (order, have) {
                (Some(o), Some(h)) => o > *h,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let digest = slot.filter(|_| !newer).and_then(Slot::body_digest);
            let reply = ReplicaReply::Promised {
                ballot: *ballot,
                record: if newer { record.cloned() } else { None },
                order,
                digest,
            };
            (SlotChange::Promise(*ballot), reply)
        }
        ReplicaOp::Write { record: new } => write(promised, record, new.order(), |_| {
            Some(SlotChange::Put(Slot {
                promised: new.ballot,
                record: Some(new.clone()),
                digest: None,
            }))
        }),
        ReplicaOp::Patch { patch } => write(promised, record, patch.order(), |stored| {
            let record = patch.apply_to(stored?, crate::STATE_BYTES_MAX).ok()?;
            let slot = Slot {
                promised: patch.ballot,
                record: Some(record),
                // `apply_to` checked the body against it.
                digest: Some(patch.digest),
            };
            Some(SlotChange::Patched(slot, patch.clone()))
        }),
        ReplicaOp::Check { ballot } => {
            let reply = if *ballot < promised {
                ReplicaReply::Refused { promised }
            } else {
                ReplicaReply::Holds
            };
            (SlotChange::Keep, reply)
        }
        ReplicaOp::Drop { ballot } => {
            // Only the holder of the promise may drop: a higher ballot that never
            // fenced this slot is not the holder.
            if slot.is_some() && *ballot != promised {
                return (SlotChange::Keep, ReplicaReply::Refused { promised });
            }
            let change = if slot.is_some() {
                SlotChange::Delete
            } else {
                SlotChange::Keep
            };
            (change, ReplicaReply::Dropped)
        }
    }
}

/// The write rule for a record of order `order`, whose slot `build` makes from the
/// stored record (a [`ReplicaOp::Write`] carries the record; a
/// [`ReplicaOp::Patch`] rebuilds it, or cannot, and then the replica asks for it
/// whole).
fn write(
    promised: Ballot,
    stored: Option<&Record>,
    order: (Ballot, u64),
    build: impl FnOnce(Option<&Record>) -> Option<SlotChange>,
) -> (SlotChange, ReplicaReply) {
    let (ballot, version) = order;
    if ballot < promised {
        return (SlotChange::Keep, ReplicaReply::Refused { promised });
    }
    let written = ReplicaReply::Written { ballot, version };
    if stored.is_some_and(|old| old.order() >= order) {
        let change = if promised == ballot {
            SlotChange::Keep
        } else {
            SlotChange::Promise(ballot)
        };
        return (change, written);
    }
    match build(stored) {
        Some(change) => (change, written),
        None => (
            SlotChange::Keep,
            ReplicaReply::WantWhole { ballot, version },
        ),
    }
}

/// Why a store failed. The local disk (or its configuration) is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed.
    #[error("storage failed: {0}")]
    Io(String),
    /// A stored slot does not decode (corruption, or written by a newer build).
    #[error("stored slot for `{key}` does not decode: {error}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        error: CodecError,
    },
}

/// Where a replica keeps its slots. A write must be durable (against a crash of
/// the process and of the machine) before anything the core emits after it leaves
/// the node: either the store syncs each write before returning, or it defers the
/// sync and its driver holds back the core's output until a later sync covers the
/// write (group commit: the daemon's `RocksStore` and its service). A later `get`
/// sees a write at once either way.
pub trait SlotStore: Send {
    /// The slot for `key`.
    fn get(&self, key: &DurableKey) -> Result<Option<Slot>, StoreError>;
    /// Stores the slot for `key` (taken, so a store that keeps it in memory does
    /// not copy a record of up to megabytes).
    fn put(&mut self, key: &DurableKey, slot: Slot) -> Result<(), StoreError>;
    /// Stores the slot for `key`, whose record is `patch` applied to the record
    /// stored now (the replica rebuilt it and checked its digest). A store may keep
    /// the patch instead of the record (the daemon's `RocksStore` does, so a
    /// commit that changed little of a large state writes little); `get` must
    /// return `slot` either way. By default, [`SlotStore::put`].
    fn put_patched(
        &mut self,
        key: &DurableKey,
        slot: Slot,
        patch: &RecordPatch,
    ) -> Result<(), StoreError> {
        let _ = patch;
        self.put(key, slot)
    }
    /// Raises `key`'s promise to `ballot`, keeping its record; afterwards `get`
    /// returns the slot with `promised == ballot`. Stores should make this cheap
    /// (not rewrite the record): every fence does it.
    fn promise(&mut self, key: &DurableKey, ballot: Ballot) -> Result<(), StoreError>;
    /// Forgets `key`.
    fn delete(&mut self, key: &DurableKey) -> Result<(), StoreError>;
    /// Every key with a slot, in order (for listings; not on any hot path).
    fn keys(&self) -> Result<Vec<DurableKey>, StoreError>;
}

/// Encodes a slot for a store (a versioned codec frame).
pub fn encode_slot(slot: &Slot) -> Result<Vec<u8>, CodecError> {
    codec::encode(slot)
}

/// Decodes a stored slot.
pub fn decode_slot(bytes: &[u8]) -> Result<Slot, CodecError> {
    codec::decode_with_limit(bytes, crate::wire::MSG_BYTES_MAX)
}

/// An in-memory store: the simulator's disk (it survives a simulated crash, since the
/// simulator keeps it outside the crashed node's cores) and the tests'.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    slots: BTreeMap<DurableKey, Slot>,
}

impl MemStore {
    /// The slots, for checkers.
    pub fn slots(&self) -> &BTreeMap<DurableKey, Slot> {
        &self.slots
    }
}

impl SlotStore for MemStore {
    fn get(&self, key: &DurableKey) -> Result<Option<Slot>, StoreError> {
        Ok(self.slots.get(key).cloned())
    }
    fn put(&mut self, key: &DurableKey, slot: Slot) -> Result<(), StoreError> {
        self.slots.insert(key.clone(), slot);
        Ok(())
    }
    fn promise(&mut self, key: &DurableKey, ballot: Ballot) -> Result<(), StoreError> {
        self.slots
            .entry(key.clone())
            .or_insert(Slot {
                promised: ballot,
                record: None,
                digest: None,
            })
            .promised = ballot;
        Ok(())
    }
    fn delete(&mut self, key: &DurableKey) -> Result<(), StoreError> {
        self.slots.remove(key);
        Ok(())
    }
    fn keys(&self) -> Result<Vec<DurableKey>, StoreError> {
        Ok(self.slots.keys().cloned().collect())
    }
}

/// A replica: the rules applied to a store.
pub struct Replica<S: SlotStore> {
    store: S,
    /// Requests answered `Failed` because the store failed.
    pub store_failures: u64,
}

impl<S: SlotStore> Replica<S> {
    /// A replica over `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            store_failures: 0,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back (a simulated crash keeps the disk).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The promise in force for `key` (`Ballot::ZERO` if none, or if the store
    /// fails: the request itself then fails too).
    pub fn promised(&self, key: &DurableKey) -> Ballot {
        match self.store.get(key) {
            Ok(Some(slot)) => slot.promised,
            _ => Ballot::ZERO,
        }
    }

    /// Forgets `key` whatever the promise (the node's own release: the
    /// scheduler owns the actor's lifetime).
    pub fn forget(&mut self, key: &DurableKey) -> Result<(), StoreError> {
        self.store
            .delete(key)
            .inspect_err(|_| self.store_failures += 1)
    }

    /// Handles one request; the change is stored before the reply is returned.
    pub fn handle(&mut self, key: &DurableKey, op: &ReplicaOp) -> ReplicaReply {
        let slot = match self.store.get(key) {
            Ok(slot) => slot,
            Err(e) => {
                self.store_failures += 1;
                return ReplicaReply::Failed(e.to_string());
            }
        };
        let (change, reply) = apply(slot.as_ref(), op);
        let stored = match change {
            SlotChange::Keep => Ok(()),
            SlotChange::Put(slot) => self.store.put(key, slot),
            SlotChange::Patched(slot, patch) => self.store.put_patched(key, slot, &patch),
            SlotChange::Promise(ballot) => self.store.promise(key, ballot),
            SlotChange::Delete => self.store.delete(key),
        };
        match stored {
            Ok(()) => reply,
            Err(e) => {
                self.store_failures += 1;
                ReplicaReply::Failed(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::NodeId;
    use proptest::prelude::*;

    fn b(round: u64, node: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId::synthetic(node),
        }
    }

    fn rec(ballot: Ballot, version: u64) -> Record {
        Record {
            ballot,
            version,
            set: crate::types::ReplicaSet::single(NodeId::synthetic(1)),
            body: version.to_le_bytes().to_vec().into(),
        }
    }

    #[test]
    fn fence_then_writes_from_lower_ballots_are_refused() {
        let key = DurableKey::new("k").unwrap();
        let mut r = Replica::new(MemStore::default());
        let w1 = ReplicaOp::Write {
            record: rec(b(1, 1), 1),
        };
        assert_eq!(
            r.handle(&key, &w1),
            ReplicaReply::Written {
                ballot: b(1, 1),
                version: 1
            }
        );
        let fence = ReplicaOp::Fence {
            ballot: b(2, 2),
            have: None,
        };
        assert_eq!(
            r.handle(&key, &fence),
            ReplicaReply::Promised {
                ballot: b(2, 2),
                record: Some(rec(b(1, 1), 1)),
                order: Some((b(1, 1), 1)),
                digest: None,
            }
        );
        let w2 = ReplicaOp::Write {
            record: rec(b(1, 1), 2),
        };
        assert_eq!(
            r.handle(&key, &w2),
            ReplicaReply::Refused { promised: b(2, 2) }
        );
        // The same fence again is refused (not strictly higher).
        assert!(matches!(
            r.handle(&key, &fence),
            ReplicaReply::Refused { .. }
        ));
        // The fencer already has the record: it is not sent again.
        let fence3 = ReplicaOp::Fence {
            ballot: b(3, 1),
            have: Some((b(1, 1), 1)),
        };
        assert_eq!(
            r.handle(&key, &fence3),
            ReplicaReply::Promised {
                ballot: b(3, 1),
                record: None,
                order: Some((b(1, 1), 1)),
                digest: Some(*blake3::hash(&rec(b(1, 1), 1).body).as_bytes()),
            }
        );
        assert_eq!(
            r.handle(&key, &ReplicaOp::Drop { ballot: b(2, 9) }),
            ReplicaReply::Refused { promised: b(3, 1) }
        );
        // A higher ballot that never fenced the slot is not its holder.
        assert_eq!(
            r.handle(&key, &ReplicaOp::Drop { ballot: b(4, 9) }),
            ReplicaReply::Refused { promised: b(3, 1) }
        );
        assert_eq!(
            r.handle(&key, &ReplicaOp::Drop { ballot: b(3, 1) }),
            ReplicaReply::Dropped
        );
        assert!(r.store().slots().is_empty());
    }

    #[test]
    fn a_patch_is_stored_only_when_it_rebuilds_its_record_from_the_stored_base() {
        use crate::patch::{RecordPatch, diff};
        let key = DurableKey::new("k").unwrap();
        let mut r = Replica::new(MemStore::default());
        let base = rec(b(1, 1), 1);
        r.handle(
            &key,
            &ReplicaOp::Write {
                record: base.clone(),
            },
        );
        let next = Record {
            body: b"a new body, longer than the old".to_vec().into(),
            ..rec(b(1, 1), 2)
        };
        let patch = |base_order, digest_of: &[u8]| ReplicaOp::Patch {
            patch: RecordPatch {
                ballot: next.ballot,
                version: next.version,
                set: next.set.clone(),
                base: base_order,
                patch: diff(&base.body, &next.body),
                digest: *blake3::hash(digest_of).as_bytes(),
            },
        };
        let want = ReplicaReply::WantWhole {
            ballot: b(1, 1),
            version: 2,
        };
        // Another base, or a digest the rebuilt body does not match: nothing stored.
        assert_eq!(r.handle(&key, &patch((b(1, 1), 0), &next.body)), want);
        assert_eq!(r.handle(&key, &patch(base.order(), b"other")), want);
        assert_eq!(
            r.store().get(&key).unwrap().unwrap().record,
            Some(base.clone())
        );
        // Under a ballot below the promise: refused, as a write would be.
        r.handle(
            &key,
            &ReplicaOp::Fence {
                ballot: b(2, 2),
                have: None,
            },
        );
        assert_eq!(
            r.handle(&key, &patch(base.order(), &next.body)),
            ReplicaReply::Refused { promised: b(2, 2) }
        );
        let mut r = Replica::new(MemStore::default());
        r.handle(
            &key,
            &ReplicaOp::Write {
                record: base.clone(),
            },
        );
        assert_eq!(
            r.handle(&key, &patch(base.order(), &next.body)),
            ReplicaReply::Written {
                ballot: b(1, 1),
                version: 2
            }
        );
        let stored = r.store().get(&key).unwrap().unwrap();
        assert_eq!(stored.record, Some(next.clone()));
        // Again (a retry): already stored, written.
        assert!(matches!(
            r.handle(&key, &patch(base.order(), &next.body)),
            ReplicaReply::Written { .. }
        ));
        // The patched slot keeps its body's digest, and a fence answers with it.
        let digest = *blake3::hash(&next.body).as_bytes();
        assert_eq!(stored.digest, Some(digest));
        assert!(matches!(
            r.handle(
                &key,
                &ReplicaOp::Fence {
                    ballot: b(3, 3),
                    have: Some(next.order()),
                },
            ),
            ReplicaReply::Promised { digest: Some(d), record: None, .. } if d == digest
        ));
    }

    #[test]
    fn slots_round_trip_through_the_codec() {
        let slot = Slot {
            promised: b(4, 2),
            record: Some(rec(b(4, 2), 7)),
            digest: None,
        };
        assert_eq!(decode_slot(&encode_slot(&slot).unwrap()).unwrap(), slot);
        assert!(decode_slot(&[9, 9, 9]).is_err());
        // The digest is a memo: not stored, and hashed when absent.
        let memo = Slot {
            digest: Some([1; 32]),
            ..slot.clone()
        };
        assert_eq!(encode_slot(&memo).unwrap(), encode_slot(&slot).unwrap());
        assert_eq!(memo, slot);
        assert_eq!(
            memo.body_digest(),
            Some([1; 32]),
            "the memo is what is answered"
        );
        assert_eq!(
            slot.body_digest(),
            Some(*blake3::hash(&rec(b(4, 2), 7).body).as_bytes())
        );
    }

    fn op_strategy() -> impl Strategy<Value = ReplicaOp> {
        prop_oneof![
            (0u64..6, 0u64..3).prop_map(|(r, n)| ReplicaOp::Fence {
                ballot: b(r, n),
                have: None
            }),
            (0u64..6, 0u64..3, 0u64..5).prop_map(|(r, n, v)| ReplicaOp::Write {
                record: rec(b(r, n), v)
            }),
        ]
    }

    proptest! {
        /// The promise never goes down, and a stored record never goes backwards.
        #[test]
        fn promises_and_records_only_grow(ops in proptest::collection::vec(op_strategy(), 1..40)) {
            let key = DurableKey::new("k").unwrap();
            let mut r = Replica::new(MemStore::default());
            let mut last: Option<Slot> = None;
            for op in ops {
                let reply = r.handle(&key, &op);
                let now = r.store().get(&key).unwrap();
                if let (Some(a), Some(n)) = (&last, &now) {
                    prop_assert!(n.promised >= a.promised);
                    let ao = a.record.as_ref().map(Record::order);
                    let no = n.record.as_ref().map(Record::order);
                    prop_assert!(no >= ao);
                }
                if let ReplicaReply::Refused { promised } = reply {
                    prop_assert_eq!(Some(promised), last.as_ref().map(|s| s.promised).or(Some(Ballot::ZERO)));
                }
                last = now;
            }
        }
    }
}
