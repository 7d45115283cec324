//! The Byzantine sweep: admitted liars tell every mesh-level lie (forged origins,
//! replays, `u64::MAX` counters, false deaths, phantom members, name squatting, meta
//! lies) and the honest nodes keep their guarantees, seed after seed.

use plexus_sim::{RunOptions, Scenario, repro_command, run};

fn scenario() -> Scenario {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = format!("{dir}/scenarios/byzantine.toml");
    Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn honest_nodes_keep_their_guarantees_against_liars_over_many_seeds() {
    let s = scenario();
    for seed in 0..100 {
        let report = run(&s, seed, RunOptions::default());
        assert!(
            report.passed(),
            "{}: {:?}",
            repro_command("sim/scenarios/byzantine.toml", seed),
            report.violations
        );
    }
}

#[test]
fn the_liars_really_lie_and_are_caught_when_believed() {
    // Without the liars' lies reaching anyone the checks are vacuous; make sure the
    // run has them: the same scenario with every node honest hashes differently.
    let s = scenario();
    let mut honest = s.clone();
    honest.byzantine.clear();
    let a = run(&s, 1, RunOptions::default());
    let b = run(&honest, 1, RunOptions::default());
    assert_ne!(a.trace_hash, b.trace_hash);
    assert!(a.passed(), "{:?}", a.violations);
    assert!(b.passed(), "{:?}", b.violations);
}

#[test]
fn a_liar_out_of_range_is_a_scenario_error() {
    let text = "nodes = 2\nduration = \"1s\"\n[[byzantine]]\nnode = 5\nbehaviours = [\"squat\"]\n";
    assert!(Scenario::parse(text).is_err());
    let text = "nodes = 2\nduration = \"1s\"\n[[byzantine]]\nnode = 1\nbehaviours = [\"lying_about_everything\"]\n";
    assert!(Scenario::parse(text).is_err());
}

fn durable_scenario() -> Scenario {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = format!("{dir}/scenarios/byzantine-durable.toml");
    Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Durable-protocol lies (forged origins, ballots and authority, `u64::MAX`
/// ballots, replays) among a deployed job with traffic and migrations: the
/// durable checkers hold on every seed.
#[test]
fn durable_actors_keep_their_guarantees_against_durable_liars() {
    let s = durable_scenario();
    for seed in 0..100 {
        let report = run(&s, seed, RunOptions::default());
        assert!(
            report.passed(),
            "{}: {:?}",
            repro_command("sim/scenarios/byzantine-durable.toml", seed),
            report.violations
        );
    }
    // The lies happen: the same run without liars is a different run.
    let mut honest = s.clone();
    honest.byzantine.clear();
    assert_ne!(
        run(&s, 1, RunOptions::default()).trace_hash,
        run(&honest, 1, RunOptions::default()).trace_hash
    );
}
