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
pub mod heap;
pub mod poai;
pub mod report;
pub mod scenario;
pub mod storage;
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
    if let Some(section) = &scenario.epochs {
        let epochs = epochs::run(&section.run_params(&scenario.network), seed);
        fold_epochs(&mut report, &epochs);
    }
    report.wall_ms = started.elapsed().as_millis() as u64;
    report
}

/// Adds an epoch committee's outcome to a run's report: its counts, its
/// violations (checker `epochs`), and its signed checkpoints' hashes folded into
/// the trace hash, so a replay proves the epochs too.
fn fold_epochs(report: &mut Report, epochs: &epochs::EpochReport) {
    report.epochs_signed = epochs.signed.len() as u64;
    report.epochs_failed = epochs.failed.len() as u64;
    report.epoch_equivocations = epochs.equivocations.len() as u64;
    report.epoch_bad_partials = epochs.bad_partials as u64;
    for v in &epochs.violations {
        report.violations.push(Violation {
            at_ms: report.sim_ms,
            check: "epochs".into(),
            detail: v.clone(),
        });
    }
    let mut trace = blake3::Hasher::new();
    trace.update(report.trace_hash.as_bytes());
    trace.update(&epochs.group_key);
    for (epoch, signed) in &epochs.signed {
        trace.update(&epoch.to_be_bytes());
        match signed.hash() {
            Ok(h) => trace.update(&h),
            Err(_) => trace.update(b"unhashable"),
        };
    }
    report.trace_hash = trace.finalize().to_hex().to_string();
}

/// The command that reproduces a run.
pub fn repro_command(scenario_path: &str, seed: u64) -> String {
    format!("plexus sim run {scenario_path} --seed {seed}")
}
