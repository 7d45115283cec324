//! Sealing chunks: XChaCha20-Poly1305 under a file's own key.
//!
//! Each file gets a fresh random 32-byte key and a random 16-byte nonce prefix,
//! both drawn by the client and passed in here (this module draws nothing). Chunk
//! `i` is sealed with nonce `prefix ‖ i as u64 big-endian`: within one file the
//! index makes every nonce distinct, and no key is ever used for two files, so no
//! (key, nonce) pair repeats. The associated data binds the chunk to its position
//! (`domain ‖ index ‖ total chunks`), so chunks cannot be swapped or a file cut
//! short without the tag failing. A chunk is named by the hash of the sealed
//! bytes, so storing nodes see and address only ciphertext.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The authentication tag each sealed chunk carries.
pub const TAG_BYTES: usize = 16;
/// The domain of the associated data.
const AAD_DOMAIN: &[u8] = b"plexus/fs/chunk/v1";

/// Why a chunk does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The tag does not verify: the wrong key, or the chunk was altered or moved.
    #[error("chunk {index} does not open: wrong key, or altered or moved ciphertext")]
    Open {
        /// The chunk's index.
        index: u64,
    },
    /// Sealing failed (a length bound of the cipher).
    #[error("chunk {index} cannot be sealed")]
    Seal {
        /// The chunk's index.
        index: u64,
    },
}

/// A file key. Not `Debug` or `Display`, so it never reaches a log.
#[derive(Clone)]
pub struct FileKey([u8; 32]);

impl FileKey {
    /// The key from its 32 bytes (drawn by the client's OS generator, or unwrapped
    /// from an envelope).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        FileKey(bytes)
    }

    /// The key's bytes, to wrap them for a reader.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

/// Seals and opens one file's chunks.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    prefix: [u8; 16],
    chunks: u64,
}

impl Sealer {
    /// The sealer of a file of `chunks` chunks under `key` and `prefix`.
    pub fn new(key: &FileKey, prefix: [u8; 16], chunks: u64) -> Self {
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.0.into()),
            prefix,
            chunks,
        }
    }

    /// The nonce of chunk `index`.
    pub fn nonce(prefix: &[u8; 16], index: u64) -> [u8; 24] {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(prefix);
        n[16..].copy_from_slice(&index.to_be_bytes());
        n
    }

    fn aad(&self, index: u64) -> Vec<u8> {
        let mut aad = AAD_DOMAIN.to_vec();
        aad.extend_from_slice(&index.to_be_bytes());
        aad.extend_from_slice(&self.chunks.to_be_bytes());
        aad
    }

    /// Chunk `index`'s plaintext, sealed: `plain.len() + TAG_BYTES` bytes.
    pub fn seal(&self, index: u64, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut sealed = Vec::with_capacity(plain.len() + TAG_BYTES);
        sealed.extend_from_slice(plain);
        self.seal_in_place(index, &mut sealed)?;
        Ok(sealed)
    }

    /// Seals chunk `index`'s plaintext where it is: `buf` becomes the sealed
    /// chunk, [`TAG_BYTES`] longer (give it that much spare capacity to spare
    /// a reallocation). On an error `buf` is left as it was.
    pub fn seal_in_place(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = Sealer::nonce(&self.prefix, index);
        self.cipher
            .encrypt_in_place(XNonce::from_slice(&nonce), &self.aad(index), buf)
            .map_err(|_| SealError::Seal { index })
    }

    /// Chunk `index`'s plaintext, if `sealed` opens under this file's key there.
    pub fn open(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut plain = sealed.to_vec();
        self.open_in_place(index, &mut plain)?;
        Ok(plain)
    }

    /// Opens sealed chunk `index` where it is: `buf` becomes its plaintext if it
    /// opens under this file's key there (the tag is checked before anything is
    /// decrypted); otherwise an error, and `buf` is left as it was.
    pub fn open_in_place(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = Sealer::nonce(&self.prefix, index);
        self.cipher
            .decrypt_in_place(XNonce::from_slice(&nonce), &self.aad(index), buf)
            .map_err(|_| SealError::Open { index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::rng::DetRng;
    use std::collections::BTreeSet;

    fn sealer(rng: &mut DetRng, chunks: u64) -> ([u8; 32], [u8; 16], Sealer) {
        let key = rng.bytes32();
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&rng.bytes32()[..16]);
        (
            key,
            prefix,
            Sealer::new(&FileKey::from_bytes(key), prefix, chunks),
        )
    }

    #[test]
    fn a_sealed_chunk_opens_only_with_its_key_at_its_place() {
        let mut rng = DetRng::new(1);
        let (_, _, s) = sealer(&mut rng, 3);
        let plain = b"the weights of a model nobody else may read".repeat(100);
        let sealed = s.seal(1, &plain).unwrap();
        assert_eq!(sealed.len(), plain.len() + TAG_BYTES);
        assert_eq!(s.open(1, &sealed).unwrap(), plain);
        // In place, the same; a refusal leaves the buffer as it was.
        let mut buf = sealed.clone();
        assert_eq!(
            s.open_in_place(2, &mut buf),
            Err(SealError::Open { index: 2 })
        );
        assert_eq!(buf, sealed);
        s.open_in_place(1, &mut buf).unwrap();
        assert_eq!(buf, plain);
        // The ciphertext holds no run of the plaintext.
        assert!(
            !sealed
                .windows(16)
                .any(|w| plain.windows(16).any(|p| p == w))
        );
        // Another place, another file's key, a flipped bit: all refused.
        assert_eq!(s.open(2, &sealed), Err(SealError::Open { index: 2 }));
        let (_, _, other) = sealer(&mut rng, 3);
        assert!(other.open(1, &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[5] ^= 1;
        assert!(s.open(1, &tampered).is_err());
        assert!(s.open(1, &sealed[..sealed.len() - 1]).is_err());
        // The same place in a file of another length (a file cut short).
        let (key, prefix, _) = sealer(&mut DetRng::new(1), 3);
        let shorter = Sealer::new(&FileKey::from_bytes(key), prefix, 2);
        assert!(shorter.open(1, &sealed).is_err());
        assert!(
            Sealer::new(&FileKey::from_bytes(key), prefix, 3)
                .open(1, &sealed)
                .is_ok()
        );
    }

    #[test]
    fn nonces_never_repeat_across_chunks_and_files() {
        // Keys and prefixes drawn per file as the client does; every (key, nonce)
        // pair and every nonce over 200 files of 50 chunks is distinct.
        let mut rng = DetRng::new(7);
        let mut pairs = BTreeSet::new();
        let mut nonces = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for _ in 0..200 {
            let (key, prefix, _) = sealer(&mut rng, 50);
            assert!(keys.insert(key), "a key was drawn twice");
            for i in 0..50 {
                let n = Sealer::nonce(&prefix, i);
                assert!(pairs.insert((key, n)));
                assert!(nonces.insert(n));
            }
        }
        assert_eq!(nonces.len(), 200 * 50);
    }
}
