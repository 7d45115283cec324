//! The placement decision: which node runs an actor. A pure function of the nodes
//! (their tags, capacity, liveness), what is already allocated, and the demand.
//!
//! Guarantees (property-tested below): a placement never over-commits a node in any
//! dimension, always satisfies the constraint, never picks a dead or draining node,
//! and is deterministic (same input, same answer: ties break by node id).
//!
//! Capacity is what the node's operator declared (in the allowlist, or the node's
//! config); allocations are the scheduler's own bookkeeping, so they are exact
//! rather than a lagging gossip estimate.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::NodeId;
use plexus_durable::types::{ReplicaSet, rendezvous};
use plexus_vocab::resources::{Resources, Tags};
use serde::{Deserialize, Serialize};

use crate::job::Strategy;
use crate::tags::Expr;

/// What the scheduler knows about a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Its tags.
    pub tags: Tags,
    /// What it offers.
    pub capacity: Resources,
    /// Whether membership sees it alive.
    pub alive: bool,
    /// Whether it is being drained (nothing new goes there).
    pub draining: bool,
}

/// What is allocated where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    used: BTreeMap<NodeId, Resources>,
    count: BTreeMap<NodeId, u32>,
}

impl Ledger {
    /// Records an allocation.
    pub fn add(&mut self, node: NodeId, r: Resources) {
        let u = self.used.entry(node).or_default();
        *u = u.saturating_add(&r);
        *self.count.entry(node).or_default() += 1;
    }

    /// Removes an allocation.
    pub fn remove(&mut self, node: NodeId, r: Resources) {
        if let Some(u) = self.used.get_mut(&node) {
            *u = u.saturating_sub(&r);
        }
        if let Some(c) = self.count.get_mut(&node) {
            *c = c.saturating_sub(1);
        }
    }

    /// Allocated on `node`.
    pub fn used(&self, node: &NodeId) -> Resources {
        self.used.get(node).copied().unwrap_or_default()
    }

    /// Actors on `node`.
    pub fn count(&self, node: &NodeId) -> u32 {
        self.count.get(node).copied().unwrap_or(0)
    }
}

/// One actor to place.
#[derive(Clone, Debug)]
pub struct Demand<'a> {
    /// Per actor.
    pub resources: Resources,
    /// Where it may go.
    pub constraints: &'a Expr,
    /// Nodes to avoid if another qualifies (replicas of the same stage, under
    /// `spread`).
    pub avoid: BTreeSet<NodeId>,
    /// Nodes it must not go to (its current host, when moving it).
    pub exclude: BTreeSet<NodeId>,
}

/// Why nothing fits. The job (or the cluster's capacity) is at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Unsatisfiable {
    /// No live node is available.
    #[error("no live node is available")]
    NoNodes,
    /// No live node satisfies the constraint.
    #[error("no live node satisfies `{0}`")]
    Constraint(String),
    /// Nodes satisfy the constraint, but none has room.
    #[error("no node satisfying the constraint has {need} free (most free: {best})")]
    Capacity {
        /// What one actor needs.
        need: String,
        /// The most any qualifying node has free.
        best: String,
    },
}

/// Human form of an amount.
pub fn describe(r: &Resources) -> String {
    format!(
        "{} cpu, {} MiB, {} gpu",
        r.cpu_millis as f64 / 1000.0,
        r.memory_bytes >> 20,
        r.gpus
    )
}

/// Picks a node for one actor.
pub fn pick(
    nodes: &[NodeInfo],
    ledger: &Ledger,
    demand: &Demand<'_>,
    strategy: Strategy,
) -> Result<NodeId, Unsatisfiable> {
    let live: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.alive && !n.draining && !demand.exclude.contains(&n.id))
        .collect();
    if live.is_empty() {
        return Err(Unsatisfiable::NoNodes);
    }
    let matching: Vec<&NodeInfo> = live
        .into_iter()
        .filter(|n| demand.constraints.eval(&n.tags))
        .collect();
    if matching.is_empty() {
        return Err(Unsatisfiable::Constraint(demand.constraints.to_string()));
    }
    let fits: Vec<&NodeInfo> = matching
        .iter()
        .copied()
        .filter(|n| {
            n.capacity
                .saturating_sub(&ledger.used(&n.id))
                .covers(&demand.resources)
        })
        .collect();
    if fits.is_empty() {
        let best = matching
            .iter()
            .map(|n| n.capacity.saturating_sub(&ledger.used(&n.id)))
            .max_by_key(|r| (r.cpu_millis, r.memory_bytes, r.gpus))
            .unwrap_or_default();
        return Err(Unsatisfiable::Capacity {
            need: describe(&demand.resources),
            best: describe(&best),
        });
    }
    let chosen = match strategy {
        Strategy::Spread => fits.iter().min_by_key(|n| {
            (
                demand.avoid.contains(&n.id),
                ledger.count(&n.id),
                load_permille(n, ledger),
                n.id,
            )
        }),
        Strategy::Pack => fits.iter().min_by_key(|n| {
            (
                std::cmp::Reverse(ledger.count(&n.id)),
                std::cmp::Reverse(load_permille(n, ledger)),
                n.id,
            )
        }),
    };
    chosen.map(|n| n.id).ok_or(Unsatisfiable::NoNodes)
}

/// How full a node is, in thousandths of its scarcest dimension.
fn load_permille(n: &NodeInfo, ledger: &Ledger) -> u64 {
    let u = ledger.used(&n.id);
    let frac = |used: u64, cap: u64| used.saturating_mul(1000).checked_div(cap).unwrap_or(0);
    frac(u.cpu_millis, n.capacity.cpu_millis)
        .max(frac(u.memory_bytes, n.capacity.memory_bytes))
        .max(frac(u64::from(u.gpus), u64::from(n.capacity.gpus)))
}

/// Places several actors at once (all or nothing), each seeing the allocations of
/// the ones before it. Returns the nodes in order, or the first failure's index.
pub fn place_all(
    nodes: &[NodeInfo],
    ledger: &Ledger,
    demands: &[Demand<'_>],
    strategy: Strategy,
) -> Result<Vec<NodeId>, (usize, Unsatisfiable)> {
    let mut ledger = ledger.clone();
    let mut out = Vec::with_capacity(demands.len());
    for (i, d) in demands.iter().enumerate() {
        let node = pick(nodes, &ledger, d, strategy).map_err(|e| (i, e))?;
        ledger.add(node, d.resources);
        out.push(node);
    }
    Ok(out)
}

/// The replica set for an actor hosted on `host`: the host plus `size - 1` other
/// live nodes chosen by rendezvous hashing on the key (stable as nodes come and go).
pub fn replica_set(key: &str, host: NodeId, live: &[NodeId], size: usize) -> ReplicaSet {
    let others: Vec<NodeId> = live.iter().copied().filter(|n| *n != host).collect();
    let size = size.clamp(1, plexus_durable::types::REPLICAS_MAX);
    let mut members = rendezvous(key, &others, size - 1);
    members.push(host);
    ReplicaSet::new(members).unwrap_or_else(|| ReplicaSet::single(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Strategy as Place;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;

    fn node(i: u64, cpu: u64, tags: &[&str], alive: bool) -> NodeInfo {
        NodeInfo {
            id: NodeId::synthetic(i),
            tags: tags
                .iter()
                .map(|t| (t.to_string(), String::new()))
                .collect(),
            capacity: Resources {
                cpu_millis: cpu,
                memory_bytes: 1 << 30,
                gpus: 0,
            },
            alive,
            draining: false,
        }
    }

    fn demand(cpu: u64, c: &Expr) -> Demand<'_> {
        Demand {
            resources: Resources {
                cpu_millis: cpu,
                memory_bytes: 0,
                gpus: 0,
            },
            constraints: c,
            avoid: BTreeSet::new(),
            exclude: BTreeSet::new(),
        }
    }

    #[test]
    fn spread_and_pack_choose_differently() {
        let nodes = vec![node(1, 4000, &[], true), node(2, 4000, &[], true)];
        let mut ledger = Ledger::default();
        ledger.add(
            NodeId::synthetic(1),
            Resources {
                cpu_millis: 1000,
                ..Resources::default()
            },
        );
        let t = Expr::True;
        assert_eq!(
            pick(&nodes, &ledger, &demand(1000, &t), Place::Spread),
            Ok(NodeId::synthetic(2))
        );
        assert_eq!(
            pick(&nodes, &ledger, &demand(1000, &t), Place::Pack),
            Ok(NodeId::synthetic(1))
        );
    }

    #[test]
    fn failures_say_why() {
        let nodes = vec![node(1, 1000, &["a"], true), node(2, 4000, &[], false)];
        let a = Expr::parse("a").unwrap();
        let b = Expr::parse("b").unwrap();
        assert!(matches!(
            pick(&nodes, &Ledger::default(), &demand(2000, &a), Place::Spread),
            Err(Unsatisfiable::Capacity { .. })
        ));
        assert!(matches!(
            pick(&nodes, &Ledger::default(), &demand(1, &b), Place::Spread),
            Err(Unsatisfiable::Constraint(_))
        ));
        assert_eq!(
            pick(&[], &Ledger::default(), &demand(1, &a), Place::Spread),
            Err(Unsatisfiable::NoNodes)
        );
        let err = place_all(
            &nodes,
            &Ledger::default(),
            &[demand(600, &a), demand(600, &a)],
            Place::Spread,
        )
        .unwrap_err();
        assert_eq!(err.0, 1, "the second does not fit after the first");
    }

    #[test]
    fn replica_sets_hold_the_host() {
        let live: Vec<NodeId> = (0..6).map(NodeId::synthetic).collect();
        let s = replica_set("k", NodeId::synthetic(4), &live, 3);
        assert_eq!(s.len(), 3);
        assert!(s.contains(&NodeId::synthetic(4)));
        assert_eq!(
            replica_set("k", NodeId::synthetic(4), &live[4..5], 3).len(),
            1
        );
    }

    fn nodes_strategy() -> impl Strategy<Value = Vec<NodeInfo>> {
        prop::collection::vec(
            (
                0u64..8000,
                prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..3),
                any::<bool>(),
                prop::bool::weighted(0.1),
                0u32..3,
            ),
            0..8,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (cpu, tags, alive, draining, gpus))| NodeInfo {
                    id: NodeId::synthetic(i as u64),
                    tags: tags
                        .into_iter()
                        .map(|t| (t.to_string(), String::new()))
                        .collect(),
                    capacity: Resources {
                        cpu_millis: cpu,
                        memory_bytes: 1 << 32,
                        gpus,
                    },
                    alive,
                    draining,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn placements_never_overcommit_and_respect_constraints(
            nodes in nodes_strategy(),
            wants in prop::collection::vec((0u64..3000, 0u32..2, prop::sample::select(vec!["", "a", "!b", "a || c"])), 1..12),
            pack in any::<bool>(),
        ) {
            let strategy = if pack { Place::Pack } else { Place::Spread };
            let exprs: Vec<Expr> = wants.iter().map(|(_, _, c)| Expr::parse(c).unwrap()).collect();
            let demands: Vec<Demand<'_>> = wants.iter().zip(&exprs).map(|((cpu, gpus, _), e)| Demand {
                resources: Resources { cpu_millis: *cpu, memory_bytes: 1 << 20, gpus: *gpus },
                constraints: e,
                avoid: BTreeSet::new(),
                exclude: BTreeSet::new(),
            }).collect();
            let first = place_all(&nodes, &Ledger::default(), &demands, strategy);
            // Deterministic.
            prop_assert_eq!(&first, &place_all(&nodes, &Ledger::default(), &demands, strategy));
            if let Ok(chosen) = first {
                let mut ledger = Ledger::default();
                for (d, n) in demands.iter().zip(&chosen) {
                    let info = nodes.iter().find(|x| x.id == *n).unwrap();
                    prop_assert!(info.alive && !info.draining);
                    prop_assert!(d.constraints.eval(&info.tags));
                    ledger.add(*n, d.resources);
                    prop_assert!(info.capacity.covers(&ledger.used(n)), "over-committed {:?}", n);
                }
            }
        }

        #[test]
        fn a_single_actor_is_placed_whenever_some_node_can_take_it(
            nodes in nodes_strategy(), cpu in 0u64..8000, pack in any::<bool>(),
        ) {
            let t = Expr::True;
            let d = demand(cpu, &t);
            let fits = nodes.iter().any(|n| n.alive && !n.draining && n.capacity.cpu_millis >= cpu && n.capacity.memory_bytes > 0);
            let strategy = if pack { Place::Pack } else { Place::Spread };
            prop_assert_eq!(pick(&nodes, &Ledger::default(), &d, strategy).is_ok(), fits);
        }
    }
}
