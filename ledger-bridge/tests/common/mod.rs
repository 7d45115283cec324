//! Test fixtures: a trusted-dealer committee (tests only) and checkpoints it signs.

#![allow(dead_code)] // each test crate uses a different part

use commonware_cryptography::bls12381::dkg::feldman_desmedt::deal_anonymous;
use commonware_cryptography::bls12381::primitives::ops::threshold::recover;
use commonware_cryptography::bls12381::primitives::sharing::Mode;
use commonware_cryptography::bls12381::primitives::variant::{MinSig, PartialSignature};
use commonware_parallel::Sequential;
use commonware_utils::N3f1;
use plexus_actors::NodeId;
use plexus_epochs::checkpoint::{CHECKPOINT_VERSION, Checkpoint, SignedCheckpoint};
use plexus_epochs::rewards::RewardPolicy;
use plexus_epochs::threshold::{self, PublicSharing, SecretShare};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

/// A network id (SHA-256 of its name, as the daemon derives it).
pub fn network(name: &str) -> [u8; 32] {
    Sha256::digest(name.as_bytes()).into()
}

/// A committee whose key a trusted dealer shared: `n` members, threshold
/// `sharing.required()`.
pub struct Committee {
    pub sharing: PublicSharing,
    pub shares: Vec<SecretShare>,
    pub members: Vec<NodeId>,
}

impl Committee {
    pub fn dealt(n: u32, seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (sharing, shares) = deal_anonymous::<MinSig, N3f1>(
            &mut rng,
            Mode::NonZeroCounter,
            std::num::NonZeroU32::new(n).expect("n > 0"),
        );
        let mut members: Vec<NodeId> = (0..n)
            .map(|i| {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&(seed * 1000 + u64::from(i)).to_be_bytes());
                NodeId::from_public_key(key)
            })
            .collect();
        members.sort();
        Self {
            sharing,
            shares,
            members,
        }
    }

    /// The threshold t.
    pub fn t(&self) -> usize {
        self.sharing.required() as usize
    }

    /// The compressed 96-byte group key.
    pub fn group_key(&self) -> Vec<u8> {
        threshold::encode_group_key(self.sharing.public())
    }

    /// A well-formed checkpoint naming this committee's key. `salt` changes its hash.
    pub fn checkpoint(&self, network: [u8; 32], epoch: u64, salt: u64) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            network,
            epoch,
            previous: [epoch as u8; 32],
            allowlist_version: salt,
            allowlist_hash: [0xCD; 32],
            members: Vec::new(),
            observers: Vec::new(),
            observations_root: [0xEF; 32],
            work_root: [0; 32],
            reward_policy: RewardPolicy::default(),
            evidence: Vec::new(),
            committee: self.members.clone(),
            group_key: self.group_key(),
        }
    }

    /// Partial signatures of members `0..count` over `message`.
    pub fn partials(&self, message: &[u8; 72], count: usize) -> Vec<PartialSignature<MinSig>> {
        self.shares[..count]
            .iter()
            .map(|s| {
                let (i, b) = threshold::sign_partial(s, message);
                threshold::partial(i, &b).expect("own partial decodes")
            })
            .collect()
    }

    /// The group signature over `message`, combined from t partials.
    pub fn sign_message(&self, message: &[u8; 72]) -> Vec<u8> {
        let sig = threshold::combine(&self.sharing, message, &self.partials(message, self.t()))
            .expect("t valid partials combine");
        threshold::encode_signature(&sig)
    }

    /// `checkpoint` signed by t members (whatever key it names).
    pub fn sign(&self, checkpoint: &Checkpoint) -> SignedCheckpoint {
        let message = checkpoint.signing_message().expect("checkpoint encodes");
        SignedCheckpoint {
            checkpoint: checkpoint.clone(),
            signature: self.sign_message(&message),
            signers: self.members[..self.t()].to_vec(),
        }
    }

    /// What t−1 members can make: their partials interpolated at 0 as though t−1
    /// were enough (with a sharing of threshold t−1 over the same evaluation
    /// points). Not the group's signature.
    pub fn sign_below_threshold(&self, message: &[u8; 72]) -> Vec<u8> {
        let t = self.t();
        let partials = self.partials(message, t - 1);
        // The honest path refuses outright.
        assert!(matches!(
            threshold::combine(&self.sharing, message, &partials),
            Err(threshold::ThresholdError::NotEnough { .. })
        ));
        // A sharing whose threshold is t−1 (N3f1: n' = t−1 members need all t−1).
        let lower = (1..=self.shares.len() as u32)
            .map(|n| {
                deal_anonymous::<MinSig, N3f1>(
                    &mut ChaCha20Rng::seed_from_u64(99),
                    Mode::NonZeroCounter,
                    std::num::NonZeroU32::new(n).expect("n > 0"),
                )
                .0
            })
            .find(|s| s.required() as usize == t - 1 && s.total().get() as usize >= t - 1)
            .expect("a sharing of threshold t-1 exists");
        let sig = recover::<MinSig, _>(&lower, partials.iter(), &Sequential)
            .expect("t-1 partials interpolate under a threshold t-1 sharing");
        threshold::encode_signature(&sig)
    }
}
