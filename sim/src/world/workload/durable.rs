//! The durable workload: every simulated node runs the shared durable host core
//! (`plexus-host`), exactly the code the daemon's service runs, over a simulated
//! disk that survives crashes. This module is its driver, as
//! `src/hosting/service.rs` is in production: it hands the host wire bytes and
//! time, answers its questions from the node's simulated `Cluster`, and carries
//! out its effects on that `Cluster`. On top, an operator deploys a job of toy
//! actors, sends client traffic and orders migrations, and the checkers watch
//! every note the host makes.

use std::sync::Arc;

use plexus_actors::rng::DetRng;
use plexus_actors::{NodeId, Time};
use plexus_durable::types::{Ballot, DurableKey, SenderId};
use plexus_durable::{DurableState, MESSAGE_TYPE, Record};
use plexus_host::{
    ClusterFacts, Directory, DurableHost, Effect, Fault, HostConfig, Kinds, MemberFacts, Note,
    WireError,
};
use plexus_mesh::cluster::Cluster;
use plexus_scheduler::protocol::{Request, Response, Signed};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::Resources;

use crate::scenario::DurableSection;
use crate::toy_kinds::{JOB, OrderLog, Toy, job_spec, kinds};
use crate::world::*;
use plexus_durable::SERVICE_LOCAL_ID;

/// What every simulated node offers the scheduler.
/// The simulated network's name (the allowlist's).
const NETWORK: &str = "sim";
/// How long before the settle check the client sessions' sends are noted: every
/// message sent by then must be acknowledged at the check.
pub(in crate::world) const SETTLE_SLACK: u64 = 10_000_000;

const CAPACITY: Resources = Resources {
    cpu_millis: 64_000,
    memory_bytes: 64 << 30,
    gpus: 0,
};

/// The durable layer's workload and checker state.
#[derive(Default)]
pub(in crate::world) struct DurableWorld {
    rng: DetRng,
    operator: Option<NodeKey>,
    nonce: u64,
    deployed: bool,
    /// Every node, in index order (the simulated allowlist).
    ids: Vec<NodeId>,
    kinds: Kinds,
    order_log: OrderLog,
    /// Highest sequence number acknowledged per (actor, client session).
    pub(in crate::world) acked: BTreeMap<(DurableKey, u64), u64>,
    /// The newest commit seen per actor.
    pub(in crate::world) last_commit: BTreeMap<DurableKey, (Ballot, u64)>,
    /// Per actor and activation ballot: the record it restored.
    pub(in crate::world) restores: BTreeMap<(DurableKey, Ballot), Option<(Ballot, u64)>>,
    /// Client traffic and migrations stop here (the last fault's end).
    pub(in crate::world) traffic_until: u64,
    /// Per node, [`SETTLE_SLACK`] before the settle check: its client session
    /// and the last message it had sent to each receiver.
    marks: BTreeMap<usize, (u64, BTreeMap<DurableKey, u64>)>,
    relays: Vec<DurableKey>,
    sinks: Vec<DurableKey>,
    scheduler: Option<DurableKey>,
}

impl DurableWorld {
    /// The durable actors of the run, for liars to lie about.
    pub(in crate::world) fn lie_keys(&self) -> Vec<DurableKey> {
        self.relays
            .iter()
            .chain(&self.sinks)
            .chain(&self.scheduler)
            .cloned()
            .collect()
    }

    pub(in crate::world) fn new(d: &DurableSection, ids: &[NodeId], seed: u64) -> DurableWorld {
        let key = |stage: &str, i: u32| DurableKey::new(&format!("{JOB}/{stage}/{i}")).ok();
        let order_log = OrderLog::default();
        DurableWorld {
            rng: DetRng::split(seed, 5),
            operator: Some(NodeKey::from_seed(DetRng::split(seed, 6).bytes32())),
            ids: ids.to_vec(),
            kinds: kinds(&order_log),
            order_log,
            relays: (0..d.replicas).filter_map(|i| key("relay", i)).collect(),
            sinks: (0..d.replicas).filter_map(|i| key("sink", i)).collect(),
            scheduler: DurableKey::new(plexus_scheduler::SCHEDULER_KEY).ok(),
            ..DurableWorld::default()
        }
    }
}

/// The host's questions, answered from a node's simulated `Cluster`.
struct SimDirectory<'a> {
    core: &'a Cluster,
    ids: &'a [NodeId],
    operator: Option<NodeId>,
}

impl Directory for SimDirectory<'_> {
    fn lookup(&self, name: &str) -> Option<NodeId> {
        self.core.lookup(name).map(|l| l.node)
    }

    fn facts(&self) -> ClusterFacts {
        let me = self.core.me();
        ClusterFacts {
            capacity: CAPACITY,
            tags: Default::default(),
            members: self
                .core
                .membership()
                .members()
                .filter(|m| m.id() != me)
                .map(|m| MemberFacts {
                    id: m.id(),
                    state: m.state,
                    capacity: CAPACITY,
                    tags: Default::default(),
                })
                .collect(),
            network: NETWORK.into(),
            allowlisted: self
                .ids
                .iter()
                .map(|id| (*id, Default::default()))
                .collect(),
            submitters: self.operator.into_iter().collect(),
            names: self
                .core
                .registry()
                .locations()
                .map(|(name, loc)| (name.to_string(), loc.node))
                .collect(),
            names_partial: self.core.registry().config().sharded(),
        }
    }
}

impl World {
    fn durable_cfg(&self) -> Option<DurableSection> {
        self.scenario.durable.clone()
    }

    /// Starts node `i`'s host over the disk its earlier lives left.
    pub(in crate::world) fn start_host(&mut self, i: usize, incarnation: u64) {
        let Some(cfg) = self.durable_cfg() else {
            return;
        };
        if self.durable.operator.is_none() {
            return;
        }
        let config = HostConfig {
            scheduler_tick: cfg.tick,
            fault: (self.options.bug == Some(Bug::DurableDoubleApply))
                .then_some(Fault::DoubleApply { every: 20 }),
            ..HostConfig::default().fit_lease(self.cluster_config.membership.detection_min())
        };
        let seed = DetRng::split(self.seed, 20_000 + (i as u64) * 1_000 + incarnation).next_u64();
        let node = &mut self.nodes[i];
        let disk = std::mem::take(&mut node.disk);
        // Each node signs its reports with its own key, as in the daemon: the
        // scheduler takes a report only from the node it describes.
        node.host = Some(DurableHost::new(
            node.id,
            config,
            disk,
            self.durable.kinds.clone(),
            node.key.clone(),
            seed,
        ));
    }

    /// A durable message arrived at node `to` over the mesh from node `from`,
    /// the sender the simulated transport authenticated (the node the frame
    /// really came from).
    pub(in crate::world) fn on_durable(
        &mut self,
        to: usize,
        from: NodeId,
        payload: &plexus_actors::codec::Bytes,
    ) {
        self.byzantine_heard_durable(to, payload);
        let now = self.local(to, self.now);
        let Some(host) = self.nodes[to].host.as_mut() else {
            return;
        };
        match host.handle_wire(now, from, payload) {
            Ok(()) => {}
            Err(WireError::Undecodable(e)) => self.violate(
                "durable-wire",
                format!("node {to}: undecodable message: {e}"),
            ),
            // Refusals are counted by the core (`HostStatus::refused`); honest
            // nodes cause some (a late ack from a receiver's old host, a command
            // from a scheduler host the registry does not show yet), which the
            // protocol retries.
            Err(_) => {}
        }
    }

    /// Node `i`'s timer fired.
    pub(in crate::world) fn durable_timeout(&mut self, i: usize, now: Time) {
        self.with_host(i, |host, dir| host.handle_timeout(now, dir));
    }

    /// Node `i`'s membership declared a node dead (or it left).
    pub(in crate::world) fn durable_member_down(&mut self, i: usize, now: Time) {
        self.with_host(i, |host, dir| host.member_down(now, dir));
    }

    /// Runs `f` on node `i`'s host with its directory, if it is up and hosting.
    fn with_host(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut DurableHost<MemStore>, &SimDirectory<'_>),
    ) {
        let World { nodes, durable, .. } = self;
        let node = &mut nodes[i];
        let (Some(core), Some(host)) = (node.core.as_ref(), node.host.as_mut()) else {
            return;
        };
        let dir = SimDirectory {
            core,
            ids: &durable.ids,
            operator: durable.operator.as_ref().map(NodeKey::node_id),
        };
        f(host, &dir);
    }

    /// Runs node `i`'s host until it has nothing more to say, checks what it
    /// noted, and carries out its effects on the node's `Cluster`.
    pub(in crate::world) fn pump_durable(&mut self, i: usize) {
        let now = self.local(i, self.now);
        let mut notes: Vec<(Note, Option<Record>)> = Vec::new();
        let pumped = {
            let World { nodes, durable, .. } = self;
            let node = &mut nodes[i];
            let (Some(core), Some(host)) = (node.core.as_ref(), node.host.as_mut()) else {
                return;
            };
            let dir = SimDirectory {
                core,
                ids: &durable.ids,
                operator: durable.operator.as_ref().map(NodeKey::node_id),
            };
            host.pump(now, &dir, &mut |host, note| {
                // A commit is checked against the record as it is at this moment.
                let record = match note {
                    Note::Committed { key, .. } => host.committed(key).cloned(),
                    _ => None,
                };
                notes.push((note.clone(), record));
            })
        };
        if let Err(e) = pumped {
            self.violate("durable-livelock", format!("node {i}: {e}"));
        }
        for (note, record) in notes {
            self.durable_note(i, note, record);
        }
        let order: Vec<String> = self
            .durable
            .order_log
            .lock()
            .map(|mut log| std::mem::take(&mut *log))
            .unwrap_or_default();
        for v in order {
            self.violate("durable-order", format!("node {i}: {v}"));
        }
        while let Some(effect) = self.nodes[i].host.as_mut().and_then(|h| h.poll_effect()) {
            self.durable_effect(i, now, effect);
        }
    }

    fn durable_effect(&mut self, i: usize, now: Time, effect: Effect) {
        match effect {
            Effect::Send { to, bytes } => {
                let body = Arc::new(DataBody::Tell {
                    target: ActorId::new(to, SERVICE_LOCAL_ID),
                    message_type: MESSAGE_TYPE.to_string(),
                    payload: bytes.into(),
                    trace: None,
                });
                if let Some(core) = self.nodes[i].core.as_mut() {
                    // Refused (window full, peer down): the durable layer retries.
                    let _ = core.send(now, to, body);
                }
            }
            Effect::Register { name, actor, rank } => {
                if let Some(core) = self.nodes[i].core.as_mut() {
                    let _ = core.register_ranked(now, &name, actor, rank);
                }
            }
            Effect::Unregister { name } => {
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.unregister(now, &name);
                }
            }
            Effect::Answer {
                answer: Ok(Response::Deployed { .. }),
                ..
            } => self.durable.deployed = true,
            _ => {}
        }
    }

    fn durable_note(&mut self, i: usize, note: Note, record: Option<Record>) {
        match note {
            Note::Activated {
                key,
                ballot,
                set,
                restored,
            } => {
                self.record(i, 50, ballot.round, set.len() as u64);
                self.durable
                    .restores
                    .insert((key.clone(), ballot), restored);
                self.report.durable_activations += 1;
                if self.durable.scheduler.as_ref() == Some(&key) {
                    self.report.scheduler_activations += 1;
                }
            }
            Note::Reconfigured { set, .. } => self.record(i, 51, set.len() as u64, 0),
            Note::Committed { key, .. } => {
                self.report.durable_commits += 1;
                if let Some(record) = record {
                    self.check_commit(&key, &record);
                }
            }
            Note::Migrated { pause, .. } => {
                self.record(i, 52, 0, 0);
                self.report.migrations += 1;
                let ms = pause.as_millis() as u64;
                self.report.migration_pause_max_ms = self.report.migration_pause_max_ms.max(ms);
            }
            Note::Deactivated { why, .. } => {
                self.record(i, 53, 0, 0);
                let reason = format!("{why:?}");
                let reason = reason
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string();
                *self.report.deactivations.entry(reason).or_default() += 1;
            }
            Note::Acked {
                session, to, up_to, ..
            } => {
                let entry = self.durable.acked.entry((to.clone(), session)).or_insert(0);
                if up_to > *entry {
                    if Some(&to) != self.durable.scheduler.as_ref() {
                        self.report.durable_acked += up_to - *entry;
                    }
                    *entry = up_to;
                }
            }
            Note::Unencodable { to, error } => self.violate(
                "durable-wire",
                format!("node {i}: a message for {to:?} does not encode: {error}"),
            ),
            _ => {}
        }
    }

    /// The operator signs `request` and hands it to node `i`'s host.
    fn operator_request(&mut self, i: usize, request: Request) {
        let World {
            nodes,
            durable,
            now,
            ..
        } = self;
        let Some(op) = durable.operator.as_ref() else {
            return;
        };
        durable.nonce += 1;
        // The simulated clock stands in for the wall clock: requests are valid for
        // the default window from when they are signed, and submitted at once.
        let now_ms = *now / 1_000;
        let expires = now_ms.saturating_add(plexus_scheduler::protocol::VALIDITY_DEFAULT_MS);
        let Ok(signed) = Signed::sign(request, NETWORK, durable.nonce, expires, op) else {
            return;
        };
        let node = &mut nodes[i];
        let (Some(core), Some(host)) = (node.core.as_ref(), node.host.as_mut()) else {
            return;
        };
        let dir = SimDirectory {
            core,
            ids: &durable.ids,
            operator: Some(op.node_id()),
        };
        // Refused at a bound: the operator retries (deploys) or moves on.
        let _ = host.submit(&signed, now_ms, &dir);
    }

    fn operator_node(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.up(i)).collect();
        if up.is_empty() {
            return None;
        }
        Some(up[self.durable.rng.index(up.len())])
    }

    pub(in crate::world) fn durable_deploy(&mut self) {
        let Some(cfg) = self.durable_cfg() else {
            return;
        };
        if self.durable.deployed {
            return;
        }
        // Retried until the scheduler answers `Deployed` (deploying is idempotent).
        self.push(self.now + 10_000_000, Ev::DurableDeploy);
        if let Some(i) = self.operator_node() {
            self.record(i, 54, 0, 0);
            self.operator_request(
                i,
                Request::Deploy {
                    spec: job_spec(cfg.replicas, cfg.durability),
                },
            );
            self.pump(i);
        }
    }

    pub(in crate::world) fn durable_traffic(&mut self) {
        let Some(cfg) = self.durable_cfg() else {
            return;
        };
        if self.now >= self.durable.traffic_until || cfg.send_rate <= 0.0 {
            return;
        }
        let u = self.durable.rng.unit();
        let next = self.now + ((-(1.0 - u).ln() / cfg.send_rate) * 1e6) as u64 + 1;
        self.push(next, Ev::DurableSend);
        if !self.durable.deployed || self.durable.relays.is_empty() {
            return;
        }
        let Some(i) = self.operator_node() else {
            return;
        };
        let k = self.durable.rng.index(self.durable.relays.len());
        let to = self.durable.relays[k].clone();
        let payload = self.durable.rng.next_u64().to_le_bytes().to_vec();
        if let Some(host) = self.nodes[i].host.as_mut()
            && host.send(&to, payload, None).is_ok()
        {
            self.report.durable_sent += 1;
        }
        self.record(i, 55, k as u64, 0);
        self.pump(i);
    }

    pub(in crate::world) fn durable_migrate(&mut self) {
        let Some(cfg) = self.durable_cfg() else {
            return;
        };
        if self.now >= self.durable.traffic_until {
            return;
        }
        let u = self.durable.rng.unit();
        let next = self.now + ((-(1.0 - u).ln() / (cfg.migrate_rate / 60.0)) * 1e6) as u64 + 1;
        self.push(next, Ev::DurableMigrate);
        if !self.durable.deployed {
            return;
        }
        let actors = self.durable_keys();
        let actor = actors[self.durable.rng.index(actors.len())].to_string();
        let to = self.nodes[self.durable.rng.index(self.nodes.len())].id;
        if let Some(i) = self.operator_node() {
            self.record(i, 56, 0, 0);
            self.operator_request(i, Request::Migrate { actor, to });
            self.pump(i);
        }
    }

    /// Every actor of the job, then the scheduler.
    fn durable_keys(&self) -> Vec<DurableKey> {
        self.durable
            .relays
            .iter()
            .chain(self.durable.sinks.iter())
            .cloned()
            .chain(self.durable.scheduler.clone())
            .collect()
    }

    /// [`SETTLE_SLACK`] before the settle check: notes what each node's client
    /// session has sent so far, which must all be acknowledged by the check.
    pub(in crate::world) fn durable_mark(&mut self) {
        self.durable.marks = (0..self.nodes.len())
            .filter(|&i| self.up(i))
            .filter_map(|i| {
                let host = self.nodes[i].host.as_ref()?;
                let session = host.session();
                Some((i, (session, host.core().session_marks(session))))
            })
            .collect();
    }

    /// After the faults and a settling period: every client message acknowledged
    /// (those sent up to [`SETTLE_SLACK`] before: with a sharded registry, hosts
    /// keep reporting their actors to the scheduler, so some are always in
    /// flight), every actor active on exactly one node, every relay's output
    /// delivered exactly once.
    pub(in crate::world) fn durable_settle(&mut self) {
        if !self.durable.deployed {
            self.violate("durable-deploy", "the job was never deployed".into());
            return;
        }
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.up(i)).collect();
        for &i in &up {
            let Some(host) = self.nodes[i].host.as_ref() else {
                continue;
            };
            let session = host.session();
            let marked = self
                .durable
                .marks
                .get(&i)
                .filter(|(s, _)| *s == session)
                .map(|(_, m)| m);
            // A message sent by the mark is unacknowledged if its stream's first
            // unacknowledged message is at or below the mark.
            let pending: Vec<_> = host
                .core()
                .session_pending(session)
                .into_iter()
                .filter(|(key, first, _, _)| {
                    marked.is_none_or(|m| m.get(key).is_some_and(|last| first <= last))
                })
                .collect();
            if !pending.is_empty() {
                let n: usize = pending.iter().map(|p| p.2).sum();
                self.violate(
                    "durable-liveness",
                    format!("node {i}'s client still waits for {n} acks: {pending:?}"),
                );
            }
        }
        let mut committed: BTreeMap<DurableKey, Toy> = BTreeMap::new();
        for key in self.durable_keys() {
            let hosts: Vec<usize> = up
                .iter()
                .copied()
                .filter(|&i| {
                    self.nodes[i]
                        .host
                        .as_ref()
                        .and_then(|h| h.core().actor(&key))
                        .is_some_and(|a| a.is_active())
                })
                .collect();
            if hosts.len() != 1 {
                self.violate(
                    "durable-liveness",
                    format!("{key} is active on nodes {hosts:?}"),
                );
                continue;
            }
            let Some(a) = self.nodes[hosts[0]]
                .host
                .as_ref()
                .and_then(|h| h.core().actor(&key))
            else {
                continue;
            };
            let unacked = a.unacked_outputs();
            let toy = a
                .committed()
                .and_then(|r| DurableState::decode(&r.body).ok())
                .filter(|s| !s.user.bytes.is_empty())
                .and_then(|s| {
                    plexus_actors::codec::decode_body::<Toy>(&s.user.bytes, 1 << 24).ok()
                });
            if unacked > 0 {
                self.violate(
                    "durable-liveness",
                    format!("{key} still waits for {unacked} output acks"),
                );
            }
            if let Some(toy) = toy {
                committed.insert(key.clone(), toy);
            }
        }
        for relay in self.durable.relays.clone() {
            let sent = committed.get(&relay).map_or(0, |t| t.count);
            let sender = SenderId::Actor(relay.clone()).to_string();
            let received: u64 = self
                .durable
                .sinks
                .iter()
                .map(|s| {
                    committed
                        .get(s)
                        .and_then(|t| t.last.get(&sender))
                        .copied()
                        .unwrap_or(0)
                })
                .sum();
            if sent != received {
                self.violate(
                    "durable-exactly-once",
                    format!("{relay} applied {sent} messages but its sinks received {received}"),
                );
            }
        }
    }

    /// The invariants of node `i`'s host (part of the deep-check rotation).
    pub(in crate::world) fn durable_invariants(&self, i: usize) -> Result<(), String> {
        let Some(host) = self.nodes[i].host.as_ref() else {
            return Ok(());
        };
        // The durable core's (every activation's included), the host's own, and
        // those of the user code it runs (the scheduler's among them).
        host.check_invariants()
    }
}

/// Durable-protocol lies a Byzantine node can tell: encoded durable messages (the
/// payloads of tells to `(to, SERVICE_LOCAL_ID)` under [`MESSAGE_TYPE`]) that the
/// liar `liar` sends in its own, authenticated name while they claim otherwise.
/// `honest` are the nodes to lie to and about, `keys` the durable actors to lie
/// about, `overheard` durable payloads the liar received (replayed as they are, or
/// with their ballots pushed to `u64::MAX`). The honest cores refuse every lie
/// that claims another node's identity, ballot or authority (see
/// `plexus_durable::node`); plain replays are duplicates they already handled.
///
/// `commander`: the liar hosts the scheduler, so its commands are the scheduler's
/// (within its role, not a lie: a Byzantine scheduler host is an open gap, see
/// ARCHITECTURE's threat model); it then tells no command lies.
///
/// A Byzantine node's driver calls this now and then and sends each `(to,
/// payload)` as a tell from the liar's mesh core; its checkers are the durable
/// workload's (no acknowledged message lost, one activation per key, committed
/// state never goes back).
pub(crate) fn durable_lies(
    rng: &mut DetRng,
    liar: NodeId,
    honest: &[NodeId],
    keys: &[DurableKey],
    overheard: &[Vec<u8>],
    commander: bool,
) -> Vec<(NodeId, Vec<u8>)> {
    use plexus_durable::wire::{self, Ack, Command, DurableMsg, Prepare, Redirect, ReplicaOp};
    if honest.is_empty() || keys.is_empty() {
        return Vec::new();
    }
    let victim = honest[rng.index(honest.len())];
    let to = honest[rng.index(honest.len())];
    let key = keys[rng.index(keys.len())].clone();
    let round = rng.below(8);
    let msg = match rng.below(8) {
        // Another node's name on a replica request.
        0 => DurableMsg::Replica {
            from: victim,
            req: rng.next_u64(),
            key,
            op: ReplicaOp::Drop {
                ballot: Ballot {
                    round,
                    node: victim,
                },
            },
        },
        // A fence at the end of the ballot space.
        1 => DurableMsg::Replica {
            from: liar,
            req: rng.next_u64(),
            key,
            op: ReplicaOp::Fence {
                ballot: Ballot {
                    round: u64::MAX,
                    node: liar,
                },
                have: None,
            },
        },
        // A drop under a ballot that never fenced.
        2 => DurableMsg::Replica {
            from: liar,
            req: rng.next_u64(),
            key,
            op: ReplicaOp::Drop {
                ballot: Ballot { round, node: liar },
            },
        },
        // Acks and redirects for streams that never sent to the liar.
        3 => DurableMsg::Ack(Ack {
            key,
            to: SenderId::Client(rng.next_u64()),
            up_to: u64::MAX,
            replies: Vec::new(),
            ballot: Ballot { round, node: liar },
        }),
        4 => DurableMsg::Redirect(Redirect {
            key: key.clone(),
            to: SenderId::Actor(key),
            node: Some((
                liar,
                Ballot {
                    round: u64::MAX,
                    node: liar,
                },
            )),
        }),
        // An order only the scheduler's host may give.
        5 if !commander => DurableMsg::Command(Command::Release { key }),
        // A warm standby asked for in another's name, of another's record, or
        // of a record of the liar's own that no replica holds.
        6 => {
            let (from, node) = match rng.below(3) {
                0 => (victim, victim),
                1 => (liar, victim),
                _ => (liar, liar),
            };
            DurableMsg::Prepare(Prepare {
                key,
                migration: rng.next_u64(),
                from,
                order: (Ballot { round, node }, rng.below(16)),
                spec: Vec::new(),
            })
        }
        // A replay, as heard or with its ballots pushed to the end.
        _ => {
            let Some(bytes) = overheard.get(rng.index(overheard.len().max(1))) else {
                return Vec::new();
            };
            let Ok(mut msg) = wire::decode(bytes) else {
                return vec![(to, bytes.clone())];
            };
            if rng.chance(0.5) {
                max_ballots(&mut msg);
            }
            msg
        }
    };
    match wire::encode(&msg) {
        Ok(bytes) => vec![(to, bytes)],
        Err(_) => Vec::new(),
    }
}

/// Pushes every ballot in `msg` to round `u64::MAX`.
fn max_ballots(msg: &mut plexus_durable::wire::DurableMsg) {
    use plexus_durable::wire::DurableMsg;
    let max = |b: &mut Ballot| b.round = u64::MAX;
    match msg {
        DurableMsg::Replica { op, .. } => max(op.ballot_mut()),
        DurableMsg::Envelope(e) => max(&mut e.ballot),
        DurableMsg::Ack(a) => max(&mut a.ballot),
        DurableMsg::Redirect(r) => {
            if let Some((_, b)) = &mut r.node {
                max(b);
            }
        }
        DurableMsg::Handoff(h) => match &mut h.record {
            plexus_durable::wire::HandedRecord::Whole(r) => max(&mut r.ballot),
            plexus_durable::wire::HandedRecord::Held { order } => max(&mut order.0),
        },
        DurableMsg::Prepare(p) => max(&mut p.order.0),
        _ => {}
    }
}

#[cfg(test)]
mod lie_tests {
    use super::*;
    use plexus_durable::node::{DurableNode, NodeConfig};
    use plexus_durable::replica::{MemStore, Slot, SlotStore};
    use plexus_durable::types::ReplicaSet;
    use plexus_durable::wire::{self, DurableMsg, ReplicaOp};

    /// Every lie reaches an honest node's core and changes none of its slots:
    /// a replica the liar is not the holder of keeps its promise and its record.
    #[test]
    fn durable_lies_leave_an_honest_replica_unchanged() {
        let (honest, liar) = (NodeId::synthetic(1), NodeId::synthetic(9));
        let key = DurableKey::new("j/s/0").unwrap_or_else(|_| unreachable!());
        let holder = Ballot {
            round: 3,
            node: honest,
        };
        let slot = Slot {
            promised: holder,
            record: Some(Record {
                ballot: holder,
                version: 2,
                set: ReplicaSet::single(honest),
                body: vec![7; 16].into(),
            }),
            digest: None,
        };
        let mut store = MemStore::default();
        store.put(&key, slot.clone()).unwrap();
        let mut node = DurableNode::new(honest, NodeConfig::default(), store);
        // What the liar overheard: the holder's own write.
        let overheard = vec![
            wire::encode(&DurableMsg::Replica {
                from: honest,
                req: 1,
                key: key.clone(),
                op: ReplicaOp::Write {
                    record: slot.record.clone().unwrap(),
                },
            })
            .unwrap(),
        ];
        let mut rng = DetRng::new(11);
        let mut told = 0;
        for _ in 0..300 {
            for (to, bytes) in durable_lies(
                &mut rng,
                liar,
                &[honest],
                std::slice::from_ref(&key),
                &overheard,
                false,
            ) {
                assert_eq!(to, honest);
                if let Ok(msg) = wire::decode(&bytes) {
                    let _ = node.handle(Time::from_millis(1), liar, msg);
                    told += 1;
                }
            }
        }
        assert!(told > 250, "{told} lies told");
        // Drops under the liar's own ballot are answered `Refused` by the replica
        // rules, and acks or redirects for streams this node lacks are ignored;
        // the rest the core refuses.
        assert!(node.stats.refused.total() > 100);
        assert!(node.stats.refused.forged_origin > 0);
        assert!(node.stats.refused.ballot_step > 0);
        assert!(node.stats.refused.not_commander > 0);
        assert!(node.stats.refused.foreign_ballot > 0);
        assert_eq!(node.standbys(), 0, "a lie had a standby built");
        assert_eq!(
            node.replica().store().slots().get(&key),
            Some(&slot),
            "a lie changed the honest replica's slot"
        );
    }
}
