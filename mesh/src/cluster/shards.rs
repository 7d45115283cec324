//! The sharded registry's routing ([`RegistryConfig::owners`] > 0): which node
//! holds which names, and who is told when a claim changes.
//!
//! A node holds a name's claims when it has a claim on the name itself, when it is
//! one of the name's `r` owners ([`crate::owners`]), or when it looks the name up.
//! Everything else it forgets ([`Registry::forget`]). So a node's registry grows
//! with the names it uses and `r / n` of the others, not with every name in the
//! cluster.
//!
//! * **A claim goes to the owners.** A node sends each of its claims (tombstones
//!   too) to the name's owners when it changes, when the owners change, and again
//!   every `watch_refresh`, so an owner that missed a message, restarted or just
//!   took over has it within one period.
//! * **An owner pushes what changes** to the name's other owners, its claimants
//!   (a claimant that lost the name learns so from the winner's claim, and
//!   withdraws as before) and the nodes watching it.
//! * **A lookup that misses asks.** [`Cluster::lookup`] notes the name; the node
//!   asks every owner ([`Probe::Resolve`]), merges what they answer (one honest owner
//!   is enough: claims are signed, the newest version wins), and asks again every
//!   `watch_refresh` while the name is looked up; owners push changes to it in
//!   between. A name not looked up for `watch_idle` is forgotten.
//! * **Ownership moves** with membership: a joiner is weighed against each name of
//!   interest once; a dead owner's names are weighed again over the live view.
//!   Owners and claimants both hand the claims to the owners that are new.
//! * **Deaths** clean up as before: every node drops a dead node's claims from
//!   whatever it holds.
//!
//! Messages are unreliable control packets, like SWIM's; the periodic resends are
//! the repair. Bounds: `watch_max` names asked about per node (further misses are
//! counted and not asked), `watchers_max` watches per owner (further asks are
//! answered without pushes), [`OUTBOX_MAX`] packets queued (further ones are dropped
//! and counted; the resends repair them).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use plexus_actors::{NodeId, Time};

use super::Cluster;
use crate::membership::{Membership, MembershipEvent, Probe};
use crate::owners::{NamePoint, OwnerSet};
use crate::registry::{Claim, NAME_BYTES_MAX};

/// How often a sharded node runs its periodic work.
pub(super) const SHARD_TICK: Duration = Duration::from_secs(1);
/// How soon an unanswered resolve is asked again.
const RESOLVE_RETRY: Duration = Duration::from_secs(2);
/// Most claims in one push.
const CLAIMS_PER_PUSH: usize = 32;
/// Most names in one resolve (and answered from one).
pub const NAMES_PER_RESOLVE: usize = 64;
/// Most packets queued for sending.
pub const OUTBOX_MAX: usize = 4096;
/// Names whose owners an invariant check recomputes.
const OWNERS_CHECKED: usize = 2;

/// What the sharded registry did, for operators and the simulator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Resolves sent (one per owner asked).
    pub resolves_sent: u64,
    /// Packets of claims sent.
    pub pushes_sent: u64,
    /// Packets dropped because the outbox was full.
    pub outbox_dropped: u64,
    /// Watches an owner did not take because it keeps `watchers_max`.
    pub watchers_refused: u64,
    /// Lookups of unknown names not asked about because `watch_max` are.
    pub wanted_dropped: u64,
    /// Names whose owners changed.
    pub ownership_moves: u64,
}

/// A name this node has a reason to know about.
#[derive(Debug)]
pub(super) struct Interest {
    point: NamePoint,
    owners: OwnerSet,
    watch: Option<Watch>,
}

/// A name this node looks up.
#[derive(Debug)]
struct Watch {
    /// Looked up since the last tick (set through a shared borrow by
    /// [`Cluster::lookup`]).
    used: AtomicBool,
    /// How long since it was last looked up.
    idle: Duration,
    /// When an owner last answered a resolve of it.
    resolved_at: Option<Time>,
    /// When the owners were last asked.
    asked_at: Option<Time>,
}

/// The sharded registry's state in a [`Cluster`].
#[derive(Default)]
pub(super) struct Shards {
    /// Owners per name; 0: the registry is a full replica and none of this runs.
    r: usize,
    interest: BTreeMap<Arc<str>, Interest>,
    /// How many interests have a watch.
    watching: usize,
    /// Owner side: who asked about a name, until when.
    watchers: BTreeMap<Arc<str>, Vec<(NodeId, Time)>>,
    watcher_count: usize,
    /// Names looked up and not held, noted by `Cluster::lookup` (which borrows the
    /// cluster shared).
    wanted: Mutex<BTreeSet<Arc<str>>>,
    /// Whether `wanted` may hold names (so the pump after every input takes no lock
    /// when none were looked up).
    has_wanted: AtomicBool,
    outbox: VecDeque<(NodeId, Probe, Vec<Claim>)>,
    /// The periodic work's next turn: every [`SHARD_TICK`] while this node watches
    /// names or is watched, else at the next re-send of its claims.
    next_tick: Time,
    last_tick: Time,
    next_republish: Time,
    stats: ShardStats,
}

impl Shards {
    pub(super) fn new(r: u32, now: Time) -> Self {
        Self {
            r: (r as usize).min(crate::owners::OWNERS_MAX),
            next_tick: now + SHARD_TICK,
            last_tick: now,
            next_republish: now + SHARD_TICK,
            ..Self::default()
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.r > 0
    }

    pub(super) fn next_tick(&self) -> Option<Time> {
        self.enabled().then_some(self.next_tick)
    }

    fn wanted(&self) -> MutexGuard<'_, BTreeSet<Arc<str>>> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a lookup of a name not held, to be asked about.
    pub(super) fn want(&self, name: &str, max: usize) {
        let mut wanted = self.wanted();
        if !wanted.contains(name) && wanted.len() < max {
            wanted.insert(Arc::from(name));
            self.has_wanted.store(true, Relaxed);
        }
    }

    /// Whether lookups noted names to ask about.
    pub(super) fn has_wanted(&self) -> bool {
        self.has_wanted.load(Relaxed)
    }

    /// Notes a lookup of a held name: a watched one stays watched.
    pub(super) fn used(&self, name: &str) {
        if let Some(w) = self.interest.get(name).and_then(|i| i.watch.as_ref()) {
            w.used.store(true, Relaxed);
        }
    }

    pub(super) fn pop_outbox(&mut self) -> Option<(NodeId, Probe, Vec<Claim>)> {
        crate::broadcast::pop_shrinking(&mut self.outbox)
    }
}

/// The live nodes as `membership` sees them, this node included.
fn live(membership: &Membership, me: NodeId) -> impl Iterator<Item = NodeId> + '_ {
    membership
        .members()
        .filter(|m| !m.state.is_down())
        .map(|m| m.id())
        .chain(std::iter::once(me))
}

fn valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_BYTES_MAX
}

impl Cluster {
    /// Statistics of the sharded registry (all zero for a full replica).
    pub fn shard_stats(&self) -> ShardStats {
        self.shards.stats
    }

    /// The owners of `name` as this node sees them, heaviest first (empty for a full
    /// replica).
    pub fn name_owners(&self, name: &str) -> Vec<NodeId> {
        if !self.shards.enabled() {
            return Vec::new();
        }
        match self.shards.interest.get(name) {
            Some(i) => i.owners.nodes().collect(),
            None => OwnerSet::compute(
                &NamePoint::of(name),
                live(&self.membership, self.me),
                self.shards.r,
            )
            .nodes()
            .collect(),
        }
    }

    /// Notes that `name` was looked up (a driver whose lookups read a copy of the
    /// names, not the core, reports them here): a watched name stays watched.
    pub fn touch_name(&mut self, name: &str) {
        if let Some(w) = self
            .shards
            .interest
            .get_mut(name)
            .and_then(|i| i.watch.as_mut())
        {
            w.idle = Duration::ZERO;
        }
    }

    /// Whether what this node holds of `name` is all there is to know: it owns
    /// the name, or watches it (the owners push every change). A name held only
    /// for this node's own claim (a tombstone, say, after its actor moved away)
    /// is not: another node's claim would be missing.
    pub(super) fn knows_name(&self, name: &str) -> bool {
        self.shards
            .interest
            .get(name)
            .is_some_and(|i| i.watch.is_some() || i.owners.contains(&self.me))
    }

    /// Whether this node asks the owners about `name` for its lookups.
    pub fn watches(&self, name: &str) -> bool {
        self.shards
            .interest
            .get(name)
            .is_some_and(|i| i.watch.is_some())
    }

    fn ensure_interest(&mut self, name: &Arc<str>) {
        if self.shards.interest.contains_key(name) {
            return;
        }
        let point = NamePoint::of(name);
        let owners = OwnerSet::compute(&point, live(&self.membership, self.me), self.shards.r);
        self.shards.interest.insert(
            name.clone(),
            Interest {
                point,
                owners,
                watch: None,
            },
        );
    }

    /// The owners of `name`, which becomes a name of interest.
    fn owners_of(&mut self, name: &Arc<str>) -> Vec<NodeId> {
        self.ensure_interest(name);
        self.shards
            .interest
            .get(name)
            .map(|i| i.owners.nodes().collect())
            .unwrap_or_default()
    }

    /// Keeps `name` only while this node claims, owns, watches it or is watched on
    /// it; forgets it otherwise.
    fn settle(&mut self, name: &str) {
        let Some(interest) = self.shards.interest.get(name) else {
            return;
        };
        let needed = interest.watch.is_some()
            || interest.owners.contains(&self.me)
            || self.registry.claims_own(name)
            || self.shards.watchers.contains_key(name);
        if !needed {
            self.shards.interest.remove(name);
            self.registry.forget(name);
        }
    }

    /// Keeps the owner-side watches `keep` accepts; a name nobody watches any more
    /// is forgotten unless something else keeps it.
    fn prune_watchers(&mut self, mut keep: impl FnMut(&NodeId, Time) -> bool) {
        let mut emptied = Vec::new();
        for (name, ws) in &mut self.shards.watchers {
            let before = ws.len();
            ws.retain(|(w, until)| keep(w, *until));
            self.shards.watcher_count -= before - ws.len();
            if ws.is_empty() {
                emptied.push(name.clone());
            }
        }
        for name in emptied {
            self.shards.watchers.remove(&name);
            self.settle(&name);
        }
    }

    fn queue(&mut self, to: NodeId, probe: Probe, claims: Vec<Claim>) {
        if to == self.me {
            return;
        }
        if self.shards.outbox.len() >= OUTBOX_MAX {
            self.shards.stats.outbox_dropped += 1;
            return;
        }
        match probe {
            Probe::Resolve { .. } => self.shards.stats.resolves_sent += 1,
            _ => self.shards.stats.pushes_sent += 1,
        }
        self.shards.outbox.push_back((to, probe, claims));
    }

    /// Queues `claims` to each target, in packets of at most [`CLAIMS_PER_PUSH`].
    fn push_claims(&mut self, batches: BTreeMap<NodeId, Vec<Claim>>) {
        for (to, claims) in batches {
            for chunk in claims.chunks(CLAIMS_PER_PUSH) {
                self.queue(
                    to,
                    Probe::Names {
                        resolved: Vec::new(),
                    },
                    chunk.to_vec(),
                );
            }
        }
    }

    /// Asks the owners about `names`, in packets of at most [`NAMES_PER_RESOLVE`].
    fn ask_owners(&mut self, asks: BTreeMap<NodeId, Vec<Arc<str>>>) {
        for (to, names) in asks {
            for chunk in names.chunks(NAMES_PER_RESOLVE) {
                self.queue(
                    to,
                    Probe::Resolve {
                        names: chunk.to_vec(),
                    },
                    Vec::new(),
                );
            }
        }
    }

    /// The sharded registry's work after any input: lookups to ask about, stored
    /// claims to route. Returns whether it did anything (its effects may raise
    /// events for the pump).
    pub(super) fn shards_pump(&mut self) -> bool {
        if !self.shards.enabled() {
            return false;
        }
        let wanted = if std::mem::take(self.shards.has_wanted.get_mut()) {
            std::mem::take(&mut *self.shards.wanted())
        } else {
            BTreeSet::new()
        };
        let changed = self.registry.take_changed();
        if wanted.is_empty() && changed.is_empty() {
            return false;
        }
        let now = self.now;
        let mut asks: BTreeMap<NodeId, Vec<Arc<str>>> = BTreeMap::new();
        for name in wanted {
            if !valid(&name) {
                continue;
            }
            let watching = self.shards.interest.get(&name).map(|i| i.watch.is_some());
            match watching {
                Some(true) => {
                    if let Some(w) = self
                        .shards
                        .interest
                        .get_mut(&name)
                        .and_then(|i| i.watch.as_mut())
                    {
                        w.idle = Duration::ZERO;
                    }
                    continue;
                }
                _ if self.shards.watching >= self.registry.config().watch_max => {
                    self.shards.stats.wanted_dropped += 1;
                    continue;
                }
                _ => {}
            }
            self.ensure_interest(&name);
            let Some(interest) = self.shards.interest.get_mut(&name) else {
                continue;
            };
            interest.watch = Some(Watch {
                used: AtomicBool::new(false),
                idle: Duration::ZERO,
                resolved_at: None,
                asked_at: Some(now),
            });
            self.shards.watching += 1;
            self.shards.next_tick = self.shards.next_tick.min(now + SHARD_TICK);
            for owner in interest.owners.nodes() {
                asks.entry(owner).or_default().push(name.clone());
            }
        }
        self.ask_owners(asks);
        let mut pushes: BTreeMap<NodeId, Vec<Claim>> = BTreeMap::new();
        for (name, claimant) in changed {
            let owners = self.owners_of(&name);
            let held = self.registry.claims_on(&name);
            if let Some(claim) = held.iter().find(|c| c.node == claimant) {
                if claimant == self.me {
                    for &o in &owners {
                        pushes.entry(o).or_default().push(claim.clone());
                    }
                }
                if owners.contains(&self.me) {
                    let mut to: BTreeSet<NodeId> = owners.iter().copied().collect();
                    to.extend(held.iter().map(|c| c.node));
                    if let Some(ws) = self.shards.watchers.get(&name) {
                        to.extend(ws.iter().filter(|(_, until)| *until > now).map(|(w, _)| *w));
                    }
                    to.remove(&self.me);
                    to.remove(&claimant);
                    for t in to {
                        pushes.entry(t).or_default().push(claim.clone());
                    }
                    // And the claimant hears the others' claims on the name: a claim
                    // that lost to one made earlier learns so here.
                    if claimant != self.me {
                        let others = held.iter().filter(|c| c.node != claimant).cloned();
                        pushes.entry(claimant).or_default().extend(others);
                    }
                }
            }
            self.settle(&name);
        }
        self.push_claims(pushes);
        true
    }

    /// Membership moved: weigh the joiner against the names of interest, or weigh
    /// a dead owner's names again.
    pub(super) fn shards_on_member(&mut self, event: &MembershipEvent) {
        if !self.shards.enabled() {
            return;
        }
        let r = self.shards.r;
        let mut moved: Vec<(Arc<str>, OwnerSet)> = Vec::new();
        match event {
            MembershipEvent::Joined(node) => {
                for (name, interest) in &mut self.shards.interest {
                    let w = interest.point.weight(node);
                    // Most joiners own none of these names: no copy for them.
                    if interest.owners.admits(w, *node, r) {
                        let old = interest.owners.clone();
                        interest.owners.admit(w, *node, r);
                        moved.push((name.clone(), old));
                    }
                }
            }
            MembershipEvent::Died(node) | MembershipEvent::Left(node) => {
                let membership = &self.membership;
                let me = self.me;
                for (name, interest) in &mut self.shards.interest {
                    if interest.owners.contains(node) {
                        let old = std::mem::replace(
                            &mut interest.owners,
                            OwnerSet::compute(&interest.point, live(membership, me), r),
                        );
                        moved.push((name.clone(), old));
                    }
                }
                // An owner no longer pushes to a dead watcher.
                self.prune_watchers(|w, _| w != node);
            }
            _ => {}
        }
        let mut pushes: BTreeMap<NodeId, Vec<Claim>> = BTreeMap::new();
        let mut asks: BTreeMap<NodeId, Vec<Arc<str>>> = BTreeMap::new();
        for (name, old) in moved {
            self.shards.stats.ownership_moves += 1;
            let Some(interest) = self.shards.interest.get(&name) else {
                continue;
            };
            let added: Vec<NodeId> = interest
                .owners
                .nodes()
                .filter(|n| !old.contains(n) && *n != self.me)
                .collect();
            let was_owner = old.contains(&self.me);
            let is_owner = interest.owners.contains(&self.me);
            let watched = interest.watch.is_some();
            let handed: Vec<Claim> = if was_owner || is_owner {
                // Hand what is held to the new owners.
                self.registry.claims_on(&name)
            } else {
                self.registry.own_claim(&name).into_iter().collect()
            };
            for &a in &added {
                pushes.entry(a).or_default().extend(handed.iter().cloned());
                if watched {
                    asks.entry(a).or_default().push(name.clone());
                }
            }
            self.settle(&name);
        }
        self.push_claims(pushes);
        self.ask_owners(asks);
    }

    /// A [`Probe::Resolve`] from `from`: answer with what is held on each name, and
    /// push changes to `from` later if this node owns it.
    pub(super) fn shards_resolve(&mut self, now: Time, from: NodeId, names: Vec<Arc<str>>) {
        if !self.shards.enabled() {
            return;
        }
        let until = now + self.registry.config().watch_refresh * 2;
        let mut resolved = Vec::new();
        let mut claims = Vec::new();
        for name in names.into_iter().take(NAMES_PER_RESOLVE) {
            if !valid(&name) {
                continue;
            }
            let owner = match self.shards.interest.get(&name) {
                Some(i) => i.owners.contains(&self.me),
                None => OwnerSet::compute(
                    &NamePoint::of(&name),
                    live(&self.membership, self.me),
                    self.shards.r,
                )
                .contains(&self.me),
            };
            if owner {
                self.ensure_interest(&name);
                let ws = self.shards.watchers.entry(name.clone()).or_default();
                if let Some(slot) = ws.iter_mut().find(|(w, _)| *w == from) {
                    slot.1 = until;
                } else if self.shards.watcher_count < self.registry.config().watchers_max {
                    ws.push((from, until));
                    self.shards.watcher_count += 1;
                    self.shards.next_tick = self.shards.next_tick.min(now + SHARD_TICK);
                } else {
                    self.shards.stats.watchers_refused += 1;
                    if ws.is_empty() {
                        self.shards.watchers.remove(&name);
                    }
                }
            }
            claims.extend(self.registry.claims_on(&name));
            resolved.push(name);
        }
        if resolved.is_empty() {
            return;
        }
        let chunks: Vec<Vec<Claim>> = if claims.is_empty() {
            vec![Vec::new()]
        } else {
            claims
                .chunks(CLAIMS_PER_PUSH)
                .map(<[Claim]>::to_vec)
                .collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            // The names go with the last packet, after every claim on them.
            let resolved = if i == last {
                std::mem::take(&mut resolved)
            } else {
                Vec::new()
            };
            self.queue(from, Probe::Names { resolved }, chunk);
        }
    }

    /// A claim `from` sent in its own name that is not news here: if this node
    /// holds a newer one of `from`'s (its last life's, when it restarted before
    /// its death was noticed), `from` gets it back at once, to restate or bury.
    pub(super) fn shards_stale_claim(&mut self, from: NodeId, claim: &Claim) {
        if !self.shards.enabled() || claim.node != from {
            return;
        }
        if let Some(held) = self
            .registry
            .claim_of(&claim.name, from)
            .filter(|held| held.version > claim.version)
        {
            self.queue(
                from,
                Probe::Names {
                    resolved: Vec::new(),
                },
                vec![held],
            );
        }
    }

    /// A [`Probe::Names`] from `from` answered resolves of `resolved` (its claims are
    /// merged already).
    pub(super) fn shards_resolved(&mut self, now: Time, from: NodeId, resolved: &[Arc<str>]) {
        for name in resolved {
            if let Some(interest) = self.shards.interest.get_mut(name)
                && interest.owners.contains(&from)
                && let Some(w) = interest.watch.as_mut()
            {
                w.resolved_at = Some(now);
            }
        }
    }

    /// The periodic work: watches asked again or dropped, owners' watches expired,
    /// this node's claims re-sent to their owners.
    pub(super) fn shards_tick(&mut self, now: Time) {
        if !self.shards.enabled() || now < self.shards.next_tick {
            return;
        }
        let elapsed = now.saturating_since(self.shards.last_tick);
        self.shards.last_tick = now;
        let config = self.registry.config().clone();
        let mut asks: BTreeMap<NodeId, Vec<Arc<str>>> = BTreeMap::new();
        let mut idle = 0;
        let mut lapsed = Vec::new();
        for (name, interest) in &mut self.shards.interest {
            let Some(w) = interest.watch.as_mut() else {
                continue;
            };
            if std::mem::take(w.used.get_mut()) {
                w.idle = Duration::ZERO;
            } else {
                w.idle = w.idle.saturating_add(elapsed);
            }
            if w.idle >= config.watch_idle {
                interest.watch = None;
                idle += 1;
                lapsed.push(name.clone());
                continue;
            }
            let due = match (w.asked_at, w.resolved_at) {
                (None, _) => true,
                (Some(asked), None) => now >= asked + RESOLVE_RETRY,
                (Some(asked), Some(_)) => now >= asked + config.watch_refresh,
            };
            if due {
                w.asked_at = Some(now);
                for owner in interest.owners.nodes() {
                    asks.entry(owner).or_default().push(name.clone());
                }
            }
        }
        self.shards.watching -= idle;
        for name in lapsed {
            self.settle(&name);
        }
        // Owners' watches lapse unless asked again.
        self.prune_watchers(|_, until| until > now);
        let mut pushes: BTreeMap<NodeId, Vec<Claim>> = BTreeMap::new();
        if now >= self.shards.next_republish {
            self.shards.next_republish = now + config.watch_refresh;
            // Whatever lost its last reason to be known since (a watch lapsed, a
            // tombstone collected) is forgotten.
            let names: Vec<Arc<str>> = self.shards.interest.keys().cloned().collect();
            for name in names {
                self.settle(&name);
            }
            let mine: Vec<Arc<str>> = self
                .registry
                .names()
                .filter(|n| self.registry.claims_own(n))
                .cloned()
                .collect();
            // And each owner shows every claimant what it holds in the claimant's
            // name: a node restarted before its death was noticed (its versions
            // count from 1 again) restates what it holds now above its last life's
            // claims, or buries them (`Registry::try_merge`).
            let owned: Vec<Arc<str>> = self
                .shards
                .interest
                .iter()
                .filter(|(_, i)| i.owners.contains(&self.me))
                .map(|(name, _)| name.clone())
                .collect();
            for name in owned {
                for claim in self.registry.claims_on(&name) {
                    if claim.node != self.me {
                        pushes.entry(claim.node).or_default().push(claim);
                    }
                }
            }
            for name in mine {
                let owners = self.owners_of(&name);
                let Some(claim) = self.registry.own_claim(&name) else {
                    continue;
                };
                for o in owners {
                    pushes.entry(o).or_default().push(claim.clone());
                }
            }
        }
        self.push_claims(pushes);
        self.ask_owners(asks);
        self.shards.next_tick = if self.shards.watching > 0 || self.shards.watcher_count > 0 {
            now + SHARD_TICK
        } else {
            self.shards.next_republish
        };
    }

    /// The sharded registry's own invariants (see [`Cluster::check_invariants`]).
    pub(super) fn check_shards(&self) -> Result<(), String> {
        if !self.shards.enabled() {
            return Ok(());
        }
        for name in self.registry.names() {
            if !self.shards.interest.contains_key(name) {
                return Err(format!("`{name}` is held with no reason to"));
            }
        }
        let watching = self
            .shards
            .interest
            .values()
            .filter(|i| i.watch.is_some())
            .count();
        for (name, interest) in &self.shards.interest {
            let owners: Vec<NodeId> = interest.owners.nodes().collect();
            let live_count = self.membership.live_count();
            if owners.len() != self.shards.r.min(live_count) {
                return Err(format!(
                    "`{name}` has {} owners of {live_count} live",
                    owners.len()
                ));
            }
            if let Some(down) = owners
                .iter()
                .find(|o| **o != self.me && self.membership.state_of(o).is_none_or(|s| s.is_down()))
            {
                return Err(format!("`{name}` is owned by {down:?}, not live"));
            }
        }
        // Recomputing owners walks the view per name: a few names per check.
        for (name, interest) in self.shards.interest.iter().take(OWNERS_CHECKED) {
            let fresh = OwnerSet::compute(
                &interest.point,
                live(&self.membership, self.me),
                self.shards.r,
            );
            if fresh != interest.owners {
                return Err(format!(
                    "the owners of `{name}` are out of date: {:?} held, {:?} now",
                    interest.owners.nodes().collect::<Vec<_>>(),
                    fresh.nodes().collect::<Vec<_>>()
                ));
            }
        }
        if watching != self.shards.watching {
            return Err(format!(
                "{} watches counted, {watching} held",
                self.shards.watching
            ));
        }
        let watchers: usize = self.shards.watchers.values().map(Vec::len).sum();
        if watchers != self.shards.watcher_count {
            return Err(format!(
                "{} watchers counted, {watchers} held",
                self.shards.watcher_count
            ));
        }
        let config = self.registry.config();
        if self.shards.watching > config.watch_max {
            return Err(format!("{} watches over watch_max", self.shards.watching));
        }
        if watchers > config.watchers_max {
            return Err(format!("{watchers} watchers over watchers_max"));
        }
        if self.shards.outbox.len() > OUTBOX_MAX {
            return Err(format!("{} packets queued", self.shards.outbox.len()));
        }
        Ok(())
    }
}
