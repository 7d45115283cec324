//! Hosts driven in one process on a virtual clock: a tiny network that delivers
//! every `Effect::Send` in order, and a registry that keeps the highest-ranked
//! claim per name, as the mesh's does.

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_actors::{NodeId, Time};
use plexus_durable::MemStore;
use plexus_durable::activation::{Applied, Input};
use plexus_durable::types::DurableKey;
use plexus_mesh::membership::MemberState;
use plexus_scheduler::protocol::{ActorSpec, Rejection, Request, Response, Signed};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::Resources;

use super::*;

/// A kind that counts what it applies and checks each sender's numbers.
struct Counter;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Count {
    applied: u64,
    last: BTreeMap<String, u64>,
}

struct CounterCode(Count);

impl DurableKind for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn build(
        &self,
        _: &DurableKey,
        _: &ActorSpec,
        state: &Snapshot,
    ) -> Result<Box<dyn DurableCode>, CodeError> {
        let count = if state.bytes.is_empty() {
            Count::default()
        } else {
            codec::decode_body(&state.bytes, 1 << 20).map_err(CodeError::State)?
        };
        Ok(Box::new(CounterCode(count)))
    }
}

impl DurableCode for CounterCode {
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodeError> {
        let mut out = Applied::default();
        for input in inputs {
            let sender = input.from.map(|s| s.to_string()).unwrap_or_default();
            let last = self.0.last.entry(sender).or_insert(0);
            if input.seq != *last + 1 {
                return Err(CodeError::Failed(format!("seq {} after {last}", input.seq)));
            }
            *last = input.seq;
            self.0.applied += 1;
            out.replies.push(Some(Ok(plexus_durable::wire::Bytes::from(
                self.0.applied.to_le_bytes().to_vec(),
            ))));
        }
        if snapshot {
            out.snapshot = Some(Snapshot {
                schema_version: 1,
                bytes: codec::encode_body(&self.0).map_err(|e| CodeError::Failed(e.to_string()))?,
            });
        }
        Ok(out)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "applied": self.0.applied })
    }
}

/// The tests' network name.
const NET: &str = "host-test-net";

/// The wall clock the tests' drivers pass (ms since the epoch).
const WALL_MS: u64 = 1_700_000_000_000;

struct Net {
    now: Time,
    seq: u64,
    hosts: Vec<DurableHost<MemStore>>,
    names: BTreeMap<String, BTreeMap<NodeId, u64>>,
    operator: NodeKey,
    answers: Vec<(usize, RequestId, Result<Response, AnswerError>)>,
    replies: Vec<(usize, RequestId, Result<Vec<u8>, String>)>,
    notes: Vec<(usize, Note)>,
    unregistered: Vec<(usize, String, Option<NodeId>)>,
    /// Hosts killed: they run no more, what is sent to them is lost, and the
    /// others' membership shows them dead.
    dead: std::collections::BTreeSet<usize>,
    /// While set, every handoff is lost on the way.
    lose_handoffs: bool,
    /// The registry is sharded: each node's facts list only the names it claims.
    partial: bool,
    /// The scheduler's commands, by receiving host.
    commands: Vec<(usize, plexus_durable::wire::Command)>,
}

struct Dir {
    me: NodeId,
    down: Vec<NodeId>,
    ids: Vec<NodeId>,
    names: BTreeMap<String, BTreeMap<NodeId, u64>>,
    operator: NodeId,
    partial: bool,
}

fn winner(claims: &BTreeMap<NodeId, u64>) -> Option<NodeId> {
    claims
        .iter()
        .max_by_key(|(node, rank)| (**rank, std::cmp::Reverse(**node)))
        .map(|(node, _)| *node)
}

impl Directory for Dir {
    fn lookup(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).and_then(winner)
    }
    fn facts(&self) -> ClusterFacts {
        ClusterFacts {
            capacity: Resources {
                cpu_millis: 8_000,
                memory_bytes: 8 << 30,
                gpus: 0,
            },
            members: self
                .ids
                .iter()
                .filter(|id| **id != self.me)
                .map(|id| MemberFacts {
                    id: *id,
                    state: if self.down.contains(id) {
                        MemberState::Dead
                    } else {
                        MemberState::Alive
                    },
                    capacity: Resources {
                        cpu_millis: 8_000,
                        memory_bytes: 8 << 30,
                        gpus: 0,
                    },
                    tags: Default::default(),
                })
                .collect(),
            network: NET.into(),
            allowlisted: self
                .ids
                .iter()
                .map(|id| (*id, crate::Grant::default()))
                .collect(),
            submitters: vec![self.operator],
            names: self
                .names
                .iter()
                .filter_map(|(n, c)| winner(c).map(|w| (n.clone(), w)))
                .filter(|(_, w)| !self.partial || *w == self.me)
                .collect(),
            names_partial: self.partial,
            ..ClusterFacts::default()
        }
    }
}

impl Net {
    fn new(n: u64, config: HostConfig) -> Net {
        let operator = NodeKey::from_seed([7; 32]);
        let hosts = (0..n)
            .map(|i| {
                let mut kinds = Kinds::new();
                kinds.register(Counter).unwrap();
                DurableHost::new(
                    NodeId::synthetic(i),
                    config,
                    MemStore::default(),
                    kinds,
                    operator.clone(),
                    1_000 + i,
                )
            })
            .collect();
        Net {
            now: Time::from_micros(1_000_000),
            seq: 0,
            hosts,
            names: BTreeMap::new(),
            operator,
            answers: Vec::new(),
            replies: Vec::new(),
            notes: Vec::new(),
            unregistered: Vec::new(),
            dead: Default::default(),
            lose_handoffs: false,
            partial: false,
            commands: Vec::new(),
        }
    }

    /// Kills host `i`: the registry drops its claims, as the mesh's does.
    fn kill(&mut self, i: usize) {
        self.dead.insert(i);
        let id = self.hosts[i].id();
        for claims in self.names.values_mut() {
            claims.remove(&id);
        }
    }

    fn index(&self, id: NodeId) -> usize {
        id.synthetic_index() as usize
    }

    fn dir(&self, i: usize) -> Dir {
        Dir {
            me: self.hosts[i].id(),
            down: self.dead.iter().map(|d| self.hosts[*d].id()).collect(),
            ids: self.hosts.iter().map(DurableHost::id).collect(),
            names: self.names.clone(),
            operator: self.operator.node_id(),
            partial: self.partial,
        }
    }

    /// Pumps every host and carries out effects until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1_000 {
            let mut moved = false;
            for i in 0..self.hosts.len() {
                if self.dead.contains(&i) {
                    continue;
                }
                let dir = self.dir(i);
                let notes = &mut self.notes;
                self.hosts[i]
                    .pump(self.now, &dir, &mut |_, note| notes.push((i, note.clone())))
                    .unwrap();
                self.hosts[i].check_invariants().unwrap();
                while let Some(effect) = self.hosts[i].poll_effect() {
                    moved = true;
                    let me = self.hosts[i].id();
                    match effect {
                        Effect::Send { to, bytes } => {
                            let j = self.index(to);
                            let handoff = || {
                                matches!(
                                    plexus_durable::wire::decode(&bytes),
                                    Ok(plexus_durable::DurableMsg::Handoff(_))
                                )
                            };
                            if self.lose_handoffs && handoff() {
                                continue;
                            }
                            if let Ok(plexus_durable::DurableMsg::Command(c)) =
                                plexus_durable::wire::decode(&bytes)
                            {
                                self.commands.push((j, c));
                            }
                            if !self.dead.contains(&j) {
                                self.hosts[j]
                                    .handle_wire(self.now, me, &bytes.clone().into())
                                    .unwrap();
                            }
                        }
                        Effect::Register { name, rank, actor } => {
                            assert_eq!(actor.origin, me);
                            self.names.entry(name).or_default().insert(me, rank);
                        }
                        Effect::Unregister { name } => {
                            let winner_before = self.names.get(&name).and_then(winner);
                            self.unregistered.push((i, name.clone(), winner_before));
                            if let Some(c) = self.names.get_mut(&name) {
                                c.remove(&me);
                            }
                        }
                        Effect::Answer { request, answer } => {
                            self.answers.push((i, request, answer))
                        }
                        Effect::Replied { request, reply } => {
                            self.replies.push((i, request, reply))
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Advances the clock by `step`, `times` times.
    fn run(&mut self, step: Duration, times: u32) {
        for _ in 0..times {
            self.now = self.now + step;
            for i in 0..self.hosts.len() {
                if self.dead.contains(&i) {
                    continue;
                }
                let dir = self.dir(i);
                self.hosts[i].handle_timeout(self.now, &dir);
            }
            self.settle();
        }
    }

    fn sign(&mut self, request: Request) -> Signed {
        self.seq += 1;
        Signed::sign(request, NET, self.seq, WALL_MS + 60_000, &self.operator).unwrap()
    }

    fn submit(&mut self, i: usize, request: Request) -> RequestId {
        let signed = self.sign(request);
        let dir = self.dir(i);
        let id = self.hosts[i].submit(&signed, WALL_MS, &dir).unwrap();
        self.settle();
        id
    }

    fn answer(&self, request: RequestId) -> Option<&Result<Response, AnswerError>> {
        self.answers
            .iter()
            .find(|(_, r, _)| *r == request)
            .map(|(_, _, a)| a)
    }

    fn host_of(&self, key: &DurableKey) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| {
                self.hosts[i]
                    .core()
                    .actor(key)
                    .is_some_and(|a| a.is_active())
            })
            .collect()
    }
}

const JOB: &str = r#"name = "t"
durability = 3
[resources]
cpu = "100m"
[[stage]]
name = "c"
kind = "counter"
"#;

fn deployed(n: u64) -> (Net, DurableKey) {
    deployed_with(Net::new(n, HostConfig::default()))
}

fn deployed_with(mut net: Net) -> (Net, DurableKey) {
    // The watchdog's grace, then the scheduler's first view.
    net.run(Duration::from_millis(500), 14);
    let sched = net.hosts[0].scheduler().clone();
    assert_eq!(net.host_of(&sched).len(), 1, "one scheduler");
    let req = net.submit(1, Request::Deploy { spec: JOB.into() });
    net.run(Duration::from_millis(500), 6);
    assert!(
        matches!(net.answer(req), Some(Ok(Response::Deployed { .. }))),
        "{:?}",
        net.answer(req)
    );
    let key = DurableKey::new("t/c/0").unwrap();
    assert_eq!(net.host_of(&key).len(), 1, "the actor is active once");
    (net, key)
}

#[test]
fn an_ask_gets_its_own_reply_once_and_asks_are_bounded() {
    let (mut net, key) = deployed(3);
    let asks: Vec<RequestId> = (0..5u64)
        .map(|k| {
            net.hosts[2]
                .ask(&key, k.to_le_bytes().to_vec(), None)
                .unwrap()
        })
        .collect();
    net.run(Duration::from_millis(10), 20);
    let mut counts: Vec<u64> = asks
        .iter()
        .map(|id| {
            let got: Vec<_> = net
                .replies
                .iter()
                .filter(|(i, r, _)| *i == 2 && r == id)
                .collect();
            assert_eq!(got.len(), 1, "one reply per ask");
            let bytes = got[0].2.clone().unwrap();
            u64::from_le_bytes(bytes.try_into().unwrap())
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        vec![1, 2, 3, 4, 5],
        "each ask applied once, with its own reply"
    );
    // Waiting asks share the scheduler requests' bound.
    let max = HostConfig::default().waiters_max;
    let mut refused = false;
    for k in 0..=max as u64 {
        if matches!(
            net.hosts[1].ask(&key, k.to_le_bytes().to_vec(), None),
            Err(SendError::TooManyWaiting)
        ) {
            refused = true;
            break;
        }
    }
    assert!(refused, "asks past waiters_max were taken");
}

#[test]
fn a_deployed_actor_applies_and_acknowledges_client_messages_once() {
    let (mut net, key) = deployed(3);
    for k in 0..20u64 {
        net.hosts[2]
            .send(&key, k.to_le_bytes().to_vec(), None)
            .unwrap();
    }
    net.run(Duration::from_millis(10), 20);
    let status = net.hosts[2].status();
    assert_eq!((status.sent, status.acked), (20, 20));
    let host = net.host_of(&key)[0];
    let applied = &net.hosts[host].status().actors[key.as_str()]["applied"];
    assert_eq!(applied, 20, "each message applied exactly once");
    let acked = net
        .notes
        .iter()
        .filter_map(|(i, n)| match n {
            Note::Acked { session, up_to, .. } if *i == 2 && *session == net.hosts[2].session() => {
                Some(*up_to)
            }
            _ => None,
        })
        .max();
    assert_eq!(acked, Some(20));
}

#[test]
fn deactivation_withdraws_the_claim_even_when_a_newer_activation_holds_the_name() {
    let (mut net, key) = deployed(3);
    let from = net.host_of(&key)[0];
    let to = (from + 1) % 3;
    let target = net.hosts[to].id();
    let req = net.submit(
        0,
        Request::Migrate {
            actor: key.to_string(),
            to: target,
        },
    );
    net.run(Duration::from_millis(100), 30);
    assert!(matches!(
        net.answer(req),
        Some(Ok(Response::Migrating { .. }))
    ));
    assert_eq!(net.host_of(&key), vec![to]);
    let name = key.registry_name();
    let withdrawn: Vec<&(usize, String, Option<NodeId>)> = net
        .unregistered
        .iter()
        .filter(|(i, n, _)| *i == from && *n == name)
        .collect();
    assert_eq!(withdrawn.len(), 1, "{:?}", net.unregistered);
    assert_eq!(
        withdrawn[0].2,
        Some(target),
        "the new host already won the name when the old one withdrew"
    );
    assert!(
        net.notes
            .iter()
            .any(|(i, n)| *i == from && matches!(n, Note::Migrated { key: k, .. } if *k == key))
    );
}

/// (The scheduler's side, acting on the report, is tested in `plexus-scheduler`:
/// these hosts' synthetic ids sign nothing the scheduler would take as theirs.)
#[test]
fn a_move_whose_handoff_is_lost_fails_at_the_source_which_says_so_and_resumes() {
    let (mut net, key) = deployed(3);
    let from = net.host_of(&key)[0];
    let to = (from + 1) % 3;
    let target = net.hosts[to].id();
    net.lose_handoffs = true;
    let req = net.submit(
        0,
        Request::Migrate {
            actor: key.to_string(),
            to: target,
        },
    );
    assert!(matches!(
        net.answer(req),
        Some(Ok(Response::Migrating { .. }))
    ));
    let failed = |net: &Net| {
        net.notes.iter().any(|(i, n)| {
            *i == from
                && matches!(n, Note::MoveFailed { key: k, to: t, why }
                    if *k == key && *t == target && why.contains("did not answer"))
        })
    };
    // Nothing before the handoff timeout (5 s), then the failure at once.
    net.run(Duration::from_millis(100), 45);
    assert!(!failed(&net));
    let mut waited = 0;
    while !failed(&net) {
        net.run(Duration::from_millis(100), 1);
        waited += 1;
        assert!(waited < 20, "no failure noted");
    }
    // It resumes at the source (restoring, then serving), nowhere else.
    let a = net.hosts[from].core().actor(&key).unwrap();
    assert!(a.is_active() || a.is_fencing(), "resumed at the source");
    assert!(net.host_of(&key).iter().all(|&h| h == from));
}

#[test]
fn commits_carry_their_latency_and_a_takeover_from_a_dead_host_is_a_timed_failover() {
    let (mut net, key) = deployed(4);
    let host = net.host_of(&key)[0];
    let client = (host + 1) % 4;
    for k in 0..5u64 {
        net.hosts[client]
            .send(&key, k.to_le_bytes().to_vec(), None)
            .unwrap();
    }
    net.run(Duration::from_millis(10), 10);
    // This network delivers within one settle: every commit took no time.
    let latencies: Vec<Duration> = net
        .notes
        .iter()
        .filter_map(|(i, n)| match n {
            Note::Committed {
                key: k, latency, ..
            } if *i == host && *k == key => Some(*latency),
            _ => None,
        })
        .collect();
    assert!(!latencies.is_empty(), "the actor committed");
    assert!(latencies.iter().all(|l| l.is_zero()), "{latencies:?}");
    assert!(
        !net.notes
            .iter()
            .any(|(_, n)| matches!(n, Note::FailedOver { .. })),
        "no failover before a host died"
    );

    net.kill(host);
    let killed = net.now;
    let step = Duration::from_millis(100);
    let mut serving = None;
    for _ in 0..200 {
        net.run(step, 1);
        // The dead host's core still thinks it serves: it never ran again.
        if let Some(&to) = net.host_of(&key).iter().find(|i| **i != host) {
            serving = Some((to, net.now));
            break;
        }
    }
    let (to, at) = serving.expect("the actor serves again on a live node");
    assert_ne!(to, host);
    let (from, after) = net
        .notes
        .iter()
        .find_map(|(i, n)| match n {
            Note::FailedOver {
                key: k,
                from,
                after,
            } if *i == to && *k == key => Some((*from, *after)),
            _ => None,
        })
        .expect("the new host noted a failover");
    assert_eq!(from, net.hosts[host].id());
    // Timed from this node's first tick that saw the host dead: at most the whole
    // time since the kill, and at most one scheduler tick (plus one step) less.
    let since_kill = at.saturating_since(killed);
    let tick = HostConfig::default().scheduler_tick;
    assert!(after <= since_kill, "{after:?} > {since_kill:?}");
    assert!(
        after + tick + step >= since_kill,
        "{after:?} + a tick < {since_kill:?}"
    );
    // The scheduler may have moved here from the dead host too.
    let noted = net
        .notes
        .iter()
        .filter(|(i, n)| *i == to && matches!(n, Note::FailedOver { .. }))
        .count() as u64;
    assert_eq!(net.hosts[to].status().failovers, noted);
}

#[test]
fn when_the_schedulers_host_dies_the_lowest_live_node_restores_it_at_once_and_it_replaces_the_actors()
 {
    let (mut net, key) = deployed(4);
    let sched = net.hosts[0].scheduler().clone();
    let old = net.host_of(&sched)[0];
    // Put the actor on the scheduler's host too, if it is not there yet: the
    // worst case, both gone at once.
    let actor_host = net.host_of(&key)[0];
    net.kill(old);
    if actor_host != old {
        net.kill(actor_host);
    }
    let killed = net.now;
    // The membership's death event: the hosts tick at once.
    for i in 0..net.hosts.len() {
        if !net.dead.contains(&i) {
            let dir = net.dir(i);
            net.hosts[i].member_down(net.now, &dir);
        }
    }
    net.settle();
    let restored = net.host_of(&sched);
    assert_eq!(
        restored.len(),
        2,
        "the dead host's core still thinks it hosts"
    );
    let new = restored.into_iter().find(|i| *i != old).unwrap();
    let lowest = (0..net.hosts.len())
        .find(|i| !net.dead.contains(i))
        .unwrap();
    assert_eq!(new, lowest, "the lowest live node took over");
    assert_eq!(net.now, killed, "without waiting out the watchdog's grace");
    // Its first view places the actor on a live node within a tick or two.
    let tick = HostConfig::default().scheduler_tick;
    let mut serving = None;
    for n in 1..=4 {
        net.run(tick, 1);
        if let Some(&to) = net.host_of(&key).iter().find(|i| !net.dead.contains(i)) {
            serving = Some((to, n));
            break;
        }
    }
    let (to, ticks) = serving.expect("the actor serves on a live node within 4 ticks");
    assert!(!net.dead.contains(&to));
    assert!(
        ticks < HostConfig::default().watchdog_grace_ticks,
        "{ticks} ticks"
    );
}

#[test]
fn requests_waiting_for_the_scheduler_are_bounded_and_cancellable() {
    let config = HostConfig {
        waiters_max: 2,
        ..HostConfig::default()
    };
    let mut net = Net::new(1, config);
    let signed = net.sign(Request::Status);
    let dir = net.dir(0);
    let a = net.hosts[0].submit(&signed, WALL_MS, &dir).unwrap();
    net.hosts[0].submit(&signed, WALL_MS, &dir).unwrap();
    assert_eq!(
        net.hosts[0].submit(&signed, WALL_MS, &dir),
        Err(SubmitError::TooManyWaiting)
    );
    net.hosts[0].cancel(a);
    assert!(
        net.hosts[0].submit(&signed, WALL_MS, &dir).is_ok(),
        "a cancelled request frees its place"
    );
    assert_eq!(
        net.hosts[0].core().session_unacked(a),
        None,
        "its session is closed"
    );
    net.hosts[0].check_invariants().unwrap();
}

#[test]
fn what_goes_on_the_wire_is_the_durable_codec() {
    let (mut net, key) = deployed(3);
    net.hosts[2].send(&key, vec![1, 2, 3], None).unwrap();
    let dir = net.dir(2);
    net.hosts[2].pump(net.now, &dir, &mut |_, _| {}).unwrap();
    let mut sent = 0;
    while let Some(effect) = net.hosts[2].poll_effect() {
        if let Effect::Send { bytes, .. } = effect {
            plexus_durable::wire::decode(&bytes).unwrap();
            sent += 1;
        }
    }
    let host = net.host_of(&key)[0];
    assert_eq!(sent, usize::from(host != 2));
    let from = net.hosts[1].id();
    assert!(
        net.hosts[0]
            .handle_wire(net.now, from, &b"garbage"[..].into())
            .is_err()
    );
}

/// The bytes every host's store holds (the in-memory `SlotStore`, encoded as a
/// real store would write it).
fn store_bytes(net: &Net) -> usize {
    net.hosts
        .iter()
        .flat_map(|h| h.core().replica().store().slots().values())
        .map(|slot| plexus_durable::replica::encode_slot(slot).unwrap().len())
        .sum()
}

/// Requests with bad signatures, from strangers, for another network or expired
/// are refused by `submit` itself: no session opens, nothing reaches the
/// scheduler, and the store does not grow by a byte. A replayed deploy reaches the
/// scheduler and is refused there as a replay.
#[test]
fn refused_requests_leave_the_store_unchanged_and_replays_are_refused() {
    let (mut net, key) = deployed(3);
    net.run(Duration::from_millis(500), 4);
    net.settle();
    let before = store_bytes(&net);
    assert!(before > 0);
    let stranger = NodeKey::from_seed([99; 32]);
    let deploy = |name: &str| Request::Deploy {
        spec: JOB.replace("name = \"t\"", &format!("name = \"{name}\"")),
    };
    for i in 0..300u64 {
        let mut bad = net.sign(deploy(&format!("evil{i}")));
        bad.signature[(i % 64) as usize] ^= 1;
        let stranger_req = Signed::sign(deploy("s"), NET, i, WALL_MS + 1, &stranger).unwrap();
        let foreign = Signed::sign(deploy("f"), "other", i, WALL_MS + 1, &net.operator).unwrap();
        let expired = net.sign(deploy("e"));
        let dir = net.dir(0);
        let host = &mut net.hosts[0];
        assert!(matches!(
            host.submit(&bad, WALL_MS, &dir),
            Err(SubmitError::Refused(Rejection::BadSignature(_)))
        ));
        assert!(matches!(
            host.submit(&stranger_req, WALL_MS, &dir),
            Err(SubmitError::Refused(Rejection::NotSubmitter { .. }))
        ));
        assert!(matches!(
            host.submit(&foreign, WALL_MS, &dir),
            Err(SubmitError::Refused(Rejection::WrongNetwork { .. }))
        ));
        assert!(matches!(
            host.submit(&expired, expired.expires_ms + 1, &dir),
            Err(SubmitError::Refused(Rejection::Expired { .. }))
        ));
    }
    net.settle();
    assert_eq!(store_bytes(&net), before, "refused requests were stored");

    // A valid stop is applied once; the same bytes again are a replay.
    let stop = net.sign(Request::Stop { job: "t".into() });
    let dir = net.dir(1);
    let first = net.hosts[1].submit(&stop, WALL_MS, &dir).unwrap();
    net.settle();
    net.run(Duration::from_millis(500), 2);
    assert!(matches!(
        net.answer(first),
        Some(Ok(Response::Stopped { .. }))
    ));
    // The scheduler's release went through each node's check with the
    // scheduler's replicas: the actor is gone, and every copy of its state.
    assert!(net.host_of(&key).is_empty());
    for h in &net.hosts {
        assert!(!h.core().replica().store().slots().contains_key(&key));
        assert_eq!(h.core().stats.releases_unconfirmed, 0);
    }
    let dir = net.dir(1);
    let again = net.hosts[1].submit(&stop, WALL_MS, &dir).unwrap();
    net.settle();
    net.run(Duration::from_millis(500), 2);
    assert!(
        matches!(
            net.answer(again),
            Some(Ok(Response::Rejected(Rejection::Replayed { .. })))
        ),
        "{:?}",
        net.answer(again)
    );
}

/// With a sharded registry a node's facts list only its own share of the names,
/// so the scheduler's node does not see where an actor elsewhere runs: its host
/// repeats its report every two ticks and answers each order to activate it with
/// one more (and without sharding sends none past the first).
#[test]
fn with_a_sharded_registry_hosts_repeat_their_reports_and_answer_activations_with_one() {
    for partial in [false, true] {
        let mut net = Net::new(3, HostConfig::default());
        net.partial = partial;
        net.run(Duration::from_millis(500), 14);
        let req = net.submit(
            1,
            Request::Deploy {
                spec: format!("{JOB}replicas = 3\n"),
            },
        );
        net.run(Duration::from_millis(500), 6);
        assert!(
            matches!(net.answer(req), Some(Ok(Response::Deployed { .. }))),
            "{:?}",
            net.answer(req)
        );
        // An actor away from the scheduler's node, which does not hold its name:
        // only reports can tell the scheduler where it runs.
        let sched = net.hosts[0].scheduler().clone();
        let here = net.host_of(&sched);
        let key = (0..3)
            .filter_map(|i| DurableKey::new(&format!("t/c/{i}")).ok())
            .find(|k| net.host_of(k).len() == 1 && net.host_of(k) != here)
            .expect("three actors spread over three nodes");
        let host = net.host_of(&key)[0];
        let sent = |net: &Net| {
            let h = &net.hosts[host];
            h.core()
                .session_marks(h.session())
                .get(&sched)
                .copied()
                .unwrap_or(0)
        };
        let before = sent(&net);
        let seen = net.commands.len();
        net.run(Duration::from_millis(500), 20);
        let reports = sent(&net) - before;
        // Orders to activate the actor where it is active are answered with a
        // report. (This harness's hosts sign with the operator's key, so the
        // scheduler refuses their reports, `NotTheReporter`, and keeps asking;
        // the simulator's nodes sign with their own, and its sweeps run the
        // scheduler on reports end to end.)
        let asked = net.commands[seen..]
            .iter()
            .filter(|(j, c)| {
                *j == host
                    && matches!(c, plexus_durable::wire::Command::Activate { key: k, .. } if *k == key)
            })
            .count() as u64;
        if partial {
            assert_eq!(reports, 10 + asked, "one report every other tick");
        } else {
            assert_eq!(
                (reports, asked),
                (0, 0),
                "a full registry says where actors run"
            );
        }
        assert_eq!(net.host_of(&key), vec![host], "never activated twice");
    }
}
