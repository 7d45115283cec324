//! Messages and how they cross the wire.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::NodeId;
use crate::codec::{self, Bytes, CodecError};

/// A message an actor accepts. Every message has a reply type; `tell` discards the
/// reply, `ask` returns it. Use an enum for several operations and an enum reply
/// if they answer differently.
pub trait Message: Send + Sized + 'static {
    /// What handling the message returns to an asker.
    type Reply: Send + 'static;

    /// How the message and its reply are encoded to reach an actor on another node.
    /// `None` (the default) keeps actors of this message type local-only; set it to
    /// `Some(Wire::serde())` for serde types.
    const WIRE: Option<Wire<Self>> = None;
}

/// Encoders for a message type and its reply, through [`crate::codec`].
pub struct Wire<M: Message> {
    /// A name for the message type; a frame naming another type is refused.
    pub type_name: fn() -> &'static str,
    /// Encodes a message as a codec body.
    pub encode: fn(&M) -> Result<Bytes, CodecError>,
    /// Decodes a message body. It is shared: a decoder may keep slices of it
    /// (see [`codec::shared_bytes`]) instead of copying.
    pub decode: fn(&Bytes) -> Result<M, CodecError>,
    /// Encodes a reply body.
    pub encode_reply: fn(&M::Reply) -> Result<Vec<u8>, CodecError>,
    /// Decodes a reply body.
    pub decode_reply: fn(&[u8]) -> Result<M::Reply, CodecError>,
}

impl<M: Message> Clone for Wire<M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M: Message> Copy for Wire<M> {}

fn encode_shared<T: Serialize>(value: &T) -> Result<Bytes, CodecError> {
    codec::encode_body_bytes(value)
}

fn decode_limited<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, CodecError> {
    codec::decode_body_shared(bytes, codec::FRAME_BYTES_MAX)
}

fn decode_reply_limited<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    codec::decode_body(bytes, codec::FRAME_BYTES_MAX)
}

impl<M> Wire<M>
where
    M: Message + Serialize + DeserializeOwned,
    M::Reply: Serialize + DeserializeOwned,
{
    /// Encoders derived from serde.
    pub const fn serde() -> Self {
        Wire {
            type_name: std::any::type_name::<M>,
            encode: encode_shared::<M>,
            decode: decode_limited::<M>,
            encode_reply: codec::encode_body::<M::Reply>,
            decode_reply: decode_reply_limited::<M::Reply>,
        }
    }
}

/// A message type whose remote form is a protocol's own encoded bytes, sent by
/// one node's service to the same service on another node (the durable host, the
/// epoch service). Only those bytes leave the node; local variants (ticks, API
/// requests) refuse to encode. The receiving side gets the bytes together with the
/// sender the transport authenticated, never a sender named inside the message,
/// and decodes them itself, where the protocol's core checks what that sender may
/// say. Use [`Wire::protocol_bytes`] for its [`Message::WIRE`].
pub trait ProtocolBytes: Message<Reply = ()> {
    /// The wire type name (a frame naming another type is refused).
    const TYPE_NAME: &'static str;
    /// The largest body accepted; a longer one is refused before the message is
    /// built.
    const BYTES_MAX: usize;
    /// The bytes to send (shared, not copied), or `None` for a local-only variant.
    fn protocol_bytes(&self) -> Option<Bytes>;
    /// The message for `bytes` received from `from`: a slice of the frame they
    /// arrived in, not a copy.
    fn from_peer(from: NodeId, bytes: Bytes) -> Self;
}

fn protocol_type_name<M: ProtocolBytes>() -> &'static str {
    M::TYPE_NAME
}

fn encode_protocol<M: ProtocolBytes>(msg: &M) -> Result<Bytes, CodecError> {
    msg.protocol_bytes().ok_or_else(|| {
        CodecError::Encode(format!(
            "only {} protocol messages leave the node",
            M::TYPE_NAME
        ))
    })
}

/// Decodes on the receiving node, inside
/// [`ActorSystem::try_deliver_remote`](crate::runtime::ActorSystem::try_deliver_remote),
/// which says who sent it; bytes with no authenticated sender are refused.
fn decode_protocol<M: ProtocolBytes>(bytes: &Bytes) -> Result<M, CodecError> {
    let from = super::remote::decode_sender().ok_or_else(|| {
        CodecError::Malformed(format!(
            "a {} message without an authenticated sender",
            M::TYPE_NAME
        ))
    })?;
    if bytes.len() > M::BYTES_MAX {
        return Err(CodecError::Malformed(format!(
            "a {} message of {} bytes (at most {})",
            M::TYPE_NAME,
            bytes.len(),
            M::BYTES_MAX
        )));
    }
    Ok(M::from_peer(from, bytes.clone()))
}

fn decode_unit(bytes: &[u8]) -> Result<(), CodecError> {
    codec::decode_body(bytes, 16)
}

impl<M: ProtocolBytes> Wire<M> {
    /// Encoders for a [`ProtocolBytes`] message: its bytes as the body, the
    /// authenticated sender on decode, and a unit reply.
    pub const fn protocol_bytes() -> Self {
        Wire {
            type_name: protocol_type_name::<M>,
            encode: encode_protocol::<M>,
            decode: decode_protocol::<M>,
            encode_reply: codec::encode_body::<()>,
            decode_reply: decode_unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::with_decode_sender;

    #[derive(Debug, PartialEq)]
    enum Proto {
        Peer { from: NodeId, bytes: Bytes },
        Tick,
    }

    impl ProtocolBytes for Proto {
        const TYPE_NAME: &'static str = "test.proto";
        const BYTES_MAX: usize = 4;

        fn protocol_bytes(&self) -> Option<Bytes> {
            match self {
                Proto::Peer { bytes, .. } => Some(bytes.clone()),
                Proto::Tick => None,
            }
        }

        fn from_peer(from: NodeId, bytes: Bytes) -> Self {
            Proto::Peer { from, bytes }
        }
    }

    impl Message for Proto {
        type Reply = ();
        const WIRE: Option<Wire<Self>> = Some(Wire::protocol_bytes());
    }

    #[test]
    fn protocol_bytes_carry_the_authenticated_sender_and_refuse_the_rest() {
        let wire = Proto::WIRE.expect("wire");
        assert_eq!((wire.type_name)(), "test.proto");
        let a = NodeId::from_public_key([1; 32]);
        let b = NodeId::from_public_key([2; 32]);
        // Only the protocol bytes leave; local variants refuse to encode.
        let sent = (wire.encode)(&Proto::Peer {
            from: a,
            bytes: Bytes::from_static(&[9, 8]),
        })
        .expect("encodes");
        assert_eq!(sent, Bytes::from_static(&[9, 8]));
        assert!(matches!(
            (wire.encode)(&Proto::Tick),
            Err(CodecError::Encode(_))
        ));
        // The sender is the one the transport authenticated, not one in the bytes.
        assert_eq!(
            with_decode_sender(b, || (wire.decode)(&sent)).expect("decodes"),
            Proto::Peer {
                from: b,
                bytes: Bytes::from_static(&[9, 8])
            }
        );
        // No authenticated sender, or too many bytes: refused.
        assert!(matches!(
            (wire.decode)(&sent),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            with_decode_sender(b, || (wire.decode)(&Bytes::from_static(&[0; 5]))),
            Err(CodecError::Malformed(_))
        ));
        let reply = (wire.encode_reply)(&()).expect("unit");
        (wire.decode_reply)(&reply).expect("unit reply");
    }
}
