//! # plexus-ml: the model executor (roadmap step 6)
//!
//! This crate will hold the Burn model executor: a supervised, migratable actor that
//! loads a model, runs inference on the `flex` CPU backend (`wgpu` behind a feature),
//! and produces verified-work receipts that other nodes can check by re-execution.
//! Until then it holds only the receipt shape, so later steps have a stable name for it.

use plexus_actors::{ActorId, NodeId};
use serde::{Deserialize, Serialize};

/// A claim that `worker` ran `model` on an input and got an output, identified by
/// their hashes. Verification (re-execution, bisection on dispute) arrives with step 6.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkReceipt {
    /// The node that did the work.
    pub worker: NodeId,
    /// The executor actor.
    pub executor: ActorId,
    /// Hash of the model weights.
    pub model_hash: [u8; 32],
    /// Hash of the input.
    pub input_hash: [u8; 32],
    /// Hash of the output.
    pub output_hash: [u8; 32],
}
