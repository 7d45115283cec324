//! The durable-actor protocol end to end over a deterministic in-memory network:
//! commits and acks, pipelines, live migration under load, host crashes, split
//! brain and replica-set changes. The simulator sweeps the same code under random
//! faults; these are the named scenarios.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_actors::{NodeId, Time};
use plexus_durable::node::{DurableNode, NodeConfig, NodeEvent};
use plexus_durable::stream::StreamEvent;
use plexus_durable::wire::HandedRecord;
use plexus_durable::{
    ActivationConfig, ActivationEvent, Applied, Ballot, Deactivation, DurableKey, DurableMsg,
    MemStore, Output, ReplicaSet,
};

mod support;
use support::{App, Standbys, key, n, set};

struct Net {
    now: Time,
    nodes: BTreeMap<NodeId, DurableNode<MemStore>>,
    disks: BTreeMap<NodeId, MemStore>,
    apps: BTreeMap<(NodeId, DurableKey), App>,
    /// Apps built ahead of a handoff (warm standbys).
    standbys: Standbys,
    /// While set, prepares are lost on the way.
    lose_prepares: bool,
    /// When each handoff was delivered.
    handoffs_at: Vec<Time>,
    queue: VecDeque<(NodeId, NodeId, DurableMsg)>,
    registry: BTreeMap<DurableKey, (NodeId, Ballot)>,
    /// key -> next key in the pipeline.
    pipeline: BTreeMap<DurableKey, DurableKey>,
    acked: BTreeMap<u64, u64>,
    /// (key, ballot, version) of every commit, in completion order.
    commits: Vec<(DurableKey, Ballot, u64)>,
    deactivations: Vec<(NodeId, DurableKey, Deactivation)>,
    cut: Vec<NodeId>,
    /// (when, how many) of every non-empty batch applied.
    batches: Vec<(Time, usize)>,
    /// While set, user code is busy: batches wait in `held`.
    hold: bool,
    held: Vec<(NodeId, DurableKey, u64, Vec<plexus_durable::Input>, bool)>,
    /// Every handoff delivered: (to, by reference).
    handoffs: Vec<(NodeId, bool)>,
    /// When each activation began serving and when each commit completed.
    activated_at: Vec<(DurableKey, Ballot, Time)>,
    committed_at: Vec<(DurableKey, Ballot, Time)>,
    /// Every move that failed at its source: (source, key, target, whether the
    /// handoff had left, why).
    move_failures: Vec<(NodeId, DurableKey, NodeId, bool, String)>,
}

impl Net {
    fn new(count: u64) -> Net {
        let mut net = Net {
            now: Time::from_millis(1),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            apps: BTreeMap::new(),
            standbys: Standbys::default(),
            lose_prepares: false,
            handoffs_at: Vec::new(),
            queue: VecDeque::new(),
            registry: BTreeMap::new(),
            pipeline: BTreeMap::new(),
            acked: BTreeMap::new(),
            commits: Vec::new(),
            deactivations: Vec::new(),
            cut: Vec::new(),
            batches: Vec::new(),
            hold: false,
            held: Vec::new(),
            handoffs: Vec::new(),
            activated_at: Vec::new(),
            committed_at: Vec::new(),
            move_failures: Vec::new(),
        };
        for i in 1..=count {
            net.boot(n(i));
        }
        net
    }

    fn boot(&mut self, id: NodeId) {
        let disk = self.disks.remove(&id).unwrap_or_default();
        self.boot_with(id, disk, NodeConfig::default());
    }

    fn boot_with(&mut self, id: NodeId, disk: MemStore, config: NodeConfig) {
        self.nodes.insert(id, DurableNode::new(id, config, disk));
    }

    fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            self.disks.insert(id, node.into_store());
        }
        self.apps.retain(|(node, _), _| *node != id);
        self.standbys.drop_node(id);
        self.registry.retain(|_, (node, _)| *node != id);
    }

    fn node(&mut self, id: NodeId) -> &mut DurableNode<MemStore> {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Starts a migration of `key` from `from` to `to` now (it must be accepted),
    /// and sends what it emits.
    fn migrate(&mut self, key: &DurableKey, from: NodeId, to: NodeId) {
        let now = self.now;
        assert!(self.node(from).migrate(now, key, to));
        self.flush(from);
    }

    fn flush(&mut self, id: NodeId) {
        let now = self.now;
        let registry = self.registry.clone();
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.flush(now, &mut |k| registry.get(k).copied());
        let mut sends = Vec::new();
        while let Some((to, msg)) = node.poll_transmit() {
            sends.push((to, msg));
        }
        let mut events = Vec::new();
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        for (to, msg) in sends {
            self.queue.push_back((id, to, msg));
        }
        for e in events {
            self.on_event(id, e);
        }
    }

    fn on_event(&mut self, id: NodeId, e: NodeEvent) {
        match e {
            NodeEvent::Actor { key, event } => match event {
                ActivationEvent::Restore { user, warm } => {
                    let app = self.standbys.restore(id, &key, &user, warm);
                    self.apps.insert((id, key), app);
                }
                ActivationEvent::Apply {
                    token,
                    inputs,
                    snapshot,
                } if self.hold => self.held.push((id, key, token, inputs, snapshot)),
                ActivationEvent::Apply {
                    token,
                    inputs,
                    snapshot,
                } => {
                    if !inputs.is_empty() {
                        self.batches.push((self.now, inputs.len()));
                    }
                    let next = self.pipeline.get(&key).cloned();
                    let app = self
                        .apps
                        .get_mut(&(id, key.clone()))
                        .expect("restored first");
                    let mut out = Applied::default();
                    for input in inputs {
                        let sender = input
                            .from
                            .clone()
                            .map(|s| s.to_string())
                            .unwrap_or_default();
                        let last = app.last.entry(sender.clone()).or_insert(0);
                        if input.seq != *last + 1 {
                            app.violations
                                .push(format!("{key}: {sender} seq {} after {last}", input.seq));
                        }
                        *last = input.seq;
                        app.count += 1;
                        out.replies.push(Some(Ok(plexus_durable::wire::Bytes::from(
                            app.count.to_le_bytes().to_vec(),
                        ))));
                        if let Some(next) = &next {
                            out.outputs.push(Output::Send {
                                to: next.clone(),
                                payload: input.payload.clone(),
                                trace: None,
                            });
                        }
                    }
                    if snapshot {
                        out.snapshot = Some(Snapshot {
                            schema_version: 1,
                            bytes: codec::encode_body(&*app).unwrap(),
                        });
                    }
                    let now = self.now;
                    self.node(id).applied(now, &key, token, out);
                    self.flush(id);
                }
                ActivationEvent::Activated { ballot, .. } => {
                    self.activated_at.push((key.clone(), ballot, self.now));
                    self.registry.insert(key, (id, ballot));
                }
                ActivationEvent::Committed { version, .. } => {
                    let ballot = self.nodes[&id].actor(&key).unwrap().ballot();
                    self.committed_at.push((key.clone(), ballot, self.now));
                    self.commits.push((key, ballot, version));
                }
                ActivationEvent::MoveFailed { to, why } => {
                    self.move_failures.push((id, key, to, true, why));
                }
                ActivationEvent::Deactivated(why) => {
                    self.apps.remove(&(id, key.clone()));
                    self.standbys.drop_key(id, &key);
                    if self.registry.get(&key).is_some_and(|(node, _)| *node == id) {
                        self.registry.remove(&key);
                    }
                    self.deactivations.push((id, key, why));
                }
                _ => {}
            },
            NodeEvent::Session { id: _, event } => {
                let StreamEvent::Acked { up_to, .. } = event;
                let e = self.acked.entry(0).or_insert(0);
                *e = (*e).max(up_to);
            }
            NodeEvent::MoveRefused { key, to, why } => {
                self.move_failures.push((id, key, to, false, why));
            }
            NodeEvent::Prepare {
                key, order, user, ..
            } => {
                self.standbys.build(id, &key, order, &user);
                self.node(id).prepared(&key, order, Ok(()));
                self.flush(id);
            }
            NodeEvent::Unprepared { key } => self.standbys.drop_key(id, &key),
            NodeEvent::Refused { .. } => {}
        }
    }

    /// Delivers messages until none are left, advancing time by 1 ms per step and
    /// firing timers.
    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            if let Some((from, to, msg)) = self.queue.pop_front() {
                if self.cut.contains(&from) || self.cut.contains(&to) {
                    continue;
                }
                let now = self.now;
                if self.lose_prepares && matches!(msg, DurableMsg::Prepare(_)) {
                    continue;
                }
                if let DurableMsg::Handoff(h) = &msg {
                    let by_reference = matches!(h.record, HandedRecord::Held { .. });
                    self.handoffs.push((to, by_reference));
                    self.handoffs_at.push(now);
                }
                if let Some(node) = self.nodes.get_mut(&to) {
                    node.handle(now, from, msg).unwrap();
                    self.flush(to);
                }
            } else {
                self.now = self.now + Duration::from_millis(5);
                let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
                for id in ids {
                    let now = self.now;
                    let node = self.node(id);
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                    }
                    self.flush(id);
                }
            }
        }
    }

    fn send(&mut self, from: NodeId, to: &DurableKey, count: u64) {
        self.node(from).session_open(0);
        for i in 0..count {
            self.node(from)
                .session_send(0, to, i.to_le_bytes().to_vec(), None)
                .unwrap();
        }
        self.flush(from);
    }

    fn activate(&mut self, at: NodeId, k: &DurableKey, sets: Vec<ReplicaSet>) {
        let now = self.now;
        self.node(at)
            .activate(now, k.clone(), sets, vec![], Ballot::ZERO);
        self.flush(at);
    }

    fn app_of(&self, k: &DurableKey) -> Option<(NodeId, &App)> {
        self.apps
            .iter()
            .find(|((_, key), _)| key == k)
            .map(|((node, _), app)| (*node, app))
    }

    fn hosts(&self, k: &DurableKey) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.actor(k).is_some_and(|a| a.is_active()))
            .map(|(id, _)| *id)
            .collect()
    }

    /// `k` active at node 1 on replicas {1, 2, 3}, with `count` messages from node
    /// 3 under way and the first of them acknowledged (so a commit is done).
    fn mid_stream(&mut self, k: &DurableKey, count: u64) {
        self.activate(n(1), k, vec![set(&[1, 2, 3])]);
        self.run(100);
        self.send(n(3), k, count);
        for _ in 0..10_000 {
            self.run(1);
            if self.acked.get(&0).is_some_and(|x| *x > 0) {
                break;
            }
        }
    }

    /// `k` serves at `at` alone, with all `count` messages acknowledged and each
    /// applied once, in order; its commits are linear.
    fn served_once(&self, k: &DurableKey, at: NodeId, count: u64) {
        assert_eq!(self.hosts(k), vec![at]);
        assert_eq!(self.acked.get(&0), Some(&count));
        let (_, app) = self.app_of(k).unwrap();
        assert_eq!(app.count, count, "each message applied once");
        assert!(app.violations.is_empty(), "{:?}", app.violations);
        self.check_commits_linear(k);
    }

    /// Commits of one key complete in (ballot, version) order.
    fn check_commits_linear(&self, k: &DurableKey) {
        let mine: Vec<(Ballot, u64)> = self
            .commits
            .iter()
            .filter(|(key, _, _)| key == k)
            .map(|(_, b, v)| (*b, *v))
            .collect();
        for w in mine.windows(2) {
            assert!(w[0] < w[1], "commits out of order for {k}: {w:?}");
        }
    }
}

#[test]
fn inputs_are_acked_after_a_majority_commit_and_applied_once_in_order() {
    let mut net = Net::new(3);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    assert_eq!(net.hosts(&a), vec![n(1)]);
    net.send(n(2), &a, 100);
    net.run(5_000);
    assert_eq!(net.acked.get(&0), Some(&100));
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(app.count, 100);
    assert!(app.violations.is_empty(), "{:?}", app.violations);
    // A majority of the replicas hold a record with all of it.
    let with_all = [1, 2, 3]
        .iter()
        .filter(|i| {
            net.nodes[&n(**i)]
                .replica()
                .store()
                .slots()
                .get(&a)
                .and_then(|s| s.record.as_ref())
                .and_then(|r| plexus_durable::DurableState::decode(&r.body).ok())
                .is_some_and(|s| s.applied == 100)
        })
        .count();
    assert!(
        with_all >= 2,
        "only {with_all} replicas hold the final state"
    );
    net.check_commits_linear(&a);
}

#[test]
fn pipeline_outputs_are_delivered_exactly_once() {
    let mut net = Net::new(3);
    let (a, b) = (key("a"), key("b"));
    net.pipeline.insert(a.clone(), b.clone());
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.activate(n(2), &b, vec![set(&[1, 2, 3])]);
    net.run(100);
    net.send(n(3), &a, 200);
    net.run(20_000);
    assert_eq!(net.acked.get(&0), Some(&200));
    let (_, app_b) = net.app_of(&b).unwrap();
    assert_eq!(app_b.count, 200);
    assert!(app_b.violations.is_empty(), "{:?}", app_b.violations);
    assert!(net.nodes[&n(1)].actor(&a).unwrap().unacked_outputs() == 0);
}

#[test]
fn live_migration_under_load_loses_and_duplicates_nothing() {
    let mut net = Net::new(3);
    let (a, b) = (key("a"), key("b"));
    net.pipeline.insert(a.clone(), b.clone());
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.activate(n(2), &b, vec![set(&[1, 2, 3])]);
    net.run(100);
    net.send(n(3), &a, 150);
    net.run(40);
    net.migrate(&a, n(1), n(2));
    net.send(n(3), &a, 150);
    net.run(400);
    assert!(
        net.nodes[&n(1)].forward_of(&a).is_some(),
        "the old host forwards"
    );
    net.run(30_000);
    assert_eq!(net.acked.get(&0), Some(&300));
    assert_eq!(net.hosts(&a), vec![n(2)], "exactly one host after the move");
    let (_, app_a) = net.app_of(&a).unwrap();
    assert_eq!(app_a.count, 300);
    assert!(app_a.violations.is_empty(), "{:?}", app_a.violations);
    let (_, app_b) = net.app_of(&b).unwrap();
    assert_eq!(app_b.count, 300);
    assert!(app_b.violations.is_empty(), "{:?}", app_b.violations);
    assert!(net.deactivations.iter().any(|(node, k, why)| *node == n(1)
        && *k == a
        && matches!(why, Deactivation::Migrated { .. })));
    net.check_commits_linear(&a);
}

#[test]
fn a_move_that_cannot_start_or_is_refused_says_so_at_once_and_loses_nothing() {
    let mut net = Net::new(3);
    // Node 2 hosts at most one actor, and hosts `b`: it will refuse `a`.
    let two = NodeConfig {
        actors_max: 1,
        ..NodeConfig::default()
    };
    net.nodes.remove(&n(2));
    net.boot_with(n(2), MemStore::default(), two);
    let (a, b) = (key("a"), key("b"));
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.activate(n(2), &b, vec![set(&[1, 2, 3])]);
    net.run(100);
    net.send(n(3), &a, 50);
    net.run(40);
    let migrate = |to| plexus_durable::Command::Migrate { key: a.clone(), to };
    // A node that does not host `a` says so.
    let now = net.now;
    net.node(n(3)).command(now, migrate(n(2)));
    net.flush(n(3));
    assert_eq!(net.move_failures.len(), 1);
    let (at, k, to, started, why) = net.move_failures[0].clone();
    assert_eq!((at, k, to, started), (n(3), a.clone(), n(2), false));
    assert!(why.contains("not hosted"), "{why}");
    // The host starts it; the target refuses the handoff: the source says so as
    // soon as the answer is in, and resumes.
    net.node(n(1)).command(now, migrate(n(2)));
    net.flush(n(1));
    net.run(2_000);
    let (at, k, to, started, why) = net.move_failures[1].clone();
    assert_eq!((at, k, to, started), (n(1), a.clone(), n(2), true));
    assert!(why.contains("refused"), "{why}");
    assert_eq!(net.hosts(&a), vec![n(1)]);
    // The target cut off: no answer within the handoff timeout, said as such.
    net.cut.push(n(3));
    let now = net.now;
    net.node(n(1)).command(now, migrate(n(3)));
    net.flush(n(1));
    net.run(3_000);
    let (at, _, to, started, why) = net.move_failures[2].clone();
    assert_eq!((at, to, started), (n(1), n(3), true));
    assert!(why.contains("did not answer"), "{why}");
    net.cut.clear();
    net.send(n(3), &a, 50);
    net.run(30_000);
    assert_eq!(net.hosts(&a), vec![n(1)]);
    assert_eq!(net.acked.get(&0), Some(&100));
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(app.count, 100);
    assert!(app.violations.is_empty(), "{:?}", app.violations);
    net.check_commits_linear(&a);
}

/// A target that holds the committed record as a replica takes the actor by
/// reference, at once: no final commit on the source, the inputs applied since
/// the record are rolled back and resent to the target, and nothing is lost or
/// applied twice.
#[test]
fn a_replica_target_takes_the_actor_by_reference_without_a_final_commit() {
    // Without warm standbys the move quiesces at once, so no commit of the
    // source's may complete after it began. (With them, the actor serves, and
    // commits, until the standby is ready: the next test.)
    let cold = || {
        let mut config = NodeConfig::default();
        config.activation.warm_handoffs = false;
        config
    };
    let mut net = Net::new(0);
    for i in 1..=3 {
        net.boot_with(n(i), MemStore::default(), cold());
    }
    let a = key("a");
    // Mid-stream: a commit done, and more inputs applied since.
    net.mid_stream(&a, 150);
    let acked = net.acked.get(&0).copied().unwrap_or(0);
    assert!((1..150).contains(&acked), "{acked}");
    let source_ballot = net.nodes[&n(1)].actor(&a).unwrap().ballot();
    let commits_before = net.commits.len();
    net.migrate(&a, n(1), n(2));
    net.send(n(3), &a, 150);
    net.run(30_000);
    assert_eq!(net.handoffs.len(), 1);
    let (to, by_reference) = net.handoffs[0];
    assert_eq!(to, n(2));
    assert!(by_reference, "the target is a replica holding the record");
    assert!(
        !net.commits[commits_before..]
            .iter()
            .any(|(k, ballot, _)| *k == a && *ballot == source_ballot),
        "the source did not commit again once the move began"
    );
    assert_eq!(net.acked.get(&0), Some(&300));
    assert_eq!(net.hosts(&a), vec![n(2)]);
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(
        app.count, 300,
        "each message applied once in the surviving history"
    );
    assert!(app.violations.is_empty(), "{:?}", app.violations);
    net.check_commits_linear(&a);
}

/// With warm standbys (the default), the target restores the actor from its own
/// replica's copy of the last committed record while the source serves on, and
/// the handoff that follows names that record: the activation takes the
/// standby, restores nothing during the pause, and nothing is lost or applied
/// twice.
#[test]
fn a_warm_standby_is_built_before_the_pause_and_taken_by_the_handoff() {
    let mut net = Net::new(3);
    let a = key("a");
    net.mid_stream(&a, 150);
    net.migrate(&a, n(1), n(2));
    // The source asked for the standby and serves on until it is ready.
    assert!(
        net.queue.iter().any(
            |(from, to, m)| (*from, *to) == (n(1), n(2)) && matches!(m, DurableMsg::Prepare(_))
        ),
        "the source asks its target for a standby first"
    );
    assert!(net.nodes[&n(1)].actor(&a).unwrap().is_active());
    assert_eq!(net.nodes[&n(1)].actor(&a).unwrap().moving_to(), Some(n(2)));
    net.send(n(3), &a, 150);
    net.run(30_000);
    assert_eq!(net.handoffs, vec![(n(2), true)]);
    assert_eq!(
        net.standbys.warm_restores,
        vec![n(2)],
        "the target took its standby"
    );
    assert_eq!(net.nodes[&n(2)].standbys(), 0, "and holds none after");
    assert!(net.standbys.is_empty());
    net.served_once(&a, n(2), 300);
    for node in net.nodes.values() {
        node.check_invariants().unwrap();
    }
}

/// A target that cannot build a standby (here: its replica lost its copy of
/// the record before the prepare came) answers so, and the move goes on
/// without one: the target restores during the pause, from the other replicas.
#[test]
fn a_refused_standby_falls_back_to_a_restore_in_the_pause() {
    let mut net = Net::new(3);
    let a = key("a");
    net.mid_stream(&a, 150);
    // The target's replica loses its copy before the prepare reaches it.
    net.migrate(&a, n(1), n(2));
    net.crash(n(2));
    net.disks.insert(n(2), MemStore::default());
    net.boot(n(2));
    net.send(n(3), &a, 150);
    net.run(30_000);
    assert!(
        net.standbys.warm_restores.is_empty(),
        "no standby was built"
    );
    // The move went on without one: the target fenced and restored the record
    // from the other replicas.
    assert_eq!(net.handoffs, vec![(n(2), true)]);
    net.served_once(&a, n(2), 300);
}

/// A target that never answers the prepare (it was lost) holds the move up for
/// `prepare_timeout` only: then the source quiesces and hands off as without
/// standbys, and the target restores in the pause.
#[test]
fn a_lost_prepare_delays_the_move_by_the_prepare_timeout_only() {
    let mut net = Net::new(3);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(100);
    net.send(n(3), &a, 50);
    net.run(5_000);
    net.lose_prepares = true;
    let asked = net.now;
    net.migrate(&a, n(1), n(2));
    net.send(n(3), &a, 50);
    net.run(10_000);
    assert_eq!(net.handoffs, vec![(n(2), true)]);
    let waited = net.handoffs_at[0].saturating_since(asked);
    let timeout = ActivationConfig::default().prepare_timeout;
    assert!(
        waited >= timeout && waited < timeout + Duration::from_millis(100),
        "the handoff left {waited:?} after the move began"
    );
    assert!(net.standbys.warm_restores.is_empty());
    net.served_once(&a, n(2), 100);
}

/// Standbys are bounded: a target holding `standbys_max` of them refuses the
/// next prepare, and that move restores in its pause instead. A standby whose
/// handoff never comes is dropped after `standby_ttl`, and its owner told.
#[test]
fn standbys_are_bounded_and_expire() {
    let mut net = Net::new(0);
    for i in 1..=3 {
        let config = NodeConfig {
            standbys_max: 1,
            ..NodeConfig::default()
        };
        net.boot_with(n(i), MemStore::default(), config);
    }
    let (a, c) = (key("a"), key("c"));
    for k in [&a, &c] {
        net.activate(n(1), k, vec![set(&[1, 2, 3])]);
    }
    net.run(100);
    for k in [&a, &c] {
        net.send(n(3), k, 20);
    }
    net.run(5_000);
    // Both move to node 2 at once: one standby fits.
    net.migrate(&a, n(1), n(2));
    net.migrate(&c, n(1), n(2));
    net.run(10_000);
    assert_eq!(net.hosts(&a), vec![n(2)]);
    assert_eq!(net.hosts(&c), vec![n(2)]);
    assert_eq!(
        net.standbys.warm_restores,
        vec![n(2)],
        "one move had a standby"
    );
    assert_eq!(net.handoffs.len(), 2);
    for k in [&a, &c] {
        let (_, app) = net.app_of(k).unwrap();
        assert_eq!(app.count, 20);
        assert!(app.violations.is_empty(), "{:?}", app.violations);
    }
    // A prepare whose handoff never comes (sent as node 2, which holds `a`, to
    // node 3; node 2 is not moving it, so it ignores the answer).
    let order = net.nodes[&n(2)]
        .actor(&a)
        .unwrap()
        .committed()
        .unwrap()
        .order();
    net.queue.push_back((
        n(2),
        n(3),
        DurableMsg::Prepare(plexus_durable::wire::Prepare {
            key: a.clone(),
            migration: 77,
            from: n(2),
            order,
            spec: vec![],
        }),
    ));
    net.run(50);
    assert_eq!(net.nodes[&n(3)].standbys(), 1);
    assert!(net.standbys.holds(n(3), &a));
    net.run(3_000);
    assert!(
        net.now.saturating_since(Time::ZERO) > NodeConfig::default().standby_ttl,
        "ran past the standby's lifetime"
    );
    assert_eq!(net.nodes[&n(3)].standbys(), 0, "expired");
    assert!(!net.standbys.holds(n(3), &a), "and its owner told");
    assert_eq!(net.hosts(&a), vec![n(2)]);
}

/// The commits keep their pace across a handoff: the target counts the record it
/// took as its last commit, so its first one comes a pacing interval later, not
/// in the step that answers the handoff (whose reply would wait for it), and
/// nothing is lost meanwhile.
#[test]
fn a_migration_target_commits_at_the_sources_pace() {
    // 200 bytes a second: a state of about 50 bytes is committed every 250 ms.
    let slow = || {
        let mut config = NodeConfig::default();
        config.activation.snapshot_bandwidth = 200;
        config
    };
    let mut net = Net::new(0);
    for i in 1..=3 {
        net.boot_with(n(i), MemStore::default(), slow());
    }
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(100);
    net.send(n(3), &a, 100);
    net.run(3_000);
    net.migrate(&a, n(1), n(2));
    net.send(n(3), &a, 100);
    net.run(30_000);
    assert_eq!(net.hosts(&a), vec![n(2)]);
    let (_, target, activated) = net
        .activated_at
        .iter()
        .rev()
        .find(|(k, _, _)| *k == a)
        .cloned()
        .unwrap();
    assert_eq!(target.node, n(2));
    let first = net
        .committed_at
        .iter()
        .find(|(k, b, _)| *k == a && *b == target)
        .map(|(_, _, at)| *at)
        .expect("the target commits");
    // The state is over 20 bytes: at 200 bytes a second, at least 100 ms (made at
    // once, it came a replica round trip after activating).
    assert!(
        first.saturating_since(activated) >= Duration::from_millis(100),
        "first commit {:?} after activating",
        first.saturating_since(activated)
    );
    assert_eq!(net.acked.get(&0), Some(&200));
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(app.count, 200);
    assert!(app.violations.is_empty(), "{:?}", app.violations);
    net.check_commits_linear(&a);
}

/// A target outside the replica set gets the record whole, after the source's
/// final commit.
#[test]
fn a_target_outside_the_replica_set_gets_the_record_whole() {
    let mut net = Net::new(4);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(100);
    net.send(n(3), &a, 100);
    net.run(60);
    net.migrate(&a, n(1), n(4));
    net.run(30_000);
    assert_eq!(net.handoffs.len(), 1);
    assert_eq!(net.handoffs[0].0, n(4));
    assert!(!net.handoffs[0].1, "not a replica: the record goes whole");
    assert_eq!(net.acked.get(&0), Some(&100));
    assert_eq!(net.hosts(&a), vec![n(4)]);
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(app.count, 100);
    assert!(app.violations.is_empty(), "{:?}", app.violations);
    net.check_commits_linear(&a);
}

#[test]
fn commits_travel_as_patches_and_a_replica_that_cannot_use_one_gets_the_record_whole() {
    let mut net = Net::new(3);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.send(n(2), &a, 50);
    net.run(5_000);
    let stats = net.nodes[&n(1)].actor(&a).unwrap().stats;
    assert!(stats.patches > 0, "{stats:?}");
    assert_eq!(stats.wholes_wanted, 0, "every replica held each base");
    // Node 3 loses its disk: the next patches name a base it does not hold.
    net.crash(n(3));
    net.disks.remove(&n(3));
    net.boot(n(3));
    net.send(n(2), &a, 50);
    net.run(5_000);
    assert_eq!(net.acked.get(&0), Some(&100));
    let activation = net.nodes[&n(1)].actor(&a).unwrap();
    assert!(activation.stats.patches > stats.patches);
    assert!(
        activation.stats.wholes_wanted >= 1,
        "{:?}",
        activation.stats
    );
    // Every replica holds exactly the record the activation committed last.
    let committed = activation.committed().unwrap().clone();
    assert_eq!(
        plexus_durable::DurableState::decode(&committed.body)
            .unwrap()
            .applied,
        100
    );
    let stored = |net: &Net, i: u64| {
        net.nodes[&n(i)].replica().store().slots()[&a]
            .record
            .clone()
            .unwrap()
    };
    for i in [1, 2, 3] {
        assert_eq!(stored(&net, i), committed, "replica {i}");
    }
    // Node 2's copy rots in place (same order, other bytes): the next patch does
    // not rebuild the digest it names there, and node 2 gets the record whole.
    // (A second client first, so that the commits after the rot are small patches.)
    let client = |net: &mut Net, from: u64| {
        net.node(n(3)).session_open(7);
        for i in from..from + 20 {
            net.node(n(3))
                .session_send(7, &a, i.to_le_bytes().to_vec(), None)
                .unwrap();
        }
        net.flush(n(3));
        net.run(5_000);
    };
    client(&mut net, 0);
    let before = net.nodes[&n(1)].actor(&a).unwrap().stats;
    net.crash(n(2));
    let disk = net.disks.get_mut(&n(2)).unwrap();
    let mut slot = disk.slots()[&a].clone();
    let record = slot.record.as_mut().unwrap();
    let mut body = record.body.to_vec();
    body[0] ^= 0xff;
    record.body = body.into();
    plexus_durable::SlotStore::put(disk, &a, slot).unwrap();
    net.boot(n(2));
    client(&mut net, 20);
    let activation = net.nodes[&n(1)].actor(&a).unwrap();
    assert_eq!(activation.stats.applied, 140);
    assert!(activation.stats.patches > before.patches);
    assert!(
        activation.stats.wholes_wanted > before.wholes_wanted,
        "{:?}",
        activation.stats
    );
    let committed = activation.committed().unwrap().clone();
    for i in [1, 2, 3] {
        assert_eq!(stored(&net, i), committed, "replica {i} after the rot");
    }
    net.check_commits_linear(&a);
}

#[test]
fn a_crashed_hosts_actor_restores_elsewhere_with_every_acked_message() {
    let mut net = Net::new(4);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.send(n(4), &a, 100);
    for _ in 0..1_000 {
        net.run(1);
        if net.acked.get(&0).is_some_and(|a| *a > 0) {
            break;
        }
    }
    let acked_before = net.acked.get(&0).copied().unwrap_or(0);
    assert!(
        acked_before > 0 && acked_before < 100,
        "crash mid-stream ({acked_before})"
    );
    net.crash(n(1));
    net.activate(n(2), &a, vec![set(&[1, 2, 3])]);
    net.run(30_000);
    assert_eq!(net.acked.get(&0), Some(&100));
    let (host, app) = net.app_of(&a).unwrap();
    assert_eq!(host, n(2));
    assert_eq!(
        app.count, 100,
        "each message applied once in the surviving history"
    );
    assert!(app.violations.is_empty(), "{:?}", app.violations);
    net.check_commits_linear(&a);
}

#[test]
fn two_activations_racing_leave_exactly_one() {
    let mut net = Net::new(3);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.activate(n(2), &a, vec![set(&[1, 2, 3])]);
    net.run(200);
    net.send(n(3), &a, 20);
    net.run(5_000);
    let hosts = net.hosts(&a);
    assert_eq!(hosts.len(), 1, "hosts: {hosts:?}");
    assert_eq!(net.acked.get(&0), Some(&20));
    net.check_commits_linear(&a);
}

#[test]
fn a_partitioned_host_is_fenced_and_steps_down() {
    let mut net = Net::new(3);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.cut.push(n(1));
    net.activate(n(2), &a, vec![set(&[1, 2, 3])]);
    net.send(n(3), &a, 10);
    net.run(3_000);
    assert_eq!(net.acked.get(&0), Some(&10));
    // Healed: the old host's next commit is refused and it steps down.
    net.cut.clear();
    let now = net.now;
    net.node(n(1)).local_input(now, &a, vec![1]);
    net.flush(n(1));
    net.run(3_000);
    assert_eq!(net.hosts(&a), vec![n(2)]);
    assert!(net.deactivations.iter().any(|(node, _, why)| *node == n(1)
        && matches!(
            why,
            Deactivation::Superseded(_) | Deactivation::Stalled | Deactivation::Unconfirmed
        )));
    net.check_commits_linear(&a);
}

#[test]
fn a_cut_off_activation_steps_down_when_its_lease_lapses_and_a_connected_one_never_does() {
    let lease = ActivationConfig::default().lease;
    let mut net = Net::new(3);
    let (a, b) = (key("a"), key("b"));
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.activate(n(2), &b, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.send(n(3), &a, 5);
    net.run(500);
    // Idle and connected: the checks renew the lease, for many leases.
    let idle_from = net.now;
    while net.now.saturating_since(idle_from) < lease * 10 {
        net.run(100);
    }
    assert_eq!(net.hosts(&a), vec![n(1)]);
    assert!(net.deactivations.is_empty(), "{:?}", net.deactivations);
    // Node 1 is cut off with nobody else serving the actor: no refusal can tell
    // it anything, only the lapsed lease.
    net.cut.push(n(1));
    let cut_at = net.now;
    while net.deactivations.is_empty() && net.now.saturating_since(cut_at) < lease * 4 {
        net.run(10);
    }
    let stepped_down = net.now.saturating_since(cut_at);
    assert_eq!(
        net.deactivations
            .iter()
            .map(|(node, k, why)| (*node, k.clone(), why.clone()))
            .collect::<Vec<_>>(),
        vec![(n(1), a.clone(), Deactivation::Unconfirmed)]
    );
    assert!(
        stepped_down <= lease + Duration::from_millis(10),
        "stepped down {stepped_down:?} after the cut, lease {lease:?}"
    );
    assert!(
        stepped_down + ActivationConfig::default().lease_check >= lease,
        "stepped down {stepped_down:?} after the cut: before the lease could lapse"
    );
    // Node 2's activation of `b` still hears a majority (2 and 3): it stays.
    assert_eq!(net.hosts(&b), vec![n(2)]);
}

#[test]
fn reconfigured_replicas_keep_the_state_through_a_crash() {
    let mut net = Net::new(5);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.send(n(5), &a, 30);
    net.run(2_000);
    let now = net.now;
    net.node(n(1)).command(
        now,
        plexus_durable::Command::Reconfigure {
            key: a.clone(),
            set: set(&[1, 4, 5]),
        },
    );
    net.flush(n(1));
    net.run(2_000);
    assert_eq!(net.nodes[&n(1)].actor(&a).unwrap().set(), &set(&[1, 4, 5]));
    net.send(n(5), &a, 30);
    net.run(2_000);
    assert_eq!(net.acked.get(&0), Some(&60));
    // Nodes 2 and 3 lose their disks for good; 1 crashes. 4 restores from {1,4,5}.
    net.crash(n(1));
    net.crash(n(2));
    net.crash(n(3));
    net.disks.remove(&n(2));
    net.disks.remove(&n(3));
    net.activate(n(4), &a, vec![set(&[1, 4, 5])]);
    net.run(2_000);
    let (host, app) = net.app_of(&a).unwrap();
    assert_eq!(host, n(4));
    assert_eq!(app.count, 60);
}

#[test]
fn a_superseded_activation_cannot_commit_through_a_reconfiguration() {
    let mut net = Net::new(5);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.send(n(4), &a, 5);
    net.run(500);
    // Node 1 is cut off; node 2 fences {1,2,3} through 2 and 3.
    // (Before node 1's lease lapses: it must still think it is active.)
    net.cut.push(n(1));
    net.activate(n(2), &a, vec![set(&[1, 2, 3])]);
    for _ in 0..500 {
        if net.hosts(&a) == [n(1), n(2)] {
            break;
        }
        net.run(1);
    }
    assert_eq!(net.hosts(&a), [n(1), n(2)]);
    // Now node 1 reaches only 4 and 5, and a confused scheduler moves its
    // replicas there. A commit on {1,4,5} alone would succeed: none of them
    // promised node 2's ballot. The joint majority (old set too) stops it.
    net.cut = vec![n(2), n(3)];
    let stale = net.nodes[&n(1)].actor(&a).unwrap().ballot();
    let now = net.now;
    net.node(n(1)).command(
        now,
        plexus_durable::Command::Reconfigure {
            key: a.clone(),
            set: set(&[1, 4, 5]),
        },
    );
    net.node(n(1)).local_input(now, &a, vec![1]);
    net.flush(n(1));
    let before = net.commits.len();
    net.run(5_000);
    assert!(
        !net.commits[before..]
            .iter()
            .any(|(k, b, _)| k == &a && *b == stale),
        "the superseded activation committed: {:?}",
        &net.commits[before..]
    );
    assert!(!net.hosts(&a).contains(&n(1)), "it gave up");
}

#[test]
fn an_idle_superseded_activation_finds_out_and_steps_down() {
    let mut net = Net::new(3);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.cut.push(n(1));
    net.activate(n(2), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.cut.clear();
    assert_eq!(net.hosts(&a).len(), 2, "both think they host it");
    // No input reaches node 1, so only its lease check can tell it.
    net.run(2_000);
    assert_eq!(net.hosts(&a), vec![n(2)]);
    assert!(
        net.deactivations
            .iter()
            .any(|(node, _, why)| *node == n(1) && matches!(why, Deactivation::Superseded(_)))
    );
}

#[test]
fn a_fence_of_a_retired_set_follows_the_state_to_its_new_set() {
    let mut net = Net::new(6);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(50);
    net.send(n(6), &a, 30);
    net.run(2_000);
    let now = net.now;
    net.node(n(1)).command(
        now,
        plexus_durable::Command::Reconfigure {
            key: a.clone(),
            set: set(&[4, 5, 6]),
        },
    );
    net.flush(n(1));
    net.run(2_000);
    assert_eq!(net.nodes[&n(1)].actor(&a).unwrap().set(), &set(&[4, 5, 6]));
    // These commit on {4,5,6} only.
    net.send(n(6), &a, 30);
    net.run(2_000);
    assert_eq!(net.acked.get(&0), Some(&60));
    net.crash(n(1));
    // A command that still names only the old set: its majority holds the
    // joint record, which points to {4,5,6}, and the fence follows it.
    net.activate(n(2), &a, vec![set(&[1, 2, 3])]);
    net.run(2_000);
    let (host, app) = net.app_of(&a).unwrap();
    assert_eq!(host, n(2));
    assert_eq!(app.count, 60, "every acked message survives");
    net.check_commits_linear(&a);
}

/// A model executor's dynamic batching, in the core that every actor kind shares:
/// no batch exceeds `max`; a partial batch waits `wait` for more; a full queue
/// pushes senders back, and every message is still applied once, in order.
#[test]
fn dynamic_batching_caps_batches_waits_for_partial_ones_and_pushes_back() {
    let mut net = Net::new(3);
    // A small queue on the executor's node, so a burst overflows it.
    let mut config = NodeConfig::default();
    config.activation.pending_max = 16;
    net.nodes.remove(&n(1));
    net.boot_with(n(1), MemStore::default(), config);
    let a = key("executor");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(100);
    let now = net.now;
    let batching = plexus_durable::activation::Batching {
        max: 8,
        wait: Duration::from_millis(40),
    };
    net.node(n(1)).set_batching(now, &a, batching);
    // Three requests: fewer than `max`, so they wait `wait`, then go together.
    net.batches.clear();
    let sent = net.now;
    net.send(n(2), &a, 3);
    net.run(2_000);
    assert_eq!(net.acked.get(&0), Some(&3));
    assert_eq!(net.batches.len(), 1, "{:?}", net.batches);
    let (at, size) = net.batches[0];
    assert_eq!(size, 3);
    assert!(
        at.saturating_since(sent) >= batching.wait,
        "a partial batch went after {:?}, before max_wait",
        at.saturating_since(sent)
    );
    // A burst of 40 from one sender: batches of at most 8, the queue overflows and
    // pushes back, and all 40 are applied once, in order.
    // The executor is busy (its user code holds a batch) while the burst arrives.
    net.batches.clear();
    net.hold = true;
    for i in 3..43u64 {
        net.node(n(2))
            .session_send(0, &a, i.to_le_bytes().to_vec(), None)
            .unwrap();
    }
    net.flush(n(2));
    net.run(2_000);
    net.hold = false;
    for (id, key, token, inputs, snapshot) in std::mem::take(&mut net.held) {
        net.on_event(
            id,
            NodeEvent::Actor {
                key,
                event: ActivationEvent::Apply {
                    token,
                    inputs,
                    snapshot,
                },
            },
        );
    }
    net.run(60_000);
    assert_eq!(net.acked.get(&0), Some(&43));
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(app.count, 43);
    assert!(app.violations.is_empty(), "{:?}", app.violations);
    assert!(
        net.batches.iter().all(|(_, size)| *size <= 8),
        "{:?}",
        net.batches
    );
    assert!(
        net.batches.iter().any(|(_, size)| *size == 8),
        "{:?}",
        net.batches
    );
    let refused = net.nodes[&n(1)].actor(&a).unwrap().stats.refused;
    assert!(refused > 0, "the burst never overflowed the queue");
}
