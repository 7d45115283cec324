//! Everything durable actors say to each other, as one enum carried by the mesh
//! (a tell to the durable service of the receiving node).
//!
//! Decoding goes through [`decode`], which bounds the input and never panics
//! (`tests::arbitrary_bytes_never_panic`).

pub use bytes::Bytes;
use plexus_actors::NodeId;
use plexus_actors::codec::{self, CodecError};
use plexus_actors::envelope::TraceContext;
use serde::{Deserialize, Serialize};

use crate::patch::RecordPatch;
use crate::types::{Ballot, DurableKey, Record, ReplicaSet, SenderId};

/// Most a peer-supplied ballot round may exceed the highest round the receiver
/// knows for the key. Honest activations go one round above what they have seen, so
/// they never come near it; a node that claims more is refused, so it takes a liar
/// at least 2^32 accepted messages, each one attributable to it (a ballot names
/// its node), to push a key's round to `u64::MAX`.
pub const BALLOT_STEP_MAX: u64 = 1 << 32;

/// Whether `ballot` is at most [`BALLOT_STEP_MAX`] rounds above `known`.
pub fn ballot_step_ok(ballot: Ballot, known: Ballot) -> bool {
    ballot.round <= known.round.saturating_add(BALLOT_STEP_MAX)
}

/// Why a node refused a message. The sending node is at fault (it is admitted, but
/// said something it may not say); the message changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A field naming the message's origin names another node than the one the
    /// transport authenticated.
    #[error("the message says it is from {claimed}, but {sender} sent it")]
    ForgedOrigin {
        /// The node the message names.
        claimed: NodeId,
        /// The authenticated sender.
        sender: NodeId,
    },
    /// A ballot the sender uses as its own belongs to another node.
    #[error("ballot {ballot} is not the sender {sender}'s")]
    ForeignBallot {
        /// The ballot.
        ballot: Ballot,
        /// The authenticated sender.
        sender: NodeId,
    },
    /// A ballot more than [`BALLOT_STEP_MAX`] rounds above the highest known.
    #[error("ballot {ballot} is too far above {known}")]
    BallotStep {
        /// The ballot.
        ballot: Ballot,
        /// The highest the receiver knows for the key.
        known: Ballot,
    },
    /// A replica reply from a node that was not asked (not in the replica sets
    /// the activation sent to).
    #[error("{sender} is not a replica this activation asked")]
    NotReplica {
        /// The authenticated sender.
        sender: NodeId,
    },
    /// A handoff, a handoff reply or a release from a node that does not hold
    /// the actor (or is not the migration's target).
    #[error("{sender} does not hold the actor")]
    NotHolder {
        /// The authenticated sender.
        sender: NodeId,
    },
    /// An ack, nack or redirect from a node the stream did not send to.
    #[error("{sender} is not where the stream sends")]
    NotStreamPeer {
        /// The authenticated sender.
        sender: NodeId,
    },
    /// A counter (sequence number) beyond what the receiver could have sent.
    #[error("sequence number {got} beyond {max}")]
    CounterRange {
        /// The number claimed.
        got: u64,
        /// The most it could be.
        max: u64,
    },
    /// A command from a node other than this one and the scheduler's host.
    #[error("{sender} may not command this node")]
    NotCommander {
        /// The authenticated sender.
        sender: NodeId,
    },
}

/// Largest encoded message accepted (a handoff carries a snapshot and queued
/// messages).
pub const MSG_BYTES_MAX: usize = crate::STATE_BYTES_MAX + (1 << 20);

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DurableMsg {
    /// A request to a replica.
    Replica {
        /// Where to answer.
        from: NodeId,
        /// Echoed in the reply.
        req: u64,
        /// The actor.
        key: DurableKey,
        /// What to do.
        op: ReplicaOp,
    },
    /// A replica's answer.
    ReplicaReply {
        /// The replica.
        from: NodeId,
        /// The request's number.
        req: u64,
        /// The actor.
        key: DurableKey,
        /// The answer.
        reply: ReplicaReply,
    },
    /// A message to a durable actor.
    Envelope(Envelope),
    /// A durable actor committed messages from a sender.
    Ack(Ack),
    /// A durable actor asks a sender to resend from `expected`.
    Nack(Nack),
    /// A durable actor is elsewhere (or nowhere known).
    Redirect(Redirect),
    /// Live migration: the source hands the actor to the target.
    Handoff(Handoff),
    /// The target's answer to a handoff.
    HandoffReply {
        /// The actor.
        key: DurableKey,
        /// The migration's number.
        migration: u64,
        /// The target.
        from: NodeId,
        /// The target's ballot once active, or why it refused.
        result: Result<Ballot, String>,
    },
    /// An order from the scheduler to a node.
    Command(Command),
    /// Live migration, before the handoff: the source asks the target, a
    /// replica holding the last committed record, to restore the user code from
    /// its own copy and keep it aside (a warm standby) while the actor goes on
    /// serving at the source. The handoff that follows then names that record and
    /// the pause holds no decode and no restore (see [`crate::activation`]).
    Prepare(Prepare),
    /// The target's answer to a [`DurableMsg::Prepare`].
    Prepared {
        /// The actor.
        key: DurableKey,
        /// The migration's number.
        migration: u64,
        /// The target.
        from: NodeId,
        /// The record its standby holds, or why it holds none.
        result: Result<(Ballot, u64), String>,
    },
}

/// The source's request for a warm standby ([`DurableMsg::Prepare`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prepare {
    /// The actor.
    pub key: DurableKey,
    /// The migration's number (echoed in the answer and the handoff).
    pub migration: u64,
    /// The source.
    pub from: NodeId,
    /// The record to restore from: the source's last committed one, written
    /// under its own ballot.
    pub order: (Ballot, u64),
    /// What the actor runs (opaque to the core).
    #[serde(with = "serde_bytes")]
    pub spec: Vec<u8>,
}

/// Operations on a replica's slot for one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaOp {
    /// Promise to refuse ballots below `ballot`, and return the record if it is newer
    /// than `have`.
    Fence {
        /// The fencing ballot.
        ballot: Ballot,
        /// The newest record the fencer holds already (a handoff's), if any.
        have: Option<(Ballot, u64)>,
    },
    /// Store a record.
    Write {
        /// The record (its ballot must not be below the promise).
        record: Record,
    },
    /// Store a record given as a patch of the stored one (see [`crate::patch`]).
    /// A replica that does not hold the patch's base, or whose rebuilt body does
    /// not match the digest, answers [`ReplicaReply::WantWhole`].
    Patch {
        /// The record, as a patch.
        patch: RecordPatch,
    },
    /// Is `ballot` still the highest promise? Changes nothing. An idle activation
    /// asks this now and then, so that one superseded while it had nothing to
    /// commit finds out and steps down.
    Check {
        /// The asking activation's ballot.
        ballot: Ballot,
    },
    /// Forget the key (its job stopped).
    Drop {
        /// Must not be below the promise.
        ballot: Ballot,
    },
}

impl ReplicaOp {
    /// The ballot the request is made under.
    pub fn ballot(&self) -> Ballot {
        match self {
            ReplicaOp::Fence { ballot, .. }
            | ReplicaOp::Check { ballot }
            | ReplicaOp::Drop { ballot } => *ballot,
            ReplicaOp::Write { record } => record.ballot,
            ReplicaOp::Patch { patch } => patch.ballot,
        }
    }

    /// The same, to rewrite (the simulator's and the tests' liars do).
    pub fn ballot_mut(&mut self) -> &mut Ballot {
        match self {
            ReplicaOp::Fence { ballot, .. }
            | ReplicaOp::Check { ballot }
            | ReplicaOp::Drop { ballot } => ballot,
            ReplicaOp::Write { record } => &mut record.ballot,
            ReplicaOp::Patch { patch } => &mut patch.ballot,
        }
    }
}

/// A replica's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaReply {
    /// The fence holds. `record` is the stored record if it is newer than what the
    /// fencer has; `order` is the stored record's order either way.
    Promised {
        /// The ballot the promise is for (replies are matched on it, not only on
        /// the request number, so a stale reply can never count for a new request).
        ballot: Ballot,
        /// The record, when newer than the fencer's.
        record: Option<Record>,
        /// The stored record's `(ballot, version)`.
        order: Option<(Ballot, u64)>,
        /// blake3 of the stored record's body when `record` is not returned: a
        /// migration target checks the record a handoff brought against it, so a
        /// node cannot hand over a state the replicas do not hold.
        digest: Option<[u8; 32]>,
    },
    /// The record `(ballot, version)` is stored.
    Written {
        /// Its ballot.
        ballot: Ballot,
        /// Its version.
        version: u64,
    },
    /// The replica cannot rebuild the patched record `(ballot, version)` from what
    /// it holds: send the [`ReplicaOp::Write`].
    WantWhole {
        /// The patch's ballot.
        ballot: Ballot,
        /// Its version.
        version: u64,
    },
    /// The key is forgotten.
    Dropped,
    /// No promise above the checked ballot.
    Holds,
    /// A higher ballot holds the slot; the request's activation is superseded.
    Refused {
        /// The promise in force.
        promised: Ballot,
    },
    /// The replica could not use its storage; counts as no answer.
    Failed(String),
}

/// A message to a durable actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The receiving actor.
    pub to: DurableKey,
    /// The sender.
    pub from: SenderId,
    /// The node where the sender takes acks now.
    pub reply_to: NodeId,
    /// The sender's sequence number for this receiver, from 1.
    pub seq: u64,
    /// The encoded message.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The sender's trace context.
    pub trace: Option<TraceContext>,
    /// How many times nodes forwarded it; dropped past [`HOPS_MAX`].
    pub hops: u8,
    /// The newest ballot of the receiver the sender has heard from (in an ack or a
    /// redirect). An activation under a lower ballot is stale: a newer one has
    /// committed since, so it steps down instead of answering.
    pub ballot: Ballot,
}

/// Most forwards an envelope may take before it is dropped (its sender resends).
pub const HOPS_MAX: u8 = 4;

/// A receiver committed a sender's messages up to `up_to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The receiving actor.
    pub key: DurableKey,
    /// The sender being acknowledged.
    pub to: SenderId,
    /// Every message up to this sequence number is committed.
    pub up_to: u64,
    /// Replies to acknowledged messages that produced one, by sequence number.
    pub replies: Vec<(u64, Reply)>,
    /// The ballot of the activation that committed them.
    pub ballot: Ballot,
}

/// A reply to one message: what the actor returned, or why it failed the message.
/// The bytes are shared, so a batch's replies can be slices of one buffer; on the
/// wire they are a byte string, as `serde_bytes::ByteBuf` was.
pub type Reply = Result<Bytes, String>;

/// Resend from `expected` (after `retry_after_ms`, when the receiver is busy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    /// The receiving actor.
    pub key: DurableKey,
    /// The sender.
    pub to: SenderId,
    /// The next sequence number the receiver takes.
    pub expected: u64,
    /// Wait this long before resending.
    pub retry_after_ms: u32,
}

/// Where a durable actor is now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Redirect {
    /// The actor.
    pub key: DurableKey,
    /// The sender being told.
    pub to: SenderId,
    /// Its host, with the ballot it runs under; `None`: not here, look it up again.
    pub node: Option<(NodeId, Ballot)>,
}

/// The source's half of a live migration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// The actor.
    pub key: DurableKey,
    /// The migration's number (echoed in the reply).
    pub migration: u64,
    /// The source.
    pub from: NodeId,
    /// The source's last committed record, whole or by reference.
    pub record: HandedRecord,
    /// The replica set that record is committed to.
    pub set: ReplicaSet,
    /// What the actor runs (opaque to the core; the node driver reads it).
    #[serde(with = "serde_bytes")]
    pub spec: Vec<u8>,
    /// Messages the source had accepted but not applied, in arrival order.
    pub queued: Vec<Envelope>,
}

impl HandedRecord {
    /// The ballot the record was written under.
    pub fn ballot(&self) -> Ballot {
        match self {
            HandedRecord::Whole(r) => r.ballot,
            HandedRecord::Held { order } => order.0,
        }
    }
}

/// The record a handoff names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HandedRecord {
    /// The record itself (the target is not known to hold it).
    Whole(Record),
    /// The record `(ballot, version)`, which the target holds as a replica (it
    /// acknowledged writing it): the target restores from its own copy, so the
    /// pause does not carry the state across the network.
    Held {
        /// The record's order.
        order: (Ballot, u64),
    },
}

/// What the scheduler orders a node to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Host this actor (restoring it from its replicas); a no-op if it runs here.
    Activate {
        /// The actor.
        key: DurableKey,
        /// Every replica set that may hold its newest record (the last one is where
        /// it commits from now on).
        sets: Vec<ReplicaSet>,
        /// What it runs.
        #[serde(with = "serde_bytes")]
        spec: Vec<u8>,
    },
    /// Move this actor, live, to `to`.
    Migrate {
        /// The actor.
        key: DurableKey,
        /// The target node.
        to: NodeId,
    },
    /// Commit from now on to `set` (after copying the state there).
    Reconfigure {
        /// The actor.
        key: DurableKey,
        /// The new replica set.
        set: ReplicaSet,
    },
    /// Stop this actor for good and drop its replicas.
    Release {
        /// The actor.
        key: DurableKey,
    },
}

impl Command {
    /// The actor the command is about.
    pub fn key(&self) -> &DurableKey {
        match self {
            Command::Activate { key, .. }
            | Command::Migrate { key, .. }
            | Command::Reconfigure { key, .. }
            | Command::Release { key } => key,
        }
    }
}

impl DurableMsg {
    /// The actor a message is about.
    pub fn key(&self) -> &DurableKey {
        match self {
            DurableMsg::Replica { key, .. }
            | DurableMsg::ReplicaReply { key, .. }
            | DurableMsg::HandoffReply { key, .. } => key,
            DurableMsg::Envelope(e) => &e.to,
            DurableMsg::Ack(a) => &a.key,
            DurableMsg::Nack(n) => &n.key,
            DurableMsg::Redirect(r) => &r.key,
            DurableMsg::Handoff(h) => &h.key,
            DurableMsg::Command(c) => c.key(),
            DurableMsg::Prepare(p) => &p.key,
            DurableMsg::Prepared { key, .. } => key,
        }
    }
}

/// Encodes a message as a codec body.
pub fn encode(msg: &DurableMsg) -> Result<Vec<u8>, CodecError> {
    codec::encode_body(msg)
}

/// Decodes a message body, refusing anything over [`MSG_BYTES_MAX`].
pub fn decode(bytes: &[u8]) -> Result<DurableMsg, CodecError> {
    codec::decode_body(bytes, MSG_BYTES_MAX)
}

/// [`decode`] from shared bytes: a record's body in the message (a handoff's, a
/// write's, a fence reply's) is a slice of `bytes`, not a copy.
pub fn decode_shared(bytes: &codec::Bytes) -> Result<DurableMsg, CodecError> {
    codec::decode_body_shared(bytes, MSG_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> DurableKey {
        DurableKey::new(s).unwrap()
    }

    fn samples() -> Vec<DurableMsg> {
        let node = NodeId::synthetic(1);
        let ballot = Ballot { round: 3, node };
        let set = ReplicaSet::new(vec![node, NodeId::synthetic(2)]).unwrap();
        let env = Envelope {
            to: key("j/s/0"),
            from: SenderId::Client(7),
            reply_to: node,
            seq: 9,
            payload: vec![1, 2, 3],
            trace: None,
            hops: 0,
            ballot,
        };
        vec![
            DurableMsg::Replica {
                from: node,
                req: 1,
                key: key("a"),
                op: ReplicaOp::Fence { ballot, have: None },
            },
            DurableMsg::ReplicaReply {
                from: node,
                req: 1,
                key: key("a"),
                reply: ReplicaReply::Refused { promised: ballot },
            },
            DurableMsg::Replica {
                from: node,
                req: 2,
                key: key("a"),
                op: ReplicaOp::Patch {
                    patch: RecordPatch {
                        ballot,
                        version: 7,
                        set: set.clone(),
                        base: (ballot, 6),
                        patch: crate::patch::diff(b"abcdef", b"abXdef"),
                        digest: [7; 32],
                    },
                },
            },
            DurableMsg::ReplicaReply {
                from: node,
                req: 2,
                key: key("a"),
                reply: ReplicaReply::WantWhole { ballot, version: 7 },
            },
            DurableMsg::Envelope(env.clone()),
            DurableMsg::Ack(Ack {
                key: key("a"),
                to: SenderId::Actor(key("b")),
                up_to: 4,
                replies: vec![(4, Ok(Bytes::from(vec![1])))],
                ballot,
            }),
            DurableMsg::Handoff(Handoff {
                key: key("a"),
                migration: 2,
                from: node,
                record: HandedRecord::Whole(Record {
                    ballot,
                    version: 5,
                    set: set.clone(),
                    body: vec![0; 10].into(),
                }),
                set: set.clone(),
                spec: vec![],
                queued: vec![env.clone()],
            }),
            DurableMsg::Handoff(Handoff {
                key: key("a"),
                migration: 3,
                from: node,
                record: HandedRecord::Held { order: (ballot, 6) },
                set: set.clone(),
                spec: vec![],
                queued: vec![env],
            }),
            DurableMsg::Command(Command::Activate {
                key: key("a"),
                sets: vec![set],
                spec: vec![1],
            }),
            DurableMsg::Prepare(Prepare {
                key: key("a"),
                migration: 4,
                from: node,
                order: (ballot, 6),
                spec: vec![1, 2],
            }),
            DurableMsg::Prepared {
                key: key("a"),
                migration: 4,
                from: node,
                result: Ok((ballot, 6)),
            },
            DurableMsg::Prepared {
                key: key("a"),
                migration: 4,
                from: node,
                result: Err("no".into()),
            },
        ]
    }

    #[test]
    fn messages_round_trip() {
        for msg in samples() {
            let bytes = encode(&msg).unwrap();
            assert_eq!(decode(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn a_reply_is_the_byte_string_it_was() {
        // Replies were `serde_bytes::ByteBuf`; nodes of either build read each other's.
        for len in [0usize, 1, 40, 250, 251, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let now: Reply = Ok(Bytes::from(data.clone()));
            let before: Result<serde_bytes::ByteBuf, String> =
                Ok(serde_bytes::ByteBuf::from(data.clone()));
            let bytes = codec::encode_body(&now).unwrap();
            assert_eq!(bytes, codec::encode_body(&before).unwrap());
            let back: Reply = codec::decode_body(&bytes, MSG_BYTES_MAX).unwrap();
            assert_eq!(back, now);
        }
    }

    #[test]
    fn a_record_body_is_shared_from_the_message_and_on_the_wire_as_before() {
        // Bodies were `Vec<u8>` under `serde_bytes`; the encoding is unchanged.
        #[derive(Serialize)]
        struct Before {
            ballot: Ballot,
            version: u64,
            set: ReplicaSet,
            #[serde(with = "serde_bytes")]
            body: Vec<u8>,
        }
        let node = NodeId::synthetic(1);
        let ballot = Ballot { round: 3, node };
        let set = ReplicaSet::single(node);
        let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let record = Record {
            ballot,
            version: 5,
            set: set.clone(),
            body: body.clone().into(),
        };
        let before = Before {
            ballot,
            version: 5,
            set,
            body,
        };
        assert_eq!(
            codec::encode_body(&record).unwrap(),
            codec::encode_body(&before).unwrap()
        );
        let msg = DurableMsg::Replica {
            from: node,
            req: 4,
            key: key("a"),
            op: ReplicaOp::Write { record },
        };
        let frame = Bytes::from(encode(&msg).unwrap());
        let shared = decode_shared(&frame).unwrap();
        assert_eq!(shared, msg);
        let DurableMsg::Replica {
            op: ReplicaOp::Write { record },
            ..
        } = shared
        else {
            panic!("a write decodes as a write");
        };
        let inside = frame.as_ptr_range();
        assert!(
            inside.contains(&record.body.as_ptr()),
            "the body is a slice of the frame"
        );
        // A plain decode copies.
        let DurableMsg::Replica {
            op: ReplicaOp::Write { record },
            ..
        } = decode(&frame).unwrap()
        else {
            panic!("a write decodes as a write");
        };
        assert!(!inside.contains(&record.body.as_ptr()));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(i in 0usize..6, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = encode(&samples()[i]).unwrap();
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            let _ = decode(&bytes);
        }
    }
}
