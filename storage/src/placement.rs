//! Which nodes hold a chunk: rendezvous (highest-random-weight) hashing.
//!
//! Each node gets a score per chunk, `BLAKE3(domain ‖ chunk ‖ node)`; the chunk's
//! holders are the `r` best-scoring live nodes. Every node computes the same
//! answer from the same member list, with no table to agree on, and when a node
//! leaves only the chunks it held move (each to the next node in that chunk's
//! order). With a spread tag (e.g. `region`), holders are taken first from
//! distinct values of that tag, in score order, and only then from the rest, so
//! replicas sit in as many regions as there are.
//!
//! Invariants (property-tested): never two replicas on one node; `min(r, n)`
//! holders from `n` candidates; removing a non-holder moves nothing.

use plexus_actors::NodeId;

/// A node that may hold chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// Its value of the spread tag, if any (nodes without one spread freely).
    pub zone: Option<String>,
}

impl Candidate {
    /// A candidate without a zone.
    pub fn plain(node: NodeId) -> Self {
        Candidate { node, zone: None }
    }
}

const DOMAIN: &[u8] = b"plexus/fs/rendezvous/v1";

/// `node`'s score for `chunk`.
pub fn score(chunk: &crate::ChunkId, node: &NodeId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(&chunk.0);
    h.update(&node.to_bytes());
    *h.finalize().as_bytes()
}

/// `nodes` in `chunk`'s order: best score first (ties, impossible in practice,
/// by node id).
pub fn ranked<'a>(
    chunk: &crate::ChunkId,
    nodes: impl IntoIterator<Item = &'a NodeId>,
) -> Vec<NodeId> {
    let mut scored: Vec<([u8; 32], NodeId)> =
        nodes.into_iter().map(|n| (score(chunk, n), *n)).collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().map(|(_, n)| n).collect()
}

/// Every candidate in the order a put tries them for `chunk`: first one per zone
/// (in score order), then the rest in score order. The first `r` are the holders;
/// a put that finds one full goes on down the list.
pub fn order(chunk: &crate::ChunkId, candidates: &[Candidate]) -> Vec<NodeId> {
    let ranked = ranked(chunk, candidates.iter().map(|c| &c.node));
    let zone = |n: &NodeId| {
        candidates
            .iter()
            .find(|c| c.node == *n)
            .and_then(|c| c.zone.clone())
    };
    let mut first = Vec::with_capacity(ranked.len());
    let mut rest = Vec::new();
    let mut zones_seen: Vec<String> = Vec::new();
    for n in ranked {
        match zone(&n) {
            Some(z) if zones_seen.contains(&z) => rest.push(n),
            Some(z) => {
                zones_seen.push(z);
                first.push(n);
            }
            None => first.push(n),
        }
    }
    first.extend(rest);
    first
}

/// The `r` holders of `chunk` among `candidates`.
pub fn holders(chunk: &crate::ChunkId, candidates: &[Candidate], r: usize) -> Vec<NodeId> {
    let mut o = order(chunk, candidates);
    o.truncate(r);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkId;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn nodes(n: u64) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate::plain(NodeId::synthetic(i)))
            .collect()
    }

    proptest! {
        #[test]
        fn holders_are_distinct_and_as_many_as_can_be(n in 0u64..12, r in 1usize..6, c in any::<u64>()) {
            let chunk = ChunkId::of(&c.to_le_bytes());
            let h = holders(&chunk, &nodes(n), r);
            prop_assert_eq!(h.len(), r.min(n as usize));
            prop_assert_eq!(h.iter().collect::<BTreeSet<_>>().len(), h.len());
        }

        #[test]
        fn removing_a_non_holder_moves_nothing_and_a_holder_moves_one(
            n in 2u64..12, r in 1usize..5, c in any::<u64>(), gone in any::<u64>()
        ) {
            let chunk = ChunkId::of(&c.to_le_bytes());
            let all = nodes(n);
            let before = holders(&chunk, &all, r);
            let gone = NodeId::synthetic(gone % n);
            let left: Vec<Candidate> = all.into_iter().filter(|c| c.node != gone).collect();
            let after = holders(&chunk, &left, r);
            let kept: Vec<&NodeId> = before.iter().filter(|h| **h != gone).collect();
            // Every surviving holder still holds; at most one new node joins.
            prop_assert!(kept.iter().all(|h| after.contains(h)));
            prop_assert!(after.iter().filter(|a| !before.contains(a)).count() <= 1);
        }

        #[test]
        fn replicas_spread_over_zones_first(n in 1u64..12, zones in 1u64..4, r in 1usize..5, c in any::<u64>()) {
            let chunk = ChunkId::of(&c.to_le_bytes());
            let all: Vec<Candidate> = (0..n)
                .map(|i| Candidate { node: NodeId::synthetic(i), zone: Some(format!("z{}", i % zones)) })
                .collect();
            let h = holders(&chunk, &all, r);
            let zones_of = |h: &[NodeId]| h.iter()
                .map(|n| n.synthetic_index() % zones)
                .collect::<BTreeSet<_>>()
                .len();
            let present = zones.min(n) as usize;
            prop_assert_eq!(zones_of(&h), r.min(present));
            prop_assert_eq!(h.len(), r.min(n as usize));
        }
    }

    #[test]
    fn chunks_spread_over_nodes() {
        // 3 of 5 nodes per chunk: each node holds about 3/5 of 2,000 chunks.
        let all = nodes(5);
        let mut count = [0usize; 5];
        for c in 0u64..2_000 {
            for h in holders(&ChunkId::of(&c.to_le_bytes()), &all, 3) {
                count[h.synthetic_index() as usize] += 1;
            }
        }
        assert!(
            count.iter().all(|&k| (1_050..=1_350).contains(&k)),
            "{count:?}"
        );
    }
}
