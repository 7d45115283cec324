//! One node's durable-actor service: its replica, the activations it hosts, the
//! forwarding entries left behind by actors that moved away, and its client
//! sessions. Sans-IO like every core: the driver feeds it messages and time, runs
//! the user code it asks for, and sends what it returns.
//!
//! Routing rules:
//! * a replica request is answered by this node's replica;
//! * a message for an actor hosted here goes to its activation; for an actor that
//!   moved away less than `forward_ttl` ago, it is forwarded to the new host and its
//!   sender is told where the actor went; otherwise the sender is told the actor is
//!   not here (it looks it up again);
//! * acks, nacks and redirects go to the sender they name: an activation here or a
//!   client session. They are not forwarded after the sender moved (the node
//!   forwarding them would not be the stream's peer): the moved sender resends
//!   and hears again.
//!
//! # Trust: who may say what
//!
//! Nodes are admitted, not trusted. [`DurableNode::handle`] takes the sender the
//! transport authenticated (the Noise peer id) with every message, and refuses,
//! with a typed [`Refusal`] counted in [`NodeStats::refused`], any message that
//! sender may not send:
//!
//! * **Origin.** Every field naming the message's origin (`from` of replica
//!   requests, replica replies, handoffs and handoff replies; `reply_to` of an
//!   envelope on its first hop) must be the sender.
//! * **Ballots are their node's.** A ballot names the node that activated under
//!   it. A replica request (fence, write, check, drop) carries the sender's own
//!   ballot; an ack's ballot is the acking node's; a redirect's `(node, ballot)`
//!   agree; a handed-off record was written under the handing node's ballot; a
//!   handoff reply's ballot is the target's. So nothing done to a slot can be
//!   passed off as another node's doing.
//! * **Bounded ballots.** A ballot more than [`crate::wire::BALLOT_STEP_MAX`]
//!   rounds above the highest this node knows for the key (its replica's promise)
//!   is refused, so no single message can push a key near `u64::MAX`; all ballot,
//!   sequence and request arithmetic saturates or is checked.
//! * **Replica replies** count only from replicas the activation asked (members of
//!   the sets it fences or commits to). A promise naming a record at or above the
//!   fencing ballot is ignored (no honest replica can hold one).
//! * **Holders.** A replica drops a key only for the ballot holding its promise
//!   (not a higher one that never fenced). A handoff is restored only once a
//!   replica confirms it holds exactly the handed-off record (order and blake3
//!   digest): a node cannot hand over a state the replicas do not hold. A handoff
//!   reply counts only from the migration's target.
//! * **Standbys.** A prepare is the same claim as a handoff (origin, the
//!   sender's own ballot, a bounded step); the standby is built only from this
//!   node's own replica, only from a record of the asker's own activation, at
//!   most `standbys_max` at once for at most `standby_ttl` each, and used only by
//!   the handoff it was prepared for. Its answer counts only from the
//!   migration's target.
//! * **Streams.** An ack, nack or redirect for a stream counts only from the node
//!   the stream sends to (or last sent to), and an ack or nack cannot reach past
//!   the last number the stream gave.
//! * **Commands** (activate, migrate, reconfigure, release) count only from this
//!   node and from the node the registry resolves the scheduler to
//!   ([`DurableNode::set_commander`]); commands are not signed, so that is the
//!   only issuer that can be checked. A command from another node that comes
//!   while the registry names no scheduler (its host died) is refused but kept
//!   for a short while (bounded), and runs if the registry names its sender the
//!   commander within that time: a scheduler that just took over commands
//!   before every registry shows it. A liar's kept commands run only if the
//!   registry names the liar within that time, when it could command anyway;
//!   while a commander is named, nobody else's commands are kept. A `Release`
//!   deletes this node's copy of the state, so one from the commander runs only
//!   once the scheduler's replicas show the commander holds the scheduler
//!   ([`DurableNode::set_authority`]): a former host the registry still names
//!   cannot release anything.
//!
//! What a malicious admitted node can still do, and what would close it:
//! * fence any key under its own ballot (replicas cannot tell a node the
//!   scheduler placed the actor on from any other without signed placement
//!   grants), and then write or drop under that ballot: the holder steps down,
//!   and the liar's node id is in the promise, so the act is attributable;
//! * as a member of a replica set, answer its fences with a made-up record
//!   (below the fencing ballot) or refuse them: one Byzantine replica among a
//!   crash-tolerant set is not tolerated (that needs signed records);
//! * forward an envelope (hops > 0) that names another sender, or send one as a
//!   durable actor or client session it does not host: envelope senders are not
//!   signed. Acks of such an envelope still go back to the node it names, not to
//!   the liar;
//! * make an activation step down by sending it an envelope claiming a ballot one
//!   round above it (the scheduler activates it again);
//! * if the registry resolves the scheduler to it, command this node (the
//!   registry's claims are the registry's to authenticate).
//!
//! It can no longer: act under another node's identity or ballot, wedge a key at
//! `u64::MAX`, drop a key it does not hold the promise of, hand over a made-up
//! state, ack, nack or redirect a stream it is not the peer of (so it cannot make
//! acknowledged messages vanish), answer replica requests it was not asked, or
//! command a node unless it hosts the scheduler.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use plexus_actors::envelope::TraceContext;
use plexus_actors::migratable::Snapshot;
use plexus_actors::{NodeId, Time};

use crate::activation::{
    Activation, ActivationConfig, ActivationEvent, Applied, Arrival, Deactivation, DurableState,
    Start, Warm,
};
use crate::replica::{Replica, Slot, SlotStore};
use crate::stream::{StreamEvent, Streams};
use crate::types::{Ballot, DurableKey, Record, ReplicaSet, SenderId};
use crate::wire::{
    Command, DurableMsg, Envelope, HOPS_MAX, HandedRecord, Handoff, Prepare, Redirect, Refusal,
    ReplicaReply, ballot_step_ok,
};

/// Settings of a node's durable service.
#[derive(Clone, Copy, Debug)]
pub struct NodeConfig {
    /// Settings of each activation.
    pub activation: ActivationConfig,
    /// How long a moved actor's old host forwards its messages.
    pub forward_ttl: Duration,
    /// Most forwarding entries kept; the oldest goes first.
    pub forwards_max: usize,
    /// Most activations hosted; further activations are refused.
    pub actors_max: usize,
    /// Most client sessions open at once; further opens are refused.
    pub sessions_max: usize,
    /// Most commands kept from a node that is not (yet) the commander; past it
    /// the oldest is dropped (the scheduler re-orders what did not take).
    pub held_commands_max: usize,
    /// How long such a command is kept: a newly placed scheduler commands at
    /// once, before every node's registry shows it, and its orders run here once
    /// the registry names it within this time; older ones are dropped.
    pub held_command_ttl: Duration,
    /// Most warm standbys held for migrations to this node (each a decoded
    /// state and built user code); past it a `Prepare` is refused and that
    /// migration restores during its pause.
    pub standbys_max: usize,
    /// How long a warm standby waits for its handoff before it is dropped.
    pub standby_ttl: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            activation: ActivationConfig::default(),
            forward_ttl: Duration::from_secs(30),
            forwards_max: 65_536,
            actors_max: 100_000,
            sessions_max: 10_000,
            held_commands_max: 256,
            held_command_ttl: Duration::from_secs(2),
            standbys_max: 16,
            standby_ttl: Duration::from_secs(10),
        }
    }
}

/// What the service tells its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeEvent {
    /// Something about a hosted actor (run its user code, register it, ...).
    Actor {
        /// The actor.
        key: DurableKey,
        /// What.
        event: ActivationEvent,
    },
    /// A client session's messages were acknowledged.
    Session {
        /// The session.
        id: u64,
        /// What.
        event: StreamEvent,
    },
    /// A command could not be carried out here.
    Refused {
        /// The actor.
        key: DurableKey,
        /// Why.
        why: String,
    },
    /// A live migration to this node asks for a warm standby: build `key`'s
    /// user code from `user` now and keep it aside, then answer with
    /// [`DurableNode::prepared`]. The activation the handoff starts later says
    /// whether to use it ([`ActivationEvent::Restore`]'s `warm`).
    Prepare {
        /// The actor.
        key: DurableKey,
        /// The record `user` comes from.
        order: (Ballot, u64),
        /// What the actor runs (from the source; the handoff must name the same).
        spec: Vec<u8>,
        /// The user code's state in that record.
        user: Snapshot,
    },
    /// Drop the standby built for `key`: it expired, or the handoff did not
    /// match it.
    Unprepared {
        /// The actor.
        key: DurableKey,
    },
    /// A scheduler's `Migrate` could not start here (report it to the scheduler,
    /// so it need not wait to find out).
    MoveRefused {
        /// The actor.
        key: DurableKey,
        /// The target.
        to: NodeId,
        /// Why.
        why: String,
    },
}

/// Counters of a node's service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Messages forwarded for actors that moved away.
    pub forwarded: u64,
    /// Messages for actors not here (senders told to look again).
    pub not_here: u64,
    /// Migrations completed from this node.
    pub migrations_out: u64,
    /// Activations started here.
    pub activations: u64,
    /// Commits completed by actors here.
    pub commits: u64,
    /// Commands kept from a node before the registry named it the commander,
    /// run once it did ([`DurableNode::set_commander`]).
    pub held_commands_run: u64,
    /// Releases from the commander dropped because the scheduler's replicas did
    /// not show it holds the scheduler (a former host, or no answer in time).
    pub releases_unconfirmed: u64,
    /// Messages refused, by reason.
    pub refused: RefusalStats,
}

/// Messages a node refused, by [`Refusal`] reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalStats {
    /// [`Refusal::ForgedOrigin`].
    pub forged_origin: u64,
    /// [`Refusal::ForeignBallot`].
    pub foreign_ballot: u64,
    /// [`Refusal::BallotStep`].
    pub ballot_step: u64,
    /// [`Refusal::NotReplica`].
    pub not_replica: u64,
    /// [`Refusal::NotHolder`].
    pub not_holder: u64,
    /// [`Refusal::NotStreamPeer`].
    pub not_stream_peer: u64,
    /// [`Refusal::CounterRange`].
    pub counter_range: u64,
    /// [`Refusal::NotCommander`].
    pub not_commander: u64,
}

impl RefusalStats {
    fn count(&mut self, why: &Refusal) {
        let c = match why {
            Refusal::ForgedOrigin { .. } => &mut self.forged_origin,
            Refusal::ForeignBallot { .. } => &mut self.foreign_ballot,
            Refusal::BallotStep { .. } => &mut self.ballot_step,
            Refusal::NotReplica { .. } => &mut self.not_replica,
            Refusal::NotHolder { .. } => &mut self.not_holder,
            Refusal::NotStreamPeer { .. } => &mut self.not_stream_peer,
            Refusal::CounterRange { .. } => &mut self.counter_range,
            Refusal::NotCommander { .. } => &mut self.not_commander,
        };
        *c = c.saturating_add(1);
    }

    /// Every refusal.
    pub fn total(&self) -> u64 {
        [
            self.forged_origin,
            self.foreign_ballot,
            self.ballot_step,
            self.not_replica,
            self.not_holder,
            self.not_stream_peer,
            self.counter_range,
            self.not_commander,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

fn origin(claimed: NodeId, sender: NodeId) -> Result<(), Refusal> {
    if claimed == sender {
        Ok(())
    } else {
        Err(Refusal::ForgedOrigin { claimed, sender })
    }
}

/// A warm standby held for a migration to this node (see
/// [`DurableMsg::Prepare`]).
#[derive(Debug)]
struct Standby {
    warm: Warm,
    spec: Vec<u8>,
    source: NodeId,
    migration: u64,
    /// The owner built the user code ([`DurableNode::prepared`]).
    ready: bool,
    until: Time,
}

#[derive(Clone, Copy, Debug)]
struct Forward {
    node: NodeId,
    ballot: Ballot,
    until: Time,
}

/// One node's durable service.
pub struct DurableNode<S: SlotStore> {
    me: NodeId,
    config: NodeConfig,
    replica: Replica<S>,
    actors: BTreeMap<DurableKey, Activation>,
    forwards: BTreeMap<DurableKey, Forward>,
    sessions: BTreeMap<u64, Streams>,
    touched: BTreeSet<DurableKey>,
    deadlines: BTreeMap<DurableKey, Time>,
    by_deadline: BTreeSet<(Time, DurableKey)>,
    transmit: VecDeque<(NodeId, DurableMsg)>,
    events: VecDeque<NodeEvent>,
    /// Each activation gets its own range of request numbers.
    next_req_base: u64,
    /// The node that may command this one besides itself (the scheduler's host).
    commander: Option<NodeId>,
    /// Commands from other nodes that came while the registry named no
    /// scheduler, refused for now but kept, oldest first, in case the registry
    /// names their sender the commander soon (a new scheduler's first orders);
    /// bounded by `held_commands_max` and `held_command_ttl`.
    held_commands: VecDeque<(Time, NodeId, Command)>,
    /// The scheduler's key and replica set: a `Release` from another node runs
    /// only once a majority of that set shows the sender holds the scheduler
    /// (see [`DurableNode::set_authority`]).
    authority: Option<(DurableKey, ReplicaSet)>,
    /// Releases waiting for that check, by request number (below 2^32: the
    /// activations' numbers start above); at most `held_commands_max`.
    releases: BTreeMap<u64, PendingRelease>,
    next_check_req: u64,
    /// Warm standbys for migrations to this node, at most `standbys_max`.
    standbys: BTreeMap<DurableKey, Standby>,
    /// Counters.
    pub stats: NodeStats,
}

/// A `Release` from the commander, waiting for the scheduler's replicas to
/// show the commander holds the scheduler now.
#[derive(Clone, Debug)]
struct PendingRelease {
    key: DurableKey,
    commander: NodeId,
    /// The highest promise each replica of the scheduler's set reported.
    promised: BTreeMap<NodeId, Ballot>,
    until: Time,
}

impl<S: SlotStore> DurableNode<S> {
    /// A service for node `me` with its replica over `store`.
    pub fn new(me: NodeId, config: NodeConfig, store: S) -> Self {
        Self {
            me,
            config,
            replica: Replica::new(store),
            actors: BTreeMap::new(),
            forwards: BTreeMap::new(),
            sessions: BTreeMap::new(),
            touched: BTreeSet::new(),
            deadlines: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_req_base: 1 << 32,
            commander: None,
            held_commands: VecDeque::new(),
            authority: None,
            releases: BTreeMap::new(),
            standbys: BTreeMap::new(),
            next_check_req: 1,
            stats: NodeStats::default(),
        }
    }

    /// This node.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Gives the replica's store back (a simulated crash keeps the disk).
    pub fn into_store(self) -> S {
        self.replica.into_store()
    }

    /// The replica (for listings and checkers).
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The activations hosted here, restoring or active.
    pub fn actors(&self) -> impl Iterator<Item = (&DurableKey, &Activation)> {
        self.actors.iter()
    }

    /// The activation of `key`, if hosted here.
    pub fn actor(&self, key: &DurableKey) -> Option<&Activation> {
        self.actors.get(key)
    }

    /// Where a moved actor went, if this node still forwards for it.
    pub fn forward_of(&self, key: &DurableKey) -> Option<(NodeId, Ballot)> {
        self.forwards.get(key).map(|f| (f.node, f.ballot))
    }

    // ----- inputs -----

    /// Says which node may command this one besides itself: the node the
    /// cluster registry resolves the scheduler to (`None`: no one else). The
    /// driver updates it whenever its registry view may have changed.
    ///
    /// Commands that node sent in the last `held_command_ttl` while the registry
    /// named no commander (refused as [`Refusal::NotCommander`], and kept) run
    /// now, in the order they came: a scheduler that just took over from a dead
    /// host orders at once, and this node's registry may show it a little later.
    /// Commands from a node other than the named commander are never kept.
    pub fn set_commander(&mut self, now: Time, node: Option<NodeId>) {
        self.commander = node;
        let ttl = self.config.held_command_ttl;
        self.held_commands
            .retain(|(at, _, _)| now.saturating_since(*at) < ttl);
        let Some(commander) = node else { return };
        if !self
            .held_commands
            .iter()
            .any(|(_, from, _)| *from == commander)
        {
            return;
        }
        let (now_valid, rest) = std::mem::take(&mut self.held_commands)
            .into_iter()
            .partition::<VecDeque<_>, _>(|(_, from, _)| *from == commander);
        self.held_commands = rest;
        for (_, from, c) in now_valid {
            self.stats.held_commands_run += 1;
            match c {
                // A kept release is checked as a fresh one would be.
                Command::Release { key } => self.check_release(now, from, key),
                c => self.command(now, c),
            }
        }
    }

    /// Names the scheduler's key and replica set (`None`: releases are not
    /// checked). A `Release` deletes this node's copy of an actor's state, so
    /// one from the commander runs only once a majority of the scheduler's
    /// replicas show the commander's ballot is the newest they promised: a
    /// node whose registry still names a former scheduler host (it moved, and
    /// the news has not arrived) does not take that host's word for it.
    pub fn set_authority(&mut self, authority: Option<(DurableKey, ReplicaSet)>) {
        self.authority = authority;
    }

    /// Asks the scheduler's replicas who holds it before `key` is released for
    /// `commander`.
    fn check_release(&mut self, now: Time, commander: NodeId, key: DurableKey) {
        let Some((sched, set)) = self.authority.clone() else {
            self.release(&key);
            return;
        };
        if self.releases.len() >= self.config.held_commands_max.max(1) {
            self.stats.releases_unconfirmed += 1;
            return;
        }
        let req = self.next_check_req;
        self.next_check_req = if req >= (1 << 32) - 1 { 1 } else { req + 1 };
        self.releases.insert(
            req,
            PendingRelease {
                key,
                commander,
                promised: BTreeMap::new(),
                until: now + self.config.held_command_ttl,
            },
        );
        for &n in set.nodes() {
            // Round zero (under this node's name, as every ballot it sends): every
            // replica that promised anything answers with what it promised.
            self.transmit.push_back((
                n,
                DurableMsg::Replica {
                    from: self.me,
                    req,
                    key: sched.clone(),
                    op: crate::wire::ReplicaOp::Check {
                        ballot: Ballot {
                            round: 0,
                            node: self.me,
                        },
                    },
                },
            ));
        }
    }

    /// A scheduler replica answered a release check; once every replica of the
    /// set answered, the release is decided (at the deadline, on what came).
    fn on_release_check(&mut self, from: NodeId, req: u64, reply: &ReplicaReply) {
        let Some((_, set)) = &self.authority else {
            return;
        };
        if !set.contains(&from) {
            return;
        }
        let all = set.len();
        let Some(p) = self.releases.get_mut(&req) else {
            return;
        };
        let promised = match reply {
            ReplicaReply::Refused { promised } => *promised,
            _ => Ballot::ZERO,
        };
        p.promised.insert(from, promised);
        if p.promised.len() >= all
            && let Some(p) = self.releases.remove(&req)
        {
            self.decide_release(p);
        }
    }

    /// Releases iff a majority of the scheduler's set promised one ballot of the
    /// commander's and no replica promised anything newer: the commander holds
    /// the scheduler. One lying replica cannot make a former host pass (the
    /// replicas the new host fenced outnumber it), only block a release, which
    /// the scheduler orders again.
    fn decide_release(&mut self, p: PendingRelease) {
        let quorum = self
            .authority
            .as_ref()
            .map_or(usize::MAX, |(_, s)| s.quorum());
        let newest = p.promised.values().max().copied().unwrap_or(Ballot::ZERO);
        let agreeing = p.promised.values().filter(|b| **b == newest).count();
        if newest != Ballot::ZERO && newest.node == p.commander && agreeing >= quorum {
            self.release(&p.key);
        } else {
            self.stats.releases_unconfirmed += 1;
        }
    }

    /// A message from node `from`, as the transport authenticated it (or from
    /// this node: the driver loops back messages a node sends itself). A message
    /// `from` may not send is refused, changes nothing, and is counted in
    /// [`NodeStats::refused`]; see the module docs for the rules.
    pub fn handle(&mut self, now: Time, from: NodeId, msg: DurableMsg) -> Result<(), Refusal> {
        let result = self.admit(now, from, msg);
        if let Err(why) = &result {
            self.stats.refused.count(why);
        }
        result
    }

    fn admit(&mut self, now: Time, from: NodeId, msg: DurableMsg) -> Result<(), Refusal> {
        match msg {
            DurableMsg::Replica {
                from: claimed,
                req,
                key,
                op,
            } => {
                origin(claimed, from)?;
                let ballot = op.ballot();
                // A node fences, writes, checks and drops only under its own
                // ballots, so whatever it does to a slot is attributable to it.
                if ballot.node != from {
                    return Err(Refusal::ForeignBallot {
                        ballot,
                        sender: from,
                    });
                }
                let known = self.replica.promised(&key);
                if !ballot_step_ok(ballot, known) {
                    return Err(Refusal::BallotStep { ballot, known });
                }
                let reply = self.replica.handle(&key, &op);
                self.transmit.push_back((
                    from,
                    DurableMsg::ReplicaReply {
                        from: self.me,
                        req,
                        key,
                        reply,
                    },
                ));
            }
            DurableMsg::ReplicaReply {
                from: claimed,
                req,
                key,
                reply,
            } => {
                origin(claimed, from)?;
                if self.releases.contains_key(&req)
                    && self.authority.as_ref().is_some_and(|(k, _)| *k == key)
                {
                    self.on_release_check(from, req, &reply);
                    return Ok(());
                }
                if let Some(a) = self.actors.get_mut(&key) {
                    if !a.asks(&from) {
                        return Err(Refusal::NotReplica { sender: from });
                    }
                    a.on_replica_reply(now, from, req, reply);
                    self.touched.insert(key);
                }
            }
            DurableMsg::Envelope(env) => {
                // The first hop comes from the sender's own node; later hops from
                // forwarders (whose word on `reply_to` the receiver cannot check:
                // see the module docs).
                if env.hops == 0 {
                    origin(env.reply_to, from)?;
                }
                self.route_envelope(now, env);
            }
            DurableMsg::Ack(ack) => {
                if ack.ballot.node != from {
                    return Err(Refusal::ForeignBallot {
                        ballot: ack.ballot,
                        sender: from,
                    });
                }
                self.check_stream_reply(&ack.to, &ack.key, from, Some((ack.up_to, false)))?;
                match ack.to.clone() {
                    SenderId::Actor(k) => {
                        if let Some(a) = self.actors.get_mut(&k) {
                            a.on_ack(now, ack);
                            self.touched.insert(k);
                        }
                    }
                    SenderId::Client(id) => {
                        if let Some(s) = self.sessions.get_mut(&id) {
                            s.on_ack(now, &ack.key, ack.up_to, ack.ballot, ack.replies);
                        }
                    }
                }
            }
            DurableMsg::Nack(nack) => {
                self.check_stream_reply(&nack.to, &nack.key, from, Some((nack.expected, true)))?;
                match nack.to.clone() {
                    SenderId::Actor(k) => {
                        if let Some(a) = self.actors.get_mut(&k) {
                            a.on_nack(now, nack);
                            self.touched.insert(k);
                        }
                    }
                    SenderId::Client(id) => {
                        if let Some(s) = self.sessions.get_mut(&id) {
                            let wait = Duration::from_millis(u64::from(nack.retry_after_ms));
                            s.on_nack(now, &nack.key, nack.expected, wait);
                        }
                    }
                }
            }
            DurableMsg::Redirect(r) => {
                if let Some((node, ballot)) = r.node
                    && ballot.node != node
                {
                    return Err(Refusal::ForeignBallot {
                        ballot,
                        sender: from,
                    });
                }
                self.check_stream_reply(&r.to, &r.key, from, None)?;
                match r.to.clone() {
                    SenderId::Actor(k) => {
                        if let Some(a) = self.actors.get_mut(&k) {
                            a.on_redirect(now, r);
                            self.touched.insert(k);
                        }
                    }
                    SenderId::Client(id) => {
                        if let Some(s) = self.sessions.get_mut(&id) {
                            s.on_redirect(now, &r.key, r.node);
                        }
                    }
                }
            }
            DurableMsg::Handoff(h) => {
                // The holder hands off the record it committed under its own
                // ballot; the target then checks with the replicas that they hold
                // exactly that record (see `activation`).
                self.holders_record(from, h.from, &h.key, h.record.ballot())?;
                self.handoff(now, h);
            }
            DurableMsg::HandoffReply {
                key,
                migration,
                from: claimed,
                result,
            } => {
                origin(claimed, from)?;
                if let Some(a) = self.actors.get_mut(&key) {
                    a.on_handoff_reply(now, from, migration, result)?;
                    self.touched.insert(key);
                }
            }
            DurableMsg::Prepare(p) => {
                // As with a handoff; and only this node's replica's copy is used.
                self.holders_record(from, p.from, &p.key, p.order.0)?;
                self.prepare(now, p);
            }
            DurableMsg::Prepared {
                key,
                migration,
                from: claimed,
                result,
            } => {
                origin(claimed, from)?;
                if let Some(a) = self.actors.get_mut(&key) {
                    a.on_prepared(now, from, migration, result)?;
                    self.touched.insert(key);
                }
            }
            DurableMsg::Command(c) => {
                if from != self.me && Some(from) != self.commander {
                    // Kept only while the registry names no scheduler (its host
                    // died and a successor's claim has not arrived): while it
                    // names one, another node's orders are a liar's, or stale.
                    if self.commander.is_none() && self.config.held_commands_max > 0 {
                        if self.held_commands.len() >= self.config.held_commands_max {
                            self.held_commands.pop_front();
                        }
                        self.held_commands.push_back((now, from, c));
                    }
                    return Err(Refusal::NotCommander { sender: from });
                }
                match c {
                    Command::Release { key } if from != self.me => {
                        self.check_release(now, from, key);
                    }
                    c => self.command(now, c),
                }
            }
        }
        Ok(())
    }

    /// A migration's source (`claimed`, which must be the sender) names a record
    /// of `key` written under `ballot`: its own, within the ballot step of the
    /// promise this node's replica holds.
    fn holders_record(
        &self,
        sender: NodeId,
        claimed: NodeId,
        key: &DurableKey,
        ballot: Ballot,
    ) -> Result<(), Refusal> {
        origin(claimed, sender)?;
        if ballot.node != sender {
            return Err(Refusal::ForeignBallot { ballot, sender });
        }
        let known = self.replica.promised(key);
        if !ballot_step_ok(ballot, known) {
            return Err(Refusal::BallotStep { ballot, known });
        }
        Ok(())
    }

    fn handoff(&mut self, now: Time, h: Handoff) {
        let key = h.key.clone();
        let standby = self.standbys.remove(&key);
        let refused = if self.actors.contains_key(&key) {
            Some("the actor is already (being) activated here".to_string())
        } else if self.actors.len() >= self.config.actors_max {
            Some(format!(
                "this node hosts {} actors already",
                self.config.actors_max
            ))
        } else {
            None
        };
        // The standby is used only for the handoff it was prepared for, naming
        // the record it was built from or an older one (the source names its
        // last committed record; this node's replica may hold the commit that
        // was in flight, which the fence then restores: see `prepare`).
        let warm = match standby {
            Some(s)
                if refused.is_none()
                    && s.ready
                    && s.source == h.from
                    && s.migration == h.migration
                    && s.spec == h.spec
                    && matches!(h.record, HandedRecord::Held { order } if order <= s.warm.record.order()) =>
            {
                Some(Box::new(s.warm))
            }
            Some(_) => {
                self.events
                    .push_back(NodeEvent::Unprepared { key: key.clone() });
                None
            }
            None => None,
        };
        if let Some(why) = refused {
            self.transmit.push_back((
                h.from,
                DurableMsg::HandoffReply {
                    key,
                    migration: h.migration,
                    from: self.me,
                    result: Err(why),
                },
            ));
            return;
        }
        let start = Start {
            key: key.clone(),
            me: self.me,
            sets: vec![h.set],
            spec: h.spec,
            seen: Ballot::ZERO,
            handoff: Some(Arrival {
                record: h.record,
                queued: h.queued,
                from: h.from,
                migration: h.migration,
            }),
            req_base: 0,
            warm,
        };
        self.start_activation(now, start);
    }

    /// A migration's source asks for a warm standby of `p.order` (checked in
    /// `admit`): from this node's own replica only, bounded by `standbys_max`;
    /// the owner builds the user code and answers through
    /// [`DurableNode::prepared`]. The replica may hold a newer record than the
    /// one named (the source's commit in flight, written here already): the
    /// standby is built from what the replica holds, since a handoff's fence
    /// restores the newest record it finds, and the answer names it.
    fn prepare(&mut self, now: Time, p: Prepare) {
        let (warm, user) = match self.warm_from_replica(&p) {
            Ok(w) => w,
            Err(why) => {
                self.unprepare(&p.key);
                self.answer_prepare(p.from, p.key, p.migration, Err(why));
                return;
            }
        };
        let order = warm.record.order();
        self.standbys.insert(
            p.key.clone(),
            Standby {
                warm,
                spec: p.spec.clone(),
                source: p.from,
                migration: p.migration,
                ready: false,
                until: now + self.config.standby_ttl,
            },
        );
        self.events.push_back(NodeEvent::Prepare {
            key: p.key,
            order,
            spec: p.spec,
            user,
        });
    }

    /// The standby `p` asks for, decoded from this node's replica, with the user
    /// state taken out of it (the owner builds the user code from that); or why
    /// there is none.
    fn warm_from_replica(&self, p: &Prepare) -> Result<(Warm, Snapshot), String> {
        if self.actors.contains_key(&p.key) {
            return Err("the actor is already (being) activated here".into());
        }
        if !self.standbys.contains_key(&p.key) && self.standbys.len() >= self.config.standbys_max {
            return Err(format!(
                "this node holds {} standbys already",
                self.config.standbys_max
            ));
        }
        let slot = match self.replica.store().get(&p.key) {
            Ok(slot) => slot,
            Err(e) => return Err(format!("this node's replica cannot be read: {e}")),
        };
        let digest = slot.as_ref().and_then(Slot::body_digest);
        let record = slot.and_then(|s| s.record);
        let held = record.as_ref().map(Record::order);
        // A record of the asking activation (its ballot), at least as new as the
        // one named: the asker's own state, never another holder's.
        let own = held.is_some_and(|(ballot, version)| ballot == p.order.0 && version >= p.order.1);
        let (Some(record), Some(digest), true) = (record, digest, own) else {
            return Err(format!(
                "this node's replica holds {held:?}, not {:?} or a later version of it",
                p.order
            ));
        };
        let mut state = DurableState::decode(&record.body)
            .map_err(|e| format!("the record does not decode: {e}"))?;
        let user = std::mem::take(&mut state.user);
        let warm = Warm {
            record,
            digest,
            state,
        };
        Ok((warm, user))
    }

    /// The owner built (or failed to build) the user code of `key`'s standby of
    /// record `order` ([`NodeEvent::Prepare`]): answer the source.
    pub fn prepared(&mut self, key: &DurableKey, order: (Ballot, u64), built: Result<(), String>) {
        let Some(s) = self.standbys.get_mut(key) else {
            return;
        };
        if s.ready || s.warm.record.order() != order {
            return;
        }
        let (source, migration) = (s.source, s.migration);
        let result = match built {
            Ok(()) => {
                s.ready = true;
                Ok(order)
            }
            Err(why) => {
                self.standbys.remove(key);
                Err(format!("the user code does not build: {why}"))
            }
        };
        self.answer_prepare(source, key.clone(), migration, result);
    }

    /// Tells a migration's source what this node's standby holds, or why none.
    fn answer_prepare(
        &mut self,
        source: NodeId,
        key: DurableKey,
        migration: u64,
        result: Result<(Ballot, u64), String>,
    ) {
        self.transmit.push_back((
            source,
            DurableMsg::Prepared {
                key,
                migration,
                from: self.me,
                result,
            },
        ));
    }

    /// Drops `key`'s standby, if any, and tells the owner.
    fn unprepare(&mut self, key: &DurableKey) {
        if self.standbys.remove(key).is_some() {
            self.events
                .push_back(NodeEvent::Unprepared { key: key.clone() });
        }
    }

    /// Warm standbys held now.
    pub fn standbys(&self) -> usize {
        self.standbys.len()
    }

    /// Whether a warm standby of `key` is held.
    pub fn holds_standby(&self, key: &DurableKey) -> bool {
        self.standbys.contains_key(key)
    }

    fn route_envelope(&mut self, now: Time, mut env: Envelope) {
        let key = env.to.clone();
        if let Some(a) = self.actors.get_mut(&key) {
            a.handle_envelope(now, env);
            self.touched.insert(key);
            return;
        }
        if let Some(f) = self.forwards.get(&key).copied()
            && f.until > now
            && env.hops < HOPS_MAX
        {
            self.stats.forwarded += 1;
            self.transmit.push_back((
                env.reply_to,
                DurableMsg::Redirect(Redirect {
                    key: key.clone(),
                    to: env.from.clone(),
                    node: Some((f.node, f.ballot)),
                }),
            ));
            env.hops += 1;
            self.transmit.push_back((f.node, DurableMsg::Envelope(env)));
            return;
        }
        self.stats.not_here += 1;
        self.transmit.push_back((
            env.reply_to,
            DurableMsg::Redirect(Redirect {
                key,
                to: env.from,
                node: None,
            }),
        ));
    }

    /// Whether `from` may answer for the stream from sender `to` towards `key`:
    /// it must be the node the stream sends (or last sent) to, and an ack's or
    /// nack's number (`seq`, `nack`) must be one the stream gave. A sender not
    /// here has nothing to protect.
    fn check_stream_reply(
        &self,
        to: &SenderId,
        key: &DurableKey,
        from: NodeId,
        seq: Option<(u64, bool)>,
    ) -> Result<(), Refusal> {
        let streams = match to {
            SenderId::Actor(k) => self.actors.get(k).map(Activation::streams),
            SenderId::Client(id) => self.sessions.get(id),
        };
        if let Some(streams) = streams {
            streams.check_peer(key, from)?;
            if let Some((seq, nack)) = seq {
                streams.check_seq(key, seq, nack)?;
            }
        }
        Ok(())
    }

    /// Carries out a scheduler command.
    pub fn command(&mut self, now: Time, c: Command) {
        match c {
            Command::Activate { key, sets, spec } => {
                self.activate(now, key, sets, spec, Ballot::ZERO);
            }
            Command::Migrate { key, to } => {
                let why = match self.actors.get(&key) {
                    None => Some("the actor is not hosted here"),
                    // A repeat of the move under way (the scheduler re-orders a
                    // move that has not landed): nothing to do or to report.
                    Some(a) if a.moving_to() == Some(to) => return,
                    Some(a) => a.why_not_migrate(to),
                };
                match why {
                    None => {
                        self.migrate(now, &key, to);
                    }
                    Some(why) => self.events.push_back(NodeEvent::MoveRefused {
                        key,
                        to,
                        why: why.to_string(),
                    }),
                }
            }
            Command::Reconfigure { key, set } => {
                if let Some(a) = self.actors.get_mut(&key) {
                    a.reconfigure(now, set);
                    self.touched.insert(key);
                }
            }
            Command::Release { key } => self.release(&key),
        }
    }

    /// Activates `key` here (no-op if it is here already). `seen` is the highest
    /// ballot the caller knows for it.
    pub fn activate(
        &mut self,
        now: Time,
        key: DurableKey,
        sets: Vec<ReplicaSet>,
        spec: Vec<u8>,
        seen: Ballot,
    ) {
        if self.actors.contains_key(&key) {
            return;
        }
        if self.actors.len() >= self.config.actors_max {
            self.events.push_back(NodeEvent::Refused {
                key,
                why: format!("this node hosts {} actors already", self.config.actors_max),
            });
            return;
        }
        let start = Start {
            key,
            me: self.me,
            sets,
            spec,
            seen,
            handoff: None,
            req_base: 0,
            warm: None,
        };
        self.unprepare(&start.key);
        self.start_activation(now, start);
    }

    fn start_activation(&mut self, now: Time, mut start: Start) {
        start.req_base = self.next_req_base;
        // Local: wraps after 2^32 activations, long after older ones are gone.
        self.next_req_base = self.next_req_base.wrapping_add(1 << 32);
        let key = start.key.clone();
        match Activation::start(now, self.config.activation, start) {
            Some(a) => {
                self.forwards.remove(&key);
                self.actors.insert(key.clone(), a);
                self.stats.activations += 1;
                self.touched.insert(key);
            }
            None => self.events.push_back(NodeEvent::Refused {
                key,
                why: "no replica set given".into(),
            }),
        }
    }

    /// Starts a live migration of `key` to `to`. False if it is not active here.
    pub fn migrate(&mut self, now: Time, key: &DurableKey, to: NodeId) -> bool {
        let Some(a) = self.actors.get_mut(key) else {
            return false;
        };
        let started = a.migrate(now, to);
        self.touched.insert(key.clone());
        started
    }

    /// Stops `key` for good: drops its replicas, and this node's slot for it.
    pub fn release(&mut self, key: &DurableKey) {
        self.unprepare(key);
        if let Some(a) = self.actors.get_mut(key) {
            a.release();
            self.touched.insert(key.clone());
        }
        self.forwards.remove(key);
        // This node's own copy goes whatever the promise: the scheduler owns the
        // actor's lifetime. (A store failure is counted by the replica.)
        let _ = self.replica.forget(key);
    }

    /// The user code of `key` applied batch `token`.
    pub fn applied(&mut self, now: Time, key: &DurableKey, token: u64, result: Applied) {
        if let Some(a) = self.actors.get_mut(key) {
            a.applied(now, token, result);
            self.touched.insert(key.clone());
        }
    }

    /// The user code of `key` failed.
    pub fn user_failed(&mut self, now: Time, key: &DurableKey, why: String) {
        if let Some(a) = self.actors.get_mut(key) {
            a.user_failed(now, why);
            self.touched.insert(key.clone());
        }
    }

    /// How `key`'s user code wants its inputs batched.
    pub fn set_batching(
        &mut self,
        now: Time,
        key: &DurableKey,
        batching: crate::activation::Batching,
    ) {
        if let Some(a) = self.actors.get_mut(key) {
            a.set_batching(now, batching);
            self.touched.insert(key.clone());
        }
    }

    /// A local input for `key` (the scheduler's ticks).
    pub fn local_input(&mut self, now: Time, key: &DurableKey, payload: Vec<u8>) {
        if let Some(a) = self.actors.get_mut(key) {
            a.local_input(now, payload);
            self.touched.insert(key.clone());
        }
    }

    /// Stops every activation here without handing anything off (the node is
    /// going down hard; the replicas keep what was committed).
    pub fn abandon_all(&mut self, why: Deactivation) {
        let keys: Vec<DurableKey> = self.actors.keys().cloned().collect();
        for k in keys {
            if let Some(a) = self.actors.get_mut(&k) {
                a.abandon(why.clone());
            }
            self.touched.insert(k);
        }
    }

    // ----- client sessions -----

    /// Opens a client session. False if too many are open.
    pub fn session_open(&mut self, id: u64) -> bool {
        if self.sessions.contains_key(&id) {
            return true;
        }
        if self.sessions.len() >= self.config.sessions_max {
            return false;
        }
        self.sessions.insert(
            id,
            Streams::new(SenderId::Client(id), self.config.activation.stream),
        );
        true
    }

    /// Sends a message from a session; returns its sequence number, or `None` if
    /// the session is not open or is full.
    pub fn session_send(
        &mut self,
        id: u64,
        to: &DurableKey,
        payload: Vec<u8>,
        trace: Option<TraceContext>,
    ) -> Option<u64> {
        let s = self.sessions.get_mut(&id)?;
        if s.is_full() {
            return None;
        }
        let seq = s.push(to, payload, trace);
        s.release_all();
        Some(seq)
    }

    /// Messages a session still waits to have acknowledged.
    pub fn session_unacked(&self, id: u64) -> Option<usize> {
        self.sessions.get(&id).map(Streams::unacked)
    }

    /// A client session's streams with unacknowledged messages (see
    /// [`Streams::pending`]).
    pub fn session_pending(&self, id: u64) -> Vec<(DurableKey, u64, usize, Option<NodeId>)> {
        self.sessions
            .get(&id)
            .map(Streams::pending)
            .unwrap_or_default()
    }

    /// The number of the last message a session sent to each receiver (see
    /// [`Streams::marks`]).
    pub fn session_marks(&self, id: u64) -> BTreeMap<DurableKey, u64> {
        self.sessions
            .get(&id)
            .map(Streams::marks)
            .unwrap_or_default()
    }

    /// Closes a session (its unacknowledged messages are abandoned).
    pub fn session_close(&mut self, id: u64) {
        self.sessions.remove(&id);
    }

    // ----- driving -----

    /// Timers.
    pub fn handle_timeout(&mut self, now: Time) {
        let due: Vec<u64> = self
            .releases
            .iter()
            .filter(|(_, p)| p.until <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in due {
            if let Some(p) = self.releases.remove(&req) {
                self.decide_release(p);
            }
        }
        while let Some((t, key)) = self.by_deadline.first().cloned() {
            if t > now {
                break;
            }
            self.by_deadline.pop_first();
            self.deadlines.remove(&key);
            if let Some(a) = self.actors.get_mut(&key) {
                a.handle_timeout(now);
            }
            self.touched.insert(key);
        }
        for s in self.sessions.values_mut() {
            s.handle_timeout(now);
        }
        let expired: Vec<DurableKey> = self
            .standbys
            .iter()
            .filter(|(_, s)| s.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.unprepare(&key);
        }
        if self.forwards.len() > self.config.forwards_max {
            let mut by_age: Vec<(Time, DurableKey)> = self
                .forwards
                .iter()
                .map(|(k, f)| (f.until, k.clone()))
                .collect();
            by_age.sort();
            let excess = self.forwards.len() - self.config.forwards_max;
            for (_, k) in by_age.into_iter().take(excess) {
                self.forwards.remove(&k);
            }
        }
        self.forwards.retain(|_, f| f.until > now);
    }

    /// Collects what the activations and sessions want sent and said. Call after
    /// every input; then drain [`DurableNode::poll_transmit`] and
    /// [`DurableNode::poll_event`]. `resolve` says where a durable actor is (the
    /// cluster registry), for streams that do not know.
    pub fn flush(
        &mut self,
        now: Time,
        resolve: &mut dyn FnMut(&DurableKey) -> Option<(NodeId, Ballot)>,
    ) {
        let mut envelopes = Vec::new();
        while let Some(key) = self.touched.pop_first() {
            let Some(a) = self.actors.get_mut(&key) else {
                continue;
            };
            a.poll_streams(now, resolve, &mut envelopes);
            for (to, env) in envelopes.drain(..) {
                self.transmit.push_back((to, DurableMsg::Envelope(env)));
            }
            while let Some(t) = a.poll_transmit() {
                self.transmit.push_back(t);
            }
            let mut gone = None;
            while let Some(event) = a.poll_event() {
                match &event {
                    ActivationEvent::Deactivated(why) => gone = Some(why.clone()),
                    ActivationEvent::Committed { .. } => self.stats.commits += 1,
                    _ => {}
                }
                self.events.push_back(NodeEvent::Actor {
                    key: key.clone(),
                    event,
                });
            }
            if let Some(old) = self.deadlines.remove(&key) {
                self.by_deadline.remove(&(old, key.clone()));
            }
            if let Some(why) = gone {
                let held = a.take_held();
                self.actors.remove(&key);
                if let Deactivation::Migrated { to, ballot } = why {
                    self.stats.migrations_out += 1;
                    self.forwards.insert(
                        key.clone(),
                        Forward {
                            node: to,
                            ballot,
                            until: now + self.config.forward_ttl,
                        },
                    );
                }
                for env in held {
                    self.route_envelope(now, env);
                }
                continue;
            }
            if let Some(t) = a.poll_timeout() {
                self.deadlines.insert(key.clone(), t);
                self.by_deadline.insert((t, key));
            }
        }
        let me = self.me;
        for (id, s) in self.sessions.iter_mut() {
            s.poll_transmit(now, me, resolve, &mut envelopes);
            for (to, env) in envelopes.drain(..) {
                self.transmit.push_back((to, DurableMsg::Envelope(env)));
            }
            while let Some(event) = s.poll_event() {
                self.events.push_back(NodeEvent::Session { id: *id, event });
            }
        }
    }

    /// The next message to send (after [`DurableNode::flush`]).
    pub fn poll_transmit(&mut self) -> Option<(NodeId, DurableMsg)> {
        self.transmit.pop_front()
    }

    /// The next event (after [`DurableNode::flush`]).
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        let actors = self.by_deadline.first().map(|(t, _)| *t);
        let sessions = self
            .sessions
            .values()
            .filter_map(Streams::poll_timeout)
            .min();
        let forwards = self.forwards.values().map(|f| f.until).min();
        let releases = self.releases.values().map(|p| p.until).min();
        let standbys = self.standbys.values().map(|s| s.until).min();
        [actors, sessions, forwards, releases, standbys]
            .into_iter()
            .flatten()
            .min()
    }

    /// Checks every activation's invariants.
    pub fn check_invariants(&self) -> Result<(), String> {
        for a in self.actors.values() {
            a.check_invariants()?;
        }
        if self.standbys.len() > self.config.standbys_max {
            return Err(format!(
                "{} standbys held, over the bound of {}",
                self.standbys.len(),
                self.config.standbys_max
            ));
        }
        if let Some(k) = self.standbys.keys().find(|k| self.actors.contains_key(*k)) {
            return Err(format!("{k} is both active here and held as a standby"));
        }
        Ok(())
    }
}
