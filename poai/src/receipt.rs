//! Receipts and verifications: what a worker and a verifier sign.
//!
//! A [`Receipt`] is a worker's signed statement "on backend B, model M turned
//! these inputs, batched like this, into these outputs". A [`Verification`] is a
//! verifier's signed statement "I re-ran that receipt and got these outputs". Both
//! are encoded through the codec and signed with the node's ed25519 key under a
//! domain of their own; their hashes (SHA-256 of the signed encoding) name them.
//!
//! Digests of inputs and outputs are over the items in batch order, each prefixed
//! by its length ([`items_digest`]), so a re-execution compares whole batches and
//! a reordering is a different batch.

use plexus_actors::NodeId;
use plexus_actors::codec;
use plexus_vocab::identity::{self, NodeKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The receipt format version.
pub const RECEIPT_VERSION: u16 = 1;
/// Longest job, executor, backend name or backend version string.
pub const NAME_BYTES_MAX: usize = 128;
/// Largest batch a receipt may describe.
pub const BATCH_MAX: u32 = 65_536;
/// Largest encoded receipt or verification accepted from a peer.
pub const MESSAGE_BYTES_MAX: usize = 4_096;

const RECEIPT_DOMAIN: &[u8] = b"plexus-poai-receipt-v1";
const VERIFICATION_DOMAIN: &[u8] = b"plexus-poai-verification-v1";

/// What computed a result: the things that fix its output bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Backend {
    /// The backend (`flex`, `wgpu`).
    pub name: String,
    /// Its version (`burn 0.22.0`).
    pub version: String,
}

/// What a node re-executes on, for the verifier draw: the first bytes of a digest
/// of a [`Backend`]'s name and version. Only nodes whose engines have the receipt's
/// class are drawn to verify it, since only they can reproduce its bytes.
pub type BackendClass = [u8; 8];

const CLASS_DOMAIN: &[u8] = b"plexus-poai-backend-v1";

impl Backend {
    /// Its class.
    pub fn class(&self) -> BackendClass {
        let d = Sha256::new()
            .chain_update(CLASS_DOMAIN)
            .chain_update((self.name.len() as u64).to_be_bytes())
            .chain_update(self.name.as_bytes())
            .chain_update(self.version.as_bytes())
            .finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        out
    }
}

/// A class as text (16 lowercase hex digits), as nodes advertise it in the
/// `backend` tag of their membership metadata.
pub fn class_text(class: &BackendClass) -> String {
    class.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`class_text`]; `None` for anything else.
pub fn parse_class(text: &str) -> Option<BackendClass> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A worker's signed statement about one executed batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// [`RECEIPT_VERSION`].
    pub version: u16,
    /// The network (SHA-256 of its name, as the checkpoints use).
    pub network: [u8; 32],
    /// The epoch the batch ran in.
    pub epoch: u64,
    /// The node that ran it (the signer).
    pub worker: NodeId,
    /// The worker's batch number in this epoch: one receipt per `(worker, epoch,
    /// seq)`; two different receipts with one number are an equivocation.
    pub seq: u64,
    /// The job.
    pub job: String,
    /// The executor (its durable key).
    pub executor: String,
    /// The model's weights, by content hash.
    pub model: Digest,
    /// [`items_digest`] of the batch's inputs, in batch order.
    pub inputs: Digest,
    /// [`items_digest`] of the batch's outputs, in batch order.
    pub outputs: Digest,
    /// Items in the batch.
    pub batch: u32,
    /// What computed it.
    pub backend: Backend,
    /// When the batch started, Unix microseconds (informational).
    pub started_us: u64,
    /// How long it took, microseconds (informational).
    pub took_us: u64,
}

/// A receipt and the worker's signature over its encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// ed25519 by `receipt.worker`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A verifier's signed statement about its re-execution of one receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The network.
    pub network: [u8; 32],
    /// The receipt's epoch.
    pub epoch: u64,
    /// The receipt, by [`SignedReceipt::hash`].
    pub receipt: Digest,
    /// The receipt's worker.
    pub worker: NodeId,
    /// The verifier (the signer).
    pub verifier: NodeId,
    /// What the verifier's re-execution produced ([`items_digest`]); `None` when
    /// the worker did not hand over inputs matching its receipt.
    pub outputs: Option<Digest>,
}

/// A verification and the verifier's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVerification {
    /// The verification.
    pub verification: Verification,
    /// ed25519 by `verification.verifier`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a receipt or verification was refused. The signer's or sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// It does not encode (only for values built in this process).
    #[error("cannot encode")]
    Encode,
    /// Another format version.
    #[error("receipt version {0} is not supported (this build reads {RECEIPT_VERSION})")]
    Version(u16),
    /// A field over its bound or empty where it must not be.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The signature is not the claimed signer's.
    #[error(transparent)]
    Signature(#[from] identity::SignatureError),
}

fn sha256(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The digest of a batch's items (inputs or outputs), in order: SHA-256 over a
/// domain, the item count, and each item's length and bytes.
pub fn items_digest<T: AsRef<[u8]>>(items: &[T]) -> Digest {
    let mut h = Sha256::new();
    h.update(b"plexus-poai-items-v1");
    h.update((items.len() as u64).to_be_bytes());
    for item in items {
        let item = item.as_ref();
        h.update((item.len() as u64).to_be_bytes());
        h.update(item);
    }
    h.finalize().into()
}

fn short(s: &str) -> bool {
    s.len() <= NAME_BYTES_MAX
}

impl Receipt {
    fn body(&self) -> Result<Vec<u8>, ReceiptError> {
        codec::encode_body(self).map_err(|_| ReceiptError::Encode)
    }

    /// Checks the bounds a peer's receipt must keep.
    pub fn check(&self) -> Result<(), ReceiptError> {
        if self.version != RECEIPT_VERSION {
            return Err(ReceiptError::Version(self.version));
        }
        if !(short(&self.job)
            && short(&self.executor)
            && short(&self.backend.name)
            && short(&self.backend.version))
        {
            return Err(ReceiptError::Malformed("a name is too long"));
        }
        if self.batch == 0 || self.batch > BATCH_MAX {
            return Err(ReceiptError::Malformed("batch size out of range"));
        }
        Ok(())
    }

    /// Signs the receipt with the worker's key (`key` must be `worker`'s).
    pub fn sign(self, key: &NodeKey) -> Result<SignedReceipt, ReceiptError> {
        self.check()?;
        let signature = key.sign(RECEIPT_DOMAIN, &self.body()?).to_vec();
        Ok(SignedReceipt {
            receipt: self,
            signature,
        })
    }
}

impl SignedReceipt {
    /// Checks the bounds and the worker's signature.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        self.receipt.check()?;
        identity::verify(
            &self.receipt.worker,
            RECEIPT_DOMAIN,
            &self.receipt.body()?,
            &self.signature,
        )?;
        Ok(())
    }

    /// The receipt's name: SHA-256 of its signed encoding.
    pub fn hash(&self) -> Result<Digest, ReceiptError> {
        let bytes = codec::encode_body(self).map_err(|_| ReceiptError::Encode)?;
        Ok(sha256(&[RECEIPT_DOMAIN, &bytes]))
    }

    /// Encodes for the wire.
    pub fn encode(&self) -> Result<Vec<u8>, ReceiptError> {
        codec::encode(self).map_err(|_| ReceiptError::Encode)
    }

    /// Decodes a peer's bytes (bounded); the signature is not checked here.
    pub fn decode(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode_with_limit(bytes, MESSAGE_BYTES_MAX)
    }
}

impl Verification {
    fn body(&self) -> Result<Vec<u8>, ReceiptError> {
        codec::encode_body(self).map_err(|_| ReceiptError::Encode)
    }

    /// Signs with the verifier's key.
    pub fn sign(self, key: &NodeKey) -> Result<SignedVerification, ReceiptError> {
        let signature = key.sign(VERIFICATION_DOMAIN, &self.body()?).to_vec();
        Ok(SignedVerification {
            verification: self,
            signature,
        })
    }
}

impl SignedVerification {
    /// Checks the verifier's signature.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        identity::verify(
            &self.verification.verifier,
            VERIFICATION_DOMAIN,
            &self.verification.body()?,
            &self.signature,
        )?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(i: u8) -> NodeKey {
        NodeKey::from_seed([i; 32])
    }

    #[test]
    fn backend_classes_separate_backends_and_round_trip_as_text() {
        let b = |name: &str, version: &str| Backend {
            name: name.into(),
            version: version.into(),
        };
        let flex = b("flex", "burn 0.22.0");
        assert_eq!(flex.class(), b("flex", "burn 0.22.0").class());
        assert_ne!(flex.class(), b("flex", "burn 0.22.1").class());
        assert_ne!(flex.class(), b("wgpu", "burn 0.22.0").class());
        // The name's length is hashed: moving bytes between the parts changes it.
        assert_ne!(b("ab", "c").class(), b("a", "bc").class());
        let text = class_text(&flex.class());
        assert_eq!(text.len(), 16);
        assert_eq!(parse_class(&text), Some(flex.class()));
        for junk in [
            "",
            "00",
            "+0000000000000000",
            "+000000000000000",
            "zz00000000000000",
            "é0000000000000",
        ] {
            assert_eq!(parse_class(junk), None, "{junk}");
        }
    }

    pub(crate) fn receipt(
        worker: &NodeKey,
        epoch: u64,
        seq: u64,
        outputs: Digest,
    ) -> SignedReceipt {
        Receipt {
            version: RECEIPT_VERSION,
            network: [1; 32],
            epoch,
            worker: worker.node_id(),
            seq,
            job: "digits".into(),
            executor: "digits/infer/0".into(),
            model: [2; 32],
            inputs: items_digest(&[seq.to_be_bytes()]),
            outputs,
            batch: 1,
            backend: Backend {
                name: "flex".into(),
                version: "burn 0.22.0".into(),
            },
            started_us: 0,
            took_us: 10,
        }
        .sign(worker)
        .unwrap()
    }

    #[test]
    fn receipts_verify_and_any_change_breaks_them() {
        let w = key(1);
        let r = receipt(&w, 3, 0, [9; 32]);
        assert_eq!(r.verify(), Ok(()));
        let bytes = r.encode().unwrap();
        assert_eq!(SignedReceipt::decode(&bytes).unwrap(), r);
        let mut bent = r.clone();
        bent.receipt.outputs[0] ^= 1;
        assert!(matches!(bent.verify(), Err(ReceiptError::Signature(_))));
        assert_ne!(bent.hash().unwrap(), r.hash().unwrap());
        // Signed by another key than the worker it names.
        let mut stolen = r.clone();
        stolen.receipt.worker = key(2).node_id();
        assert!(stolen.verify().is_err());
        let mut big = r.receipt.clone();
        big.job = "x".repeat(NAME_BYTES_MAX + 1);
        assert!(matches!(big.sign(&w), Err(ReceiptError::Malformed(_))));
        let mut empty = r.receipt;
        empty.batch = 0;
        assert!(matches!(empty.check(), Err(ReceiptError::Malformed(_))));
        assert!(SignedReceipt::decode(&[0xFF; 8]).is_err());
    }

    #[test]
    fn item_digests_see_order_and_boundaries() {
        let a = items_digest(&[b"ab".as_slice(), b"c".as_slice()]);
        assert_ne!(a, items_digest(&[b"a".as_slice(), b"bc".as_slice()]));
        assert_ne!(a, items_digest(&[b"c".as_slice(), b"ab".as_slice()]));
        assert_eq!(a, items_digest(&[b"ab".to_vec(), b"c".to_vec()]));
    }

    #[test]
    fn verifications_bind_the_verifier() {
        let v = Verification {
            network: [1; 32],
            epoch: 1,
            receipt: [3; 32],
            worker: key(1).node_id(),
            verifier: key(2).node_id(),
            outputs: Some([4; 32]),
        };
        let signed = v.clone().sign(&key(2)).unwrap();
        assert_eq!(signed.verify(), Ok(()));
        let forged = v.sign(&key(3)).unwrap();
        assert!(forged.verify().is_err());
    }
}
