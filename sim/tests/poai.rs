//! Proof of AI work under seeded faults: cheating workers, lying, lazy and
//! withholding nodes, loss, delay and a crash, over several seeds. Honest nodes
//! never accuse honest nodes, every piece of evidence they hold checks out, and a
//! cheat sampled with an honest verifier is caught by every honest node (on a
//! lossless network).

use plexus_sim::poai::{PoaiRun, Role, run};

fn mixes() -> Vec<Vec<Role>> {
    use Role::*;
    vec![
        vec![Honest, Cheat(2), Honest, Honest, Liar, Honest],
        vec![Cheat(1), Lazy, Honest, Honest, Honest],
        vec![Honest, Withhold, Liar, Lazy, Cheat(3), Honest, Honest],
        vec![Liar, Liar, Honest, Honest, Cheat(1), Honest],
    ]
}

#[test]
fn a_sweep_has_no_false_accusations_and_catches_sampled_cheats() {
    let mut caught = 0usize;
    for (m, roles) in mixes().into_iter().enumerate() {
        for seed in 1..=4u64 {
            for (drop_ppm, crash) in [(0, None), (20_000, Some((2, 4_000, 9_000)))] {
                let params = PoaiRun {
                    roles: roles.clone(),
                    drop_ppm,
                    crash,
                    ..PoaiRun::default()
                };
                let report = run(&params, seed);
                assert!(
                    report.violations.is_empty(),
                    "mix {m} seed {seed} drop {drop_ppm}: {:?}",
                    report.violations
                );
                assert!(report.receipts > 0 && report.re_executions > 0);
                caught += roles
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| {
                        matches!(r, Role::Cheat(_) | Role::Liar)
                            && report
                                .proven
                                .iter()
                                .any(|(_, who)| *who == report.nodes[*i])
                    })
                    .count();
            }
        }
    }
    // Cheaters and liars are caught, not only never-wrongly-accused.
    assert!(caught > 20, "only {caught} catches");
}

#[test]
fn a_run_replays_exactly_from_its_seed() {
    let params = PoaiRun {
        roles: mixes()[0].clone(),
        drop_ppm: 10_000,
        ..PoaiRun::default()
    };
    let a = run(&params, 9);
    let b = run(&params, 9);
    assert_eq!(a.proven, b.proven);
    assert_eq!(
        (a.receipts, a.re_executions, a.delivered),
        (b.receipts, b.re_executions, b.delivered)
    );
}

/// When honest nodes do not compute the same bytes (a non-deterministic
/// backend), they accuse each other: the checker sees it. This is why the
/// executor must state its determinism conditions (docs/design/poai.md).
#[test]
fn the_checker_fails_when_execution_is_not_deterministic() {
    let params = PoaiRun {
        roles: vec![Role::Honest; 5],
        rate_ppm: 1_000_000,
        nondeterministic: true,
        ..PoaiRun::default()
    };
    let report = run(&params, 3);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.starts_with("false-accusation")),
        "{:?}",
        report.violations
    );
}
