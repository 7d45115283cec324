//! Messages and how they cross the wire.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};

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
    pub encode: fn(&M) -> Result<Vec<u8>, CodecError>,
    /// Decodes a message body.
    pub decode: fn(&[u8]) -> Result<M, CodecError>,
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

fn decode_limited<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
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
            encode: codec::encode_body::<M>,
            decode: decode_limited::<M>,
            encode_reply: codec::encode_body::<M::Reply>,
            decode_reply: decode_limited::<M::Reply>,
        }
    }
}
