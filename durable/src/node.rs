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
//! * acks, nacks and redirects go to the sender they name: an activation here, one
//!   that moved (forwarded), or a client session.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use plexus_actors::envelope::TraceContext;
use plexus_actors::{NodeId, Time};

use crate::activation::{
    Activation, ActivationConfig, ActivationEvent, Applied, Deactivation, Start,
};
use crate::replica::{Replica, SlotStore};
use crate::stream::{StreamEvent, Streams};
use crate::types::{Ballot, DurableKey, ReplicaSet, SenderId};
use crate::wire::{Command, DurableMsg, Envelope, HOPS_MAX, Redirect, ReplicaOp};

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
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            activation: ActivationConfig::default(),
            forward_ttl: Duration::from_secs(30),
            forwards_max: 65_536,
            actors_max: 100_000,
            sessions_max: 10_000,
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
    /// Counters.
    pub stats: NodeStats,
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

    /// A message from another node (or this one: the driver loops back messages a
    /// node sends itself).
    pub fn handle(&mut self, now: Time, msg: DurableMsg) {
        match msg {
            DurableMsg::Replica { from, req, key, op } => {
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
                from,
                req,
                key,
                reply,
            } => {
                if let Some(a) = self.actors.get_mut(&key) {
                    a.on_replica_reply(now, from, req, reply);
                    self.touched.insert(key);
                }
            }
            DurableMsg::Envelope(env) => self.route_envelope(now, env),
            DurableMsg::Ack(ack) => match ack.to.clone() {
                SenderId::Actor(k) => {
                    if let Some(a) = self.actors.get_mut(&k) {
                        a.on_ack(now, ack);
                        self.touched.insert(k);
                    } else if let Some(f) = self.forward(&k, now) {
                        self.transmit.push_back((f, DurableMsg::Ack(ack)));
                    }
                }
                SenderId::Client(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.on_ack(now, &ack.key, ack.up_to, ack.ballot, ack.replies);
                    }
                }
            },
            DurableMsg::Nack(nack) => match nack.to.clone() {
                SenderId::Actor(k) => {
                    if let Some(a) = self.actors.get_mut(&k) {
                        a.on_nack(now, nack);
                        self.touched.insert(k);
                    } else if let Some(f) = self.forward(&k, now) {
                        self.transmit.push_back((f, DurableMsg::Nack(nack)));
                    }
                }
                SenderId::Client(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        let wait = Duration::from_millis(u64::from(nack.retry_after_ms));
                        s.on_nack(now, &nack.key, nack.expected, wait);
                    }
                }
            },
            DurableMsg::Redirect(r) => match r.to.clone() {
                SenderId::Actor(k) => {
                    if let Some(a) = self.actors.get_mut(&k) {
                        a.on_redirect(now, r);
                        self.touched.insert(k);
                    } else if let Some(f) = self.forward(&k, now) {
                        self.transmit.push_back((f, DurableMsg::Redirect(r)));
                    }
                }
                SenderId::Client(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.on_redirect(now, &r.key, r.node);
                    }
                }
            },
            DurableMsg::Handoff(h) => {
                let key = h.key.clone();
                if self.actors.contains_key(&key) {
                    self.transmit.push_back((
                        h.from,
                        DurableMsg::HandoffReply {
                            key,
                            migration: h.migration,
                            from: self.me,
                            result: Err("the actor is already (being) activated here".into()),
                        },
                    ));
                    return;
                }
                if self.actors.len() >= self.config.actors_max {
                    self.transmit.push_back((
                        h.from,
                        DurableMsg::HandoffReply {
                            key,
                            migration: h.migration,
                            from: self.me,
                            result: Err(format!(
                                "this node hosts {} actors already",
                                self.config.actors_max
                            )),
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
                    handoff: Some((h.record, h.queued, h.from, h.migration)),
                    req_base: 0,
                };
                self.start_activation(now, start);
            }
            DurableMsg::HandoffReply {
                key,
                migration,
                result,
                ..
            } => {
                if let Some(a) = self.actors.get_mut(&key) {
                    a.on_handoff_reply(now, migration, result);
                    self.touched.insert(key);
                }
            }
            DurableMsg::Command(c) => self.command(now, c),
        }
    }

    fn forward(&mut self, key: &DurableKey, now: Time) -> Option<NodeId> {
        let f = self.forwards.get(key)?;
        if f.until <= now {
            self.forwards.remove(key);
            return None;
        }
        self.stats.forwarded += 1;
        Some(f.node)
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

    /// Carries out a scheduler command.
    pub fn command(&mut self, now: Time, c: Command) {
        match c {
            Command::Activate { key, sets, spec } => {
                self.activate(now, key, sets, spec, Ballot::ZERO);
            }
            Command::Migrate { key, to } => {
                self.migrate(now, &key, to);
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
        };
        self.start_activation(now, start);
    }

    fn start_activation(&mut self, now: Time, mut start: Start) {
        start.req_base = self.next_req_base;
        self.next_req_base += 1 << 32;
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
        if let Some(a) = self.actors.get_mut(key) {
            a.release();
            self.touched.insert(key.clone());
        }
        self.forwards.remove(key);
        // This node's own copy goes whatever the promise: the scheduler owns the
        // actor's lifetime.
        let _ = self.replica.handle(
            key,
            &ReplicaOp::Drop {
                ballot: Ballot {
                    round: u64::MAX,
                    node: NodeId::ZERO,
                },
            },
        );
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

    /// Closes a session (its unacknowledged messages are abandoned).
    pub fn session_close(&mut self, id: u64) {
        self.sessions.remove(&id);
    }

    // ----- driving -----

    /// Timers.
    pub fn handle_timeout(&mut self, now: Time) {
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
        [actors, sessions, forwards].into_iter().flatten().min()
    }

    /// Checks every activation's invariants.
    pub fn check_invariants(&self) -> Result<(), String> {
        for a in self.actors.values() {
            a.check_invariants()?;
        }
        Ok(())
    }
}
