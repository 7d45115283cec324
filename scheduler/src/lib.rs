//! The Plexus scheduler: job specs, tag constraints, placement, and the scheduler
//! state machine, all pure. The scheduler runs as a durable actor (see
//! `plexus-durable`): its state survives the loss of its node, and the node that
//! restores it carries on reconciling.
//!
//! * [`tags`]: constraint expressions (`region in [eu, us] && kyc && !country:fr`).
//! * [`job`]: the job spec (TOML) and its validation.
//! * [`placement`]: which node runs an actor (property-tested).
//! * [`protocol`]: signed requests, responses, the view a tick carries.
//! * [`core`]: the scheduler state machine.
//! * [`app`]: the scheduler as a durable actor's user code.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod core;
pub mod job;
pub mod placement;
pub mod protocol;
pub mod tags;

pub use core::{Scheduler, State};
pub use job::{JobError, JobSpec, Strategy};
pub use protocol::{ActorSpec, Fault, Rejection, Request, Response, SCHEDULER_KEY, Signed, View};
