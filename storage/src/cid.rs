//! Content ids: a chunk is named by the BLAKE3 hash of its bytes.
//!
//! Printed as a CIDv1 (the IPFS ecosystem's self-describing id): multibase `b`
//! (RFC 4648 base32, lower case, no padding) over `[0x01 version][0x55 raw]
//! [0x1e blake3][0x20 length][32 digest bytes]`. Every varint here is below 0x80,
//! so each is one byte and the binary form is always 36 bytes, the text 59
//! characters. The parser is strict: anything else is a [`CidError`] saying what
//! is wrong, never a panic (fuzzed with the wire decoder). Raw 64-digit hex is
//! accepted too, for people pasting a digest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The CID version byte.
const CID_V1: u8 = 0x01;
/// The multicodec for raw bytes (chunks and manifests are both raw blocks).
const RAW: u8 = 0x55;
/// The multihash code of BLAKE3.
const BLAKE3: u8 = 0x1e;
/// The digest length.
const DIGEST_BYTES: u8 = 32;
/// The CID's binary length.
const CID_BYTES: usize = 36;

/// A chunk's id: the BLAKE3 hash of its bytes. A file's id is its manifest's.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

/// Why a text is not a content id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidError {
    /// Empty input.
    #[error("an empty content id")]
    Empty,
    /// Not multibase base32 (`b…`) nor 64 hex digits.
    #[error("`{0}` is not a content id: expected a CIDv1 (`b…`, base32) or 64 hex digits")]
    Format(String),
    /// The base32 text does not decode.
    #[error("the content id's base32 does not decode: {0}")]
    Base32(String),
    /// A CIDv1 of ours, cut short or too long.
    #[error("a BLAKE3 content id is {CID_BYTES} bytes; this one is {0} (cut short?)")]
    Length(usize),
    /// Decoded, but not a CIDv1 of raw bytes with a 32-byte BLAKE3 multihash.
    #[error("not a CIDv1 of raw bytes hashed with BLAKE3 (prefix {prefix:02x?}, {len} bytes)")]
    Kind {
        /// The first bytes seen.
        prefix: Vec<u8>,
        /// The decoded length.
        len: usize,
    },
}

impl ChunkId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ChunkId(*blake3::hash(bytes).as_bytes())
    }

    /// Whether `bytes` are this chunk's: every read is checked with this.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        // blake3's Hash comparison is constant-time; not needed here, but free.
        blake3::Hash::from_bytes(self.0) == blake3::hash(bytes)
    }

    /// The id's CIDv1 bytes.
    pub fn to_cid_bytes(&self) -> [u8; CID_BYTES] {
        let mut out = [0u8; CID_BYTES];
        out[..4].copy_from_slice(&[CID_V1, RAW, BLAKE3, DIGEST_BYTES]);
        out[4..].copy_from_slice(&self.0);
        out
    }

    /// The lower-case hex of the digest.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// A short form for logs.
    pub fn short(&self) -> String {
        let s = self.to_string();
        s.chars().skip(s.len().saturating_sub(10)).collect()
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = data_encoding::BASE32_NOPAD
            .encode(&self.to_cid_bytes())
            .to_ascii_lowercase();
        write!(f, "b{text}")
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.short())
    }
}

impl FromStr for ChunkId {
    type Err = CidError;

    fn from_str(s: &str) -> Result<Self, CidError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CidError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = data_encoding::HEXLOWER_PERMISSIVE
                .decode(s.as_bytes())
                .map_err(|e| CidError::Format(e.to_string()))?;
            let digest: [u8; 32] = bytes
                .try_into()
                .map_err(|_| CidError::Format(s.chars().take(80).collect()))?;
            return Ok(ChunkId(digest));
        }
        let Some(body) = s.strip_prefix('b') else {
            return Err(CidError::Format(s.chars().take(80).collect()));
        };
        if !body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            return Err(CidError::Base32(
                "only lower-case base32 (a-z, 2-7) is allowed".into(),
            ));
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| CidError::Base32(e.to_string()))?;
        if bytes.len() >= 4
            && bytes[..4] == [CID_V1, RAW, BLAKE3, DIGEST_BYTES]
            && bytes.len() != CID_BYTES
        {
            return Err(CidError::Length(bytes.len()));
        }
        if bytes.len() != CID_BYTES || bytes[..4] != [CID_V1, RAW, BLAKE3, DIGEST_BYTES] {
            return Err(CidError::Kind {
                prefix: bytes.iter().take(4).copied().collect(),
                len: bytes.len(),
            });
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[4..]);
        Ok(ChunkId(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cid_is_self_describing_and_round_trips() {
        let id = ChunkId::of(b"hello plexus");
        let text = id.to_string();
        assert!(text.starts_with("bafkr4i"), "{text}"); // CIDv1 raw blake3
        assert_eq!(text.len(), 59);
        assert_eq!(text.parse::<ChunkId>(), Ok(id));
        assert_eq!(id.to_hex().parse::<ChunkId>(), Ok(id));
        assert!(id.matches(b"hello plexus"));
        assert!(!id.matches(b"hello plexuS"));
    }

    #[test]
    fn bad_ids_get_typed_errors() {
        assert_eq!("".parse::<ChunkId>(), Err(CidError::Empty));
        assert!(matches!(
            "Qmabc".parse::<ChunkId>(),
            Err(CidError::Format(_))
        ));
        assert!(matches!(
            "bAFK".parse::<ChunkId>(),
            Err(CidError::Base32(_))
        ));
        // A sha2-256 CIDv1 of raw bytes: a real CID, not ours.
        let mut other = ChunkId::of(b"x").to_cid_bytes();
        other[2] = 0x12;
        let text = format!(
            "b{}",
            data_encoding::BASE32_NOPAD
                .encode(&other)
                .to_ascii_lowercase()
        );
        assert!(matches!(
            text.parse::<ChunkId>(),
            Err(CidError::Kind { .. })
        ));
        // Truncated.
        let cut = format!(
            "b{}",
            data_encoding::BASE32_NOPAD
                .encode(&ChunkId::of(b"x").to_cid_bytes()[..30])
                .to_ascii_lowercase()
        );
        assert_eq!(cut.parse::<ChunkId>(), Err(CidError::Length(30)));
        let good = ChunkId::of(b"x").to_string();
        assert!(good[..40].parse::<ChunkId>().is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,100}") {
            let _ = s.parse::<ChunkId>();
        }

        #[test]
        fn every_digest_round_trips(d in any::<[u8; 32]>()) {
            let id = ChunkId(d);
            prop_assert_eq!(id.to_string().parse::<ChunkId>(), Ok(id));
        }
    }
}
