//! A table of entries that know their own key: found by key with one hash probe,
//! walked in key order. Membership keeps its members in one, the registry its names.
//!
//! Every gossiped message looks its members and claims up by key, and every sync,
//! digest and invariant check walks a whole view or registry in key order. An
//! ordered map serves the walks but costs a B-tree descent per lookup (at 1,000
//! members, a dozen cache misses: an eighth of a simulated 1,000-node hour; for
//! names, a string comparison at every level); a hashed map of whole entries costs
//! more memory and loses the order.
//!
//! So the entries lie in one dense vector in no particular order, a hash table of
//! 4-byte slot numbers finds them by key, and a vector of slot numbers sorted by key
//! gives the order. A lookup is a hash probe and one slot; a walk reads the sorted
//! numbers in sequence and the entries from one block of memory. Inserting or
//! removing an entry moves 4-byte numbers, at most one per entry: inserts and
//! removals are rare next to lookups.
//!
//! Nothing depends on the hash table's order, only on the sorted vector's, so the
//! hasher's seed may be anything that is the same in every replay
//! ([`plexus_actors::fixed`]). A table keyed by what peers choose takes a seed of
//! its own ([`Table::with_seed`], secret to its node): with the public fixed seed,
//! an admitted operator could compute names that collide and make every lookup near
//! them walk a long probe sequence. Membership's keys are admitted node ids, which no
//! peer mints at will, so its table keeps the fixed seed.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use plexus_actors::fixed::FixedState;

/// An entry of a [`Table`]: it carries its key, which must not change while it is
/// held.
pub(crate) trait Keyed {
    /// The key's type.
    type Key: ?Sized + Ord + Hash;
    /// The entry's key.
    fn key(&self) -> &Self::Key;
}

/// Entries by key.
pub(crate) struct Table<V> {
    /// The entries, in no order.
    slots: Vec<V>,
    /// Slot numbers, hashed by their entry's key.
    index: HashTable<u32>,
    /// Slot numbers, in the order of their entries' keys.
    order: Vec<u32>,
    /// Hashes the keys for `index`.
    hasher: FixedState,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self::with_seed(0)
    }
}

impl<V> Table<V> {
    /// An empty table whose hashes are seeded with `seed` (0: the fixed seed).
    pub(crate) fn with_seed(seed: u64) -> Self {
        Self {
            slots: Vec::new(),
            index: HashTable::new(),
            order: Vec::new(),
            hasher: FixedState::with_seed(seed),
        }
    }
}

/// Makes room for one more entry, growing by a quarter instead of doubling. A
/// membership table of 10,000 members is one of 10,000 in a simulated world: with
/// doubling its vectors sat at 16,384 entries, 60% over what they held. A quarter
/// keeps that under 25% and still amortizes the copies (inserts are rare next to
/// lookups).
pub(crate) fn grow<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(4));
    }
}

/// The most entries a table holds (slot numbers are 4 bytes).
pub(crate) const TABLE_MAX: usize = u32::MAX as usize;

impl<V: Keyed> Table<V> {
    /// How many entries.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Where `key` hashes in this table (its seed decides).
    pub(crate) fn hash(&self, key: &V::Key) -> u64 {
        self.hasher.hash_one(key)
    }

    fn slot(&self, key: &V::Key) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&s| {
                slots.get(s as usize).is_some_and(|v| v.key() == key)
            })
            .copied()
    }

    /// The entry in slot `slot` (slots are `0..len`, in no order; an entry keeps
    /// its slot until an entry is removed, when the last one moves into the freed
    /// slot).
    pub(crate) fn in_slot(&self, slot: u32) -> Option<&V> {
        self.slots.get(slot as usize)
    }

    /// The entry with this key.
    pub(crate) fn get(&self, key: &V::Key) -> Option<&V> {
        self.slots.get(self.slot(key)? as usize)
    }

    /// The entry with this key, to change. Its key must stay as it is.
    pub(crate) fn get_mut(&mut self, key: &V::Key) -> Option<&mut V> {
        let slot = self.slot(key)?;
        self.slots.get_mut(slot as usize)
    }

    /// Whether an entry has this key.
    pub(crate) fn contains_key(&self, key: &V::Key) -> bool {
        self.slot(key).is_some()
    }

    /// Where `key` stands in (or would go into) the key order.
    fn rank(&self, key: &V::Key) -> Result<usize, usize> {
        let slots = &self.slots;
        self.order
            .binary_search_by(|&s| match slots.get(s as usize) {
                Some(v) => v.key().cmp(key),
                // Unreachable while the invariants hold; any answer keeps it total.
                None => std::cmp::Ordering::Less,
            })
    }

    /// Adds an entry whose key is not held yet. Returns whether it was added: not if
    /// its key is held, or if [`TABLE_MAX`] are.
    #[must_use]
    pub(crate) fn insert_new(&mut self, entry: V) -> bool {
        let Ok(slot) = u32::try_from(self.slots.len()) else {
            return false;
        };
        let Err(at) = self.rank(entry.key()) else {
            return false;
        };
        let h = self.hash(entry.key());
        grow(&mut self.slots);
        grow(&mut self.order);
        self.slots.push(entry);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(h, slot, |&s| {
            slots
                .get(s as usize)
                .map_or(0, |v| hasher.hash_one(v.key()))
        });
        self.order.insert(at, slot);
        true
    }

    /// The entry with this key, added by `make` if there is none. `None` only if
    /// [`TABLE_MAX`] are held, or `make` gives an entry of another key.
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: &V::Key,
        make: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        let slot = match self.slot(key) {
            Some(slot) => slot,
            None => {
                let entry = make();
                if entry.key() != key || !self.insert_new(entry) {
                    return None;
                }
                // The new entry took the last slot.
                u32::try_from(self.slots.len().checked_sub(1)?).ok()?
            }
        };
        self.slots.get_mut(slot as usize)
    }

    /// Removes the entry with this key.
    pub(crate) fn remove(&mut self, key: &V::Key) -> Option<V> {
        let h = self.hash(key);
        let slots = &self.slots;
        let entry = self
            .index
            .find_entry(h, |&s| {
                slots.get(s as usize).is_some_and(|v| v.key() == key)
            })
            .ok()?;
        let (slot, _) = entry.remove();
        if let Ok(at) = self.rank(key) {
            self.order.remove(at);
        }
        // The last entry moves into the freed slot: renumber it first, while the
        // order can still be searched by the entries' keys.
        let last = self.slots.len().saturating_sub(1);
        if slot as usize != last
            && let Some(moved) = self.slots.get(last)
        {
            let moved_key = moved.key();
            let at = self.rank(moved_key);
            let h = self.hasher.hash_one(moved_key);
            if let Some(s) = self.index.find_mut(h, |&s| s as usize == last) {
                *s = slot;
            }
            if let Ok(at) = at {
                self.order[at] = slot;
            }
        }
        ((slot as usize) < self.slots.len()).then(|| self.slots.swap_remove(slot as usize))
    }

    /// The entries, in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.order
            .iter()
            .filter_map(|&s| self.slots.get(s as usize))
    }

    /// The entries in no particular order, to change. Their keys must stay as they
    /// are; nothing whose order is observable may be decided in this walk.
    pub(crate) fn values_mut_unordered(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut()
    }

    /// Checks that the order and the index agree with the entries in number, and
    /// that the order holds each slot once, by ascending key. Whether the index
    /// finds each entry at its slot costs a probe per entry, so that is
    /// [`Table::check_index`], which the tests run after every step.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.index.len() != self.slots.len() || self.order.len() != self.slots.len() {
            return Err(format!(
                "{} entries, {} indexed, {} ordered",
                self.slots.len(),
                self.index.len(),
                self.order.len()
            ));
        }
        let mut previous: Option<&V::Key> = None;
        for (i, &s) in self.order.iter().enumerate() {
            let Some(v) = self.slots.get(s as usize) else {
                return Err(format!("slot {s} ordered, past the entries"));
            };
            if previous.is_some_and(|p| p >= v.key()) {
                return Err(format!("the entry ordered {i}th is out of order"));
            }
            previous = Some(v.key());
        }
        Ok(())
    }

    /// [`Table::check_invariants`], and that the index finds every entry at its
    /// slot.
    #[cfg(test)]
    pub(crate) fn check_index(&self) -> Result<(), String> {
        self.check_invariants()?;
        for (s, v) in self.slots.iter().enumerate() {
            if self.slot(v.key()).map(|found| found as usize) != Some(s) {
                return Err(format!("the entry in slot {s} is indexed at another"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A name (a string key, as the registry's) and a value that changes.
    #[derive(Debug)]
    struct Entry {
        name: String,
        value: u64,
    }

    impl Keyed for Entry {
        type Key = str;
        fn key(&self) -> &str {
            &self.name
        }
    }

    fn name(i: u64) -> String {
        format!("n{i}")
    }

    fn entry(i: u64, value: u64) -> Entry {
        Entry {
            name: name(i),
            value,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        Upsert(u64),
        Remove(u64),
        Bump(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so inserts collide and removals find their entry.
        prop_oneof![
            (0..40u64).prop_map(Op::Insert),
            (0..40u64).prop_map(Op::Upsert),
            (0..40u64).prop_map(Op::Remove),
            (0..40u64).prop_map(Op::Bump),
        ]
    }

    proptest! {
        /// Any sequence of inserts, removals and changes leaves the same entries,
        /// found by key and walked in key order, as an ordered map given the same.
        #[test]
        fn behaves_as_an_ordered_map(
            seed in prop_oneof![Just(0u64), any::<u64>()],
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut table: Table<Entry> = Table::with_seed(seed);
            let mut model: BTreeMap<String, u64> = BTreeMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                let step = step as u64;
                match op {
                    Op::Insert(i) => {
                        let held = model.contains_key(&name(i));
                        prop_assert_eq!(table.insert_new(entry(i, step)), !held);
                        model.entry(name(i)).or_insert(step);
                    }
                    Op::Upsert(i) => {
                        let got = table.get_or_insert_with(&name(i), || entry(i, step));
                        prop_assert_eq!(
                            got.map(|e| e.value),
                            Some(*model.entry(name(i)).or_insert(step))
                        );
                    }
                    Op::Remove(i) => {
                        let gone = table.remove(&name(i)).map(|e| (e.name, e.value));
                        prop_assert_eq!(gone, model.remove(&name(i)).map(|v| (name(i), v)));
                    }
                    Op::Bump(i) => {
                        if let Some(e) = table.get_mut(&name(i)) {
                            e.value = step;
                        }
                        if let Some(v) = model.get_mut(&name(i)) {
                            *v = step;
                        }
                    }
                }
                table.check_index().map_err(TestCaseError::fail)?;
                prop_assert_eq!(table.len(), model.len());
                let walked: Vec<(String, u64)> =
                    table.values().map(|e| (e.name.clone(), e.value)).collect();
                let want: Vec<(String, u64)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
                prop_assert_eq!(walked, want);
                let mut unordered: Vec<u64> =
                    table.values_mut_unordered().map(|e| e.value).collect();
                unordered.sort_unstable();
                let mut values: Vec<u64> = model.values().copied().collect();
                values.sort_unstable();
                prop_assert_eq!(unordered, values);
                for i in 0..40u64 {
                    prop_assert_eq!(table.contains_key(&name(i)), model.contains_key(&name(i)));
                    prop_assert_eq!(table.get(&name(i)).map(|e| e.value), model.get(&name(i)).copied());
                }
            }
        }
    }

    /// A seed changes where keys hash, not what the table holds or its order.
    #[test]
    fn a_seed_moves_the_hashes_not_the_order() {
        let mut fixed: Table<Entry> = Table::default();
        let mut seeded: Table<Entry> = Table::with_seed(0x5eed);
        for i in [3, 1, 4, 15, 9, 2, 6] {
            assert!(fixed.insert_new(entry(i, i)));
            assert!(seeded.insert_new(entry(i, i)));
        }
        assert_ne!(fixed.hash("n1"), seeded.hash("n1"));
        let walk = |t: &Table<Entry>| t.values().map(|e| e.value).collect::<Vec<_>>();
        assert_eq!(walk(&fixed), walk(&seeded));
        seeded.check_index().unwrap();
    }

    /// An upsert whose maker gives an entry of another key adds nothing.
    #[test]
    fn an_upsert_of_another_key_adds_nothing() {
        let mut table: Table<Entry> = Table::default();
        assert!(table.get_or_insert_with("n1", || entry(2, 0)).is_none());
        assert_eq!(table.len(), 0);
        table.check_index().unwrap();
    }

    fn five() -> Table<Entry> {
        let mut table = Table::default();
        for i in 0..5 {
            assert!(table.insert_new(entry(i, 0)));
        }
        table
    }

    /// The check finds an order that no longer matches (what it is for).
    #[test]
    fn the_check_finds_a_wrong_order() {
        let mut table = five();
        table.check_invariants().unwrap();
        table.order.swap(0, 1);
        assert!(table.check_invariants().is_err());
    }

    /// The index check finds an entry indexed at another's slot.
    #[test]
    fn the_index_check_finds_a_wrong_slot() {
        let mut table = five();
        table.check_index().unwrap();
        // Two entries trade slots; the order is renumbered to match, the index not.
        table.slots.swap(0, 1);
        for s in &mut table.order {
            *s = match *s {
                0 => 1,
                1 => 0,
                other => other,
            };
        }
        table.check_invariants().unwrap();
        assert!(table.check_index().is_err());
    }
}
