//! The epoch checkpoint: what the committee signs, its fixed encoding and its hash.
//!
//! The encoding is the workspace codec's frame (`[WIRE_VERSION = 1][bincode 2
//! body]`, standard configuration: little-endian, variable-length integers) of
//! [`Checkpoint`], whose first field is its own format version
//! ([`CHECKPOINT_VERSION`]). The hash is SHA-256 of that frame. Both are pinned by a
//! golden test, and `docs/design/checkpoint.md` spells the encoding out byte by byte
//! with a worked example, so a third party can recompute a hash without this code.
//!
//! A checkpoint is *well formed* ([`Checkpoint::check`]) when its member rows are
//! strictly sorted, each reward is what the rule in [`crate::rewards`] gives for the
//! row, and every list is within its bound. Whether it is *right* (the
//! availability is the aggregate of the signed observations it names) is for the
//! agreement to check before signing.

use plexus_actors::NodeId;
use plexus_actors::codec::{self, CodecError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rewards::RewardPolicy;
use crate::threshold::{self, ThresholdError};

/// The checkpoint format this build writes and reads.
pub const CHECKPOINT_VERSION: u16 = 1;

/// Largest encoded checkpoint accepted (bounds memory, gossip and the ledger).
pub const CHECKPOINT_BYTES_MAX: usize = 1024 * 1024;

/// Most member rows in one checkpoint.
pub const MEMBERS_MAX: usize = 4096;

/// Most committee members (the bound is 100; headroom for growth).
pub const COMMITTEE_MAX: usize = 256;

/// Most equivocation records in one checkpoint (two per committee member).
pub const EVIDENCE_MAX: usize = 2 * COMMITTEE_MAX;

/// A SHA-256 hash.
pub type CheckpointHash = [u8; 32];

/// The hash that stands for "no previous checkpoint" (the first one).
pub const GENESIS_PREVIOUS: CheckpointHash = [0; 32];

/// One node's line: its availability, verified work and reward.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    /// The node.
    pub node: NodeId,
    /// Aggregated availability, parts per million of the epoch.
    pub availability_ppm: u32,
    /// Verified-work receipts credited in the epoch.
    pub work_units: u64,
    /// Reward units under the checkpoint's policy.
    pub reward_units: u64,
}

/// One signed vote: a member's partial signature over a checkpoint hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The checkpoint hash voted for.
    pub hash: CheckpointHash,
    /// The 48-byte partial signature over the epoch's signing message for `hash`.
    #[serde(with = "serde_bytes")]
    pub partial: Vec<u8>,
}

/// Proof that a committee member signed two different checkpoints for one epoch:
/// two partials by one share index, both valid under the committee's public
/// sharing, over different hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// The epoch both votes are for.
    pub epoch: u64,
    /// The member (committee order gives its share index).
    pub signer: NodeId,
    /// Its share index.
    pub index: u32,
    /// One vote (the lower hash).
    pub first: Vote,
    /// The other vote.
    pub second: Vote,
}

/// The checkpoint of one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u16,
    /// The network id (SHA-256 of its name).
    pub network: [u8; 32],
    /// The epoch.
    pub epoch: u64,
    /// Hash of the previous signed checkpoint ([`GENESIS_PREVIOUS`] for the first).
    pub previous: CheckpointHash,
    /// The allowlist version in force.
    pub allowlist_version: u64,
    /// SHA-256 of the allowlist in force (its signed encoding).
    pub allowlist_hash: [u8; 32],
    /// Every admitted node with its availability, work and reward, sorted by node.
    pub members: Vec<MemberRow>,
    /// Committee members whose signed observations were aggregated, sorted.
    pub observers: Vec<NodeId>,
    /// SHA-256 over the encodings of those signed observations, in observer order.
    pub observations_root: [u8; 32],
    /// Root of the verified-work tallies the observations carry (`crate::work`;
    /// all zero when none does).
    pub work_root: [u8; 32],
    /// The reward rule's parameters.
    pub reward_policy: RewardPolicy,
    /// Equivocations proven since the previous checkpoint, sorted by (epoch, signer).
    pub evidence: Vec<Equivocation>,
    /// The committee, in share-index order.
    pub committee: Vec<NodeId>,
    /// The committee's group public key (96-byte compressed G2).
    #[serde(with = "serde_bytes")]
    pub group_key: Vec<u8>,
}

/// A checkpoint with the committee's threshold signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The 48-byte group signature over the epoch's signing message.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// Which members' partials were combined (informational: the signature alone
    /// proves that at least a threshold signed).
    pub signers: Vec<NodeId>,
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The bytes are not a checkpoint.
    #[error("checkpoint does not decode: {0}")]
    Codec(#[from] CodecError),
    /// A format version this build does not read.
    #[error("checkpoint version {0} is not supported (this build reads {CHECKPOINT_VERSION})")]
    Version(u16),
    /// Structurally wrong (unsorted, over a bound, a reward that breaks the rule).
    #[error("checkpoint for epoch {epoch} is malformed: {why}")]
    Malformed {
        /// The epoch.
        epoch: u64,
        /// What is wrong.
        why: String,
    },
    /// Signed by another key than the one expected.
    #[error("checkpoint group key differs from the expected one")]
    WrongGroupKey,
    /// The signature does not verify.
    #[error("checkpoint signature: {0}")]
    Signature(#[from] ThresholdError),
}

impl Checkpoint {
    /// The fixed encoding (a codec frame).
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        Ok(codec::encode(self)?)
    }

    /// Decodes and checks a checkpoint's encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let c: Checkpoint = codec::decode_with_limit(bytes, CHECKPOINT_BYTES_MAX)?;
        c.check()?;
        Ok(c)
    }

    /// SHA-256 of the encoding.
    pub fn hash(&self) -> Result<CheckpointHash, CheckpointError> {
        Ok(Sha256::digest(self.encode()?).into())
    }

    /// The message the committee signs for this checkpoint.
    pub fn signing_message(&self) -> Result<[u8; 72], CheckpointError> {
        Ok(threshold::signing_message(
            &self.network,
            self.epoch,
            &self.hash()?,
        ))
    }

    /// Structural checks: version, bounds, order, and rewards per the rule.
    pub fn check(&self) -> Result<(), CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed {
            epoch: self.epoch,
            why: why.to_string(),
        };
        if self.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(self.version));
        }
        if self.members.len() > MEMBERS_MAX {
            return Err(bad("too many members"));
        }
        if self.committee.is_empty() || self.committee.len() > COMMITTEE_MAX {
            return Err(bad("committee empty or too large"));
        }
        if self.evidence.len() > EVIDENCE_MAX {
            return Err(bad("too much evidence"));
        }
        if self.members.windows(2).any(|w| w[0].node >= w[1].node) {
            return Err(bad("member rows not strictly sorted"));
        }
        if self.observers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("observers not strictly sorted"));
        }
        if self.committee.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("committee not strictly sorted"));
        }
        if self.observers.iter().any(|o| !self.committee.contains(o)) {
            return Err(bad("an observer is not on the committee"));
        }
        if self
            .evidence
            .windows(2)
            .any(|w| (w[0].epoch, w[0].signer) >= (w[1].epoch, w[1].signer))
        {
            return Err(bad("evidence not strictly sorted"));
        }
        for row in &self.members {
            if row.availability_ppm > crate::availability::PPM_FULL {
                return Err(bad("availability above a whole epoch"));
            }
            if row.reward_units
                != self
                    .reward_policy
                    .units(row.availability_ppm, row.work_units)
            {
                return Err(bad("a reward does not follow the rule"));
            }
        }
        threshold::decode_group_key(&self.group_key)?;
        Ok(())
    }

    /// The row for `node`, if it is a member.
    pub fn row(&self, node: &NodeId) -> Option<&MemberRow> {
        self.members
            .binary_search_by(|r| r.node.cmp(node))
            .ok()
            .map(|i| &self.members[i])
    }
}

impl SignedCheckpoint {
    /// The encoding of the whole signed checkpoint (a codec frame), for export.
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        Ok(codec::encode(self)?)
    }

    /// Decodes an exported signed checkpoint (structure checked, signature not).
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let s: SignedCheckpoint = codec::decode_with_limit(bytes, CHECKPOINT_BYTES_MAX)?;
        s.checkpoint.check()?;
        Ok(s)
    }

    /// Verifies the group signature. With `expected_group_key`, also that the
    /// checkpoint names that key (a verifier pins the key it trusts; without a pin
    /// the check only shows the checkpoint is self-consistent).
    pub fn verify(&self, expected_group_key: Option<&[u8]>) -> Result<(), CheckpointError> {
        self.checkpoint.check()?;
        if let Some(expected) = expected_group_key
            && expected != self.checkpoint.group_key.as_slice()
        {
            return Err(CheckpointError::WrongGroupKey);
        }
        let key = threshold::decode_group_key(&self.checkpoint.group_key)?;
        let sig = threshold::decode_signature(&self.signature)?;
        threshold::verify(&key, &self.checkpoint.signing_message()?, &sig)?;
        Ok(())
    }

    /// The checkpoint's hash.
    pub fn hash(&self) -> Result<CheckpointHash, CheckpointError> {
        self.checkpoint.hash()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::threshold::tests::dealt;
    use commonware_cryptography::bls12381::primitives::group::G2;
    use commonware_math::algebra::CryptoGroup;
    use plexus_vocab::identity::NodeKey;

    pub(crate) fn node(i: u8) -> NodeId {
        NodeKey::from_seed([i; 32]).node_id()
    }

    /// The worked example of docs/design/checkpoint.md.
    pub(crate) fn example() -> Checkpoint {
        let mut committee = vec![node(1), node(2), node(3), node(4)];
        committee.sort();
        let policy = RewardPolicy::default();
        let mut members: Vec<MemberRow> = [(1u8, 1_000_000u32), (2, 500_000), (5, 0)]
            .into_iter()
            .map(|(i, ppm)| MemberRow {
                node: node(i),
                availability_ppm: ppm,
                work_units: 0,
                reward_units: policy.units(ppm, 0),
            })
            .collect();
        members.sort_by_key(|r| r.node);
        Checkpoint {
            version: CHECKPOINT_VERSION,
            network: Sha256::digest(b"example").into(),
            epoch: 7,
            previous: [0xAB; 32],
            allowlist_version: 3,
            allowlist_hash: [0xCD; 32],
            members,
            observers: committee[..3].to_vec(),
            observations_root: [0xEF; 32],
            work_root: [0; 32],
            reward_policy: policy,
            evidence: Vec::new(),
            committee,
            // The G2 generator: fixed by the standard, so the golden hash does not
            // depend on any key generation.
            group_key: threshold::encode_group_key(&<G2 as CryptoGroup>::generator()),
        }
    }

    /// `c` under the sharing's key, signed by its first `t` shares.
    pub(crate) fn signed_by(
        sharing: &threshold::PublicSharing,
        shares: &[threshold::SecretShare],
        mut c: Checkpoint,
    ) -> SignedCheckpoint {
        c.group_key = threshold::encode_group_key(sharing.public());
        let msg = c.signing_message().unwrap();
        let t = sharing.required() as usize;
        let partials: Vec<_> = shares[..t]
            .iter()
            .map(|s| {
                let (i, b) = threshold::sign_partial(s, &msg);
                threshold::partial(i, &b).unwrap()
            })
            .collect();
        let sig = threshold::combine(sharing, &msg, &partials).unwrap();
        SignedCheckpoint {
            signers: c.committee[..t].to_vec(),
            checkpoint: c,
            signature: threshold::encode_signature(&sig),
        }
    }

    #[test]
    fn encoding_round_trips_and_the_golden_hash_is_pinned() {
        let c = example();
        let bytes = c.encode().unwrap();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), c);
        // Pinned: a change here changes every checkpoint hash ever signed. Bump
        // CHECKPOINT_VERSION and update docs/design/checkpoint.md instead.
        assert_eq!(
            hex(&c.hash().unwrap()),
            "930baf64d27ede2f69ca478bc0d7b154c7626d8b712d7f96a01a8bf633dfd7d1",
            "encoding: {}",
            hex(&bytes)
        );
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        let good = example();
        let mut c = good.clone();
        c.version = 2;
        assert_eq!(c.check(), Err(CheckpointError::Version(2)));
        let mut c = good.clone();
        c.members[0].reward_units += 1;
        assert!(matches!(c.check(), Err(CheckpointError::Malformed { .. })));
        let mut c = good.clone();
        c.members.swap(0, 1);
        assert!(matches!(c.check(), Err(CheckpointError::Malformed { .. })));
        let mut c = good.clone();
        c.group_key = vec![0; 96];
        assert!(matches!(c.check(), Err(CheckpointError::Signature(_))));
        let mut c = good;
        c.observers.push(node(9));
        assert!(matches!(c.check(), Err(CheckpointError::Malformed { .. })));
        assert!(Checkpoint::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_a_changed_byte_does_not() {
        let (sharing, shares) = dealt(4, 42);
        let mut c = example();
        c.group_key = threshold::encode_group_key(sharing.public());
        let msg = c.signing_message().unwrap();
        let partials: Vec<_> = shares[..3]
            .iter()
            .map(|s| {
                let (i, b) = threshold::sign_partial(s, &msg);
                threshold::partial(i, &b).unwrap()
            })
            .collect();
        let sig = threshold::combine(&sharing, &msg, &partials).unwrap();
        let signed = SignedCheckpoint {
            checkpoint: c.clone(),
            signature: threshold::encode_signature(&sig),
            signers: c.committee[..3].to_vec(),
        };
        assert_eq!(signed.verify(Some(&c.group_key)), Ok(()));
        let bytes = signed.encode().unwrap();
        assert_eq!(SignedCheckpoint::decode(&bytes).unwrap(), signed);
        let mut forged = signed.clone();
        let row = forged
            .checkpoint
            .members
            .iter_mut()
            .find(|r| r.availability_ppm > 0)
            .unwrap();
        row.availability_ppm = 0;
        row.reward_units = 0;
        assert!(matches!(
            forged.verify(None),
            Err(CheckpointError::Signature(ThresholdError::Invalid))
        ));
        let other_key = threshold::encode_group_key(dealt(4, 43).0.public());
        assert_eq!(
            signed.verify(Some(&other_key)),
            Err(CheckpointError::WrongGroupKey)
        );
    }
}
