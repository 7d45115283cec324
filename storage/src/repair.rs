//! What one storage shard does to keep every chunk at its replication factor.
//!
//! Each chunk carries its replication factor `r`. A shard knows which chunks it
//! holds intact, which live nodes may hold chunks (and their zones), and which
//! nodes recently said they are full. From that alone it decides:
//!
//! * **Offers.** On a membership change, and every `scan_every` besides, it
//!   offers each chunk it holds to the other nodes of that chunk's placement
//!   ([`crate::placement`]) among live, non-full nodes. An offer is a list of ids
//!   (at most [`RepairConfig::offer_ids_max`] per message).
//! * **Fetches.** A shard offered a chunk it should hold but does not fetches it
//!   from the offerer, one fetch per chunk at a time; a fetch that fails or times
//!   out is dropped, and the next offer (from any holder) starts it again.
//! * **Lost chunks.** A chunk found corrupt or missing on this shard's disk
//!   ([`Repair::lost`]) is fetched back from the other holders in placement
//!   order, one after another, until one delivers.
//!
//! So when a holder dies, each survivor offers its chunks to the node that took
//! the dead one's place, which fetches from the first offer: the replica count
//! returns to `r` with no coordinator. Bandwidth is bounded by
//! [`RepairConfig::fetches_max`] fetches in flight per shard (each at most one
//! chunk), and queued wants by [`RepairConfig::wants_max`] (beyond it, offers are
//! dropped: the next scan offers them again).
//!
//! * **Hand-off.** A chunk held here whose placement no longer includes this
//!   shard (a node came back, or joined, after the repair made copies elsewhere)
//!   is a stray. The scan offers it to the placement like any other chunk, and
//!   asks each placement node whether it holds it ([`Action::Confirm`]); once
//!   every one of the `r` has said yes ([`Repair::handle_holding`]), the stray
//!   copy is dropped ([`Action::Drop`]). A node says yes
//!   ([`Repair::answer_confirm`]) only for a chunk it holds intact *and* its own
//!   view places on it, and then promises to keep it for
//!   [`RepairConfig::promise_for`] (two scans): it drops no such chunk by
//!   hand-off before then, whatever its view becomes; promises live in memory,
//!   so a shard hands nothing off for `promise_for` after it starts (a restart
//!   forgets what it promised). Confirmations older than a
//!   scan are discarded, so when a stray drops, the `r` nodes that confirmed
//!   still hold the chunk under their promise: every hand-off leaves `r` other
//!   copies at that instant, whatever the nodes' views of membership disagree
//!   on, and only crashes or disk faults can take copies below that. A "no", or
//!   no answer before the next scan, keeps the copy; at most
//!   [`RepairConfig::confirms_max`] chunks are being confirmed at once.
//!
//! The core never hears a chunk's bytes: the driver verifies every chunk against
//! its id before it reports it stored.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use plexus_actors::{NodeId, Time};

use crate::ChunkId;
use crate::placement::{self, Candidate};

/// The repair's tuning.
#[derive(Clone, Debug)]
pub struct RepairConfig {
    /// Fetches in flight at once.
    pub fetches_max: usize,
    /// Wanted chunks queued behind them.
    pub wants_max: usize,
    /// How long a fetch may take.
    pub fetch_timeout: Duration,
    /// Ids per offer message.
    pub offer_ids_max: usize,
    /// How often every held chunk is offered again, changes or not.
    pub scan_every: Duration,
    /// How soon after a membership change the chunks are offered once more (other
    /// nodes learn of the change at other times, and refuse offers for chunks
    /// their own view does not place on them yet).
    pub rescan_after: Duration,
    /// How long a node that said it is full is passed over.
    pub full_for: Duration,
    /// Stray chunks being confirmed for hand-off at once (the rest wait for a
    /// later scan).
    pub confirms_max: usize,
    /// How long a node that confirmed holding a chunk keeps it (at least two
    /// of the longest scan interval, `scan_every`).
    pub promise_for: Duration,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            fetches_max: 8,
            wants_max: 65_536,
            fetch_timeout: Duration::from_secs(30),
            offer_ids_max: 4_096,
            scan_every: Duration::from_secs(30),
            rescan_after: Duration::from_secs(3),
            full_for: Duration::from_secs(60),
            confirms_max: 4_096,
            promise_for: Duration::from_secs(60),
        }
    }
}

/// What the shard's driver is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Tell `to` these chunks (with their `r`) are here, for it to hold.
    Offer {
        /// The node the chunks belong on.
        to: NodeId,
        /// Chunk ids and their replication factors.
        chunks: Vec<(ChunkId, u8)>,
    },
    /// Fetch `chunk` from `from`, verify it, store it, and report
    /// [`Repair::stored`] or [`Repair::fetch_failed`].
    Fetch {
        /// A node that holds it.
        from: NodeId,
        /// The chunk.
        chunk: ChunkId,
        /// Its replication factor, to store with it.
        replicas: u8,
    },
    /// Ask `to` whether it holds these chunks (stray here, placed on `to`);
    /// report the answer with [`Repair::handle_holding`].
    Confirm {
        /// A node of the chunks' placement.
        to: NodeId,
        /// The chunks (at most `offer_ids_max`).
        chunks: Vec<ChunkId>,
    },
    /// Remove this shard's copy of `chunk`: every node of its placement holds
    /// it. The core has already forgotten it.
    Drop {
        /// The chunk.
        chunk: ChunkId,
    },
}

/// What a shard's read of its own copy found ([`Repair::check_read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// The copy hashes to its id.
    Intact,
    /// Not held here.
    NotHeld,
    /// Held, but missing or corrupt: remove it; it is being fetched back.
    Lost,
}

/// One shard's repair state.
#[derive(Debug)]
pub struct Repair {
    me: NodeId,
    config: RepairConfig,
    live: Vec<Candidate>,
    held: BTreeMap<ChunkId, u8>,
    /// Chunks lost here: `r` and how many sources were tried.
    lost: BTreeMap<ChunkId, (u8, usize)>,
    full: BTreeMap<NodeId, Time>,
    fetching: BTreeMap<ChunkId, (NodeId, Time)>,
    wants: VecDeque<(ChunkId, u8, NodeId)>,
    wanted: BTreeSet<ChunkId>,
    scan_due: bool,
    next_scan: Time,
    scrub_after: Option<ChunkId>,
    out: VecDeque<Action>,
    dropped_offers: u64,
    /// Stray chunks being confirmed: the placement nodes yet to say they hold
    /// it. Cleared at each scan.
    confirming: BTreeMap<ChunkId, BTreeSet<NodeId>>,
    /// Chunks this shard told a stray it holds, and until when it keeps them.
    promised: BTreeMap<ChunkId, Time>,
    /// No hand-off before this (set at the first tick: a restarted shard may
    /// have made promises it no longer remembers).
    hand_off_from: Option<Time>,
    handed_off: u64,
}

impl Repair {
    /// The repair of shard `me`.
    pub fn new(me: NodeId, config: RepairConfig) -> Self {
        Repair {
            me,
            config,
            live: Vec::new(),
            held: BTreeMap::new(),
            lost: BTreeMap::new(),
            full: BTreeMap::new(),
            fetching: BTreeMap::new(),
            wants: VecDeque::new(),
            wanted: BTreeSet::new(),
            scan_due: true,
            next_scan: Time::ZERO,
            scrub_after: None,
            out: VecDeque::new(),
            dropped_offers: 0,
            confirming: BTreeMap::new(),
            promised: BTreeMap::new(),
            hand_off_from: None,
            handed_off: 0,
        }
    }

    // ----- getters -----

    /// Chunks held intact here.
    pub fn held(&self) -> &BTreeMap<ChunkId, u8> {
        &self.held
    }

    /// Whether this shard holds `chunk` intact.
    pub fn holds(&self, chunk: &ChunkId) -> bool {
        self.held.contains_key(chunk)
    }

    /// Chunks lost here and not yet fetched back.
    pub fn lost_count(&self) -> usize {
        self.lost.len()
    }

    /// Fetches in flight and queued.
    pub fn pending(&self) -> (usize, usize) {
        (self.fetching.len(), self.wants.len())
    }

    /// Offers dropped at the wants bound.
    pub fn dropped_offers(&self) -> u64 {
        self.dropped_offers
    }

    /// Stray copies dropped after their placement confirmed them.
    pub fn handed_off(&self) -> u64 {
        self.handed_off
    }

    /// The candidates a placement is computed over now: live and not full.
    pub fn candidates(&self, now: Time) -> Vec<Candidate> {
        self.live
            .iter()
            .filter(|c| c.node == self.me || self.full.get(&c.node).is_none_or(|t| *t <= now))
            .cloned()
            .collect()
    }

    /// Where `chunk` belongs now.
    pub fn placement(&self, now: Time, chunk: &ChunkId, r: u8) -> Vec<NodeId> {
        placement::holders(chunk, &self.candidates(now), usize::from(r))
    }

    // ----- inputs -----

    /// The live members that may hold chunks (this node included, if it stores).
    pub fn set_live(&mut self, mut live: Vec<Candidate>) {
        live.sort_by_key(|c| c.node);
        live.dedup_by(|a, b| a.node == b.node);
        if live != self.live {
            self.live = live;
            self.scan_due = true;
        }
    }

    /// `chunk` is now stored here intact (a put, a fetch, or found at start).
    pub fn stored(&mut self, chunk: ChunkId, replicas: u8) {
        self.held.insert(chunk, replicas.max(1));
        self.lost.remove(&chunk);
        self.fetching.remove(&chunk);
        self.wanted.remove(&chunk);
    }

    /// `chunk` was removed here on purpose (garbage collection).
    pub fn removed(&mut self, chunk: &ChunkId) {
        self.held.remove(chunk);
        self.lost.remove(chunk);
        self.confirming.remove(chunk);
        self.promised.remove(chunk);
    }

    /// A stray elsewhere asks whether this shard holds `chunks`: yes for each it
    /// holds intact and its own view places here, and each yes is a promise to
    /// keep that chunk for [`RepairConfig::promise_for`].
    pub fn answer_confirm(&mut self, now: Time, chunks: &[ChunkId]) -> Vec<bool> {
        let candidates = self.candidates(now);
        let until = now + self.config.promise_for;
        chunks
            .iter()
            .map(|chunk| {
                let Some(r) = self.held.get(chunk) else {
                    return false;
                };
                let mine =
                    placement::holders(chunk, &candidates, usize::from(*r)).contains(&self.me);
                if mine {
                    let t = self.promised.entry(*chunk).or_insert(until);
                    *t = (*t).max(until);
                }
                mine
            })
            .collect()
    }

    /// `from` answered an [`Action::Confirm`]: which of the chunks it holds.
    /// A chunk every placement node has now confirmed is dropped here; one that
    /// `from` lacks stays (the offers bring it there; a later scan asks again).
    /// Answers from nodes not asked, or for chunks not being confirmed, change
    /// nothing.
    pub fn handle_holding(&mut self, from: NodeId, answers: &[(ChunkId, bool)]) {
        for (chunk, held) in answers {
            let Some(waiting) = self.confirming.get_mut(chunk) else {
                continue;
            };
            if !waiting.contains(&from) {
                continue;
            }
            if !held {
                self.confirming.remove(chunk);
                continue;
            }
            waiting.remove(&from);
            if waiting.is_empty() {
                self.confirming.remove(chunk);
                if self.held.remove(chunk).is_some() {
                    self.handed_off += 1;
                    self.out.push_back(Action::Drop { chunk: *chunk });
                }
            }
        }
    }

    /// `chunk`'s bytes here were found corrupt or missing: fetch it back.
    pub fn lost(&mut self, chunk: ChunkId) {
        self.confirming.remove(&chunk);
        if let Some(r) = self.held.remove(&chunk) {
            self.lost.insert(chunk, (r, 0));
        }
    }

    /// Checks what this shard's disk gave for `chunk` (`None`: nothing): whether
    /// it is an intact copy to use or send. A copy that does not hash to its id,
    /// or is missing though held, is lost: the driver removes it from disk, and
    /// it is fetched back. Every read a shard makes goes through here.
    pub fn check_read(&mut self, chunk: &ChunkId, bytes: Option<&[u8]>) -> Read {
        if !self.held.contains_key(chunk) {
            return Read::NotHeld;
        }
        match bytes {
            Some(b) if chunk.matches(b) => Read::Intact,
            _ => {
                self.lost(*chunk);
                Read::Lost
            }
        }
    }

    /// The next held chunk for the scrub to read back, round robin.
    pub fn next_to_scrub(&mut self) -> Option<ChunkId> {
        let next = match self.scrub_after {
            None => self.held.keys().next().copied(),
            Some(after) => self
                .held
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .next()
                .map(|(c, _)| *c),
        };
        self.scrub_after = next;
        next
    }

    /// A fetch failed (not had, corrupt, or refused).
    pub fn fetch_failed(&mut self, chunk: &ChunkId) {
        self.fetching.remove(chunk);
        self.wanted.remove(chunk);
    }

    /// `node` refused a chunk because it is full.
    pub fn full(&mut self, now: Time, node: NodeId) {
        self.full.insert(node, now + self.config.full_for);
        self.scan_due = true;
    }

    /// `from` offers chunks. Only chunks this shard belongs to and lacks are
    /// wanted; `from` must be a live member (the caller checked it is admitted).
    pub fn handle_offer(&mut self, now: Time, from: NodeId, chunks: &[(ChunkId, u8)]) {
        if from == self.me || !self.live.iter().any(|c| c.node == from) {
            return;
        }
        let candidates = self.candidates(now);
        for (chunk, r) in chunks.iter().take(self.config.offer_ids_max) {
            let r = (*r).max(1);
            if self.held.contains_key(chunk)
                || self.fetching.contains_key(chunk)
                || self.wanted.contains(chunk)
            {
                continue;
            }
            let mine = placement::holders(chunk, &candidates, usize::from(r)).contains(&self.me)
                || self.lost.contains_key(chunk);
            if !mine {
                continue;
            }
            if self.wants.len() >= self.config.wants_max {
                self.dropped_offers += 1;
                continue;
            }
            self.wanted.insert(*chunk);
            self.wants.push_back((*chunk, r, from));
        }
        self.start_fetches(now);
    }

    /// Time passes: fetches time out, full marks expire, fetches start, and a
    /// scan runs when one is due.
    pub fn tick(&mut self, now: Time) {
        let late: Vec<ChunkId> = self
            .fetching
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for c in late {
            self.fetch_failed(&c);
        }
        let before = self.full.len();
        self.full.retain(|_, until| *until > now);
        if self.full.len() != before {
            self.scan_due = true;
        }
        self.fetch_lost(now);
        self.start_fetches(now);
        if self.scan_due || now >= self.next_scan {
            self.scan(now);
        }
    }

    // ----- outputs -----

    /// The next action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    // ----- internals -----

    fn start_fetches(&mut self, now: Time) {
        while self.fetching.len() < self.config.fetches_max {
            let Some((chunk, replicas, from)) = self.wants.pop_front() else {
                break;
            };
            if self.held.contains_key(&chunk) || self.fetching.contains_key(&chunk) {
                self.wanted.remove(&chunk);
                continue;
            }
            self.fetch(now, from, chunk, replicas);
        }
    }

    fn fetch(&mut self, now: Time, from: NodeId, chunk: ChunkId, replicas: u8) {
        self.fetching
            .insert(chunk, (from, now + self.config.fetch_timeout));
        self.out.push_back(Action::Fetch {
            from,
            chunk,
            replicas,
        });
    }

    fn fetch_lost(&mut self, now: Time) {
        let candidates = self.candidates(now);
        let lost: Vec<ChunkId> = self.lost.keys().copied().collect();
        for chunk in lost {
            if self.fetching.len() >= self.config.fetches_max {
                break;
            }
            if self.fetching.contains_key(&chunk) {
                continue;
            }
            let Some((r, tried)) = self.lost.get_mut(&chunk) else {
                continue;
            };
            // Sources: everyone else, in the chunk's order (the holders first).
            let sources: Vec<NodeId> = placement::order(&chunk, &candidates)
                .into_iter()
                .filter(|n| *n != self.me)
                .collect();
            if sources.is_empty() {
                continue;
            }
            let from = sources[*tried % sources.len()];
            *tried = tried.saturating_add(1);
            let replicas = *r;
            self.fetch(now, from, chunk, replicas);
        }
    }

    fn scan(&mut self, now: Time) {
        // A scan for a change is followed soon by another, for the nodes that
        // learn of the change later than this one.
        self.next_scan = now
            + if self.scan_due {
                self.config.rescan_after
            } else {
                self.config.scan_every
            };
        self.scan_due = false;
        let candidates = self.candidates(now);
        // Confirmations not finished by now start over with today's placement.
        self.confirming.clear();
        self.promised.retain(|_, until| *until > now);
        let hand_off = now
            >= *self
                .hand_off_from
                .get_or_insert(now + self.config.promise_for);
        let mut offers: BTreeMap<NodeId, Vec<(ChunkId, u8)>> = BTreeMap::new();
        let mut confirms: BTreeMap<NodeId, Vec<ChunkId>> = BTreeMap::new();
        for (chunk, r) in &self.held {
            let placed = placement::holders(chunk, &candidates, usize::from(*r));
            // A stray: placed elsewhere, on as many nodes as it should be.
            let stray = hand_off
                && !placed.contains(&self.me)
                && placed.len() >= usize::from(*r)
                && !self.promised.contains_key(chunk)
                && self.confirming.len() < self.config.confirms_max;
            if stray {
                self.confirming
                    .insert(*chunk, placed.iter().copied().collect());
            }
            for n in placed {
                if n != self.me {
                    offers.entry(n).or_default().push((*chunk, *r));
                    if stray {
                        confirms.entry(n).or_default().push(*chunk);
                    }
                }
            }
        }
        let per = self.config.offer_ids_max.max(1);
        for (to, chunks) in offers {
            for part in chunks.chunks(per) {
                self.out.push_back(Action::Offer {
                    to,
                    chunks: part.to_vec(),
                });
            }
        }
        for (to, chunks) in confirms {
            for part in chunks.chunks(per) {
                self.out.push_back(Action::Confirm {
                    to,
                    chunks: part.to_vec(),
                });
            }
        }
    }

    /// The invariants, for tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.fetching.len() > self.config.fetches_max {
            return Err(format!("{} fetches over the bound", self.fetching.len()));
        }
        if self.wants.len() > self.config.wants_max {
            return Err("wants over the bound".into());
        }
        if let Some(c) = self.held.keys().find(|c| self.lost.contains_key(c)) {
            return Err(format!("{c:?} both held and lost"));
        }
        if let Some(c) = self.fetching.keys().find(|c| self.held.contains_key(c)) {
            return Err(format!("{c:?} fetched while held"));
        }
        if self.confirming.len() > self.config.confirms_max {
            return Err(format!(
                "{} confirmations over the bound",
                self.confirming.len()
            ));
        }
        if let Some(c) = self.confirming.keys().find(|c| !self.held.contains_key(c)) {
            return Err(format!("{c:?} confirmed for hand-off but not held"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::rng::DetRng;
    use proptest::prelude::*;

    fn node(i: u64) -> NodeId {
        NodeId::synthetic(i)
    }

    /// A cluster of repair cores with perfect links; a fetch succeeds when the
    /// source holds the chunk.
    struct Net {
        shards: BTreeMap<NodeId, Repair>,
        /// Killed shards, with what they held, for a comeback.
        dead: BTreeMap<NodeId, Repair>,
        now: Time,
    }

    impl Net {
        fn new(n: u64) -> Self {
            let shards = (0..n)
                .map(|i| (node(i), Repair::new(node(i), RepairConfig::default())))
                .collect();
            let mut net = Net {
                shards,
                dead: BTreeMap::new(),
                now: Time::from_millis(1),
            };
            net.membership();
            net
        }

        fn membership(&mut self) {
            let live: Vec<Candidate> = self.shards.keys().map(|n| Candidate::plain(*n)).collect();
            for s in self.shards.values_mut() {
                s.set_live(live.clone());
            }
        }

        fn kill(&mut self, n: NodeId) {
            if let Some(s) = self.shards.remove(&n) {
                self.dead.insert(n, s);
            }
            self.membership();
        }

        /// Every killed shard comes back with what it held (a promise's length
        /// later, so every shard may hand off).
        fn revive_all(&mut self) {
            self.now = self.now + RepairConfig::default().promise_for;
            self.shards.append(&mut self.dead);
            self.membership();
        }

        fn handed_off(&self) -> u64 {
            self.shards.values().map(Repair::handed_off).sum()
        }

        /// Whether every chunk is held by exactly its placement.
        fn exactly_placed(&self, chunks: &[(ChunkId, u8)]) -> Result<(), String> {
            let live: Vec<Candidate> = self.shards.keys().map(|n| Candidate::plain(*n)).collect();
            for (c, r) in chunks {
                let want: BTreeSet<NodeId> = placement::holders(c, &live, usize::from(*r))
                    .into_iter()
                    .collect();
                let have: BTreeSet<NodeId> = self
                    .shards
                    .iter()
                    .filter(|(_, s)| s.holds(c))
                    .map(|(n, _)| *n)
                    .collect();
                if want != have {
                    return Err(format!("{c:?} r={r}: held by {have:?}, placed on {want:?}"));
                }
            }
            Ok(())
        }

        /// Runs until quiet (and past the follow-up scans).
        fn settle(&mut self) {
            let mut quiet = 0;
            for _ in 0..1_000 {
                if self.step() {
                    quiet = 0;
                } else {
                    quiet += 1;
                    if quiet > 40 {
                        return;
                    }
                }
            }
            panic!("repair never settled");
        }

        /// One 100 ms round; whether anything was sent.
        fn step(&mut self) -> bool {
            {
                self.now = self.now + Duration::from_millis(100);
                let mut actions = Vec::new();
                for (id, s) in self.shards.iter_mut() {
                    s.tick(self.now);
                    while let Some(a) = s.poll_action() {
                        actions.push((*id, a));
                    }
                    s.check_invariants().unwrap();
                }
                if actions.is_empty() {
                    return false;
                }
                for (me, a) in actions {
                    match a {
                        Action::Offer { to, chunks } => {
                            if let Some(s) = self.shards.get_mut(&to) {
                                s.handle_offer(self.now, me, &chunks);
                            }
                        }
                        Action::Fetch {
                            from,
                            chunk,
                            replicas,
                        } => {
                            let had = self.shards.get(&from).is_some_and(|s| s.holds(&chunk));
                            if let Some(s) = self.shards.get_mut(&me) {
                                if had {
                                    s.stored(chunk, replicas);
                                } else {
                                    s.fetch_failed(&chunk);
                                }
                            }
                        }
                        Action::Confirm { to, chunks } => {
                            let now = self.now;
                            let Some(peer) = self.shards.get_mut(&to) else {
                                continue;
                            };
                            let held = peer.answer_confirm(now, &chunks);
                            let answers: Vec<(ChunkId, bool)> =
                                chunks.into_iter().zip(held).collect();
                            if let Some(s) = self.shards.get_mut(&me) {
                                s.handle_holding(to, &answers);
                            }
                        }
                        // The core has forgotten the copy; a driver deletes it.
                        Action::Drop { .. } => {}
                    }
                }
            }
            true
        }

        fn copies(&self, c: &ChunkId) -> usize {
            self.shards.values().filter(|s| s.holds(c)).count()
        }

        fn put(&mut self, c: ChunkId, r: u8) {
            let live: Vec<Candidate> = self.shards.keys().map(|n| Candidate::plain(*n)).collect();
            for h in placement::holders(&c, &live, usize::from(r)) {
                if let Some(s) = self.shards.get_mut(&h) {
                    s.stored(c, r);
                }
            }
        }
    }

    #[test]
    fn a_dead_holders_copies_come_back() {
        let mut net = Net::new(5);
        let chunks: Vec<ChunkId> = (0u64..50).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        for c in &chunks {
            net.put(*c, 3);
        }
        net.settle();
        assert!(chunks.iter().all(|c| net.copies(c) == 3));
        net.kill(node(2));
        assert!(
            chunks.iter().any(|c| net.copies(c) == 2),
            "node 2 held nothing"
        );
        net.settle();
        assert!(chunks.iter().all(|c| net.copies(c) == 3));
    }

    #[test]
    fn a_returning_holders_extra_copies_are_handed_off() {
        let mut net = Net::new(5);
        let chunks: Vec<(ChunkId, u8)> = (0u64..50)
            .map(|i| (ChunkId::of(&i.to_le_bytes()), 3))
            .collect();
        for (c, r) in &chunks {
            net.put(*c, *r);
        }
        net.settle();
        net.kill(node(2));
        net.settle();
        assert!(chunks.iter().all(|(c, _)| net.copies(c) == 3));
        // Node 2 comes back with its old copies: its chunks now have four, until
        // the nodes the repair filled in hand theirs off.
        net.revive_all();
        assert!(
            chunks.iter().any(|(c, _)| net.copies(c) == 4),
            "node 2 held nothing"
        );
        net.settle();
        net.exactly_placed(&chunks).unwrap();
        assert!(net.handed_off() > 0);
    }

    #[test]
    fn a_node_that_confirmed_keeps_the_chunk_for_its_promise() {
        let cfg = RepairConfig::default();
        let (a, b, c, d) = (node(0), node(1), node(2), node(3));
        let chunk = ChunkId::of(b"promise");
        let all: Vec<Candidate> = [a, b, c, d].into_iter().map(Candidate::plain).collect();
        // The node the chunk's r = 1 placement picks among all four.
        let top = placement::holders(&chunk, &all, 1)[0];
        let others: Vec<Candidate> = all.iter().filter(|x| x.node != top).cloned().collect();
        let second = placement::holders(&chunk, &others, 1)[0];
        let mut s = Repair::new(second, cfg.clone());
        let mut now = Time::from_millis(1);
        // In a view without `top`, the chunk is placed on `second`: it confirms.
        s.set_live(others.clone());
        s.stored(chunk, 1);
        s.tick(now);
        while s.poll_action().is_some() {}
        assert_eq!(s.answer_confirm(now, &[chunk]), vec![true]);
        // `top` comes back: `second` is now a stray, but it promised.
        s.set_live(all.clone());
        now = now + Duration::from_secs(1);
        s.tick(now);
        let mut confirms = Vec::new();
        while let Some(a) = s.poll_action() {
            if let Action::Confirm { chunks, .. } = a {
                confirms.extend(chunks);
            }
        }
        assert!(confirms.is_empty(), "asked to hand off within its promise");
        // A stray is never a yes.
        assert_eq!(s.answer_confirm(now, &[chunk]), vec![false]);
        // Past the promise, the next scan starts the hand-off.
        now = now + cfg.promise_for + cfg.scan_every;
        s.tick(now);
        let mut asked = Vec::new();
        while let Some(a) = s.poll_action() {
            if let Action::Confirm { to, chunks } = a {
                asked.push((to, chunks));
            }
        }
        assert_eq!(asked, vec![(top, vec![chunk])]);
        // A no keeps the copy; a yes from the whole placement drops it.
        s.handle_holding(top, &[(chunk, false)]);
        assert!(s.holds(&chunk));
        now = now + cfg.scan_every;
        s.tick(now);
        while s.poll_action().is_some() {}
        s.handle_holding(second, &[(chunk, true)]);
        assert!(
            s.holds(&chunk),
            "an answer from a node not asked counts for nothing"
        );
        s.handle_holding(top, &[(chunk, true)]);
        assert!(!s.holds(&chunk));
        assert_eq!(s.poll_action(), Some(Action::Drop { chunk }));
        assert_eq!(s.handed_off(), 1);
        s.check_invariants().unwrap();
    }

    #[test]
    fn reads_are_checked_and_the_scrub_goes_round() {
        let mut r = Repair::new(node(0), RepairConfig::default());
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        r.stored(a, 3);
        r.stored(b, 3);
        assert_eq!(r.check_read(&a, Some(b"a")), Read::Intact);
        assert_eq!(r.check_read(&ChunkId::of(b"c"), None), Read::NotHeld);
        assert_eq!(r.check_read(&b, Some(b"rot")), Read::Lost);
        assert!(!r.holds(&b) && r.lost_count() == 1);
        r.stored(b, 3);
        let first = r.next_to_scrub();
        let second = r.next_to_scrub();
        assert_ne!(first, second);
        assert_eq!((r.next_to_scrub(), r.next_to_scrub()), (None, first));
    }

    #[test]
    fn a_corrupt_copy_is_fetched_back() {
        let mut net = Net::new(4);
        let c = ChunkId::of(b"x");
        net.put(c, 3);
        let holder = *net.shards.iter().find(|(_, s)| s.holds(&c)).unwrap().0;
        net.shards.get_mut(&holder).unwrap().lost(c);
        assert_eq!(net.copies(&c), 2);
        net.settle();
        assert!(net.shards[&holder].holds(&c));
        assert_eq!(net.shards[&holder].lost_count(), 0);
    }

    #[test]
    fn a_full_node_is_passed_over() {
        let mut net = Net::new(4);
        let c = ChunkId::of(b"y");
        net.put(c, 3);
        let first = net.shards[&node(0)].placement(net.now, &c, 3);
        let holder = first[0];
        let victim = first[1];
        // The victim loses its copy and is full: another node takes its place.
        net.shards.get_mut(&victim).unwrap().removed(&c);
        let now = net.now;
        for s in net.shards.values_mut() {
            s.full(now, victim);
        }
        net.settle();
        assert_eq!(net.copies(&c), 3);
        assert!(!net.shards[&victim].holds(&c));
        assert!(net.shards[&holder].holds(&c));
    }

    #[test]
    fn an_offer_made_before_the_target_learns_of_a_death_is_made_again() {
        let mut net = Net::new(4);
        let c = ChunkId::of(b"z");
        net.put(c, 3);
        net.settle();
        let order = net.shards[&node(0)].placement(net.now, &c, 4);
        let (victim, target) = (order[0], order[3]);
        // Everyone but the target learns of the death at once.
        net.shards.remove(&victim);
        let live: Vec<Candidate> = net.shards.keys().map(|n| Candidate::plain(*n)).collect();
        let mut stale = live.clone();
        stale.push(Candidate::plain(victim));
        for (id, s) in net.shards.iter_mut() {
            s.set_live(if *id == target {
                stale.clone()
            } else {
                live.clone()
            });
        }
        // One round: the offers reach a target that still places the chunk on
        // the dead node, and are refused.
        net.step();
        assert!(!net.shards[&target].holds(&c));
        net.shards.get_mut(&target).unwrap().set_live(live);
        let before = net.now;
        net.settle();
        assert!(net.shards[&target].holds(&c));
        assert!(
            net.now.saturating_since(before) < Duration::from_secs(10),
            "waited for the slow scan"
        );
    }

    proptest! {
        /// Never fewer than r after repair while r nodes live; never two replicas
        /// on one node (a shard holds a chunk at most once by construction).
        #[test]
        fn repair_restores_r_while_r_nodes_live(seed in any::<u64>(), n in 3u64..8, kills in 0usize..4, revive in any::<bool>()) {
            let mut rng = DetRng::new(seed);
            let mut net = Net::new(n);
            let chunks: Vec<(ChunkId, u8)> = (0u64..30)
                .map(|i| (ChunkId::of(&(seed ^ i).to_le_bytes()), 1 + (rng.below(3) as u8)))
                .collect();
            for (c, r) in &chunks {
                net.put(*c, *r);
            }
            net.settle();
            for _ in 0..kills {
                let alive: Vec<NodeId> = net.shards.keys().copied().collect();
                let victim = alive[rng.index(alive.len())];
                // Only kill while every chunk keeps a copy (r-1 failures at once).
                let survives = chunks.iter().all(|(c, _)| {
                    net.shards.iter().any(|(id, s)| *id != victim && s.holds(c))
                });
                if !survives || alive.len() <= 1 {
                    break;
                }
                net.kill(victim);
                net.settle();
                let live = net.shards.len();
                for (c, r) in &chunks {
                    prop_assert!(net.copies(c) >= usize::from(*r).min(live), "{c:?} r={r} has {}", net.copies(c));
                }
            }
            // The dead come back with their old copies: after the hand-off every
            // chunk is held by exactly its placement, no fewer and no more.
            if revive {
                net.revive_all();
                net.settle();
                let check = net.exactly_placed(&chunks);
                prop_assert!(check.is_ok(), "{check:?}");
            }
        }
    }
}
