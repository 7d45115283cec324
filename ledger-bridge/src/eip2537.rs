//! Compressed BLS12-381 points (what `plexus-epochs` signs with) to the uncompressed
//! encodings the EIP-2537 precompiles read.
//!
//! - A field element Fp is 48 bytes big-endian; EIP-2537 widens it to 64 bytes with
//!   16 zero bytes on top.
//! - G1 (signatures, 48 bytes compressed) becomes `x ‖ y`, 128 bytes.
//! - G2 (the group key, 96 bytes compressed) becomes `x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1`,
//!   256 bytes. The ZCash/blst serialization puts `c1` before `c0` in each Fp2
//!   coordinate, so the halves are swapped on the way.
//!
//! Both conversions decompress with `blst` and check that the point is on the curve,
//! in the prime-order subgroup and not the identity, so the bytes that reach a
//! contract are always a valid point (whether they *verify* is the contract's call).

use blst::min_sig::{PublicKey, Signature};

/// Bytes of one Fp element in EIP-2537 form.
const FP_BYTES: usize = 64;
/// Bytes of one Fp element in the blst serialization.
const FP_RAW_BYTES: usize = 48;
/// Zero padding above each Fp element.
const FP_PAD: usize = FP_BYTES - FP_RAW_BYTES;

/// Bytes of a G1 point in EIP-2537 form (a signature).
pub const G1_BYTES: usize = 2 * FP_BYTES;
/// Bytes of a G2 point in EIP-2537 form (a group key).
pub const G2_BYTES: usize = 4 * FP_BYTES;

/// Why a compressed point could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointError {
    /// Not a valid compressed G1 point in the subgroup (or the identity).
    #[error("not a valid compressed G1 signature")]
    BadSignature,
    /// Not a valid compressed G2 point in the subgroup (or the identity).
    #[error("not a valid compressed G2 group key")]
    BadGroupKey,
}

/// A 48-byte compressed G1 signature in the 128-byte EIP-2537 form.
pub fn signature_to_eip2537(compressed: &[u8]) -> Result<[u8; G1_BYTES], PointError> {
    let sig = Signature::sig_validate(compressed, true).map_err(|_| PointError::BadSignature)?;
    let raw = sig.serialize(); // x ‖ y, 48 bytes each
    let mut out = [0u8; G1_BYTES];
    for (i, fp) in raw.chunks_exact(FP_RAW_BYTES).enumerate() {
        out[i * FP_BYTES + FP_PAD..(i + 1) * FP_BYTES].copy_from_slice(fp);
    }
    Ok(out)
}

/// A 96-byte compressed G2 group key in the 256-byte EIP-2537 form.
pub fn group_key_to_eip2537(compressed: &[u8]) -> Result<[u8; G2_BYTES], PointError> {
    let key = PublicKey::key_validate(compressed).map_err(|_| PointError::BadGroupKey)?;
    let raw = key.serialize(); // x.c1 ‖ x.c0 ‖ y.c1 ‖ y.c0, 48 bytes each
    let mut out = [0u8; G2_BYTES];
    // EIP-2537 slot i takes raw element ORDER[i].
    const ORDER: [usize; 4] = [1, 0, 3, 2];
    for (slot, &from) in ORDER.iter().enumerate() {
        out[slot * FP_BYTES + FP_PAD..(slot + 1) * FP_BYTES]
            .copy_from_slice(&raw[from * FP_RAW_BYTES..(from + 1) * FP_RAW_BYTES]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = include_str!("../contracts/out/vector.json");

    fn field(name: &str) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_str(VECTOR).unwrap();
        let s = v[name].as_str().unwrap().trim_start_matches("0x");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn both_conversions_match_the_contract_test_vector() {
        let key = group_key_to_eip2537(&field("groupKeyCompressed")).unwrap();
        assert_eq!(key.to_vec(), field("groupKeyEip2537"));
        let sig = signature_to_eip2537(&field("signatureCompressed")).unwrap();
        assert_eq!(sig.to_vec(), field("signatureEip2537"));
    }

    #[test]
    fn invalid_points_are_refused() {
        let mut key = field("groupKeyCompressed");
        assert_eq!(
            signature_to_eip2537(&key[..48]),
            Err(PointError::BadSignature),
            "the first half of a G2 key is not a G1 point"
        );
        key[95] ^= 1;
        assert_eq!(group_key_to_eip2537(&key), Err(PointError::BadGroupKey));
        // The identity (compressed flag + infinity flag) is refused for both.
        let mut inf1 = [0u8; 48];
        inf1[0] = 0xc0;
        assert_eq!(signature_to_eip2537(&inf1), Err(PointError::BadSignature));
        let mut inf2 = [0u8; 96];
        inf2[0] = 0xc0;
        assert_eq!(group_key_to_eip2537(&inf2), Err(PointError::BadGroupKey));
        assert_eq!(signature_to_eip2537(&[]), Err(PointError::BadSignature));
    }
}
