//! The ask workload: every ask the mesh core takes gets exactly one answer, the right
//! one, in time, under faults; and a driver that answers twice or never is caught.

use std::time::Duration;

use plexus_sim::{Bug, Report, RunOptions, Scenario, run};

fn scenario(name: &str) -> Scenario {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = format!("{dir}/scenarios/{name}");
    let mut s = Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    s.workload.ask_rate = 4.0;
    s.workload.ask_timeout = Duration::from_millis(800);
    s
}

fn with_bug(bug: Bug) -> RunOptions {
    RunOptions { bug: Some(bug) }
}

fn checks(report: &Report) -> Vec<&str> {
    report.violations.iter().map(|v| v.check.as_str()).collect()
}

#[test]
fn asks_under_faults_each_get_exactly_one_answer() {
    let mut s = scenario("faulty.toml");
    s.nodes = 12;
    s.duration = Duration::from_secs(180);
    s.chaos.until = Some(Duration::from_secs(90));
    let a = run(&s, 5, RunOptions::default());
    assert!(a.passed(), "{:?}", a.violations);
    assert!(a.crashes > 0 && a.partitions > 0, "{a:?}");
    // Every kind of answer happened: replies, timeouts (one token in ten is never
    // answered), and failures (asks on crashed nodes).
    assert!(a.asks_sent > 5_000, "{a:?}");
    assert!(a.asks_replied > a.asks_sent / 2, "{a:?}");
    assert!(a.asks_timed_out >= a.asks_sent / 20, "{a:?}");
    assert!(a.asks_failed > 0, "{a:?}");
    assert!(
        a.asks_replied + a.asks_timed_out + a.asks_failed <= a.asks_sent,
        "more answers than asks: {a:?}"
    );
    let b = run(&s, 5, RunOptions::default());
    assert_eq!(a.trace_hash, b.trace_hash);
}

#[test]
fn a_driver_that_answers_an_ask_twice_is_caught() {
    let s = scenario("smoke.toml");
    let report = run(&s, 3, with_bug(Bug::AnswerAsksTwice));
    assert_eq!(
        checks(&report).first(),
        Some(&"ask-answered-twice"),
        "{report:?}"
    );
    assert!(run(&s, 3, RunOptions::default()).passed());
}

#[test]
fn a_driver_that_loses_an_answer_is_caught() {
    let s = scenario("smoke.toml");
    let report = run(&s, 3, with_bug(Bug::DropAnswers));
    assert_eq!(
        checks(&report).first(),
        Some(&"ask-unanswered"),
        "{report:?}"
    );
    assert!(run(&s, 3, RunOptions::default()).passed());
}
