//! The simulation engine: one thread, virtual time, one seeded RNG split per node and
//! per component, an event queue ordered by `(time, sequence)`.
//!
//! Each simulated node runs the production cores: a [`Cluster`] (membership, registry,
//! delivery) and a [`Supervisor`]. The engine is their driver, exactly as the libp2p
//! driver is in production: it hands them events with the node's local time and
//! carries out what they return. It decides nothing about the protocols itself.
//!
//! Determinism: all maps are ordered; every random choice comes from [`DetRng`]s split
//! from the run's seed; node clocks are functions of virtual time; nothing reads the
//! wall clock except the final wall-time figure, which is not hashed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::rng::DetRng;
use plexus_actors::{ActorId, NodeId, Time};
use plexus_durable::activation::{ActivationEvent, DurableState};
use plexus_durable::node::{DurableNode, NodeConfig as DurableConfig, NodeEvent};
use plexus_durable::stream::StreamEvent;
use plexus_durable::types::{Ballot, DurableKey, SenderId};
use plexus_durable::wire::DurableMsg;
use plexus_durable::{MemStore, SERVICE_LOCAL_ID};
use plexus_mesh::cluster::{Cluster, ClusterConfig, ClusterEvent};
use plexus_mesh::delivery::DeliveryEvent;
use plexus_vocab::identity::NodeKey;
use plexus_mesh::membership::{MemberState, MembershipConfig, MembershipEvent};
use plexus_vocab::resources::NodeMeta;
use plexus_mesh::wire::{DataBody, Frame};
use plexus_scheduler::app::{Watchdog, encode_request, encode_tick, scheduler_set};
use plexus_scheduler::placement::NodeInfo;
use plexus_scheduler::protocol::{Report as SchedReport, Request, Response, Signed, View};
use plexus_supervisor::{
    Action, ChildSpec, ChildStatus, ExitReason, Intensity, Restart, Supervisor,
};

use crate::durable::{Hosted, JOB, RELAY, SINK, Toy, job_spec};
use crate::report::{Report, Violation};
use crate::scenario::{FaultKind, LatencyDist, Scenario};

/// Node clocks start this far from zero, so a negative skew stays a valid time.
const CLOCK_BASE_US: i128 = 3_600_000_000;
/// Stop recording after this many violations.
const VIOLATIONS_MAX: usize = 20;
/// Local numbers of the workload actors on each node.
const ACTOR_BASE: u64 = 16;

/// Bugs a test can inject into the engine (the *driver*), to prove the checkers
/// catch them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bug {
    /// Hand every 50th delivered tell to its actor a second time.
    RedeliverTells,
    /// Drop the registry claims in every full-state sync a node receives, as a driver
    /// that mishandled sync packets would: names never reach late joiners.
    DropSyncClaims,
    /// Hand every 20th batch of durable inputs to the user code twice, as a driver
    /// that retried a batch would.
    DurableDoubleApply,
    /// Wipe a node's disk when it crashes, breaking the storage promise the
    /// durability argument rests on.
    DurableWipeDisks,
}

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// An injected bug, for tests of the checkers.
    pub bug: Option<Bug>,
}

#[derive(Debug)]
enum Ev {
    Start(usize),
    Timer(usize, u64),
    Deliver {
        from: usize,
        to: usize,
        frame: Frame,
    },
    Tell(usize),
    ChildCrash(usize),
    Crash(Vec<usize>),
    Restart(Vec<usize>),
    Partition {
        side: Vec<bool>,
        one_way: bool,
        until: Option<u64>,
    },
    Heal,
    Pause(Vec<usize>),
    Resume(Vec<usize>),
    Chaos,
    Deep,
    DeadNames {
        node: usize,
        incarnation: u64,
    },
    DurableTick,
    DurableDeploy,
    DurableSend,
    DurableMigrate,
    DurableSettle,
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

/// What the heap orders: the payload waits in `World::slab`, so sifting moves 24 bytes
/// instead of whole frames.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: u64,
    seq: u64,
    slot: u32,
}

struct Child {
    running: Option<u64>,
}

struct SimNode {
    id: NodeId,
    core: Option<Cluster>,
    paused: bool,
    deferred: Vec<Queued>,
    /// Survives crashes: the highest incarnation this node has used.
    incarnation: u64,
    skew_us: i64,
    drift_ppm: i64,
    timer_gen: u64,
    timer_at: u64,
    rng: DetRng,
    /// Next tell sequence number per destination node, for this incarnation.
    next_seq: BTreeMap<usize, u64>,
    supervisor: Supervisor,
    children: Vec<Child>,
    crashed_at: Option<u64>,
    /// The durable service (with `[durable]`); its disk survives crashes.
    durable: Option<DurableNode<MemStore>>,
    disk: MemStore,
    hosted: BTreeMap<DurableKey, Hosted>,
    watchdog: Watchdog,
    /// This incarnation's client session.
    session: u64,
}

/// Per (sender, sender session, receiver, receiver incarnation): the last tell seq seen.
type LinkKey = (usize, u64, usize, u64);

/// The simulator.
pub struct World {
    scenario: Scenario,
    seed: u64,
    options: RunOptions,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Key>>,
    slab: Vec<Option<Queued>>,
    free: Vec<u32>,
    nodes: Vec<SimNode>,
    net_rng: DetRng,
    chaos_rng: DetRng,
    partition: Option<(Vec<bool>, bool)>,
    cluster_config: ClusterConfig,
    trace: blake3::Hasher,
    last_seen: BTreeMap<LinkKey, u64>,
    report: Report,
    /// End of the last fault (virtual µs): the cluster must converge after this.
    quiet_at: u64,
    converged_at: Option<u64>,
    converge_deadline: u64,
    dead_names_within: u64,
    deep_interval: u64,
    redeliver_counter: u64,
    /// Crashes not yet seen as dead by every live node: node -> crash time.
    detecting: BTreeMap<usize, u64>,
    /// Next node to get the full-state invariants.
    deep_cursor: usize,
    /// Each node's registered names and the actor each must resolve to.
    names: Vec<Vec<(String, ActorId)>>,
    durable: DurableWorld,
    /// Per link: when its last frame arrives (links are FIFO; see `arrival`).
    link_clock: BTreeMap<(usize, usize), u64>,
    link_prune_at: usize,
    /// The pair of nodes whose views disagreed at the last convergence check.
    gap_hint: Option<(usize, usize)>,
}

/// The durable layer's workload and checker state.
#[derive(Default)]
struct DurableWorld {
    on: bool,
    rng: DetRng,
    operator: Option<NodeKey>,
    nonce: u64,
    deployed: bool,
    /// Highest sequence number acknowledged per (actor, client session).
    acked: BTreeMap<(DurableKey, u64), u64>,
    /// The newest commit seen per actor.
    last_commit: BTreeMap<DurableKey, (Ballot, u64)>,
    /// Per actor and activation ballot: the record it restored.
    restores: BTreeMap<(DurableKey, Ballot), Option<(Ballot, u64)>>,
    /// Client traffic and migrations stop here (the last fault's end).
    traffic_until: u64,
    relays: Vec<DurableKey>,
    sinks: Vec<DurableKey>,
    scheduler: Option<DurableKey>,
    pending_deploy_session: Option<u64>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn index_of(id: &NodeId) -> usize {
    id.synthetic_index() as usize
}

impl World {
    /// A world for `scenario` and `seed`.
    pub fn new(scenario: &Scenario, seed: u64, options: RunOptions) -> World {
        let mut membership = MembershipConfig::default();
        let m = &scenario.membership;
        if let Some(v) = m.probe_interval {
            membership.probe_interval = v;
        }
        if let Some(v) = m.probe_timeout {
            membership.probe_timeout = v;
        }
        if let Some(v) = m.suspicion_mult {
            membership.suspicion_mult = v;
        }
        if let Some(v) = m.retransmit_mult {
            membership.retransmit_mult = v;
        }
        if let Some(v) = m.sync_interval {
            membership.sync_interval = v;
        }
        membership.members_max = membership.members_max.max(scenario.nodes);
        let detection = membership.detection_bound(scenario.nodes);
        let sync = membership.sync_period(scenario.nodes);
        let cluster_config = ClusterConfig {
            membership,
            ..ClusterConfig::default()
        };
        let chaos = &scenario.chaos;
        let mut clock_rng = DetRng::split(seed, 1);
        let nodes = (0..scenario.nodes)
            .map(|i| {
                let skew_max = chaos.clock_skew_max.map(us).unwrap_or(0) as i64;
                let skew_us = if skew_max > 0 {
                    clock_rng.below(2 * skew_max as u64 + 1) as i64 - skew_max
                } else {
                    0
                };
                let drift_max = i64::from(chaos.clock_drift_ppm_max);
                let drift_ppm = if drift_max > 0 {
                    clock_rng.below(2 * drift_max as u64 + 1) as i64 - drift_max
                } else {
                    0
                };
                let mut supervisor = Supervisor::new(
                    scenario.workload.strategy,
                    Intensity {
                        max_restarts: 5,
                        period: Duration::from_secs(10),
                    },
                );
                let mut children = Vec::new();
                for c in 0..scenario.workload.children_per_node {
                    let actions = supervisor
                        .add_child(ChildSpec::new(format!("c{c}"), Restart::Permanent))
                        .unwrap_or_default();
                    let running = actions.iter().find_map(|a| match a {
                        Action::Start { incarnation, .. } => Some(*incarnation),
                        _ => None,
                    });
                    children.push(Child { running });
                }
                SimNode {
                    id: NodeId::synthetic(i as u64),
                    core: None,
                    paused: false,
                    deferred: Vec::new(),
                    incarnation: 0,
                    skew_us,
                    drift_ppm,
                    timer_gen: 0,
                    timer_at: u64::MAX,
                    rng: DetRng::split(seed, 1_000 + i as u64),
                    next_seq: BTreeMap::new(),
                    supervisor,
                    children,
                    crashed_at: None,
                    durable: None,
                    disk: MemStore::default(),
                    hosted: BTreeMap::new(),
                    watchdog: Watchdog::default(),
                    session: 0,
                }
            })
            .collect();
        let converge_within = scenario
            .check
            .converge_within
            .map(us)
            .unwrap_or_else(|| us(sync) * 4 + us(detection));
        let dead_names_within = scenario
            .check
            .dead_names_within
            .map(us)
            .unwrap_or_else(|| us(detection) + us(sync));
        let deep_interval = scenario
            .check
            .deep_interval
            .map(us)
            .unwrap_or(1_000_000)
            .max(1);
        let mut world = World {
            scenario: scenario.clone(),
            seed,
            options,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            nodes,
            net_rng: DetRng::split(seed, 2),
            chaos_rng: DetRng::split(seed, 3),
            partition: None,
            cluster_config,
            trace: blake3::Hasher::new(),
            last_seen: BTreeMap::new(),
            report: Report::new(scenario, seed),
            quiet_at: 0,
            converged_at: None,
            converge_deadline: u64::MAX,
            dead_names_within,
            deep_interval,
            redeliver_counter: 0,
            detecting: BTreeMap::new(),
            deep_cursor: 0,
            names: (0..scenario.nodes)
                .map(|j| {
                    (0..scenario.workload.names_per_node)
                        .map(|k| {
                            (
                                format!("n{j}-{k}"),
                                ActorId::new(NodeId::synthetic(j as u64), ACTOR_BASE + k as u64),
                            )
                        })
                        .collect()
                })
                .collect(),
            durable: DurableWorld::default(),
            link_clock: BTreeMap::new(),
            link_prune_at: 4096,
            gap_hint: None,
        };
        if let Some(d) = &scenario.durable {
            let key = |stage: &str, i: u32| DurableKey::new(&format!("{JOB}/{stage}/{i}")).ok();
            world.durable = DurableWorld {
                on: true,
                rng: DetRng::split(seed, 5),
                operator: Some(NodeKey::from_seed(DetRng::split(seed, 6).bytes32())),
                relays: (0..d.replicas).filter_map(|i| key("relay", i)).collect(),
                sinks: (0..d.replicas).filter_map(|i| key("sink", i)).collect(),
                scheduler: DurableKey::new(plexus_scheduler::SCHEDULER_KEY).ok(),
                ..DurableWorld::default()
            };
        }
        world.report.detection_bound_ms = detection.as_millis() as u64;
        world.schedule_initial(converge_within);
        world
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.enqueue(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn enqueue(&mut self, q: Queued) {
        let key = (q.at, q.seq);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(q);
                slot
            }
            None => {
                self.slab.push(Some(q));
                (self.slab.len() - 1) as u32
            }
        };
        self.queue.push(Reverse(Key {
            at: key.0,
            seq: key.1,
            slot,
        }));
    }

    fn dequeue(&mut self) -> Option<Queued> {
        let Reverse(key) = self.queue.pop()?;
        let q = self.slab[key.slot as usize].take();
        self.free.push(key.slot);
        q
    }

    fn schedule_initial(&mut self, converge_within: u64) {
        let n = self.scenario.nodes;
        let spread = self
            .scenario
            .start_spread
            .map(us)
            .unwrap_or(1_000 * n as u64);
        let mut last_start = 0;
        for i in 0..n {
            let at = if n > 1 {
                spread * i as u64 / (n as u64 - 1).max(1)
            } else {
                0
            };
            last_start = last_start.max(at);
            self.push(at, Ev::Start(i));
        }
        let mut quiet = last_start;
        // Scheduled faults.
        let mut fault_rng = DetRng::split(self.seed, 4);
        for fault in self.scenario.faults.clone() {
            let at = us(fault.at);
            let mut nodes = fault.nodes.clone();
            if let Some(count) = fault.count {
                let mut all: Vec<usize> = (0..n).collect();
                fault_rng.shuffle(&mut all);
                nodes.extend(all.into_iter().take(count));
            }
            let undo = fault.duration.map(|d| at + us(d));
            quiet = quiet.max(undo.unwrap_or(at));
            match fault.kind {
                FaultKind::Crash => {
                    self.push(at, Ev::Crash(nodes.clone()));
                    if let Some(u) = undo {
                        self.push(u, Ev::Restart(nodes));
                    }
                }
                FaultKind::Restart => self.push(at, Ev::Restart(nodes)),
                FaultKind::Partition => {
                    let side = self.split(&mut fault_rng, fault.fraction.unwrap_or(0.5), &nodes);
                    self.push(
                        at,
                        Ev::Partition {
                            side,
                            one_way: fault.one_way,
                            until: undo,
                        },
                    );
                }
                FaultKind::Heal => self.push(at, Ev::Heal),
                FaultKind::Pause => {
                    self.push(at, Ev::Pause(nodes.clone()));
                    if let Some(u) = undo {
                        self.push(u, Ev::Resume(nodes));
                    }
                }
                FaultKind::Resume => self.push(at, Ev::Resume(nodes)),
            }
        }
        // Chaos: decided as it goes, but its end is known.
        let chaos = &self.scenario.chaos;
        if let Some(until) = chaos.until {
            let until = us(until);
            let tail = [
                chaos.restart_after.map(us).unwrap_or(0),
                us(chaos.partition_length),
                us(chaos.pause_length),
            ]
            .into_iter()
            .max()
            .unwrap_or(0);
            quiet = quiet.max(until + tail);
            self.push(last_start, Ev::Chaos);
        }
        self.quiet_at = quiet;
        if let Some(d) = self.scenario.durable.clone() {
            self.durable.traffic_until = quiet.max(us(d.deploy_at) + us(d.tick) * 20);
            self.push(us(d.tick), Ev::DurableTick);
            self.push(us(d.deploy_at), Ev::DurableDeploy);
            let after = us(d.deploy_at) + us(d.tick) * 10;
            self.push(after, Ev::DurableSend);
            if d.migrate_rate > 0.0 {
                self.push(after, Ev::DurableMigrate);
            }
            self.push(self.durable.traffic_until + us(d.settle), Ev::DurableSettle);
        }
        self.converge_deadline = quiet.saturating_add(converge_within);
        self.report.quiet_at_ms = quiet / 1_000;
        self.push(self.deep_interval, Ev::Deep);
    }

    fn split(&self, rng: &mut DetRng, fraction: f64, chosen: &[usize]) -> Vec<bool> {
        let n = self.scenario.nodes;
        let mut side = vec![false; n];
        if !chosen.is_empty() {
            for &i in chosen {
                side[i] = true;
            }
        } else {
            let mut all: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut all);
            let k = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
            for &i in all.iter().take(k) {
                side[i] = true;
            }
        }
        side
    }

    // ----- time -----

    fn local(&self, i: usize, v: u64) -> Time {
        let node = &self.nodes[i];
        let v = v as i128;
        let t = CLOCK_BASE_US
            + i128::from(node.skew_us)
            + v
            + v * i128::from(node.drift_ppm) / 1_000_000;
        Time::from_micros(t.max(0) as u64)
    }

    fn virtual_of(&self, i: usize, local: Time) -> u64 {
        let node = &self.nodes[i];
        let l = i128::from(local.as_micros()) - CLOCK_BASE_US - i128::from(node.skew_us);
        let v = l * 1_000_000 / (1_000_000 + i128::from(node.drift_ppm));
        // Round up so a timer never fires before its local deadline.
        (v + 1).clamp(0, i128::from(u64::MAX)) as u64
    }

    // ----- the run -----

    /// Runs to the end of the scenario and returns the report.
    pub fn run(mut self) -> Report {
        let end = self.advance();
        self.finish(end)
    }

    /// Processes events up to the end of the scenario; returns the end time.
    fn advance(&mut self) -> u64 {
        let end = us(self.scenario.duration);
        while let Some(q) = self.dequeue() {
            if q.at > end {
                break;
            }
            self.now = q.at;
            self.report.events += 1;
            self.step(q);
            if self.scenario.check.every_step {
                self.deep_check();
            }
            if self.report.violations.len() >= VIOLATIONS_MAX {
                break;
            }
        }
        end
    }

    fn record(&mut self, node: usize, tag: u8, a: u64, b: u64) {
        let mut buf = [0u8; 29];
        buf[..8].copy_from_slice(&self.now.to_le_bytes());
        buf[8..12].copy_from_slice(&(node as u32).to_le_bytes());
        buf[12] = tag;
        buf[13..21].copy_from_slice(&a.to_le_bytes());
        buf[21..29].copy_from_slice(&b.to_le_bytes());
        self.trace.update(&buf);
    }

    fn violate(&mut self, check: &'static str, detail: String) {
        if self.report.violations.len() < VIOLATIONS_MAX {
            self.report.violations.push(Violation {
                at_ms: self.now / 1_000,
                check: check.to_string(),
                detail,
            });
        }
    }

    fn step(&mut self, q: Queued) {
        let node = match &q.ev {
            Ev::Start(i) | Ev::Timer(i, _) | Ev::Tell(i) | Ev::ChildCrash(i) => Some(*i),
            Ev::Deliver { to, .. } => Some(*to),
            _ => None,
        };
        if let Some(i) = node
            && self.nodes[i].paused
            && !matches!(q.ev, Ev::Start(_))
        {
            // A stopped process does nothing; what arrives waits in its buffers.
            self.nodes[i].deferred.push(q);
            return;
        }
        match q.ev {
            Ev::Start(i) => self.start(i),
            Ev::Timer(i, generation) => {
                if generation != self.nodes[i].timer_gen {
                    return;
                }
                self.nodes[i].timer_at = u64::MAX;
                self.record(i, 1, 0, 0);
                let now = self.local(i, self.now);
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.handle_timeout(now);
                }
                if let Some(d) = self.nodes[i].durable.as_mut()
                    && d.poll_timeout().is_some_and(|t| t <= now)
                {
                    d.handle_timeout(now);
                }
                self.pump(i);
            }
            Ev::Deliver { from, to, frame } => self.deliver(from, to, frame),
            Ev::Tell(i) => self.tell(i),
            Ev::ChildCrash(i) => self.child_crash(i),
            Ev::Crash(nodes) => {
                for i in nodes {
                    self.crash(i);
                }
            }
            Ev::Restart(nodes) => {
                for i in nodes {
                    self.restart(i);
                }
            }
            Ev::Partition {
                side,
                one_way,
                until,
            } => {
                self.record(
                    usize::MAX,
                    20,
                    side.iter().filter(|s| **s).count() as u64,
                    u64::from(one_way),
                );
                self.partition = Some((side, one_way));
                self.report.partitions += 1;
                if let Some(u) = until {
                    self.push(u, Ev::Heal);
                }
            }
            Ev::Heal => {
                self.record(usize::MAX, 21, 0, 0);
                self.partition = None;
            }
            Ev::Pause(nodes) => {
                for i in nodes {
                    if self.nodes[i].core.is_some() && !self.nodes[i].paused {
                        self.record(i, 22, 0, 0);
                        self.nodes[i].paused = true;
                        self.report.pauses += 1;
                    }
                }
            }
            Ev::Resume(nodes) => {
                for i in nodes {
                    if self.nodes[i].paused {
                        self.record(i, 23, 0, 0);
                        self.nodes[i].paused = false;
                        let held = std::mem::take(&mut self.nodes[i].deferred);
                        for mut q in held {
                            q.at = self.now;
                            self.enqueue(q);
                        }
                    }
                }
            }
            Ev::Chaos => self.chaos(),
            Ev::Deep => {
                self.deep_check();
                let next = self.now + self.deep_interval;
                self.push(next, Ev::Deep);
            }
            Ev::DeadNames { node, incarnation } => self.check_dead_names(node, incarnation),
            Ev::DurableTick => self.durable_tick(),
            Ev::DurableDeploy => self.durable_deploy(),
            Ev::DurableSend => self.durable_traffic(),
            Ev::DurableMigrate => self.durable_migrate(),
            Ev::DurableSettle => self.durable_settle(),
        }
    }

    fn bootstrap_peers(&mut self, i: usize) -> Vec<usize> {
        let n = self.scenario.nodes;
        let k = self.scenario.bootstrap.min(n.saturating_sub(1));
        let mut peers = BTreeSet::new();
        let rng = &mut self.nodes[i].rng;
        // The first node is everybody's first seed, like a configured bootstrap list.
        if i != 0 && n > 1 {
            peers.insert(0);
        }
        while peers.len() < k {
            let p = rng.index(n);
            if p != i {
                peers.insert(p);
            }
        }
        peers.into_iter().collect()
    }

    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        let incarnation = node.incarnation;
        let seed = DetRng::split(self.seed, 10_000 + (i as u64) * 1_000 + incarnation).next_u64();
        let now = self.local(i, self.now);
        let meta = NodeMeta::default();
        let mut core = Cluster::new(
            self.nodes[i].id,
            incarnation,
            meta,
            self.cluster_config.clone(),
            seed,
            now,
        );
        let names = self.scenario.workload.names_per_node;
        for k in 0..names {
            let (name, actor) = &self.names[i][k];
            let _ = core.register(now, name, *actor);
        }
        for p in self.bootstrap_peers(i) {
            core.handle_discovered(now, self.nodes[p].id);
        }
        self.nodes[i].core = Some(core);
        self.nodes[i].next_seq.clear();
        self.nodes[i].crashed_at = None;
        if self.durable.on {
            let node = &mut self.nodes[i];
            let disk = std::mem::take(&mut node.disk);
            node.durable = Some(DurableNode::new(node.id, DurableConfig::default(), disk));
            node.hosted.clear();
            node.watchdog = Watchdog::default();
            node.session = ((i as u64 + 1) << 24) | incarnation;
        }
        self.record(i, 2, incarnation, 0);
        self.pump(i);
        let rate = self.scenario.workload.tell_rate;
        if rate > 0.0 {
            let at = self.now + self.exp(i, rate);
            self.push(at, Ev::Tell(i));
        }
        let crash_rate = self.scenario.workload.child_crash_rate / 60.0;
        if crash_rate > 0.0 {
            let at = self.now + self.exp(i, crash_rate);
            self.push(at, Ev::ChildCrash(i));
        }
    }

    /// An exponential delay for a Poisson process of `rate` per second (µs).
    fn exp(&mut self, i: usize, rate: f64) -> u64 {
        let u = self.nodes[i].rng.unit();
        ((-(1.0 - u).ln() / rate) * 1e6) as u64 + 1
    }

    fn crash(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.take() else {
            return;
        };
        let node = &mut self.nodes[i];
        node.incarnation = node.incarnation.max(core.membership().incarnation());
        node.paused = false;
        node.deferred.clear();
        node.timer_gen += 1;
        node.timer_at = u64::MAX;
        node.crashed_at = Some(self.now);
        if let Some(d) = node.durable.take() {
            node.disk = d.into_store();
            if self.options.bug == Some(Bug::DurableWipeDisks) {
                node.disk = MemStore::default();
            }
        }
        node.hosted.clear();
        let incarnation = node.incarnation;
        self.report.crashes += 1;
        self.record(i, 3, incarnation, 0);
        self.detecting.insert(i, self.now);
        let at = self.now + self.dead_names_within;
        self.push(
            at,
            Ev::DeadNames {
                node: i,
                incarnation,
            },
        );
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].core.is_none() {
            self.report.restarts += 1;
            self.detecting.remove(&i);
            self.start(i);
        }
    }

    fn down_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.core.is_none() || n.paused)
            .count()
    }

    fn chaos(&mut self) {
        let chaos = self.scenario.chaos.clone();
        let Some(until) = chaos.until.map(us) else {
            return;
        };
        if self.now >= until {
            return;
        }
        let n = self.scenario.nodes;
        let total_rate = (chaos.crash_rate + chaos.partition_rate + chaos.pause_rate) / 60.0;
        if total_rate <= 0.0 {
            return;
        }
        let max_down = ((n as f64) * chaos.max_down_fraction).floor() as usize;
        let pick = self.chaos_rng.unit() * total_rate * 60.0;
        let victim = self.chaos_rng.index(n);
        if pick < chaos.crash_rate {
            if self.nodes[victim].core.is_some() && self.down_count() < max_down {
                self.crash(victim);
                if let Some(after) = chaos.restart_after {
                    let at = self.now + us(after);
                    self.push(at, Ev::Restart(vec![victim]));
                }
            }
        } else if pick < chaos.crash_rate + chaos.partition_rate {
            if self.partition.is_none() {
                let mut rng = self.chaos_rng.clone();
                let fraction = 0.1 + 0.4 * rng.unit();
                let side = self.split(&mut rng, fraction, &[]);
                self.chaos_rng = rng;
                let one_way = self.chaos_rng.chance(chaos.one_way_fraction);
                let until = Some(self.now + us(chaos.partition_length));
                self.push(
                    self.now,
                    Ev::Partition {
                        side,
                        one_way,
                        until,
                    },
                );
            }
        } else if self.nodes[victim].core.is_some()
            && !self.nodes[victim].paused
            && self.down_count() < max_down
        {
            self.push(self.now, Ev::Pause(vec![victim]));
            let at = self.now + us(chaos.pause_length);
            self.push(at, Ev::Resume(vec![victim]));
        }
        let u = self.chaos_rng.unit();
        let next = self.now + ((-(1.0 - u).ln() / total_rate) * 1e6) as u64 + 1;
        self.push(next, Ev::Chaos);
    }

    // ----- network -----

    fn blocked(&self, from: usize, to: usize) -> bool {
        match &self.partition {
            None => false,
            Some((side, one_way)) => {
                if *one_way {
                    side[from] && !side[to]
                } else {
                    side[from] != side[to]
                }
            }
        }
    }

    /// A one-way latency, and whether this frame is one the network reorders.
    fn latency(&mut self) -> (u64, bool) {
        let net = &self.scenario.network;
        let (min, max) = (us(net.latency_min), us(net.latency_max));
        let base = match net.latency {
            LatencyDist::Uniform => min + self.net_rng.below(max - min + 1),
            LatencyDist::Exponential => {
                let mean = ((max - min) / 4).max(1) as f64;
                let u = self.net_rng.unit();
                (min + (-(1.0 - u).ln() * mean) as u64).min(max)
            }
        };
        if self.net_rng.chance(net.reorder) {
            (base + self.net_rng.below(4 * max + 1), true)
        } else {
            (base, false)
        }
    }

    /// When a frame sent now from `from` reaches `to`. Links are FIFO, as the
    /// production transport's streams are: a frame never overtakes an earlier one on
    /// the same link unless the network reorders it (`reorder`), and a reordered
    /// frame does not hold back later ones.
    fn arrival(&mut self, from: usize, to: usize) -> u64 {
        let (latency, reordered) = self.latency();
        let at = self.now + latency;
        if reordered {
            return at;
        }
        if self.link_clock.len() >= self.link_prune_at {
            // Only links with a frame still in flight constrain anything: forget
            // the rest, so the map stays near the size of the traffic in flight
            // (amortised O(1) per frame: the next sweep waits for the map to double).
            let now = self.now;
            self.link_clock.retain(|_, t| *t > now);
            self.link_prune_at = (self.link_clock.len() * 2).max(4096);
        }
        let last = self.link_clock.entry((from, to)).or_insert(0);
        let at = at.max(*last);
        *last = at;
        at
    }

    fn send(&mut self, from: usize, to: usize, frame: Frame) {
        self.report.frames_sent += 1;
        if self.net_rng.chance(self.scenario.network.loss) {
            self.report.frames_lost += 1;
            return;
        }
        if self.net_rng.chance(self.scenario.network.duplicate) {
            let at = self.arrival(from, to);
            self.push(
                at,
                Ev::Deliver {
                    from,
                    to,
                    frame: frame.clone(),
                },
            );
        }
        let at = self.arrival(from, to);
        self.push(at, Ev::Deliver { from, to, frame });
    }

    fn deliver(&mut self, from: usize, to: usize, frame: Frame) {
        if self.blocked(from, to) {
            self.report.frames_lost += 1;
            return;
        }
        if self.nodes[to].core.is_none() {
            return;
        }
        let tag = match &frame {
            Frame::Control(_) => 10,
            Frame::Data(d) => 11 + (d.seq << 8),
            Frame::Ack(a) => 12 + (a.up_to << 8),
        };
        self.record(to, 4, from as u64, tag);
        let now = self.local(to, self.now);
        let from_id = self.nodes[from].id;
        let Some(core) = self.nodes[to].core.as_mut() else {
            return;
        };
        let mut frame = frame;
        if self.options.bug == Some(Bug::DropSyncClaims)
            && let Frame::Control(packet) = &mut frame
            && matches!(
                packet.probe,
                plexus_mesh::membership::Probe::Sync { .. }
                    | plexus_mesh::membership::Probe::SyncReply { .. }
            )
        {
            packet.claims.clear();
        }
        if let Some((seq, body)) = core.handle_frame(now, from_id, frame) {
            if let DataBody::Tell {
                target, payload, ..
            } = &*body
                && target.local == SERVICE_LOCAL_ID
            {
                self.on_durable(to, payload);
            } else {
                self.on_data(to, from, seq, &body);
            }
            if let Some(core) = self.nodes[to].core.as_mut() {
                core.complete(now, from_id, seq, Ok(()));
            }
        }
        self.pump(to);
    }

    /// A workload actor receives a tell: check FIFO and at-most-once delivery.
    fn on_data(&mut self, to: usize, from: usize, _seq: u64, body: &DataBody) {
        let DataBody::Tell {
            target, payload, ..
        } = body
        else {
            return;
        };
        if payload.len() != 16 || target.origin != self.nodes[to].id {
            self.violate("misrouted", format!("node {to} got a tell for {target:?}"));
            return;
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&payload[..8]);
        let mut session_bytes = [0u8; 8];
        session_bytes.copy_from_slice(&payload[8..]);
        let (tell_seq, session) = (
            u64::from_le_bytes(seq_bytes),
            u64::from_le_bytes(session_bytes),
        );
        let key = (from, session, to, self.nodes[to].incarnation);
        let times = if self.options.bug == Some(Bug::RedeliverTells) {
            self.redeliver_counter += 1;
            if self.redeliver_counter.is_multiple_of(50) {
                2
            } else {
                1
            }
        } else {
            1
        };
        for _ in 0..times {
            self.report.tells_delivered += 1;
            match self.last_seen.get(&key) {
                Some(&last) if tell_seq == last => {
                    self.violate("delivered-twice", format!("node {to} got tell {tell_seq} from node {from} (session {session}) twice"));
                }
                Some(&last) if tell_seq < last => {
                    self.violate(
                        "fifo",
                        format!("node {to} got tell {tell_seq} from node {from} after {last}"),
                    );
                }
                _ => {
                    self.last_seen.insert(key, tell_seq);
                }
            }
        }
    }

    fn tell(&mut self, i: usize) {
        let n = self.scenario.nodes;
        if n > 1 && self.nodes[i].core.is_some() {
            let mut to = self.nodes[i].rng.index(n - 1);
            if to >= i {
                to += 1;
            }
            let actor = self.nodes[i]
                .rng
                .below(self.scenario.workload.actors_per_node as u64);
            let seq = {
                let s = self.nodes[i].next_seq.entry(to).or_insert(0);
                *s += 1;
                *s
            };
            let session = self.nodes[i].incarnation;
            let mut payload = seq.to_le_bytes().to_vec();
            payload.extend_from_slice(&session.to_le_bytes());
            let body = Arc::new(DataBody::Tell {
                target: ActorId::new(self.nodes[to].id, ACTOR_BASE + actor),
                message_type: String::new(),
                payload,
                trace: None,
            });
            let now = self.local(i, self.now);
            let target = self.nodes[to].id;
            if let Some(core) = self.nodes[i].core.as_mut() {
                match core.send(now, target, body) {
                    Ok(_) => self.report.tells_sent += 1,
                    Err(_) => self.report.tells_refused += 1,
                }
            }
            self.record(i, 5, to as u64, seq);
            self.pump(i);
        }
        let at = self.now + self.exp(i, self.scenario.workload.tell_rate);
        self.push(at, Ev::Tell(i));
    }

    // ----- supervision -----

    fn child_crash(&mut self, i: usize) {
        let rate = self.scenario.workload.child_crash_rate / 60.0;
        let at = self.now + self.exp(i, rate);
        self.push(at, Ev::ChildCrash(i));
        if self.nodes[i].core.is_none() {
            return;
        }
        let running: Vec<usize> = self.nodes[i]
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| c.running.is_some())
            .map(|(k, _)| k)
            .collect();
        if running.is_empty() {
            return;
        }
        let k = running[self.nodes[i].rng.index(running.len())];
        let Some(incarnation) = self.nodes[i].children[k].running else {
            return;
        };
        self.nodes[i].children[k].running = None;
        self.record(i, 6, k as u64, incarnation);
        let now = self.local(i, self.now);
        let actions = self.nodes[i].supervisor.handle_exit(
            now,
            &format!("c{k}"),
            incarnation,
            ExitReason::Failed("injected crash".into()),
        );
        self.apply_actions(i, actions);
    }

    fn apply_actions(&mut self, i: usize, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let now = self.local(i, self.now);
            match action {
                Action::Start { child, incarnation } => {
                    if let Some(k) = child
                        .strip_prefix('c')
                        .and_then(|k| k.parse::<usize>().ok())
                    {
                        self.nodes[i].children[k].running = Some(incarnation);
                        self.report.child_restarts += 1;
                    }
                }
                Action::Stop { child, incarnation } => {
                    if let Some(k) = child
                        .strip_prefix('c')
                        .and_then(|k| k.parse::<usize>().ok())
                    {
                        self.nodes[i].children[k].running = None;
                    }
                    queue.extend(self.nodes[i].supervisor.handle_exit(
                        now,
                        &child,
                        incarnation,
                        ExitReason::Normal,
                    ));
                }
                Action::Escalate { .. } => {
                    // The node's root supervisor gave up: its parent (the node) starts
                    // a fresh one, as a supervision tree's root would be restarted.
                    self.report.escalations += 1;
                    let strategy = self.scenario.workload.strategy;
                    let mut sup = Supervisor::new(
                        strategy,
                        Intensity {
                            max_restarts: 5,
                            period: Duration::from_secs(10),
                        },
                    );
                    for k in 0..self.nodes[i].children.len() {
                        let started = sup
                            .add_child(ChildSpec::new(format!("c{k}"), Restart::Permanent))
                            .unwrap_or_default();
                        self.nodes[i].children[k].running = started.iter().find_map(|a| match a {
                            Action::Start { incarnation, .. } => Some(*incarnation),
                            _ => None,
                        });
                    }
                    self.nodes[i].supervisor = sup;
                    return;
                }
            }
        }
        if let Err(e) = self.nodes[i].supervisor.check_invariants() {
            self.violate("supervisor-invariant", format!("node {i}: {e}"));
        }
        for (k, child) in self.nodes[i].children.iter().enumerate() {
            let status = self.nodes[i]
                .supervisor
                .children()
                .find(|(s, _)| s.id == format!("c{k}"))
                .map(|(_, st)| st);
            let consistent = match (child.running, status) {
                (Some(inc), Some(ChildStatus::Running(j))) => inc == j,
                (None, Some(ChildStatus::Stopped)) | (None, None) => true,
                _ => false,
            };
            if !consistent {
                let detail = format!(
                    "node {i} child c{k}: engine {:?} vs core {status:?}",
                    child.running
                );
                self.violate("supervisor-consistency", detail);
                return;
            }
        }
    }

    // ----- driving a node's core -----

    /// Sends what node `i`'s core wants sent, handles its events, reschedules its timer.
    fn pump(&mut self, i: usize) {
        self.pump_durable(i);
        let now = self.local(i, self.now);
        let durable_next = self.nodes[i]
            .durable
            .as_ref()
            .and_then(DurableNode::poll_timeout);
        let mut out = Vec::new();
        let mut events = Vec::new();
        let next;
        {
            let Some(core) = self.nodes[i].core.as_mut() else {
                return;
            };
            while let Some((to, frame)) = core.poll_transmit(now) {
                out.push((index_of(&to), frame));
            }
            while let Some(ev) = core.poll_event() {
                events.push(ev);
            }
            next = match durable_next {
                Some(t) => core.poll_timeout().min(t),
                None => core.poll_timeout(),
            };
        }
        for (to, frame) in out {
            if to < self.nodes.len() {
                self.send(i, to, frame);
            }
        }
        for ev in events {
            self.on_event(i, ev);
        }
        let at = self.virtual_of(i, next).max(self.now + 1);
        if at < self.nodes[i].timer_at {
            self.nodes[i].timer_gen += 1;
            self.nodes[i].timer_at = at;
            let generation = self.nodes[i].timer_gen;
            self.push(at, Ev::Timer(i, generation));
        }
    }

    fn on_event(&mut self, i: usize, ev: ClusterEvent) {
        match ev {
            ClusterEvent::Member(m) => {
                let (tag, subject) = match &m {
                    MembershipEvent::Joined(n) => (30, index_of(n)),
                    MembershipEvent::Updated(n) => (31, index_of(n)),
                    MembershipEvent::Suspected(n) => (32, index_of(n)),
                    MembershipEvent::Recovered(n) => (33, index_of(n)),
                    MembershipEvent::Died(n) => (34, index_of(n)),
                    MembershipEvent::Left(n) => (35, index_of(n)),
                    MembershipEvent::Refuted { incarnation } => (36, *incarnation as usize),
                };
                self.record(i, tag, subject as u64, 0);
                if let MembershipEvent::Suspected(n) = m {
                    self.report.suspicions += 1;
                    let s = index_of(&n);
                    if s < self.nodes.len() && self.nodes[s].core.is_some() {
                        self.report.false_suspicions += 1;
                    }
                }
            }
            ClusterEvent::Registry(_) => self.record(i, 40, 0, 0),
            ClusterEvent::Delivery(DeliveryEvent::Unreachable { frames, .. }) => {
                self.report.tells_unreachable += frames.len() as u64;
            }
            ClusterEvent::Delivery(_) => {}
        }
    }

    // ----- checkers -----

    fn up(&self, i: usize) -> bool {
        self.nodes[i].core.is_some() && !self.nodes[i].paused
    }

    /// Full-state checks, every `deep_interval` (or every step).
    fn deep_check(&mut self) {
        // Links with nothing in flight no longer constrain arrivals.
        let now = self.now;
        self.link_clock.retain(|_, at| *at > now);
        // The cores' full-state invariants cost O(state) each, so they rotate over the
        // nodes (all of them with `every_step`); the per-event checks (delivery order
        // and duplicates, supervisor invariants) run on every event regardless.
        let n = self.nodes.len();
        let k = if self.scenario.check.every_step {
            n
        } else {
            self.scenario.check.deep_nodes.unwrap_or(16).clamp(1, n)
        };
        let mut failures = Vec::new();
        for _ in 0..k {
            let i = self.deep_cursor % n;
            self.deep_cursor = self.deep_cursor.wrapping_add(1);
            if let Some(core) = &self.nodes[i].core
                && let Err(e) = core.check_invariants()
            {
                failures.push(format!("node {i}: {e}"));
            }
        }
        for f in failures {
            self.violate("core-invariant", f);
        }
        // Detection times of crashed nodes.
        let pending: Vec<(usize, u64)> = self.detecting.iter().map(|(k, v)| (*k, *v)).collect();
        for (dead, since) in pending {
            let id = self.nodes[dead].id;
            let all = (0..self.nodes.len())
                .filter(|&i| i != dead && self.up(i))
                .all(|i| {
                    self.nodes[i].core.as_ref().is_some_and(|c| {
                        c.membership()
                            .state_of(&id)
                            .is_none_or(MemberState::is_down)
                    })
                });
            if all {
                self.detecting.remove(&dead);
                self.report.detections_ms.push((self.now - since) / 1_000);
            }
        }
        // Liveness after the last fault.
        if self.now >= self.quiet_at && self.converged_at.is_none() {
            match self.convergence_gap() {
                None => {
                    self.converged_at = Some(self.now);
                    self.report.converge_ms = Some((self.now - self.quiet_at) / 1_000);
                }
                Some(gap) if self.now >= self.converge_deadline => {
                    let within = (self.converge_deadline - self.quiet_at) / 1_000;
                    self.violate(
                        "convergence",
                        format!("views still disagree {within} ms after the last fault: {gap}"),
                    );
                    self.converged_at = Some(u64::MAX);
                }
                Some(_) => {}
            }
        }
    }

    /// `None` if every live node agrees on membership and names; else one disagreement.
    ///
    /// Until views converge this runs at every deep check and the full comparison is
    /// O(n²), so the pair that disagreed last time is checked first: while it still
    /// disagrees the answer costs O(1).
    fn convergence_gap(&mut self) -> Option<String> {
        let n = self.nodes.len();
        let up: Vec<bool> = (0..n).map(|i| self.up(i)).collect();
        let up_count = up.iter().filter(|u| **u).count();
        // A cheap necessary condition first: every live node counts the live nodes right.
        for i in (0..n).filter(|&i| up[i]) {
            let live = self.nodes[i]
                .core
                .as_ref()
                .map_or(0, |c| c.membership().live_count());
            if live != up_count {
                return Some(format!(
                    "node {i} counts {live} live nodes, {up_count} are up"
                ));
            }
        }
        if let Some((i, j)) = self.gap_hint
            && i < n
            && j < n
            && up[i]
            && let Some(gap) = self.pair_gap(i, j, &up)
        {
            return Some(gap);
        }
        for i in (0..n).filter(|&i| up[i]) {
            for j in (0..n).filter(|&j| j != i) {
                if let Some(gap) = self.pair_gap(i, j, &up) {
                    self.gap_hint = Some((i, j));
                    return Some(gap);
                }
            }
        }
        self.gap_hint = None;
        None
    }

    /// Whether live node `i` sees node `j` as it is (state, and names if up).
    fn pair_gap(&self, i: usize, j: usize, up: &[bool]) -> Option<String> {
        let core = self.nodes[i].core.as_ref()?;
        let state = core.membership().state_of(&self.nodes[j].id);
        let ok = if up[j] {
            state == Some(MemberState::Alive)
        } else {
            state.is_none_or(MemberState::is_down)
        };
        if !ok {
            return Some(format!("node {i} sees node {j} as {state:?}"));
        }
        if up[j] {
            for (name, want) in &self.names[j] {
                if core.lookup(name).map(|l| l.actor) != Some(*want) {
                    return Some(format!(
                        "node {i} resolves `{name}` to {:?}",
                        core.lookup(name)
                    ));
                }
            }
        }
        None
    }

    fn check_dead_names(&mut self, dead: usize, incarnation: u64) {
        if self.nodes[dead].core.is_some() || self.nodes[dead].incarnation != incarnation {
            return; // restarted meanwhile
        }
        let id = self.nodes[dead].id;
        for i in 0..self.nodes.len() {
            if i == dead || !self.up(i) {
                continue;
            }
            let names = self.nodes[i]
                .core
                .as_ref()
                .map(|c| c.registry().names_on(&id))
                .unwrap_or_default();
            if let Some(name) = names.first() {
                let within = self.dead_names_within / 1_000;
                self.violate("dead-names", format!("node {i} still resolves `{name}` to crashed node {dead} {within} ms after the crash"));
                return;
            }
        }
    }

    /// Runs, then describes every node's final view (for debugging a seed; see
    /// `examples/debug_seed.rs`).
    pub fn run_with_dump(mut self) -> (Report, String) {
        let end = self.advance();
        let mut dump = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let view = match &node.core {
                None => "down".to_string(),
                Some(core) => {
                    let known: Vec<String> = core
                        .membership()
                        .members()
                        .map(|m| format!("{}:{:?}@{}", index_of(&m.id), m.state, m.incarnation))
                        .collect();
                    format!(
                        "inc {} paused {} crashed_at {:?} knows {}",
                        core.membership().incarnation(),
                        node.paused,
                        node.crashed_at,
                        known.join(" ")
                    )
                }
            };
            dump.push_str(&format!("node {i}: {view}\n"));
        }
        (self.finish(end), dump)
    }

    fn finish(mut self, end: u64) -> Report {
        if self.converged_at.is_none()
            && end >= self.converge_deadline
            && let Some(gap) = self.convergence_gap()
        {
            self.violate(
                "convergence",
                format!("views disagree at the end of the run: {gap}"),
            );
        }
        self.report.sim_ms = end / 1_000;
        self.report.trace_hash = self.trace.finalize().to_hex().to_string();
        self.report
    }
}

// ----- durable actors -----

/// Marks the sessions of one-shot operator requests.
const ONE_SHOT: u64 = 1 << 63;

enum RequestKind {
    Report,
    OneShot,
}

impl World {
    fn durable_cfg(&self) -> Option<crate::scenario::DurableSection> {
        self.scenario.durable.clone()
    }

    /// A durable message arrived at node `to` over the mesh.
    fn on_durable(&mut self, to: usize, payload: &[u8]) {
        let now = self.local(to, self.now);
        match plexus_durable::wire::decode(payload) {
            Ok(msg) => {
                if let Some(d) = self.nodes[to].durable.as_mut() {
                    d.handle(now, msg);
                }
            }
            Err(e) => self.violate(
                "durable-wire",
                format!("node {to}: undecodable message: {e}"),
            ),
        }
    }

    /// Runs node `i`'s durable service until it has nothing more to say.
    fn pump_durable(&mut self, i: usize) {
        if self.nodes[i].durable.is_none() {
            return;
        }
        let now = self.local(i, self.now);
        for _ in 0..10_000 {
            let mut sends = Vec::new();
            let mut events = Vec::new();
            {
                let node = &mut self.nodes[i];
                let (Some(core), Some(d)) = (node.core.as_ref(), node.durable.as_mut()) else {
                    return;
                };
                d.flush(now, &mut |k| {
                    core.lookup(&k.registry_name())
                        .map(|l| (l.node, Ballot::ZERO))
                });
                while let Some(t) = d.poll_transmit() {
                    sends.push(t);
                }
                while let Some(e) = d.poll_event() {
                    events.push(e);
                }
            }
            if sends.is_empty() && events.is_empty() {
                return;
            }
            for (to, msg) in sends {
                self.durable_send(i, to, msg);
            }
            for e in events {
                self.durable_event(i, e);
            }
        }
        self.violate("durable-livelock", format!("node {i} never quiesced"));
    }

    fn durable_send(&mut self, i: usize, to: NodeId, msg: DurableMsg) {
        let now = self.local(i, self.now);
        if to == self.nodes[i].id {
            if let Some(d) = self.nodes[i].durable.as_mut() {
                d.handle(now, msg);
            }
            return;
        }
        let Ok(payload) = plexus_durable::wire::encode(&msg) else {
            self.violate(
                "durable-wire",
                format!("node {i}: a message does not encode"),
            );
            return;
        };
        let body = Arc::new(DataBody::Tell {
            target: ActorId::new(to, SERVICE_LOCAL_ID),
            message_type: plexus_durable::MESSAGE_TYPE.to_string(),
            payload,
            trace: None,
        });
        if let Some(core) = self.nodes[i].core.as_mut() {
            // Refused (window full, peer down): the durable layer retries.
            let _ = core.send(now, to, body);
        }
    }

    fn durable_event(&mut self, i: usize, e: NodeEvent) {
        let now = self.local(i, self.now);
        let me = self.nodes[i].id;
        match e {
            NodeEvent::Actor { key, event } => match event {
                ActivationEvent::Restore { user } => {
                    let spec = self.nodes[i]
                        .durable
                        .as_ref()
                        .and_then(|d| d.actor(&key))
                        .map(|a| a.spec().to_vec())
                        .unwrap_or_default();
                    match Hosted::restore(&key, &spec, &user) {
                        Ok(h) => {
                            self.nodes[i].hosted.insert(key, h);
                        }
                        Err(why) => {
                            self.nodes[i].hosted.remove(&key);
                            if let Some(d) = self.nodes[i].durable.as_mut() {
                                d.user_failed(now, &key, why);
                            }
                        }
                    }
                }
                ActivationEvent::Apply {
                    token,
                    inputs,
                    snapshot,
                } => {
                    let mut order = Vec::new();
                    let twice = self.options.bug == Some(Bug::DurableDoubleApply) && {
                        self.redeliver_counter += 1;
                        self.redeliver_counter.is_multiple_of(20)
                    };
                    let result = match self.nodes[i].hosted.get_mut(&key) {
                        Some(h) => {
                            if twice {
                                let _ = h.apply(&key, inputs.clone(), false, &mut order);
                            }
                            h.apply(&key, inputs, snapshot, &mut order)
                        }
                        None => Err("no user code".to_string()),
                    };
                    for v in order {
                        self.violate("durable-order", format!("node {i}: {v}"));
                    }
                    if let Some(d) = self.nodes[i].durable.as_mut() {
                        match result {
                            Ok(applied) => d.applied(now, &key, token, applied),
                            Err(why) => d.user_failed(now, &key, why),
                        }
                    }
                }
                ActivationEvent::Activated {
                    ballot,
                    set,
                    restored,
                } => {
                    self.record(i, 50, ballot.round, set.len() as u64);
                    self.durable
                        .restores
                        .insert((key.clone(), ballot), restored);
                    self.report.durable_activations += 1;
                    if let Some(core) = self.nodes[i].core.as_mut() {
                        let _ = core.register_ranked(
                            now,
                            &key.registry_name(),
                            ActorId::new(me, SERVICE_LOCAL_ID),
                            ballot.round,
                        );
                    }
                    if self.durable.scheduler.as_ref() != Some(&key) {
                        self.operator_request(
                            i,
                            Request::Report(SchedReport::Active {
                                key: key.to_string(),
                                node: me,
                                set,
                                ballot,
                            }),
                        );
                    } else {
                        self.report.scheduler_activations += 1;
                    }
                }
                ActivationEvent::Reconfigured { set } => {
                    self.record(i, 51, set.len() as u64, 0);
                    let ballot = self.nodes[i]
                        .durable
                        .as_ref()
                        .and_then(|d| d.actor(&key))
                        .map_or(Ballot::ZERO, |a| a.ballot());
                    self.operator_request(
                        i,
                        Request::Report(SchedReport::Active {
                            key: key.to_string(),
                            node: me,
                            set,
                            ballot,
                        }),
                    );
                }
                ActivationEvent::Committed { version, .. } => {
                    self.report.durable_commits += 1;
                    self.check_commit(i, &key, version);
                }
                ActivationEvent::Command { to, command } => {
                    self.durable_send(i, to, DurableMsg::Command(command));
                }
                ActivationEvent::Migrated { pause, .. } => {
                    self.record(i, 52, 0, 0);
                    self.report.migrations += 1;
                    let ms = pause.as_millis() as u64;
                    self.report.migration_pause_max_ms = self.report.migration_pause_max_ms.max(ms);
                }
                ActivationEvent::Deactivated(why) => {
                    self.record(i, 53, 0, 0);
                    let reason = format!("{why:?}");
                    let reason = reason
                        .split(['(', ' ', '{'])
                        .next()
                        .unwrap_or("")
                        .to_string();
                    *self.report.deactivations.entry(reason).or_default() += 1;
                    self.nodes[i].hosted.remove(&key);
                    let name = key.registry_name();
                    if let Some(core) = self.nodes[i].core.as_mut()
                        && core
                            .registry()
                            .my_claims()
                            .iter()
                            .any(|c| *c.name == *name && !c.removed)
                    {
                        core.unregister(now, &name);
                    }
                }
            },
            NodeEvent::Session { id, event } => {
                let StreamEvent::Acked { to, up_to, replies } = event;
                let entry = self.durable.acked.entry((to.clone(), id)).or_insert(0);
                if up_to > *entry {
                    if Some(&to) != self.durable.scheduler.as_ref() {
                        self.report.durable_acked += up_to - *entry;
                    }
                    *entry = up_to;
                }
                for (_, reply) in replies {
                    let decoded = reply
                        .ok()
                        .and_then(|b| plexus_scheduler::app::decode_response(&b).ok());
                    if let Some(Response::Deployed { .. }) = decoded {
                        self.durable.deployed = true;
                    }
                }
                if id & ONE_SHOT != 0
                    && let Some(d) = self.nodes[i].durable.as_mut()
                    && d.session_unacked(id) == Some(0)
                {
                    d.session_close(id);
                }
            }
            NodeEvent::Refused { .. } => {}
        }
    }

    /// Commits of one actor must form one history. A commit newer than every earlier
    /// one must hold every message acknowledged so far. A commit that completes late
    /// (an older activation's record reaching a majority after a newer activation
    /// took over) is safe only if every newer activation restored it or something
    /// newer: otherwise two activations were both committing.
    fn check_commit(&mut self, i: usize, key: &DurableKey, version: u64) {
        let Some(record) = self.nodes[i]
            .durable
            .as_ref()
            .and_then(|d| d.actor(key))
            .and_then(|a| a.committed())
            .cloned()
        else {
            return;
        };
        let order = (record.ballot, record.version);
        debug_assert_eq!(version, record.version);
        if self
            .durable
            .last_commit
            .get(key)
            .is_some_and(|prev| *prev >= order)
        {
            let missed: Vec<String> = self
                .durable
                .restores
                .range((key.clone(), record.ballot)..)
                .filter(|((k, b), restored)| k == key && *b > record.ballot && restored.is_none_or(|r| r < order))
                .map(|((_, b), restored)| format!("{key}: {order:?} committed late, but activation {b} restored only {restored:?}"))
                .collect();
            for m in missed {
                self.violate("durable-single-active", m);
            }
            return;
        }
        self.durable.last_commit.insert(key.clone(), order);
        let Ok(state) = DurableState::decode(&record.body) else {
            self.violate(
                "durable-record",
                format!("{key}: a committed record does not decode"),
            );
            return;
        };
        let lost: Vec<String> = self
            .durable
            .acked
            .range((key.clone(), 0)..=(key.clone(), u64::MAX))
            .filter_map(|((_, session), acked)| {
                let have = state.inbound.get(&SenderId::Client(*session)).map_or(0, |i| i.last);
                (have < *acked).then(|| format!("{key}: session {session:x} acked up to {acked}, committed state holds {have}"))
            })
            .collect();
        for l in lost {
            self.violate("durable-lost", l);
        }
    }

    fn operator_request(&mut self, i: usize, request: Request) {
        let request_kind = match request {
            Request::Report(_) => RequestKind::Report,
            _ => RequestKind::OneShot,
        };
        let Some(key) = self.durable.scheduler.clone() else {
            return;
        };
        let Some(op) = self.durable.operator.as_ref() else {
            return;
        };
        self.durable.nonce += 1;
        let Ok(signed) = Signed::sign(request, self.durable.nonce, op) else {
            return;
        };
        let Ok(payload) = encode_request(&signed) else {
            return;
        };
        // Requests that want an answer go on a session of their own: an ack covers
        // its one message, so a lost ack is followed by a retransmission that gets
        // the kept reply (a shared session's cumulative ack can cover a request
        // whose own ack, and reply, was lost).
        let session = if matches!(request_kind, RequestKind::Report) {
            self.nodes[i].session
        } else {
            self.durable.nonce | ONE_SHOT
        };
        if let Some(d) = self.nodes[i].durable.as_mut() {
            d.session_open(session);
            d.session_send(session, &key, payload, None);
        }
    }

    fn view_of(&self, i: usize) -> View {
        let capacity = plexus_vocab::resources::Resources {
            cpu_millis: 64_000,
            memory_bytes: 64 << 30,
            gpus: 0,
        };
        let mut view = View {
            me: Some(self.nodes[i].id),
            submitters: self.durable.operator.iter().map(NodeKey::node_id).collect(),
            members: self.nodes.iter().map(|n| n.id).collect(),
            kinds: [RELAY, SINK].iter().map(|s| s.to_string()).collect(),
            ..View::default()
        };
        let Some(core) = self.nodes[i].core.as_ref() else {
            return view;
        };
        view.nodes.push(NodeInfo {
            id: self.nodes[i].id,
            tags: Default::default(),
            capacity,
            alive: true,
            draining: false,
        });
        for m in core.membership().members() {
            if m.id == self.nodes[i].id {
                continue;
            }
            view.nodes.push(NodeInfo {
                id: m.id,
                tags: Default::default(),
                capacity,
                alive: !m.state.is_down(),
                draining: false,
            });
        }
        for (name, loc) in core.registry().locations() {
            if let Some(key) = name.strip_prefix("durable:") {
                view.locations.insert(key.to_string(), loc.node);
            }
        }
        view
    }

    fn durable_tick(&mut self) {
        let Some(cfg) = self.durable_cfg() else {
            return;
        };
        let next = self.now + us(cfg.tick);
        self.push(next, Ev::DurableTick);
        let Some(sched) = self.durable.scheduler.clone() else {
            return;
        };
        let all: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        let set = scheduler_set(&all);
        for i in 0..self.nodes.len() {
            if !self.up(i) {
                continue;
            }
            let now = self.local(i, self.now);
            let me = self.nodes[i].id;
            let (located, live) = match self.nodes[i].core.as_ref() {
                Some(core) => (
                    core.lookup(&sched.registry_name()).is_some(),
                    core.membership()
                        .members()
                        .filter(|m| !m.state.is_down())
                        .map(|m| m.id)
                        .collect::<Vec<_>>(),
                ),
                None => continue,
            };
            let here = self.nodes[i]
                .durable
                .as_ref()
                .is_some_and(|d| d.actor(&sched).is_some());
            let forwarded = self.nodes[i]
                .durable
                .as_ref()
                .is_some_and(|d| d.forward_of(&sched).is_some());
            let activate = self.nodes[i].watchdog.check(
                me,
                &live,
                located || forwarded,
                here,
                plexus_scheduler::app::WATCHDOG_GRACE_TICKS,
            );
            let hosting = self.nodes[i]
                .durable
                .as_ref()
                .and_then(|d| d.actor(&sched))
                .is_some_and(|a| a.is_active());
            let view = hosting.then(|| self.view_of(i));
            if let Some(d) = self.nodes[i].durable.as_mut() {
                if activate && let Some(set) = set.clone() {
                    d.activate(now, sched.clone(), vec![set], Vec::new(), Ballot::ZERO);
                }
                if let Some(view) = view
                    && let Ok(tick) = encode_tick(&view)
                {
                    d.local_input(now, &sched, tick);
                }
            }
            self.pump(i);
        }
    }

    fn operator_node(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.up(i)).collect();
        if up.is_empty() {
            return None;
        }
        Some(up[self.durable.rng.index(up.len())])
    }

    fn durable_deploy(&mut self) {
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
            self.durable.pending_deploy_session = Some(self.nodes[i].session);
            self.operator_request(
                i,
                Request::Deploy {
                    spec: job_spec(cfg.replicas, cfg.durability),
                },
            );
            self.pump(i);
        }
    }

    fn durable_traffic(&mut self) {
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
        let session = self.nodes[i].session;
        let payload = self.durable.rng.next_u64().to_le_bytes().to_vec();
        if let Some(d) = self.nodes[i].durable.as_mut() {
            d.session_open(session);
            if d.session_send(session, &to, payload, None).is_some() {
                self.report.durable_sent += 1;
            }
        }
        self.record(i, 55, k as u64, 0);
        self.pump(i);
    }

    fn durable_migrate(&mut self) {
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
        let actors: Vec<DurableKey> = self
            .durable
            .relays
            .iter()
            .chain(self.durable.sinks.iter())
            .cloned()
            .chain(self.durable.scheduler.clone())
            .collect();
        let actor = actors[self.durable.rng.index(actors.len())].to_string();
        let to = self.nodes[self.durable.rng.index(self.nodes.len())].id;
        if let Some(i) = self.operator_node() {
            self.record(i, 56, 0, 0);
            self.operator_request(i, Request::Migrate { actor, to });
            self.pump(i);
        }
    }

    /// After the faults and a settling period: every client message acknowledged,
    /// every actor active on exactly one node, every relay's output delivered
    /// exactly once.
    fn durable_settle(&mut self) {
        if !self.durable.deployed {
            self.violate("durable-deploy", "the job was never deployed".into());
            return;
        }
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.up(i)).collect();
        for &i in &up {
            let session = self.nodes[i].session;
            if let Some(n) = self.nodes[i]
                .durable
                .as_ref()
                .and_then(|d| d.session_unacked(session))
                && n > 0
            {
                let pending = self.nodes[i]
                    .durable
                    .as_ref()
                    .map(|d| d.session_pending(session))
                    .unwrap_or_default();
                self.violate(
                    "durable-liveness",
                    format!("node {i}'s client still waits for {n} acks: {pending:?}"),
                );
            }
        }
        let keys: Vec<DurableKey> = self
            .durable
            .relays
            .iter()
            .chain(self.durable.sinks.iter())
            .cloned()
            .chain(self.durable.scheduler.clone())
            .collect();
        let mut committed: BTreeMap<DurableKey, Toy> = BTreeMap::new();
        for key in &keys {
            let hosts: Vec<usize> = up
                .iter()
                .copied()
                .filter(|&i| {
                    self.nodes[i]
                        .durable
                        .as_ref()
                        .and_then(|d| d.actor(key))
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
                .durable
                .as_ref()
                .and_then(|d| d.actor(key))
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
}
