//! Byzantine tests of the durable protocol: an admitted node (the liar, which
//! hosts nothing) forges `from` fields, replica records, handoffs, releases and
//! acks for keys it is not a replica of, sends `u64::MAX` ballots and replays what
//! it overheard. The honest nodes keep every promise: no acknowledged message is
//! lost, at most one activation serves a key, and its state is neither deleted
//! nor taken over. Each test fails on the code before senders were authenticated
//! (where `handle` took no sender and believed the message's own `from`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_actors::{NodeId, Time};
use plexus_durable::node::{DurableNode, NodeConfig, NodeEvent};
use plexus_durable::stream::StreamEvent;
use plexus_durable::wire::{
    Ack, HandedRecord, Handoff, Prepare, Redirect, Refusal, ReplicaOp, ReplicaReply,
};
use plexus_durable::{
    ActivationEvent, Applied, Ballot, Command, Deactivation, DurableKey, DurableMsg, DurableState,
    MemStore, Output, Record, ReplicaSet, SenderId,
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
    queue: VecDeque<(NodeId, NodeId, DurableMsg)>,
    registry: BTreeMap<DurableKey, (NodeId, Ballot)>,
    /// key -> next key in the pipeline.
    pipeline: BTreeMap<DurableKey, DurableKey>,
    acked: BTreeMap<u64, u64>,
    /// (key, ballot, version) of every commit, in completion order.
    commits: Vec<(DurableKey, Ballot, u64)>,
    deactivations: Vec<(NodeId, DurableKey, Deactivation)>,
    cut: Vec<NodeId>,
    /// Every message honest nodes sent, as the liar overhears them (for replays).
    tap: Vec<(NodeId, NodeId, DurableMsg)>,
    /// What the liar's messages were refused for.
    refusals: Vec<Refusal>,
}

impl Net {
    fn new(count: u64) -> Net {
        let mut net = Net {
            now: Time::from_millis(1),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            apps: BTreeMap::new(),
            standbys: Standbys::default(),
            queue: VecDeque::new(),
            registry: BTreeMap::new(),
            pipeline: BTreeMap::new(),
            acked: BTreeMap::new(),
            commits: Vec::new(),
            deactivations: Vec::new(),
            cut: Vec::new(),
            tap: Vec::new(),
            refusals: Vec::new(),
        };
        for i in 1..=count {
            net.boot(n(i));
        }
        net
    }

    fn boot(&mut self, id: NodeId) {
        let disk = self.disks.remove(&id).unwrap_or_default();
        self.nodes
            .insert(id, DurableNode::new(id, NodeConfig::default(), disk));
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
            if self.tap.len() < 10_000 {
                self.tap.push((id, to, msg.clone()));
            }
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
                } => {
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
                    self.registry.insert(key, (id, ballot));
                }
                ActivationEvent::Committed { version, .. } => {
                    let ballot = self.nodes[&id].actor(&key).unwrap().ballot();
                    self.commits.push((key, ballot, version));
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
            NodeEvent::Prepare {
                key, order, user, ..
            } => {
                self.standbys.build(id, &key, order, &user);
                self.node(id).prepared(&key, order, Ok(()));
                self.flush(id);
            }
            NodeEvent::Unprepared { key } => self.standbys.drop_key(id, &key),
            NodeEvent::Refused { .. } | NodeEvent::MoveRefused { .. } => {}
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
                if let Some(node) = self.nodes.get_mut(&to) {
                    let result = node.handle(now, from, msg);
                    if from == liar() {
                        if let Err(why) = result {
                            self.refusals.push(why);
                        }
                    } else {
                        result.unwrap();
                    }
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

    /// Whether some refusal of the liar's messages was `why`.
    fn refused(&self, why: impl Fn(&Refusal) -> bool) -> bool {
        self.refusals.iter().any(why)
    }

    /// The liar sends `msg` to `to`; the transport authenticates it as the liar
    /// whatever the message says.
    fn inject(&mut self, to: NodeId, msg: DurableMsg) {
        self.queue.push_back((liar(), to, msg));
    }

    /// The record of `k` at replica `i`, decoded.
    fn stored(&self, i: u64, k: &DurableKey) -> Option<(Record, DurableState)> {
        let r = self
            .nodes
            .get(&n(i))?
            .replica()
            .store()
            .slots()
            .get(k)?
            .record
            .clone()?;
        let s = DurableState::decode(&r.body).ok()?;
        Some((r, s))
    }

    /// Replicas among `ids` holding a record of `k` with at least `applied` inputs.
    fn holding(&self, ids: &[u64], k: &DurableKey, applied: u64) -> usize {
        ids.iter()
            .filter(|i| {
                self.stored(**i, k)
                    .is_some_and(|(_, s)| s.applied >= applied)
            })
            .count()
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

/// The lying node: admitted (its messages are delivered, authenticated as its own),
/// in no replica set, hosting nothing.
fn liar() -> NodeId {
    n(9)
}

fn b(round: u64, node: NodeId) -> Ballot {
    Ballot { round, node }
}

/// A 3-node cluster with `a` active at node 1 on replicas {1, 2, 3}, 20 client
/// messages from node 2 acknowledged.
fn settled() -> (Net, DurableKey, Ballot) {
    let mut net = Net::new(3);
    let a = key("a");
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    net.run(100);
    net.send(n(2), &a, 20);
    net.run(5_000);
    assert_eq!(net.acked.get(&0), Some(&20));
    let holder = net.nodes[&n(1)].actor(&a).unwrap().ballot();
    (net, a, holder)
}

/// After the liar is done: the actor still serves at node 1 alone, a majority
/// holds everything acknowledged, and further messages are acknowledged.
fn still_serves(net: &mut Net, a: &DurableKey) {
    assert_eq!(net.hosts(a), vec![n(1)]);
    assert!(net.holding(&[1, 2, 3], a, 20) >= 2);
    net.send(n(2), a, 5);
    net.run(5_000);
    assert_eq!(net.acked.get(&0), Some(&25));
    let (_, app) = net.app_of(a).unwrap();
    assert_eq!(app.count, 25);
    assert!(app.violations.is_empty(), "{:?}", app.violations);
}

#[test]
fn forged_drops_and_releases_delete_nothing() {
    let (mut net, a, holder) = settled();
    for i in [1, 2, 3] {
        // Claims to be the holder's node, with the holder's ballot.
        net.inject(
            n(i),
            DurableMsg::Replica {
                from: n(1),
                req: 1,
                key: a.clone(),
                op: ReplicaOp::Drop { ballot: holder },
            },
        );
        // Honest about itself, but uses the holder's ballot.
        net.inject(
            n(i),
            DurableMsg::Replica {
                from: liar(),
                req: 2,
                key: a.clone(),
                op: ReplicaOp::Drop { ballot: holder },
            },
        );
        // Its own, higher, ballot: not the holder of the promise.
        net.inject(
            n(i),
            DurableMsg::Replica {
                from: liar(),
                req: 3,
                key: a.clone(),
                op: ReplicaOp::Drop {
                    ballot: b(holder.round + 1, liar()),
                },
            },
        );
        // Orders the node to stop the actor for good.
        net.inject(
            n(i),
            DurableMsg::Command(Command::Release { key: a.clone() }),
        );
    }
    net.run(2_000);
    assert!(net.refused(|r| matches!(r, Refusal::ForgedOrigin { .. })));
    assert!(net.refused(|r| matches!(r, Refusal::ForeignBallot { .. })));
    assert!(net.refused(|r| matches!(r, Refusal::NotCommander { .. })));
    assert_eq!(net.nodes[&n(1)].stats.refused.not_commander, 1);
    assert_eq!(
        net.holding(&[1, 2, 3], &a, 20),
        3,
        "a replica forgot the state"
    );
    still_serves(&mut net, &a);
}

#[test]
fn a_max_ballot_cannot_wedge_a_key() {
    let (mut net, a, _) = settled();
    for i in [1, 2, 3] {
        for node in [liar(), n(1)] {
            net.inject(
                n(i),
                DurableMsg::Replica {
                    from: liar(),
                    req: 7,
                    key: a.clone(),
                    op: ReplicaOp::Fence {
                        ballot: b(u64::MAX, node),
                        have: None,
                    },
                },
            );
        }
    }
    net.run(2_000);
    assert!(net.refused(|r| matches!(r, Refusal::BallotStep { .. })));
    for i in [1, 2, 3] {
        let promised = net.nodes[&n(i)].replica().store().slots()[&a].promised;
        assert!(
            promised.round < u64::MAX / 2,
            "replica {i} promised {promised}"
        );
    }
    // The host dies; the actor comes back elsewhere with everything acknowledged.
    net.crash(n(1));
    net.activate(n(2), &a, vec![set(&[1, 2, 3])]);
    net.run(5_000);
    assert_eq!(net.hosts(&a), vec![n(2)]);
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(app.count, 20);
}

#[test]
fn a_forged_handoff_cannot_replace_the_state() {
    let (mut net, a, holder) = settled();
    let fake = DurableState::empty();
    let record = Record {
        ballot: b(holder.round + 1, liar()),
        version: 1,
        set: set(&[1, 2, 3]),
        body: codec::encode_body(&fake).unwrap().into(),
    };
    let handoff = |from: NodeId, record: Record| {
        DurableMsg::Handoff(Handoff {
            key: a.clone(),
            migration: 1,
            from,
            record: HandedRecord::Whole(record),
            set: set(&[1, 2, 3]),
            spec: vec![],
            queued: vec![],
        })
    };
    // As the holder: a forged origin.
    net.inject(n(3), handoff(n(1), record.clone()));
    // Under the holder's ballot: not the liar's record to hand over.
    let mut as_holder = record.clone();
    as_holder.ballot = holder;
    net.inject(n(3), handoff(liar(), as_holder));
    // As itself, with a made-up state: node 3 fences, finds no replica holding
    // that record, and restores nothing.
    net.inject(n(3), handoff(liar(), record));
    net.run(3_000);
    assert!(net.refused(|r| matches!(r, Refusal::ForgedOrigin { .. })));
    assert!(net.refused(|r| matches!(r, Refusal::ForeignBallot { .. })));
    restored_nothing_made_up(&mut net, &a, holder);
}

/// After a forged handoff to node 3: node 3 restored nothing and committed
/// nothing, the replicas still hold the real state, and (node 3's fence having
/// superseded node 1: fencing is not restricted, see the module docs of `node`)
/// the actor, activated again, has everything.
fn restored_nothing_made_up(net: &mut Net, a: &DurableKey, holder: Ballot) {
    assert!(net.deactivations.iter().any(|(node, key, why)| {
        *node == n(3) && key == a && matches!(why, Deactivation::Failed(_))
    }));
    assert!(
        !net.commits
            .iter()
            .any(|(k, b, _)| k == a && b.round > holder.round),
        "a made-up state was committed"
    );
    assert!(
        net.holding(&[1, 2, 3], a, 20) >= 2,
        "the state was replaced"
    );
    net.run(10_000);
    if net.hosts(a).is_empty() {
        net.activate(n(1), a, vec![set(&[1, 2, 3])]);
        net.run(2_000);
    }
    still_serves(net, a);
}

/// A handoff by reference that names a record no replica holds (newer than the
/// stored one): the target finds nothing that new in its own replica and
/// restores nothing; a lie about the order cannot roll the state back either.
#[test]
fn a_handoff_by_reference_to_a_record_nobody_holds_restores_nothing() {
    let (mut net, a, holder) = settled();
    let handoff = DurableMsg::Handoff(Handoff {
        key: a.clone(),
        migration: 1,
        from: liar(),
        record: HandedRecord::Held {
            order: (b(holder.round + 1, liar()), 7),
        },
        set: set(&[1, 2, 3]),
        spec: vec![],
        queued: vec![],
    });
    net.inject(n(3), handoff);
    net.run(3_000);
    restored_nothing_made_up(&mut net, &a, holder);
}

/// A liar's prepares build nothing: not in the holder's name, not under the
/// holder's ballot, not for a record of its own that no replica holds, not
/// from another activation's record older or newer than the one named; and its
/// answer to a real migration's prepare does not count (only the target's
/// does), so the move still takes the target's standby.
#[test]
fn forged_prepares_build_no_standby() {
    let (mut net, a, holder) = settled();
    let prepare = |from: NodeId, order: (Ballot, u64)| {
        DurableMsg::Prepare(Prepare {
            key: a.clone(),
            migration: 1,
            from,
            order,
            spec: vec![],
        })
    };
    let order = net.nodes[&n(1)]
        .actor(&a)
        .unwrap()
        .committed()
        .unwrap()
        .order();
    net.inject(n(3), prepare(n(1), order));
    net.inject(n(3), prepare(liar(), order));
    net.inject(n(3), prepare(liar(), (b(holder.round + 1, liar()), 1)));
    // Of its own ballot, older than the holder's record: that record is not the
    // liar's, whatever its order.
    net.inject(n(3), prepare(liar(), (b(0, liar()), 0)));
    net.run(500);
    assert!(net.refused(|r| matches!(r, Refusal::ForgedOrigin { .. })));
    assert!(net.refused(|r| matches!(r, Refusal::ForeignBallot { .. })));
    assert_eq!(net.nodes[&n(3)].standbys(), 0);
    assert!(net.standbys.is_empty(), "no user code was built");
    // A real move, and the liar answering its prepare first.
    net.refusals.clear();
    let now = net.now;
    assert!(net.node(n(1)).migrate(now, &a, n(2)));
    net.flush(n(1));
    net.inject(
        n(1),
        DurableMsg::Prepared {
            key: a.clone(),
            migration: 1,
            from: liar(),
            result: Ok((b(u64::MAX, liar()), u64::MAX)),
        },
    );
    net.run(5_000);
    assert!(net.refused(|r| matches!(r, Refusal::NotHolder { .. })));
    assert_eq!(net.hosts(&a), vec![n(2)]);
    assert_eq!(net.standbys.warm_restores, vec![n(2)]);
    net.send(n(2), &a, 5);
    net.run(5_000);
    assert_eq!(net.acked.get(&0), Some(&25));
    let (_, app) = net.app_of(&a).unwrap();
    assert_eq!(app.count, 25);
    assert!(app.violations.is_empty(), "{:?}", app.violations);
}

#[test]
fn forged_acks_and_redirects_lose_no_message() {
    let (mut net, a, holder) = settled();
    // The actor's host is cut off: the next messages are lost in transit.
    net.cut.push(n(1));
    net.send(n(2), &a, 30);
    net.run(50);
    // The liar acknowledges them all, and redirects the sender to itself.
    net.inject(
        n(2),
        DurableMsg::Ack(Ack {
            key: a.clone(),
            to: SenderId::Client(0),
            up_to: 50,
            replies: vec![],
            ballot: b(holder.round + 1, liar()),
        }),
    );
    net.inject(
        n(2),
        DurableMsg::Ack(Ack {
            key: a.clone(),
            to: SenderId::Client(0),
            up_to: 50,
            replies: vec![],
            ballot: holder,
        }),
    );
    net.inject(
        n(2),
        DurableMsg::Redirect(Redirect {
            key: a.clone(),
            to: SenderId::Client(0),
            node: Some((liar(), b(u64::MAX, liar()))),
        }),
    );
    net.run(50);
    assert!(net.refused(|r| matches!(r, Refusal::NotStreamPeer { .. })));
    assert!(net.refused(|r| matches!(r, Refusal::ForeignBallot { .. })));
    assert_eq!(net.acked.get(&0), Some(&20), "forged acks counted");
    assert_eq!(net.nodes[&n(2)].session_unacked(0), Some(30));
    net.cut.clear();
    net.run(20_000);
    assert_eq!(net.acked.get(&0), Some(&50));
    let (host, app) = net.app_of(&a).unwrap();
    assert_eq!(host, n(1));
    assert_eq!(app.count, 50);
}

#[test]
fn forged_replica_replies_make_no_quorum() {
    let mut net = Net::new(3);
    let a = key("a");
    // Replicas 2 and 3 are unreachable: no majority, no activation.
    net.cut.extend([n(2), n(3)]);
    net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
    let ballot = net.nodes[&n(1)].actor(&a).unwrap().ballot();
    // The liar answers for replica 2, and for itself (not a replica).
    for from in [n(2), liar()] {
        net.inject(
            n(1),
            DurableMsg::ReplicaReply {
                from,
                req: 1 << 32,
                key: a.clone(),
                reply: ReplicaReply::Promised {
                    ballot,
                    record: None,
                    order: None,
                    digest: None,
                },
            },
        );
    }
    net.run(20);
    assert!(net.refused(|r| matches!(r, Refusal::ForgedOrigin { .. })));
    assert!(net.refused(|r| matches!(r, Refusal::NotReplica { .. })));
    assert!(net.hosts(&a).is_empty(), "activated without a majority");
}

/// A seeded adversary: while clients stream through a two-stage pipeline, the
/// liar replays what it overheard (as itself, or with the ballots pushed to
/// `u64::MAX`) and forges acks, nacks, redirects, drops and commands. Every
/// message is still applied exactly once and in order, everything acknowledged is
/// committed, and each key has one host.
#[test]
fn a_seeded_liar_breaks_no_promise() {
    for seed in 0..6u64 {
        let mut rng = plexus_actors::rng::DetRng::new(seed);
        let mut net = Net::new(3);
        let (a, c) = (key("a"), key("c"));
        net.pipeline.insert(a.clone(), c.clone());
        net.activate(n(1), &a, vec![set(&[1, 2, 3])]);
        net.activate(n(2), &c, vec![set(&[1, 2, 3])]);
        net.run(200);
        net.send(n(3), &a, 60);
        for _ in 0..400 {
            net.run(25);
            if net.tap.is_empty() {
                continue;
            }
            let (_, to, mut msg) = net.tap[rng.index(net.tap.len())].clone();
            let to = if rng.chance(0.5) {
                to
            } else {
                n(1 + rng.below(3))
            };
            match rng.below(4) {
                // A plain replay.
                0 => {}
                // Pushed to the end of the ballot space.
                1 => max_ballots(&mut msg),
                // Forged in the liar's own name.
                2 => own_name(&mut msg),
                _ => {
                    let k = if rng.chance(0.5) {
                        a.clone()
                    } else {
                        c.clone()
                    };
                    msg = match rng.below(4) {
                        0 => DurableMsg::Ack(Ack {
                            key: k,
                            to: SenderId::Client(0),
                            up_to: rng.next_u64(),
                            replies: vec![],
                            ballot: b(rng.below(10), liar()),
                        }),
                        1 => DurableMsg::Redirect(Redirect {
                            key: k,
                            to: SenderId::Actor(a.clone()),
                            node: Some((liar(), b(u64::MAX, liar()))),
                        }),
                        2 => DurableMsg::Replica {
                            from: liar(),
                            req: rng.next_u64(),
                            key: k,
                            op: ReplicaOp::Drop {
                                ballot: b(rng.below(10), liar()),
                            },
                        },
                        _ => DurableMsg::Command(Command::Release { key: k }),
                    };
                }
            }
            net.inject(to, msg);
        }
        net.run(40_000);
        assert!(!net.refusals.is_empty());
        assert_eq!(net.acked.get(&0), Some(&60), "seed {seed}");
        for k in [&a, &c] {
            assert_eq!(net.hosts(k).len(), 1, "seed {seed}: hosts of {k}");
            let (_, app) = net.app_of(k).unwrap();
            assert_eq!(app.count, 60, "seed {seed}: {k}");
            assert!(
                app.violations.is_empty(),
                "seed {seed}: {:?}",
                app.violations
            );
            assert!(net.holding(&[1, 2, 3], k, 60) >= 2, "seed {seed}: {k}");
            net.check_commits_linear(k);
        }
    }
}

fn max_ballots(msg: &mut DurableMsg) {
    let max = |b: &mut Ballot| b.round = u64::MAX;
    match msg {
        DurableMsg::Replica { op, .. } => max(op.ballot_mut()),
        DurableMsg::Envelope(e) => max(&mut e.ballot),
        DurableMsg::Ack(ack) => max(&mut ack.ballot),
        DurableMsg::Redirect(r) => {
            if let Some((_, b)) = &mut r.node {
                max(b);
            }
        }
        DurableMsg::Handoff(h) => match &mut h.record {
            HandedRecord::Whole(r) => max(&mut r.ballot),
            HandedRecord::Held { order } => max(&mut order.0),
        },
        DurableMsg::Prepare(p) => max(&mut p.order.0),
        _ => {}
    }
}

fn own_name(msg: &mut DurableMsg) {
    match msg {
        DurableMsg::Replica { from, .. }
        | DurableMsg::ReplicaReply { from, .. }
        | DurableMsg::HandoffReply { from, .. } => *from = liar(),
        DurableMsg::Handoff(h) => h.from = liar(),
        DurableMsg::Prepare(p) => p.from = liar(),
        DurableMsg::Prepared { from, .. } => *from = liar(),
        DurableMsg::Envelope(e) => e.reply_to = liar(),
        _ => {}
    }
}

#[test]
fn a_command_sent_while_no_commander_is_named_is_kept_briefly_and_runs_only_if_the_registry_names_its_sender()
 {
    let config = NodeConfig::default();
    let ttl = config.held_command_ttl;
    let mut node = DurableNode::new(n(3), config, MemStore::default());
    let activate = |k: &DurableKey| {
        DurableMsg::Command(Command::Activate {
            key: k.clone(),
            sets: vec![set(&[1, 2, 3])],
            spec: Vec::new(),
        })
    };
    let t0 = Time::from_millis(1_000);
    let (early, liar_key, stale, named) = (key("early"), key("liar"), key("stale"), key("named"));
    // While the registry names a scheduler host (node 1), another node's orders
    // are refused and not kept, even if that node is named later.
    node.set_commander(t0, Some(n(1)));
    assert!(node.handle(t0, n(2), activate(&named)).is_err());
    // Node 1 died: the registry names nobody. Node 2 takes over the scheduler
    // and orders at once; node 3's registry does not name it yet. The liar
    // orders too.
    node.set_commander(t0, None);
    for (from, k) in [(n(2), &early), (liar(), &liar_key)] {
        assert!(matches!(
            node.handle(t0, from, activate(k)),
            Err(Refusal::NotCommander { .. })
        ));
    }
    assert!(node.actor(&early).is_none(), "refused for now");
    // The registry names node 2 within the time: its order runs, the liar's not.
    node.set_commander(t0 + ttl / 2, Some(n(2)));
    assert!(node.actor(&early).is_some(), "node 2's order ran");
    assert!(
        node.actor(&named).is_none(),
        "an order sent while another node was named ran"
    );
    assert!(node.actor(&liar_key).is_none(), "the liar's did not");
    assert_eq!(node.stats.held_commands_run, 1);
    // Runs once: naming node 2 again runs nothing more.
    node.set_commander(t0 + ttl / 2, Some(n(2)));
    assert_eq!(node.stats.held_commands_run, 1);
    // An order older than the time is dropped even if its sender is named.
    let t1 = t0 + ttl;
    node.set_commander(t1, None);
    assert!(node.handle(t1, n(4), activate(&stale)).is_err());
    node.set_commander(t1 + ttl, Some(n(4)));
    assert!(node.actor(&stale).is_none(), "a stale order ran");
    // Bounded: a flood keeps only the newest `held_commands_max`.
    let t2 = t1 + ttl * 3;
    let flood: Vec<DurableKey> = (0..config.held_commands_max + 5)
        .map(|i| key(&format!("flood{i}")))
        .collect();
    node.set_commander(t2, None);
    for k in &flood {
        assert!(node.handle(t2, n(5), activate(k)).is_err());
    }
    node.set_commander(t2, Some(n(5)));
    assert!(node.actor(&flood[4]).is_none(), "the oldest were dropped");
    assert!(node.actor(&flood[5]).is_some());
    assert!(node.actor(flood.last().unwrap()).is_some());
    assert_eq!(
        node.stats.held_commands_run,
        1 + u64::try_from(config.held_commands_max).unwrap()
    );
    assert_eq!(
        node.stats.refused.not_commander,
        4 + u64::try_from(flood.len()).unwrap()
    );
}

#[test]
fn a_release_runs_only_once_the_schedulers_replicas_show_its_sender_holds_the_scheduler() {
    let sched = key("plexus/scheduler");
    let victim = key("victim");
    let sched_set = set(&[1, 2, 4]);
    // Node 3 keeps a copy of `victim`; its registry names node 5 the scheduler's
    // host, which it was until the scheduler moved to node 1 (ballot 2@1).
    let record = Record {
        ballot: b(1, n(3)),
        version: 1,
        set: set(&[3, 6, 7]),
        body: vec![1, 2, 3].into(),
    };
    let mut store = MemStore::default();
    plexus_durable::SlotStore::put(
        &mut store,
        &victim,
        plexus_durable::Slot {
            promised: b(1, n(3)),
            record: Some(record),
            digest: None,
        },
    )
    .unwrap();
    let victim2 = key("victim2");
    plexus_durable::SlotStore::put(
        &mut store,
        &victim2,
        plexus_durable::Slot {
            promised: b(1, n(3)),
            record: None,
            digest: None,
        },
    )
    .unwrap();
    let mut node = DurableNode::new(n(3), NodeConfig::default(), store);
    let t0 = Time::from_millis(1_000);
    node.set_commander(t0, Some(n(5)));
    node.set_authority(Some((sched.clone(), sched_set.clone())));
    let held = |node: &DurableNode<MemStore>| node.replica().store().slots().contains_key(&victim);
    let held2 =
        |node: &DurableNode<MemStore>| node.replica().store().slots().contains_key(&victim2);
    let release = DurableMsg::Command(Command::Release {
        key: victim.clone(),
    });
    // Each check goes to every replica of the scheduler's set, at round zero.
    let checks = |node: &mut DurableNode<MemStore>| {
        let mut to = Vec::new();
        while let Some((replica, msg)) = node.poll_transmit() {
            if let DurableMsg::Replica {
                req,
                key,
                op: ReplicaOp::Check { ballot },
                ..
            } = msg
            {
                assert_eq!((key, ballot), (sched.clone(), b(0, n(3))));
                to.push((replica, req));
            }
        }
        to
    };
    let answer = |node: &mut DurableNode<MemStore>, from: u64, req: u64, promised: Ballot| {
        node.handle(
            t0,
            n(from),
            DurableMsg::ReplicaReply {
                from: n(from),
                req,
                key: sched.clone(),
                reply: ReplicaReply::Refused { promised },
            },
        )
        .unwrap();
    };

    // The former host orders a release: nodes 1 and 2 promised the new host's
    // ballot, and node 4 lies for the former host with a ballot of its own.
    node.handle(t0, n(5), release.clone()).unwrap();
    let asked = checks(&mut node);
    assert_eq!(
        asked.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        sched_set.nodes().to_vec()
    );
    assert!(held(&node), "nothing released before the replicas answered");
    let req = asked[0].1;
    answer(&mut node, 4, req, b(1, n(5)));
    answer(&mut node, 2, req, b(2, n(1)));
    answer(&mut node, 1, req, b(2, n(1)));
    assert!(held(&node), "a former host's release ran");
    assert_eq!(node.stats.releases_unconfirmed, 1);

    // A lying replica claiming a huge ballot for the former host does not make a
    // majority either; at the deadline the release is dropped on what came.
    node.handle(t0, n(5), release.clone()).unwrap();
    let req = checks(&mut node)[0].1;
    answer(&mut node, 4, req, b(u64::MAX, n(5)));
    answer(&mut node, 2, req, b(1, n(5)));
    let later = t0 + NodeConfig::default().held_command_ttl;
    node.handle_timeout(later);
    assert!(held(&node));
    assert_eq!(node.stats.releases_unconfirmed, 2);

    // The registry catches up; the new host's release runs once a majority of
    // the set shows its ballot and none shows a newer one.
    node.set_commander(later, Some(n(1)));
    node.handle(later, n(1), release).unwrap();
    let req = checks(&mut node)[0].1;
    answer(&mut node, 1, req, b(2, n(1)));
    answer(&mut node, 2, req, b(2, n(1)));
    assert!(held(&node), "decided when every replica answered");
    answer(&mut node, 4, req, b(1, n(5)));
    assert!(!held(&node), "the scheduler's own release ran");
    assert_eq!(node.stats.releases_unconfirmed, 2);

    // A release kept while the registry named no scheduler is checked too when
    // its sender is named: it does not run on the naming alone.
    node.set_commander(later, None);
    let release2 = DurableMsg::Command(Command::Release {
        key: victim2.clone(),
    });
    assert!(
        node.handle(later, n(6), release2).is_err(),
        "refused for now"
    );
    node.set_commander(later, Some(n(6)));
    assert_eq!(node.stats.held_commands_run, 1);
    let req = checks(&mut node)[0].1;
    assert!(held2(&node), "a kept release waits for the check");
    answer(&mut node, 1, req, b(2, n(1)));
    answer(&mut node, 2, req, b(2, n(1)));
    answer(&mut node, 4, req, b(2, n(1)));
    assert!(held2(&node), "the scheduler's replicas show another host");
    assert_eq!(node.stats.releases_unconfirmed, 3);
}
