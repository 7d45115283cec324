//! The messages between storage services, and their one decoder (fuzzed).
//!
//! Every message is a codec frame of at most [`WIRE_BYTES_MAX`] (one chunk at the
//! largest chunk size, plus headroom). Requests carry a `req` number of the
//! asker's choosing, echoed in the answer; a node answers only what it was asked
//! and the asker matches answers by `(peer, req)`, so an answer from anyone else
//! is ignored. Sizes are checked again by the receiver: a chunk's bytes must hash
//! to its id before anything is stored or returned.

pub use bytes::Bytes;
use plexus_actors::codec;
use serde::{Deserialize, Serialize};

use crate::ChunkId;
use crate::kv::KvMsg;
use crate::manifest::STORED_CHUNK_BYTES_MAX;

/// The largest storage message.
pub const WIRE_BYTES_MAX: usize = STORED_CHUNK_BYTES_MAX + (64 << 10);
/// Ids per query.
pub const QUERY_IDS_MAX: usize = 8_192;

/// Why a store was not done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StoreOutcome {
    /// Held durably (synced to disk).
    Stored,
    /// The node is at its quota: put it elsewhere.
    Full {
        /// Bytes the node may still take.
        free_bytes: u64,
    },
    /// The bytes do not hash to the id, or break a bound.
    Invalid(String),
    /// The node's disk failed.
    Failed(String),
}

/// A message between storage services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StorageWire {
    /// Hold this chunk durably; answered with [`StorageWire::Stored`].
    Store {
        /// The asker's request number.
        req: u64,
        /// The chunk's id.
        chunk: ChunkId,
        /// Its replication factor.
        replicas: u8,
        /// Its bytes: shared, so one chunk sent to several nodes is not copied
        /// for each, and a slice of the received message once decoded (see
        /// [`StorageWire::decode`]). The same byte string on the wire as a
        /// `ByteBuf`.
        #[serde(with = "codec::shared_bytes")]
        bytes: Bytes,
    },
    /// The answer to a store.
    Stored {
        /// The request answered.
        req: u64,
        /// The chunk.
        chunk: ChunkId,
        /// What was done.
        outcome: StoreOutcome,
    },
    /// Send this chunk's bytes; answered with [`StorageWire::Chunk`].
    Fetch {
        /// The asker's request number.
        req: u64,
        /// The chunk.
        chunk: ChunkId,
    },
    /// The answer to a fetch: the bytes, verified by the sender, or `None`.
    Chunk {
        /// The request answered.
        req: u64,
        /// The chunk.
        chunk: ChunkId,
        /// The bytes, if held intact (shared like [`StorageWire::Store`]'s).
        #[serde(with = "codec::shared_bytes::option")]
        bytes: Option<Bytes>,
    },
    /// These chunks belong on the receiver too (the repair's offer).
    Offer {
        /// Chunk ids and replication factors.
        chunks: Vec<(ChunkId, u8)>,
    },
    /// Which of these chunks are held? Answered with [`StorageWire::Holding`].
    Query {
        /// The asker's request number.
        req: u64,
        /// The chunks (at most [`QUERY_IDS_MAX`]).
        chunks: Vec<ChunkId>,
    },
    /// The answer to a query, one flag per chunk asked.
    Holding {
        /// The request answered.
        req: u64,
        /// Held intact, in the query's order.
        held: Vec<bool>,
    },
    /// The key-value store's anti-entropy.
    Kv(KvMsg),
    /// Do you hold these chunks, placed on you, and will you keep them? (A
    /// stray copy's hand-off; [`crate::repair::Repair::answer_confirm`].)
    /// Answered with [`StorageWire::Holding`].
    Confirm {
        /// The asker's request number.
        req: u64,
        /// The chunks (at most [`QUERY_IDS_MAX`]).
        chunks: Vec<ChunkId>,
    },
}

/// Why bytes are not a storage message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not a frame of a storage message, or over the bound.
    #[error("not a storage message: {0}")]
    Decode(String),
    /// A bound inside the message is broken.
    #[error("a storage message over its bounds: {0}")]
    Bounds(&'static str),
}

impl StorageWire {
    /// The message's frame.
    pub fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode(self)
    }

    /// The message in `bytes`, checked against its bounds; never panics. A
    /// chunk's bytes in it are a slice of `bytes`, not a copy.
    pub fn decode(bytes: &Bytes) -> Result<Self, WireError> {
        let msg: StorageWire = codec::decode_shared_with_limit(bytes, WIRE_BYTES_MAX)
            .map_err(|e| WireError::Decode(e.to_string()))?;
        match &msg {
            StorageWire::Store { bytes, .. } if bytes.len() > STORED_CHUNK_BYTES_MAX => {
                Err(WireError::Bounds("a chunk over the largest chunk size"))
            }
            StorageWire::Chunk {
                bytes: Some(bytes), ..
            } if bytes.len() > STORED_CHUNK_BYTES_MAX => {
                Err(WireError::Bounds("a chunk over the largest chunk size"))
            }
            StorageWire::Query { chunks, .. } | StorageWire::Confirm { chunks, .. }
                if chunks.len() > QUERY_IDS_MAX =>
            {
                Err(WireError::Bounds("a query of too many ids"))
            }
            StorageWire::Holding { held, .. } if held.len() > QUERY_IDS_MAX => {
                Err(WireError::Bounds("an answer of too many flags"))
            }
            _ => Ok(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_bytes::ByteBuf;

    #[test]
    fn a_stored_chunk_is_the_byte_string_it_was() {
        // `Store` carried a `ByteBuf`; nodes of either build read each other's.
        let shared = codec::encode(&Bytes::from_static(b"chunk bytes")).unwrap();
        let owned = codec::encode(&ByteBuf::from(b"chunk bytes".to_vec())).unwrap();
        assert_eq!(shared, owned);
        let msg = StorageWire::Store {
            req: 7,
            chunk: ChunkId::of(b"chunk bytes"),
            replicas: 3,
            bytes: Bytes::from_static(b"chunk bytes"),
        };
        let back = StorageWire::decode(&msg.encode().unwrap().into()).unwrap();
        assert!(matches!(back, StorageWire::Store { bytes, .. } if bytes == b"chunk bytes"[..]));
    }

    #[test]
    fn chunk_bytes_are_slices_of_the_received_message() {
        let bytes = Bytes::from(vec![0x3C; 64 << 10]);
        let chunk = ChunkId::of(&bytes);
        for msg in [
            StorageWire::Store {
                req: 1,
                chunk,
                replicas: 3,
                bytes: bytes.clone(),
            },
            StorageWire::Chunk {
                req: 2,
                chunk,
                bytes: Some(bytes.clone()),
            },
        ] {
            let received = Bytes::from(msg.encode().unwrap());
            let back = StorageWire::decode(&received).unwrap();
            assert_eq!(back, msg);
            let (StorageWire::Store { bytes: got, .. }
            | StorageWire::Chunk {
                bytes: Some(got), ..
            }) = back
            else {
                panic!("not a chunk-bearing message")
            };
            assert!(
                received.as_ptr_range().contains(&got.as_ptr()),
                "the chunk was copied"
            );
        }
        let none = StorageWire::Chunk {
            req: 3,
            chunk,
            bytes: None,
        };
        assert_eq!(
            StorageWire::decode(&none.encode().unwrap().into()).unwrap(),
            none
        );
    }

    #[test]
    fn messages_round_trip() {
        let msgs = [
            StorageWire::Store {
                req: 1,
                chunk: ChunkId::of(b"a"),
                replicas: 3,
                bytes: Bytes::from_static(b"a"),
            },
            StorageWire::Stored {
                req: 1,
                chunk: ChunkId::of(b"a"),
                outcome: StoreOutcome::Full { free_bytes: 7 },
            },
            StorageWire::Offer {
                chunks: vec![(ChunkId::of(b"b"), 2)],
            },
            StorageWire::Kv(KvMsg::Want {
                keys: vec!["k".into()],
            }),
            StorageWire::Confirm {
                req: 2,
                chunks: vec![ChunkId::of(b"c")],
            },
        ];
        for m in msgs {
            assert_eq!(StorageWire::decode(&m.encode().unwrap().into()).unwrap(), m);
        }
    }

    #[test]
    fn oversized_confirms_are_refused() {
        let m = StorageWire::Confirm {
            req: 1,
            chunks: vec![ChunkId::of(b""); QUERY_IDS_MAX + 1],
        };
        assert_eq!(
            StorageWire::decode(&m.encode().unwrap().into()),
            Err(WireError::Bounds("a query of too many ids"))
        );
    }

    #[test]
    fn oversized_chunks_are_refused() {
        let m = StorageWire::Store {
            req: 1,
            chunk: ChunkId::of(b""),
            replicas: 1,
            bytes: Bytes::from(vec![0; STORED_CHUNK_BYTES_MAX + 1]),
        };
        assert_eq!(
            StorageWire::decode(&m.encode().unwrap().into()),
            Err(WireError::Bounds("a chunk over the largest chunk size"))
        );
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = StorageWire::decode(&bytes.into());
        }
    }
}
