//! Garbage collection of unpinned files: mark and sweep, with a grace period.
//!
//! A file stays as long as it is pinned (`plexus fs pin`; a put pins). Every
//! `gc_every`, each shard's driver marks what is live: every pinned file's
//! manifest and the chunks it lists. It hands the mark to [`Gc::sweep`] with the
//! chunks it holds; a held chunk that no mark has named for `grace` in a row is
//! collected. The grace period covers the chunks of a put in flight (stored before
//! their manifest and pin exist) and a pin that has not reached this node yet.
//!
//! A mark is only ever taken whole: if any pinned file's manifest cannot be read,
//! the driver skips the sweep (an incomplete mark would collect that file's
//! chunks). Unpinning never deletes at once; a pin within the grace period saves
//! the file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plexus_actors::Time;

use crate::ChunkId;

/// What a sweep is handed: the mark, and whether it can be trusted.
#[derive(Clone, Debug, Default)]
pub struct Mark {
    /// Every pinned file's manifest and the chunks it lists.
    pub live: BTreeSet<ChunkId>,
    /// Every pinned manifest was read (an incomplete mark would collect the
    /// chunks of a pinned file it could not read).
    pub complete: bool,
    /// The key-value replica the pins came from has heard from a peer lately, or
    /// the node is alone (a replica cut off may not know of newer pins).
    pub pins_fresh: bool,
}

/// One shard's collector.
#[derive(Debug)]
pub struct Gc {
    grace: Duration,
    /// Held chunks no mark named, since when.
    unreferenced: BTreeMap<ChunkId, Time>,
}

impl Gc {
    /// A collector with `grace`.
    pub fn new(grace: Duration) -> Self {
        Gc {
            grace,
            unreferenced: BTreeMap::new(),
        }
    }

    /// Chunks waiting out their grace.
    pub fn pending(&self) -> usize {
        self.unreferenced.len()
    }

    /// One sweep over the chunks `held` here with `mark`: the chunks to remove
    /// now. A mark that is incomplete or built from stale pins changes nothing.
    pub fn sweep<'a>(
        &mut self,
        now: Time,
        held: impl IntoIterator<Item = &'a ChunkId>,
        mark: &Mark,
    ) -> Vec<ChunkId> {
        if !mark.complete || !mark.pins_fresh {
            return Vec::new();
        }
        let live = &mark.live;
        let mut seen = BTreeMap::new();
        let mut collect = Vec::new();
        for c in held {
            if live.contains(c) {
                continue;
            }
            let since = self.unreferenced.get(c).copied().unwrap_or(now);
            if now.saturating_since(since) >= self.grace {
                collect.push(*c);
            } else {
                seen.insert(*c, since);
            }
        }
        // Forget chunks that are live again, gone, or collected now.
        self.unreferenced = seen;
        collect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark<const N: usize>(live: [ChunkId; N]) -> Mark {
        Mark {
            live: live.into(),
            complete: true,
            pins_fresh: true,
        }
    }

    #[test]
    fn an_incomplete_or_stale_mark_collects_nothing() {
        let mut gc = Gc::new(Duration::ZERO);
        let held = [ChunkId::of(b"a")];
        let t0 = Time::from_millis(1_000);
        let m = mark([]);
        let incomplete = Mark {
            complete: false,
            ..m.clone()
        };
        let stale = Mark {
            pins_fresh: false,
            ..m.clone()
        };
        assert!(gc.sweep(t0, &held, &incomplete).is_empty());
        assert!(gc.sweep(t0, &held, &stale).is_empty());
        assert_eq!(gc.sweep(t0, &held, &m), held.to_vec());
    }

    #[test]
    fn an_unpinned_chunk_goes_after_its_grace_and_a_pin_saves_it() {
        let mut gc = Gc::new(Duration::from_secs(60));
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        let held = [a, b];
        let t0 = Time::from_millis(1_000);
        let live = mark([a]);
        assert!(gc.sweep(t0, &held, &live).is_empty());
        assert!(
            gc.sweep(t0 + Duration::from_secs(59), &held, &live)
                .is_empty()
        );
        assert_eq!(
            gc.sweep(t0 + Duration::from_secs(60), &held, &live),
            vec![b]
        );
        // Pinned again within the grace: the clock starts over.
        let mut gc = Gc::new(Duration::from_secs(60));
        assert!(gc.sweep(t0, &held, &live).is_empty());
        let both = mark([a, b]);
        assert!(
            gc.sweep(t0 + Duration::from_secs(30), &held, &both)
                .is_empty()
        );
        assert!(
            gc.sweep(t0 + Duration::from_secs(70), &held, &live)
                .is_empty()
        );
        assert_eq!(gc.pending(), 1);
        assert_eq!(
            gc.sweep(t0 + Duration::from_secs(130), &held, &live),
            vec![b]
        );
        // Live chunks are never collected, however long.
        assert!(
            !gc.sweep(t0 + Duration::from_secs(10_000), &held, &live)
                .contains(&a)
        );
    }
}
