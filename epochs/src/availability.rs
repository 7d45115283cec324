//! Proof of availability: what each observer saw, signed, and the robust aggregate.
//!
//! # Measuring
//!
//! Each committee member runs an [`AvailabilityMeter`] fed from its own membership
//! view: the driver calls [`AvailabilityMeter::sample`] with the set of nodes it
//! considers alive whenever that set changes and at every epoch boundary. Time
//! between two samples is credited to the nodes alive at the first one, split at
//! epoch boundaries. At the end of an epoch the observer turns the credit into parts
//! per million of the epoch ([`AvailabilityMeter::take`]) and signs the vector
//! ([`Observation::sign`]).
//!
//! # Aggregating (the rule and its bound)
//!
//! For every node, the checkpoint's availability is the **lower median** of the
//! values the observations give it (the element at index `⌊(k−1)/2⌋` of the `k`
//! sorted values), where an observation that does not mention a node counts as
//! `0` for it. A checkpoint needs `k ≥ q` observations from distinct committee
//! members, with `q = n − f` and `f = ⌊(n−1)/3⌋`, so `k ≥ 2f + 1`.
//!
//! **Bound.** If at most `f` of the `k` observers lie, the aggregate lies between
//! the smallest and the largest honest value for that node. Proof: for the result
//! to be below every honest value, all `⌊(k−1)/2⌋ + 1 ≥ f + 1` values at or below
//! it would have to be lies; for it to be above every honest value, the
//! `k − ⌊(k−1)/2⌋ ≥ f + 1` values at or above it would. Either needs `f + 1`
//! liars. So `f` colluding observers can move a node's availability at most to the
//! edge of what honest observers measured, never past it, and cannot make an unseen
//! node (every honest observer says 0) look available.
//!
//! # Bounds
//!
//! An observation names at most [`OBSERVATION_NODES_MAX`] nodes; the meter keeps
//! at most [`EPOCHS_KEPT`] epochs of credit and drops older ones.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::codec;
use plexus_actors::{NodeId, Time};
use plexus_vocab::identity::{self, NodeKey, SignatureError};
use serde::{Deserialize, Serialize};

use crate::work::ObservedWork;

use crate::schedule::Schedule;

/// Parts per million: a whole epoch.
pub const PPM_FULL: u32 = 1_000_000;

/// Most nodes one observation may name (the allowlist's size bound).
pub const OBSERVATION_NODES_MAX: usize = 4096;

/// Epochs of credit the meter keeps.
pub const EPOCHS_KEPT: usize = 4;

/// Signature domain for observations.
const DOMAIN: &[u8] = b"plexus/observation/v1";

/// Credits uptime per node per epoch from samples of one observer's view.
#[derive(Clone, Debug)]
pub struct AvailabilityMeter {
    schedule: Schedule,
    last: Option<(Time, BTreeSet<NodeId>)>,
    credit_us: BTreeMap<u64, BTreeMap<NodeId, u64>>,
}

impl AvailabilityMeter {
    /// A meter for `schedule`, with no samples yet.
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            last: None,
            credit_us: BTreeMap::new(),
        }
    }

    /// Records that from `now` on, the observer sees exactly `alive` alive. The
    /// interval since the previous sample is credited to the nodes alive then. A
    /// sample older than the previous one is ignored (clocks only move forward).
    pub fn sample(&mut self, now: Time, alive: impl IntoIterator<Item = NodeId>) {
        let alive: BTreeSet<NodeId> = alive.into_iter().take(OBSERVATION_NODES_MAX).collect();
        if let Some((then, was_alive)) = self.last.take() {
            if now < then {
                self.last = Some((then, was_alive));
                return;
            }
            self.credit(then, now, &was_alive);
        }
        self.last = Some((now, alive));
    }

    /// Credits time up to `now` to the nodes alive now, without changing the set.
    pub fn advance(&mut self, now: Time) {
        if let Some((then, alive)) = self.last.take() {
            if now >= then {
                self.credit(then, now, &alive);
                self.last = Some((now, alive));
            } else {
                self.last = Some((then, alive));
            }
        }
    }

    fn credit(&mut self, from: Time, to: Time, alive: &BTreeSet<NodeId>) {
        let (Some(first), Some(last)) = (self.schedule.epoch_at(from), self.schedule.epoch_at(to))
        else {
            // Before genesis: nothing to credit (the part after genesis, if any, is
            // credited from genesis on).
            if let Some(last) = self.schedule.epoch_at(to) {
                let genesis = self.schedule.genesis();
                return self.credit_span(last, genesis, to, alive);
            }
            return;
        };
        // Only the newest EPOCHS_KEPT epochs matter; a long gap skips the rest.
        let first = first.max(last.saturating_sub(EPOCHS_KEPT as u64 - 1));
        for epoch in first..=last {
            let (Some(start), Some(end)) = (self.schedule.start(epoch), self.schedule.end(epoch))
            else {
                continue;
            };
            let lo = from.max(start);
            let hi = to.min(end);
            if hi > lo {
                self.credit_span(epoch, lo, hi, alive);
            }
        }
        while self.credit_us.len() > EPOCHS_KEPT {
            self.credit_us.pop_first();
        }
    }

    fn credit_span(&mut self, epoch: u64, lo: Time, hi: Time, alive: &BTreeSet<NodeId>) {
        let span = hi.as_micros().saturating_sub(lo.as_micros());
        let credit = self.credit_us.entry(epoch).or_default();
        for node in alive {
            let c = credit.entry(*node).or_insert(0);
            *c = c.saturating_add(span);
        }
    }

    /// The observer's uptime vector for `epoch`, in parts per million of the epoch,
    /// sorted by node; nodes never seen alive are left out (they count as 0). Call
    /// once `now` is past the epoch's end, after a final [`sample`](Self::sample) at
    /// or after that end. The epoch's credit is removed.
    pub fn take(&mut self, epoch: u64) -> Vec<(NodeId, u32)> {
        let length_us = self.schedule.length_ms().saturating_mul(1000).max(1);
        let Some(credit) = self.credit_us.remove(&epoch) else {
            return Vec::new();
        };
        credit
            .into_iter()
            .map(|(node, us)| {
                let ppm = (u128::from(us) * u128::from(PPM_FULL) / u128::from(length_us))
                    .min(u128::from(PPM_FULL));
                (node, ppm as u32)
            })
            .filter(|(_, ppm)| *ppm > 0)
            .collect()
    }
}

/// One observer's uptime vector for one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The network's id (hash of its name).
    pub network: [u8; 32],
    /// The epoch observed.
    pub epoch: u64,
    /// Who observed (must be a committee member).
    pub observer: NodeId,
    /// Uptime in parts per million, sorted by node, no duplicates, each ≤ 1e6.
    pub uptime: Vec<(NodeId, u32)>,
    /// The observer's tally of epoch `epoch − WORK_LAG`'s verified work, if it
    /// has one (`crate::work`).
    pub work: Option<ObservedWork>,
}

/// An observation with its observer's ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedObservation {
    /// What was observed.
    pub observation: Observation,
    /// Signature by `observation.observer` over the observation's encoding.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why an observation was refused (its sender or signer is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObservationError {
    /// Signature missing or wrong.
    #[error("observation signature invalid: {0}")]
    Signature(#[from] SignatureError),
    /// Not sorted, duplicated, above a whole epoch, or too long.
    #[error("observation by {observer} for epoch {epoch} is malformed: {why}")]
    Malformed {
        /// The claimed observer.
        observer: NodeId,
        /// The epoch.
        epoch: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The observation could not be encoded (a bug, not input).
    #[error("observation does not encode")]
    Encode,
}

impl Observation {
    fn signed_bytes(&self) -> Result<Vec<u8>, ObservationError> {
        codec::encode_body(self).map_err(|_| ObservationError::Encode)
    }

    /// Signs the observation with the observer's key.
    pub fn sign(self, key: &NodeKey) -> Result<SignedObservation, ObservationError> {
        let signature = key.sign(DOMAIN, &self.signed_bytes()?).to_vec();
        Ok(SignedObservation {
            observation: self,
            signature,
        })
    }

    fn check_shape(&self) -> Result<(), ObservationError> {
        let bad = |why| ObservationError::Malformed {
            observer: self.observer,
            epoch: self.epoch,
            why,
        };
        if self.uptime.len() > OBSERVATION_NODES_MAX {
            return Err(bad("names too many nodes"));
        }
        if self.uptime.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(bad("nodes not strictly sorted"));
        }
        if self.uptime.iter().any(|(_, ppm)| *ppm > PPM_FULL) {
            return Err(bad("uptime above a whole epoch"));
        }
        if let Some(why) = self.work.as_ref().and_then(|w| w.shape_error(self.epoch)) {
            return Err(bad(why));
        }
        Ok(())
    }

    /// The value this observation gives `node` (0 if it does not name it).
    pub fn uptime_of(&self, node: &NodeId) -> u32 {
        self.uptime
            .binary_search_by(|(n, _)| n.cmp(node))
            .map(|i| self.uptime[i].1)
            .unwrap_or(0)
    }
}

impl SignedObservation {
    /// Checks shape and signature.
    pub fn verify(&self) -> Result<(), ObservationError> {
        self.observation.check_shape()?;
        identity::verify(
            &self.observation.observer,
            DOMAIN,
            &self.observation.signed_bytes()?,
            &self.signature,
        )?;
        Ok(())
    }
}

/// The lower median of `values` (sorted in place); 0 when empty. Availability
/// and verified work (`crate::work`) share the rule.
pub fn lower_median<T: Ord + Copy + Default>(values: &mut [T]) -> T {
    if values.is_empty() {
        return T::default();
    }
    values.sort_unstable();
    values[(values.len() - 1) / 2]
}

/// The availability of each of `nodes` under the rule in the module docs, in the
/// order given.
pub fn aggregate<'a>(
    nodes: &[NodeId],
    observations: impl IntoIterator<Item = &'a Observation> + Clone,
) -> Vec<u32> {
    let mut values = Vec::new();
    nodes
        .iter()
        .map(|node| {
            values.clear();
            values.extend(observations.clone().into_iter().map(|o| o.uptime_of(node)));
            lower_median(&mut values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(i: u8) -> NodeId {
        NodeKey::from_seed([i; 32]).node_id()
    }

    #[test]
    fn the_meter_credits_intervals_and_splits_at_epoch_boundaries() {
        let s = Schedule::new(Time::ZERO, 10_000).unwrap();
        let mut m = AvailabilityMeter::new(s);
        let (a, b) = (node(1), node(2));
        m.sample(Time::from_millis(0), [a, b]);
        m.sample(Time::from_millis(2_500), [a]); // b down after 2.5 s
        m.sample(Time::from_millis(15_000), [a, b]); // a up across the boundary
        m.sample(Time::from_millis(20_000), []);
        let e0 = m.take(0);
        assert_eq!(e0, {
            let mut v = vec![(a, 1_000_000), (b, 250_000)];
            v.sort();
            v
        });
        let e1 = m.take(1);
        let mut want = vec![(a, 1_000_000), (b, 500_000)];
        want.sort();
        assert_eq!(e1, want);
        assert!(m.take(0).is_empty(), "an epoch is taken once");
    }

    #[test]
    fn samples_going_back_in_time_are_ignored() {
        let s = Schedule::new(Time::ZERO, 10_000).unwrap();
        let mut m = AvailabilityMeter::new(s);
        let a = node(1);
        m.sample(Time::from_millis(5_000), [a]);
        m.sample(Time::from_millis(1_000), []);
        m.sample(Time::from_millis(10_000), []);
        assert_eq!(m.take(0), vec![(a, 500_000)]);
    }

    #[test]
    fn signed_observations_verify_and_tampering_is_caught() {
        let key = NodeKey::from_seed([7; 32]);
        let obs = Observation {
            network: [1; 32],
            epoch: 3,
            observer: key.node_id(),
            uptime: vec![(node(1), 10)],
            work: Some(crate::work::ObservedWork::new(1, [5; 32], [(node(2), 4)])),
        };
        let mut signed = obs.clone().sign(&key).unwrap();
        assert_eq!(signed.verify(), Ok(()));
        signed.observation.uptime[0].1 = 11;
        assert!(matches!(
            signed.verify(),
            Err(ObservationError::Signature(_))
        ));
        let mut unsorted = signed.clone();
        unsorted.observation.uptime = vec![(node(2), 1), (node(2), 1)];
        assert!(matches!(
            unsorted.verify(),
            Err(ObservationError::Malformed { .. })
        ));
        // The work tally is signed too, and must be for epoch − WORK_LAG.
        let good = obs.clone().sign(&key).unwrap();
        let mut inflated = good.clone();
        inflated.observation.work.as_mut().unwrap().units[0].1 = 400;
        assert!(matches!(
            inflated.verify(),
            Err(ObservationError::Signature(_))
        ));
        let mut late = obs;
        late.work.as_mut().unwrap().epoch = 2;
        assert!(matches!(
            late.sign(&key).unwrap().verify(),
            Err(ObservationError::Malformed { .. })
        ));
    }

    proptest! {
        /// The documented bound: with k ≥ 2f+1 observations and at most f liars, the
        /// aggregate lies within the honest values' range.
        #[test]
        fn fewer_than_a_third_of_liars_stay_within_the_honest_range(
            honest in proptest::collection::vec(0u32..=PPM_FULL, 3..40),
            lies in proptest::collection::vec(0u32..=PPM_FULL, 0..40),
        ) {
            let k_honest = honest.len();
            // f liars with k = honest + f ≥ 2f + 1  ⇔  f ≤ honest − 1 and f < k/3 rounded as the committee does.
            let f = lies.len().min((k_honest - 1) / 2);
            let mut all: Vec<u32> = honest.iter().copied().chain(lies.iter().copied().take(f)).collect();
            prop_assert!(all.len() > 2 * f);
            let got = lower_median(&mut all);
            let lo = *honest.iter().min().unwrap();
            let hi = *honest.iter().max().unwrap();
            prop_assert!(lo <= got && got <= hi, "{got} outside [{lo}, {hi}]");
        }

        /// And the bound is tight: f+1 liars can move it outside.
        #[test]
        fn one_more_liar_can_move_it(honest_value in 1u32..PPM_FULL, f in 1usize..20) {
            let mut all: Vec<u32> = std::iter::repeat_n(honest_value, f + 1)
                .chain(std::iter::repeat_n(0, f + 1))
                .collect();
            prop_assert!(lower_median(&mut all) < honest_value);
        }
    }
}
