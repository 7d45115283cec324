//! Rewards: a deterministic rule from an epoch's evidence to reward units per node.
//!
//! # The rule (version 1)
//!
//! For each node in the checkpoint's member set:
//!
//! ```text
//! availability_units = ⌊ base_units × availability_ppm / 1_000_000 ⌋   if availability_ppm ≥ min_availability_ppm
//!                    = 0                                                otherwise
//! reward_units       = availability_units + work_units × units_per_work
//! ```
//!
//! computed in 128-bit integers and saturated at `u64::MAX`. `work_units` is the
//! node's proof-of-AI work two epochs back, as the observers' tallies agree on it
//! (`crate::work`): items in its receipts, none if it was proven wrong.
//! Consequences, each tested:
//!
//! - **No reward without evidence.** A node that no quorum of observers saw has
//!   availability 0 and earns nothing from availability; work counts only as
//!   receipts that a majority of observers hold and none proved wrong.
//! - **A failed epoch pays nobody.** Rewards exist only inside a signed checkpoint;
//!   an epoch with no checkpoint has no reward table.
//! - The rule is monotone in availability and linear above the minimum, so a node
//!   cannot gain by splitting or merging epochs.

use serde::{Deserialize, Serialize};

use crate::availability::PPM_FULL;

/// Parameters of the rule, fixed per network (recorded in the network config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardPolicy {
    /// Units a node earns for a whole epoch of availability.
    pub base_units: u64,
    /// Below this availability a node earns nothing for availability.
    pub min_availability_ppm: u32,
    /// Units per verified-work receipt.
    pub units_per_work: u64,
}

impl Default for RewardPolicy {
    fn default() -> Self {
        Self {
            base_units: 1_000_000,
            min_availability_ppm: 100_000,
            units_per_work: 1_000,
        }
    }
}

impl RewardPolicy {
    /// Reward units for one node.
    pub fn units(&self, availability_ppm: u32, work_units: u64) -> u64 {
        let ppm = availability_ppm.min(PPM_FULL);
        let availability = if ppm >= self.min_availability_ppm && ppm > 0 {
            u128::from(self.base_units) * u128::from(ppm) / u128::from(PPM_FULL)
        } else {
            0
        };
        let work = u128::from(work_units) * u128::from(self.units_per_work);
        u64::try_from(availability.saturating_add(work)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unseen_nodes_earn_nothing_and_full_availability_earns_the_base() {
        let p = RewardPolicy::default();
        assert_eq!(p.units(0, 0), 0);
        assert_eq!(p.units(PPM_FULL, 0), p.base_units);
        assert_eq!(p.units(p.min_availability_ppm - 1, 0), 0);
        assert_eq!(p.units(500_000, 0), p.base_units / 2);
        assert_eq!(p.units(0, 3), 3 * p.units_per_work);
    }

    #[test]
    fn a_zero_minimum_still_pays_nothing_for_zero() {
        let p = RewardPolicy {
            min_availability_ppm: 0,
            ..RewardPolicy::default()
        };
        assert_eq!(p.units(0, 0), 0);
        assert_eq!(p.units(1, 0), 1);
    }

    proptest! {
        #[test]
        fn monotone_and_never_overflows(base in any::<u64>(), a in 0u32..=PPM_FULL, b in 0u32..=PPM_FULL, w in any::<u64>(), per in any::<u64>()) {
            let p = RewardPolicy { base_units: base, min_availability_ppm: 0, units_per_work: per };
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(p.units(lo, 0) <= p.units(hi, 0));
            prop_assert!(p.units(hi, 0) <= base);
            let _ = p.units(hi, w);
        }
    }
}
