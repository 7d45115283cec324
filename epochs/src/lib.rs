//! # plexus-epochs: proof of availability and threshold-BLS epoch checkpoints
//!
//! Every epoch the committee (the allowlist's designated validators) states, in a
//! form nobody has to take on trust, who was available and what each node earned.
//! This crate holds every decision that statement needs, as sans-IO state machines
//! that the daemon and the simulator both drive:
//!
//! | module | decides |
//! |---|---|
//! | [`schedule`] | which epoch an instant belongs to (genesis + fixed length) |
//! | [`availability`] | each observer's uptime measurement, and the robust aggregate |
//! | [`rewards`] | reward units from availability (no evidence, no reward) |
//! | [`checkpoint`] | the checkpoint, its fixed encoding and its hash |
//! | [`threshold`] | t-of-n BLS12-381 partials, batch verification, combining |
//! | [`dkg`] | the distributed key generation that gives the committee its key |
//! | [`agreement`] | rotating proposer, one signature per epoch, certificates, evidence |
//! | [`follower`] | which checkpoints a node outside the committee believes (`f + 1` vouches pin the key) |
//!
//! # Inputs and outputs
//!
//! Cores take the transport-authenticated sender with every message, `now` as a
//! [`plexus_actors::Time`], and randomness from the driver (a seeded generator in the
//! simulator; the OS through a ChaCha20 generator in production). They return
//! messages to send and facts to persist; they never touch a clock, a socket or a
//! disk. The one IO seam with a durability contract is [`agreement::VoteLog`]: a
//! member's vote for an epoch is recorded there *before* its partial signature is
//! released, so a restarted member cannot sign a second checkpoint for that epoch.
//!
//! # Invariants
//!
//! - A member signs at most one checkpoint hash per epoch, across restarts.
//! - A checkpoint is only ever reported signed after its combined signature verified
//!   against the group key.
//! - Every message names its sender, and a committee message from a node outside the
//!   committee, or carrying another member's share index, is refused.
//! - Every collection is bounded by the committee size; nothing grows with what peers
//!   send.

pub mod agreement;
pub mod availability;
pub mod checkpoint;
pub mod dkg;
pub mod follower;
pub mod rewards;
pub mod schedule;
pub mod threshold;
pub mod work;

pub use agreement::{Agreement, AgreementConfig, EpochMessage, Output as AgreementOutput, VoteLog};
pub use availability::{AvailabilityMeter, Observation, SignedObservation};
pub use checkpoint::{Checkpoint, CheckpointHash, MemberRow, SignedCheckpoint};
pub use schedule::Schedule;
