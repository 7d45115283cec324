//! Verified work in checkpoints: each observer's tally of an earlier epoch's
//! proof-of-AI-work audit, and the robust aggregate a checkpoint credits.
//!
//! # Which epoch's work a checkpoint credits
//!
//! Work done in epoch `w` is sampled for re-execution with checkpoint `w`'s
//! threshold signature as the beacon (`plexus-poai`), so it cannot be judged
//! before that checkpoint exists, during epoch `w + 1`, and the re-executions
//! take a while after it. Checkpoint `e` therefore credits the work of epoch
//! `e − WORK_LAG` ([`WORK_LAG`] = 2): each committee member's observation of
//! epoch `e` carries its own tally of epoch `e − 2` ([`ObservedWork`]), made from
//! the receipts, verifications and evidence it holds. A checkpoint for an epoch
//! below `WORK_LAG` credits nothing.
//!
//! # Aggregating (the rule and its bound)
//!
//! For every admitted node, the checkpoint's `work_units` is the **lower median**
//! of the units the `k` aggregated observations give it, where an observation
//! without a tally, or whose tally does not name the node, counts as 0: the same
//! rule and the same bound as availability (`crate::availability`). So at most
//! `f` lying observers cannot credit a node more work than some honest observer
//! counted, nor take away more than to the least an honest one counted. A worker
//! proven wrong in its epoch (signed evidence: a re-execution disagreeing with its
//! receipt) has units 0 in every honest tally (`plexus_poai::WorkRow`), so it is
//! paid nothing for that epoch once honest observers are a majority of the `k`.
//!
//! The checkpoint's `work_root` is SHA-256 over [`WORK_ROOT_DOMAIN`], then, for
//! each aggregated observation that carries a tally, in observer order, the
//! observer's id and its tally's receipts root (SHA-256 over the hashes of the
//! receipts it held for that epoch, sorted). It is all zero when no observation
//! carries a tally. With the observations (their root is checkpoint field 9)
//! anyone can redo both.
//!
//! # Bounds
//!
//! A tally names at most [`crate::availability::OBSERVATION_NODES_MAX`] workers;
//! the agreement core keeps at most [`REPORTS_KEPT`] epochs of its driver's
//! tallies and drops older ones.

use plexus_actors::NodeId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::availability::{OBSERVATION_NODES_MAX, Observation, lower_median};

/// How many epochs back a checkpoint's work is.
pub const WORK_LAG: u64 = 2;
/// Epochs of tallies the agreement core keeps for its own observations.
pub const REPORTS_KEPT: usize = 4;
/// The domain of the checkpoint's work root.
pub const WORK_ROOT_DOMAIN: &[u8] = b"plexus-work-root-v1";

/// One observer's tally of one epoch's verified work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedWork {
    /// The epoch of the work: the observation's epoch minus [`WORK_LAG`].
    pub epoch: u64,
    /// SHA-256 over the hashes of the receipts the observer holds for it, sorted.
    pub root: [u8; 32],
    /// Work units per worker (items in receipts not proven wrong), sorted by
    /// node, no duplicates, no zeros.
    pub units: Vec<(NodeId, u64)>,
}

impl ObservedWork {
    /// A tally from unordered rows: sorted, duplicates summed (saturating),
    /// zeros dropped, at most [`OBSERVATION_NODES_MAX`] workers kept.
    pub fn new(epoch: u64, root: [u8; 32], rows: impl IntoIterator<Item = (NodeId, u64)>) -> Self {
        let mut merged = std::collections::BTreeMap::<NodeId, u64>::new();
        for (node, units) in rows {
            let u = merged.entry(node).or_insert(0);
            *u = u.saturating_add(units);
        }
        ObservedWork {
            epoch,
            root,
            units: merged
                .into_iter()
                .filter(|(_, u)| *u > 0)
                .take(OBSERVATION_NODES_MAX)
                .collect(),
        }
    }

    /// Why the tally is malformed for an observation of `epoch`, if it is.
    pub fn shape_error(&self, epoch: u64) -> Option<&'static str> {
        if epoch.checked_sub(WORK_LAG) != Some(self.epoch) {
            return Some("work tally for the wrong epoch");
        }
        if self.units.len() > OBSERVATION_NODES_MAX {
            return Some("work tally names too many nodes");
        }
        if self.units.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Some("work tally not strictly sorted");
        }
        if self.units.iter().any(|(_, u)| *u == 0) {
            return Some("work tally names a node with no work");
        }
        None
    }

    /// The units this tally gives `node` (0 if it does not name it).
    pub fn units_of(&self, node: &NodeId) -> u64 {
        self.units
            .binary_search_by(|(n, _)| n.cmp(node))
            .map(|i| self.units[i].1)
            .unwrap_or(0)
    }
}

/// The work units of each of `nodes` under the rule in the module docs, in the
/// order given.
pub fn aggregate<'a>(
    nodes: &[NodeId],
    observations: impl IntoIterator<Item = &'a Observation> + Clone,
) -> Vec<u64> {
    let mut values = Vec::new();
    nodes
        .iter()
        .map(|node| {
            values.clear();
            values.extend(
                observations
                    .clone()
                    .into_iter()
                    .map(|o| o.work.as_ref().map_or(0, |w| w.units_of(node))),
            );
            lower_median(&mut values)
        })
        .collect()
}

/// The checkpoint's work root over `observations` (in observer order), as the
/// module docs define it.
pub fn root<'a>(observations: impl IntoIterator<Item = &'a Observation>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(WORK_ROOT_DOMAIN);
    let mut any = false;
    for o in observations {
        if let Some(w) = &o.work {
            any = true;
            h.update(o.observer.to_bytes());
            h.update(w.root);
        }
    }
    if any { h.finalize().into() } else { [0; 32] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_vocab::identity::NodeKey;
    use proptest::prelude::*;

    fn node(i: u8) -> NodeId {
        NodeKey::from_seed([i; 32]).node_id()
    }

    fn obs(observer: u8, work: Option<ObservedWork>) -> Observation {
        Observation {
            network: [1; 32],
            epoch: 5,
            observer: node(observer),
            uptime: Vec::new(),
            work,
        }
    }

    #[test]
    fn tallies_are_normalised_and_their_shape_checked() {
        let w = ObservedWork::new(3, [9; 32], [(node(2), 5), (node(1), 0), (node(2), 2)]);
        assert_eq!(w.units, vec![(node(2), 7)]);
        assert_eq!(w.shape_error(5), None);
        assert!(w.shape_error(4).is_some(), "wrong epoch");
        assert!(w.shape_error(1).is_some(), "an epoch below the lag");
        let mut unsorted = w.clone();
        unsorted.units = vec![(node(3), 1), (node(3), 1)];
        assert!(unsorted.shape_error(5).is_some());
        let mut zero = w.clone();
        zero.units = vec![(node(3), 0)];
        assert!(zero.shape_error(5).is_some());
    }

    #[test]
    fn the_root_names_each_observer_and_is_zero_without_tallies() {
        assert_eq!(root(&[obs(1, None), obs(2, None)]), [0; 32]);
        let a = obs(1, Some(ObservedWork::new(3, [7; 32], [])));
        let b = obs(2, Some(ObservedWork::new(3, [8; 32], [])));
        let r = root([&a, &b]);
        assert_ne!(r, [0; 32]);
        assert_ne!(r, root([&b, &a]), "order matters");
        let mut b2 = b.clone();
        b2.work.as_mut().unwrap().root = [6; 32];
        assert_ne!(r, root([&a, &b2]), "each observer's root counts");
    }

    #[test]
    fn a_lying_minority_cannot_inflate_or_erase_work() {
        let worker = node(9);
        let honest = |u| obs(1, Some(ObservedWork::new(3, [0; 32], [(worker, u)])));
        let liar = obs(4, Some(ObservedWork::new(3, [0; 32], [(worker, u64::MAX)])));
        let got = aggregate(&[worker], [&honest(10), &honest(12), &liar]);
        assert_eq!(
            got,
            vec![12],
            "one liar of three moves it at most to an honest value"
        );
        let eraser = obs(4, None);
        let got = aggregate(&[worker], [&honest(10), &honest(12), &eraser]);
        assert_eq!(got, vec![10]);
        // A cheater every honest observer zeroed stays at zero.
        let zeroed = obs(2, Some(ObservedWork::new(3, [0; 32], [])));
        assert_eq!(aggregate(&[worker], [&zeroed, &zeroed, &liar]), vec![0]);
    }

    proptest! {
        #[test]
        fn with_at_most_f_liars_the_aggregate_lies_within_the_honest_range(
            honest in prop::collection::vec(0u64..1_000, 3..8),
            lies in prop::collection::vec(any::<u64>(), 0..3),
        ) {
            // k = honest + lies with lies ≤ f = ⌊(k−1)/3⌋... at least lies < k/2.
            prop_assume!(lies.len() * 3 < honest.len() + lies.len());
            let worker = node(9);
            let all: Vec<Observation> = honest
                .iter()
                .chain(lies.iter())
                .enumerate()
                .map(|(i, u)| obs(i as u8, Some(ObservedWork::new(3, [0; 32], [(worker, *u)]))))
                .collect();
            let got = aggregate(&[worker], all.iter())[0];
            let lo = *honest.iter().min().unwrap();
            let hi = *honest.iter().max().unwrap();
            prop_assert!(lo <= got && got <= hi, "{got} outside [{lo}, {hi}]");
        }
    }
}
