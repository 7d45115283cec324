//! # plexus-poai: proof of AI work
//!
//! Plexus pays for work it checked, not for presence. Every batch an executor runs
//! yields a [`receipt::Receipt`] the worker signs: the model (by content hash), the
//! batch's inputs and outputs (by hash), the backend and batch plan that fix the
//! output bytes. Other nodes re-execute a sample of receipts; which ones, and who
//! checks them, is drawn from a beacon fixed *after* the work (the epoch's
//! threshold-signed checkpoint), so a worker cannot know which of its results will
//! be checked while it computes them.
//!
//! | module | decides |
//! |---|---|
//! | [`receipt`] | receipts, verifications and their signatures; digests of inputs and outputs |
//! | [`sample`] | which receipts are sampled and which nodes verify each, from the beacon |
//! | [`audit`] | one node's auditor: what to re-execute, disputes, evidence, the per-epoch tally |
//!
//! # Inputs and outputs
//!
//! Sans-IO like every core: the driver hands in receipts and verifications with
//! the sender the transport authenticated, beacons, and the results of the
//! re-executions it ran; the core returns effects (fetch these inputs, re-execute
//! that receipt, publish this verification, here is evidence). It never runs a
//! model, reads a clock or touches a socket; the simulator drives the same code.
//!
//! # Invariants
//!
//! - An honest node never signs or accepts evidence against a node unless its own
//!   re-execution contradicts what that node signed.
//! - A node is only counted as a verifier of a receipt if the beacon chose it.
//! - Every collection is bounded (receipts per epoch, epochs kept, verifications
//!   per receipt); what happens at each bound is documented where it is enforced.

pub mod audit;
pub mod receipt;
pub mod sample;
pub mod wire;

pub use audit::{AuditConfig, AuditMessage, Auditor, Effect, EpochWork, Evidence, WorkRow};
pub use receipt::{
    Backend, BackendClass, Digest, Receipt, SignedReceipt, SignedVerification, Verification,
};
