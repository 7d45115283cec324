//! Files as chunks and a manifest.
//!
//! A file is cut into fixed-size chunks (`chunk_bytes`, 1 MiB by default; the last
//! may be shorter), each sealed for its readers ([`crate::seal`]) unless the file is
//! public, and each named by the BLAKE3 hash of its stored bytes. The manifest
//! lists the chunk ids in order with the file's size and how it is sealed; it is
//! stored as a chunk too, and its id is the file's id. So the file is a Merkle DAG
//! of depth one: a file id fixes the manifest, which fixes every chunk.
//!
//! Why fixed-size and not content-defined chunking: the cut points of CDC depend on
//! the plaintext, so the chunk sizes of an encrypted file would leak a
//! fingerprint of its contents to every storing node. Fixed sizes leak only the
//! file's size (see `docs/design/storage.md`).
//!
//! Bounds: [`CHUNK_BYTES_MAX`] per chunk, [`CHUNKS_MAX`] chunks per file (about
//! 195 GiB at 1 MiB), [`MANIFEST_BYTES_MAX`] per manifest. A manifest that breaks a
//! rule is refused on decode with a [`ManifestError`].

use plexus_actors::codec;
use serde::{Deserialize, Serialize};

use crate::cid::ChunkId;
use crate::seal::TAG_BYTES;

/// The manifest format version.
pub const MANIFEST_VERSION: u8 = 1;
/// The magic that opens every manifest, so a chunk is never taken for one.
pub const MANIFEST_MAGIC: [u8; 8] = *b"plexusfm";
/// The default chunk size.
pub const CHUNK_BYTES_DEFAULT: u32 = 1 << 20;
/// The largest chunk size.
pub const CHUNK_BYTES_MAX: u32 = 4 << 20;
/// The smallest chunk size (a file of many tiny chunks is all overhead).
pub const CHUNK_BYTES_MIN: u32 = 4 << 10;
/// The most chunks in one file.
pub const CHUNKS_MAX: usize = 200_000;
/// The largest manifest, encoded.
pub const MANIFEST_BYTES_MAX: usize = 8 << 20;
/// The largest stored chunk (a sealed chunk carries its tag).
pub const STORED_CHUNK_BYTES_MAX: usize = CHUNK_BYTES_MAX as usize + TAG_BYTES;

/// How a file's chunks are sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Sealing {
    /// Stored as they are: every storing node can read them (`--public`).
    Public,
    /// XChaCha20-Poly1305 under the file's own random key, with nonce
    /// `nonce_prefix ‖ chunk index` (never repeated under one key).
    XChaCha20Poly1305 {
        /// Random per file.
        nonce_prefix: [u8; 16],
    },
}

/// A file: its size, its chunks in order, and how they are sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_MAGIC`].
    pub magic: [u8; 8],
    /// [`MANIFEST_VERSION`].
    pub version: u8,
    /// The plaintext's length.
    pub size: u64,
    /// The plaintext length of every chunk but the last.
    pub chunk_bytes: u32,
    /// How the chunks are sealed.
    pub sealing: Sealing,
    /// The stored chunks' ids, in file order.
    pub chunks: Vec<ChunkId>,
}

/// Why bytes are not a manifest, or a manifest is not whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The bytes do not decode as a manifest.
    #[error("not a manifest: {0}")]
    Decode(String),
    /// The magic is wrong: some other chunk.
    #[error("not a manifest (this id names a data chunk, not a file)")]
    NotAManifest,
    /// An unknown version.
    #[error("manifest version {0} is not supported (this build reads {MANIFEST_VERSION})")]
    Version(u8),
    /// The chunk size is out of bounds.
    #[error("chunk size {0} is out of bounds ({CHUNK_BYTES_MIN}..={CHUNK_BYTES_MAX})")]
    ChunkBytes(u32),
    /// The chunk count does not match the size.
    #[error("{chunks} chunks cannot hold {size} bytes in chunks of {chunk_bytes}")]
    Count {
        /// Chunks listed.
        chunks: usize,
        /// Size claimed.
        size: u64,
        /// Chunk size.
        chunk_bytes: u32,
    },
    /// Too many chunks.
    #[error("a file of {0} chunks is over the bound of {CHUNKS_MAX}")]
    TooMany(usize),
    /// Encoding failed (a bound).
    #[error("the manifest cannot be encoded: {0}")]
    Encode(String),
}

impl Manifest {
    /// A manifest, checked.
    pub fn new(
        size: u64,
        chunk_bytes: u32,
        sealing: Sealing,
        chunks: Vec<ChunkId>,
    ) -> Result<Self, ManifestError> {
        let m = Manifest {
            magic: MANIFEST_MAGIC,
            version: MANIFEST_VERSION,
            size,
            chunk_bytes,
            sealing,
            chunks,
        };
        m.check()?;
        Ok(m)
    }

    /// How many chunks a file of `size` bytes has in chunks of `chunk_bytes`.
    pub fn chunks_for(size: u64, chunk_bytes: u32) -> u64 {
        if chunk_bytes == 0 {
            return 0;
        }
        size.div_ceil(u64::from(chunk_bytes))
    }

    fn check(&self) -> Result<(), ManifestError> {
        if self.magic != MANIFEST_MAGIC {
            return Err(ManifestError::NotAManifest);
        }
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version(self.version));
        }
        if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&self.chunk_bytes) {
            return Err(ManifestError::ChunkBytes(self.chunk_bytes));
        }
        if self.chunks.len() > CHUNKS_MAX {
            return Err(ManifestError::TooMany(self.chunks.len()));
        }
        if Manifest::chunks_for(self.size, self.chunk_bytes) != self.chunks.len() as u64 {
            return Err(ManifestError::Count {
                chunks: self.chunks.len(),
                size: self.size,
                chunk_bytes: self.chunk_bytes,
            });
        }
        Ok(())
    }

    /// Whether the chunks are sealed.
    pub fn sealed(&self) -> bool {
        !matches!(self.sealing, Sealing::Public)
    }

    /// The plaintext length of chunk `index` (0 past the end).
    pub fn plain_len(&self, index: usize) -> usize {
        let start = (index as u64).saturating_mul(u64::from(self.chunk_bytes));
        let left = self.size.saturating_sub(start);
        usize::try_from(left.min(u64::from(self.chunk_bytes))).unwrap_or(0)
    }

    /// The stored length of chunk `index`: what a read of it must return.
    pub fn stored_len(&self, index: usize) -> usize {
        self.plain_len(index) + if self.sealed() { TAG_BYTES } else { 0 }
    }

    /// The bytes every node stores: a codec frame.
    pub fn encode(&self) -> Result<Vec<u8>, ManifestError> {
        let bytes = codec::encode(self).map_err(|e| ManifestError::Encode(e.to_string()))?;
        if bytes.len() > MANIFEST_BYTES_MAX {
            return Err(ManifestError::Encode(format!(
                "{} bytes, over the bound of {MANIFEST_BYTES_MAX}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The manifest in `bytes`, checked; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        // A data chunk is almost never a frame of ours: say so plainly.
        if bytes.len() < 1 + MANIFEST_MAGIC.len() || bytes[1..9] != MANIFEST_MAGIC {
            return Err(ManifestError::NotAManifest);
        }
        let m: Manifest = codec::decode_with_limit(bytes, MANIFEST_BYTES_MAX)
            .map_err(|e| ManifestError::Decode(e.to_string()))?;
        m.check()?;
        // The codec's integers decode from more than one form; a manifest in any
        // but the one its encoder writes is refused, so one file has one id
        // (found by the `storage_manifest` fuzz target).
        if m.encode()? != bytes {
            return Err(ManifestError::Decode(
                "not in canonical form (an integer in a longer encoding than needed)".into(),
            ));
        }
        Ok(m)
    }

    /// The file's id: its encoded manifest's hash.
    pub fn id(&self) -> Result<ChunkId, ManifestError> {
        Ok(ChunkId::of(&self.encode()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<ChunkId> {
        (0..n).map(|i| ChunkId::of(&i.to_le_bytes())).collect()
    }

    #[test]
    fn a_manifest_round_trips_and_names_the_file() {
        let m = Manifest::new(
            (3 << 20) + 5,
            CHUNK_BYTES_DEFAULT,
            Sealing::XChaCha20Poly1305 {
                nonce_prefix: [7; 16],
            },
            ids(4),
        )
        .unwrap();
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.id().unwrap(), ChunkId::of(&bytes));
        assert_eq!(m.plain_len(0), 1 << 20);
        assert_eq!(m.plain_len(3), 5);
        assert_eq!(m.stored_len(3), 5 + TAG_BYTES);
        assert_eq!(m.plain_len(4), 0);
        // Another sealing is another file.
        let public =
            Manifest::new((3 << 20) + 5, CHUNK_BYTES_DEFAULT, Sealing::Public, ids(4)).unwrap();
        assert_ne!(public.id().unwrap(), m.id().unwrap());
        assert_eq!(public.stored_len(3), 5);
    }

    #[test]
    fn broken_manifests_are_refused() {
        assert!(matches!(
            Manifest::new(10, CHUNK_BYTES_DEFAULT, Sealing::Public, ids(2)),
            Err(ManifestError::Count { .. })
        ));
        assert!(matches!(
            Manifest::new(10, 1, Sealing::Public, ids(10)),
            Err(ManifestError::ChunkBytes(1))
        ));
        assert_eq!(
            Manifest::decode(b"just some data chunk"),
            Err(ManifestError::NotAManifest)
        );
        let m = Manifest::new(0, CHUNK_BYTES_DEFAULT, Sealing::Public, vec![]).unwrap();
        let mut bytes = m.encode().unwrap();
        bytes.push(0);
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::Decode(_))
        ));
        bytes.truncate(12);
        assert!(Manifest::decode(&bytes).is_err());
        // The chunk size 4096 as a 4-byte integer where 2 bytes do: the same
        // manifest in other bytes, so another id. Refused.
        let long = b"\x01plexusfm\x01\x00\xfc\x00\x10\x00\x00\x00\x00";
        let short = b"\x01plexusfm\x01\x00\xfb\x00\x10\x00\x00";
        assert!(Manifest::decode(short).is_ok());
        assert!(matches!(
            Manifest::decode(long),
            Err(ManifestError::Decode(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Manifest::decode(&bytes);
            let mut framed = vec![codec::WIRE_VERSION];
            framed.extend_from_slice(&MANIFEST_MAGIC);
            framed.extend_from_slice(&bytes);
            let _ = Manifest::decode(&framed);
        }

        #[test]
        fn chunk_lengths_add_up_to_the_size(size in 0u64..(64 << 20), shift in 12u32..=22) {
            let chunk_bytes = 1u32 << shift;
            let n = Manifest::chunks_for(size, chunk_bytes) as usize;
            let m = Manifest::new(size, chunk_bytes, Sealing::Public, ids(n)).unwrap();
            let total: u64 = (0..n).map(|i| m.plain_len(i) as u64).sum();
            prop_assert_eq!(total, size);
            prop_assert!((0..n).all(|i| m.plain_len(i) > 0));
        }
    }
}
