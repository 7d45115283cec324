//! # plexus-ledger-bridge: anchoring signed epoch checkpoints
//!
//! Every epoch the committee signs a checkpoint with its threshold BLS key
//! (`plexus-epochs`). This crate *anchors* it: it records, somewhere append-only and
//! beyond the committee's later reach, that epoch `e` has checkpoint hash `h`,
//! authorised by the group signature. One interface, [`Anchor`], has two
//! implementations:
//!
//! | ledger | module | where | final after |
//! |---|---|---|---|
//! | embedded | [`embedded`] | a hash-linked ledger in a local rocksdb; the default, a single machine needs no chain | at once (0 confirmations) |
//! | EVM | [`evm`] | the `CheckpointAnchor` contract (`contracts/`) over JSON-RPC, verifying the signature on chain with the EIP-2537 precompiles | `k` confirmations, configurable |
//!
//! # The rules both ledgers keep (and the contract keeps on chain)
//!
//! - **Only the group signs.** An anchor is accepted only with a signature that
//!   verifies under the group key the ledger was set up with, over
//!   `network ‖ epoch ‖ checkpoint hash` (see `plexus_epochs::threshold`). A signature
//!   by any other key, for another epoch or another hash is
//!   [`AnchorError::InvalidSignature`], and nothing changes.
//! - **One hash per epoch, idempotently.** Anchoring the hash already anchored for an
//!   epoch is [`AnchorOutcome::AlreadyAnchored`] (on a chain: no transaction is sent);
//!   another hash is [`AnchorError::Conflict`]. A restarted node can therefore
//!   resubmit whatever it is unsure of.
//! - **Epochs in any order.** Gaps are allowed; [`Anchor::latest`] is the highest
//!   epoch anchored.
//!
//! # Errors
//!
//! [`AnchorError`] groups its variants by who is at fault: the submission (a bad
//! signature, a conflicting hash, malformed input), the operator (too little gas, a
//! full ledger, a chain without EIP-2537) or the ledger itself (storage, corruption,
//! the RPC endpoint).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod deploy;
pub mod eip2537;
pub mod embedded;
pub mod evm;

pub use embedded::{EmbeddedLedger, LedgerEntry, OpenError};
pub use evm::{EvmAnchor, EvmConfig, EvmSetupError};

use async_trait::async_trait;
use plexus_epochs::checkpoint::{CheckpointHash, SignedCheckpoint};

/// Where an anchor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// An entry of the embedded ledger.
    Embedded {
        /// Position in the ledger (0 for the first entry).
        sequence: u64,
        /// The entry's own hash (what the next entry links to).
        entry_hash: [u8; 32],
    },
    /// The `CheckpointAnchor` contract's state.
    Evm {
        /// The block whose transaction anchored the epoch.
        block: u64,
    },
}

/// An anchored epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorRecord {
    /// The epoch.
    pub epoch: u64,
    /// The checkpoint hash anchored for it.
    pub checkpoint_hash: CheckpointHash,
    /// Where it is recorded.
    pub location: Location,
}

/// The transaction that anchored an epoch on an EVM chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvmTransaction {
    /// Transaction hash.
    pub hash: [u8; 32],
    /// Block it was included in.
    pub block: u64,
    /// Gas it used (intrinsic gas and calldata included).
    pub gas_used: u64,
}

/// What [`Anchor::anchor`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorOutcome {
    /// This call anchored the epoch.
    Anchored {
        /// The new anchor.
        record: AnchorRecord,
        /// The transaction, on an EVM chain (`None` for the embedded ledger).
        transaction: Option<EvmTransaction>,
    },
    /// The epoch was already anchored with this hash; nothing was written or sent.
    AlreadyAnchored(AnchorRecord),
}

impl AnchorOutcome {
    /// The anchor, new or old.
    pub fn record(&self) -> &AnchorRecord {
        match self {
            AnchorOutcome::Anchored { record, .. } | AnchorOutcome::AlreadyAnchored(record) => {
                record
            }
        }
    }
}

/// How settled an epoch's anchor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorStatus {
    /// Not anchored (on a chain: not in the current head's state, which includes
    /// an anchor that a reorganisation removed).
    NotAnchored,
    /// Anchored, with fewer confirmations than the ledger requires for finality.
    /// `confirmations` counts the including block as the first.
    Included {
        /// Blocks from the including one to the head, both counted.
        confirmations: u64,
    },
    /// Anchored with at least the required confirmations (the embedded ledger's
    /// anchors are final at once).
    Final,
}

/// Why an anchor or a query failed. Variants are grouped by who is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    // --- The submission is at fault: do not retry it unchanged. ---
    /// The signature does not verify under the ledger's group key for this epoch and
    /// hash (a forgery, another key's signature, fewer than a threshold of shares, or
    /// another epoch's signature). Nothing was recorded.
    #[error("epoch {epoch}: the signature is not the group's over this epoch and hash")]
    InvalidSignature {
        /// The epoch submitted.
        epoch: u64,
    },
    /// The epoch is already anchored with another hash. Nothing was recorded; the
    /// committee signed two checkpoints for one epoch, or the submitter is confused.
    #[error("epoch {epoch} is already anchored with another checkpoint hash")]
    Conflict {
        /// The epoch.
        epoch: u64,
        /// The hash already anchored.
        anchored: CheckpointHash,
        /// The hash offered.
        offered: CheckpointHash,
    },
    /// The checkpoint names another group key than the ledger's.
    #[error("epoch {epoch}: the checkpoint names another group key than the ledger's")]
    WrongGroupKey {
        /// The epoch.
        epoch: u64,
    },
    /// The checkpoint is for another network than the ledger's.
    #[error("epoch {epoch}: the checkpoint is for another network")]
    WrongNetwork {
        /// The epoch.
        epoch: u64,
    },
    /// The input is not well formed (a checkpoint that does not encode or check, a
    /// signature that is not a point, the reserved zero hash).
    #[error("epoch {epoch}: malformed submission: {why}")]
    Malformed {
        /// The epoch.
        epoch: u64,
        /// What is wrong.
        why: String,
    },

    // --- The operator is at fault: fix the configuration and retry. ---
    /// The gas limit leaves too little for the on-chain verification (the contract
    /// refuses rather than report a valid signature invalid). Raise the gas limit.
    #[error("epoch {epoch}: too little gas for the on-chain signature check")]
    InsufficientGas {
        /// The epoch.
        epoch: u64,
    },
    /// The chain lacks the EIP-2537 precompiles (not on Prague or later).
    #[error("the chain's BLS12-381 precompiles failed or are missing (EIP-2537, Prague)")]
    PrecompileFailed,
    /// The embedded ledger holds its maximum number of entries
    /// ([`embedded::ENTRIES_MAX`]).
    #[error("the ledger is full ({entries_max} entries)")]
    Full {
        /// The bound.
        entries_max: u64,
    },

    // --- The ledger or the way to it is at fault: retrying may help. ---
    /// The chain refused in a way this crate does not decode, or a transaction was
    /// mined but failed.
    #[error("epoch {epoch}: the chain refused: {reason}")]
    Reverted {
        /// The epoch.
        epoch: u64,
        /// What is known (revert data in hex, or the failed transaction).
        reason: String,
    },
    /// The RPC endpoint failed, timed out or answered nonsense.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The embedded ledger's storage failed.
    #[error("ledger storage: {0}")]
    Storage(String),
    /// The embedded ledger's stored data fails its own checks.
    #[error("ledger corrupt: {0}")]
    Corrupt(String),
}

/// A ledger that anchors signed checkpoints.
///
/// Object safe (`Box<dyn Anchor>`), so a node picks the ledger from its config at
/// run time. Every method is safe to call again after any error, and after a
/// restart with a new instance over the same ledger.
#[async_trait]
pub trait Anchor: Send + Sync {
    /// Anchors `signed` after the ledger checks its group signature: see the crate
    /// docs for the rules.
    async fn anchor(&self, signed: &SignedCheckpoint) -> Result<AnchorOutcome, AnchorError>;

    /// The anchor of `epoch`, if any.
    async fn anchored(&self, epoch: u64) -> Result<Option<AnchorRecord>, AnchorError>;

    /// How settled `epoch`'s anchor is.
    async fn status(&self, epoch: u64) -> Result<AnchorStatus, AnchorError>;

    /// The highest anchored epoch, if any.
    async fn latest(&self) -> Result<Option<u64>, AnchorError>;
}
