//! What the host needs to know about the cluster, and the one rule that turns it
//! into the scheduler's view.
//!
//! The driver answers through [`Directory`]: the registry for routing (asked on
//! every pump) and [`ClusterFacts`] for the scheduler's tick (asked once a tick).
//! The production driver answers from the libp2p mesh, the simulator from its
//! simulated `Cluster`; everything decided from those answers is decided here.

use std::collections::BTreeMap;

use plexus_actors::NodeId;
use plexus_mesh::membership::MemberState;
use plexus_scheduler::placement::NodeInfo;
use plexus_scheduler::protocol::View;
use plexus_vocab::resources::{Resources, Tags};

/// The registry prefix under which durable actors register (see
/// `DurableKey::registry_name`).
pub const DURABLE_NAME_PREFIX: &str = "durable:";

/// The driver's answers about the cluster.
pub trait Directory {
    /// The node the cluster registry resolves `name` to.
    fn lookup(&self, name: &str) -> Option<NodeId>;
    /// The facts for a scheduler tick.
    fn facts(&self) -> ClusterFacts;
}

/// Another node, as this node's membership sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFacts {
    /// The node.
    pub id: NodeId,
    /// Its state in this node's membership view.
    pub state: MemberState,
    /// What it offers.
    pub capacity: Resources,
    /// Its tags.
    pub tags: Tags,
}

/// What the host asks of the cluster once a scheduler tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// What this node offers.
    pub capacity: Resources,
    /// This node's tags.
    pub tags: Tags,
    /// Every other node membership knows, alive or not.
    pub members: Vec<MemberFacts>,
    /// The nodes the allowlist admits.
    pub allowlisted: Vec<NodeId>,
    /// The keys the allowlist lets submit jobs.
    pub submitters: Vec<NodeId>,
    /// The registry's names and the node each resolves to.
    pub names: Vec<(String, NodeId)>,
}

/// Whether a member in `state` counts as alive for placement and for the
/// scheduler's watchdog.
///
/// A suspect counts as alive: suspicion is SWIM's question, not its verdict, and a
/// suspect that refutes keeps its actors. Treating suspicion as death would move
/// actors off every node that missed one probe under packet loss, and the actors
/// would move back when it refuted. An actor on a node that really died is moved
/// once the failure detector declares it dead.
pub fn counts_alive(state: MemberState) -> bool {
    !state.is_down()
}

impl ClusterFacts {
    /// The members that count as alive (this node excluded).
    pub fn live(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| counts_alive(m.state))
            .map(|m| m.id)
            .collect()
    }

    /// The scheduler's view, from the node `me` that hosts it; `kinds` are the
    /// durable kinds this node's build runs.
    pub fn view(&self, me: NodeId, kinds: impl Iterator<Item = String>) -> View {
        let mut nodes = Vec::with_capacity(self.members.len() + 1);
        nodes.push(NodeInfo {
            id: me,
            tags: self.tags.clone(),
            capacity: self.capacity,
            alive: true,
            draining: false,
        });
        nodes.extend(
            self.members
                .iter()
                .filter(|m| m.id != me)
                .map(|m| NodeInfo {
                    id: m.id,
                    tags: m.tags.clone(),
                    capacity: m.capacity,
                    alive: counts_alive(m.state),
                    draining: false,
                }),
        );
        let locations: BTreeMap<String, NodeId> = self
            .names
            .iter()
            .filter_map(|(name, node)| {
                name.strip_prefix(DURABLE_NAME_PREFIX)
                    .map(|key| (key.to_string(), *node))
            })
            .collect();
        View {
            me: Some(me),
            nodes,
            locations,
            submitters: self.submitters.iter().copied().collect(),
            members: self.allowlisted.iter().copied().collect(),
            kinds: kinds.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u64, state: MemberState) -> MemberFacts {
        MemberFacts {
            id: NodeId::synthetic(i),
            state,
            capacity: Resources::default(),
            tags: Tags::default(),
        }
    }

    #[test]
    fn suspects_count_as_alive_and_the_dead_do_not() {
        let facts = ClusterFacts {
            members: vec![
                member(1, MemberState::Alive),
                member(2, MemberState::Suspect),
                member(3, MemberState::Dead),
                member(4, MemberState::Left),
            ],
            ..ClusterFacts::default()
        };
        assert_eq!(
            facts.live(),
            vec![NodeId::synthetic(1), NodeId::synthetic(2)]
        );
        let view = facts.view(NodeId::synthetic(0), std::iter::empty());
        let alive: Vec<(u64, bool)> = view
            .nodes
            .iter()
            .map(|n| (n.id.synthetic_index(), n.alive))
            .collect();
        assert_eq!(
            alive,
            [(0, true), (1, true), (2, true), (3, false), (4, false)]
        );
    }

    #[test]
    fn only_durable_names_become_locations() {
        let facts = ClusterFacts {
            names: vec![
                ("durable:job/a/0".into(), NodeId::synthetic(1)),
                ("echo".into(), NodeId::synthetic(2)),
            ],
            ..ClusterFacts::default()
        };
        let view = facts.view(NodeId::synthetic(0), ["relay".to_string()].into_iter());
        assert_eq!(
            view.locations.into_iter().collect::<Vec<_>>(),
            [("job/a/0".to_string(), NodeId::synthetic(1))]
        );
        assert!(view.kinds.contains("relay"));
    }
}
