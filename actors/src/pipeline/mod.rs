//! Pipelines: DAGs of actor stages (sources, transforms, sinks), from code or from a
//! declarative spec naming registered kinds.
//!
//! [`spec`] is pure and always compiled; the runtime that runs pipelines on actors
//! is behind the `runtime` feature.

pub mod spec;

#[cfg(feature = "runtime")]
mod run;

#[cfg(feature = "runtime")]
pub use run::{
    Outbox, Pipeline, PipelineBuilder, PipelineError, PipelineReport, Produce, RESULTS_MAX, Stage,
    StageError, StageMsg, register_stage,
};

use serde::{Deserialize, Serialize};

use crate::ActorId;

/// Where a stage sends, and to whom it reports. Part of a stage's spawn arguments, so
/// it is plain data that can cross the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageWiring {
    /// The pipeline's name.
    pub pipeline: String,
    /// This stage's name.
    pub stage: String,
    /// The stages this one feeds.
    pub outputs: Vec<ActorId>,
    /// How many stages feed this one; it ends after that many `End`s (a source,
    /// with none, ends when it has produced everything).
    pub inputs: u32,
    /// The run's collector: receives sink output and every stage's report.
    pub collector: ActorId,
}

/// Counters one stage reports when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReport {
    /// Stage name.
    pub stage: String,
    /// Items received.
    pub items_in: u64,
    /// Items emitted (counted once per item, however many outputs it went to).
    pub items_out: u64,
}
