//! The members a node knows: found by id with one hash probe, walked in id order.
//!
//! Every gossiped message and every probe looks a member up by its id, and every
//! sync, digest and invariant check walks the whole view in id order. An ordered
//! map of 32-byte keys serves the walks but costs a B-tree descent per lookup (at
//! 1,000 members, a dozen cache misses: an eighth of a simulated 1,000-node hour);
//! a hashed map of whole members costs a fifth more memory and loses the order.
//!
//! So the members lie in one dense vector in no particular order, a hash table of
//! 4-byte slot numbers finds them by id, and a vector of slot numbers sorted by id
//! gives the order. A lookup is a hash probe and one slot; a walk reads the sorted
//! numbers in sequence and the members from one block of memory. Inserting or
//! removing a member moves 4-byte numbers, at most one per member: joins and
//! removals are rare next to lookups.
//!
//! The hasher's seed is fixed ([`plexus_actors::fixed`]); nothing depends on the
//! table's order in any case, only on the sorted vector's.

use hashbrown::HashTable;
use plexus_actors::NodeId;
use plexus_actors::fixed::fixed_hash;

use super::Member;

/// The members, by id.
#[derive(Default)]
pub(super) struct Members {
    /// The members, in no order.
    slots: Vec<Member>,
    /// Slot numbers, hashed by their member's id.
    index: HashTable<u32>,
    /// Slot numbers, in the order of their members' ids.
    order: Vec<u32>,
}

/// The most members the map holds (slot numbers are 4 bytes).
pub(super) const MEMBERS_MAX: usize = u32::MAX as usize;

fn hash(id: &NodeId) -> u64 {
    fixed_hash(id)
}

impl Members {
    /// How many members.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, id: &NodeId) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash(id), |&s| {
                slots.get(s as usize).is_some_and(|m| m.id == *id)
            })
            .copied()
    }

    /// The member with this id.
    pub(super) fn get(&self, id: &NodeId) -> Option<&Member> {
        self.slots.get(self.slot(id)? as usize)
    }

    /// The member with this id, to change. Its id must stay as it is.
    pub(super) fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member> {
        let slot = self.slot(id)?;
        self.slots.get_mut(slot as usize)
    }

    /// Whether a member has this id.
    pub(super) fn contains_key(&self, id: &NodeId) -> bool {
        self.slot(id).is_some()
    }

    /// Where `id` stands in (or would go into) the id order.
    fn rank(&self, id: &NodeId) -> Result<usize, usize> {
        let slots = &self.slots;
        self.order
            .binary_search_by(|&s| slots.get(s as usize).map_or(NodeId::ZERO, |m| m.id).cmp(id))
    }

    /// Adds a member whose id is not held yet. Returns whether it was added: not if
    /// its id is held, or if [`MEMBERS_MAX`] are.
    #[must_use]
    pub(super) fn insert_new(&mut self, member: Member) -> bool {
        let Ok(slot) = u32::try_from(self.slots.len()) else {
            return false;
        };
        let Err(at) = self.rank(&member.id) else {
            return false;
        };
        let h = hash(&member.id);
        self.slots.push(member);
        let slots = &self.slots;
        self.index.insert_unique(h, slot, |&s| {
            slots.get(s as usize).map_or(0, |m| hash(&m.id))
        });
        self.order.insert(at, slot);
        true
    }

    /// Removes the member with this id.
    pub(super) fn remove(&mut self, id: &NodeId) -> Option<Member> {
        let slots = &self.slots;
        let entry = self
            .index
            .find_entry(hash(id), |&s| {
                slots.get(s as usize).is_some_and(|m| m.id == *id)
            })
            .ok()?;
        let (slot, _) = entry.remove();
        if let Ok(at) = self.rank(id) {
            self.order.remove(at);
        }
        // The last member moves into the freed slot: renumber it first, while the
        // order can still be searched by the members' ids.
        let last = self.slots.len().saturating_sub(1);
        if slot as usize != last
            && let Some(moved) = self.slots.get(last).map(|m| m.id)
        {
            if let Ok(at) = self.rank(&moved) {
                self.order[at] = slot;
            }
            if let Some(s) = self.index.find_mut(hash(&moved), |&s| s as usize == last) {
                *s = slot;
            }
        }
        ((slot as usize) < self.slots.len()).then(|| self.slots.swap_remove(slot as usize))
    }

    /// The members, in id order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Member> {
        self.order
            .iter()
            .filter_map(|&s| self.slots.get(s as usize))
    }

    /// Checks that the order and the index agree with the members in number, and
    /// that the order holds each slot once, by ascending id. Whether the index
    /// finds each member at its slot costs a probe per member, so that is
    /// [`Members::check_index`], which the tests run after every step.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        if self.index.len() != self.slots.len() || self.order.len() != self.slots.len() {
            return Err(format!(
                "{} members, {} indexed, {} ordered",
                self.slots.len(),
                self.index.len(),
                self.order.len()
            ));
        }
        let mut previous: Option<&NodeId> = None;
        for &s in &self.order {
            let Some(m) = self.slots.get(s as usize) else {
                return Err(format!("slot {s} ordered, past the members"));
            };
            if previous.is_some_and(|p| *p >= m.id) {
                return Err(format!("{:?} out of order", m.id));
            }
            previous = Some(&m.id);
        }
        Ok(())
    }

    /// [`Members::check_invariants`], and that the index finds every member at its
    /// slot.
    #[cfg(test)]
    pub(super) fn check_index(&self) -> Result<(), String> {
        self.check_invariants()?;
        for (s, m) in self.slots.iter().enumerate() {
            if self.slot(&m.id).map(|found| found as usize) != Some(s) {
                return Err(format!("{:?} indexed at the wrong slot", m.id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use plexus_actors::Time;
    use proptest::prelude::*;

    use super::*;
    use crate::membership::{MemberState, MemberUpdate};
    use crate::sig::SigBytes;

    fn member(id: u64, incarnation: u64) -> Member {
        let id = NodeId::synthetic(id);
        Member {
            id,
            incarnation,
            state: MemberState::Alive,
            meta: Arc::default(),
            since: Time::ZERO,
            statement: MemberUpdate {
                id,
                incarnation,
                state: MemberState::Alive,
                meta: None,
                sig: SigBytes::default(),
            },
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        Remove(u64),
        Bump(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct ids, so inserts collide and removals find their member.
        prop_oneof![
            (0..40u64).prop_map(Op::Insert),
            (0..40u64).prop_map(Op::Remove),
            (0..40u64).prop_map(Op::Bump),
        ]
    }

    proptest! {
        /// Any sequence of inserts, removals and changes leaves the same members,
        /// found by id and walked in id order, as an ordered map given the same.
        #[test]
        fn behaves_as_an_ordered_map(ops in proptest::collection::vec(op(), 0..300)) {
            let mut members = Members::default();
            let mut model: BTreeMap<NodeId, u64> = BTreeMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                let step = step as u64;
                match op {
                    Op::Insert(i) => {
                        let id = NodeId::synthetic(i);
                        let held = model.contains_key(&id);
                        prop_assert_eq!(members.insert_new(member(i, step)), !held);
                        model.entry(id).or_insert(step);
                    }
                    Op::Remove(i) => {
                        let id = NodeId::synthetic(i);
                        let gone = members.remove(&id).map(|m| (m.id, m.incarnation));
                        prop_assert_eq!(gone, model.remove(&id).map(|inc| (id, inc)));
                    }
                    Op::Bump(i) => {
                        let id = NodeId::synthetic(i);
                        if let Some(m) = members.get_mut(&id) {
                            m.incarnation = step;
                        }
                        if let Some(inc) = model.get_mut(&id) {
                            *inc = step;
                        }
                    }
                }
                members.check_index().map_err(TestCaseError::fail)?;
                prop_assert_eq!(members.len(), model.len());
                let walked: Vec<(NodeId, u64)> =
                    members.values().map(|m| (m.id, m.incarnation)).collect();
                let want: Vec<(NodeId, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(walked, want);
                for i in 0..40u64 {
                    let id = NodeId::synthetic(i);
                    prop_assert_eq!(members.contains_key(&id), model.contains_key(&id));
                    prop_assert_eq!(
                        members.get(&id).map(|m| m.incarnation),
                        model.get(&id).copied()
                    );
                }
            }
        }
    }

    fn five() -> Members {
        let mut members = Members::default();
        for i in 0..5 {
            assert!(members.insert_new(member(i, 0)));
        }
        members
    }

    /// The check finds an order that no longer matches (what it is for).
    #[test]
    fn the_check_finds_a_wrong_order() {
        let mut members = five();
        members.check_invariants().unwrap();
        members.order.swap(0, 1);
        assert!(members.check_invariants().is_err());
    }

    /// The index check finds a member indexed at another's slot.
    #[test]
    fn the_index_check_finds_a_wrong_slot() {
        let mut members = five();
        members.check_index().unwrap();
        // Two members trade slots; the order is renumbered to match, the index not.
        members.slots.swap(0, 1);
        for s in &mut members.order {
            *s = match *s {
                0 => 1,
                1 => 0,
                other => other,
            };
        }
        members.check_invariants().unwrap();
        assert!(members.check_index().is_err());
    }
}
