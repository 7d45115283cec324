//! Keys and signatures. Pure: key generation takes a seed from the caller, which in
//! production comes from the OS (see the driver's `keystore`).
//!
//! Every signature is over `domain || 0x00 || message`, so a signature made for one
//! purpose (an allowlist, a job submission) can never be replayed as another.

use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use plexus_actors::NodeId;

/// An ed25519 key pair: a node's identity, a network's governance key, or a client's
/// submission key.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({:?})", self.node_id())
    }
}

/// A signature that does not verify. The signer (or whoever altered the message) is
/// at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature bytes are not 64 long.
    #[error("signature must be 64 bytes, got {0}")]
    Length(usize),
    /// The public key is not a valid ed25519 point.
    #[error("invalid public key {0}")]
    BadKey(NodeId),
    /// The signature does not match the message and key.
    #[error("signature by {0} does not verify")]
    Mismatch(NodeId),
}

fn framed(domain: &[u8], message: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(domain.len() + 1 + message.len());
    buf.extend_from_slice(domain);
    buf.push(0);
    buf.extend_from_slice(message);
    buf
}

impl NodeKey {
    /// The key for a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The secret seed (to store it; handle with care).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key, as a node id.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message` for `domain`.
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> [u8; 64] {
        self.signing.sign(&framed(domain, message)).to_bytes()
    }
}

/// Checks that `signer` signed `message` for `domain`.
pub fn verify(
    signer: &NodeId,
    domain: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::Length(signature.len()))?;
    let key = VerifyingKey::from_bytes(&signer.to_bytes())
        .map_err(|_| SignatureError::BadKey(*signer))?;
    key.verify(
        &framed(domain, message),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| SignatureError::Mismatch(*signer))
}

/// Entries a [`SigMemo`] holds before it starts over.
pub const SIG_MEMO_MAX: usize = 1 << 20;

/// Signatures already found valid, shared by the nodes of one process that opt in.
///
/// The simulator runs thousands of nodes in one world, and each would check the
/// same gossiped statement with the same ed25519 arithmetic: at 1,000 nodes that
/// was a third of the run. A check is a pure function of (signer, domain, message,
/// signature), so remembering the answer cannot change it; only valid signatures
/// are remembered (keyed by a BLAKE3 hash over all four), so a forgery is checked,
/// and refused, every time. A production node checks directly ([`SigCheck::Direct`]);
/// a process hosting many nodes may share one memo between them.
///
/// Bound: [`SIG_MEMO_MAX`] entries (32 bytes each); the next insert clears it, which
/// costs only re-checks. The keys are hashed, not ordered: the memo is only asked
/// whether it holds one, never walked, and in a B-tree of up to a million 32-byte
/// keys each check descended through nodes that were not in the cache.
///
/// Signed values the nodes share as one allocation (a gossiped statement in the
/// simulator is one `Arc` however many nodes hold it) are also remembered by
/// address ([`SigCheck::verify_held`]), so the ten-thousandth node to check one
/// does not encode and hash its message again. The memo keeps each such value
/// alive, so its address names it and nothing else while remembered, and a value
/// in an `Arc` that the memo shares cannot be changed in place. Bound: the same
/// [`SIG_MEMO_MAX`], cleared the same way.
#[derive(Clone, Debug, Default)]
pub struct SigMemo {
    valid: Arc<Mutex<Memo>>,
}

#[derive(Default)]
struct Memo {
    /// BLAKE3 hashes of (signer, domain, message, signature) found valid, hashed
    /// with a fixed seed (never iterated: only asked for a key, and the keys are
    /// BLAKE3 hashes, which no one chooses).
    keys: plexus_actors::fixed::FixedSet<[u8; 32]>,
    /// Addresses of the shared values found validly signed...
    held: plexus_actors::fixed::FixedSet<usize>,
    /// ...and the values, kept alive while their addresses are remembered.
    kept: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("keys", &self.keys.len())
            .field("held", &self.held.len())
            .finish()
    }
}

impl SigMemo {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signatures remembered.
    pub fn len(&self) -> usize {
        self.valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a core checks the signatures on what peers send it.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum SigCheck {
    /// Every signature checked in full (a production node).
    #[default]
    Direct,
    /// Through a memo shared with the other nodes of this process (the simulator).
    Shared(SigMemo),
}

impl SigCheck {
    /// Checks that `signer` signed `message` for `domain` ([`verify`]).
    pub fn verify(
        &self,
        signer: &NodeId,
        domain: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let SigCheck::Shared(memo) = self else {
            return verify(signer, domain, message, signature);
        };
        // Answered from the memo when this exact signature was found valid.
        let mut h = blake3::Hasher::new();
        h.update(&signer.to_bytes());
        h.update(&(domain.len() as u64).to_le_bytes());
        h.update(domain);
        h.update(&(message.len() as u64).to_le_bytes());
        h.update(message);
        h.update(signature);
        let key: [u8; 32] = h.finalize().into();
        let mut valid = memo.valid.lock().unwrap_or_else(PoisonError::into_inner);
        if valid.keys.contains(&key) {
            return Ok(());
        }
        verify(signer, domain, message, signature)?;
        if valid.keys.len() >= SIG_MEMO_MAX {
            valid.keys.clear();
        }
        valid.keys.insert(key);
        Ok(())
    }

    /// Checks a signed value held in an `Arc`: `check` runs the check (through this
    /// `SigCheck`). Direct, it always runs; through a memo, a value this memo has
    /// already seen validly signed (the same allocation) is answered without
    /// running it, and one that `check` accepts is remembered (see [`SigMemo`]).
    /// A value is remembered as validly signed whichever check accepted it: use
    /// this for values that have one check (one signer and domain).
    pub fn verify_held<T: Send + Sync + 'static>(
        &self,
        value: &Arc<T>,
        check: impl FnOnce(&SigCheck) -> Result<(), SignatureError>,
    ) -> Result<(), SignatureError> {
        let SigCheck::Shared(memo) = self else {
            return check(self);
        };
        let address = Arc::as_ptr(value) as *const () as usize;
        if memo
            .valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .held
            .contains(&address)
        {
            return Ok(());
        }
        check(self)?;
        let mut valid = memo.valid.lock().unwrap_or_else(PoisonError::into_inner);
        if valid.kept.len() >= SIG_MEMO_MAX {
            valid.held.clear();
            valid.kept.clear();
        }
        if valid.held.insert(address) {
            valid.kept.push(value.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_value_is_checked_once_through_a_memo_and_always_directly() {
        let key = NodeKey::from_seed([1; 32]);
        let sig = key.sign(b"d", b"hello");
        let value = Arc::new((b"hello".to_vec(), sig));
        let runs = std::cell::Cell::new(0);
        let check = |c: &SigCheck, v: &Arc<(Vec<u8>, [u8; 64])>| {
            c.verify_held(v, |c| {
                runs.set(runs.get() + 1);
                c.verify(&key.node_id(), b"d", &v.0, &v.1)
            })
        };
        let memo = SigCheck::Shared(SigMemo::new());
        check(&memo, &value).unwrap();
        check(&memo, &value).unwrap();
        assert_eq!(
            runs.get(),
            1,
            "the same allocation is answered from the memo"
        );
        // Another allocation with the same contents is checked (its bytes are
        // then found in the memo's keys).
        check(&memo, &Arc::new((*value).clone())).unwrap();
        assert_eq!(runs.get(), 2);
        // A bad signature is checked, and refused, every time.
        let bad = Arc::new((b"hellO".to_vec(), sig));
        for _ in 0..2 {
            assert!(check(&memo, &bad).is_err());
        }
        assert_eq!(runs.get(), 4, "a refused value is not remembered");
        // Direct: every time.
        check(&SigCheck::Direct, &value).unwrap();
        check(&SigCheck::Direct, &value).unwrap();
        assert_eq!(runs.get(), 6);
    }

    #[test]
    fn a_shared_memo_answers_as_a_direct_check_and_remembers_only_valid_signatures() {
        let key = NodeKey::from_seed([1; 32]);
        let other = NodeKey::from_seed([2; 32]);
        let sig = key.sign(b"d", b"hello");
        let memo = SigMemo::new();
        let check = SigCheck::Shared(memo.clone());
        for _ in 0..2 {
            check.verify(&key.node_id(), b"d", b"hello", &sig).unwrap();
            assert_eq!(memo.len(), 1, "a valid signature is remembered once");
            // The same signature under another signer, domain or message, and a
            // flipped bit, fail every time and are never remembered.
            assert!(
                check
                    .verify(&other.node_id(), b"d", b"hello", &sig)
                    .is_err()
            );
            assert!(check.verify(&key.node_id(), b"e", b"hello", &sig).is_err());
            assert!(check.verify(&key.node_id(), b"d", b"hellO", &sig).is_err());
            let mut bad = sig;
            bad[5] ^= 1;
            assert!(check.verify(&key.node_id(), b"d", b"hello", &bad).is_err());
            assert_eq!(memo.len(), 1);
        }
        assert!(
            SigCheck::Direct
                .verify(&key.node_id(), b"d", b"hellO", &sig)
                .is_err()
        );
    }

    #[test]
    fn signatures_bind_key_domain_and_message() {
        let key = NodeKey::from_seed([1; 32]);
        let other = NodeKey::from_seed([2; 32]);
        let sig = key.sign(b"d1", b"hello");
        verify(&key.node_id(), b"d1", b"hello", &sig).unwrap();
        assert!(
            verify(&key.node_id(), b"d2", b"hello", &sig).is_err(),
            "domain separation"
        );
        assert!(verify(&key.node_id(), b"d1", b"hellp", &sig).is_err());
        assert!(verify(&other.node_id(), b"d1", b"hello", &sig).is_err());
        assert_eq!(
            verify(&key.node_id(), b"d1", b"hello", &sig[..10]),
            Err(SignatureError::Length(10))
        );
        assert_eq!(NodeKey::from_seed(key.seed()).node_id(), key.node_id());
    }
}
