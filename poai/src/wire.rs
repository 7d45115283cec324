//! What travels between nodes' work services: audit messages, and the fetch of a
//! batch's inputs from its worker for re-execution. One versioned frame format
//! (`plexus_actors::codec`); decoding is bounded and never panics (fuzzed:
//! `fuzz/fuzz_targets/work_message.rs`).

use plexus_actors::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

use crate::audit::AuditMessage;
use crate::receipt::{BATCH_MAX, Digest};

/// Largest encoded work message: a full batch of inputs with room to spare.
pub const WORK_FRAME_BYTES_MAX: usize = codec::FRAME_BYTES_MAX;

/// A work message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkWire {
    /// Receipts and verifications (boxed: far larger than the others).
    Audit(Box<AuditMessage>),
    /// A verifier asks the worker for a batch's inputs.
    Fetch {
        /// The receipt's epoch.
        epoch: u64,
        /// The receipt.
        receipt: Digest,
    },
    /// The worker's answer: the inputs in batch order, or `None` if not kept.
    Inputs {
        /// The receipt.
        receipt: Digest,
        /// The inputs.
        items: Option<Vec<serde_bytes::ByteBuf>>,
    },
}

/// Why a work message was refused: the sender's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not a work message, or over the frame bound.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// More inputs than a batch may hold.
    #[error("{0} inputs, more than a batch holds ({BATCH_MAX})")]
    TooManyInputs(usize),
}

impl WorkWire {
    /// Encodes the message.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes and bounds a peer's message.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let wire: WorkWire = codec::decode_with_limit(bytes, WORK_FRAME_BYTES_MAX)?;
        if let WorkWire::Inputs {
            items: Some(items), ..
        } = &wire
            && items.len() > BATCH_MAX as usize
        {
            return Err(WireError::TooManyInputs(items.len()));
        }
        Ok(wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_bytes_are_refused() {
        let fetch = WorkWire::Fetch {
            epoch: 3,
            receipt: [7; 32],
        };
        assert_eq!(WorkWire::decode(&fetch.encode().unwrap()).unwrap(), fetch);
        let items = Some(vec![serde_bytes::ByteBuf::from(vec![1u8; 64]); 3]);
        let inputs = WorkWire::Inputs {
            receipt: [1; 32],
            items,
        };
        assert_eq!(WorkWire::decode(&inputs.encode().unwrap()).unwrap(), inputs);
        assert!(matches!(
            WorkWire::decode(&[0xff, 0, 1]),
            Err(WireError::Codec(_))
        ));
        let too_many = WorkWire::Inputs {
            receipt: [1; 32],
            items: Some(vec![serde_bytes::ByteBuf::new(); BATCH_MAX as usize + 1]),
        };
        assert!(matches!(
            WorkWire::decode(&too_many.encode().unwrap()),
            Err(WireError::TooManyInputs(n)) if n == BATCH_MAX as usize + 1
        ));
    }
}
