//! t-of-n threshold BLS12-381 over checkpoints, through `commonware-cryptography`.
//!
//! The variant is *min-sig*: signatures (and partials) are G1 points, 48 bytes
//! compressed; the group key is a G2 point, 96 bytes. Hashing to G1 follows RFC 9380
//! with suite `BLS12381G1_XMD:SHA-256_SSWU_RO_` and DST
//! `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_`. Signatures in G1 make the
//! on-chain check cheap: the contract hashes to G1 with two `MAP_FP_TO_G1` calls.
//!
//! # What is signed
//!
//! The bytes hashed to the curve are
//!
//! ```text
//! 0x14 ‖ "plexus-checkpoint-v1" ‖ network (32) ‖ epoch (u64 big-endian) ‖ checkpoint hash (32)
//! ```
//!
//! (`0x14` is the namespace's length, as commonware prefixes it.) Binding the
//! network and the epoch into the signed bytes, not only into the hashed
//! checkpoint, lets a contract refuse a signature replayed under another epoch
//! without decoding the checkpoint.
//!
//! # Verifying partials
//!
//! Partials are checked in one batch with random weights
//! ([`verify_partials`]); a batch that fails is bisected to name the bad ones. The
//! combined signature is always verified against the group key before anyone
//! reports it ([`combine`]), because interpolation of unverified partials can give
//! a wrong signature.

use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::bls12381::primitives::{
    group::{G1, G2, Share},
    ops::{self, threshold},
    sharing::Sharing,
    variant::{MinSig, PartialSignature, Variant},
};
use commonware_parallel::Sequential;
use commonware_utils::{Participant, iter::NonEmpty};
use rand_core::CryptoRng;

/// The namespace commonware prefixes to every checkpoint signature.
pub const NAMESPACE: &[u8] = b"plexus-checkpoint-v1";

/// Bytes in a compressed signature or partial (G1).
pub const SIGNATURE_BYTES: usize = 48;

/// Bytes in a compressed group key (G2).
pub const GROUP_KEY_BYTES: usize = 96;

/// The scheme: min-sig BLS12-381.
pub type Scheme = MinSig;

/// The committee's public polynomial (group key plus each share's public key).
pub type PublicSharing = Sharing<MinSig>;

/// A member's secret share.
pub type SecretShare = Share;

/// Why a signature, partial or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThresholdError {
    /// Bytes that are not a valid point of the right group (wrong length, not on
    /// the curve, not in the subgroup, or the identity).
    #[error("{what} is not a valid point")]
    BadPoint {
        /// Which value.
        what: &'static str,
    },
    /// The signature does not verify against the key.
    #[error("signature does not verify against the group key")]
    Invalid,
    /// Fewer distinct valid partials than the threshold.
    #[error("{have} valid partials, {need} needed")]
    NotEnough {
        /// Valid partials at hand.
        have: usize,
        /// The threshold.
        need: usize,
    },
}

/// The message (after the namespace) that a checkpoint signature covers.
pub fn signing_message(network: &[u8; 32], epoch: u64, checkpoint_hash: &[u8; 32]) -> [u8; 72] {
    let mut m = [0u8; 72];
    m[..32].copy_from_slice(network);
    m[32..40].copy_from_slice(&epoch.to_be_bytes());
    m[40..].copy_from_slice(checkpoint_hash);
    m
}

/// The exact bytes hashed to G1 (namespace prefix included), for third parties and
/// the contract tests.
pub fn hashed_bytes(message: &[u8; 72]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + NAMESPACE.len() + message.len());
    out.push(NAMESPACE.len() as u8);
    out.extend_from_slice(NAMESPACE);
    out.extend_from_slice(message);
    out
}

/// Decodes a compressed group key.
pub fn decode_group_key(bytes: &[u8]) -> Result<G2, ThresholdError> {
    G2::decode(bytes.to_vec()).map_err(|_| ThresholdError::BadPoint { what: "group key" })
}

/// Decodes a compressed signature or partial value.
pub fn decode_signature(bytes: &[u8]) -> Result<G1, ThresholdError> {
    G1::decode(bytes.to_vec()).map_err(|_| ThresholdError::BadPoint { what: "signature" })
}

/// Compressed bytes of a group key.
pub fn encode_group_key(key: &G2) -> Vec<u8> {
    key.encode().to_vec()
}

/// Compressed bytes of a signature.
pub fn encode_signature(sig: &G1) -> Vec<u8> {
    sig.encode().to_vec()
}

/// The group key of a sharing.
pub fn group_key(sharing: &PublicSharing) -> G2 {
    *sharing.public()
}

/// A member's partial signature over `message`: its share index and the 48 bytes.
pub fn sign_partial(share: &SecretShare, message: &[u8; 72]) -> (u32, Vec<u8>) {
    let p = threshold::sign_message::<MinSig>(share, NAMESPACE, message);
    (p.index.get(), encode_signature(&p.value))
}

/// A decoded partial.
pub fn partial(index: u32, bytes: &[u8]) -> Result<PartialSignature<MinSig>, ThresholdError> {
    Ok(PartialSignature {
        index: Participant::new(index),
        value: decode_signature(bytes)?,
    })
}

/// Checks one partial against the sharing (one pairing check).
pub fn verify_partial(
    sharing: &PublicSharing,
    message: &[u8; 72],
    p: &PartialSignature<MinSig>,
) -> Result<(), ThresholdError> {
    threshold::verify_message::<MinSig>(sharing, NAMESPACE, message, p)
        .map_err(|_| ThresholdError::Invalid)
}

/// Checks `partials` in one randomized batch; on failure returns the indices of
/// the invalid ones (found by bisection).
pub fn verify_partials(
    rng: &mut impl CryptoRng,
    sharing: &PublicSharing,
    message: &[u8; 72],
    partials: &[PartialSignature<MinSig>],
) -> Result<(), Vec<u32>> {
    let Some(batch) = NonEmpty::try_new(partials.iter()) else {
        return Ok(());
    };
    threshold::batch_verify_same_message::<_, MinSig, _>(
        rng,
        sharing,
        NAMESPACE,
        message,
        batch,
        &Sequential,
    )
    .map_err(|bad| bad.into_iter().map(|p| p.index.get()).collect())
}

/// Interpolates the group signature from at least `t` *verified* partials and
/// verifies it against the group key.
pub fn combine(
    sharing: &PublicSharing,
    message: &[u8; 72],
    partials: &[PartialSignature<MinSig>],
) -> Result<G1, ThresholdError> {
    let need = sharing.required() as usize;
    if partials.len() < need {
        return Err(ThresholdError::NotEnough {
            have: partials.len(),
            need,
        });
    }
    let sig =
        threshold::recover::<MinSig, _>(sharing, partials.iter(), &Sequential).map_err(|_| {
            ThresholdError::NotEnough {
                have: partials.len(),
                need,
            }
        })?;
    verify(sharing.public(), message, &sig)?;
    Ok(sig)
}

/// Verifies a group signature over `message`.
pub fn verify(group_key: &G2, message: &[u8; 72], sig: &G1) -> Result<(), ThresholdError> {
    ops::verify_message::<MinSig>(group_key, NAMESPACE, message, sig)
        .map_err(|_| ThresholdError::Invalid)
}

/// Hashes `bytes` (the full hashed bytes, namespace included) to G1, as the contract does.
pub fn hash_to_g1(bytes: &[u8]) -> G1 {
    ops::hash::<MinSig>(<MinSig as Variant>::MESSAGE, bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use commonware_cryptography::bls12381::dkg::feldman_desmedt::deal_anonymous;
    use commonware_cryptography::bls12381::primitives::sharing::Mode;
    use commonware_utils::NZU32;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A trusted-dealer sharing: tests only.
    pub(crate) fn dealt(n: u32, seed: u64) -> (PublicSharing, Vec<SecretShare>) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        deal_anonymous::<MinSig, commonware_utils::N3f1>(&mut rng, Mode::NonZeroCounter, NZU32!(n))
    }

    #[test]
    fn t_partials_combine_into_a_signature_the_group_key_verifies() {
        let (sharing, shares) = dealt(4, 1);
        assert_eq!(sharing.required(), 3);
        let msg = signing_message(&[9; 32], 7, &[3; 32]);
        let partials: Vec<_> = shares
            .iter()
            .take(3)
            .map(|s| {
                let (i, b) = sign_partial(s, &msg);
                partial(i, &b).unwrap()
            })
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        assert_eq!(verify_partials(&mut rng, &sharing, &msg, &partials), Ok(()));
        let sig = combine(&sharing, &msg, &partials).unwrap();
        assert_eq!(verify(sharing.public(), &msg, &sig), Ok(()));
        // Another epoch, same hash: refused.
        let other = signing_message(&[9; 32], 8, &[3; 32]);
        assert_eq!(
            verify(sharing.public(), &other, &sig),
            Err(ThresholdError::Invalid)
        );
        // Any other t partials give the same signature.
        let others: Vec<_> = shares
            .iter()
            .skip(1)
            .map(|s| {
                let (i, b) = sign_partial(s, &msg);
                partial(i, &b).unwrap()
            })
            .collect();
        assert_eq!(combine(&sharing, &msg, &others).unwrap(), sig);
    }

    #[test]
    fn fewer_than_t_cannot_combine_and_bad_partials_are_named() {
        let (sharing, shares) = dealt(4, 3);
        let msg = signing_message(&[9; 32], 1, &[1; 32]);
        let good: Vec<_> = shares
            .iter()
            .map(|s| {
                let (i, b) = sign_partial(s, &msg);
                partial(i, &b).unwrap()
            })
            .collect();
        assert!(matches!(
            combine(&sharing, &msg, &good[..2]),
            Err(ThresholdError::NotEnough { have: 2, need: 3 })
        ));
        // A partial over another message, presented as this one.
        let wrong = signing_message(&[9; 32], 2, &[1; 32]);
        let (i, b) = sign_partial(&shares[1], &wrong);
        let mut mixed = good.clone();
        mixed[1] = partial(i, &b).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        assert_eq!(
            verify_partials(&mut rng, &sharing, &msg, &mixed),
            Err(vec![shares[1].index.get()])
        );
        // Unverified, it interpolates into something the group key refuses.
        assert_eq!(
            combine(&sharing, &msg, &mixed[..3]),
            Err(ThresholdError::Invalid)
        );
        assert!(matches!(
            decode_signature(&[0u8; 48]),
            Err(ThresholdError::BadPoint { .. })
        ));
    }
}
