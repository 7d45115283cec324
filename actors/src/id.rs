//! Identities: [`NodeId`] names a node, [`ActorId`] names an actor for its whole life.
//!
//! A `NodeId` is the node's ed25519 public key. Its text form is the libp2p
//! `PeerId` of that key (base58 of the identity multihash of the protobuf-encoded
//! key), so operators see one name everywhere. This module computes that form
//! itself so that the core stays free of libp2p; the mesh driver tests that both agree.
//!
//! An `ActorId` is `(origin node, local number)`. It is minted once, on the node that
//! first spawns the actor, and it never changes: a supervised restart or a live
//! migration keeps the id, and only the actor's *location* (which node hosts it now)
//! changes. Uniqueness holds because each node mints local numbers from its own
//! monotonic counter and node ids are public keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Protobuf prefix of an ed25519 `PublicKey` message (`KeyType = Ed25519`, 32-byte data),
/// wrapped in an identity multihash (`0x00`, length 36). This is how libp2p spells a
/// `PeerId` for an ed25519 key.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A node's identity: its ed25519 public key.
///
/// Held as four big-endian 64-bit words rather than 32 bytes: node ids key most of the
/// cores' maps, and comparing four integers is several times cheaper than a `memcmp`
/// call. The order is the order of the key bytes; the encoded form is the 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u64; 4]);

/// Binary formats (the codec) carry the 32 key bytes; human-readable ones (JSON for
/// the API, TOML) the PeerId text.
impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.to_bytes().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(NodeId::from_public_key(<[u8; 32]>::deserialize(
                deserializer,
            )?))
        }
    }
}

impl NodeId {
    /// The all-zero key: no node has it (it is not a valid ed25519 point), so it
    /// serves as the least id in orders and "nobody" in ballots.
    pub const ZERO: NodeId = NodeId([0; 4]);

    /// Wraps the 32 bytes of an ed25519 public key.
    pub fn from_public_key(bytes: [u8; 32]) -> Self {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        Self([w(0), w(1), w(2), w(3)])
    }

    /// The raw public key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, w) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The key as four words (the first eight bytes big-endian in the first word,
    /// and so on): what the id's order compares, for hashing without a copy.
    pub fn words(&self) -> [u64; 4] {
        self.0
    }

    /// The index of a [`NodeId::synthetic`] id.
    pub fn synthetic_index(&self) -> u64 {
        self.0[0]
    }

    /// A synthetic id for tests and the simulator: the index in the first eight
    /// bytes, the rest zero. It is never a valid curve point in practice, so it
    /// cannot collide with a real node's key.
    pub fn synthetic(index: u64) -> Self {
        Self([index, 0, 0, 0xff])
    }

    /// The libp2p `PeerId` text form of this key (`12D3KooW...`).
    pub fn to_peer_id_string(&self) -> String {
        let mut buf = [0u8; 38];
        buf[..6].copy_from_slice(&PEER_ID_PREFIX);
        buf[6..].copy_from_slice(&self.to_bytes());
        bs58::encode(buf).into_string()
    }

    /// A short form for logs: the last 8 characters of the PeerId text.
    pub fn short(&self) -> String {
        let s = self.to_peer_id_string();
        s[s.len().saturating_sub(8)..].to_string()
    }
}

/// Why a text could not be read as a [`NodeId`] or [`ActorId`]. The caller supplied it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdParseError {
    /// Not base58.
    #[error("not a PeerId: {0} is not base58")]
    NotBase58(String),
    /// Base58, but not the PeerId of an ed25519 key.
    #[error("not the PeerId of an ed25519 key: {0}")]
    NotEd25519(String),
    /// An actor id must read `PEER_ID/NUMBER`.
    #[error("not an actor id (expected PEER_ID/NUMBER): {0}")]
    NotActorId(String),
}

impl FromStr for NodeId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = bs58::decode(s)
            .into_vec()
            .map_err(|_| IdParseError::NotBase58(s.to_string()))?;
        if bytes.len() != 38 || bytes[..6] != PEER_ID_PREFIX {
            return Err(IdParseError::NotEd25519(s.to_string()));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[6..]);
        Ok(Self::from_public_key(key))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_peer_id_string())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// A globally unique, location-independent actor identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorId {
    /// The node that minted the id. Not necessarily where the actor runs now.
    pub origin: NodeId,
    /// The minting node's counter value; never reused on that node.
    pub local: u64,
}

impl ActorId {
    /// Builds an id. Only a node's own id allocator should mint new ones.
    pub const fn new(origin: NodeId, local: u64) -> Self {
        Self { origin, local }
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.origin, self.local)
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({}/{})", self.origin.short(), self.local)
    }
}

impl FromStr for ActorId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (node, local) = s
            .split_once('/')
            .ok_or_else(|| IdParseError::NotActorId(s.to_string()))?;
        let origin = node.parse()?;
        let local = local
            .parse()
            .map_err(|_| IdParseError::NotActorId(s.to_string()))?;
        Ok(Self { origin, local })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn node_ids_are_bytes_on_the_wire_and_peer_ids_in_json() {
        let id = NodeId::synthetic(7);
        let bin = crate::codec::encode_body(&id).unwrap();
        assert_eq!(bin, id.to_bytes().to_vec(), "32 raw bytes in the codec");
        let back: NodeId = crate::codec::decode_body(&bin, 64).unwrap();
        assert_eq!(back, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NodeId>("\"not a peer id\"").is_err());
    }

    use super::*;

    #[test]
    fn node_id_text_round_trips_and_looks_like_a_peer_id() {
        let id = NodeId::from_public_key([7u8; 32]);
        let text = id.to_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert_ne!(NodeId::from_public_key([8u8; 32]).to_string(), text);
    }

    #[test]
    fn node_ids_order_as_their_bytes() {
        let mut ids: Vec<NodeId> = (0..64u8)
            .map(|i| {
                let mut b = [0u8; 32];
                b[(i % 32) as usize] = i.wrapping_mul(37);
                b[31 - (i % 32) as usize] ^= i;
                NodeId::from_public_key(b)
            })
            .collect();
        let mut by_bytes = ids.clone();
        by_bytes.sort_by_key(|a| a.to_bytes());
        ids.sort();
        assert_eq!(ids, by_bytes);
    }

    #[test]
    fn actor_id_text_round_trips() {
        let id = ActorId::new(NodeId::synthetic(3), 42);
        let parsed: ActorId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
    }

    #[test]
    fn bad_ids_are_typed_errors() {
        assert!(matches!(
            "0OIl".parse::<NodeId>(),
            Err(IdParseError::NotBase58(_))
        ));
        assert!(matches!(
            "abc".parse::<NodeId>(),
            Err(IdParseError::NotEd25519(_))
        ));
        assert!(matches!(
            "nope".parse::<ActorId>(),
            Err(IdParseError::NotActorId(_))
        ));
        let node = NodeId::synthetic(1).to_string();
        assert!(matches!(
            format!("{node}/x").parse::<ActorId>(),
            Err(IdParseError::NotActorId(_))
        ));
    }
}
