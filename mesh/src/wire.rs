//! What crosses a mesh stream: [`Frame`]s, encoded by the codec (one versioned frame
//! each, length-delimited on the stream). [`decode_frame`] is the only way in; it is
//! fuzzed (`tests::arbitrary_bytes_never_panic`) and every failure is a typed error.

use std::sync::Arc;

use plexus_actors::ActorId;
use plexus_actors::codec::{self, Bytes, CodecError};
pub use plexus_actors::envelope::{Failure, TraceContext};
use serde::{Deserialize, Serialize};

use crate::membership::{Probe, Statement};
use crate::registry::Claim;

/// Largest frame a node sends or accepts on a mesh stream (8 MiB). A bigger body
/// crosses as [`DataBody::Chunk`]s (see [`crate::delivery`]), up to
/// `DeliveryConfig::message_bytes_max`.
pub const MESH_FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// One unit on a mesh stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Membership and registry traffic.
    Control(ControlPacket),
    /// Actor traffic.
    Data(DataFrame),
    /// Acknowledgement of data frames.
    Ack(AckFrame),
    /// The sender closed a link (it went idle with everything acknowledged).
    Close(CloseFrame),
}

/// A membership message with piggybacked gossip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlPacket {
    /// The protocol message.
    pub probe: Probe,
    /// Member updates riding along.
    pub members: Vec<Statement>,
    /// Registry claims riding along (the full registry with a sync).
    pub claims: Vec<Claim>,
}

/// One sequenced data frame on the link from its sender to its receiver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataFrame {
    /// The sender's session (its incarnation): a new session restarts the sequence.
    pub session: u64,
    /// The link epoch within the session: each link the sender opens, to whichever
    /// peer, has a higher one than the last (a rebuilt link, after the receiver was
    /// declared dead or the link went idle); restarts the sequence too.
    pub epoch: u64,
    /// Position on the link, from 1.
    pub seq: u64,
    /// What to deliver.
    #[serde(deserialize_with = "arc_new")]
    pub body: Arc<DataBody>,
}

/// Reads a body straight into its `Arc` (serde's own impl reads a `Box` and
/// moves it into a second allocation).
fn arc_new<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Arc<DataBody>, D::Error> {
    DataBody::deserialize(deserializer).map(Arc::new)
}

/// Actor traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataBody {
    /// A one-way message.
    Tell {
        /// The receiving actor.
        target: ActorId,
        /// The message type's wire name; a mismatch is refused.
        message_type: String,
        /// The encoded message: a byte string on the wire, and a slice of the
        /// received frame once decoded (no copy).
        #[serde(with = "codec::shared_bytes")]
        payload: Bytes,
        /// The sender's trace context.
        trace: Option<TraceContext>,
    },
    /// A request; the reply comes back as [`DataBody::Reply`] with the same `corr`.
    Ask {
        /// The receiving actor.
        target: ActorId,
        /// The message type's wire name.
        message_type: String,
        /// The encoded message: a byte string on the wire, and a slice of the
        /// received frame once decoded (no copy).
        #[serde(with = "codec::shared_bytes")]
        payload: Bytes,
        /// Correlates the reply, unique per asking node and session.
        corr: u64,
        /// The sender's trace context.
        trace: Option<TraceContext>,
    },
    /// The answer to an ask.
    Reply {
        /// The ask's `corr`.
        corr: u64,
        /// The encoded reply, or why there is none.
        #[serde(with = "reply_bytes")]
        result: Result<Vec<u8>, Failure>,
    },
    /// A piece of a body too large for one frame: the delivery core splits the
    /// encoded body into consecutive frames of one link and joins them back, in
    /// order, before anything is delivered. Never handed to a driver.
    Chunk {
        /// This piece of the encoded body (a slice of the received frame).
        #[serde(with = "codec::shared_bytes")]
        bytes: Bytes,
        /// Whether the body ends with this piece.
        last: bool,
    },
}

/// The size [`DataBody::size_bytes`] gives a tell or an ask of `message_type` and
/// `payload`, for callers that account for one before building it.
pub fn request_size_bytes(message_type: &str, payload: &[u8]) -> usize {
    64 + payload.len() + message_type.len()
}

impl DataBody {
    /// Approximate size, for window accounting.
    pub fn size_bytes(&self) -> usize {
        match self {
            DataBody::Tell {
                payload,
                message_type,
                ..
            }
            | DataBody::Ask {
                payload,
                message_type,
                ..
            } => request_size_bytes(message_type, payload),
            DataBody::Reply {
                result: Ok(bytes), ..
            } => 64 + bytes.len(),
            DataBody::Reply { result: Err(_), .. } => 128,
            DataBody::Chunk { bytes, .. } => 64 + bytes.len(),
        }
    }
}

/// Cumulative acknowledgement of a link, with the frames that were refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AckFrame {
    /// The data sender's session being acknowledged.
    pub session: u64,
    /// Its link epoch.
    pub epoch: u64,
    /// Every frame up to and including this seq has an outcome.
    pub up_to: u64,
    /// Frames among those that were refused, and why.
    pub refused: Vec<(u64, Failure)>,
    /// The acknowledging node's session: a change tells the sender the receiver
    /// restarted and forgot the link.
    pub receiver: u64,
}

/// A sender's word that its link is closed: nothing after `up_to` comes in this
/// `(session, epoch)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseFrame {
    /// The sender's session.
    pub session: u64,
    /// The closed link's epoch.
    pub epoch: u64,
    /// Its last seq, acknowledged.
    pub up_to: u64,
}

/// Encodes a frame.
pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    codec::encode(frame)
}

/// Decodes a frame of at most `max` bytes. Payloads and chunks come out as
/// slices of `bytes`, not copies.
pub fn decode_frame(bytes: &Bytes, max: usize) -> Result<Frame, CodecError> {
    codec::decode_shared_with_limit(bytes, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberState, MemberUpdate};
    use plexus_actors::NodeId;
    use proptest::prelude::*;

    /// Epochs were 32 bits: the codec's variable-length integers give a 64-bit one
    /// the same bytes for every value a 32-bit one could hold.
    #[test]
    fn epochs_widened_to_64_bits_keep_their_wire_form() {
        #[derive(Serialize)]
        struct Before {
            session: u64,
            epoch: u32,
            seq: u64,
        }
        #[derive(Serialize)]
        struct After {
            session: u64,
            epoch: u64,
            seq: u64,
        }
        for epoch in [0u32, 1, 250, 251, 65_535, 65_536, u32::MAX] {
            let before = codec::encode_body(&Before {
                session: 3,
                epoch,
                seq: 9,
            })
            .unwrap();
            let after = codec::encode_body(&After {
                session: 3,
                epoch: epoch.into(),
                seq: 9,
            })
            .unwrap();
            assert_eq!(before, after, "epoch {epoch}");
        }
    }

    fn samples() -> Vec<Frame> {
        let a = ActorId::new(NodeId::synthetic(1), 2);
        vec![
            Frame::Control(ControlPacket {
                probe: Probe::PingReq {
                    seq: 3,
                    target: NodeId::synthetic(4),
                },
                members: vec![Arc::new(MemberUpdate {
                    id: NodeId::synthetic(2),
                    incarnation: 9,
                    state: MemberState::Suspect,
                    meta: None,
                    sig: Default::default(),
                })],
                claims: vec![Claim {
                    name: "n".into(),
                    node: NodeId::synthetic(2),
                    actor: a,
                    lamport: 1,
                    rank: 0,
                    version: 2,
                    removed: false,
                    sig: Default::default(),
                }],
            }),
            Frame::Data(DataFrame {
                session: 5,
                epoch: 1,
                seq: 77,
                body: Arc::new(DataBody::Ask {
                    target: a,
                    message_type: "m".into(),
                    payload: Bytes::from_static(&[1, 2, 3]),
                    corr: 8,
                    trace: Some(TraceContext {
                        trace_id: [1; 16],
                        span_id: [2; 8],
                        flags: 1,
                    }),
                }),
            }),
            Frame::Ack(AckFrame {
                session: 5,
                epoch: 1,
                up_to: 77,
                refused: vec![(70, Failure::MailboxFull)],
                receiver: 9,
            }),
            Frame::Close(CloseFrame {
                session: 5,
                epoch: 1 << 40,
                up_to: 77,
            }),
            Frame::Data(DataFrame {
                session: 5,
                epoch: 1,
                seq: 78,
                body: Arc::new(DataBody::Chunk {
                    bytes: Bytes::from_static(&[7; 40]),
                    last: true,
                }),
            }),
        ]
    }

    /// A data frame of one link carrying `body`.
    fn data(body: DataBody) -> Frame {
        Frame::Data(DataFrame {
            session: 1,
            epoch: 1,
            seq: 1,
            body: Arc::new(body),
        })
    }

    #[test]
    fn a_chunk_is_a_byte_string_on_the_wire() {
        let frame = |n: usize| {
            data(DataBody::Chunk {
                bytes: Bytes::from(vec![0xFF; n]),
                last: false,
            })
        };
        let small = encode_frame(&frame(0)).unwrap().len();
        let big = encode_frame(&frame(100_000)).unwrap().len();
        // One length prefix and the raw bytes, not one varint per element.
        assert!(big - small <= 100_000 + 8, "{small} then {big}");
        let encoded = Bytes::from(encode_frame(&frame(100_000)).unwrap());
        let decoded = decode_frame(&encoded, MESH_FRAME_BYTES_MAX).unwrap();
        assert_eq!(decoded, frame(100_000));
        // The decoded chunk is a slice of the received frame, not a copy.
        let Frame::Data(DataFrame { body, .. }) = decoded else {
            panic!("a data frame")
        };
        let DataBody::Chunk { bytes, .. } = &*body else {
            panic!("a chunk")
        };
        let within = encoded.as_ptr_range();
        assert!(within.contains(&bytes.as_ptr()), "the chunk was copied");
    }

    #[test]
    fn payloads_are_slices_of_the_frame_and_small_ones_in_large_frames_copies() {
        let tell = |n: usize, type_len: usize| {
            data(DataBody::Tell {
                target: ActorId::new(plexus_actors::NodeId::synthetic(1), 2),
                message_type: "m".repeat(type_len),
                payload: Bytes::from(vec![0x5A; n]),
                trace: None,
            })
        };
        let short = codec::SHARE_MIN_BYTES - 1;
        for (n, type_len, shared) in [
            (10 << 10, 1, true),
            // A small frame is shared by its payload, however short.
            (short, 1, true),
            (10, 1, true),
            // A short payload in a frame over the bound is copied.
            (short, codec::SHARE_INPUT_MAX_BYTES, false),
        ] {
            let encoded = Bytes::from(encode_frame(&tell(n, type_len)).unwrap());
            let decoded = decode_frame(&encoded, MESH_FRAME_BYTES_MAX).unwrap();
            assert_eq!(decoded, tell(n, type_len));
            let Frame::Data(DataFrame { body, .. }) = decoded else {
                panic!("a data frame")
            };
            let DataBody::Tell { payload, .. } = &*body else {
                panic!("a tell")
            };
            let within = encoded.as_ptr_range();
            assert_eq!(
                within.contains(&payload.as_ptr()),
                shared,
                "{n} bytes in a frame of {}",
                encoded.len()
            );
        }
    }

    #[test]
    fn frames_round_trip_and_truncations_fail() {
        for frame in samples() {
            let bytes = Bytes::from(encode_frame(&frame).unwrap());
            assert_eq!(decode_frame(&bytes, MESH_FRAME_BYTES_MAX).unwrap(), frame);
            for cut in 0..bytes.len() {
                assert!(decode_frame(&bytes.slice(..cut), MESH_FRAME_BYTES_MAX).is_err());
            }
            assert!(matches!(
                decode_frame(&bytes, 4),
                Err(CodecError::Oversized { .. })
            ));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// The mesh decoder's fuzz target: arbitrary bytes, and valid frames with
        /// random corruption, never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&Bytes::from(bytes), MESH_FRAME_BYTES_MAX);
        }

        #[test]
        fn corrupted_frames_never_panic(which in 0usize..4, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = encode_frame(&samples()[which]).unwrap();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            let _ = decode_frame(&Bytes::from(bytes), MESH_FRAME_BYTES_MAX);
        }
    }
}

/// Encodes a reply's bytes as a byte string.
mod reply_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Failure;

    #[derive(Serialize)]
    enum Out<'a> {
        Ok(&'a serde_bytes::Bytes),
        Err(&'a Failure),
    }

    #[derive(Deserialize)]
    enum In {
        Ok(serde_bytes::ByteBuf),
        Err(Failure),
    }

    pub fn serialize<S: Serializer>(
        value: &Result<Vec<u8>, Failure>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Ok(bytes) => Out::Ok(serde_bytes::Bytes::new(bytes)),
            Err(f) => Out::Err(f),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Result<Vec<u8>, Failure>, D::Error> {
        Ok(match In::deserialize(d)? {
            In::Ok(bytes) => Ok(bytes.into_vec()),
            In::Err(f) => Err(f),
        })
    }
}
