//! # Plexus
//!
//! A decentralized actor-model runtime for AI workloads. This crate is the embedding
//! API and the `plexus` binary; the building blocks live in the workspace crates it
//! re-exports.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use plexus::Node;
//! let node = Node::builder().build();
//! let spec = plexus::actors::pipeline::spec::PipelineSpec::from_toml(
//!     &std::fs::read_to_string("examples/pipeline.toml")?,
//! )?;
//! let report = node.run_pipeline(spec).await?;
//! println!("{} results", report.results.len());
//! node.shutdown().await;
//! # Ok(()) }
//! ```
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod epochs;
pub mod hosting;
pub mod kinds;
pub mod metrics;
pub mod node;
pub mod stages;
pub mod storage;
pub mod supervision;
pub mod telemetry;
pub mod ticker;
pub mod work;

pub use node::{Node, NodeBuilder, NodeConfig, NodeError};

/// The commit this build is from (`build.rs`: `$PLEXUS_COMMIT`, else git, else
/// `unknown`).
pub const COMMIT: &str = env!("PLEXUS_COMMIT");
/// The version and commit, as `plexus --version` prints them.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PLEXUS_COMMIT"), ")");
pub use plexus_actors as actors;
pub use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, AskError, Context, Message, SendError, SpawnOptions,
    Wire,
};
pub use plexus_actors::{ActorId, Datum, Migratable, NodeId};
pub use plexus_epochs as epochs_core;
pub use plexus_ledger_bridge as ledger;
pub use plexus_mesh as mesh;
pub use plexus_ml as ml;
pub use plexus_poai as poai;
pub use plexus_scheduler as scheduler;
pub use plexus_supervisor as supervisor;
pub use plexus_vocab as vocab;
