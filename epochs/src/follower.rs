//! Following signed checkpoints from outside the committee.
//!
//! A node that is admitted but not on the committee (a worker, an observer, a
//! dashboard) still wants each epoch's checkpoint: its availability and its reward.
//! Committee members send it every checkpoint they signed; this core decides which
//! to believe.
//!
//! # The rule
//!
//! A follower does not know the committee's group key in advance: it came out of a
//! DKG it did not take part in, and a checkpoint names its own key, so a checkpoint
//! that verifies against the key inside it proves nothing by itself (a lone liar can
//! make one with a key of its own). So:
//!
//! - **Pinning a key.** A checkpoint is accepted, and its group key pinned, once
//!   `f + 1` distinct committee members (the committee this follower knows from its
//!   allowlist; `f = ⌊(n − 1)/3⌋`) sent the same checkpoint (same hash), its committee
//!   is that committee, its network is this network, and its signature verifies
//!   against its group key. At most `f` members lie, so one of them is honest, and an
//!   honest member only sends a checkpoint whose signature verified against the
//!   group key its own DKG produced.
//! - **With a pinned key**, one copy from any committee member suffices: the
//!   signature verifies against the pinned key, which only a threshold of the
//!   committee can produce.
//! - **A new key** (the committee ran a new DKG) is pinned by the same `f + 1` rule.
//!
//! # Bounds
//!
//! The driver says which epoch it is now. A checkpoint for a later epoch cannot
//! exist yet and is refused; vouches are only collected for the last
//! [`PENDING_EPOCHS`] epochs (so a liar cannot crowd out honest vouches with
//! checkpoints of its own for other epochs), one hash per member per epoch (a
//! member's second, different checkpoint for an epoch is refused). Accepted epochs
//! are remembered for the last [`ACCEPTED_KEPT`] epochs, and anything older is
//! refused as stale.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::NodeId;

use crate::checkpoint::{CheckpointError, CheckpointHash, SignedCheckpoint};

/// Epochs with vouches still being collected.
pub const PENDING_EPOCHS: usize = 16;
/// Accepted epochs remembered (older ones are refused as stale).
pub const ACCEPTED_KEPT: usize = 1_024;

/// Why a checkpoint sent to a follower was not taken. The sender's fault, except
/// [`FollowError::Stale`] and [`FollowError::Known`], which are harmless repeats.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The sender is not on the committee.
    #[error("{0} is not on the committee")]
    NotCommittee(NodeId),
    /// The checkpoint is for another network.
    #[error("the checkpoint is for another network")]
    WrongNetwork,
    /// The checkpoint names another committee than the allowlist's.
    #[error("the checkpoint names another committee")]
    WrongCommittee,
    /// The checkpoint is malformed or its signature does not verify.
    #[error(transparent)]
    Invalid(#[from] CheckpointError),
    /// The sender already vouched for another checkpoint of this epoch.
    #[error("{from} already sent another checkpoint for epoch {epoch}")]
    Conflicting {
        /// The sender.
        from: NodeId,
        /// The epoch.
        epoch: u64,
    },
    /// The epoch was accepted already.
    #[error("epoch {0} is already known")]
    Known(u64),
    /// Older than every epoch this follower still tracks.
    #[error("epoch {0} is older than what this node follows")]
    Stale(u64),
    /// An epoch that has not ended yet here.
    #[error("epoch {0} has not ended yet")]
    Future(u64),
}

/// A follower of one committee's checkpoints.
#[derive(Debug)]
pub struct Follower {
    network: [u8; 32],
    committee: Vec<NodeId>,
    vouches_needed: usize,
    group_key: Option<Vec<u8>>,
    /// epoch → member → (hash, checkpoint). The checkpoint is kept once per hash.
    pending: BTreeMap<u64, Pending>,
    accepted: BTreeSet<u64>,
}

#[derive(Debug, Default)]
struct Pending {
    by_member: BTreeMap<NodeId, CheckpointHash>,
    candidates: BTreeMap<CheckpointHash, SignedCheckpoint>,
}

impl Follower {
    /// A follower of `committee` (the allowlist's validators) on `network`.
    pub fn new(network: [u8; 32], committee: &[NodeId]) -> Self {
        let mut committee = committee.to_vec();
        committee.sort();
        committee.dedup();
        let f = committee.len().saturating_sub(1) / 3;
        Self {
            network,
            committee,
            vouches_needed: f + 1,
            group_key: None,
            pending: BTreeMap::new(),
            accepted: BTreeSet::new(),
        }
    }

    /// The group key pinned so far.
    pub fn group_key(&self) -> Option<&[u8]> {
        self.group_key.as_deref()
    }

    /// How many committee members must send a checkpoint before its key is pinned.
    pub fn vouches_needed(&self) -> usize {
        self.vouches_needed
    }

    /// A checkpoint `from` sent (the transport authenticated `from`), in epoch
    /// `current` by this node's schedule. Returns the checkpoint when it is
    /// accepted now, `Ok(None)` while it waits for vouches.
    pub fn handle(
        &mut self,
        from: NodeId,
        signed: SignedCheckpoint,
        current: u64,
    ) -> Result<Option<SignedCheckpoint>, FollowError> {
        if self.committee.binary_search(&from).is_err() {
            return Err(FollowError::NotCommittee(from));
        }
        let epoch = signed.checkpoint.epoch;
        if epoch > current {
            return Err(FollowError::Future(epoch));
        }
        let window_start = current.saturating_sub(PENDING_EPOCHS as u64 - 1);
        while self
            .pending
            .first_key_value()
            .is_some_and(|(e, _)| *e < window_start)
        {
            self.pending.pop_first();
        }
        if self.accepted.contains(&epoch) {
            return Err(FollowError::Known(epoch));
        }
        if self.accepted.len() >= ACCEPTED_KEPT
            && self.accepted.first().is_some_and(|oldest| epoch < *oldest)
        {
            return Err(FollowError::Stale(epoch));
        }
        if signed.checkpoint.network != self.network {
            return Err(FollowError::WrongNetwork);
        }
        let mut named = signed.checkpoint.committee.clone();
        named.sort();
        if named != self.committee {
            return Err(FollowError::WrongCommittee);
        }
        // With a pinned key, one valid copy suffices.
        if let Some(key) = &self.group_key
            && signed.checkpoint.group_key == *key
        {
            signed.verify(Some(key))?;
            self.accept(epoch);
            return Ok(Some(signed));
        }
        // Otherwise it must verify against its own key, and gather f + 1 vouches.
        signed.verify(None)?;
        let hash = signed.hash()?;
        if epoch < window_start {
            return Err(FollowError::Stale(epoch));
        }
        let pending = self.pending.entry(epoch).or_default();
        match pending.by_member.get(&from) {
            Some(h) if *h != hash => return Err(FollowError::Conflicting { from, epoch }),
            Some(_) => return Ok(None),
            None => {}
        }
        pending.by_member.insert(from, hash);
        pending.candidates.entry(hash).or_insert(signed);
        let vouches = pending.by_member.values().filter(|h| **h == hash).count();
        if vouches < self.vouches_needed {
            return Ok(None);
        }
        let Some(chosen) = self
            .pending
            .remove(&epoch)
            .and_then(|mut p| p.candidates.remove(&hash))
        else {
            return Ok(None);
        };
        self.group_key = Some(chosen.checkpoint.group_key.clone());
        self.accept(epoch);
        Ok(Some(chosen))
    }

    /// Resumes after a restart from a checkpoint this node accepted before (from
    /// its own store): pins its key if it names this follower's network and
    /// committee.
    pub fn resume(&mut self, accepted: &SignedCheckpoint) {
        let mut named = accepted.checkpoint.committee.clone();
        named.sort();
        if accepted.checkpoint.network == self.network && named == self.committee {
            self.group_key = Some(accepted.checkpoint.group_key.clone());
            self.accept(accepted.checkpoint.epoch);
        }
    }

    fn accept(&mut self, epoch: u64) {
        self.pending.remove(&epoch);
        self.accepted.insert(epoch);
        while self.accepted.len() > ACCEPTED_KEPT {
            self.accepted.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::{example, node, signed_by};
    use crate::threshold::tests::dealt;

    fn committee() -> Vec<NodeId> {
        (1..=4).map(node).collect()
    }

    fn at(epoch: u64, c: &crate::checkpoint::Checkpoint) -> crate::checkpoint::Checkpoint {
        let mut c = c.clone();
        c.epoch = epoch;
        c
    }

    #[test]
    fn f_plus_one_members_pin_the_key_and_then_one_copy_suffices() {
        let (sharing, shares) = dealt(4, 1);
        let base = example();
        let mut f = Follower::new(base.network, &committee());
        assert_eq!(f.vouches_needed(), 2);
        let real = signed_by(&sharing, &shares, base.clone());
        // One member's word is not enough to pin a key.
        assert_eq!(f.handle(node(1), real.clone(), 8), Ok(None));
        assert_eq!(f.group_key(), None);
        // Its repeat does not count twice.
        assert_eq!(f.handle(node(1), real.clone(), 8), Ok(None));
        assert_eq!(f.handle(node(2), real.clone(), 8), Ok(Some(real.clone())));
        assert_eq!(f.group_key(), Some(real.checkpoint.group_key.as_slice()));
        assert_eq!(
            f.handle(node(3), real.clone(), 8),
            Err(FollowError::Known(7))
        );
        // Pinned: the next epoch from a single member.
        let next = signed_by(&sharing, &shares, at(8, &base));
        assert_eq!(f.handle(node(4), next.clone(), 8), Ok(Some(next.clone())));
        // A restarted follower resumes from what it stored.
        let mut again = Follower::new(base.network, &committee());
        again.resume(&real);
        assert_eq!(again.group_key(), f.group_key());
        assert_eq!(again.handle(node(4), next.clone(), 8), Ok(Some(next)));
    }

    #[test]
    fn a_lone_liar_with_a_key_of_its_own_convinces_nobody() {
        let (sharing, shares) = dealt(4, 1);
        let (fake_sharing, fake_shares) = dealt(4, 99);
        let base = example();
        let mut f = Follower::new(base.network, &committee());
        let mut lie = base.clone();
        lie.members[0].availability_ppm = 0;
        lie.members[0].reward_units = 0;
        let lie = signed_by(&fake_sharing, &fake_shares, lie);
        // Self-consistent (it verifies against the key it names), but one voice.
        assert_eq!(lie.verify(None), Ok(()));
        assert_eq!(f.handle(node(3), lie.clone(), 7), Ok(None));
        assert_eq!(f.group_key(), None);
        // The liar cannot vouch for a second checkpoint of the epoch either.
        let real = signed_by(&sharing, &shares, base.clone());
        assert!(matches!(
            f.handle(node(3), real.clone(), 7),
            Err(FollowError::Conflicting { .. })
        ));
        assert_eq!(f.handle(node(1), real.clone(), 7), Ok(None));
        assert_eq!(f.handle(node(2), real.clone(), 7), Ok(Some(real.clone())));
        // With the real key pinned, the liar's key needs f + 1 again.
        let lie8 = signed_by(&fake_sharing, &fake_shares, at(8, &base));
        assert_eq!(f.handle(node(3), lie8, 8), Ok(None));
        assert_eq!(f.group_key(), Some(real.checkpoint.group_key.as_slice()));
    }

    #[test]
    fn bad_checkpoints_are_refused_with_the_reason() {
        let (sharing, shares) = dealt(4, 1);
        let base = example();
        let mut f = Follower::new(base.network, &committee());
        let real = signed_by(&sharing, &shares, base.clone());
        assert_eq!(
            f.handle(node(9), real.clone(), 7),
            Err(FollowError::NotCommittee(node(9)))
        );
        assert_eq!(
            f.handle(node(1), real.clone(), 6),
            Err(FollowError::Future(7))
        );
        let mut other = Follower::new([0; 32], &committee());
        assert_eq!(
            other.handle(node(1), real.clone(), 7),
            Err(FollowError::WrongNetwork)
        );
        let mut other = Follower::new(base.network, &[node(1), node(2), node(3), node(5)]);
        assert_eq!(
            other.handle(node(1), real.clone(), 7),
            Err(FollowError::WrongCommittee)
        );
        let mut bent = real.clone();
        bent.checkpoint.previous[0] ^= 1;
        assert!(matches!(
            f.handle(node(1), bent, 7),
            Err(FollowError::Invalid(_))
        ));
        // Vouches are collected only for recent epochs.
        assert_eq!(
            f.handle(node(1), real, 7 + PENDING_EPOCHS as u64),
            Err(FollowError::Stale(7))
        );
    }
}
