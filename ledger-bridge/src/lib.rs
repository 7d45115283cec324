//! # plexus-ledger-bridge: anchoring checkpoints to a chain (roadmap step 5)
//!
//! This crate will hold the bridge between threshold-BLS-signed epoch checkpoints and
//! a ledger: an embedded ledger for development and tests, and an EVM chain for
//! production, behind one [`Anchor`] interface. Until then it holds that interface.

use serde::{Deserialize, Serialize};

/// What gets anchored: an epoch number and the hash of its signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// The epoch.
    pub epoch: u64,
    /// Hash of the signed checkpoint.
    pub checkpoint_hash: [u8; 32],
}

/// Why anchoring failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The ledger refused or could not be reached.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// A ledger that records anchors. Implementations arrive with roadmap step 5.
pub trait Anchor {
    /// Records `record`; returns a ledger-specific receipt (e.g. a transaction hash).
    fn anchor(&mut self, record: &AnchorRecord) -> Result<Vec<u8>, AnchorError>;
}
