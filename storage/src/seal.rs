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
//!
//! XChaCha20-Poly1305 is computed as its definition has it
//! (draft-irtf-cfrg-xchacha, section 2.3): HChaCha20 of the key and the nonce's
//! first 16 bytes (the file's prefix, so once per file) gives a subkey, and the
//! chunk is sealed with ChaCha20-Poly1305 (RFC 8439) under that subkey and the
//! nonce `0⁴ ‖ i`. The subkey comes from RustCrypto's `chacha20`, the AEAD from
//! `ring`, whose assembly seals a 1 MiB chunk about 1.8× as fast as RustCrypto's
//! on the Intel VM (docs/design/storage.md, "Sealing"); tests check every byte
//! and tag against RustCrypto's `XChaCha20Poly1305`, so the format is the one
//! files were sealed with before.

#[cfg(feature = "client")]
use chacha20::cipher::consts::U10;
#[cfg(feature = "client")]
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

/// The authentication tag each sealed chunk carries.
pub const TAG_BYTES: usize = 16;
/// The domain of the associated data.
#[cfg(feature = "client")]
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

/// Seals and opens one file's chunks (feature `client`: ring's tree carries
/// `getrandom` for ring's own generator, which nothing here calls, and the cores
/// keep OS randomness out of their trees).
#[cfg(feature = "client")]
pub struct Sealer {
    /// ChaCha20-Poly1305 under the file's subkey (HChaCha20 of the key and the
    /// prefix), which `ring` keeps expanded.
    cipher: LessSafeKey,
    chunks: u64,
}

#[cfg(feature = "client")]
impl Sealer {
    /// The sealer of a file of `chunks` chunks under `key` and `prefix`.
    pub fn new(key: &FileKey, prefix: [u8; 16], chunks: u64) -> Self {
        let subkey: [u8; 32] = chacha20::hchacha::<U10>(&key.0.into(), &prefix.into()).into();
        // A 32-byte key is the one length `UnboundKey::new` accepts for
        // ChaCha20-Poly1305, so this never fails.
        let cipher = match UnboundKey::new(&CHACHA20_POLY1305, &subkey) {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable!("a ChaCha20-Poly1305 key is 32 bytes"),
        };
        Sealer { cipher, chunks }
    }

    /// The nonce of chunk `index`.
    pub fn nonce(prefix: &[u8; 16], index: u64) -> [u8; 24] {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(prefix);
        n[16..].copy_from_slice(&index.to_be_bytes());
        n
    }

    /// Chunk `index`'s ChaCha20-Poly1305 nonce under the subkey: the last 8
    /// bytes of its XChaCha20 nonce, after 4 zero bytes. Distinct per index.
    fn inner_nonce(index: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&index.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    fn aad(&self, index: u64) -> [u8; AAD_BYTES] {
        let mut aad = [0u8; AAD_BYTES];
        let (domain, rest) = aad.split_at_mut(AAD_DOMAIN.len());
        domain.copy_from_slice(AAD_DOMAIN);
        rest[..8].copy_from_slice(&index.to_be_bytes());
        rest[8..].copy_from_slice(&self.chunks.to_be_bytes());
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
        // ring refuses only inputs over ChaCha20's 256 GiB per nonce, before
        // it touches them.
        let tag = self
            .cipher
            .seal_in_place_separate_tag(Sealer::inner_nonce(index), Aad::from(self.aad(index)), buf)
            .map_err(|_| SealError::Seal { index })?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Chunk `index`'s plaintext, if `sealed` opens under this file's key there.
    pub fn open(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut plain = sealed.to_vec();
        self.open_in_place(index, &mut plain)?;
        Ok(plain)
    }

    /// Opens sealed chunk `index` where it is: `buf` becomes its plaintext if it
    /// opens under this file's key there. Otherwise an error, and `buf` holds
    /// no plaintext: ring checks the tag as it decrypts and zeroes what it
    /// decrypted when the tag fails (all but the last [`TAG_BYTES`]; a buffer
    /// shorter than a tag is refused untouched).
    pub fn open_in_place(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), SealError> {
        let plain = self
            .cipher
            .open_in_place(Sealer::inner_nonce(index), Aad::from(self.aad(index)), buf)
            .map_err(|_| SealError::Open { index })?
            .len();
        buf.truncate(plain);
        Ok(())
    }
}

/// The associated data's length: the domain, the index and the chunk count.
#[cfg(feature = "client")]
const AAD_BYTES: usize = AAD_DOMAIN.len() + 16;

#[cfg(all(test, feature = "client"))]
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
        // In place, the same; a refusal leaves no plaintext behind: what was
        // decrypted is zeroed, the tag stays.
        let mut buf = sealed.clone();
        assert_eq!(
            s.open_in_place(2, &mut buf),
            Err(SealError::Open { index: 2 })
        );
        assert_eq!(buf.len(), sealed.len());
        let (body, tag) = buf.split_at(buf.len() - TAG_BYTES);
        assert!(
            body.iter().all(|&b| b == 0),
            "a refused chunk left bytes behind"
        );
        assert_eq!(tag, &sealed[sealed.len() - TAG_BYTES..]);
        let mut buf = sealed.clone();
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

    /// Seals `plain` as chunk `index` of `chunks` both ways and checks that
    /// the bytes and tags agree and that each opens what the other sealed.
    fn same_as_xchacha20_poly1305(rng: &mut DetRng, plain: &[u8], index: u64, chunks: u64) {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let (key, prefix, s) = sealer(rng, chunks);
        let reference = XChaCha20Poly1305::new(&key.into());
        let nonce = Sealer::nonce(&prefix, index);
        let mut aad = AAD_DOMAIN.to_vec();
        aad.extend_from_slice(&index.to_be_bytes());
        aad.extend_from_slice(&chunks.to_be_bytes());
        let mut theirs = plain.to_vec();
        reference
            .encrypt_in_place(XNonce::from_slice(&nonce), &aad, &mut theirs)
            .unwrap();
        let ours = s.seal(index, plain).unwrap();
        assert!(
            ours == theirs,
            "{} bytes at {index} of {chunks}",
            plain.len()
        );
        assert!(s.open(index, &theirs).unwrap() == plain);
        let mut back = ours;
        reference
            .decrypt_in_place(XNonce::from_slice(&nonce), &aad, &mut back)
            .unwrap();
        assert!(back == plain);
    }

    /// The format is XChaCha20-Poly1305 itself: every byte and tag is what
    /// RustCrypto's `XChaCha20Poly1305` gives for the same key, nonce and
    /// associated data, and each opens what the other sealed. ring's assembly
    /// takes other paths by length, so the lengths run from empty to the
    /// largest chunk.
    #[test]
    fn chunks_are_sealed_exactly_as_xchacha20_poly1305_seals_them() {
        let mut rng = DetRng::new(3);
        for (len, index, chunks) in [
            (0usize, 0u64, 1u64),
            (1, 0, 2),
            (63, 1, 2),
            (64, 5, 9),
            (1000, 7, 8),
            (70_001, u64::MAX - 1, u64::MAX),
            (1 << 20, 3, 4),
            (crate::manifest::CHUNK_BYTES_MAX as usize, 0, 1),
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
            same_as_xchacha20_poly1305(&mut rng, &plain, index, chunks);
        }
    }

    proptest::proptest! {
        #[test]
        fn every_length_up_to_4_kib_is_sealed_as_xchacha20_poly1305_seals_it(
            plain in proptest::collection::vec(proptest::num::u8::ANY, 0..=4096),
            index: u64,
            seed: u64,
        ) {
            let chunks = index.saturating_add(1);
            same_as_xchacha20_poly1305(&mut DetRng::new(seed), &plain, index, chunks);
        }
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
