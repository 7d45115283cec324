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
//! Age: taken with [`BroadcastQueue::take_at`], an update is piggybacked for at most
//! `max_age` after it was queued ([`BroadcastQueue::push_at`]; one pushed without a
//! time, after it was first taken), however few times it went out. A queue that keeps
//! up sends each update its full count well within that; one that fell behind (a
//! mass join queues an update per joiner on every node, and a message carries 8)
//! would otherwise spend many minutes repeating what the syncs have long since
//! spread. Expired updates are dropped as they come up and, every `max_age / 2`,
//! in one sweep, which also gives back the memory of a burst that has drained.
//!
//! Every outgoing message takes from the queue, and after a thousand nodes join at
//! once every node holds a thousand updates for minutes, so the updates are found by
//! hash and the pick order is a B-tree of `(transmissions, age)` pairs, not of whole
//! keys. A queue of keys that peers choose (claims' names) takes a seed of its own,
//! secret to its node ([`BroadcastQueue::with_seed`]; see `table` on why).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::time::Duration;

use plexus_actors::fixed::{FixedMap, FixedState};
use plexus_actors::time::Time;

struct Item<V> {
    value: V,
    transmits: u32,
    order: u64,
    /// When it was queued ([`BroadcastQueue::push_at`]), or first taken (pushed
    /// without a time: [`Time::MAX`] until then).
    queued: Time,
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
    /// The latest time the owner has given (`push_at`, `take_at`).
    clock: Time,
    /// When `take_at` next sweeps out expired updates.
    next_sweep: Time,
    expired: u64,
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
            clock: Time::ZERO,
            next_sweep: Time::ZERO,
            expired: 0,
        }
    }

    /// [`BroadcastQueue::push`], the update queued at `now`: it ages from then
    /// (one pushed without a time ages from when it is first taken).
    pub fn push_at(&mut self, now: Time, key: K, value: V) {
        self.clock = self.clock.max(now);
        self.insert(key, value, now);
    }

    /// Queues `value` under `key`, replacing what was queued for it.
    pub fn push(&mut self, key: K, value: V) {
        self.insert(key, value, Time::MAX);
    }

    fn insert(&mut self, key: K, value: V, queued: Time) {
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
                queued,
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
        self.pick(max, cluster_size, None)
    }

    /// [`BroadcastQueue::take`] at `now`, first dropping the updates queued more than
    /// `max_age` ago (see the module's "Age").
    pub fn take_at(
        &mut self,
        now: Time,
        max: usize,
        cluster_size: usize,
        max_age: Duration,
    ) -> Vec<V> {
        self.clock = self.clock.max(now);
        if self.clock >= self.next_sweep {
            self.sweep(max_age);
            self.next_sweep = self.clock + (max_age / 2).max(Duration::from_millis(1));
        }
        self.pick(max, cluster_size, Some(max_age))
    }

    fn pick(&mut self, max: usize, cluster_size: usize, max_age: Option<Duration>) -> Vec<V> {
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
        while out.len() < picks {
            let Some(((transmits, order), key)) = self.index.pop_first() else {
                break;
            };
            let Some(item) = self.items.get_mut(&key) else {
                continue;
            };
            if max_age.is_some_and(|age| self.clock.saturating_since(item.queued) > age) {
                self.items.remove(&key);
                self.expired += 1;
                continue;
            }
            if item.queued == Time::MAX {
                item.queued = self.clock;
            }
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

    /// Drops every update queued more than `max_age` ago, and gives back the room
    /// of a burst that has drained.
    fn sweep(&mut self, max_age: Duration) {
        let clock = self.clock;
        let before = self.items.len();
        self.items
            .retain(|_, item| clock.saturating_since(item.queued) <= max_age);
        if self.items.len() < before {
            self.expired += (before - self.items.len()) as u64;
            let items = &self.items;
            self.index.retain(|(_, Reverse(order)), key| {
                items.get(key).is_some_and(|item| item.order == *order)
            });
        }
        if self.items.capacity() > 64 && self.items.capacity() > 4 * self.items.len() {
            self.items.shrink_to(2 * self.items.len());
        }
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

    /// Updates dropped because they were queued too long ago (`take_at`).
    pub fn expired(&self) -> u64 {
        self.expired
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

    const SEC: Duration = Duration::from_secs(1);

    fn at(secs: u64) -> Time {
        Time::from_millis(secs * 1_000)
    }

    #[test]
    fn an_update_queued_too_long_ago_is_dropped_unsent() {
        let mut q = BroadcastQueue::new(10, 100);
        q.push_at(at(0), "old", 1);
        q.push_at(at(5), "new", 2);
        // Within the age both go out.
        let mut got = q.take_at(at(10), 5, 100, 10 * SEC);
        got.sort();
        assert_eq!(got, vec![1, 2]);
        // Past it, only the newer; the older is gone, not just skipped.
        assert_eq!(q.take_at(at(11), 5, 100, 10 * SEC), vec![2]);
        assert_eq!(q.expired(), 1);
        assert_eq!(q.len(), 1);
        // An update replaced is restamped: it ages from its replacement.
        q.push_at(at(12), "old", 3);
        assert_eq!(q.take_at(at(21), 1, 100, 10 * SEC), vec![3]);
        // Pushed without a time, an update ages from its first sending: a node
        // whose queue was idle for long still sends what it pushes.
        q.push("idle", 4);
        assert_eq!(q.take_at(at(100), 1, 100, 10 * SEC), vec![4]);
        assert_eq!(q.take_at(at(110), 1, 100, 10 * SEC), vec![4]);
        assert!(q.take_at(at(111), 1, 100, 10 * SEC).is_empty());
        // Plain `take` never expires anything.
        let mut plain = BroadcastQueue::new(10, 100);
        plain.push_at(at(0), "a", 1);
        plain.take_at(at(0), 0, 100, SEC);
        assert_eq!(plain.take(1, 100), vec![1]);
    }

    #[test]
    fn expired_updates_do_not_take_a_message_s_room() {
        let mut q = BroadcastQueue::new(10, 100);
        for k in 0..4 {
            q.push_at(at(0), k, k);
        }
        q.push_at(at(30), 9, 9);
        assert_eq!(q.take_at(at(30), 1, 100, 10 * SEC), vec![9]);
        // The four old ones, never sent, come before 9 (sent once), but they
        // have expired: dropped, they leave the message's room to 9.
        assert_eq!(q.take_at(at(31), 2, 100, 10 * SEC), vec![9]);
        assert_eq!(q.expired(), 4);
        assert!(q.take_at(at(100), 2, 100, 10 * SEC).is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn a_sweep_drops_what_the_picks_never_reach_and_gives_back_room() {
        let mut q = BroadcastQueue::new(100, 10_000);
        // A burst, each sent once so that fresher updates always come first.
        for k in 0..5_000u32 {
            q.push_at(at(0), k, k);
        }
        q.take_at(at(0), 5_000, 100, 10 * SEC);
        let burst_room = q.items.capacity();
        // Fresh updates keep coming; every take finds one unsent.
        for t in 1..=20u64 {
            q.push_at(at(t), 100_000 + t as u32, 0);
            assert_eq!(q.take_at(at(t), 1, 100, 10 * SEC).len(), 1);
        }
        assert!(q.len() <= 20, "the burst is swept out: {} left", q.len());
        assert_eq!(q.index.len(), q.items.len());
        assert!(q.expired() >= 5_000);
        assert!(
            q.items.capacity() * 8 < burst_room,
            "room given back: {} of {burst_room}",
            q.items.capacity()
        );
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
