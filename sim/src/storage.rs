//! Storage under the simulator: nodes run the real `plexus-storage` cores (the
//! repair core of each shard, the put plan of each client put, the key-value
//! replica) over a seeded network that delays and drops messages and partitions
//! the nodes, with crashes and restarts and a faulty disk. The same seed replays
//! exactly.
//!
//! The driver here does what the daemon's storage service does with bytes (hash on
//! store, on send and on read; remove a copy that does not hash and tell the repair
//! core), against a simulated disk and network. Failure detection is an oracle:
//! every `detect_ms` each node learns which nodes are up and reachable from it.
//!
//! # Faults
//!
//! * Crashes and restarts: a restarted node keeps its disk and loses everything
//!   else (its repair core and key-value replica are rebuilt from disk).
//! * Disk faults on a faulty node's writes and at rest: a **lost** write (reported
//!   done, never written), a **torn** write (cut short), a **corrupted** write or a
//!   bit flipped at rest.
//! * Partitions: the nodes split in two for a while, then heal.
//!
//! Only `faulty` nodes (at most `r - 1`) crash or have disk faults; partitions and
//! message loss hit everyone.
//!
//! # Checkers (each a [`StorageReport::violations`] entry)
//!
//! * `acked-lost`: after the faults stop and repair settles, an acknowledged chunk
//!   has no intact copy.
//! * `under-replicated`: an acknowledged chunk has fewer than `min(r, up nodes)`
//!   intact copies after settling.
//! * `over-replicated`: an acknowledged chunk has more than `r` intact copies
//!   after settling (a stray copy on a node that came back was not handed off).
//! * `corrupt-read`: a read returned bytes other than the chunk's (corruption not
//!   detected).
//! * `kv-diverged`: after settling, two up replicas hold different maps, or a key's
//!   value is not its last write's.
//! * `invariant`: a core's `check_invariants` failed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use plexus_actors::rng::DetRng;
use plexus_actors::{NodeId, Time};
use plexus_storage::ChunkId;
use plexus_storage::kv::{Entry, Kv, KvConfig, Stamp};
use plexus_storage::placement::{self, Candidate};
use plexus_storage::put::{Answer, PutOutcome, PutPlan};
use plexus_storage::repair::{Action, Read, Repair, RepairConfig};
use plexus_storage::wire::{Bytes, StorageWire, StoreOutcome};
use plexus_vocab::identity::NodeKey;
use serde_bytes::ByteBuf;

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct StorageRun {
    /// Nodes.
    pub nodes: usize,
    /// Copies per chunk.
    pub replicas: u8,
    /// Chunks put over the run.
    pub chunks: usize,
    /// Key-value writes (puts and deletes) over the run.
    pub kv_writes: usize,
    /// How long faults and client traffic last, ms; then the run settles.
    pub duration_ms: u64,
    /// How long the settling phase lasts, ms (no faults, no traffic).
    pub settle_ms: u64,
    /// Nodes that crash and have disk faults (clamped to `r - 1`).
    pub faulty: usize,
    /// Crashes per faulty node per second, ppm.
    pub crash_ppm: u32,
    /// How long a crashed node stays down, ms.
    pub down_ms: u64,
    /// A faulty node's write or stored chunk going bad, per write and per second
    /// at rest, ppm.
    pub disk_fault_ppm: u32,
    /// Per-message drop probability, ppm.
    pub drop_ppm: u32,
    /// Largest one-way delay, ms.
    pub delay_ms_max: u64,
    /// Partition the nodes in two now and then.
    pub partitions: bool,
    /// How often nodes learn who is up, ms.
    pub detect_ms: u64,
    /// Let more than `r - 1` nodes be faulty: breaks the assumption the
    /// guarantees rest on, to show the checkers catch the loss.
    pub unclamped: bool,
}

impl Default for StorageRun {
    fn default() -> Self {
        StorageRun {
            nodes: 6,
            replicas: 3,
            chunks: 60,
            kv_writes: 80,
            duration_ms: 60_000,
            settle_ms: 120_000,
            faulty: 2,
            crash_ppm: 30_000,
            down_ms: 5_000,
            disk_fault_ppm: 50_000,
            drop_ppm: 10_000,
            delay_ms_max: 40,
            partitions: true,
            detect_ms: 2_000,
            unclamped: false,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct StorageReport {
    /// Safety violations; empty on a correct run.
    pub violations: Vec<String>,
    /// Chunk puts acknowledged.
    pub acked: usize,
    /// Chunk puts that failed (too few reachable nodes).
    pub failed_puts: usize,
    /// Copies repaired (fetched and stored by a repair).
    pub repaired: u64,
    /// Bad copies found (by a read, a fetch or the scrub).
    pub corrupt_detected: u64,
    /// Disk faults injected: lost, torn, corrupted writes, rot at rest.
    pub disk_faults: [u64; 4],
    /// Crashes.
    pub crashes: u64,
    /// Reads that returned a chunk (always verified).
    pub reads: u64,
    /// Key-value writes made.
    pub kv_writes: u64,
    /// Live keys after settling.
    pub kv_keys: usize,
    /// Messages delivered.
    pub delivered: u64,
    /// Stray copies handed off (dropped once their placement confirmed them).
    pub handed_off: u64,
    /// A digest of the run, to prove a replay.
    pub trace: String,
}

impl StorageReport {
    /// Whether the run kept every guarantee.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

struct SimNode {
    id: NodeId,
    key: NodeKey,
    up: bool,
    faulty: bool,
    repair: Repair,
    kv: Kv,
    /// The disk: chunk → (r, bytes as stored, possibly damaged).
    disk: BTreeMap<ChunkId, (u8, Vec<u8>)>,
    kv_disk: BTreeMap<String, Entry>,
    /// Repair fetches in flight: req → chunk, r.
    fetches: BTreeMap<u64, (ChunkId, u8)>,
    /// Hand-off confirmations in flight: req → the node asked, the chunks.
    confirms: BTreeMap<u64, (NodeId, Vec<ChunkId>)>,
}

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        from: usize,
        msg: Box<StorageWire>,
    },
    Tick,
    Put(usize),
    KvWrite(usize),
    Read,
    Crash(usize),
    Restart(usize),
    Partition,
    Heal,
    Detect,
}

struct Sim<'a> {
    p: &'a StorageRun,
    rng: DetRng,
    now: u64,
    nodes: Vec<SimNode>,
    ids: Vec<NodeId>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    side: Vec<bool>,
    partitioned: bool,
    truth: BTreeMap<ChunkId, Vec<u8>>,
    acked: BTreeSet<ChunkId>,
    /// Client puts in flight: put id → (gateway, plan, chunk).
    puts: BTreeMap<u64, (usize, PutPlan, ChunkId)>,
    /// Store requests in flight: (gateway, req) → put id, target, deadline.
    stores: BTreeMap<(usize, u64), (u64, NodeId, u64)>,
    next_req: u64,
    kv_model: BTreeMap<String, (Stamp, Option<Vec<u8>>)>,
    faults_on: bool,
    report: StorageReport,
    trace: blake3::Hasher,
}

impl Sim<'_> {
    fn push(&mut self, at: u64, ev: Event) {
        self.seq += 1;
        self.events.insert(self.seq, ev);
        self.queue.push(Reverse((at, self.seq)));
    }

    fn t(&self) -> Time {
        Time::from_millis(1_000_000 + self.now)
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        !self.partitioned || self.side[a] == self.side[b]
    }

    fn send(&mut self, from: usize, to: usize, msg: StorageWire) {
        if self.rng.chance(f64::from(self.p.drop_ppm) / 1e6) {
            return;
        }
        let at = self.now + 1 + self.rng.below(self.p.delay_ms_max.max(1));
        self.push(
            at,
            Event::Deliver {
                to,
                from,
                msg: Box::new(msg),
            },
        );
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.ids.iter().position(|n| n == id)
    }

    fn fault(&mut self, node: usize) -> bool {
        self.faults_on
            && self.nodes[node].faulty
            && self.rng.chance(f64::from(self.p.disk_fault_ppm) / 1e6)
    }

    /// A write to `node`'s disk, with a faulty disk's faults.
    fn write(&mut self, node: usize, chunk: ChunkId, r: u8, bytes: &[u8]) {
        let mut stored = bytes.to_vec();
        if self.fault(node) {
            match self.rng.below(3) {
                0 => {
                    // Lost: reported done, never written.
                    self.report.disk_faults[0] += 1;
                    self.nodes[node].repair.stored(chunk, r);
                    return;
                }
                1 => {
                    self.report.disk_faults[1] += 1;
                    stored.truncate(stored.len() / 2);
                }
                _ => {
                    self.report.disk_faults[2] += 1;
                    let i = self.rng.index(stored.len().max(1));
                    if let Some(b) = stored.get_mut(i) {
                        *b ^= 0x20;
                    }
                }
            }
        }
        self.nodes[node].disk.insert(chunk, (r, stored));
        self.nodes[node].repair.stored(chunk, r);
    }

    /// `node`'s intact copy of `chunk`; a bad one is removed (the repair core
    /// decides, as in the daemon).
    fn read(&mut self, node: usize, chunk: &ChunkId) -> Option<Vec<u8>> {
        let n = &mut self.nodes[node];
        let bytes = n.disk.get(chunk).map(|(_, b)| b.clone());
        match n.repair.check_read(chunk, bytes.as_deref()) {
            Read::Intact => bytes,
            Read::NotHeld => None,
            Read::Lost => {
                self.report.corrupt_detected += 1;
                n.disk.remove(chunk);
                None
            }
        }
    }

    fn store_here(&mut self, node: usize, chunk: ChunkId, r: u8, bytes: &[u8]) -> StoreOutcome {
        if !chunk.matches(bytes) {
            return StoreOutcome::Invalid("hash".into());
        }
        if !self.nodes[node].repair.holds(&chunk) {
            self.write(node, chunk, r, bytes);
        }
        StoreOutcome::Stored
    }

    fn handle(&mut self, to: usize, from: usize, msg: StorageWire) {
        let from_id = self.ids[from];
        let t = self.t();
        match msg {
            StorageWire::Store {
                req,
                chunk,
                replicas,
                bytes,
            } => {
                let outcome = self.store_here(to, chunk, replicas, &bytes);
                self.send(
                    to,
                    from,
                    StorageWire::Stored {
                        req,
                        chunk,
                        outcome,
                    },
                );
            }
            StorageWire::Stored { req, outcome, .. } => {
                let Some((put, _, _)) = self.stores.remove(&(to, req)) else {
                    return;
                };
                let answer = Answer::from(outcome);
                if let Some((_, plan, _)) = self.puts.get_mut(&put) {
                    plan.handle(from_id, answer);
                }
                self.advance_put(put);
            }
            StorageWire::Fetch { req, chunk } => {
                let bytes = self.read(to, &chunk).map(Bytes::from);
                self.send(to, from, StorageWire::Chunk { req, chunk, bytes });
            }
            StorageWire::Chunk { req, chunk, bytes } => {
                let Some((want, r)) = self.nodes[to].fetches.remove(&req) else {
                    return;
                };
                match bytes.filter(|b| want == chunk && chunk.matches(b)) {
                    Some(b) => {
                        self.write(to, chunk, r, &b);
                        self.report.repaired += 1;
                    }
                    None => self.nodes[to].repair.fetch_failed(&want),
                }
            }
            StorageWire::Offer { chunks } => {
                self.nodes[to].repair.handle_offer(t, from_id, &chunks)
            }
            StorageWire::Kv(m) => {
                let _ = self.nodes[to].kv.handle(t, from_id, m);
            }
            StorageWire::Confirm { req, chunks } => {
                let held = self.nodes[to].repair.answer_confirm(t, &chunks);
                self.send(to, from, StorageWire::Holding { req, held });
            }
            StorageWire::Holding { req, held } => {
                let Some((asked, chunks)) = self.nodes[to].confirms.remove(&req) else {
                    return;
                };
                if asked != from_id {
                    return;
                }
                let answers: Vec<(ChunkId, bool)> = chunks.into_iter().zip(held).collect();
                self.nodes[to].repair.handle_holding(from_id, &answers);
            }
            _ => {}
        }
    }

    /// Carries `node`'s cores' outputs out.
    fn drain(&mut self, node: usize) {
        while let Some(a) = self.nodes[node].repair.poll_action() {
            match a {
                Action::Offer { to, chunks } => {
                    if let Some(j) = self.index(&to) {
                        self.send(node, j, StorageWire::Offer { chunks });
                    }
                }
                Action::Fetch {
                    from,
                    chunk,
                    replicas,
                } => {
                    self.next_req += 1;
                    let req = self.next_req;
                    self.nodes[node].fetches.insert(req, (chunk, replicas));
                    match self.index(&from) {
                        Some(j) => self.send(node, j, StorageWire::Fetch { req, chunk }),
                        None => self.nodes[node].repair.fetch_failed(&chunk),
                    }
                }
                Action::Confirm { to, chunks } => {
                    self.next_req += 1;
                    let req = self.next_req;
                    if let Some(j) = self.index(&to) {
                        self.nodes[node].confirms.insert(req, (to, chunks.clone()));
                        self.send(node, j, StorageWire::Confirm { req, chunks });
                    }
                }
                Action::Drop { chunk } => {
                    self.nodes[node].disk.remove(&chunk);
                    self.report.handed_off += 1;
                }
            }
        }
        while let Some((to, m)) = self.nodes[node].kv.poll_transmit() {
            if let Some(j) = self.index(&to) {
                self.send(node, j, StorageWire::Kv(m));
            }
        }
        while let Some(c) = self.nodes[node].kv.poll_change() {
            if let Some(e) = self.nodes[node].kv.entry(&c.key).cloned() {
                self.nodes[node].kv_disk.insert(c.key, e);
            }
        }
        while let Some(k) = self.nodes[node].kv.poll_collected() {
            self.nodes[node].kv_disk.remove(&k);
        }
        if let Err(e) = self.nodes[node].repair.check_invariants() {
            self.report
                .violations
                .push(format!("invariant: repair: {e}"));
        }
        if let Err(e) = self.nodes[node].kv.check_invariants() {
            self.report.violations.push(format!("invariant: kv: {e}"));
        }
    }

    fn advance_put(&mut self, put: u64) {
        let Some((gateway, plan, chunk)) = self.puts.get_mut(&put) else {
            return;
        };
        let (gateway, chunk) = (*gateway, *chunk);
        let targets = plan.poll_targets();
        let r = self.p.replicas;
        let bytes = self.truth.get(&chunk).cloned().unwrap_or_default();
        for t in targets {
            let Some(j) = self.index(&t) else { continue };
            if j == gateway {
                let outcome = self.store_here(gateway, chunk, r, &bytes);
                if let Some((_, plan, _)) = self.puts.get_mut(&put) {
                    plan.handle(
                        t,
                        if outcome == StoreOutcome::Stored {
                            Answer::Stored
                        } else {
                            Answer::Refused("x".into())
                        },
                    );
                }
            } else {
                self.next_req += 1;
                let req = self.next_req;
                self.stores
                    .insert((gateway, req), (put, t, self.now + 5_000));
                self.send(
                    gateway,
                    j,
                    StorageWire::Store {
                        req,
                        chunk,
                        replicas: r,
                        bytes: Bytes::from(bytes.clone()),
                    },
                );
            }
        }
        let Some((_, plan, _)) = self.puts.get(&put) else {
            return;
        };
        match plan.outcome() {
            Some(PutOutcome::Stored(_)) => {
                self.acked.insert(chunk);
                self.report.acked += 1;
                self.puts.remove(&put);
            }
            Some(PutOutcome::Failed { .. }) => {
                self.report.failed_puts += 1;
                self.puts.remove(&put);
            }
            None => {}
        }
    }

    fn detect(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                continue;
            }
            let live: Vec<Candidate> = (0..self.nodes.len())
                .filter(|j| self.nodes[*j].up && self.reachable(i, *j))
                .map(|j| Candidate::plain(self.ids[j]))
                .collect();
            self.nodes[i].repair.set_live(live);
        }
    }

    fn tick(&mut self) {
        let t = self.t();
        // Stores not answered in time count as refusals.
        let late: Vec<(usize, u64)> = self
            .stores
            .iter()
            .filter(|(_, (_, _, deadline))| *deadline <= self.now)
            .map(|(k, _)| *k)
            .collect();
        for k in late {
            if let Some((put, target, _)) = self.stores.remove(&k) {
                if let Some((_, plan, _)) = self.puts.get_mut(&put) {
                    plan.handle(target, Answer::Refused("no answer in time".into()));
                }
                self.advance_put(put);
            }
        }
        let kv_round = self.now.is_multiple_of(1_000);
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                continue;
            }
            self.nodes[i].repair.tick(t);
            if kv_round {
                let mut rng = DetRng::split(self.rng.next_u64(), i as u64);
                self.nodes[i].kv.tick(t, &mut rng);
            }
            // Scrub two chunks per tick, round robin.
            for _ in 0..2 {
                if let Some(c) = self.nodes[i].repair.next_to_scrub() {
                    let _ = self.read(i, &c);
                }
            }
            // Rot at rest on a faulty disk.
            if self.fault(i) && self.rng.chance(0.004) && !self.nodes[i].disk.is_empty() {
                let k = self.rng.index(self.nodes[i].disk.len());
                if let Some((_, (_, b))) = self.nodes[i].disk.iter_mut().nth(k)
                    && !b.is_empty()
                {
                    b[0] ^= 1;
                    self.report.disk_faults[3] += 1;
                }
            }
            self.drain(i);
        }
    }

    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.up = true;
        n.repair = Repair::new(n.id, repair_config());
        n.fetches.clear();
        n.confirms.clear();
        for (c, (r, _)) in &n.disk {
            n.repair.stored(*c, *r);
        }
        n.kv = Kv::new(NodeKey::from_seed(n.key.seed()), KvConfig::default());
        n.kv.set_members(self.ids.clone());
        for e in n.kv_disk.values() {
            let _ = n.kv.restore(e.clone());
        }
    }
}

fn repair_config() -> RepairConfig {
    RepairConfig {
        scan_every: Duration::from_secs(10),
        fetch_timeout: Duration::from_secs(5),
        full_for: Duration::from_secs(10),
        promise_for: Duration::from_secs(20),
        ..RepairConfig::default()
    }
}

/// Runs one seeded simulation.
pub fn run(p: &StorageRun, seed: u64) -> StorageReport {
    let mut rng = DetRng::split(seed, 0x5704);
    let keys: Vec<NodeKey> = (0..p.nodes)
        .map(|_| NodeKey::from_seed(rng.bytes32()))
        .collect();
    let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
    let faulty = if p.unclamped {
        p.faulty.min(p.nodes)
    } else {
        p.faulty.min(usize::from(p.replicas.saturating_sub(1)))
    };
    let mut order: Vec<usize> = (0..p.nodes).collect();
    rng.shuffle(&mut order);
    let faulty_set: BTreeSet<usize> = order.into_iter().take(faulty).collect();
    let nodes = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut kv = Kv::new(NodeKey::from_seed(k.seed()), KvConfig::default());
            kv.set_members(ids.clone());
            SimNode {
                id: ids[i],
                key: NodeKey::from_seed(k.seed()),
                up: true,
                faulty: faulty_set.contains(&i),
                repair: Repair::new(ids[i], repair_config()),
                kv,
                disk: BTreeMap::new(),
                kv_disk: BTreeMap::new(),
                fetches: BTreeMap::new(),
                confirms: BTreeMap::new(),
            }
        })
        .collect();
    let mut sim = Sim {
        p,
        rng,
        now: 0,
        nodes,
        ids,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        seq: 0,
        side: vec![false; p.nodes],
        partitioned: false,
        truth: BTreeMap::new(),
        acked: BTreeSet::new(),
        puts: BTreeMap::new(),
        stores: BTreeMap::new(),
        next_req: 0,
        kv_model: BTreeMap::new(),
        faults_on: true,
        report: StorageReport::default(),
        trace: blake3::Hasher::new(),
    };
    sim.detect();
    let end = p.duration_ms + p.settle_ms;
    let mut at = 0;
    while at <= end {
        sim.push(at, Event::Tick);
        if at.is_multiple_of(p.detect_ms.max(1)) {
            sim.push(at, Event::Detect);
        }
        at += 250;
    }
    for _ in 0..p.chunks {
        let when = 1 + sim.rng.below(p.duration_ms.max(2));
        let who = sim.rng.index(p.nodes);
        sim.push(when, Event::Put(who));
    }
    for _ in 0..p.kv_writes {
        let when = 1 + sim.rng.below(p.duration_ms.max(2));
        let who = sim.rng.index(p.nodes);
        sim.push(when, Event::KvWrite(who));
    }
    for _ in 0..(p.chunks / 2) {
        let when = 1 + sim.rng.below(p.duration_ms.max(2));
        sim.push(when, Event::Read);
    }
    // Crashes: per faulty node, a Poisson-ish draw per second.
    for &i in &faulty_set {
        let mut s = 0;
        while s < p.duration_ms {
            if sim.rng.chance(f64::from(p.crash_ppm) / 1e6) {
                sim.push(s, Event::Crash(i));
                sim.push((s + p.down_ms).min(p.duration_ms), Event::Restart(i));
                s += p.down_ms;
            }
            s += 1_000;
        }
    }
    if p.partitions {
        let mut s = 5_000;
        while s + 10_000 < p.duration_ms {
            sim.push(s, Event::Partition);
            let heal = s + 3_000 + sim.rng.below(5_000);
            sim.push(heal, Event::Heal);
            s += 15_000;
        }
    }

    while let Some(Reverse((time, seq))) = sim.queue.pop() {
        sim.now = time;
        if sim.now >= p.duration_ms && sim.faults_on {
            // Faults and traffic stop; everyone comes back and is reachable.
            sim.faults_on = false;
            sim.partitioned = false;
            for i in 0..p.nodes {
                if !sim.nodes[i].up {
                    sim.restart(i);
                }
            }
        }
        let Some(ev) = sim.events.remove(&seq) else {
            continue;
        };
        match ev {
            Event::Deliver { to, from, msg } => {
                if !sim.nodes[to].up || !sim.nodes[from].up || !sim.reachable(from, to) {
                    continue;
                }
                sim.report.delivered += 1;
                sim.trace.update(&time.to_be_bytes());
                sim.trace.update(&[to as u8, from as u8]);
                sim.handle(to, from, *msg);
                sim.drain(to);
                sim.drain(from);
            }
            Event::Tick => sim.tick(),
            Event::Detect => sim.detect(),
            Event::Put(who) => {
                if !sim.nodes[who].up || !sim.faults_on {
                    continue;
                }
                let len = 64 + sim.rng.index(192);
                let bytes: Vec<u8> = (0..len).map(|_| sim.rng.next_u64() as u8).collect();
                let chunk = ChunkId::of(&bytes);
                sim.truth.insert(chunk, bytes);
                let order = placement::order(&chunk, &sim.nodes[who].repair.candidates(sim.t()));
                sim.next_req += 1;
                let put = sim.next_req;
                sim.puts.insert(
                    put,
                    (who, PutPlan::new(order, p.replicas, p.replicas), chunk),
                );
                sim.advance_put(put);
                sim.drain(who);
            }
            Event::KvWrite(who) => {
                if !sim.nodes[who].up || !sim.faults_on {
                    continue;
                }
                let key = format!("k{}", sim.rng.below(12));
                let t = sim.t();
                let del = sim.rng.chance(0.3);
                let value = vec![who as u8, sim.rng.next_u64() as u8];
                let written = if del {
                    sim.nodes[who].kv.delete(t, &key)
                } else {
                    sim.nodes[who].kv.put(t, &key, value)
                };
                if let Ok(e) = written {
                    sim.report.kv_writes += 1;
                    let s = e.stamp();
                    if sim.kv_model.get(&key).is_none_or(|(old, _)| *old < s) {
                        sim.kv_model
                            .insert(key, (s, e.value.map(ByteBuf::into_vec)));
                    }
                }
                sim.drain(who);
            }
            Event::Read => {
                let acked: Vec<ChunkId> = sim.acked.iter().copied().collect();
                if acked.is_empty() {
                    continue;
                }
                let chunk = acked[sim.rng.index(acked.len())];
                let holders: Vec<usize> = (0..p.nodes).filter(|i| sim.nodes[*i].up).collect();
                for i in holders {
                    if let Some(b) = sim.read(i, &chunk) {
                        sim.report.reads += 1;
                        if sim.truth.get(&chunk) != Some(&b) {
                            sim.report
                                .violations
                                .push(format!("corrupt-read: {chunk:?} from node {i}"));
                        }
                        break;
                    }
                }
                for i in 0..p.nodes {
                    if sim.nodes[i].up {
                        sim.drain(i);
                    }
                }
            }
            Event::Crash(i) => {
                if sim.faults_on && sim.nodes[i].up {
                    sim.nodes[i].up = false;
                    sim.report.crashes += 1;
                    // The puts it was gateway for die with it, unacknowledged.
                    let lost: Vec<u64> = sim
                        .puts
                        .iter()
                        .filter(|(_, (g, _, _))| *g == i)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in lost {
                        sim.puts.remove(&id);
                        sim.report.failed_puts += 1;
                    }
                    sim.stores.retain(|(g, _), _| *g != i);
                }
            }
            Event::Restart(i) => {
                if !sim.nodes[i].up {
                    sim.restart(i);
                }
            }
            Event::Partition => {
                if sim.faults_on {
                    for s in sim.side.iter_mut() {
                        *s = false;
                    }
                    let k = 1 + sim.rng.index(p.nodes.saturating_sub(1).max(1));
                    let mut order: Vec<usize> = (0..p.nodes).collect();
                    sim.rng.shuffle(&mut order);
                    for &i in order.iter().take(k) {
                        sim.side[i] = true;
                    }
                    sim.partitioned = true;
                }
            }
            Event::Heal => sim.partitioned = false,
        }
    }

    // Checkers, after settling.
    let up: Vec<usize> = (0..p.nodes).filter(|i| sim.nodes[*i].up).collect();
    let want = usize::from(p.replicas).min(up.len());
    let acked: Vec<ChunkId> = sim.acked.iter().copied().collect();
    for c in &acked {
        let truth = sim.truth.get(c).cloned().unwrap_or_default();
        let intact = up
            .iter()
            .filter(|i| sim.nodes[**i].disk.get(c).is_some_and(|(_, b)| *b == truth))
            .count();
        if intact == 0 {
            sim.report.violations.push(format!("acked-lost: {c:?}"));
        } else if intact < want {
            sim.report
                .violations
                .push(format!("under-replicated: {c:?} has {intact} of {want}"));
        } else if intact > usize::from(p.replicas) {
            sim.report.violations.push(format!(
                "over-replicated: {c:?} has {intact} of {}",
                p.replicas
            ));
        }
    }
    let roots: BTreeSet<[u8; 32]> = up.iter().map(|i| sim.nodes[*i].kv.root()).collect();
    if roots.len() > 1 {
        sim.report
            .violations
            .push(format!("kv-diverged: {} distinct maps", roots.len()));
    }
    for (key, (_, value)) in &sim.kv_model {
        for &i in &up {
            let got = sim.nodes[i].kv.get(key).map(<[u8]>::to_vec);
            if got != *value {
                sim.report.violations.push(format!(
                    "kv-diverged: node {i} has {key} = {got:?}, last write {value:?}"
                ));
            }
        }
    }
    sim.report.kv_keys = up.first().map_or(0, |i| sim.nodes[*i].kv.len());
    for c in &acked {
        sim.trace.update(&c.0);
    }
    for i in &up {
        sim.trace.update(&sim.nodes[*i].kv.root());
    }
    sim.report.trace = sim.trace.finalize().to_hex().to_string();
    sim.report
}
