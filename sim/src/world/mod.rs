//! The simulation engine: one thread, virtual time, one seeded RNG split per node and
//! per component, an event queue ordered by `(time, sequence)`.
//!
//! Each simulated node runs the production cores: a [`Cluster`] (membership, registry,
//! delivery), a [`Supervisor`] and, with `[durable]`, a [`DurableHost`] (the durable
//! service, its user code and the scheduler, exactly as the daemon hosts them). The
//! engine is their driver, as the libp2p driver and the daemon's service are in
//! production: it hands them events with the node's local time and carries out what
//! they return. It decides nothing about the protocols itself.
//!
//! Rooms: this module is the engine (event queue, clocks, node lifecycle, pumping a
//! node's cores); `network` models the links, `faults` injects crashes, partitions
//! and pauses, `checkers` holds the cross-node checks, and `workload/` has one
//! module per workload (tells, asks, supervision, durable actors).
//!
//! Determinism: all maps are ordered; every random choice comes from [`DetRng`]s split
//! from the run's seed; node clocks are functions of virtual time; nothing reads the
//! wall clock except the final wall-time figure, which is not hashed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::rng::DetRng;
use plexus_actors::{ActorId, NodeId, Time};
use plexus_durable::MemStore;
use plexus_host::DurableHost;
use plexus_mesh::cluster::{Cluster, ClusterConfig, ClusterEvent};
use plexus_mesh::delivery::DeliveryEvent;
use plexus_mesh::membership::{MemberState, MembershipConfig, MembershipEvent};
use plexus_mesh::wire::{DataBody, Frame};
use plexus_supervisor::{
    Action, ChildSpec, ChildStatus, ExitReason, Intensity, Restart, Supervisor,
};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::NodeMeta;

use crate::report::{Report, Violation};
use crate::scenario::{FaultKind, LatencyDist, Scenario};

pub mod byzantine;
mod checkers;
mod faults;
mod network;
mod queue;
mod workload;

use queue::{EventQueue, Key};
use workload::asks::AskWorld;
use workload::durable::DurableWorld;

/// Node clocks start this far from zero, so a negative skew stays a valid time.
const CLOCK_BASE_US: i128 = 3_600_000_000;
/// Stop recording after this many violations.
const VIOLATIONS_MAX: usize = 20;
/// What a sharded registry's nodes must resolve, by the truth: each up node's
/// names by name, and the names each node owns.
#[derive(Default)]
struct NameOwners {
    /// Each up node's names: the node's index and the name's place in its list.
    by_name: FastMap<String, (usize, usize)>,
    /// The names each node owns, as `(node, place)` in `World::names`.
    owned: Vec<Vec<(usize, usize)>>,
}

/// Local numbers of the workload actors on each node.
const ACTOR_BASE: u64 = 16;

/// Bugs a test can inject, to prove the checkers catch them: into the engine (the
/// simulator's own driving), or into the shared durable host core the daemon runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bug {
    /// Hand every 50th delivered tell to its actor a second time.
    RedeliverTells,
    /// Drop the registry claims in every full-state sync a node receives, as a driver
    /// that mishandled sync packets would: names never reach late joiners.
    DropSyncClaims,
    /// With a sharded registry, drop every claim pushed between nodes (a
    /// claimant's to the owners, an owner's to the owners taking a name over, and
    /// the periodic re-sends that would repair either), as a driver that mishandled
    /// those packets would; answers to resolves still arrive.
    DropHandoffs,
    /// Hand every 20th batch of durable inputs to the user code twice, as a host
    /// that retried a batch would. Injected into the shared host core
    /// (`plexus_host::Fault::DoubleApply`), which the daemon runs too.
    DurableDoubleApply,
    /// Wipe a node's disk when it crashes, breaking the storage promise the
    /// durability argument rests on.
    DurableWipeDisks,
    /// Hand every 10th answer to an ask to its asker twice, as a driver that
    /// completed an ask from two places would.
    AnswerAsksTwice,
    /// Lose every 10th answer to an ask before it reaches its asker, as a driver
    /// that dropped its waiter would.
    DropAnswers,
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
    /// Node `.0`, in incarnation `.1`, sends an ask.
    Ask(usize, u64),
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
    DurableDeploy,
    DurableSend,
    DurableMigrate,
    DurableSettle,
    /// Notes what each client session has sent, for the settle check.
    DurableMark,
    /// Byzantine node `.0` tells its next lies.
    Lie(usize),
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

struct Child {
    running: Option<u64>,
}

struct SimNode {
    id: NodeId,
    key: NodeKey,
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
    /// The last tell this incarnation sent, to any node: one counter for all
    /// destinations (a counter per destination cost 8 bytes a node, 800 MB at
    /// 10,000 nodes), so each link's tells still carry rising numbers, which is
    /// all the receiver's FIFO and at-most-once check needs.
    next_seq: u64,
    supervisor: Supervisor,
    children: Vec<Child>,
    crashed_at: Option<u64>,
    /// The durable host (with `[durable]`); its disk survives crashes.
    host: Option<DurableHost<MemStore>>,
    disk: MemStore,
}

/// A map looked up on every event and never walked in an order that matters: hashed,
/// with a fixed seed so runs replay.
type FastMap<K, V> = plexus_actors::fixed::FixedMap<K, V>;

/// Per (sender, sender session, receiver, receiver incarnation): the last tell seq
/// seen. Ten thousand nodes telling random peers for an hour hold thirty million
/// of these, so the four parts are packed into 8 bytes where they fit (node
/// indexes under 2^24, sessions and incarnations, which count a node's starts,
/// under 2^8), making an entry 16 bytes with its seq; a key that does not fit goes
/// to a second map with 16-byte keys. A key's map depends only on the key, so each
/// link is checked in one map.
#[derive(Default)]
struct LastSeen {
    packed: FastMap<u64, u64>,
    wide: FastMap<u128, u64>,
}

impl LastSeen {
    /// The last seq seen on the link, 0 before its first tell.
    fn entry(&mut self, from: usize, session: u64, to: usize, incarnation: u64) -> &mut u64 {
        let (from, to) = (from as u64, to as u64);
        if from < 1 << 24 && to < 1 << 24 && session < 1 << 8 && incarnation < 1 << 8 {
            let key = from << 40 | to << 16 | session << 8 | incarnation;
            self.packed.entry(key).or_insert(0)
        } else {
            let word = |v: u64| u128::from(u32::try_from(v).unwrap_or(u32::MAX));
            let key = word(from) << 96 | word(session) << 64 | word(to) << 32 | word(incarnation);
            self.wide.entry(key).or_insert(0)
        }
    }
}

/// The simulator.
pub struct World {
    scenario: Scenario,
    seed: u64,
    options: RunOptions,
    now: u64,
    seq: u64,
    queue: EventQueue,
    slab: Vec<Option<Queued>>,
    free: Vec<u32>,
    nodes: Vec<SimNode>,
    net_rng: DetRng,
    chaos_rng: DetRng,
    partition: Option<(Vec<bool>, bool)>,
    cluster_config: ClusterConfig,
    /// Signatures found valid, shared by every node: each distinct statement's
    /// ed25519 check runs once per world instead of once per node (see
    /// [`plexus_vocab::identity::SigMemo`]; answers are unchanged).
    sig_memo: plexus_vocab::identity::SigMemo,
    trace: blake3::Hasher,
    last_seen: LastSeen,
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
    /// Crashes in `detecting` that some live node has already declared dead.
    first_detected: std::collections::BTreeSet<usize>,
    /// Next node to get the full-state invariants.
    deep_cursor: usize,
    /// Each node's registered names and the actor each must resolve to.
    names: Vec<Vec<(String, ActorId)>>,
    durable: DurableWorld,
    asks: AskWorld,
    /// Per link: when its last frame arrives (links are FIFO; see `arrival`).
    link_clock: FastMap<(usize, usize), u64>,
    link_prune_at: usize,
    /// The pair of nodes whose views disagreed at the last convergence check.
    gap_hint: Option<(usize, usize)>,
    /// A sharded registry: which nodes own each name, for the truth digest it was
    /// computed from (the convergence checker asks owners, not every node).
    name_owners: Option<([u8; 32], NameOwners)>,
    /// Per node: the digests of its views (membership, names) and of the truth
    /// when its views were last found right; see `convergence_gap`.
    verified_views: Vec<Option<[[u8; 32]; 3]>>,
    /// Node ids to node indices.
    index: BTreeMap<NodeId, usize>,
    /// The allowlist every node's core checks senders against: the run's nodes, one
    /// set shared by all of them.
    admitted: plexus_mesh::admitted::Admitted,
    /// The Byzantine nodes.
    byz: byzantine::Liars,
}

/// Asks the CPU to bring `value` into its caches (a hint: no effect on what the
/// program computes, and none off x86-64).
#[inline]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let start = (value as *const T).cast::<i8>();
        // Every cache line `value` touches, from the one its first byte is in (a
        // 152-byte value may straddle four lines).
        let misalign = start as usize % LINE;
        let first = start.wrapping_sub(misalign);
        let mut offset = 0;
        while offset < misalign + std::mem::size_of::<T>() {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch reads
            // nothing into the program and cannot fault, whatever the address
            // (these stay within `value`'s first and last lines anyway).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(offset)) };
            offset += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Node `i`'s key: a real ed25519 key, since the mesh verifies signed statements.
fn node_key(i: usize) -> NodeKey {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    NodeKey::from_seed(seed)
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
        if let Some(v) = m.suspicion_confirmations {
            membership.suspicion_confirmations = v;
        }
        if let Some(v) = m.suspicion_min_mult {
            membership.suspicion_min_mult = v;
        }
        if let Some(v) = m.health_max {
            membership.health_max = v;
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
        let mut cluster_config = ClusterConfig {
            membership,
            ..ClusterConfig::default()
        };
        let reg = &scenario.registry;
        if let Some(r) = reg.owners {
            cluster_config.registry.owners = r;
        }
        if let Some(v) = reg.watch_refresh {
            cluster_config.registry.watch_refresh = v;
        }
        if let Some(v) = reg.watch_idle {
            cluster_config.registry.watch_idle = v;
        }
        if let Some(v) = scenario.delivery.idle_link_after {
            cluster_config.delivery.idle_link_after = v;
        }
        if let Some(v) = scenario.delivery.forget_after {
            cluster_config.delivery.forget_after = Some(v);
        }
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
                let key = node_key(i);
                SimNode {
                    id: key.node_id(),
                    key,
                    core: None,
                    paused: false,
                    deferred: Vec::new(),
                    incarnation: 0,
                    skew_us,
                    drift_ppm,
                    timer_gen: 0,
                    timer_at: u64::MAX,
                    rng: DetRng::split(seed, 1_000 + i as u64),
                    next_seq: 0,
                    supervisor,
                    children,
                    crashed_at: None,
                    host: None,
                    disk: MemStore::default(),
                }
            })
            .collect::<Vec<SimNode>>();
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
        let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
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
            queue: EventQueue::default(),
            slab: Vec::new(),
            free: Vec::new(),
            nodes,
            net_rng: DetRng::split(seed, 2),
            chaos_rng: DetRng::split(seed, 3),
            partition: None,
            cluster_config,
            sig_memo: plexus_vocab::identity::SigMemo::new(),
            trace: blake3::Hasher::new(),
            last_seen: LastSeen::default(),
            report: Report::new(scenario, seed),
            quiet_at: 0,
            converged_at: None,
            converge_deadline: u64::MAX,
            dead_names_within,
            deep_interval,
            redeliver_counter: 0,
            detecting: BTreeMap::new(),
            first_detected: std::collections::BTreeSet::new(),
            deep_cursor: 0,
            names: (0..scenario.nodes)
                .map(|j| {
                    (0..scenario.workload.names_per_node)
                        .map(|k| {
                            (
                                format!("n{j}-{k}"),
                                ActorId::new(ids[j], ACTOR_BASE + k as u64),
                            )
                        })
                        .collect()
                })
                .collect(),
            durable: DurableWorld::default(),
            asks: AskWorld::default(),
            link_clock: FastMap::default(),
            link_prune_at: 4096,
            gap_hint: None,
            name_owners: None,
            verified_views: Vec::new(),
            index,
            admitted: ids.iter().copied().collect(),
            byz: byzantine::Liars::new(&scenario.byzantine, seed),
        };
        if let Some(d) = &scenario.durable {
            world.durable = DurableWorld::new(d, &ids, seed);
        }
        world.report.detection_bound_ms = detection.as_millis() as u64;
        world.schedule_initial(converge_within);
        world.schedule_lies();
        world
    }

    /// The index of node `id` (past the last node for an id not in the run).
    fn index_of(&self, id: &NodeId) -> usize {
        self.index.get(id).copied().unwrap_or(usize::MAX)
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
        self.queue.push(Key {
            at: key.0,
            seq: key.1,
            slot,
        });
    }

    fn dequeue(&mut self) -> Option<Queued> {
        let key = self.queue.pop()?;
        let q = self.slab[key.slot as usize].take();
        self.free.push(key.slot);
        // The next event's payload was written when it was queued, often a
        // simulated second ago, and is cold by now: ask for it while this one
        // runs (a hint; an event queued meanwhile may come first).
        if let Some(next) = self.queue.peek() {
            prefetch(&self.slab[next.slot as usize]);
        }
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
            self.push(us(d.deploy_at), Ev::DurableDeploy);
            let after = us(d.deploy_at) + us(d.tick) * 10;
            self.push(after, Ev::DurableSend);
            if d.migrate_rate > 0.0 {
                self.push(after, Ev::DurableMigrate);
            }
            let settle = self.durable.traffic_until + us(d.settle);
            self.push(
                settle.saturating_sub(workload::durable::SETTLE_SLACK),
                Ev::DurableMark,
            );
            self.push(settle, Ev::DurableSettle);
        }
        self.converge_deadline = quiet.saturating_add(converge_within);
        self.report.quiet_at_ms = quiet / 1_000;
        self.push(self.deep_interval, Ev::Deep);
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
            Ev::Start(i) | Ev::Timer(i, _) | Ev::Tell(i) | Ev::Ask(i, _) | Ev::ChildCrash(i) => {
                Some(*i)
            }
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
                // A deadline that moved later (a probe's ack clears its timeout)
                // leaves this event early: the node is only queued again, as a
                // daemon's driver would sleep on. Running its timers now would
                // find nothing due.
                if let Some(next) = self.next_deadline(i)
                    && next > now
                {
                    self.arm_timer(i, next);
                    return;
                }
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.handle_timeout(now);
                }
                self.durable_timeout(i, now);
                self.pump(i);
            }
            Ev::Deliver { from, to, frame } => {
                self.byzantine_heard(to, &frame);
                self.deliver(from, to, frame)
            }
            Ev::Lie(i) => self.lie(i),
            Ev::Tell(i) => self.tell(i),
            Ev::Ask(i, incarnation) => self.ask(i, incarnation),
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
            Ev::DurableDeploy => self.durable_deploy(),
            Ev::DurableSend => self.durable_traffic(),
            Ev::DurableMigrate => self.durable_migrate(),
            Ev::DurableSettle => self.durable_settle(),
            Ev::DurableMark => self.durable_mark(),
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
            self.nodes[i].key.clone(),
            incarnation,
            meta,
            self.cluster_config.clone(),
            seed,
            now,
        );
        let names = self.scenario.workload.names_per_node;
        core.set_sig_check(plexus_vocab::identity::SigCheck::Shared(
            self.sig_memo.clone(),
        ));
        for k in 0..names {
            let (name, actor) = &self.names[i][k];
            let _ = core.register(now, name, *actor);
        }
        for p in self.bootstrap_peers(i) {
            core.handle_discovered(now, self.nodes[p].id);
        }
        self.nodes[i].core = Some(core);
        self.byzantine_start(i, now);
        self.nodes[i].next_seq = 0;
        self.nodes[i].crashed_at = None;
        self.start_host(i, incarnation);
        self.record(i, 2, incarnation, 0);
        self.pump(i);
        let rate = self.scenario.workload.tell_rate;
        if rate > 0.0 {
            let at = self.now + self.exp(i, rate);
            self.push(at, Ev::Tell(i));
        }
        if self.scenario.workload.ask_rate > 0.0 {
            let at = self.now + self.exp(i, self.scenario.workload.ask_rate);
            self.push(at, Ev::Ask(i, incarnation));
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

    // ----- driving a node's core -----

    /// Sends what node `i`'s core wants sent, handles its events, reschedules its timer.
    fn pump(&mut self, i: usize) {
        self.pump_durable(i);
        let now = self.local(i, self.now);
        if self.nodes[i].host.is_some()
            && let Some(core) = self.nodes[i].core.as_mut()
        {
            // The host looked names up through the directory: ask the owners now,
            // as the daemon's driver does (`Cluster::want_name`).
            core.send_wanted(now);
        }
        let mut out = Vec::new();
        let mut events = Vec::new();
        {
            let Some(core) = self.nodes[i].core.as_mut() else {
                return;
            };
            while let Some((to, frame)) = core.poll_transmit(now) {
                out.push((to, frame));
            }
            while let Some(ev) = core.poll_event() {
                events.push(ev);
            }
        }
        let Some(next) = self.next_deadline(i) else {
            return;
        };
        for (to, frame) in out {
            let to = self.index_of(&to);
            if to < self.nodes.len() {
                self.send(i, to, frame);
            }
        }
        // A death runs the host's scheduler tick at once (as the daemon's service
        // does on the mesh's `MemberDied`), then this node is pumped again for
        // what that produced.
        let down = events.iter().any(|ev| {
            matches!(
                ev,
                ClusterEvent::Member(MembershipEvent::Died(_) | MembershipEvent::Left(_))
            )
        });
        for ev in events {
            self.on_event(i, ev);
        }
        if down && self.nodes[i].host.is_some() {
            self.durable_member_down(i, now);
            self.pump(i);
            return;
        }
        self.arm_timer(i, next);
    }

    /// Queues node `i`'s timer for its local deadline `next`, unless one is queued
    /// for no later.
    fn arm_timer(&mut self, i: usize, next: Time) {
        let at = self.virtual_of(i, next).max(self.now + 1);
        if at < self.nodes[i].timer_at {
            self.nodes[i].timer_gen += 1;
            self.nodes[i].timer_at = at;
            let generation = self.nodes[i].timer_gen;
            self.push(at, Ev::Timer(i, generation));
        }
    }

    /// Node `i`'s next local deadline (its core's and its durable host's), if it
    /// runs.
    fn next_deadline(&self, i: usize) -> Option<Time> {
        let core = self.nodes[i].core.as_ref()?.poll_timeout();
        Some(match &self.nodes[i].host {
            Some(host) => core.min(host.poll_timeout()),
            None => core,
        })
    }

    fn on_event(&mut self, i: usize, ev: ClusterEvent) {
        match ev {
            ClusterEvent::Member(m) => {
                let (tag, subject) = match &m {
                    MembershipEvent::Joined(n) => (30, self.index_of(n)),
                    MembershipEvent::Updated(n) => (31, self.index_of(n)),
                    MembershipEvent::Suspected(n) => (32, self.index_of(n)),
                    MembershipEvent::Recovered(n) => (33, self.index_of(n)),
                    MembershipEvent::Died(n) => (34, self.index_of(n)),
                    MembershipEvent::Left(n) => (35, self.index_of(n)),
                    MembershipEvent::Refuted { incarnation } => (36, *incarnation as usize),
                };
                self.record(i, tag, subject as u64, 0);
                match m {
                    MembershipEvent::Suspected(n) => {
                        self.report.suspicions += 1;
                        let s = self.index_of(&n);
                        if s < self.nodes.len() && self.nodes[s].core.is_some() {
                            self.report.false_suspicions += 1;
                        }
                    }
                    MembershipEvent::Died(n) => {
                        let s = self.index_of(&n);
                        if s < self.nodes.len() && self.nodes[s].core.is_some() {
                            self.report.running_declared_dead += 1;
                        } else if let Some(since) = self.detecting.get(&s)
                            && self.first_detected.insert(s)
                        {
                            self.report
                                .first_detections_ms
                                .push((self.now - since) / 1_000);
                        }
                    }
                    _ => {}
                }
            }
            ClusterEvent::Registry(_) => self.record(i, 40, 0, 0),
            ClusterEvent::Delivery(DeliveryEvent::Unreachable { frames, .. }) => {
                self.report.tells_unreachable += frames.len() as u64;
            }
            ClusterEvent::Answer(answer) => self.on_answer(i, answer),
            ClusterEvent::Delivery(_) | ClusterEvent::PublishAllowlist => {}
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
                        .map(|m| {
                            format!(
                                "{}:{:?}@{}",
                                self.index_of(&m.id()),
                                m.state,
                                m.incarnation()
                            )
                        })
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
        for core in self.nodes.iter().filter_map(|n| n.core.as_ref()) {
            let stats = core.delivery().stats();
            self.report.links_dropped_idle += stats.links_dropped_idle;
            self.report.records_forgotten += stats.records_forgotten;
        }
        self.report.names_held = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref())
            .map(|core| core.registry().names().count() as u64)
            .sum();
        self.report.trace_hash = self.trace.finalize().to_hex().to_string();
        self.report
    }
}
