use super::*;
use plexus_vocab::identity::NodeKey;
use std::sync::atomic::{AtomicU64, Ordering};

/// The network the tests' views name.
const NET: &str = "test-net";
/// The submitting host's clock in the tests (ms since the epoch).
const NOW_MS: u64 = 1_000_000;

/// The scheduler, its invariants checked after every step.
#[derive(Clone, Default)]
struct Checked(Scheduler);

impl Checked {
    fn request(&mut self, signed: &Signed) -> Outcome {
        self.request_at(signed, NOW_MS)
    }

    fn request_at(&mut self, signed: &Signed, now_ms: u64) -> Outcome {
        let out = self.0.request(signed, now_ms);
        self.check();
        out
    }

    /// Hands a report straight to the scheduler's report logic (the tests' nodes
    /// are synthetic ids without keys; signing is tested on its own).
    fn report(&mut self, report: &Report) -> bool {
        let changed = self.0.report(report);
        self.check();
        changed
    }

    fn tick(&mut self, view: View) -> Outcome {
        let out = self.0.tick(view);
        self.check();
        out
    }

    fn state(&self) -> &State {
        self.0.state()
    }

    fn status(&self) -> Status {
        self.0.status()
    }

    fn check(&self) {
        if let Err(e) = self.0.check_invariants() {
            panic!("invariant broken: {e}\n{:#?}", self.0.state());
        }
    }
}

fn node(i: u64) -> NodeId {
    NodeId::synthetic(i)
}

fn info(i: u64, tags: &[&str], alive: bool) -> NodeInfo {
    NodeInfo {
        id: node(i),
        tags: tags
            .iter()
            .map(|t| (t.to_string(), String::new()))
            .collect(),
        capacity: Resources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            gpus: 0,
        },
        alive,
        draining: false,
    }
}

fn client() -> NodeKey {
    NodeKey::from_seed([9; 32])
}

fn view(nodes: Vec<NodeInfo>) -> View {
    View {
        me: Some(node(1)),
        nodes,
        locations: BTreeMap::new(),
        submitters: [client().node_id()].into(),
        members: (1..=5).map(node).collect(),
        kinds: ["tokenize", "word-count"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        network: NET.into(),
        partial: false,
    }
}

const JOB: &str = r#"
name = "wc"
[resources]
cpu = 1
[[stage]]
name = "parse"
kind = "tokenize"
to = ["count"]
replicas = 2
[[stage]]
name = "count"
kind = "word-count"
"#;

/// Sequence numbers for the client's requests: each request signed gets a higher
/// one than the last (tests sign and submit in order).
static SEQ: AtomicU64 = AtomicU64::new(1);

fn signed(r: Request) -> Signed {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    Signed::sign(r, NET, seq, NOW_MS + 60_000, &client()).unwrap()
}

fn deployed(s: &mut Checked) -> Vec<(String, NodeId)> {
    let out = s.request(&signed(Request::Deploy { spec: JOB.into() }));
    match out.response {
        Some(Response::Deployed { actors, .. }) => {
            assert_eq!(out.commands.len(), 3);
            assert!(out.changed);
            actors
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_signed_deploy_places_every_actor_spread_out() {
    let mut s = Checked::default();
    s.tick(view(vec![
        info(1, &[], true),
        info(2, &[], true),
        info(3, &[], true),
    ]));
    let actors = deployed(&mut s);
    assert_eq!(actors.len(), 3);
    let parse: Vec<NodeId> = actors
        .iter()
        .filter(|(k, _)| k.starts_with("wc/parse"))
        .map(|(_, n)| *n)
        .collect();
    assert_ne!(parse[0], parse[1], "replicas of a stage spread over nodes");
    // Deploying the same spec again is idempotent.
    let again = s.request(&signed(Request::Deploy { spec: JOB.into() }));
    assert!(matches!(again.response, Some(Response::Deployed { .. })));
    assert!(again.commands.is_empty() && !again.changed);
}

#[test]
fn forged_unauthorized_and_unsatisfiable_deploys_change_nothing() {
    let mut s = Checked::default();
    s.tick(view(vec![info(1, &[], true), info(2, &[], true)]));
    let before = s.state().clone();
    let mut forged = signed(Request::Deploy { spec: JOB.into() });
    forged.request = Request::Deploy {
        spec: JOB.replace("wc", "evil"),
    };
    let out = s.request(&forged);
    assert!(
        matches!(
            &out.response,
            Some(Response::Rejected(Rejection::BadSignature(_)))
        ),
        "{out:?}"
    );
    let stranger = Signed::sign(
        Request::Deploy { spec: JOB.into() },
        NET,
        1,
        NOW_MS + 60_000,
        &NodeKey::from_seed([7; 32]),
    )
    .unwrap();
    let out = s.request(&stranger);
    assert!(
        matches!(
            &out.response,
            Some(Response::Rejected(r @ Rejection::NotSubmitter { signer }))
                if *signer == stranger.signer && r.to_string().contains("not an allowlisted submitter")
        ),
        "{out:?}"
    );
    let gpu = JOB.replace("cpu = 1", "cpu = 1\ngpu = 1");
    let out = s.request(&signed(Request::Deploy { spec: gpu }));
    assert!(
        matches!(
            &out.response,
            Some(Response::Rejected(Rejection::Unsatisfiable {
                why: crate::placement::Unsatisfiable::Capacity { .. },
                ..
            }))
        ),
        "{out:?}"
    );
    let tagged = JOB.replace(
        "name = \"wc\"",
        "name = \"wc\"\nconstraints = \"region in [eu] && kyc\"",
    );
    let out = s.request(&signed(Request::Deploy { spec: tagged }));
    assert!(
        matches!(
            &out.response,
            Some(Response::Rejected(r @ Rejection::Unsatisfiable { .. }))
                if r.to_string().starts_with("unsatisfiable: ")
                    && r.to_string().contains("region in [eu] && kyc")
        ),
        "{out:?}"
    );
    // Three cpu-1 actors on one 4-cpu node fit; on one 2-cpu node they do not.
    let tight = JOB.replace("cpu = 1", "cpu = 3");
    let out = s.request(&signed(Request::Deploy { spec: tight }));
    assert!(
        matches!(
            &out.response,
            Some(Response::Rejected(Rejection::Unsatisfiable { .. }))
        ),
        "{out:?}"
    );
    // A spec that does not parse is the request's fault, with the parser's words.
    let out = s.request(&signed(Request::Deploy {
        spec: "name = 3".into(),
    }));
    match &out.response {
        Some(Response::Rejected(r @ Rejection::Spec(crate::job::JobError::Syntax(_)))) => {
            assert_eq!(r.fault(), crate::protocol::Fault::Request);
            assert!(r.to_string().starts_with("invalid job spec: "), "{r}");
        }
        other => panic!("{other:?}"),
    }
    assert!(out.commands.is_empty());
    assert_eq!(s.state(), &before, "nothing partially deployed");
}

#[test]
fn a_dead_hosts_actors_are_placed_elsewhere_and_dead_replicas_replaced() {
    let mut s = Checked::default();
    let nodes = vec![
        info(1, &[], true),
        info(2, &[], true),
        info(3, &[], true),
        info(4, &[], true),
    ];
    s.tick(view(nodes.clone()));
    let actors = deployed(&mut s);
    let mut v = view(nodes.clone());
    v.locations = actors.iter().cloned().collect();
    s.tick(v.clone());
    let (victim_key, victim) = actors[0].clone();
    let mut dead = nodes.clone();
    dead.iter_mut().find(|n| n.id == victim).unwrap().alive = false;
    let mut v2 = view(dead);
    v2.locations = actors
        .iter()
        .filter(|(_, n)| *n != victim)
        .cloned()
        .collect();
    let out = s.tick(v2);
    let activated: Vec<&Command> = out
        .commands
        .iter()
        .filter(|(n, c)| {
            *n != victim && matches!(c, Command::Activate { key, .. } if key.as_str() == victim_key)
        })
        .map(|(_, c)| c)
        .collect();
    assert_eq!(activated.len(), 1, "{:?}", out.commands);
    assert_ne!(s.state().actors[&victim_key].node, victim);
    // Actors whose replica set held the dead node get a new set.
    assert!(
        out.commands
            .iter()
            .any(|(_, c)| matches!(c, Command::Reconfigure { .. })),
        "{:?}",
        out.commands
    );
}

#[test]
fn drains_migrate_everything_off_and_joins_rebalance() {
    let mut s = Checked::default();
    let nodes = vec![info(1, &[], true), info(2, &[], true)];
    s.tick(view(nodes.clone()));
    let actors = deployed(&mut s);
    let mut v = view(nodes.clone());
    v.locations = actors.iter().cloned().collect();
    s.tick(v.clone());
    let drained = node(2);
    let drain = signed(Request::Drain { node: drained });
    assert!(matches!(
        s.request(&drain).response,
        Some(Response::Draining { .. })
    ));
    let out = s.tick(v.clone());
    let on_drained = actors.iter().filter(|(_, n)| *n == drained).count();
    let moves = out
        .commands
        .iter()
        .filter(|(n, c)| {
            *n == drained && matches!(c, Command::Migrate { to, .. } if *to != drained)
        })
        .count();
    assert_eq!(moves, on_drained);
    // Once moved, a fresh node joins: the busiest node hands it an actor.
    let mut v3 = view(vec![
        info(1, &[], true),
        info(2, &[], false),
        info(3, &[], true),
    ]);
    v3.locations = actors.iter().map(|(k, _)| (k.clone(), node(1))).collect();
    let out = s.tick(v3);
    assert!(
        out.commands
            .iter()
            .any(|(n, c)| *n == node(1)
                && matches!(c, Command::Migrate { to, .. } if *to == node(3))),
        "{:?}",
        out.commands
    );
}

#[test]
fn rebalancing_never_undoes_an_operators_migration() {
    let mut s = Checked::default();
    let nodes = vec![info(1, &[], true), info(2, &[], true), info(3, &[], true)];
    s.tick(view(nodes.clone()));
    let mut actors = deployed(&mut s);
    actors.sort();
    // The actor rebalancing would pick first (lowest key) goes, by an operator's
    // order, onto another actor's node: two there, none on its old one.
    let (moved, from) = actors[0].clone();
    let to = actors.iter().map(|(_, n)| *n).find(|n| *n != from).unwrap();
    let mut v = view(nodes.clone());
    v.locations = actors.iter().cloned().collect();
    s.tick(v.clone());
    let out = s.request(&signed(Request::Migrate {
        actor: moved.clone(),
        to,
    }));
    assert!(
        matches!(out.response, Some(Response::Migrating { .. })),
        "{:?}",
        out.response
    );
    v.locations.insert(moved.clone(), to);
    let mut rebalanced = Vec::new();
    for _ in 0..3 {
        let out = s.tick(v.clone());
        rebalanced.extend(out.commands.into_iter().filter_map(|(n, c)| match c {
            Command::Migrate { key, to } => Some((n, key.to_string(), to)),
            _ => None,
        }));
    }
    assert!(
        rebalanced.iter().all(|(_, key, _)| *key != moved),
        "the operator's move was undone: {rebalanced:?}"
    );
    // The imbalance is still evened out, with the actor nobody pinned.
    assert!(
        rebalanced
            .iter()
            .any(|(n, key, dest)| *n == to && *key != moved && *dest == from),
        "{rebalanced:?}"
    );
}

#[test]
fn stop_releases_every_actor_and_replica() {
    let mut s = Checked::default();
    s.tick(view(vec![
        info(1, &[], true),
        info(2, &[], true),
        info(3, &[], true),
    ]));
    deployed(&mut s);
    let out = s.request(&signed(Request::Stop { job: "wc".into() }));
    assert!(matches!(
        out.response,
        Some(Response::Stopped { actors: 3, .. })
    ));
    assert!(
        out.commands
            .iter()
            .all(|(_, c)| matches!(c, Command::Release { .. }))
    );
    assert!(out.commands.len() >= 3);
    assert!(s.state().actors.is_empty() && s.state().jobs.is_empty());
}

#[test]
fn migrate_requests_are_checked() {
    let mut s = Checked::default();
    s.tick(view(vec![
        info(1, &["a"], true),
        info(2, &[], true),
        info(3, &[], false),
    ]));
    let actors = deployed(&mut s);
    let (key, from) = actors[0].clone();
    let to = if from == node(1) { node(2) } else { node(1) };
    let out = s.request(&signed(Request::Migrate {
        actor: key.clone(),
        to,
    }));
    assert!(
        matches!(out.response, Some(Response::Migrating { .. })),
        "{out:?}"
    );
    assert_eq!(
        out.commands,
        vec![(
            from,
            Command::Migrate {
                key: DurableKey::new(&key).unwrap(),
                to
            }
        )]
    );
    let out = s.request(&signed(Request::Migrate {
        actor: key.clone(),
        to: node(3),
    }));
    assert_eq!(
        out.response,
        Some(Response::Rejected(Rejection::Unavailable { node: node(3) }))
    );
    let out = s.request(&signed(Request::Migrate {
        actor: "nope".into(),
        to,
    }));
    assert_eq!(
        out.response,
        Some(Response::Rejected(Rejection::UnknownActor {
            actor: "nope".into()
        }))
    );
    // Where it is already: the cluster's state, not the request, is in the way.
    let out = s.request(&signed(Request::Migrate {
        actor: key.clone(),
        to: from,
    }));
    match &out.response {
        Some(Response::Rejected(r @ Rejection::AlreadyThere { node, .. })) => {
            assert_eq!(*node, from);
            assert_eq!(r.fault(), crate::protocol::Fault::Cluster);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_a_current_report_of_the_newest_set_retires_older_sets() {
    let mut s = Checked::default();
    let nodes: Vec<NodeInfo> = (1..=5).map(|i| info(i, &[], true)).collect();
    s.tick(view(nodes.clone()));
    let actors = deployed(&mut s);
    let mut v = view(nodes.clone());
    v.locations = actors.iter().cloned().collect();
    s.tick(v.clone());
    // Kill a replica that hosts nothing, so every actor stays put.
    let hosts: BTreeSet<NodeId> = actors.iter().map(|(_, n)| *n).collect();
    let (key, victim) = s
        .state()
        .actors
        .iter()
        .find_map(|(k, p)| {
            let set = p.sets.last()?;
            let v = set.nodes().iter().find(|n| !hosts.contains(n))?;
            Some((k.clone(), *v))
        })
        .expect("some replica set holds a node that hosts nothing");
    let old = s.state().actors[&key].sets[0].clone();
    let mut dead = nodes.clone();
    dead.iter_mut().find(|n| n.id == victim).unwrap().alive = false;
    let mut v2 = view(dead);
    v2.locations = v.locations.clone();
    s.tick(v2);
    let sets = s.state().actors[&key].sets.clone();
    assert_eq!(sets.len(), 2, "joint: old and new");
    let new = sets[1].clone();
    let host = s.state().actors[&key].node;
    let report = |set: &ReplicaSet, round: u64| Report::Active {
        key: key.clone(),
        node: host,
        set: set.clone(),
        ballot: Ballot { round, node: host },
    };
    // An activation still on the old set keeps both.
    s.report(&report(&old, 2));
    assert_eq!(s.state().actors[&key].sets, vec![old.clone(), new.clone()]);
    // The newest set, reported, retires the old one.
    s.report(&report(&new, 3));
    assert_eq!(s.state().actors[&key].sets, vec![new.clone()]);
    // A late report from an older activation changes nothing.
    s.report(&report(&old, 2));
    assert_eq!(s.state().actors[&key].sets, vec![new]);
}

/// Four nodes, a deployed job, and one actor ordered from `from` to `to` (a node
/// that hosts nothing). Returns the scheduler, the view with every actor at home,
/// the actor's key, `from` and `to`.
fn one_move_ordered() -> (Checked, View, String, NodeId, NodeId) {
    let mut s = Checked::default();
    let nodes: Vec<NodeInfo> = (1..=4).map(|i| info(i, &[], true)).collect();
    s.tick(view(nodes.clone()));
    let actors = deployed(&mut s);
    let mut v = view(nodes.clone());
    v.locations = actors.iter().cloned().collect();
    s.tick(v.clone());
    let (key, from) = actors[0].clone();
    let to = nodes
        .iter()
        .map(|n| n.id)
        .find(|n| *n != from && actors.iter().all(|(_, h)| h != n))
        .unwrap();
    let out = s.request(&signed(Request::Migrate {
        actor: key.clone(),
        to,
    }));
    assert!(matches!(out.response, Some(Response::Migrating { .. })));
    (s, v, key, from, to)
}

#[test]
fn a_host_that_dies_during_a_move_is_restored_on_the_target_at_once() {
    let (mut s, v, key, from, to) = one_move_ordered();

    // While the host is alive and the actor is between homes, the move is awaited.
    let mut between = v.clone();
    between.locations.remove(&key);
    let out = s.tick(between.clone());
    assert!(
        !out.commands
            .iter()
            .any(|(_, c)| matches!(c, Command::Activate { key: k, .. } if k.as_str() == key)),
        "no rival activation while the move may finish: {:?}",
        out.commands
    );

    // The host dies mid-move: the target is told to serve it now, not after the
    // move's timeout, and nowhere else.
    let mut dead = between;
    dead.nodes.iter_mut().find(|n| n.id == from).unwrap().alive = false;
    let out = s.tick(dead);
    let activations: Vec<NodeId> = out
        .commands
        .iter()
        .filter(|(_, c)| matches!(c, Command::Activate { key: k, .. } if k.as_str() == key))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(activations, vec![to], "{:?}", out.commands);
    assert_eq!(s.state().actors[&key].node, to);
}

#[test]
fn a_move_the_host_did_not_start_is_ordered_again() {
    let (mut s, v, key, from, to) = one_move_ordered();
    let order = migrate_order(&key, from, to);
    // The host ignored it: the actor stays put. Not re-ordered at once...
    let mut repeats = Vec::new();
    for t in 1..=RETRY_TICKS + 1 {
        let out = s.tick(v.clone());
        if out.commands.contains(&order) {
            repeats.push(t);
        }
    }
    // ...but once the retry spacing has passed, exactly once.
    assert_eq!(repeats.len(), 1, "{repeats:?}");
    assert!(repeats[0] >= RETRY_TICKS - 1, "{repeats:?}");
    // Once it is at the target, nothing more is ordered.
    let mut arrived = v.clone();
    arrived.locations.insert(key.clone(), to);
    for _ in 0..2 * RETRY_TICKS {
        let out = s.tick(arrived.clone());
        assert!(
            !out.commands
                .iter()
                .any(|(_, c)| matches!(c, Command::Migrate { .. })),
            "{:?}",
            out.commands
        );
    }
}

/// Four nodes, the job deployed and running, one tick later: a healthy scheduler.
fn healthy() -> Scheduler {
    let mut s = Checked::default();
    let nodes: Vec<NodeInfo> = (1..=4).map(|i| info(i, &[], true)).collect();
    s.tick(view(nodes.clone()));
    let actors = deployed(&mut s);
    let mut v = view(nodes);
    v.locations = actors.into_iter().collect();
    s.tick(v);
    s.0
}

#[test]
fn each_broken_invariant_is_caught() {
    let good = healthy();
    assert_eq!(good.check_invariants(), Ok(()));
    let tick = good.state.tick;
    let key = "wc/count/0".to_string();
    let host = good.state.actors[&key].node;
    // A node that hosts nothing.
    let idle = (1..=4)
        .map(node)
        .find(|n| good.state.actors.values().all(|p| p.node != *n))
        .expect("four nodes, three actors");
    type Break = Box<dyn Fn(&mut Scheduler)>;
    let p = |f: fn(&mut Placement)| -> Break {
        Box::new(move |s: &mut Scheduler| f(s.state.actors.get_mut("wc/count/0").unwrap()))
    };
    let cases: Vec<(&str, Break)> = vec![
        (
            "durable view",
            Box::new(|s: &mut Scheduler| s.view.me = Some(node(9))),
        ),
        (
            "not an actor key",
            Box::new(|s: &mut Scheduler| {
                let copy = s.state.actors["wc/count/0"].clone();
                s.state.actors.insert(SCHEDULER_KEY.into(), copy);
            }),
        ),
        ("which is no job", p(|p| p.job = "ghost".into())),
        (
            "names no actor",
            Box::new(|s: &mut Scheduler| {
                let copy = s.state.actors["wc/count/0"].clone();
                s.state.actors.insert("wc/count/7".into(), copy);
            }),
        ),
        (
            "lacks its actor",
            Box::new(|s: &mut Scheduler| {
                s.state.actors.remove("wc/count/0");
            }),
        ),
        (
            "differs from its job's spec",
            p(|p| p.kind = "other".into()),
        ),
        ("replica sets", p(|p| p.sets.clear())),
        (
            "replica sets",
            p(|p| {
                let s = p.sets[0].clone();
                p.sets.extend([s.clone(), s]);
            }),
        ),
        ("in the future", p(|p| p.last_command = u64::MAX)),
        (
            "moves since tick",
            Box::new(move |s: &mut Scheduler| {
                let p = s.state.actors.get_mut("wc/count/0").unwrap();
                p.migrating = Some((idle, tick + 1));
            }),
        ),
        (
            "outlived its timeout",
            Box::new(move |s: &mut Scheduler| {
                s.state.tick += MIGRATION_TICKS + 1;
                let p = s.state.actors.get_mut("wc/count/0").unwrap();
                p.migrating = Some((idle, tick));
            }),
        ),
        (
            "where it is",
            Box::new(move |s: &mut Scheduler| {
                let p = s.state.actors.get_mut("wc/count/0").unwrap();
                p.migrating = Some((host, tick));
            }),
        ),
        (
            "not marked stranded",
            Box::new(|s: &mut Scheduler| {
                s.state.actors.get_mut("wc/count/0").unwrap().node = node(9);
            }),
        ),
        ("live, undrained host", p(|p| p.stranded = true)),
        ("over-committed", p(|p| p.resources.cpu_millis = 100_000)),
        (
            // Only through the room a move holds on its target.
            "over-committed",
            Box::new(move |s: &mut Scheduler| {
                for v in [&mut s.view, &mut s.state.view] {
                    let n = v.nodes.iter_mut().find(|n| n.id == idle).unwrap();
                    n.capacity.cpu_millis = 500;
                }
                let p = s.state.actors.get_mut("wc/count/0").unwrap();
                p.migrating = Some((idle, tick));
            }),
        ),
    ];
    for (want, break_it) in cases {
        let mut s = good.clone();
        break_it(&mut s);
        match s.check_invariants() {
            Err(e) => assert!(e.contains(want), "wanted `{want}`, got `{e}`"),
            Ok(()) => panic!("`{want}` was not caught"),
        }
    }
    // The allowed forms of the same states pass: a stranded actor on a dead host,
    // an actor where the registry saw it, a move that holds room it has.
    let mut stranded = good.clone();
    let p = stranded.state.actors.get_mut(&key).unwrap();
    p.node = node(9);
    p.stranded = true;
    assert_eq!(stranded.check_invariants(), Ok(()));
    let mut seen = good.clone();
    seen.state.actors.get_mut(&key).unwrap().node = node(9);
    for v in [&mut seen.view, &mut seen.state.view] {
        v.locations.insert(key.clone(), node(9));
    }
    assert_eq!(seen.check_invariants(), Ok(()));
    let mut moving = good.clone();
    moving.state.actors.get_mut(&key).unwrap().migrating = Some((idle, tick));
    assert_eq!(moving.check_invariants(), Ok(()));
}

#[test]
fn a_restored_scheduler_keeps_its_invariants_and_rejects_until_it_has_a_view() {
    let good = healthy();
    let snapshot = good.state().snapshot().unwrap();
    let back = Scheduler::new(State::restore(&snapshot).unwrap());
    assert_eq!(back.state(), good.state());
    assert_eq!(back.check_invariants(), Ok(()));
    let mut fresh = Scheduler::default();
    let out = fresh.request(&signed(Request::Status), NOW_MS);
    assert_eq!(out.response, Some(Response::Rejected(Rejection::Starting)));
    assert_eq!(
        Rejection::Starting.to_string(),
        "the scheduler is starting (no view of the cluster yet); retry"
    );
    assert_eq!(fresh.check_invariants(), Ok(()));
}

/// A drain that sends several actors off one node in one tick holds each one's
/// room on its target, so two never land where only one fits.
#[test]
fn a_drain_holds_room_on_each_target() {
    let mut s = Checked::default();
    let small = |i: u64, cpu: u64| NodeInfo {
        capacity: Resources {
            cpu_millis: cpu,
            memory_bytes: 8 << 30,
            gpus: 0,
        },
        ..info(i, &[], true)
    };
    // Node 1 takes all three (the others are down); nodes 2 and 3, back, have room
    // for one each.
    let mut nodes = vec![small(1, 4000), small(2, 1000), small(3, 1000)];
    nodes[1].alive = false;
    nodes[2].alive = false;
    s.tick(view(nodes.clone()));
    let actors = deployed(&mut s);
    assert!(actors.iter().all(|(_, n)| *n == node(1)), "{actors:?}");
    nodes[1].alive = true;
    nodes[2].alive = true;
    let mut v = view(nodes);
    v.locations = actors.into_iter().collect();
    s.tick(v.clone());
    let drain = signed(Request::Drain { node: node(1) });
    s.request(&drain);
    let out = s.tick(v);
    let targets: Vec<NodeId> = out
        .commands
        .iter()
        .filter_map(|(_, c)| match c {
            Command::Migrate { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    let distinct: BTreeSet<NodeId> = targets.iter().copied().collect();
    assert_eq!(targets.len(), 2, "{:?}", out.commands);
    assert_eq!(distinct, [node(2), node(3)].into(), "{:?}", out.commands);
}

mod model {
    //! The scheduler against a small model of a cluster that carries out its
    //! commands (or loses them), with nodes dying and coming back, requests of
    //! every kind, and restores from snapshots; invariants after every step.

    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;

    const JOBS: usize = 4;

    /// The jobs deployed: the usual one, a wider copy, a packed one with a
    /// constraint, and a big one of high priority.
    fn job(i: usize) -> String {
        match i {
            0 => JOB.into(),
            1 => JOB
                .replace("\"wc\"", "\"wide\"\ndurability = 3")
                .replace("cpu = 1", "cpu = \"250m\"")
                .replace("replicas = 2", "replicas = 4"),
            2 => r#"
name = "pk"
placement = "pack"
constraints = "eu"
[resources]
cpu = "500m"
[[stage]]
name = "s"
kind = "tokenize"
replicas = 3
"#
            .into(),
            _ => r#"
name = "big"
priority = 10
[resources]
cpu = 3
[[stage]]
name = "s"
kind = "word-count"
"#
            .into(),
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Deploy(usize),
        Stop(usize),
        Migrate(usize, u64),
        Drain(u64),
        Kill(u64),
        Revive(u64),
        Vanish(usize),
        Tick,
        Restore,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => (0..JOBS).prop_map(Step::Deploy),
            1 => (0..JOBS).prop_map(Step::Stop),
            2 => (0usize..16, 1u64..=5).prop_map(|(a, n)| Step::Migrate(a, n)),
            1 => (1u64..=5).prop_map(Step::Drain),
            1 => (1u64..=5).prop_map(Step::Kill),
            2 => (1u64..=5).prop_map(Step::Revive),
            1 => (0usize..16).prop_map(Step::Vanish),
            8 => Just(Step::Tick),
            1 => Just(Step::Restore),
        ]
    }

    struct World {
        nodes: Vec<NodeInfo>,
        /// Where each actor is active (the registry).
        registry: BTreeMap<String, NodeId>,
        round: u64,
        /// Which commands get lost, one bit each, in turn.
        losses: u64,
        sent: u32,
    }

    impl World {
        fn view(&self) -> View {
            let mut v = view(self.nodes.clone());
            v.me = self.nodes.iter().find(|n| n.alive).map(|n| n.id);
            v.locations = self.registry.clone();
            v
        }

        fn alive(&self, n: NodeId) -> bool {
            self.nodes.iter().any(|x| x.id == n && x.alive)
        }

        /// Carries out what `out` commands (unless lost), reporting activations.
        fn carry_out(&mut self, s: &mut Checked, out: Outcome) {
            for (at, command) in out.commands {
                self.sent = self.sent.wrapping_add(1);
                // A host may refuse an activation or a move (busy with another
                // move, a restore that failed); a release it always carries out
                // (commands travel on reliable streams, and a stopped job's actor
                // that lingered would be adopted by a redeploy of the same name:
                // the one way a node comes to run what it was not told).
                let refused = self.losses >> (self.sent % 64) & 1 == 1
                    && !matches!(command, Command::Release { .. });
                if refused || !self.alive(at) {
                    continue;
                }
                let (key, node, set) = match command {
                    Command::Activate { key, sets, .. } => {
                        (key, at, sets.last().cloned().expect("a set"))
                    }
                    Command::Migrate { key, to } => {
                        if self.registry.get(key.as_str()) != Some(&at) || !self.alive(to) {
                            continue;
                        }
                        let set = s
                            .state()
                            .actors
                            .get(key.as_str())
                            .and_then(|p| p.sets.last().cloned());
                        let Some(set) = set else { continue };
                        (key, to, set)
                    }
                    Command::Reconfigure { key, set } => {
                        if self.registry.get(key.as_str()) != Some(&at) {
                            continue;
                        }
                        (key, at, set)
                    }
                    Command::Release { key } => {
                        if self.registry.get(key.as_str()) == Some(&at) {
                            self.registry.remove(key.as_str());
                        }
                        continue;
                    }
                };
                self.registry.insert(key.to_string(), node);
                self.round += 1;
                let report = Report::Active {
                    key: key.to_string(),
                    node,
                    set,
                    ballot: Ballot {
                        round: self.round,
                        node,
                    },
                };
                s.report(&report);
            }
        }
    }

    fn world(losses: u64) -> World {
        let tags: [&[&str]; 5] = [&["eu"], &[], &["eu"], &[], &["eu"]];
        let cpu = [4000, 1000, 2000, 3000, 1500];
        let nodes = (0..5)
            .map(|i| NodeInfo {
                capacity: Resources {
                    cpu_millis: cpu[i],
                    memory_bytes: 8 << 30,
                    gpus: 0,
                },
                ..info(i as u64 + 1, tags[i], true)
            })
            .collect();
        World {
            nodes,
            registry: BTreeMap::new(),
            round: 0,
            losses,
            sent: 0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn invariants_hold_after_every_step(
            steps in prop::collection::vec(step(), 1..120),
            losses in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            let mut w = world(losses);
            let mut s = Checked::default();
            for step in steps {
                match step {
                    Step::Deploy(j) => {
                        let out = s.request(&signed(Request::Deploy { spec: job(j) }));
                        // A new job is placed only on live, undrained nodes (the
                        // same spec again answers where its actors are now).
                        if let Some(Response::Deployed { actors, .. }) = &out.response
                            && out.changed
                        {
                            for (_, n) in actors {
                                prop_assert!(s.0.alive(n));
                                prop_assert!(!s.state().draining.contains_key(n));
                            }
                        }
                        w.carry_out(&mut s, out);
                    }
                    Step::Stop(j) => {
                        let name = JobSpec::from_toml(&job(j)).unwrap().name;
                        let before = s.state().jobs.contains_key(&name);
                        let out = s.request(&signed(Request::Stop { job: name.clone() }));
                        match &out.response {
                            // A scheduler with no live host in its view (every node
                            // killed) refuses everything: the job stays until it can act.
                            Some(Response::Rejected(Rejection::Starting)) => {
                                prop_assert_eq!(s.state().jobs.contains_key(&name), before);
                            }
                            _ => prop_assert!(!s.state().jobs.contains_key(&name), "{:?}", out.response),
                        }
                        w.carry_out(&mut s, out);
                    }
                    Step::Migrate(a, n) => {
                        let keys: Vec<String> = s.state().actors.keys().cloned().collect();
                        let actor = keys.get(a % keys.len().max(1)).cloned().unwrap_or("x/y/0".into());
                        let out = s.request(&signed(Request::Migrate { actor, to: node(n) }));
                        w.carry_out(&mut s, out);
                    }
                    Step::Drain(n) => {
                        let out = s.request(&signed(Request::Drain { node: node(n) }));
                        w.carry_out(&mut s, out);
                    }
                    Step::Kill(n) => {
                        w.nodes.iter_mut().filter(|x| x.id == node(n)).for_each(|x| x.alive = false);
                        w.registry.retain(|_, at| *at != node(n));
                    }
                    Step::Revive(n) => {
                        w.nodes.iter_mut().filter(|x| x.id == node(n)).for_each(|x| x.alive = true);
                    }
                    Step::Vanish(a) => {
                        // An activation stops on its own (a failed hand-off, a
                        // lost lease): the actor runs nowhere until re-placed.
                        let keys: Vec<String> = w.registry.keys().cloned().collect();
                        if let Some(k) = keys.get(a % keys.len().max(1)) {
                            w.registry.remove(k);
                        }
                    }
                    Step::Tick => {
                        let out = s.tick(w.view());
                        w.carry_out(&mut s, out);
                    }
                    Step::Restore => {
                        let snapshot = s.state().snapshot().unwrap();
                        s = Checked(Scheduler::new(State::restore(&snapshot).unwrap()));
                        s.check();
                    }
                }
            }
        }
    }
}

/// A captured deploy or stop is refused when replayed, as is one past its expiry,
/// signed for another network or too far ahead; none of them changes anything.
#[test]
fn replayed_expired_and_foreign_requests_are_refused_and_change_nothing() {
    let mut s = Checked::default();
    s.tick(view(vec![info(1, &[], true), info(2, &[], true)]));
    let deploy = signed(Request::Deploy { spec: JOB.into() });
    assert!(matches!(
        s.request(&deploy).response,
        Some(Response::Deployed { .. })
    ));
    let stop = signed(Request::Stop { job: "wc".into() });
    assert!(matches!(
        s.request(&stop).response,
        Some(Response::Stopped { .. })
    ));
    let refused = |s: &mut Checked, r: &Signed, now_ms: u64| {
        let before = s.state().clone();
        let out = s.request_at(r, now_ms);
        assert!(!out.changed && out.commands.is_empty(), "{out:?}");
        assert_eq!(s.state(), &before);
        match out.response {
            Some(Response::Rejected(why)) => why,
            other => panic!("{other:?}"),
        }
    };
    // The captured deploy, replayed after the stop, would bring the job back.
    let why = refused(&mut s, &deploy, NOW_MS);
    assert!(
        matches!(why, Rejection::Replayed { seq, last, .. } if seq == deploy.seq && last == stop.seq),
        "{why:?}"
    );
    assert_eq!(why.fault(), crate::protocol::Fault::Request);
    assert!(matches!(
        refused(&mut s, &stop, NOW_MS),
        Rejection::Replayed { .. }
    ));
    // A fresh request past its expiry.
    let late = signed(Request::Deploy { spec: JOB.into() });
    assert!(matches!(
        refused(&mut s, &late, late.expires_ms + 1),
        Rejection::Expired { .. }
    ));
    // Valid too long.
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let long = Signed::sign(
        Request::Deploy { spec: JOB.into() },
        NET,
        seq,
        NOW_MS + crate::protocol::VALIDITY_MAX_MS + 1,
        &client(),
    )
    .unwrap();
    assert!(matches!(
        refused(&mut s, &long, NOW_MS),
        Rejection::ExpiryTooFar { .. }
    ));
    // Signed for another network.
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let foreign = Signed::sign(
        Request::Deploy { spec: JOB.into() },
        "other-net",
        seq,
        NOW_MS + 60_000,
        &client(),
    )
    .unwrap();
    assert!(matches!(
        refused(&mut s, &foreign, NOW_MS),
        Rejection::WrongNetwork { .. }
    ));
    // The late one, within its expiry, still deploys (it was never applied).
    assert!(matches!(
        s.request(&late).response,
        Some(Response::Deployed { .. })
    ));
}

/// A report about node X is taken only when X signed it.
#[test]
fn reports_are_taken_only_from_the_node_they_describe() {
    let host_key = NodeKey::from_seed([21; 32]);
    let liar_key = NodeKey::from_seed([22; 32]);
    let (host, liar) = (host_key.node_id(), liar_key.node_id());
    let mut s = Checked::default();
    let mut v = view(vec![
        NodeInfo {
            id: host,
            ..info(1, &[], true)
        },
        NodeInfo {
            id: liar,
            ..info(2, &[], true)
        },
    ]);
    v.members.extend([host, liar]);
    s.tick(v.clone());
    let actors = deployed(&mut s);
    let (key, at) = actors[0].clone();
    let other = if at == host { liar } else { host };
    let other_key = if at == host { &liar_key } else { &host_key };
    v.locations = actors.iter().cloned().collect();
    s.tick(v);
    let set = s.state().actors[&key].sets[0].clone();
    let claim = |about: NodeId, key_: &NodeKey| {
        let r = Report::Active {
            key: key.clone(),
            node: about,
            set: set.clone(),
            ballot: Ballot {
                round: 99,
                node: about,
            },
        };
        Signed::sign(Request::Report(r), NET, 1, 0, key_).unwrap()
    };
    // `other` speaks for the actor's host `at`.
    let before = s.state().clone();
    let out = s.request(&claim(at, other_key));
    assert!(
        matches!(
            out.response,
            Some(Response::Rejected(Rejection::NotTheReporter { signer, node })) if signer == other && node == at
        ),
        "{out:?}"
    );
    assert_eq!(s.state(), &before);
    // The same claim by the client key (a submitter, not the node) is refused too.
    let out = s.request(&claim(at, &client()));
    assert!(
        matches!(out.response, Some(Response::Rejected(_))),
        "{out:?}"
    );
    assert_eq!(s.state(), &before);
    // `other` speaking for itself is heard.
    let out = s.request(&claim(other, other_key));
    assert_eq!(out.response, Some(Response::Noted));
    assert_eq!(s.state().actors[&key].node, other);
}

/// A scheduler state written before requests carried sequences (schema 2) is read:
/// everything but the new fields carried over.
#[test]
fn a_schema_2_state_is_upgraded() {
    let good = healthy();
    let st = good.state();
    let old = StateV2 {
        jobs: st.jobs.clone(),
        actors: st.actors.clone(),
        draining: st.draining.clone(),
        tick: st.tick,
        view: ViewV2 {
            me: st.view.me,
            nodes: st.view.nodes.clone(),
            locations: st.view.locations.clone(),
            submitters: st.view.submitters.clone(),
            members: st.view.members.clone(),
            kinds: st.view.kinds.clone(),
        },
    };
    let snapshot = Snapshot {
        schema_version: 2,
        bytes: plexus_actors::codec::encode_body(&old).unwrap(),
    };
    let back = State::restore(&snapshot).unwrap();
    let mut expected = st.clone();
    expected.view.network = String::new();
    expected.seqs.clear();
    assert_eq!(back, expected);
    let v1 = Snapshot {
        schema_version: 1,
        bytes: snapshot.bytes,
    };
    assert!(matches!(
        State::restore(&v1),
        Err(RestoreError::NoUpgrade { found: 1, .. })
    ));
}

/// A constrained actor's replicas are kept on nodes meeting its constraints too:
/// its state is the data the constraint protects. Before, replica sets were drawn
/// from every live node, so a `kyc` actor's state landed on untagged operators.
#[test]
fn replicas_of_a_constrained_actor_stay_on_nodes_meeting_it() {
    let mut s = Checked::default();
    let kyc = [node(1), node(2), node(3)];
    s.tick(view(vec![
        info(1, &["kyc"], true),
        info(2, &["kyc"], true),
        info(3, &["kyc"], true),
        info(4, &[], true),
        info(5, &[], true),
    ]));
    let spec = "name = \"k\"\ndurability = 3\nconstraints = \"kyc\"\n[[stage]]\nname = \"a\"\nkind = \"word-count\"\nreplicas = 4\n";
    let out = s.request(&signed(Request::Deploy { spec: spec.into() }));
    assert!(
        matches!(out.response, Some(Response::Deployed { .. })),
        "{:?}",
        out.response
    );
    assert_eq!(out.commands.len(), 4);
    for (host, command) in &out.commands {
        assert!(kyc.contains(host), "hosted on a kyc node: {host}");
        let Command::Activate { sets, .. } = command else {
            panic!("{command:?}");
        };
        for set in sets {
            assert_eq!(set.nodes().len(), 3, "full durability from the kyc nodes");
            assert!(
                set.nodes().iter().all(|n| kyc.contains(n)),
                "replicas only on kyc nodes: {set:?}"
            );
        }
    }
}

#[test]
fn a_host_that_cannot_start_a_move_says_so_and_gets_the_order_again_at_the_next_tick() {
    let (mut s, v, key, from, to) = one_move_ordered();
    let order = migrate_order(&key, from, to);
    let failed = |node: NodeId, to: NodeId, started: bool| Report::MoveFailed {
        key: key.clone(),
        node,
        to,
        started,
        why: "the actor is still restoring here".into(),
    };
    // From a node that does not host it, or about another target: ignored.
    assert!(!s.report(&failed(to, to, false)));
    assert!(!s.report(&failed(from, from, false)));
    assert!(!s.tick(v.clone()).commands.contains(&order));
    // From its host: ordered again at the next tick, well before RETRY_TICKS.
    assert!(!s.report(&failed(from, to, false)));
    assert!(s.tick(v.clone()).commands.contains(&order));
    assert!(!s.tick(v.clone()).commands.contains(&order), "once");
    let a = actor_status(&s, &key);
    assert_eq!(a.moving_to, Some(to), "still under way");
    assert!(
        a.move_failed
            .as_deref()
            .is_some_and(|w| w.contains("restoring")),
        "{a:?}"
    );
}

#[test]
fn a_move_the_target_refused_says_why_at_once_and_is_retried_with_the_usual_spacing() {
    let (mut s, v, key, from, to) = one_move_ordered();
    let order = migrate_order(&key, from, to);
    let failed = Report::MoveFailed {
        key: key.clone(),
        node: from,
        to,
        started: true,
        why: "the target refused the handoff: this node hosts 1 actors already".into(),
    };
    s.report(&failed);
    let a = actor_status(&s, &key);
    assert_eq!(a.moving_to, Some(to));
    assert!(
        a.move_failed
            .as_deref()
            .is_some_and(|w| w.contains("refused the handoff")),
        "{a:?}"
    );
    // Each try pauses the actor: not re-ordered at the next tick, only once the
    // retry spacing has passed.
    let mut repeats = Vec::new();
    for t in 1..=RETRY_TICKS + 1 {
        if s.tick(v.clone()).commands.contains(&order) {
            repeats.push(t);
        }
    }
    assert_eq!(repeats.len(), 1, "{repeats:?}");
    assert!(repeats[0] >= RETRY_TICKS - 1, "{repeats:?}");
    // Past the move's deadline it is given up, and the note stays.
    for _ in 0..MIGRATION_TICKS {
        s.tick(v.clone());
    }
    let a = actor_status(&s, &key);
    assert_eq!(a.moving_to, None);
    assert!(a.move_failed.is_some());
    // A later move that lands clears it.
    let mut arrived = v.clone();
    arrived.locations.insert(key.clone(), to);
    s.tick(arrived);
    let a = actor_status(&s, &key);
    assert_eq!(a.move_failed, None);
}

/// What the status says of actor `key`.
fn actor_status(s: &Checked, key: &str) -> ActorStatus {
    let status = s.status();
    status
        .actors
        .into_iter()
        .find(|a| a.key == key)
        .expect("the actor is listed")
}

/// The scheduler's order to `from` to move `key` to `to`.
fn migrate_order(key: &str, from: NodeId, to: NodeId) -> (NodeId, Command) {
    let key = DurableKey::new(key).unwrap();
    (from, Command::Migrate { key, to })
}

/// A schema 3 state (before `View::partial`) is read: a full registry's view.
#[test]
fn a_schema_3_state_is_upgraded() {
    let good = healthy();
    let st = good.state();
    let old = StateV3 {
        jobs: st.jobs.clone(),
        actors: st.actors.clone(),
        draining: st.draining.clone(),
        tick: st.tick,
        view: ViewV3 {
            me: st.view.me,
            nodes: st.view.nodes.clone(),
            locations: st.view.locations.clone(),
            submitters: st.view.submitters.clone(),
            members: st.view.members.clone(),
            kinds: st.view.kinds.clone(),
            network: st.view.network.clone(),
        },
        seqs: st.seqs.clone(),
    };
    let snapshot = Snapshot {
        schema_version: 3,
        bytes: plexus_actors::codec::encode_body(&old).unwrap(),
    };
    assert!(!st.view.partial);
    assert_eq!(&State::restore(&snapshot).unwrap(), st);
}

/// An `Active` report for `key` from `at`, under the actor's current set.
fn active(s: &Checked, key: &str, at: NodeId) -> Report {
    let p = &s.state().actors[key];
    Report::Active {
        key: key.to_string(),
        node: at,
        set: p.sets.last().unwrap().clone(),
        ballot: p.ballot,
    }
}

/// The commands of `out` to activate an actor.
fn activations(out: &Outcome) -> Vec<(NodeId, String)> {
    out.commands
        .iter()
        .filter_map(|(n, c)| match c {
            Command::Activate { key, .. } => Some((*n, key.to_string())),
            _ => None,
        })
        .collect()
}

/// With a sharded registry the scheduler's node holds few names: a host's fresh
/// report says where an actor runs, silence past the reports' freshness means
/// inactive (and the activation is ordered again), and the actors a scheduler
/// just restored has heard nothing of yet are left as they were.
#[test]
fn with_a_partial_view_reports_stand_in_for_names_not_held() {
    let nodes: Vec<NodeInfo> = (1..=4).map(|i| info(i, &[], true)).collect();
    let mut partial = view(nodes.clone());
    partial.partial = true;
    let mut s = Checked::default();
    s.tick(partial.clone());
    let actors = deployed(&mut s);
    // Every host reports its actor; the registry here holds none of the names.
    for (key, at) in &actors {
        let r = active(&s, key, *at);
        s.report(&r);
    }
    let out = s.tick(partial.clone());
    assert!(activations(&out).is_empty(), "{out:?}");
    assert!(s.state().actors.values().all(|p| p.active));
    // The same silence with a full view is inactivity.
    let mut full = s.clone();
    full.tick(view(nodes.clone()));
    assert!(full.state().actors.values().all(|p| !p.active));
    // Reports kept coming for two actors, not for the third: once its last
    // report is stale it is inactive, and its activation is ordered again.
    let (quiet, quiet_at) = actors[0].clone();
    let mut reordered = None;
    for _ in 0..(REPORT_FRESH_TICKS + RETRY_TICKS + 1) {
        for (key, at) in &actors[1..] {
            let r = active(&s, key, *at);
            s.report(&r);
        }
        let out = s.tick(partial.clone());
        if let Some(a) = activations(&out).into_iter().next() {
            reordered = Some(a);
            break;
        }
        assert_eq!(
            s.state().actors[&quiet].active,
            s.0.heard[&quiet].1 + REPORT_FRESH_TICKS >= s.state().tick,
        );
    }
    assert_eq!(reordered, Some((quiet_at, quiet.clone())));
    assert!(actors[1..].iter().all(|(k, _)| s.state().actors[k].active));

    // A scheduler restored from this state has heard nothing: for its first
    // ticks it leaves every actor as it was (no activation ordered), unless the
    // actor's host is down, which it acts on at once.
    // One of them was moving, and its move's deadline passes at the first tick:
    // the move is forgotten all the same (the checked invariants say so).
    let mut state = s.state().clone();
    let (moving, moving_at) = actors[2].clone();
    let idle = (1..=4)
        .map(node)
        .find(|n| state.actors.values().all(|p| p.node != *n))
        .expect("four nodes, three actors");
    let since = state.tick;
    state.tick += MIGRATION_TICKS;
    state.actors.get_mut(&moving).unwrap().migrating = Some((idle, since));
    let mut restored = Checked(Scheduler::new(state));
    let before = restored.state().actors.clone();
    let out = restored.tick(partial.clone());
    assert!(activations(&out).is_empty(), "{out:?}");
    assert_eq!(
        restored
            .state()
            .actors
            .values()
            .map(|p| p.active)
            .collect::<Vec<_>>(),
        before.values().map(|p| p.active).collect::<Vec<_>>(),
    );
    assert_eq!(restored.state().actors[&moving].migrating, None);
    assert_eq!(restored.state().actors[&moving].node, moving_at);
    let (victim, victim_at) = actors[1].clone();
    let mut down = partial.clone();
    for n in &mut down.nodes {
        if n.id == victim_at {
            n.alive = false;
        }
    }
    let out = restored.tick(down.clone());
    let placed = activations(&out);
    assert_eq!(placed.len(), 1, "{out:?}");
    assert_eq!(placed[0].1, victim);
    assert_ne!(placed[0].0, victim_at);
    // Past its first ticks, the silence is inactivity here too.
    let mut ordered = false;
    for _ in 0..(REPORT_FRESH_TICKS + RETRY_TICKS) {
        ordered |= !activations(&restored.tick(down.clone())).is_empty();
    }
    assert!(
        ordered,
        "silent actors are activated again once the grace is over"
    );
}

/// With a sharded registry, an actor no job owns is found from its host's
/// report and released there (at most once per retry period); with a full
/// registry the tick finds it, and a report alone releases nothing.
#[test]
fn with_a_partial_view_a_reported_orphan_is_released_on_its_reporter() {
    let nodes: Vec<NodeInfo> = (1..=4).map(|i| info(i, &[], true)).collect();
    let mut partial = view(nodes.clone());
    partial.partial = true;
    let mut s = Checked::default();
    s.tick(partial.clone());
    let actors = deployed(&mut s);
    let (key, at) = actors[0].clone();
    let orphan = Report::Active {
        key: "gone/relay/0".into(),
        node: node(3),
        set: s.state().actors[&key].sets[0].clone(),
        ballot: Ballot::ZERO,
    };
    let released = |c: &Option<(NodeId, Command)>| match c {
        Some((n, Command::Release { key })) => Some((*n, key.to_string())),
        _ => None,
    };
    assert_eq!(
        released(&s.0.orphan_reported(&orphan)),
        Some((node(3), "gone/relay/0".to_string()))
    );
    assert_eq!(s.0.orphan_reported(&orphan), None, "not again at once");
    // A placed actor's report is no orphan, nor is the scheduler's own.
    assert_eq!(s.0.orphan_reported(&active(&s, &key, at)), None);
    let mut own = orphan.clone();
    if let Report::Active { key, .. } = &mut own {
        *key = SCHEDULER_KEY.into();
    }
    assert_eq!(s.0.orphan_reported(&own), None);
    // After the retry period it is released again.
    for _ in 0..RETRY_TICKS {
        s.tick(partial.clone());
    }
    assert!(released(&s.0.orphan_reported(&orphan)).is_some());
    // A full registry: the report releases nothing.
    let mut full = Checked::default();
    full.tick(view(nodes));
    assert_eq!(full.0.orphan_reported(&orphan), None);
}

/// With a partial view a report is where an actor runs, so one from before a
/// move must not undo it: a report of the actor's current ballot from a node
/// other than its planned host is ignored (a move reports a higher ballot), and
/// a higher ballot from anywhere is taken.
#[test]
fn with_a_partial_view_a_report_from_before_a_move_is_ignored() {
    let nodes: Vec<NodeInfo> = (1..=4).map(|i| info(i, &[], true)).collect();
    let mut partial = view(nodes.clone());
    partial.partial = true;
    let mut s = Checked::default();
    s.tick(partial.clone());
    let actors = deployed(&mut s);
    let (key, at) = actors[0].clone();
    let first = Ballot { round: 3, node: at };
    let mut r = active(&s, &key, at);
    if let Report::Active { ballot, .. } = &mut r {
        *ballot = first;
    }
    s.report(&r);
    let elsewhere = (1..=4).map(node).find(|n| *n != at).unwrap();
    let mut stale = r.clone();
    if let Report::Active { node, .. } = &mut stale {
        *node = elsewhere;
    }
    assert!(
        !s.report(&stale),
        "the same ballot from elsewhere moves nothing"
    );
    assert_eq!(s.state().actors[&key].node, at);
    s.tick(partial.clone());
    assert_eq!(
        s.0.reported_at(&key, s.state().tick, &s.0.live_nodes()),
        Some(at)
    );
    // With a full view the registry decides at the tick, and the report is taken
    // as before.
    let mut full = s.clone();
    full.0.view.partial = false;
    full.0.state.view.partial = false;
    assert!(full.report(&stale));
    assert_eq!(full.state().actors[&key].node, elsewhere);
    // A move: the new host reports a higher ballot.
    let mut moved = stale.clone();
    if let Report::Active { ballot, .. } = &mut moved {
        *ballot = Ballot {
            round: 4,
            node: elsewhere,
        };
    }
    assert!(s.report(&moved));
    assert_eq!(s.state().actors[&key].node, elsewhere);
}
