//! [`Cluster`]: one node's complete mesh state machine, composing membership, the
//! registry, delivery, ask correlation and the allowlist gossip policy. This is the
//! object both drivers run: the libp2p driver in production, the simulator in
//! research and testing.
//!
//! It owns the glue that must not differ between them:
//!
//! * membership messages carry piggybacked member updates and registry claims; a
//!   sync carries the whole registry; claims from dead members are ignored;
//! * a member declared dead loses its registry entries, its delivery links (its
//!   unacknowledged frames fail) and the asks pending on it (answered
//!   `Unreachable`);
//! * a claim of this node that loses a name to another node's claim is withdrawn
//!   (its actor keeps running, unnamed), and the `ConflictLost` event says so;
//! * asks are numbered here and each gets exactly one answer ([`crate::asks`]): a
//!   reply counts only from the peer that was asked;
//! * the allowlist is due for gossip when a member advertises an older version
//!   ([`crate::allowlist::Republish`]).
//!
//! Inputs: `handle_timeout`, `handle_frame`, `handle_discovered`, `link_up`,
//! `link_down`, `send`, `ask`, `reply`, `complete`, `register`, `unregister`,
//! `set_meta`, `leave`, `publish_allowlist_soon`, `allowlist_published`.
//! Outputs: `poll_transmit`, `poll_event`, `poll_timeout`.
//!
//! Invariants ([`Cluster::check_invariants`], besides each core's): no name resolves
//! to a down node; no ask is pending on a down node; pending asks within
//! `asks.pending_max`, each with a deadline, and `asked == answered + pending`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::rng::DetRng;
use plexus_actors::{ActorId, NodeId, Time};
use serde::{Deserialize, Serialize};

use crate::admitted::Admitted;
use crate::allowlist::Republish;
use crate::asks::{Answer, AskConfig, Asks};
use crate::delivery::{Delivery, DeliveryConfig, DeliveryEvent, Inbound};
use crate::membership::RefusedCounts;
use crate::membership::{Membership, MembershipConfig, MembershipEvent, Probe};
use crate::registry::{
    Claim, ClaimRefusals, ClaimRefused, Location, Registry, RegistryConfig, RegistryError,
    RegistryEvent,
};
use crate::wire::{ControlPacket, DataBody, Failure, Frame, TraceContext};
use plexus_vocab::identity::{NodeKey, SigCheck};
use plexus_vocab::resources::NodeMeta;

/// Everything tunable about one node's mesh cores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Membership and failure detection.
    pub membership: MembershipConfig,
    /// The registry.
    pub registry: RegistryConfig,
    /// Delivery links.
    pub delivery: DeliveryConfig,
    /// Asks.
    #[serde(default)]
    pub asks: AskConfig,
}

/// Something the driver (or simulator) should know.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterEvent {
    /// Membership changed.
    Member(MembershipEvent),
    /// A name's resolution changed.
    Registry(RegistryEvent),
    /// Something happened to frames this node sent.
    Delivery(DeliveryEvent),
    /// An ask this node sent is answered (exactly once per ask).
    Answer(Answer),
    /// Gossip the allowlist in force now, then report with
    /// [`Cluster::allowlist_published`].
    PublishAllowlist,
}

/// Gossip refused from peers ([`Cluster::refusals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Member statements refused.
    pub membership: RefusedCounts,
    /// Registry claims refused.
    pub registry: ClaimRefusals,
}

/// A request for [`Cluster::ask`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskRequest {
    /// The receiving actor.
    pub target: ActorId,
    /// Its message type's wire name.
    pub message_type: String,
    /// The encoded message.
    pub payload: bytes::Bytes,
    /// The sender's trace context.
    pub trace: Option<TraceContext>,
}

/// Why [`Cluster::ask`] did not take an ask. The request comes back inside
/// (boxed: the error stays small on the path that succeeds).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskRefused {
    /// The user window to the peer is full: back off until frames are acknowledged.
    #[error("the window to the peer is full")]
    WindowFull(Box<AskRequest>),
    /// `asks.pending_max` asks are pending already.
    #[error("too many asks pending")]
    TooMany(Box<AskRequest>),
    /// Membership has the peer dead or departed.
    #[error("the peer is down")]
    PeerDown(Box<AskRequest>),
    /// The peer is this node (the caller's mistake: local actors are asked locally).
    #[error("an ask addressed to this node itself")]
    ToSelf(Box<AskRequest>),
    /// The request is over the mesh's `message_bytes_max` (the caller's mistake).
    #[error("the request is over the mesh's bound on a message")]
    TooLarge(Box<AskRequest>),
}

impl AskRefused {
    /// Takes the request back.
    pub fn into_request(self) -> AskRequest {
        match self {
            AskRefused::WindowFull(r)
            | AskRefused::TooMany(r)
            | AskRefused::PeerDown(r)
            | AskRefused::ToSelf(r)
            | AskRefused::TooLarge(r) => *r,
        }
    }
}

/// How often tombstones are collected (each collection runs up to
/// `REGISTRY_GC_SLACK` late, and the next is due this long after it).
const REGISTRY_GC_INTERVAL: Duration = Duration::from_secs(10);
/// How late a collection may run: it waits for the node's next wake-up (a probe
/// tick, a second away at most by default) instead of waking the node itself, up
/// to this much past its due time.
const REGISTRY_GC_SLACK: Duration = Duration::from_secs(1);
/// Most registry claims piggybacked on one message.
const CLAIMS_PER_MESSAGE: usize = 8;
/// The RNG stream ask numbers are drawn from (apart from membership's).
const ASK_RNG_STREAM: u64 = 0xa5c5;

/// One node's mesh state.
pub struct Cluster {
    me: NodeId,
    membership: Membership,
    registry: Registry,
    delivery: Delivery,
    asks: Asks,
    republish: Republish,
    events: VecDeque<ClusterEvent>,
    /// The sharded registry's routing (idle for a full replica).
    shards: Shards,
    next_registry_gc: Time,
    /// The latest time handed in, for decisions taken on inputs without one.
    now: Time,
}

impl Cluster {
    /// A node that knows only itself. `incarnation` doubles as the delivery session.
    pub fn new(
        key: NodeKey,
        incarnation: u64,
        meta: NodeMeta,
        config: ClusterConfig,
        seed: u64,
        now: Time,
    ) -> Self {
        let me = key.node_id();
        let shards = Shards::new(config.registry.owners, now);
        Self {
            me,
            membership: Membership::new(
                key.clone(),
                incarnation,
                meta,
                config.membership,
                seed,
                now,
            ),
            registry: Registry::with_key(key, config.registry),
            delivery: Delivery::new(incarnation, config.delivery),
            asks: Asks::new(config.asks, DetRng::split(seed, ASK_RNG_STREAM).next_u64()),
            republish: Republish::default(),
            events: VecDeque::new(),
            shards,
            next_registry_gc: now + REGISTRY_GC_INTERVAL,
            now,
        }
    }

    /// Checks peers' signatures through `check`: the simulator shares one memo
    /// between all its nodes ([`SigCheck::Shared`]); a production node keeps the
    /// default, [`SigCheck::Direct`].
    pub fn set_sig_check(&mut self, check: SigCheck) {
        self.membership.set_sig_check(check.clone());
        self.registry.set_sig_check(check);
    }

    fn clock(&mut self, now: Time) {
        self.now = self.now.max(now);
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The membership core (read-only).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The registry core (read-only).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The digests of this node's membership view and name registry, as a sync
    /// offer carries them: equal digests mean equal views. Each is cached until
    /// its state changes, so asking again is cheap.
    pub fn state_digests(&mut self) -> ([u8; 32], [u8; 32]) {
        (
            self.membership.cached_view_digest(),
            self.registry.sync_digest(),
        )
    }

    /// The delivery core (read-only).
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The pending asks (read-only).
    pub fn asks(&self) -> &Asks {
        &self.asks
    }

    /// Gossip refused from peers, by core and reason: a rising count names a liar
    /// (or a broken peer) for an operator to look at.
    pub fn refusals(&self) -> Refusals {
        Refusals {
            membership: self.membership.stats().refused,
            registry: self.registry.refused(),
        }
    }

    /// Restricts the mesh to the nodes `admitted` (the allowlist's; `None`: anyone
    /// the transport lets in). Statements about, claims of and messages from others
    /// are ignored; members no longer admitted are dropped with their names.
    pub fn set_admitted(&mut self, now: Time, admitted: Option<Admitted>) {
        self.clock(now);
        self.membership.set_admitted(now, admitted);
        self.pump();
    }

    /// Where a name resolves. With a sharded registry, a name this node does not
    /// hold is not known yet: the lookup misses, and the node asks the name's
    /// owners (at its next input) and keeps asking while the name is looked up.
    pub fn lookup(&self, name: &str) -> Option<Location> {
        if !self.shards.enabled() {
            return self.registry.lookup(name);
        }
        match self.registry.lookup_held(name) {
            Some(found) => {
                self.shards.used(name);
                // Held for this node's own withdrawn claim only: the owners know
                // the rest. (A live claim of its own resolves here, as the
                // driver's copy of the names does.)
                if found.is_none() && !self.knows_name(name) {
                    self.shards.want(name, self.registry.config().watch_max);
                }
                found
            }
            None => {
                self.shards.want(name, self.registry.config().watch_max);
                None
            }
        }
    }

    /// Asks the owners about `name` now, as a lookup that misses does (a driver
    /// whose lookups do not reach the core calls this). Nothing for a full replica.
    pub fn want_name(&mut self, now: Time, name: &str) {
        self.clock(now);
        if self.shards.enabled() && !self.knows_name(name) {
            self.shards.want(name, self.registry.config().watch_max);
            self.pump();
        }
    }

    /// Sends the asks for names that [`Cluster::lookup`] found missing since the
    /// last input (`lookup` borrows the cluster shared, so it can only note
    /// them; the next input sends them otherwise). A driver that looks names up
    /// through `lookup` on behalf of something else, as the simulator's durable
    /// hosts do, calls this after; the daemon's driver uses
    /// [`Cluster::want_name`], which sends at once.
    pub fn send_wanted(&mut self, now: Time) {
        self.clock(now);
        if self.shards.has_wanted() {
            self.pump();
        }
    }

    /// Registers `name` for a local actor.
    pub fn register(
        &mut self,
        now: Time,
        name: &str,
        actor: ActorId,
    ) -> Result<Claim, RegistryError> {
        self.clock(now);
        let claim = self.registry.register(now, name, actor);
        self.pump();
        claim
    }

    /// Registers `name` for a local actor with precedence `rank` (see
    /// [`crate::registry::Registry::register_ranked`]).
    pub fn register_ranked(
        &mut self,
        now: Time,
        name: &str,
        actor: ActorId,
        rank: u64,
    ) -> Result<Claim, RegistryError> {
        self.clock(now);
        let claim = self.registry.register_ranked(now, name, actor, rank);
        self.pump();
        claim
    }

    /// Withdraws this node's claim on `name`.
    pub fn unregister(&mut self, now: Time, name: &str) -> bool {
        self.clock(now);
        let done = self.registry.unregister(now, name);
        self.pump();
        done
    }

    /// Changes what this node advertises.
    pub fn set_meta(&mut self, meta: NodeMeta) {
        self.membership.set_meta(meta);
        self.pump();
    }

    /// Announces departure.
    pub fn leave(&mut self) {
        self.membership.leave();
        self.pump();
    }

    /// A transport connected to `peer`.
    pub fn handle_discovered(&mut self, now: Time, peer: NodeId) {
        self.clock(now);
        self.membership.handle_discovered(now, peer);
        self.delivery.link_up(now, peer);
        self.pump();
    }

    /// The transport to `peer` came back.
    pub fn link_up(&mut self, now: Time, peer: NodeId) {
        self.clock(now);
        self.delivery.link_up(now, peer);
    }

    /// The transport to `peer` went down.
    pub fn link_down(&mut self, peer: NodeId) {
        self.delivery.link_down(peer);
    }

    /// The transport's last connection to `peer` closed (a crashed process's
    /// connections are reset by its kernel at once): the link is down, and the
    /// failure detector probes `peer` next instead of in its turn. Only a hint:
    /// `peer` is suspected only if that probe fails.
    pub fn connection_lost(&mut self, now: Time, peer: NodeId) {
        self.clock(now);
        self.delivery.link_down(peer);
        self.membership.link_lost(now, peer);
    }

    /// The transport was refused a connection to `peer` (its host answered, but
    /// nothing listens at its address): see [`Membership::link_refused`].
    pub fn connection_refused(&mut self, now: Time, peer: NodeId) {
        self.clock(now);
        self.membership.link_refused(now, peer);
    }

    /// Queues a tell ([`DataBody::Tell`]) for `peer`. The body comes back if the
    /// user window to `peer` is full, or if it is not a tell (asks go through
    /// [`Cluster::ask`], replies through [`Cluster::reply`]).
    pub fn send(
        &mut self,
        now: Time,
        peer: NodeId,
        body: Arc<DataBody>,
    ) -> Result<u64, Arc<DataBody>> {
        self.clock(now);
        if !matches!(*body, DataBody::Tell { .. }) {
            return Err(body);
        }
        self.delivery.send(now, peer, body)
    }

    /// Sends an ask to `peer`, waiting at most `timeout` (cut to
    /// `asks.timeout_max`) for the answer. Returns its number; its one
    /// [`ClusterEvent::Answer`] comes later. A refused ask gets no answer: the
    /// refusal is its outcome, with the request handed back.
    pub fn ask(
        &mut self,
        now: Time,
        peer: NodeId,
        request: AskRequest,
        timeout: Duration,
    ) -> Result<u64, AskRefused> {
        self.clock(now);
        if peer == self.me {
            return Err(AskRefused::ToSelf(Box::new(request)));
        }
        if self.membership.state_of(&peer).is_some_and(|s| s.is_down()) {
            return Err(AskRefused::PeerDown(Box::new(request)));
        }
        if self.asks.is_full() {
            return Err(AskRefused::TooMany(Box::new(request)));
        }
        let bytes = crate::wire::request_size_bytes(&request.message_type, &request.payload);
        if !self.delivery.config().fits(bytes) {
            return Err(AskRefused::TooLarge(Box::new(request)));
        }
        if !self
            .delivery
            .user_window(&peer)
            .admits(bytes, self.delivery.config())
        {
            return Err(AskRefused::WindowFull(Box::new(request)));
        }
        let corr = self.asks.allocate();
        let AskRequest {
            target,
            message_type,
            payload,
            trace,
        } = request;
        let body = Arc::new(DataBody::Ask {
            target,
            message_type,
            payload,
            corr,
            trace,
        });
        let sent = self.delivery.send(now, peer, body).is_ok();
        self.asks.insert(now, corr, peer, timeout);
        if !sent {
            // Cannot happen (the window admitted it above); if it did, the ask still
            // gets its one answer.
            self.asks.handle_failure(peer, corr, Failure::MailboxFull);
            self.pump();
        }
        Ok(corr)
    }

    /// Queues the reply to ask `corr` from `to`. The body comes back if the reply
    /// window to `to` is full (the asker then times out).
    pub fn reply(
        &mut self,
        now: Time,
        to: NodeId,
        corr: u64,
        result: Result<Vec<u8>, Failure>,
    ) -> Result<u64, Arc<DataBody>> {
        self.clock(now);
        self.delivery
            .send(now, to, Arc::new(DataBody::Reply { corr, result }))
    }

    /// Whether a small tell or ask to `peer` would be accepted now.
    pub fn has_room(&self, peer: &NodeId) -> bool {
        self.delivery.has_room(peer)
    }

    /// The outcome of a frame returned by `handle_frame`.
    pub fn complete(&mut self, now: Time, from: NodeId, seq: u64, outcome: Result<(), Failure>) {
        self.clock(now);
        self.delivery.complete(now, from, seq, outcome);
    }

    /// Makes a publication of the allowlist due (this node published an update,
    /// or a gossip peer subscribed); [`ClusterEvent::PublishAllowlist`] follows,
    /// spaced by [`crate::allowlist::PUBLISH_SPACING`].
    pub fn publish_allowlist_soon(&mut self, now: Time) {
        self.clock(now);
        self.republish.request();
        self.pump();
    }

    /// The driver's report on a [`ClusterEvent::PublishAllowlist`]: `sent` if gossip
    /// took the document. Until then it is asked again every `PUBLISH_SPACING`.
    pub fn allowlist_published(&mut self, sent: bool) {
        self.republish.published(sent);
    }

    /// Advances every timer.
    pub fn handle_timeout(&mut self, now: Time) {
        self.clock(now);
        // Each core only when its own deadline has come: most wake-ups are for one of
        // them (a delayed ack, say), and touching the others' state costs cache misses.
        if self.asks.poll_timeout().is_some_and(|t| t <= now) {
            self.asks.handle_timeout(now);
        }
        if now >= self.membership.poll_timeout() {
            self.membership.handle_timeout(now);
        }
        if self.delivery.poll_timeout().is_some_and(|t| t <= now) {
            self.delivery.handle_timeout(now);
        }
        if now >= self.next_registry_gc {
            self.registry.handle_timeout(now);
            self.next_registry_gc = now + REGISTRY_GC_INTERVAL;
        }
        self.shards_tick(now);
        self.pump();
    }

    /// Handles a frame from `from`, the transport-authenticated sender. Returns a
    /// tell or an ask to deliver: deliver it, then call [`Cluster::complete`] with its
    /// seq before handing in the next data frame from the same peer. Replies are
    /// handled here: they come out as [`ClusterEvent::Answer`].
    pub fn handle_frame(
        &mut self,
        now: Time,
        from: NodeId,
        frame: Frame,
    ) -> Option<(u64, Arc<DataBody>)> {
        self.clock(now);
        let out = match frame {
            Frame::Control(_) if !self.membership.is_admitted(&from) => {
                // The driver admits peers; this only matters between an allowlist
                // update and the disconnect it causes.
                self.membership.handle_message(now, from, Probe::Gossip);
                None
            }
            Frame::Control(packet) => {
                for update in packet.members {
                    self.membership.apply(now, from, update);
                }
                // Apply membership first so claims from members now known dead are dropped.
                self.pump();
                // With a sync the claims are the partner's whole registry: only its own
                // claims are news to spread (see `Membership`'s sync handling).
                let full_state =
                    matches!(packet.probe, Probe::Sync { .. } | Probe::SyncReply { .. });
                // Most claims of a sync are known already: that costs one lookup (or,
                // for a sync in snapshot order, one step of a walk), and the
                // claimant's state is looked up only for news.
                let news = if full_state {
                    self.registry.news_in_snapshot(&packet.claims)
                } else {
                    None
                };
                for (i, claim) in packet.claims.into_iter().enumerate() {
                    let is_news = match news.as_ref().and_then(|n| n.get(i)) {
                        Some(known) => *known,
                        None => self.registry.is_news(&claim),
                    };
                    if !is_news {
                        self.shards_stale_claim(from, &claim);
                        continue;
                    }
                    if !self.membership.is_admitted(&claim.node) {
                        self.registry.count_refused(ClaimRefused::NotAdmitted);
                        continue;
                    }
                    let down = self
                        .membership
                        .state_of(&claim.node)
                        .is_some_and(|s| s.is_down());
                    let rebroadcast = !full_state || claim.node == from;
                    self.registry.merge_with(now, claim, down, rebroadcast);
                }
                if let Probe::SyncOffer { names, .. } = &packet.probe
                    && !self.shards.enabled()
                    && *names != self.registry.sync_digest()
                {
                    self.membership.send_sync(now, from);
                }
                match &packet.probe {
                    Probe::Resolve { names } => self.shards_resolve(now, from, names.clone()),
                    Probe::Names { resolved } => self.shards_resolved(now, from, resolved),
                    _ => {}
                }
                self.membership.handle_message(now, from, packet.probe);
                None
            }
            Frame::Data(data) => match self.delivery.handle_data(now, from, data) {
                Inbound::Deliver { seq, body } => match &*body {
                    DataBody::Reply { corr, result } => {
                        self.asks.handle_reply(from, *corr, result.clone());
                        self.delivery.complete(now, from, seq, Ok(()));
                        None
                    }
                    DataBody::Tell { .. } | DataBody::Ask { .. } => Some((seq, body)),
                    // Delivery joins chunks itself and never hands one out.
                    DataBody::Chunk { .. } => {
                        self.delivery.complete(
                            now,
                            from,
                            seq,
                            Err(Failure::Malformed("a stray chunk".into())),
                        );
                        None
                    }
                },
                Inbound::Duplicate | Inbound::Dropped | Inbound::Absorbed => None,
            },
            Frame::Ack(ack) => {
                self.delivery.handle_ack(now, from, ack);
                None
            }
            Frame::Close(close) => {
                self.delivery.handle_close(now, from, close);
                None
            }
        };
        self.pump();
        out
    }

    /// The next frame to send, with gossip piggybacked on membership messages.
    pub fn poll_transmit(&mut self, now: Time) -> Option<(NodeId, Frame)> {
        self.clock(now);
        if let Some((to, mut probe)) = self.membership.poll_transmit() {
            let sharded = self.shards.enabled();
            if let Probe::SyncOffer { names, .. } = &mut probe {
                // A sharded registry is not synced whole: its claims travel to
                // their owners (`shards`).
                *names = if sharded {
                    [0; 32]
                } else {
                    self.registry.sync_digest()
                };
            }
            let members = self.membership.take_gossip(self.now, usize::MAX);
            let claims = match probe {
                Probe::Sync { .. } | Probe::SyncReply { .. } if sharded => Vec::new(),
                Probe::Sync { .. } | Probe::SyncReply { .. } => self.registry.snapshot(),
                _ => self
                    .registry
                    .take_gossip(CLAIMS_PER_MESSAGE, self.membership.live_count()),
            };
            return Some((
                to,
                Frame::Control(ControlPacket {
                    probe,
                    members,
                    claims,
                }),
            ));
        }
        if let Some((to, probe, claims)) = self.shards.pop_outbox() {
            // No membership gossip rides along: these packets go to a name's few
            // owners, and gossip taken for them is gossip the probes do not carry
            // to random members (in a 1,000-node join it tripled the updates
            // applied).
            return Some((
                to,
                Frame::Control(ControlPacket {
                    probe,
                    members: Vec::new(),
                    claims,
                }),
            ));
        }
        self.delivery.poll_transmit(now)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClusterEvent> {
        crate::broadcast::pop_shrinking(&mut self.events)
    }

    /// When `handle_timeout` must next run.
    pub fn poll_timeout(&self) -> Time {
        let mut t = self
            .membership
            .poll_timeout()
            .min(self.next_registry_gc + REGISTRY_GC_SLACK);
        for d in [
            self.delivery.poll_timeout(),
            self.asks.poll_timeout(),
            self.republish.poll_timeout(),
            self.shards.next_tick(),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(d);
        }
        t
    }

    /// Moves events between the cores and out to the driver, until none has more.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(event) = self.membership.poll_event() {
                moved = true;
                match &event {
                    MembershipEvent::Died(node) | MembershipEvent::Left(node) => {
                        self.registry.remove_node(node);
                        self.delivery.peer_failed(*node);
                        self.asks.peer_down(*node);
                    }
                    MembershipEvent::Refuted { .. } => {
                        // Others may have dropped our claims while they thought us
                        // dead: spread them again.
                        self.registry.announce_mine();
                    }
                    MembershipEvent::Joined(node) | MembershipEvent::Updated(node) => {
                        let theirs = self
                            .membership
                            .member(node)
                            .map_or(0, |m| m.meta().allowlist_version);
                        if theirs < self.membership.meta().allowlist_version {
                            self.republish.request();
                        }
                    }
                    _ => {}
                }
                self.shards_on_member(&event);
                self.events.push_back(ClusterEvent::Member(event));
            }
            while let Some(event) = self.registry.poll_event() {
                moved = true;
                if let RegistryEvent::ConflictLost { name, .. } = &event {
                    // Two nodes claimed the name concurrently and the other won:
                    // withdraw ours, so the name has one holder once the winner is
                    // gone too. (The withdrawal's own events follow.)
                    let now = self.now;
                    self.registry.unregister(now, name);
                }
                self.events.push_back(ClusterEvent::Registry(event));
            }
            while let Some(event) = self.delivery.poll_event() {
                moved = true;
                match &event {
                    DeliveryEvent::Refused {
                        peer,
                        failure,
                        body,
                        ..
                    } => {
                        if let DataBody::Ask { corr, .. } = &**body {
                            self.asks.handle_failure(*peer, *corr, failure.clone());
                        }
                    }
                    DeliveryEvent::Unreachable { peer, frames } => {
                        for (_, body) in frames {
                            if let DataBody::Ask { corr, .. } = &**body {
                                self.asks.handle_failure(*peer, *corr, Failure::Unreachable);
                            }
                        }
                    }
                    _ => {}
                }
                self.events.push_back(ClusterEvent::Delivery(event));
            }
            while let Some(answer) = self.asks.poll_answer() {
                moved = true;
                self.events.push_back(ClusterEvent::Answer(answer));
            }
            moved |= self.shards_pump();
            if !moved {
                break;
            }
        }
        if self.republish.poll(self.now) {
            self.events.push_back(ClusterEvent::PublishAllowlist);
        }
    }

    /// Checks every core's invariants and the glue between them.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.membership.check_invariants()?;
        self.registry.check_invariants()?;
        self.delivery.check_invariants()?;
        self.asks.check_invariants()?;
        self.check_shards()?;
        // The down members first, in one walk of the view (usually none): a lookup
        // per pending ask and per name instead took a twentieth of a simulated
        // 1,000-node hour.
        let mut down: Vec<NodeId> = self
            .membership
            .members()
            .filter(|m| m.state.is_down())
            .map(|m| m.id())
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        down.sort_unstable();
        // (This node is never among its members: the membership check says so.)
        let is_down = |node: &NodeId| down.binary_search(node).is_ok();
        for peer in self.asks.peers() {
            if is_down(&peer) {
                return Err(format!("an ask is pending on down node {peer:?}"));
            }
        }
        for (name, location) in self.registry.locations() {
            if is_down(&location.node) {
                return Err(format!(
                    "`{name}` resolves to down node {:?}",
                    location.node
                ));
            }
        }
        Ok(())
    }
}

mod shards;
use shards::Shards;
pub use shards::{NAMES_PER_RESOLVE, OUTBOX_MAX, ShardStats};

#[cfg(test)]
mod tests;
