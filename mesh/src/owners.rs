//! Which nodes own a name when the registry is sharded: rendezvous
//! (highest-random-weight) hashing over the live members, the scheme storage uses
//! to place chunks.
//!
//! Every node weighs every live node (itself included) against the name and takes
//! the `r` heaviest. Nodes whose views agree compute the same owners, with nothing
//! exchanged. A node joining takes a name from at most one owner (the lightest),
//! and a node leaving gives each of its names to one other: ownership moves only
//! where it has to. A joiner is checked with one weight against the lightest owner
//! ([`OwnerSet::admit`]); only the death of an owner costs a walk over the view
//! ([`OwnerSet::compute`]).
//!
//! The weight mixes the name's point (BLAKE3 over a domain and the name) with the
//! node's id ([`NamePoint::weight`]). Like any public function of the node's id, it
//! can be ground: an operator who generates many
//! keys before admission can own a chosen name. An owner can withhold claims or
//! serve old ones, never forge them (claims are signed by their claimants), so a
//! node asks all `r` owners and keeps the newest of what they say: one honest owner
//! is enough.

use plexus_actors::NodeId;
use smallvec::SmallVec;

/// Domain of a name's weights.
const WEIGHT_DOMAIN: &[u8] = b"plexus/mesh/name-owner/v1";

/// Most owners a name can have.
pub const OWNERS_MAX: usize = 7;

/// A name's point: hashed once (BLAKE3), weighed against each node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamePoint([u64; 4]);

impl NamePoint {
    /// The point of `name`.
    pub fn of(name: &str) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(WEIGHT_DOMAIN);
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        let out = h.finalize();
        let b = out.as_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Self([word(0), word(1), word(2), word(3)])
    }

    /// The weight of `node` for this name: higher owns first.
    ///
    /// Folded multiplies (wyhash's mixing step) of the point's words against the
    /// node's, not a BLAKE3 per pair: an owner set is the top of the whole view
    /// (a thousand weights), and BLAKE3 per weight made the invariant checks of a
    /// simulated 1,000-node hour a tenth slower. The point is uniformly random per
    /// name, so each node's weight is too; the function is public either way (see
    /// the module's note on grinding).
    pub fn weight(&self, node: &NodeId) -> u64 {
        const K: [u64; 3] = [
            0xa076_1d64_78bd_642f,
            0xe703_7ed1_a0b4_28db,
            0x8ebc_6af0_9c88_c6e3,
        ];
        let n = node.words();
        let p = &self.0;
        let a = fold(p[0] ^ n[0] ^ K[0], p[1] ^ n[1] ^ K[1]);
        let b = fold(p[2] ^ n[2] ^ K[1], p[3] ^ n[3] ^ K[2]);
        fold(a ^ K[2], b ^ K[0])
    }
}

/// The 128-bit product of `a` and `b`, its halves xored.
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The owners of one name, heaviest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerSet(SmallVec<[(u64, NodeId); 3]>);

impl OwnerSet {
    /// The `r` heaviest of `candidates` (each counted once).
    pub fn compute(
        point: &NamePoint,
        candidates: impl IntoIterator<Item = NodeId>,
        r: usize,
    ) -> Self {
        let r = r.clamp(1, OWNERS_MAX);
        let mut set = Self::default();
        for node in candidates {
            set.admit(point.weight(&node), node, r);
        }
        set
    }

    /// Takes `node` of weight `w` if it is heavier than the lightest owner (or there
    /// are fewer than `r`). Returns whether the set changed.
    pub fn admit(&mut self, w: u64, node: NodeId, r: usize) -> bool {
        let Some(at) = self.place(w, node, r) else {
            return false;
        };
        self.0.insert(at, (w, node));
        self.0.truncate(r.clamp(1, OWNERS_MAX));
        true
    }

    /// Whether [`admit`](Self::admit) would change the set, without changing it.
    pub fn admits(&self, w: u64, node: NodeId, r: usize) -> bool {
        self.place(w, node, r).is_some()
    }

    /// Where `node` of weight `w` goes among the owners, if it goes in.
    fn place(&self, w: u64, node: NodeId, r: usize) -> Option<usize> {
        let r = r.clamp(1, OWNERS_MAX);
        let entry = (w, node);
        // A full set turns most candidates away on its lightest owner alone (a walk
        // over a view of thousands is mostly that).
        if self.0.len() >= r && self.0.last().is_some_and(|lightest| entry <= *lightest) {
            return None;
        }
        if self.0.iter().any(|(_, n)| *n == node) {
            return None;
        }
        // Heaviest first; ties (never in practice) by node id.
        let at = self
            .0
            .iter()
            .position(|e| (e.0, e.1) < entry)
            .unwrap_or(self.0.len());
        (at < r).then_some(at)
    }

    /// Whether `node` is an owner.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.0.iter().any(|(_, n)| n == node)
    }

    /// The owners, heaviest first.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.0.iter().map(|(_, n)| *n)
    }

    /// How many owners.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(i: u64) -> NodeId {
        NodeId::from_public_key(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    proptest! {
        /// The set is the `r` heaviest whatever the order nodes come in, and
        /// admitting one node more changes it exactly when the newcomer is heavier
        /// than its lightest owner.
        #[test]
        fn the_heaviest_in_any_order(n in 0u64..40, r in 1usize..6, shift in 0u64..40, name in "[a-z]{1,12}") {
            let point = NamePoint::of(&name);
            let nodes: Vec<NodeId> = (0..n).map(node).collect();
            let mut rotated = nodes.clone();
            rotated.rotate_left((shift % n.max(1)) as usize);
            let a = OwnerSet::compute(&point, nodes.iter().copied(), r);
            let b = OwnerSet::compute(&point, rotated.iter().copied(), r);
            prop_assert_eq!(&a, &b);
            let mut by_weight: Vec<(u64, NodeId)> = nodes.iter().map(|n| (point.weight(n), *n)).collect();
            by_weight.sort_unstable_by(|x, y| y.cmp(x));
            let want: Vec<NodeId> = by_weight.iter().take(r).map(|(_, n)| *n).collect();
            prop_assert_eq!(a.nodes().collect::<Vec<_>>(), want);
            let newcomer = node(1000 + n);
            let mut grown = a.clone();
            let would = grown.admits(point.weight(&newcomer), newcomer, r);
            let changed = grown.admit(point.weight(&newcomer), newcomer, r);
            prop_assert_eq!(would, changed, "`admits` says what `admit` does");
            let full = OwnerSet::compute(&point, nodes.iter().copied().chain([newcomer]), r);
            prop_assert_eq!(&grown, &full);
            prop_assert_eq!(changed, full.contains(&newcomer));
            prop_assert!(!grown.admit(point.weight(&newcomer), newcomer, r), "a node is admitted once");
        }
    }

    #[test]
    fn names_spread_over_nodes() {
        // Random keys, and the simulator's synthetic ids, which differ in one word.
        for nodes in [
            (0..10).map(node).collect::<Vec<NodeId>>(),
            (0..10).map(NodeId::synthetic).collect(),
        ] {
            let mut owned = [0usize; 10];
            for k in 0..1000 {
                let set = OwnerSet::compute(
                    &NamePoint::of(&format!("name-{k}")),
                    nodes.iter().copied(),
                    3,
                );
                assert_eq!(set.len(), 3);
                for n in set.nodes() {
                    owned[nodes.iter().position(|m| *m == n).unwrap_or(0)] += 1;
                }
            }
            // 300 each on average; a skewed weight would leave some far off.
            assert!(owned.iter().all(|c| (230..370).contains(c)), "{owned:?}");
        }
    }
}
