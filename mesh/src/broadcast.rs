//! The piggyback queue for epidemic dissemination (SWIM's "infection-style" gossip).
//!
//! Each update is retransmitted on outgoing messages until it has been sent
//! `retransmit_mult * ceil(log2(n + 1))` times, `n` being the cluster size, which
//! spreads it to every member in O(log n) protocol rounds with high probability.
//! Updates that have been sent least go first. A newer update for the same key
//! replaces the older one and starts again from zero transmissions.
//!
//! Bound: at most `capacity` queued keys; when full, the most-transmitted update is
//! dropped to make room (it has already spread furthest). Anti-entropy sync repairs
//! anything dropped.
//!
//! Every outgoing message takes from the queue, and after a thousand nodes join at
//! once every node holds a thousand updates for minutes, so the updates are found by
//! hash and the pick order is a B-tree of `(transmissions, age)` pairs, not of whole
//! keys. A queue of keys that peers choose (claims' names) takes a seed of its own,
//! secret to its node ([`BroadcastQueue::with_seed`]; see `table` on why).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::hash::Hash;

use plexus_actors::fixed::{FixedMap, FixedState};

struct Item<V> {
    value: V,
    transmits: u32,
    order: u64,
}

/// Queued updates, keyed so a newer one replaces an older one.
pub struct BroadcastQueue<K: Hash + Eq + Clone, V: Clone> {
    items: FixedMap<K, Item<V>>,
    /// `(transmits, newest first)` to the key: the pick order. Orders are unique,
    /// so each pair names one item.
    index: BTreeMap<(u32, Reverse<u64>), K>,
    next_order: u64,
    retransmit_mult: u32,
    capacity: usize,
    dropped: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> BroadcastQueue<K, V> {
    /// An empty queue.
    pub fn new(retransmit_mult: u32, capacity: usize) -> Self {
        Self::with_seed(retransmit_mult, capacity, 0)
    }

    /// An empty queue whose keys are hashed with `seed` (0: the fixed seed). Nothing
    /// depends on the hashed order: the pick order is the index's.
    pub fn with_seed(retransmit_mult: u32, capacity: usize, seed: u64) -> Self {
        Self {
            items: FixedMap::with_hasher(FixedState::with_seed(seed)),
            index: BTreeMap::new(),
            next_order: 0,
            retransmit_mult: retransmit_mult.max(1),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Queues `value` under `key`, replacing what was queued for it.
    pub fn push(&mut self, key: K, value: V) {
        if let Some(old) = self.items.remove(&key) {
            self.index.remove(&(old.transmits, Reverse(old.order)));
        } else if self.items.len() >= self.capacity
            && let Some((_, evict)) = self.index.pop_last()
        {
            self.items.remove(&evict);
            self.dropped += 1;
        }
        let order = self.next_order;
        self.next_order += 1;
        self.index.insert((0, Reverse(order)), key.clone());
        self.items.insert(
            key,
            Item {
                value,
                transmits: 0,
                order,
            },
        );
    }

    /// Drops what is queued under `key`; whether anything was.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.items.remove(key) {
            Some(old) => {
                self.index.remove(&(old.transmits, Reverse(old.order)));
                true
            }
            None => false,
        }
    }

    /// Takes up to `max` updates to piggyback on one message, counting a
    /// transmission for each and retiring those that have been sent enough.
    pub fn take(&mut self, max: usize, cluster_size: usize) -> Vec<V> {
        if self.index.is_empty() {
            return Vec::new();
        }
        let limit = self
            .retransmit_mult
            .saturating_mul(ceil_log2(cluster_size as u64 + 1).max(1));
        let picks = max.min(self.index.len());
        let mut out = Vec::with_capacity(picks);
        // Those sent again go back after the picking, so none is picked twice.
        let mut again = Vec::with_capacity(picks);
        for _ in 0..picks {
            let Some(((transmits, order), key)) = self.index.pop_first() else {
                break;
            };
            let Some(item) = self.items.get_mut(&key) else {
                continue;
            };
            out.push(item.value.clone());
            item.transmits = transmits + 1;
            if item.transmits >= limit {
                self.items.remove(&key);
            } else {
                again.push(((item.transmits, order), key));
            }
        }
        self.index.extend(again);
        out
    }

    /// Queued updates.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Updates dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Pops from an output queue, giving back memory once a burst has drained: a join
/// storm can queue thousands of events on every node, and the capacity would
/// otherwise stay allocated for the node's whole life.
pub(crate) fn pop_shrinking<T>(queue: &mut std::collections::VecDeque<T>) -> Option<T> {
    let item = queue.pop_front();
    if queue.is_empty() && queue.capacity() > 64 {
        queue.shrink_to(16);
    }
    item
}

/// `ceil(log2(x))` for `x >= 1`.
pub fn ceil_log2(x: u64) -> u32 {
    if x <= 1 {
        0
    } else {
        64 - (x - 1).leading_zeros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_sent_first_then_retired() {
        let mut q = BroadcastQueue::new(1, 100);
        q.push("a", 1);
        q.push("b", 2);
        // cluster of 3: limit = 1 * ceil(log2(4)) = 2 transmissions
        assert_eq!(q.take(1, 3), vec![2], "newest first among equals");
        assert_eq!(q.take(1, 3), vec![1], "then the least sent");
        assert_eq!(q.take(5, 3), vec![2, 1]);
        assert!(q.is_empty(), "both retired after 2 sends");
        assert!(q.take(5, 3).is_empty());
    }

    #[test]
    fn newer_update_replaces_and_restarts() {
        let mut q = BroadcastQueue::new(2, 100);
        q.push("a", 1);
        q.take(1, 1);
        q.push("a", 9);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take(5, 1), vec![9]);
    }

    #[test]
    fn capacity_evicts_the_most_sent() {
        let mut q = BroadcastQueue::new(10, 2);
        q.push("a", 1);
        q.take(1, 100); // a sent once
        q.push("b", 2);
        q.push("c", 3); // full: evict a (most sent)
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 1);
        let mut got = q.take(5, 100);
        got.sort();
        assert_eq!(got, vec![2, 3]);
    }

    #[test]
    fn log2() {
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(2), 1);
        assert_eq!(ceil_log2(3), 2);
        assert_eq!(ceil_log2(1024), 10);
        assert_eq!(ceil_log2(1025), 11);
    }
}
