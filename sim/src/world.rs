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
use plexus_mesh::cluster::{Cluster, ClusterConfig, ClusterEvent};
use plexus_mesh::delivery::DeliveryEvent;
use plexus_mesh::membership::{MemberState, MembershipConfig, MembershipEvent};
use plexus_mesh::resources::NodeMeta;
use plexus_mesh::wire::{DataBody, Frame};
use plexus_supervisor::{
    Action, ChildSpec, ChildStatus, ExitReason, Intensity, Restart, Supervisor,
};

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
        };
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

    fn latency(&mut self) -> u64 {
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
            base + self.net_rng.below(4 * max + 1)
        } else {
            base
        }
    }

    fn send(&mut self, from: usize, to: usize, frame: Frame) {
        self.report.frames_sent += 1;
        if self.net_rng.chance(self.scenario.network.loss) {
            self.report.frames_lost += 1;
            return;
        }
        if self.net_rng.chance(self.scenario.network.duplicate) {
            let at = self.now + self.latency();
            self.push(
                at,
                Ev::Deliver {
                    from,
                    to,
                    frame: frame.clone(),
                },
            );
        }
        let at = self.now + self.latency();
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
            self.on_data(to, from, seq, &body);
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
        let now = self.local(i, self.now);
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
            next = core.poll_timeout();
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
    fn convergence_gap(&self) -> Option<String> {
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
        for i in (0..n).filter(|&i| up[i]) {
            let Some(core) = self.nodes[i].core.as_ref() else {
                continue;
            };
            for j in (0..n).filter(|&j| j != i) {
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
