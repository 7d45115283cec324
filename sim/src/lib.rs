//! # plexus-sim: the deterministic simulator
//!
//! Runs the production cores (membership, failure detection, the registry, delivery
//! and supervision decisions) for many nodes on one thread, in virtual time, with
//! seeded faults: message loss, duplication, reordering and latency; symmetric and
//! one-way partitions; crashes and restarts (durable state kept, volatile lost);
//! pauses; clock skew and drift. Checkers run as it goes; a run is replayed exactly
//! from its seed, and every run ends with a trace hash that proves it.
//!
//! It depends on the core crates without their `runtime` features: no tokio, no
//! libp2p, no clock (`tests/layering.rs` checks it). See `docs/simulator.md`.

pub mod epochs;
pub mod report;
pub mod scenario;
pub mod toy_kinds;
pub mod world;

pub use report::{Report, Violation};
pub use scenario::{Scenario, ScenarioError};
pub use world::{Bug, RunOptions, World};

/// Runs `scenario` with `seed` and returns its report.
pub fn run(scenario: &Scenario, seed: u64, options: RunOptions) -> Report {
    // Wall time is reported, never fed to the simulation or its trace.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let mut report = World::new(scenario, seed, options).run();
    report.wall_ms = started.elapsed().as_millis() as u64;
    report
}

/// The command that reproduces a run.
pub fn repro_command(scenario_path: &str, seed: u64) -> String {
    format!("plexus sim run {scenario_path} --seed {seed}")
}
