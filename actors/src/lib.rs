//! # plexus-actors: the Plexus actor SDK
//!
//! Everything in Plexus is built from these pieces:
//!
//! * [`id`]: [`NodeId`] and [`ActorId`], stable identities that can travel in messages;
//! * [`codec`]: the one wire and disk format, with versioned, size-limited frames;
//! * [`migratable`]: the snapshot/restore contract for state that moves between nodes;
//! * [`datum`]: the record type that flows through declarative pipelines;
//! * [`pipeline`]: DAGs of stages, from code or from a TOML/JSON spec;
//! * [`time`]: time as the sans-IO cores see it, a value handed in by a driver;
//! * `runtime` (feature `runtime`, on by default): typed actors on ractor with
//!   bounded mailboxes, a per-node name registry and process groups, and kinds.
//!
//! Without the `runtime` feature this crate is pure: no tokio, no ractor, no clock.
//! The simulator depends on it that way; `tests/layering.rs` in the workspace root
//! checks it.

pub mod codec;
pub mod datum;
pub mod envelope;
pub mod fixed;
pub mod id;
pub mod migratable;
pub mod pipeline;
pub mod rng;
mod scoped;
pub mod time;

#[cfg(feature = "runtime")]
pub mod runtime;

pub use datum::Datum;
pub use id::{ActorId, NodeId};
pub use migratable::{Migratable, Snapshot};
pub use time::Time;

#[cfg(feature = "runtime")]
pub use runtime::{
    Actor, ActorRef, ActorSystem, AskError, Context, Message, SendError, SpawnOptions, Wire,
};
