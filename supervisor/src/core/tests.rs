//! Exhaustive tests over strategy × restart policy × exit reason × position, plus
//! properties over random event sequences.

use super::*;
use proptest::prelude::{
    Just, ProptestConfig, TestCaseError, any, prop_assert, prop_assert_eq, prop_oneof, proptest,
};
use proptest::strategy::Strategy as Gen;

const SECOND: Duration = Duration::from_secs(1);

fn t(secs: u64) -> Time {
    Time::from_millis(secs * 1000)
}

fn starts(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { child, .. } => Some(child.as_str()),
            _ => None,
        })
        .collect()
}

fn stops(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop { child, .. } => Some(child.as_str()),
            _ => None,
        })
        .collect()
}

fn incarnation(sup: &Supervisor, id: &str) -> u64 {
    match sup.children().find(|(s, _)| s.id == id).map(|(_, st)| st) {
        Some(ChildStatus::Running(n)) | Some(ChildStatus::Stopping(n)) => n,
        other => panic!("{id} is not running: {other:?}"),
    }
}

/// Three children a, b, c with one restart policy, all started.
fn three(strategy: Strategy, restart: Restart) -> Supervisor {
    let mut sup = Supervisor::new(
        strategy,
        Intensity {
            max_restarts: 10,
            period: SECOND,
        },
    );
    for id in ["a", "b", "c"] {
        let actions = sup.add_child(ChildSpec::new(id, restart)).unwrap();
        assert_eq!(starts(&actions), vec![id]);
    }
    sup
}

/// Drives the stops the core asked for to completion, as a driver would.
fn complete_stops(sup: &mut Supervisor, actions: &[Action], now: Time) {
    for action in actions {
        if let Action::Stop { child, incarnation } = action {
            let more = sup.handle_exit(now, child, *incarnation, ExitReason::Normal);
            assert!(
                more.is_empty(),
                "a requested stop must not trigger anything: {more:?}"
            );
        }
    }
}

#[test]
fn every_strategy_policy_reason_and_position() {
    let names = ["a", "b", "c"];
    for strategy in [
        Strategy::OneForOne,
        Strategy::OneForAll,
        Strategy::RestForOne,
    ] {
        for restart in [Restart::Permanent, Restart::Transient, Restart::Temporary] {
            for failed in [false, true] {
                for pos in 0..3 {
                    let mut sup = three(strategy, restart);
                    let id = names[pos];
                    let reason = if failed {
                        ExitReason::Failed("boom".into())
                    } else {
                        ExitReason::Normal
                    };
                    let inc = incarnation(&sup, id);
                    let actions = sup.handle_exit(t(0), id, inc, reason);
                    let should_restart = match restart {
                        Restart::Permanent => true,
                        Restart::Transient => failed,
                        Restart::Temporary => false,
                    };
                    let ctx = format!("{strategy:?} {restart:?} failed={failed} child={id}");
                    if !should_restart {
                        assert!(actions.is_empty(), "{ctx}: {actions:?}");
                        let present = sup.children().any(|(s, _)| s.id == id);
                        assert_eq!(
                            present,
                            restart != Restart::Temporary,
                            "{ctx}: temporary specs are dropped"
                        );
                        continue;
                    }
                    let (expect_stops, expect_starts): (Vec<&str>, Vec<&str>) = match strategy {
                        Strategy::OneForOne => (vec![], vec![id]),
                        Strategy::OneForAll => (
                            names.iter().rev().copied().filter(|n| *n != id).collect(),
                            names.to_vec(),
                        ),
                        Strategy::RestForOne => (
                            names[pos + 1..].iter().rev().copied().collect(),
                            names[pos..].to_vec(),
                        ),
                    };
                    assert_eq!(stops(&actions), expect_stops, "{ctx}: stops, newest first");
                    assert_eq!(starts(&actions), expect_starts, "{ctx}: starts, in order");
                    // Stops come before starts.
                    let first_start = actions
                        .iter()
                        .position(|a| matches!(a, Action::Start { .. }));
                    let last_stop = actions
                        .iter()
                        .rposition(|a| matches!(a, Action::Stop { .. }));
                    if let (Some(s), Some(p)) = (first_start, last_stop) {
                        assert!(p < s, "{ctx}: {actions:?}");
                    }
                    complete_stops(&mut sup, &actions, t(0));
                    sup.check_invariants().unwrap();
                    for n in names {
                        assert!(matches!(
                            sup.children().find(|(s, _)| s.id == n).unwrap().1,
                            ChildStatus::Running(_)
                        ));
                    }
                }
            }
        }
    }
}

#[test]
fn rest_for_one_restarts_exactly_the_later_siblings() {
    let mut sup = Supervisor::new(
        Strategy::RestForOne,
        Intensity {
            max_restarts: 5,
            period: SECOND,
        },
    );
    for id in ["a", "b", "c", "d"] {
        sup.add_child(ChildSpec::new(id, Restart::Permanent))
            .unwrap();
    }
    let a_inc = incarnation(&sup, "a");
    let b_inc = incarnation(&sup, "b");
    let actions = sup.handle_exit(t(0), "b", b_inc, ExitReason::Failed("x".into()));
    assert_eq!(stops(&actions), vec!["d", "c"]);
    assert_eq!(starts(&actions), vec!["b", "c", "d"]);
    assert_eq!(
        incarnation(&sup, "a"),
        a_inc,
        "earlier siblings are untouched"
    );
}

#[test]
fn intensity_exceeded_stops_everything_newest_first_and_escalates() {
    let mut sup = Supervisor::new(
        Strategy::OneForOne,
        Intensity {
            max_restarts: 2,
            period: Duration::from_secs(10),
        },
    );
    for id in ["a", "b", "c"] {
        sup.add_child(ChildSpec::new(id, Restart::Permanent))
            .unwrap();
    }
    for i in 0..2 {
        let inc = incarnation(&sup, "b");
        let actions = sup.handle_exit(t(i), "b", inc, ExitReason::Failed("crash".into()));
        assert_eq!(
            starts(&actions),
            vec!["b"],
            "restart {i} is within intensity"
        );
    }
    let inc = incarnation(&sup, "b");
    let actions = sup.handle_exit(t(2), "b", inc, ExitReason::Failed("crash".into()));
    assert_eq!(stops(&actions), vec!["c", "a"]);
    assert!(starts(&actions).is_empty());
    assert!(matches!(actions.last(), Some(Action::Escalate { reason }) if reason.contains("`b`")));
    assert!(sup.has_escalated());
    sup.check_invariants().unwrap();
    assert_eq!(
        sup.add_child(ChildSpec::new("d", Restart::Permanent)),
        Err(SupervisorError::NotRunning)
    );
}

#[test]
fn restarts_outside_the_window_do_not_count() {
    let mut sup = Supervisor::new(
        Strategy::OneForOne,
        Intensity {
            max_restarts: 1,
            period: Duration::from_secs(5),
        },
    );
    sup.add_child(ChildSpec::new("a", Restart::Permanent))
        .unwrap();
    for i in 0..10 {
        let inc = incarnation(&sup, "a");
        let actions = sup.handle_exit(t(i * 6), "a", inc, ExitReason::Failed("x".into()));
        assert_eq!(
            starts(&actions),
            vec!["a"],
            "crash {i}, 6 s after the last, is tolerated"
        );
    }
    // Two within 5 s is one too many.
    let inc = incarnation(&sup, "a");
    let actions = sup.handle_exit(t(56), "a", inc, ExitReason::Failed("x".into()));
    assert!(matches!(actions.last(), Some(Action::Escalate { .. })));
}

#[test]
fn a_stale_exit_is_ignored() {
    let mut sup = three(Strategy::OneForAll, Restart::Permanent);
    let old_c = incarnation(&sup, "c");
    let b = incarnation(&sup, "b");
    let actions = sup.handle_exit(t(0), "b", b, ExitReason::Failed("x".into()));
    // The driver restarted c before c's exit report arrived.
    assert!(stops(&actions).contains(&"c"));
    let before = sup.clone();
    assert!(
        sup.handle_exit(t(0), "c", old_c, ExitReason::Failed("late".into()))
            .is_empty()
    );
    assert_eq!(
        format!("{:?}", before.children().collect::<Vec<_>>()),
        format!("{:?}", sup.children().collect::<Vec<_>>())
    );
    assert!(
        sup.handle_exit(t(0), "nobody", 1, ExitReason::Normal)
            .is_empty()
    );
}

#[test]
fn shutdown_stops_in_reverse_start_order_including_dynamic_children() {
    let mut sup = three(Strategy::OneForOne, Restart::Permanent);
    sup.add_child(ChildSpec::new("dyn", Restart::Transient))
        .unwrap();
    let actions = sup.shutdown();
    assert_eq!(stops(&actions), vec!["dyn", "c", "b", "a"]);
    // Exits during shutdown restart nothing, whatever the reason.
    let inc = incarnation(&sup, "a");
    assert!(
        sup.handle_exit(t(0), "a", inc, ExitReason::Failed("x".into()))
            .is_empty()
    );
}

#[test]
fn dynamic_children_can_be_terminated_restarted_and_deleted() {
    let mut sup = Supervisor::new(Strategy::OneForOne, Intensity::default());
    sup.add_child(ChildSpec::new("a", Restart::Permanent))
        .unwrap();
    assert_eq!(
        sup.add_child(ChildSpec::new("a", Restart::Permanent)),
        Err(SupervisorError::DuplicateChild("a".into()))
    );
    let actions = sup.terminate_child("a").unwrap();
    assert_eq!(stops(&actions), vec!["a"]);
    assert_eq!(
        sup.delete_child("a"),
        Err(SupervisorError::StillRunning("a".into()))
    );
    complete_stops(&mut sup, &actions, t(0));
    assert_eq!(starts(&sup.restart_child("a").unwrap()), vec!["a"]);
    let actions = sup.terminate_child("a").unwrap();
    complete_stops(&mut sup, &actions, t(0));
    sup.delete_child("a").unwrap();
    assert_eq!(sup.children().count(), 0);
    assert_eq!(
        sup.terminate_child("a"),
        Err(SupervisorError::NoSuchChild("a".into()))
    );
}

#[test]
fn a_failed_start_counts_as_a_crash() {
    let mut sup = Supervisor::new(
        Strategy::OneForOne,
        Intensity {
            max_restarts: 0,
            period: SECOND,
        },
    );
    sup.add_child(ChildSpec::new("a", Restart::Permanent))
        .unwrap();
    let inc = incarnation(&sup, "a");
    let actions = sup.handle_start_failed(t(0), "a", inc, "no config".into());
    assert!(matches!(actions.last(), Some(Action::Escalate { .. })));
}

#[derive(Clone, Debug)]
enum Event {
    Exit { child: usize, failed: bool },
    StaleExit { child: usize },
    Advance(u64),
    Add(Restart),
    Terminate(usize),
}

fn event() -> impl Gen<Value = Event> {
    prop_oneof![
        4 => (0..6usize, any::<bool>()).prop_map(|(child, failed)| Event::Exit { child, failed }),
        1 => (0..6usize).prop_map(|child| Event::StaleExit { child }),
        2 => (0..3000u64).prop_map(Event::Advance),
        1 => prop_oneof![Just(Restart::Permanent), Just(Restart::Transient), Just(Restart::Temporary)].prop_map(Event::Add),
        1 => (0..6usize).prop_map(Event::Terminate),
    ]
}

fn strategy() -> impl Gen<Value = super::Strategy> {
    prop_oneof![
        Just(super::Strategy::OneForOne),
        Just(super::Strategy::OneForAll),
        Just(super::Strategy::RestForOne)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever happens: invariants hold, every child has at most one live
    /// incarnation, restarts never exceed the intensity, and after an escalation
    /// nothing is started again.
    #[test]
    fn random_histories_keep_the_invariants(strat in strategy(), max in 0u32..4, events in proptest::collection::vec(event(), 1..80)) {
        let mut sup = Supervisor::new(strat, Intensity { max_restarts: max, period: Duration::from_secs(2) });
        let mut now = Time::ZERO;
        let mut added = 0;
        let mut escalated = false;
        for id in ["a", "b", "c"] {
            sup.add_child(ChildSpec::new(id, Restart::Permanent)).unwrap();
            added += 1;
        }
        for ev in events {
            let ids: Vec<String> = sup.children().map(|(s, _)| s.id.clone()).collect();
            let actions = match ev {
                Event::Exit { child, failed } if !ids.is_empty() => {
                    let id = ids[child % ids.len()].clone();
                    let status = sup.children().find(|(s, _)| s.id == id).map(|(_, st)| st);
                    match status {
                        Some(ChildStatus::Running(inc)) | Some(ChildStatus::Stopping(inc)) => {
                            let reason = if failed { ExitReason::Failed("x".into()) } else { ExitReason::Normal };
                            sup.handle_exit(now, &id, inc, reason)
                        }
                        _ => Vec::new(),
                    }
                }
                Event::StaleExit { child } if !ids.is_empty() => {
                    let id = ids[child % ids.len()].clone();
                    let before: Vec<_> = sup.children().map(|(s, st)| (s.id.clone(), st)).collect();
                    let actions = sup.handle_exit(now, &id, 0, ExitReason::Failed("stale".into()));
                    let after: Vec<_> = sup.children().map(|(s, st)| (s.id.clone(), st)).collect();
                    prop_assert!(actions.is_empty());
                    prop_assert_eq!(before, after);
                    actions
                }
                Event::Advance(ms) => { now = now + Duration::from_millis(ms); Vec::new() }
                Event::Add(restart) => {
                    added += 1;
                    sup.add_child(ChildSpec::new(format!("d{added}"), restart)).unwrap_or_default()
                }
                Event::Terminate(child) if !ids.is_empty() => sup.terminate_child(&ids[child % ids.len()]).unwrap_or_default(),
                _ => Vec::new(),
            };
            // At most one live incarnation per child: ids are unique (checked by the
            // invariants) and each carries a single status.
            if escalated {
                prop_assert!(!actions.iter().any(|a| matches!(a, Action::Start { .. })), "started after escalating: {:?}", actions);
            }
            if actions.iter().any(|a| matches!(a, Action::Escalate { .. })) {
                escalated = true;
                prop_assert!(sup.has_escalated());
            }
            // Carry out the stops, as the driver does, before the next event.
            for a in &actions {
                if let Action::Stop { child, incarnation } = a {
                    prop_assert!(sup.handle_exit(now, child, *incarnation, ExitReason::Normal).is_empty());
                }
            }
            sup.check_invariants().map_err(TestCaseError::fail)?;
        }
    }
}
