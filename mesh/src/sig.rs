//! [`SigBytes`]: signature bytes as statements carry and keep them.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A signature (or an accusation: accuser id then signature) attached to a gossiped
/// statement. Shared: a statement held in a view, queued for gossip and copied into
/// frames and syncs is one allocation, and in the simulator one for every node that
/// holds it (a thousand-node world held a million copies of 64 bytes each). On the
/// wire it is a byte string, exactly as the `Vec<u8>` with `serde_bytes` it
/// replaces, so the frame format is unchanged.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct SigBytes(Arc<[u8]>);

impl SigBytes {
    /// The bytes, copied into a vector (to edit, in tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl Deref for SigBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for SigBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }
}

impl From<&[u8]> for SigBytes {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }
}

impl fmt::Debug for SigBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigBytes({} bytes)", self.0.len())
    }
}

impl Serialize for SigBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SigBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Ok(Self(bytes.into_vec().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_the_byte_string_it_replaces() {
        #[derive(Serialize)]
        struct Old {
            #[serde(with = "serde_bytes")]
            sig: Vec<u8>,
        }
        #[derive(Serialize, Deserialize)]
        struct New {
            sig: SigBytes,
        }
        let bytes: Vec<u8> = (0..64).collect();
        let old = plexus_actors::codec::encode_body(&Old { sig: bytes.clone() }).expect("encodes");
        let new = plexus_actors::codec::encode_body(&New {
            sig: bytes.clone().into(),
        })
        .expect("encodes");
        assert_eq!(old, new);
        let back: New = plexus_actors::codec::decode_body(&old, 1024).expect("decodes");
        assert_eq!(&*back.sig, &bytes[..]);
        let copy = back.sig.clone();
        assert!(
            Arc::ptr_eq(&copy.0, &back.sig.0),
            "a clone shares the bytes"
        );
    }
}
