//! Permissioned admission: the network's allowlist, signed by its governance key.
//!
//! The allowlist names every node that may join (its public key, operator and tags)
//! and every client key that may submit jobs. It is a versioned document signed by
//! the network's governance key; nodes pin that key from the allowlist they start
//! with and accept an update only if it is signed by the same key, names the same
//! network, and carries a higher version. There are no shared secrets: admission is
//! a public-key check on the identity proven by the transport handshake.
//!
//! [`Republish`] is the policy for gossiping the allowlist in force: when it is due
//! and how often it may go out.

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_actors::codec::{self, CodecError};
use plexus_actors::{NodeId, Time};
use serde::{Deserialize, Serialize};

use plexus_vocab::identity::{self, NodeKey, SignatureError};
use plexus_vocab::resources::{Resources, Tags};

/// Signature domain for allowlists.
const DOMAIN: &[u8] = b"plexus/allowlist/v1";

/// Largest allowlist accepted, encoded (bounds memory and gossip).
pub const ALLOWLIST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One admitted node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Who runs it.
    pub operator: String,
    /// Tags such as `region=eu` or `kyc`.
    pub tags: Tags,
    /// Resources the operator declared.
    pub declared: Resources,
}

/// One client key allowed to submit jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitterEntry {
    /// Who holds the key.
    pub name: String,
}

/// The allowlist document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowlist {
    /// The network's name; updates for another network are refused.
    pub network: String,
    /// The governance public key that signs this document.
    pub governance: NodeId,
    /// Bumped by every change.
    pub version: u64,
    /// Admitted nodes.
    pub nodes: BTreeMap<NodeId, NodeEntry>,
    /// Keys allowed to submit jobs.
    pub submitters: BTreeMap<NodeId, SubmitterEntry>,
}

/// An allowlist with the governance signature over its encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAllowlist {
    /// The document.
    pub allowlist: Allowlist,
    /// ed25519 signature by `allowlist.governance`.
    pub signature: Vec<u8>,
}

/// Why an allowlist or an update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowlistError {
    /// The bytes are not an allowlist.
    #[error("allowlist does not decode: {0}")]
    Codec(#[from] CodecError),
    /// The signature is missing or wrong (forged or corrupted).
    #[error("allowlist signature invalid: {0}")]
    Signature(#[from] SignatureError),
    /// Signed by a different governance key than the one this node trusts.
    #[error("allowlist is governed by {found}, but this node trusts {trusted}")]
    WrongGovernance {
        /// The key in the update.
        found: NodeId,
        /// The pinned key.
        trusted: NodeId,
    },
    /// For another network.
    #[error("allowlist is for network `{found}`, not `{expected}`")]
    WrongNetwork {
        /// The update's network.
        found: String,
        /// This node's network.
        expected: String,
    },
    /// Not newer than what this node has.
    #[error("allowlist version {found} is not newer than {current}")]
    Stale {
        /// The update's version.
        found: u64,
        /// The version held.
        current: u64,
    },
    /// The signing key is not the document's governance key.
    #[error("the signing key {0} is not this network's governance key")]
    NotGovernance(NodeId),
}

impl Allowlist {
    /// An empty allowlist, version 1.
    pub fn new(network: &str, governance: NodeId) -> Self {
        Self {
            network: network.to_string(),
            governance,
            version: 1,
            nodes: BTreeMap::new(),
            submitters: BTreeMap::new(),
        }
    }
}

impl SignedAllowlist {
    /// Signs `allowlist` with the governance key.
    pub fn sign(allowlist: Allowlist, key: &NodeKey) -> Result<Self, AllowlistError> {
        if key.node_id() != allowlist.governance {
            return Err(AllowlistError::NotGovernance(key.node_id()));
        }
        let body = codec::encode_body(&allowlist)?;
        Ok(Self {
            signature: key.sign(DOMAIN, &body).to_vec(),
            allowlist,
        })
    }

    /// Checks the signature against the document's own governance key.
    pub fn verify(&self) -> Result<(), AllowlistError> {
        let body = codec::encode_body(&self.allowlist)?;
        identity::verify(&self.allowlist.governance, DOMAIN, &body, &self.signature)?;
        Ok(())
    }

    /// Encodes as a codec frame (the on-disk and gossip form).
    pub fn encode(&self) -> Result<Vec<u8>, AllowlistError> {
        Ok(codec::encode(self)?)
    }

    /// Decodes and verifies.
    pub fn decode(bytes: &[u8]) -> Result<Self, AllowlistError> {
        let signed: SignedAllowlist = codec::decode_with_limit(bytes, ALLOWLIST_BYTES_MAX)?;
        signed.verify()?;
        Ok(signed)
    }
}

/// A node's admission state: the allowlist it trusts now.
#[derive(Clone, Debug)]
pub struct Admission {
    current: SignedAllowlist,
}

impl Admission {
    /// Trusts `signed` (its governance key becomes the pinned key) if it verifies.
    pub fn new(signed: SignedAllowlist) -> Result<Self, AllowlistError> {
        signed.verify()?;
        Ok(Self { current: signed })
    }

    /// The allowlist in force.
    pub fn current(&self) -> &SignedAllowlist {
        &self.current
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        self.current.allowlist.version
    }

    /// Whether `node` may be part of the network.
    pub fn admits(&self, node: &NodeId) -> bool {
        self.current.allowlist.nodes.contains_key(node)
    }

    /// Whether `key` may submit jobs.
    pub fn may_submit(&self, key: &NodeId) -> bool {
        self.current.allowlist.submitters.contains_key(key)
    }

    /// The entry of an admitted node.
    pub fn entry(&self, node: &NodeId) -> Option<&NodeEntry> {
        self.current.allowlist.nodes.get(node)
    }

    /// Applies an update: same governance key, same network, newer version, valid
    /// signature. Returns the nodes it removed (to disconnect).
    pub fn apply_update(&mut self, update: SignedAllowlist) -> Result<Vec<NodeId>, AllowlistError> {
        let trusted = self.current.allowlist.governance;
        if update.allowlist.governance != trusted {
            return Err(AllowlistError::WrongGovernance {
                found: update.allowlist.governance,
                trusted,
            });
        }
        if update.allowlist.network != self.current.allowlist.network {
            return Err(AllowlistError::WrongNetwork {
                found: update.allowlist.network.clone(),
                expected: self.current.allowlist.network.clone(),
            });
        }
        if update.allowlist.version <= self.current.allowlist.version {
            return Err(AllowlistError::Stale {
                found: update.allowlist.version,
                current: self.current.allowlist.version,
            });
        }
        update.verify()?;
        let removed = self
            .current
            .allowlist
            .nodes
            .keys()
            .filter(|n| !update.allowlist.nodes.contains_key(n))
            .copied()
            .collect();
        self.current = update;
        Ok(removed)
    }
}

/// Least time between two publications of the allowlist.
pub const PUBLISH_SPACING: Duration = Duration::from_secs(2);

/// When to gossip the allowlist in force, sans-IO (run by
/// [`crate::cluster::Cluster`]).
///
/// A publication is due when this node published an update itself, when a gossip
/// peer subscribed (it may have missed earlier ones), and when a member advertises
/// an older allowlist version than this node's. A due publication is attempted at
/// most once per [`PUBLISH_SPACING`], and again every `PUBLISH_SPACING` until the
/// driver reports one went out (gossip drops a publication while it has no peers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Republish {
    due: bool,
    last: Option<Time>,
}

impl Republish {
    /// Makes a publication due.
    pub fn request(&mut self) {
        self.due = true;
    }

    /// Whether a publication is due (possibly waiting out the spacing).
    pub fn is_due(&self) -> bool {
        self.due
    }

    /// Whether to attempt a publication now; if so the attempt is counted from
    /// `now`.
    pub fn poll(&mut self, now: Time) -> bool {
        if !self.due || self.last.is_some_and(|t| now < t + PUBLISH_SPACING) {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// The driver's report on an attempt: `sent` if gossip took the document (or
    /// already had it).
    pub fn published(&mut self, sent: bool) {
        if sent {
            self.due = false;
        }
    }

    /// When [`Republish::poll`] next says yes, if a publication is due.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.due
            .then(|| self.last.map_or(Time::ZERO, |t| t + PUBLISH_SPACING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The allowlist decoder's fuzz target: junk and corrupted documents are
        /// refused with an error, never a panic, and never accepted.
        #[test]
        fn arbitrary_and_corrupted_documents_are_refused(junk in proptest::collection::vec(any::<u8>(), 0..256),
                                                         flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..6)) {
            let _ = SignedAllowlist::decode(&junk);
            let a = NodeKey::from_seed([1; 32]).node_id();
            let original = signed(3, &[a]).encode().unwrap();
            let mut bytes = original.clone();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            // Two flips of one byte by the same value undo each other.
            prop_assume!(bytes != original);
            prop_assert!(SignedAllowlist::decode(&bytes).is_err(), "a corrupted allowlist was accepted");
        }
    }

    fn gov() -> NodeKey {
        NodeKey::from_seed([9; 32])
    }

    fn entry() -> NodeEntry {
        NodeEntry {
            operator: "op".into(),
            tags: Tags::new(),
            declared: Resources::default(),
        }
    }

    fn signed(version: u64, nodes: &[NodeId]) -> SignedAllowlist {
        let mut list = Allowlist::new("net", gov().node_id());
        list.version = version;
        for n in nodes {
            list.nodes.insert(*n, entry());
        }
        SignedAllowlist::sign(list, &gov()).unwrap()
    }

    #[test]
    fn sign_encode_decode_verify() {
        let a = NodeKey::from_seed([1; 32]).node_id();
        let s = signed(1, &[a]);
        let bytes = s.encode().unwrap();
        let back = SignedAllowlist::decode(&bytes).unwrap();
        assert_eq!(back, s);
        let adm = Admission::new(back).unwrap();
        assert!(adm.admits(&a));
        assert!(!adm.admits(&NodeKey::from_seed([2; 32]).node_id()));
    }

    #[test]
    fn tampering_and_unsigned_documents_are_refused() {
        let a = NodeKey::from_seed([1; 32]).node_id();
        let mut s = signed(1, &[]);
        s.allowlist.nodes.insert(a, entry()); // added after signing
        assert!(matches!(s.verify(), Err(AllowlistError::Signature(_))));
        assert!(matches!(
            Admission::new(s),
            Err(AllowlistError::Signature(_))
        ));
        let mut unsigned = signed(1, &[a]);
        unsigned.signature.clear();
        assert!(matches!(
            Admission::new(unsigned),
            Err(AllowlistError::Signature(SignatureError::Length(0)))
        ));
        // Signing with a key that is not the document's governance key.
        let list = Allowlist::new("net", gov().node_id());
        assert!(matches!(
            SignedAllowlist::sign(list, &NodeKey::from_seed([3; 32])),
            Err(AllowlistError::NotGovernance(_))
        ));
        assert!(SignedAllowlist::decode(b"junk").is_err());
    }

    #[test]
    fn updates_must_be_newer_same_network_same_governance() {
        let a = NodeKey::from_seed([1; 32]).node_id();
        let b = NodeKey::from_seed([2; 32]).node_id();
        let mut adm = Admission::new(signed(2, &[a, b])).unwrap();
        assert_eq!(
            adm.apply_update(signed(2, &[a])),
            Err(AllowlistError::Stale {
                found: 2,
                current: 2
            })
        );
        assert_eq!(
            adm.apply_update(signed(1, &[a])),
            Err(AllowlistError::Stale {
                found: 1,
                current: 2
            })
        );
        // A forged update: same content, signed by another key posing as governance.
        let rogue = NodeKey::from_seed([7; 32]);
        let mut forged = Allowlist::new("net", rogue.node_id());
        forged.version = 10;
        let forged = SignedAllowlist::sign(forged, &rogue).unwrap();
        assert!(matches!(
            adm.apply_update(forged),
            Err(AllowlistError::WrongGovernance { .. })
        ));
        let mut other_net = Allowlist::new("other", gov().node_id());
        other_net.version = 10;
        let other_net = SignedAllowlist::sign(other_net, &gov()).unwrap();
        assert!(matches!(
            adm.apply_update(other_net),
            Err(AllowlistError::WrongNetwork { .. })
        ));
        // A newer version with a bad signature.
        let mut bad = signed(5, &[a]);
        bad.signature[0] ^= 1;
        assert!(matches!(
            adm.apply_update(bad),
            Err(AllowlistError::Signature(_))
        ));
        assert_eq!(adm.version(), 2);
        // A good update removes b.
        assert_eq!(adm.apply_update(signed(3, &[a])).unwrap(), vec![b]);
        assert!(!adm.admits(&b));
        assert_eq!(adm.version(), 3);
    }

    #[test]
    fn republish_is_spaced_and_retried_until_sent() {
        let mut r = Republish::default();
        assert!(!r.poll(Time::ZERO), "nothing due");
        assert_eq!(r.poll_timeout(), None);
        r.request();
        assert!(r.poll(Time::from_millis(10)));
        assert!(!r.poll(Time::from_millis(11)), "spaced");
        r.published(false);
        let retry = Time::from_millis(10) + PUBLISH_SPACING;
        assert_eq!(r.poll_timeout(), Some(retry));
        assert!(!r.poll(retry - Duration::from_micros(1)));
        assert!(r.poll(retry), "retried after a failed attempt");
        r.published(true);
        assert!(!r.is_due());
        assert_eq!(r.poll_timeout(), None);
        assert!(!r.poll(retry + PUBLISH_SPACING));
    }
}
