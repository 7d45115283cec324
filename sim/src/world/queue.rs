//! The order the simulator's events run in: a calendar of buckets in front of two
//! small binary heaps.
//!
//! One binary heap of every pending event (the first form of this queue) costs a
//! sift through `log2 n` levels per pop, most of them cache misses once tens of
//! thousands of events wait: a tenth of a 10,000-node world's steady state. But
//! simulated time only goes forward, and almost every event is due within a few
//! seconds (network delays, acks, probes), so events are dropped into buckets of
//! [`BUCKET_US`] by their time, in O(1), and only the bucket whose time has come
//! is ordered, in a heap of a hundred or so entries that stays in the cache.
//! Events past the calendar's reach (syncs, sweeps) wait in a heap of their own
//! and enter the calendar as it moves forward.
//!
//! The order is exactly the single heap's: by time, then by sequence number. An
//! event is never queued before the time of the last one taken (the world's
//! clock), so what is in a later bucket can never be due before what is left in
//! the current one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How much simulated time one bucket spans (µs).
const BUCKET_US: u64 = 1_000;
/// How many buckets the calendar has: it reaches this many buckets past the
/// current one (4 s at 1 ms a bucket).
const BUCKETS: usize = 4_096;
/// Most room an emptied bucket keeps (entries): a few times a busy bucket's load
/// at 10,000 nodes, about 100 events a millisecond.
const SPARE_KEPT: usize = 512;

/// What is ordered: the payload waits elsewhere (`World::slab`), so moving an
/// entry moves 24 bytes instead of a whole frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) slot: u32,
}

/// Pending events, taken in `(at, seq)` order.
pub(super) struct EventQueue {
    /// Events due before `near_end`, ordered.
    near: BinaryHeap<Reverse<Key>>,
    /// Bucket `k` after `head` (mod [`BUCKETS`]) holds the events due in
    /// `[near_end + k * BUCKET_US, near_end + (k + 1) * BUCKET_US)`, unordered.
    ring: Vec<Vec<Key>>,
    head: usize,
    /// Events in the ring.
    in_ring: usize,
    /// Events due at or after the ring's end, ordered.
    far: BinaryHeap<Reverse<Key>>,
    /// The end of what `near` may hold; the ring starts here.
    near_end: u64,
}

impl Default for EventQueue {
    fn default() -> Self {
        Self {
            near: BinaryHeap::new(),
            ring: (0..BUCKETS).map(|_| Vec::new()).collect(),
            head: 0,
            in_ring: 0,
            far: BinaryHeap::new(),
            near_end: 0,
        }
    }
}

impl EventQueue {
    /// Queues `key`. Its time must not be before that of the last key popped.
    pub(super) fn push(&mut self, key: Key) {
        if key.at < self.near_end {
            self.near.push(Reverse(key));
            return;
        }
        let k = (key.at - self.near_end) / BUCKET_US;
        if k < BUCKETS as u64 {
            self.ring[(self.head + k as usize) % BUCKETS].push(key);
            self.in_ring += 1;
        } else {
            self.far.push(Reverse(key));
        }
    }

    /// Takes the first key.
    pub(super) fn pop(&mut self) -> Option<Key> {
        self.fill();
        self.near.pop().map(|Reverse(k)| k)
    }

    /// The first key, without taking it.
    pub(super) fn peek(&mut self) -> Option<Key> {
        self.fill();
        self.near.peek().map(|Reverse(k)| *k)
    }

    /// Moves the calendar forward until `near` holds the first key, if any is queued.
    fn fill(&mut self) {
        while self.near.is_empty() {
            if self.in_ring == 0 {
                // Nothing within the calendar's reach: jump to the first far key.
                let Some(Reverse(first)) = self.far.peek() else {
                    return;
                };
                self.near_end = self.near_end.max(first.at - first.at % BUCKET_US);
                self.head = 0;
                self.admit_far();
                continue;
            }
            // The head bucket becomes `near`; `near`'s emptied vector becomes the
            // ring's last bucket, keeping its room unless a burst (a join's starts)
            // made it large: kept, such vectors would spread over the whole ring.
            let bucket = std::mem::take(&mut self.ring[self.head]);
            self.in_ring -= bucket.len();
            let mut spare: Vec<Key> = std::mem::take(&mut self.near)
                .into_vec()
                .into_iter()
                .map(|Reverse(k)| k)
                .collect();
            spare.shrink_to(SPARE_KEPT);
            self.ring[self.head] = spare;
            self.near = bucket.into_iter().map(Reverse).collect();
            self.head = (self.head + 1) % BUCKETS;
            self.near_end = self.near_end.saturating_add(BUCKET_US);
            self.admit_far();
        }
    }

    /// Moves the far keys the calendar now reaches into their buckets.
    fn admit_far(&mut self) {
        while let Some(Reverse(first)) = self.far.peek() {
            // A difference, not `near_end` plus the reach, which overflows for
            // keys near `u64::MAX`.
            if first.at.saturating_sub(self.near_end) >= BUCKETS as u64 * BUCKET_US {
                break;
            }
            let Some(Reverse(key)) = self.far.pop() else {
                break;
            };
            self.push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Pops come out exactly as from one binary heap, whatever mix of near,
        /// bucketed and far times is pushed between them (never before the last
        /// pop's time, as in the world).
        #[test]
        fn the_order_is_a_single_heaps(ops in prop::collection::vec((0u8..4, 0u64..10_000_000, any::<bool>()), 1..600)) {
            let mut queue = EventQueue::default();
            let mut model: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
            let (mut now, mut seq) = (0u64, 0u64);
            for (kind, delay, pop) in ops {
                let delay = match kind {
                    0 => delay % 1_000,
                    1 => delay % 100_000,
                    2 => delay,
                    _ => delay * 1_000,
                };
                seq += 1;
                let key = Key { at: now + delay, seq, slot: seq as u32 };
                queue.push(key);
                model.push(Reverse(key));
                if pop {
                    let want = model.pop().map(|Reverse(k)| k);
                    prop_assert_eq!(queue.peek(), want);
                    prop_assert_eq!(queue.pop(), want);
                    if let Some(k) = want {
                        now = k.at;
                    }
                }
            }
            while let Some(Reverse(want)) = model.pop() {
                prop_assert_eq!(queue.pop(), Some(want));
            }
            prop_assert_eq!(queue.pop(), None);
        }
    }

    #[test]
    fn keys_at_the_end_of_time_come_out() {
        let mut queue = EventQueue::default();
        for (seq, at) in [
            (1, u64::MAX),
            (2, u64::MAX - 1),
            (3, u64::MAX - 4_096_000),
            (4, 5),
        ] {
            queue.push(Key { at, seq, slot: 0 });
        }
        let got: Vec<u64> = std::iter::from_fn(|| queue.pop()).map(|k| k.seq).collect();
        assert_eq!(got, vec![4, 3, 2, 1]);
    }

    #[test]
    fn ties_in_time_come_out_in_sequence() {
        let mut queue = EventQueue::default();
        for seq in (1..=50).rev() {
            queue.push(Key {
                at: 7_000_123,
                seq,
                slot: 0,
            });
        }
        queue.push(Key {
            at: 20_000_000_000,
            seq: 51,
            slot: 0,
        });
        let got: Vec<u64> = std::iter::from_fn(|| queue.pop()).map(|k| k.seq).collect();
        let want: Vec<u64> = (1..=51).collect();
        assert_eq!(got, want);
    }
}
