//! [`SigBytes`]: signature bytes as statements carry and keep them.

/// A signature (or an accusation: accuser id then signature) attached to a gossiped
/// statement. Shared: a statement held in a view, queued for gossip and copied into
/// frames and syncs is one allocation, and in the simulator one for every node that
/// holds it (a thousand-node world held a million copies of 64 bytes each). On the
/// wire it is a byte string, exactly as the `Vec<u8>` with `serde_bytes` it
/// replaces, so the frame format is unchanged.
pub type SigBytes = bytes::Bytes;

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

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
        assert_eq!(copy.as_ptr(), back.sig.as_ptr(), "a clone shares the bytes");
    }
}
