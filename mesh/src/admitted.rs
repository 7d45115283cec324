//! [`Admitted`]: the allowlist's nodes, as the cores check every sender against them.

use std::sync::Arc;

use plexus_actors::NodeId;
use plexus_actors::fixed::FixedSet;

/// The nodes admitted to the mesh: a shared, hashed set. Membership checks it for
/// every statement, accusation and frame it handles (twice per gossiped statement),
/// so a lookup must not walk a tree of a thousand ids; and every core of a process
/// holds the same set (all simulated nodes of a world, in one `Arc`), where each
/// used to keep its own ordered copy: at 10,000 nodes, 10,000 copies of 10,000 ids.
/// Only ever asked whether it holds an id: nothing depends on its order. Its seed is
/// fixed and public ([`plexus_actors::fixed`]), but the contents come from the
/// governance-signed allowlist, not from peers, and a lookup of any id (a peer's
/// included) probes at most as far as the table's own load allows: a known seed
/// gives a liar nothing to flood.
#[derive(Clone, Debug)]
pub struct Admitted(Arc<FixedSet<NodeId>>);

impl Admitted {
    /// Whether `id` is admitted.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.0.contains(id)
    }

    /// How many nodes are admitted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no node is admitted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<NodeId> for Admitted {
    fn from_iter<I: IntoIterator<Item = NodeId>>(ids: I) -> Self {
        let mut set = FixedSet::default();
        set.extend(ids);
        Admitted(Arc::new(set))
    }
}

#[cfg(test)]
mod tests {
    use plexus_vocab::identity::NodeKey;

    use super::*;

    fn id(i: u8) -> NodeId {
        NodeKey::from_seed([i; 32]).node_id()
    }

    #[test]
    fn holds_exactly_the_ids_it_was_built_from() {
        let set: Admitted = (1..=50).map(id).collect();
        assert_eq!(set.len(), 50);
        assert!((1..=50).all(|i| set.contains(&id(i))));
        assert!(!(51..=100).any(|i| set.contains(&id(i))));
        assert!(!set.contains(&NodeId::ZERO));
        let empty: Admitted = std::iter::empty().collect();
        assert!(empty.is_empty() && !empty.contains(&id(1)));
    }

    #[test]
    fn a_clone_shares_the_set() {
        let set: Admitted = (1..=3).map(id).collect();
        let copy = set.clone();
        assert!(Arc::ptr_eq(&set.0, &copy.0));
    }
}
