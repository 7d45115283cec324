//! # plexus-host: one node's durable host, as a sans-IO core
//!
//! Everything a node does for durable actors beyond the protocol itself: it owns
//! the node's [`plexus_durable::DurableNode`], builds and runs the actors' user
//! code ([`code`]), keeps the node's client sessions, watches for the scheduler
//! and restores it when it is gone, ticks it with the cluster's view ([`facts`]),
//! and reports activations to it. The daemon and the simulator are thin drivers of
//! [`DurableHost`], so a simulator sweep checks exactly the hosting code the daemon
//! runs.
//!
//! Like every core it never reads a clock, draws OS randomness or touches I/O:
//! `now`, a seed, the store and the cluster's answers come in; effects come out.
//!
//! * [`code`]: the `DurableCode` and `DurableKind` traits and the `Kinds`
//!   registry;
//! * [`facts`]: what the host asks of the cluster (`Directory`) and how it makes
//!   the scheduler's view;
//! * [`host`]: `DurableHost` itself.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod code;
pub mod facts;
pub mod host;

pub use code::{CodeError, DurableCode, DurableKind, KindError, Kinds};
pub use facts::{ClusterFacts, Directory, Grant, MemberFacts};
pub use host::{
    AnswerError, ApplyTracer, DurableHost, Effect, Fault, HostConfig, HostStatus, Livelock, Note,
    ONE_SHOT, RequestId, SendError, SubmitError, WireError,
};

#[cfg(test)]
mod tests;
