//! # plexus-supervisor: OTP-style supervision trees
//!
//! * [`core`]: the decision logic (strategies, restart policies, intensity) as a
//!   pure state machine with time handed in. Always compiled; no tokio.
//! * [`driver`] (feature `runtime`): the driver, a ractor actor that links children
//!   spawned through the Plexus actor runtime, feeds their exits to the core and
//!   carries out its actions.

pub mod core;

#[cfg(feature = "runtime")]
pub mod driver;

pub use core::{
    Action, ChildSpec, ChildStatus, ExitReason, Intensity, Restart, Strategy, Supervisor,
    SupervisorError,
};
