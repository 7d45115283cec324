//! What the host needs to know about the cluster, and the one rule that turns it
//! into the scheduler's view.
//!
//! The driver answers through [`Directory`]: the registry for routing (asked on
//! every pump) and [`ClusterFacts`] for the scheduler's tick (asked once a tick).
//! The production driver answers from the libp2p mesh, the simulator from its
//! simulated `Cluster`; everything decided from those answers is decided here.
//!
//! # Whose word placement takes
//! Placement uses only what governance signed: a node's tags are its allowlist
//! entry's tags ([`Grant::tags`]), never what the node says of itself, so a
//! constraint such as `kyc` is met only by a node governance tagged `kyc`. A
//! node's capacity is what it declares, capped per dimension by its allowlist
//! grant ([`Grant::capacity`]) where the grant names that dimension (a zero
//! dimension in the grant grants nothing, and leaves the declared value). Members
//! membership knows but the allowlist does not are left out of the view.

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
    /// What it says it offers (self-declared: capped by its [`Grant`]).
    pub capacity: Resources,
    /// The tags it says it has (self-declared: for display only, never placement).
    pub tags: Tags,
}

/// What governance granted one node: its allowlist entry (signed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// Its tags: the only tags constraints are judged on.
    pub tags: Tags,
    /// The most capacity placement counts on it for, per dimension; a zero
    /// dimension grants nothing (the node's declared value stands).
    pub capacity: Resources,
}

impl Grant {
    /// `declared`, capped by this grant where it names a dimension.
    pub fn cap(&self, declared: &Resources) -> Resources {
        fn cap(declared: u64, granted: u64) -> u64 {
            if granted == 0 {
                declared
            } else {
                declared.min(granted)
            }
        }
        Resources {
            cpu_millis: cap(declared.cpu_millis, self.capacity.cpu_millis),
            memory_bytes: cap(declared.memory_bytes, self.capacity.memory_bytes),
            gpus: if self.capacity.gpus == 0 {
                declared.gpus
            } else {
                declared.gpus.min(self.capacity.gpus)
            },
        }
    }
}

/// What the host asks of the cluster once a scheduler tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// The network's name (the allowlist's): signed scheduler requests must name it.
    pub network: String,
    /// What this node says it offers (capped by its grant).
    pub capacity: Resources,
    /// This node's self-declared tags (for display only, never placement).
    pub tags: Tags,
    /// Every other node membership knows, alive or not.
    pub members: Vec<MemberFacts>,
    /// The nodes the allowlist admits, with what governance granted each.
    pub allowlisted: BTreeMap<NodeId, Grant>,
    /// The keys the allowlist lets submit jobs.
    pub submitters: Vec<NodeId>,
    /// The registry's names this node holds and the node each resolves to.
    pub names: Vec<(String, NodeId)>,
    /// The registry is sharded: `names` holds only this node's share (the names
    /// it owns and those it looks up), not every name. The scheduler then takes
    /// where actors run from their hosts' reports too, and hosts repeat them.
    pub names_partial: bool,
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
    /// The allowlisted nodes, in order.
    pub fn allowlisted_ids(&self) -> Vec<NodeId> {
        self.allowlisted.keys().copied().collect()
    }

    /// The node's governance grant (an unlisted node is granted nothing: no tags).
    fn grant(&self, id: &NodeId) -> Grant {
        self.allowlisted.get(id).cloned().unwrap_or_default()
    }

    /// The allowlisted members that count as alive (this node excluded).
    pub fn live(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| counts_alive(m.state) && self.allowlisted.contains_key(&m.id))
            .map(|m| m.id)
            .collect()
    }

    /// The members declared dead or departed (this node excluded).
    pub fn down(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| !counts_alive(m.state))
            .map(|m| m.id)
            .collect()
    }

    /// The scheduler's view, from the node `me` that hosts it; `kinds` are the
    /// durable kinds this node's build runs.
    pub fn view(&self, me: NodeId, kinds: impl Iterator<Item = String>) -> View {
        let mut nodes = Vec::with_capacity(self.members.len() + 1);
        let mine = self.grant(&me);
        nodes.push(NodeInfo {
            id: me,
            tags: mine.tags.clone(),
            capacity: mine.cap(&self.capacity),
            alive: true,
            draining: false,
        });
        nodes.extend(
            self.members
                .iter()
                .filter(|m| m.id != me && self.allowlisted.contains_key(&m.id))
                .map(|m| {
                    let grant = self.grant(&m.id);
                    NodeInfo {
                        id: m.id,
                        tags: grant.tags.clone(),
                        capacity: grant.cap(&m.capacity),
                        alive: counts_alive(m.state),
                        draining: false,
                    }
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
            members: self.allowlisted.keys().copied().collect(),
            kinds: kinds.collect(),
            network: self.network.clone(),
            partial: self.names_partial,
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
            allowlisted: (0..5)
                .map(|i| (NodeId::synthetic(i), Grant::default()))
                .collect(),
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

    fn tags(list: &[&str]) -> Tags {
        list.iter()
            .map(|t| (t.to_string(), String::new()))
            .collect()
    }

    fn cpu(millis: u64) -> Resources {
        Resources {
            cpu_millis: millis,
            memory_bytes: 1 << 30,
            gpus: 0,
        }
    }

    /// A node that calls itself `kyc` (and claims a huge capacity) is placed by
    /// what governance signed: no `kyc` tag, and the granted CPU.
    #[test]
    fn placement_sees_only_governance_tags_and_granted_capacity() {
        let liar = MemberFacts {
            id: NodeId::synthetic(1),
            state: MemberState::Alive,
            capacity: cpu(1_000_000),
            tags: tags(&["kyc", "gpu"]),
        };
        let honest = MemberFacts {
            id: NodeId::synthetic(2),
            state: MemberState::Alive,
            capacity: cpu(4_000),
            tags: Tags::default(),
        };
        let phantom = MemberFacts {
            id: NodeId::synthetic(9),
            state: MemberState::Alive,
            capacity: cpu(4_000),
            tags: tags(&["kyc"]),
        };
        let facts = ClusterFacts {
            // This node, too, says it is `kyc` without governance saying so.
            tags: tags(&["kyc"]),
            capacity: cpu(8_000),
            members: vec![liar, honest, phantom],
            allowlisted: [
                (
                    NodeId::synthetic(0),
                    Grant {
                        tags: tags(&["region"]),
                        capacity: Resources::default(),
                    },
                ),
                (
                    NodeId::synthetic(1),
                    Grant {
                        tags: Tags::default(),
                        capacity: Resources {
                            cpu_millis: 2_000,
                            ..Resources::default()
                        },
                    },
                ),
                (
                    NodeId::synthetic(2),
                    Grant {
                        tags: tags(&["kyc"]),
                        capacity: cpu(16_000),
                    },
                ),
            ]
            .into_iter()
            .collect(),
            ..ClusterFacts::default()
        };
        let view = facts.view(NodeId::synthetic(0), std::iter::empty());
        let by_id: BTreeMap<u64, &NodeInfo> = view
            .nodes
            .iter()
            .map(|n| (n.id.synthetic_index(), n))
            .collect();
        assert_eq!(by_id.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(by_id[&0].tags, tags(&["region"]));
        assert_eq!(by_id[&0].capacity, cpu(8_000), "no grant: declared stands");
        assert_eq!(by_id[&1].tags, Tags::default(), "self-declared kyc ignored");
        assert_eq!(
            by_id[&1].capacity,
            cpu(2_000),
            "cpu capped; memory ungranted"
        );
        assert_eq!(by_id[&2].tags, tags(&["kyc"]));
        assert_eq!(by_id[&2].capacity, cpu(4_000), "declared below the grant");
        let kyc = plexus_scheduler::tags::Expr::parse("kyc").unwrap();
        let met: Vec<u64> = view
            .nodes
            .iter()
            .filter(|n| kyc.eval(&n.tags))
            .map(|n| n.id.synthetic_index())
            .collect();
        assert_eq!(met, [2], "only the node governance tagged kyc");
        assert_eq!(facts.live(), [NodeId::synthetic(1), NodeId::synthetic(2)]);
    }
}
