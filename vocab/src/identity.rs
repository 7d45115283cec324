//! Keys and signatures. Pure: key generation takes a seed from the caller, which in
//! production comes from the OS (see the driver's `keystore`).
//!
//! Every signature is over `domain || 0x00 || message`, so a signature made for one
//! purpose (an allowlist, a job submission) can never be replayed as another.

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

#[cfg(test)]
mod tests {
    use super::*;

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
