//! The vocabulary of durable actors: keys, senders, ballots, replica sets, records.

use std::fmt;
use std::sync::Arc;

use plexus_actors::NodeId;
use plexus_actors::codec::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest durable key, in bytes.
pub const KEY_BYTES_MAX: usize = 256;

/// The name of a durable actor, cluster-wide and for its whole life, wherever it
/// runs: `job/stage/replica` for pipeline stages, `plexus/scheduler` for the
/// scheduler. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurableKey(Arc<str>);

/// Why text is not a durable key. The caller supplied it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Empty, or longer than [`KEY_BYTES_MAX`].
    #[error("a durable key must be 1..={KEY_BYTES_MAX} bytes, not {0}")]
    Length(usize),
    /// Holds whitespace or control characters.
    #[error("durable key `{0}` holds whitespace or control characters")]
    Characters(String),
}

impl DurableKey {
    /// Validates `text` as a key.
    pub fn new(text: &str) -> Result<Self, KeyError> {
        if text.is_empty() || text.len() > KEY_BYTES_MAX {
            return Err(KeyError::Length(text.len()));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeyError::Characters(text.escape_debug().to_string()));
        }
        Ok(Self(Arc::from(text)))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name under which the active instance is registered in the cluster
    /// registry.
    pub fn registry_name(&self) -> String {
        format!("durable:{}", self.0)
    }
}

impl fmt::Display for DurableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DurableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl std::str::FromStr for DurableKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::new(s)
    }
}

impl Serialize for DurableKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DurableKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DurableKey::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Who sent a message to a durable actor. Per-sender sequence numbers give
/// per-sender FIFO and deduplication.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SenderId {
    /// Another durable actor (its output stream survives its crashes and moves).
    Actor(DurableKey),
    /// A client session (an HTTP client, the demo's traffic generator); the number
    /// is chosen at random by the client.
    Client(u64),
}

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderId::Actor(k) => write!(f, "actor:{k}"),
            SenderId::Client(c) => write!(f, "client:{c:016x}"),
        }
    }
}

/// A ballot: which activation of a durable actor owns it. Every activation picks a
/// ballot higher than any it has seen; replicas refuse writes from lower ones, so
/// at most one activation can commit at a time. The node breaks ties, so two nodes
/// never pick the same ballot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// Compared first.
    pub round: u64,
    /// The activating node.
    pub node: NodeId,
}

impl Ballot {
    /// Below every real ballot.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId::ZERO,
    };

    /// The next ballot for `node` above `seen`.
    pub fn above(seen: Ballot, node: NodeId) -> Ballot {
        Ballot {
            round: seen.round.saturating_add(1),
            node,
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.round, self.node.short())
    }
}

/// The nodes that keep a durable actor's snapshots: sorted, no duplicates, not
/// empty. A commit needs a majority of them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ReplicaSet(Vec<NodeId>);

/// Most replicas one actor may have.
pub const REPLICAS_MAX: usize = 7;

impl ReplicaSet {
    /// A set of `nodes` (sorted, deduplicated). `None` if empty or above
    /// [`REPLICAS_MAX`].
    pub fn new(mut nodes: Vec<NodeId>) -> Option<Self> {
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() || nodes.len() > REPLICAS_MAX {
            return None;
        }
        Some(Self(nodes))
    }

    /// A set of one node.
    pub fn single(node: NodeId) -> Self {
        Self(vec![node])
    }

    /// The members.
    pub fn nodes(&self) -> &[NodeId] {
        &self.0
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.0.binary_search(node).is_ok()
    }

    /// How many replies make a majority.
    pub fn quorum(&self) -> usize {
        self.0.len() / 2 + 1
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (a set is not empty); here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for ReplicaSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let nodes = Vec::<NodeId>::deserialize(d)?;
        let len = nodes.len();
        ReplicaSet::new(nodes).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "a replica set has 1..={REPLICAS_MAX} members, not {len}"
            ))
        })
    }
}

/// One committed (or attempted) state of a durable actor, as the replicas keep it.
/// `(ballot, version)` orders records: a later ballot's records supersede an
/// earlier one's, and within a ballot the higher version wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The activation that wrote it.
    pub ballot: Ballot,
    /// That activation's commit counter.
    pub version: u64,
    /// The replica set the record commits to. A fencer that restores this record
    /// from another set follows it there, so state a reconfiguration moved is
    /// always found (see [`crate::activation`]).
    pub set: ReplicaSet,
    /// The encoded [`crate::activation::DurableState`]. Shared, not copied: a
    /// store's cache, a fence reply and an activation's base hold one buffer, and a
    /// record decoded through [`plexus_actors::codec::decode_body_shared`] is a
    /// slice of its message. On the wire, the byte string `serde_bytes` writes.
    #[serde(with = "plexus_actors::codec::shared_bytes")]
    pub body: Bytes,
}

impl Record {
    /// The order key.
    pub fn order(&self) -> (Ballot, u64) {
        (self.ballot, self.version)
    }
}

/// Rendezvous (highest-random-weight) choice of `count` nodes for `key`: stable
/// under membership change, in that adding or removing a node moves only the keys
/// whose choice it was.
pub fn rendezvous(key: &str, nodes: &[NodeId], count: usize) -> Vec<NodeId> {
    let mut scored: Vec<([u8; 32], NodeId)> = nodes
        .iter()
        .map(|n| {
            let mut h = blake3::Hasher::new();
            h.update(key.as_bytes());
            h.update(&n.to_bytes());
            (*h.finalize().as_bytes(), *n)
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(count).map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::codec;

    #[test]
    fn keys_validate() {
        assert!(DurableKey::new("job/stage/0").is_ok());
        assert_eq!(DurableKey::new(""), Err(KeyError::Length(0)));
        assert!(matches!(
            DurableKey::new("a b"),
            Err(KeyError::Characters(_))
        ));
        assert!(DurableKey::new(&"x".repeat(KEY_BYTES_MAX + 1)).is_err());
        let k = DurableKey::new("a/b").unwrap();
        let bytes = codec::encode_body(&k).unwrap();
        assert_eq!(codec::decode_body::<DurableKey>(&bytes, 1024).unwrap(), k);
        let bad = codec::encode_body(&"a\nb").unwrap();
        assert!(codec::decode_body::<DurableKey>(&bad, 1024).is_err());
    }

    #[test]
    fn ballots_order_by_round_then_node() {
        let a = Ballot::above(Ballot::ZERO, NodeId::synthetic(5));
        let b = Ballot::above(Ballot::ZERO, NodeId::synthetic(6));
        assert!(Ballot::ZERO < a && a < b);
        assert!(b < Ballot::above(a, NodeId::synthetic(1)));
    }

    #[test]
    fn replica_sets_sort_and_count_a_majority() {
        let s = ReplicaSet::new(vec![
            NodeId::synthetic(3),
            NodeId::synthetic(1),
            NodeId::synthetic(3),
        ])
        .unwrap();
        assert_eq!(s.nodes(), &[NodeId::synthetic(1), NodeId::synthetic(3)]);
        assert_eq!(s.quorum(), 2);
        assert_eq!(
            ReplicaSet::new((0..3).map(NodeId::synthetic).collect())
                .unwrap()
                .quorum(),
            2
        );
        assert!(ReplicaSet::new(vec![]).is_none());
        let empty = codec::encode_body(&Vec::<NodeId>::new()).unwrap();
        assert!(codec::decode_body::<ReplicaSet>(&empty, 1024).is_err());
        let too_many: Vec<NodeId> = (0..=REPLICAS_MAX as u64).map(NodeId::synthetic).collect();
        let too_many = codec::encode_body(&too_many).unwrap();
        assert!(codec::decode_body::<ReplicaSet>(&too_many, 1024).is_err());
    }

    #[test]
    fn rendezvous_is_stable_when_other_nodes_come_and_go() {
        let nodes: Vec<NodeId> = (0..10).map(NodeId::synthetic).collect();
        let pick = rendezvous("k", &nodes, 3);
        assert_eq!(pick.len(), 3);
        let others: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|n| !pick.contains(n))
            .take(4)
            .chain(pick.iter().copied())
            .collect();
        assert_eq!(rendezvous("k", &others, 3), pick);
    }
}
