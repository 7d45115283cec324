//! Hashed collections with a fixed seed, for the sans-IO cores.
//!
//! The cores may not use std's `HashMap` and `HashSet` (clippy.toml): their seed is
//! drawn per process, so their iteration order, and with it a run, would differ
//! between processes and replays. These are seeded with foldhash's fixed default
//! instead: the same history gives the same table in every process. They serve
//! where a core only finds entries by key and order does not matter; a walk over one
//! must not decide anything whose order is observable.
//!
//! The default seed is public. A table keyed by what peers send could be flooded
//! with colliding keys, so each use says why its keys are not chosen by a peer, or
//! why a probe costs a peer nothing (see `plexus_mesh::admitted`); or it takes a
//! seed secret to its node that replays alike, [`FixedState::with_seed`] (see
//! `plexus_mesh::registry`).

pub use foldhash::fast::FixedState;

/// A hashed map with the fixed seed.
#[allow(
    clippy::disallowed_types,
    reason = "a fixed seed, not a per-process one: the same order in every process"
)]
pub type FixedMap<K, V> = std::collections::HashMap<K, V, FixedState>;

/// A hashed set with the fixed seed.
#[allow(
    clippy::disallowed_types,
    reason = "a fixed seed, not a per-process one: the same order in every process"
)]
pub type FixedSet<T> = std::collections::HashSet<T, FixedState>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn the_seed_is_the_same_for_every_table() {
        // Two tables built apart iterate alike after the same inserts (two std
        // tables, each seeded on its own, would not), and a map hashes as a set.
        let a: FixedSet<u64> = (0..100).collect();
        let b: FixedSet<u64> = (0..100).collect();
        assert!(a.iter().eq(b.iter()));
        let mut c = FixedMap::default();
        c.insert(1u64, ());
        assert_eq!(c.hasher().hash_one(1u64), a.hasher().hash_one(1u64));
    }
}
