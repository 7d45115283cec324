use super::*;
use plexus_vocab::identity::NodeKey;

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

fn signed(r: Request) -> Signed {
    Signed::sign(r, 1, &client()).unwrap()
}

fn deployed(s: &mut Scheduler) -> Vec<(String, NodeId)> {
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
    let mut s = Scheduler::default();
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
    let mut s = Scheduler::default();
    s.tick(view(vec![info(1, &[], true), info(2, &[], true)]));
    let before = s.state().clone();
    let mut forged = signed(Request::Deploy { spec: JOB.into() });
    forged.request = Request::Deploy {
        spec: JOB.replace("wc", "evil"),
    };
    let out = s.request(&forged);
    assert!(
        matches!(&out.response, Some(Response::Rejected { reason }) if reason.contains("signature")),
        "{out:?}"
    );
    let stranger = Signed::sign(
        Request::Deploy { spec: JOB.into() },
        1,
        &NodeKey::from_seed([7; 32]),
    )
    .unwrap();
    let out = s.request(&stranger);
    assert!(
        matches!(&out.response, Some(Response::Rejected { reason }) if reason.contains("submitter")),
        "{out:?}"
    );
    let gpu = JOB.replace("cpu = 1", "cpu = 1\ngpu = 1");
    let out = s.request(&signed(Request::Deploy { spec: gpu }));
    assert!(
        matches!(&out.response, Some(Response::Rejected { reason }) if reason.contains("unsatisfiable")),
        "{out:?}"
    );
    let tagged = JOB.replace(
        "name = \"wc\"",
        "name = \"wc\"\nconstraints = \"region in [eu] && kyc\"",
    );
    let out = s.request(&signed(Request::Deploy { spec: tagged }));
    assert!(
        matches!(&out.response, Some(Response::Rejected { reason }) if reason.contains("region in [eu] && kyc")),
        "{out:?}"
    );
    // Three cpu-1 actors on one 4-cpu node fit; on one 2-cpu node they do not.
    let tight = JOB.replace("cpu = 1", "cpu = 3");
    let out = s.request(&signed(Request::Deploy { spec: tight }));
    assert!(
        matches!(&out.response, Some(Response::Rejected { .. })),
        "{out:?}"
    );
    assert!(out.commands.is_empty());
    assert_eq!(s.state(), &before, "nothing partially deployed");
}

#[test]
fn a_dead_hosts_actors_are_placed_elsewhere_and_dead_replicas_replaced() {
    let mut s = Scheduler::default();
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
    let mut s = Scheduler::default();
    let nodes = vec![info(1, &[], true), info(2, &[], true)];
    s.tick(view(nodes.clone()));
    let actors = deployed(&mut s);
    let mut v = view(nodes.clone());
    v.locations = actors.iter().cloned().collect();
    s.tick(v.clone());
    let drained = node(2);
    let drain = Signed::sign(Request::Drain { node: drained }, 1, &client()).unwrap();
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
fn stop_releases_every_actor_and_replica() {
    let mut s = Scheduler::default();
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
    let mut s = Scheduler::default();
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
    assert!(matches!(out.response, Some(Response::Rejected { .. })));
    let out = s.request(&signed(Request::Migrate {
        actor: "nope".into(),
        to,
    }));
    assert!(matches!(out.response, Some(Response::Rejected { .. })));
}

#[test]
fn only_a_current_report_of_the_newest_set_retires_older_sets() {
    let mut s = Scheduler::default();
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
    let report = |set: &ReplicaSet, round: u64| {
        signed(Request::Report(Report::Active {
            key: key.clone(),
            node: host,
            set: set.clone(),
            ballot: Ballot { round, node: host },
        }))
    };
    // An activation still on the old set keeps both.
    s.request(&report(&old, 2));
    assert_eq!(s.state().actors[&key].sets, vec![old.clone(), new.clone()]);
    // The newest set, reported, retires the old one.
    s.request(&report(&new, 3));
    assert_eq!(s.state().actors[&key].sets, vec![new.clone()]);
    // A late report from an older activation changes nothing.
    s.request(&report(&old, 2));
    assert_eq!(s.state().actors[&key].sets, vec![new]);
}

/// Four nodes, a deployed job, and one actor ordered from `from` to `to` (a node
/// that hosts nothing). Returns the scheduler, the view with every actor at home,
/// the actor's key, `from` and `to`.
fn one_move_ordered() -> (Scheduler, View, String, NodeId, NodeId) {
    let mut s = Scheduler::default();
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
    let order = (
        from,
        Command::Migrate {
            key: DurableKey::new(&key).unwrap(),
            to,
        },
    );
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
