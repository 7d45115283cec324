//! The simulator checks itself: runs replay exactly, and bugs injected into the
//! driver are caught by a checker and reported with the seed that shows them.

use plexus_sim::{Bug, RunOptions, Scenario, repro_command, run};

fn scenario(name: &str) -> Scenario {
    let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_same_seed_replays_exactly_and_another_seed_differs() {
    let s = scenario("faulty.toml");
    let a = run(&s, 7, RunOptions::default());
    let b = run(&s, 7, RunOptions::default());
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert_eq!(a.detections_ms, b.detections_ms);
    let c = run(&s, 8, RunOptions::default());
    assert_ne!(a.trace_hash, c.trace_hash);
    assert!(a.passed(), "{:?}", a.violations);
    // The faults really happened.
    assert!(
        a.crashes > 0 && a.partitions > 0 && a.frames_lost > 0,
        "{a:?}"
    );
}

#[test]
fn a_driver_that_redelivers_is_caught_with_its_seed() {
    let s = scenario("smoke.toml");
    let report = run(
        &s,
        3,
        RunOptions {
            bug: Some(Bug::RedeliverTells),
        },
    );
    let v = report.violations.first().expect("the bug is caught");
    assert_eq!(v.check, "delivered-twice");
    assert_eq!(report.seed, 3);
    assert_eq!(
        repro_command("sim/scenarios/smoke.toml", report.seed),
        "plexus sim run sim/scenarios/smoke.toml --seed 3"
    );
    // Without the bug the same seed is clean.
    assert!(run(&s, 3, RunOptions::default()).passed());
}

#[test]
fn a_driver_that_loses_sync_claims_is_caught_by_the_convergence_check() {
    let s = scenario("faulty.toml");
    let report = run(
        &s,
        1,
        RunOptions {
            bug: Some(Bug::DropSyncClaims),
        },
    );
    assert!(
        report.violations.iter().any(|v| v.check == "convergence"),
        "{:?}",
        report.violations
    );
    assert!(run(&s, 1, RunOptions::default()).passed());
}

#[test]
fn every_step_checking_passes_on_a_small_faulty_run() {
    let mut s = scenario("faulty.toml");
    s.nodes = 8;
    s.duration = std::time::Duration::from_secs(180);
    s.chaos.until = Some(std::time::Duration::from_secs(60));
    s.check.every_step = true;
    let report = run(&s, 11, RunOptions::default());
    assert!(report.passed(), "{:?}", report.violations);
}
