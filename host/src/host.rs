//! [`DurableHost`]: everything one node does for durable actors, as one sans-IO
//! state machine.
//!
//! It owns the node's [`DurableNode`] (replica, activations, forwards, client
//! sessions), the user code of the actors active here, the node's client session
//! and its one-shot request sessions, the scheduler's watchdog and tick, and the
//! reports the node sends the scheduler. The daemon (`src/hosting/service.rs`) and
//! the simulator (`sim/src/workload/durable.rs`) are its two drivers; neither
//! decides anything about durable actors.
//!
//! # Inputs (`handle_*` and requests)
//! * [`DurableHost::handle_wire`]: a durable protocol message from another node,
//!   as the bytes [`plexus_durable::wire::encode`] made (both drivers carry these
//!   exact bytes as a mesh tell to `(node, SERVICE_LOCAL_ID)` under
//!   [`plexus_durable::MESSAGE_TYPE`]), with the sender the transport
//!   authenticated; the core refuses what that sender may not say (see
//!   [`plexus_durable::node`]). Commands are taken only from this node and from
//!   the node the registry resolves the scheduler to;
//! * [`DurableHost::handle_timeout`]: time passes; runs the core's timers and, when
//!   due, the scheduler tick (watchdog, then the scheduler's view);
//! * [`DurableHost::submit`] (a signed request for the scheduler, answered later by
//!   [`Effect::Answer`]), [`DurableHost::cancel`], [`DurableHost::send`] (a client
//!   message on this node's session).
//!
//! # Outputs
//! * [`DurableHost::pump`] runs the core until it is quiet: it loops back messages
//!   to this node, runs user code, and reports activations; every notable thing is
//!   handed to the driver's observer as a [`Note`] at the moment it happens, so a
//!   checker can look at the state it describes;
//! * [`DurableHost::poll_effect`] then yields what the driver must carry out, in
//!   order: [`Effect::Send`], [`Effect::Register`], [`Effect::Unregister`],
//!   [`Effect::Answer`];
//! * [`DurableHost::poll_timeout`]: when to call `handle_timeout` next.
//!
//! # Bounds
//! * `waiters_max` one-shot requests waiting for the scheduler; more are refused
//!   with [`SubmitError::TooManyWaiting`];
//! * the core's own bounds (sessions, activations, forwards, pending input);
//! * `pump_rounds_max` rounds per pump; a pump that does not quiesce by then
//!   returns [`Livelock`] (the rest waits for the next pump);
//! * the last `PAUSES_KEPT` migration pauses.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use plexus_actors::codec::CodecError;
use plexus_actors::envelope::TraceContext;
use plexus_actors::rng::DetRng;
use plexus_actors::{ActorId, NodeId, Time};
use plexus_durable::activation::{ActivationEvent, Applied, Deactivation};
use plexus_durable::node::{DurableNode, NodeConfig, NodeEvent};
use plexus_durable::replica::SlotStore;
use plexus_durable::stream::StreamEvent;
use plexus_durable::types::{Ballot, DurableKey, ReplicaSet, SenderId};
use plexus_durable::wire::{self, DurableMsg, Refusal};
use plexus_durable::{Record, SERVICE_LOCAL_ID};
use plexus_mesh::membership::MemberState;
use plexus_scheduler::SCHEDULER_KEY;
use plexus_scheduler::app::{
    WATCHDOG_GRACE_TICKS, Watchdog, decode_response, encode_request, encode_tick, scheduler_set,
};
use plexus_scheduler::protocol::REPORT_EVERY_TICKS;
use plexus_scheduler::protocol::{Rejection, Report, Request, Response, Rights, Signed, admit};
use plexus_vocab::identity::NodeKey;
use serde::{Deserialize, Serialize};

use crate::code::{CodeError, DurableCode, Kinds};
use crate::facts::{ClusterFacts, Directory};

/// Client session numbers with this bit are one-shot sessions: one request each,
/// closed once it is acknowledged.
pub const ONE_SHOT: u64 = 1 << 63;
/// With a sharded registry: most actors one round of repeated reports covers
/// (see `DurableHost::report_actives`).
pub const REPORTS_PER_ROUND_MAX: usize = 1_024;
/// Migration pauses kept for the status.
pub const PAUSES_KEPT: usize = 1_000;

/// Settings of a host.
#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// The durable core's settings.
    pub node: NodeConfig,
    /// How often the scheduler reconciles, and the watchdog looks for it.
    pub scheduler_tick: Duration,
    /// Ticks without a scheduler in the registry before the lowest live node
    /// restores it.
    pub watchdog_grace_ticks: u32,
    /// One-shot requests waiting for the scheduler at once.
    pub waiters_max: usize,
    /// Rounds one pump may take.
    pub pump_rounds_max: usize,
    /// A fault to inject, for tests of the checkers only (see [`Fault`]).
    pub fault: Option<Fault>,
}

impl HostConfig {
    /// Fits the activation lease to the cluster's failure detection: `detection`
    /// is the least time its membership takes to declare a silent node dead
    /// (`MembershipConfig::detection_min`). The lease is four fifths of it, so an
    /// activation cut off from its replicas steps down before the cluster can
    /// place the actor elsewhere, and it is checked four times per lease, so a
    /// check answer held up for most of a lease (a lost frame on the mesh's
    /// ordered link waits for its retransmission) does not end a connected
    /// activation.
    pub fn fit_lease(mut self, detection: Duration) -> Self {
        let lease = (detection * 4 / 5).max(Duration::from_millis(40));
        self.node.activation.lease = lease;
        self.node.activation.lease_check = lease / 4;
        self
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            scheduler_tick: Duration::from_millis(500),
            watchdog_grace_ticks: WATCHDOG_GRACE_TICKS,
            waiters_max: 1_024,
            pump_rounds_max: 10_000,
            fault: None,
        }
    }
}

/// Bugs a test can inject into the host, to show that the simulator's checkers
/// catch a hosting bug in the code the daemon runs. Never set in production.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Hand every `n`th batch of inputs to the user code twice, as a host that
    /// retried a batch would.
    DoubleApply {
        /// The period.
        every: u64,
    },
}

/// What a one-shot session waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    /// The scheduler's answer.
    Scheduler,
    /// An actor's reply.
    Ask,
}

/// A request waiting for the scheduler: the one-shot session that carries it.
pub type RequestId = u64;

/// What the driver must carry out.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Effect {
    /// Send these durable wire bytes to `to`'s durable service (the actor
    /// `(to, SERVICE_LOCAL_ID)`, message type [`plexus_durable::MESSAGE_TYPE`]).
    /// Best effort: the core retransmits what matters.
    Send {
        /// The node.
        to: NodeId,
        /// [`plexus_durable::wire::encode`]d.
        bytes: Vec<u8>,
    },
    /// Register `name` in the cluster registry for `actor`, at `rank` (the
    /// activation's ballot round, so the newest activation wins).
    Register {
        /// The name.
        name: String,
        /// This node's service.
        actor: ActorId,
        /// The rank.
        rank: u64,
    },
    /// Withdraw this node's claim on `name`, whether or not it still wins: a stale
    /// claim left behind would resolve again once the newer holder's node died.
    Unregister {
        /// The name.
        name: String,
    },
    /// An actor's reply to a [`DurableHost::ask`]: its bytes, or its code's refusal.
    Replied {
        /// The request.
        request: RequestId,
        /// The reply.
        reply: Result<Vec<u8>, String>,
    },
    /// The scheduler's answer to a [`DurableHost::submit`].
    Answer {
        /// The request.
        request: RequestId,
        /// The answer.
        answer: Result<Response, AnswerError>,
    },
}

/// Something that happened, handed to the driver's observer as it happens.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Note {
    /// `key` serves here now.
    Activated {
        /// The actor.
        key: DurableKey,
        /// Its ballot.
        ballot: Ballot,
        /// Where it commits.
        set: ReplicaSet,
        /// The order of the record it restored.
        restored: Option<(Ballot, u64)>,
    },
    /// `key`'s replica set changed.
    Reconfigured {
        /// The actor.
        key: DurableKey,
        /// The new set.
        set: ReplicaSet,
    },
    /// A record of `key` reached a majority; [`DurableHost::committed`] shows it.
    Committed {
        /// The actor.
        key: DurableKey,
        /// Its version.
        version: u64,
        /// From the write's first send to its majority.
        latency: Duration,
    },
    /// `key` serves here now in place of `from`, a host this node saw down: it
    /// serves again `after` this node first saw `from` suspected or dead (seen at
    /// the host's scheduler ticks, so up to one tick late).
    FailedOver {
        /// The actor.
        key: DurableKey,
        /// Its previous host.
        from: NodeId,
        /// From the previous host seen down to serving here.
        after: Duration,
    },
    /// `key` moved to `to`; it applied nothing for `pause`.
    Migrated {
        /// The actor.
        key: DurableKey,
        /// Where.
        to: NodeId,
        /// The pause.
        pause: Duration,
        /// The part of it before the handoff left.
        drain: Duration,
        /// Whether the handoff named the record by reference (the target held it).
        by_reference: bool,
        /// Whether the target had built the actor from that record before the
        /// pause (a warm standby).
        warm: bool,
        /// The wait for that standby before the pause (the actor served on).
        prepare: Duration,
    },
    /// `key` no longer serves here.
    Deactivated {
        /// The actor.
        key: DurableKey,
        /// Why.
        why: Deactivation,
    },
    /// Messages of a client session were acknowledged up to `up_to`.
    Acked {
        /// The session.
        session: u64,
        /// The receiver.
        to: DurableKey,
        /// The highest acknowledged number.
        up_to: u64,
    },
    /// A command for `key` could not be carried out here.
    Refused {
        /// The actor.
        key: DurableKey,
        /// Why.
        why: String,
    },
    /// A move of `key` to `to` the scheduler ordered failed here (reported to it).
    MoveFailed {
        /// The actor.
        key: DurableKey,
        /// The target.
        to: NodeId,
        /// Why.
        why: String,
    },
    /// A message could not be encoded (a local bug; it is dropped).
    Unencodable {
        /// The node it was for.
        to: NodeId,
        /// Why.
        error: CodecError,
    },
}

/// Why a durable message from another node was dropped. The sending node is at
/// fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not a durable message.
    #[error("undecodable durable message: {0}")]
    Undecodable(CodecError),
    /// The sender may not say what the message says.
    #[error("refused durable message: {0}")]
    Refused(Refusal),
}

/// Why a request could not be handed to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Too many requests are waiting for the scheduler (a bound; retry later).
    #[error("too many requests waiting for the scheduler")]
    TooManyWaiting,
    /// Too many client sessions are open (a bound; retry later).
    #[error("too many client sessions open")]
    SessionsFull,
    /// The request does not encode (the caller's fault).
    #[error("the request does not encode: {0}")]
    Encode(CodecError),
    /// The request fails the scheduler's stateless checks (signature, network,
    /// expiry, the signer's rights in the allowlist); it was refused before any
    /// session or state was created for it. The same [`Rejection`] the scheduler
    /// would answer.
    #[error("{0}")]
    Refused(Rejection),
}

/// Why a client message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The node's client session has its window full (retry once acks arrive).
    #[error("the client session is full; retry")]
    SessionFull,
    /// Too many asks and scheduler requests are waiting (a bound; retry later).
    #[error("too many requests waiting for replies; retry")]
    TooManyWaiting,
}

/// Why the scheduler's answer is not a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The scheduler actor refused the input (it is not a request it takes).
    #[error("the scheduler refused the request: {0}")]
    Refused(String),
    /// The answer does not decode (a version mismatch or a bug).
    #[error("the scheduler's answer does not decode: {0}")]
    Undecodable(CodecError),
}

/// The pump did not quiesce within `pump_rounds_max` rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the durable host did not quiesce in {rounds} rounds")]
pub struct Livelock {
    /// The bound.
    pub rounds: usize,
}

/// Counters and a summary, for the API and metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Durable actors active here, with a summary of their state.
    pub actors: BTreeMap<String, serde_json::Value>,
    /// Client messages sent from this node.
    pub sent: u64,
    /// Of which acknowledged (their effects are committed at a majority).
    pub acked: u64,
    /// Live migrations completed from this node.
    pub migrations: u64,
    /// Of which to a target that had a warm standby of the record handed over.
    pub migrations_warm: u64,
    /// Longest migration pause seen here, ms.
    pub migration_pause_max_ms: u64,
    /// Migration pauses, µs (the last [`PAUSES_KEPT`]).
    pub migration_pauses_us: Vec<u64>,
    /// For the same migrations, the wait for the target's warm standby before
    /// each pause, µs (the actor served meanwhile; 0 without one).
    pub migration_prepares_us: Vec<u64>,
    /// Activations started here.
    pub activations: u64,
    /// Commits by actors here.
    pub commits: u64,
    /// Actors that took over here from a host this node saw down.
    #[serde(default)]
    pub failovers: u64,
    /// This node's client session, as receivers name its messages' sender
    /// (`client:<16 hex>`); a new one every process life.
    #[serde(default)]
    pub session: String,
    /// Whether the scheduler is active here.
    pub scheduler_here: bool,
    /// Durable messages refused because their sender may not say them (see
    /// `plexus_durable::node`; by reason in the core's stats).
    #[serde(default)]
    pub refused: u64,
}

/// Wraps each batch a user code applies; the daemon opens a tracing span around
/// it and passes the span's context on to the batch's outputs.
pub trait ApplyTracer: Send {
    /// Runs `apply`, a batch of `inputs` messages for `key`; `parent` is the trace
    /// context the batch's first traced input carried.
    fn around(
        &self,
        key: &DurableKey,
        inputs: usize,
        parent: Option<TraceContext>,
        apply: &mut dyn FnMut() -> Result<Applied, CodeError>,
    ) -> Result<Applied, CodeError>;
}

/// User code built ahead of a migration (a warm standby), with the order of the
/// record it was built from.
type Standby = ((Ballot, u64), Box<dyn DurableCode>);

/// One node's durable host.
pub struct DurableHost<S: SlotStore> {
    me: NodeId,
    config: HostConfig,
    core: DurableNode<S>,
    kinds: Kinds,
    code: BTreeMap<DurableKey, Box<dyn DurableCode>>,
    /// User code built ahead of a migration to this node (a warm standby), with
    /// the record it was built from. Each follows a standby the core holds (at
    /// most `standbys_max`) or one it handed to an activation here that is still
    /// restoring; it goes when that activation restores or ends.
    standbys: BTreeMap<DurableKey, Standby>,
    tracer: Option<Box<dyn ApplyTracer>>,
    /// Signs this node's reports to the scheduler.
    signer: NodeKey,
    nonce: u64,
    /// The network's name, from the last facts seen (reports are signed for it).
    network: String,
    scheduler: DurableKey,
    watchdog: Watchdog,
    next_scheduler_tick: Time,
    /// Scheduler ticks run here (they pace the repeated reports).
    ticks: u64,
    /// The registry is sharded (as of the last scheduler tick): hosts repeat
    /// their reports.
    partial: bool,
    /// With a sharded registry: the last actor reported in the current round of
    /// repeated reports (the next round starts after it).
    reported_last: Option<DurableKey>,
    /// This node's client session (reports and client messages).
    session: u64,
    next_one_shot: u64,
    waiting: BTreeMap<RequestId, Waiter>,
    /// Per receiver: how far this node's session was acknowledged.
    acked_by: BTreeMap<DurableKey, u64>,
    status: HostStatus,
    effects: VecDeque<Effect>,
    batches: u64,
    /// Members this node sees suspected or dead, and since when (as of the last
    /// scheduler tick).
    down_since: BTreeMap<NodeId, Time>,
}

impl<S: SlotStore> DurableHost<S> {
    /// A host for node `me` over `store`. `signer` signs its reports to the
    /// scheduler (the node's key in production); `seed` numbers its client
    /// sessions, which receivers deduplicate cluster-wide, so it must differ per
    /// process life (the daemon draws it from the OS).
    pub fn new(
        me: NodeId,
        config: HostConfig,
        store: S,
        kinds: Kinds,
        signer: NodeKey,
        seed: u64,
    ) -> Self {
        let mut rng = DetRng::split(seed, 0x5e55);
        let session = rng.next_u64() & !ONE_SHOT;
        let next_one_shot = rng.next_u64() & !ONE_SHOT;
        let nonce = rng.next_u64() >> 16;
        let mut core = DurableNode::new(me, config.node, store);
        core.session_open(session);
        Self {
            me,
            config,
            core,
            kinds,
            code: BTreeMap::new(),
            standbys: BTreeMap::new(),
            tracer: None,
            signer,
            nonce,
            network: String::new(),
            scheduler: scheduler_key(),
            watchdog: Watchdog::default(),
            next_scheduler_tick: Time::ZERO,
            ticks: 0,
            partial: false,
            reported_last: None,
            session,
            next_one_shot,
            waiting: BTreeMap::new(),
            acked_by: BTreeMap::new(),
            status: HostStatus::default(),
            effects: VecDeque::new(),
            batches: 0,
            down_since: BTreeMap::new(),
        }
    }

    /// Wraps every batch in `tracer`.
    pub fn set_tracer(&mut self, tracer: Box<dyn ApplyTracer>) {
        self.tracer = Some(tracer);
    }

    // ----- getters -----

    /// This node.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The durable core (for listings and checkers).
    pub fn core(&self) -> &DurableNode<S> {
        &self.core
    }

    /// Gives the store back (a simulated crash keeps the disk).
    pub fn into_store(self) -> S {
        self.core.into_store()
    }

    /// This node's client session.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The newest committed record of `key`, if it is hosted here.
    pub fn committed(&self, key: &DurableKey) -> Option<&Record> {
        self.core.actor(key).and_then(|a| a.committed())
    }

    /// The scheduler's key.
    pub fn scheduler(&self) -> &DurableKey {
        &self.scheduler
    }

    /// The scheduler, if it is active here (for its invariants).
    pub fn hosted_scheduler(&self) -> bool {
        self.core
            .actor(&self.scheduler)
            .is_some_and(|a| a.is_active())
    }

    /// Counters and what runs here.
    pub fn status(&self) -> HostStatus {
        let mut status = self.status.clone();
        status.activations = self.core.stats.activations;
        status.commits = self.core.stats.commits;
        status.session = SenderId::Client(self.session).to_string();
        status.refused = self.core.stats.refused.total();
        status.actors = self
            .core
            .actors()
            .filter(|(_, a)| a.is_active())
            .map(|(k, _)| {
                let summary = self
                    .code
                    .get(k)
                    .map_or(serde_json::Value::Null, |c| c.describe());
                (k.to_string(), summary)
            })
            .collect();
        status.scheduler_here = self.hosted_scheduler();
        status
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Time {
        match self.core.poll_timeout() {
            Some(t) => t.min(self.next_scheduler_tick),
            None => self.next_scheduler_tick,
        }
    }

    /// Checks the host's own promises, the core's and the user code's. They hold
    /// between pumps (inside one, user code may outlive its activation until the
    /// activation's end is handled).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.core.check_invariants()?;
        for (key, code) in &self.code {
            if self.core.actor(key).is_none() {
                return Err(format!(
                    "{key}: user code kept for an actor not hosted here"
                ));
            }
            code.check_invariants().map_err(|e| format!("{key}: {e}"))?;
        }
        if let Some(key) = self
            .standbys
            .keys()
            .find(|k| !self.core.holds_standby(k) && self.core.actor(k).is_none())
        {
            return Err(format!(
                "{key}: a standby built for nothing the core holds or hosts"
            ));
        }
        if self.waiting.len() > self.config.waiters_max {
            return Err(format!(
                "{} requests waiting, over the bound {}",
                self.waiting.len(),
                self.config.waiters_max
            ));
        }
        if self.waiting.keys().any(|id| id & ONE_SHOT == 0) {
            return Err("a waiting request is not on a one-shot session".into());
        }
        if self.core.session_unacked(self.session).is_none() {
            return Err("the node's client session is closed".into());
        }
        Ok(())
    }

    // ----- inputs -----

    /// A durable message from another node's service; `from` is the sender the
    /// transport authenticated (never a field of the message).
    /// A record's body in it stays a slice of `bytes`.
    pub fn handle_wire(
        &mut self,
        now: Time,
        from: NodeId,
        bytes: &plexus_actors::codec::Bytes,
    ) -> Result<(), WireError> {
        let msg = wire::decode_shared(bytes).map_err(WireError::Undecodable)?;
        // With a sharded registry, an order to activate an actor already active
        // here is how the scheduler asks after one it has not heard of lately:
        // the activation is a no-op, and the answer is a report (once the core
        // has taken the order as the scheduler's).
        let asked = match &msg {
            DurableMsg::Command(wire::Command::Activate { key, .. }) if self.partial => self
                .core
                .actor(key)
                .filter(|a| a.is_active())
                .map(|a| (key.clone(), a.set().clone(), a.ballot())),
            _ => None,
        };
        self.core
            .handle(now, from, msg)
            .map_err(WireError::Refused)?;
        if let Some((key, set, ballot)) = asked {
            self.report_active(&key, set, ballot);
        }
        Ok(())
    }

    /// Lets the core take commands from the node the registry resolves the
    /// scheduler to (the scheduler's commands are not signed; its host is the one
    /// issuer that can be checked).
    fn update_commander(&mut self, now: Time, dir: &dyn Directory) {
        let commander = dir.lookup(&self.scheduler.registry_name());
        self.core.set_commander(now, commander);
    }

    /// The membership declared a node dead (or it left): the scheduler tick runs
    /// now rather than at its next turn, so the watchdog and the scheduler act on
    /// the death at once (the tick's cadence restarts from here).
    pub fn member_down(&mut self, now: Time, dir: &dyn Directory) {
        self.next_scheduler_tick = now;
        self.handle_timeout(now, dir);
    }

    /// Time passes: the core's timers, then the scheduler tick if it is due.
    pub fn handle_timeout(&mut self, now: Time, dir: &dyn Directory) {
        self.update_commander(now, dir);
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        if now >= self.next_scheduler_tick {
            self.next_scheduler_tick = now + self.config.scheduler_tick;
            self.scheduler_tick(now, &dir.facts(), dir);
        }
    }

    /// Hands a signed request to the scheduler, on a session of its own: its ack
    /// carries the reply, and a lost ack is followed by a retransmission that gets
    /// the kept reply (a shared session's cumulative ack could cover a request
    /// whose own ack, and reply, was lost). Answered by [`Effect::Answer`].
    ///
    /// `now_ms` is the driver's wall clock (milliseconds since the Unix epoch): the
    /// request's expiry is judged against it, here and, recorded with the request,
    /// by the scheduler. Before anything is opened or stored, the request is
    /// checked against the allowlist `dir` reports ([`admit`]: signature, network,
    /// expiry, the signer's rights); a request that fails is refused with
    /// [`SubmitError::Refused`] and leaves no trace. Replays of valid requests are
    /// the scheduler's to refuse (it keeps the signers' sequence numbers).
    pub fn submit(
        &mut self,
        signed: &Signed,
        now_ms: u64,
        dir: &dyn Directory,
    ) -> Result<RequestId, SubmitError> {
        let facts = dir.facts();
        let submitters = facts.submitters.iter().copied().collect();
        let members = facts.allowlisted.keys().copied().collect();
        let rights = Rights {
            network: &facts.network,
            submitters: &submitters,
            members: &members,
        };
        admit(signed, rights, now_ms).map_err(SubmitError::Refused)?;
        if self.waiting.len() >= self.config.waiters_max {
            return Err(SubmitError::TooManyWaiting);
        }
        let payload = encode_request(signed, now_ms).map_err(SubmitError::Encode)?;
        let session = ONE_SHOT | self.next_one_shot;
        self.next_one_shot = (self.next_one_shot.wrapping_add(1)) & !ONE_SHOT;
        if !self.core.session_open(session) {
            return Err(SubmitError::SessionsFull);
        }
        // A fresh one-shot session always has room for its one message.
        if self
            .core
            .session_send(session, &self.scheduler, payload, None)
            .is_none()
        {
            self.core.session_close(session);
            return Err(SubmitError::SessionsFull);
        }
        self.waiting.insert(session, Waiter::Scheduler);
        Ok(session)
    }

    /// The asker of `request` gave up: stop resending it.
    pub fn cancel(&mut self, request: RequestId) {
        if self.waiting.remove(&request).is_some() {
            self.core.session_close(request);
        }
    }

    /// Sends one message to `to` on a one-shot session of its own and waits for the
    /// actor's reply ([`Effect::Replied`]): exactly once, like a send, and a lost
    /// ack is followed by a retransmission that gets the kept reply. Bounded with
    /// the scheduler's requests by `waiters_max`; [`DurableHost::cancel`] gives up.
    pub fn ask(
        &mut self,
        to: &DurableKey,
        payload: Vec<u8>,
        trace: Option<TraceContext>,
    ) -> Result<RequestId, SendError> {
        if self.waiting.len() >= self.config.waiters_max {
            return Err(SendError::TooManyWaiting);
        }
        let session = ONE_SHOT | self.next_one_shot;
        self.next_one_shot = (self.next_one_shot.wrapping_add(1)) & !ONE_SHOT;
        if !self.core.session_open(session) {
            return Err(SendError::SessionFull);
        }
        if self
            .core
            .session_send(session, to, payload, trace)
            .is_none()
        {
            self.core.session_close(session);
            return Err(SendError::SessionFull);
        }
        self.status.sent += 1;
        self.waiting.insert(session, Waiter::Ask);
        Ok(session)
    }

    /// Sends a client message to `to` on this node's session (exactly once, in
    /// order); returns its number. Its acknowledgement is a [`Note::Acked`].
    pub fn send(
        &mut self,
        to: &DurableKey,
        payload: Vec<u8>,
        trace: Option<TraceContext>,
    ) -> Result<u64, SendError> {
        let seq = self
            .core
            .session_send(self.session, to, payload, trace)
            .ok_or(SendError::SessionFull)?;
        self.status.sent += 1;
        Ok(seq)
    }

    /// Stops every activation here without handing anything off (the node is
    /// going down hard; the replicas keep what was committed).
    pub fn abandon_all(&mut self) {
        self.core.abandon_all(Deactivation::Released);
    }

    // ----- outputs -----

    /// The next thing to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Runs the core until it has nothing more to say: routes what it transmits
    /// (to this node: straight back in; elsewhere: [`Effect::Send`]), runs user
    /// code, registers and reports activations. `observe` sees each [`Note`] with
    /// the host as it is at that moment.
    pub fn pump(
        &mut self,
        now: Time,
        dir: &dyn Directory,
        observe: &mut dyn FnMut(&Self, &Note),
    ) -> Result<(), Livelock> {
        self.update_commander(now, dir);
        for _ in 0..self.config.pump_rounds_max {
            self.core.flush(now, &mut |k| {
                dir.lookup(&k.registry_name()).map(|n| (n, Ballot::ZERO))
            });
            let mut sends = Vec::new();
            while let Some(t) = self.core.poll_transmit() {
                sends.push(t);
            }
            let mut events = Vec::new();
            while let Some(e) = self.core.poll_event() {
                events.push(e);
            }
            if sends.is_empty() && events.is_empty() {
                return Ok(());
            }
            for (to, msg) in sends {
                self.transmit(now, to, msg, observe);
            }
            for e in events {
                self.event(now, e, observe);
            }
        }
        Err(Livelock {
            rounds: self.config.pump_rounds_max,
        })
    }

    fn transmit(
        &mut self,
        now: Time,
        to: NodeId,
        msg: DurableMsg,
        observe: &mut dyn FnMut(&Self, &Note),
    ) {
        if to == self.me {
            // This node's own word: refused only if the core's own checks fail,
            // which the core counts in its stats.
            let _ = self.core.handle(now, self.me, msg);
            return;
        }
        match wire::encode(&msg) {
            Ok(bytes) => self.effects.push_back(Effect::Send { to, bytes }),
            Err(error) => observe(self, &Note::Unencodable { to, error }),
        }
    }

    fn event(&mut self, now: Time, e: NodeEvent, observe: &mut dyn FnMut(&Self, &Note)) {
        match e {
            NodeEvent::Actor { key, event } => self.actor_event(now, key, event, observe),
            NodeEvent::Session { id, event } => {
                let StreamEvent::Acked { to, up_to, replies } = event;
                if id == self.session && to != self.scheduler {
                    let seen = self.acked_by.entry(to.clone()).or_insert(0);
                    if up_to > *seen {
                        self.status.acked += up_to - *seen;
                        *seen = up_to;
                    }
                }
                observe(
                    self,
                    &Note::Acked {
                        session: id,
                        to,
                        up_to,
                    },
                );
                if id & ONE_SHOT != 0 {
                    if let Some((_, reply)) = replies.into_iter().next()
                        && let Some(waiter) = self.waiting.remove(&id)
                    {
                        if waiter == Waiter::Ask {
                            self.effects.push_back(Effect::Replied {
                                request: id,
                                reply: reply.map(Vec::from),
                            });
                            if self.core.session_unacked(id) == Some(0) {
                                self.core.session_close(id);
                            }
                            return;
                        }
                        let answer = match reply {
                            Ok(bytes) => decode_response(&bytes).map_err(AnswerError::Undecodable),
                            Err(why) => Err(AnswerError::Refused(why)),
                        };
                        self.effects.push_back(Effect::Answer {
                            request: id,
                            answer,
                        });
                    }
                    if self.core.session_unacked(id) == Some(0) {
                        self.core.session_close(id);
                    }
                }
            }
            NodeEvent::Refused { key, why } => observe(self, &Note::Refused { key, why }),
            NodeEvent::Prepare {
                key,
                order,
                spec,
                user,
            } => {
                let built = match self.kinds.build(&key, &spec, &user) {
                    Ok(code) => {
                        self.standbys.insert(key.clone(), (order, code));
                        Ok(())
                    }
                    Err(why) => {
                        self.standbys.remove(&key);
                        Err(why.to_string())
                    }
                };
                self.core.prepared(&key, order, built);
            }
            NodeEvent::Unprepared { key } => {
                self.standbys.remove(&key);
            }
            NodeEvent::MoveRefused { key, to, why } => {
                self.report_move_failed(&key, to, false, why.clone());
                observe(self, &Note::MoveFailed { key, to, why });
            }
        }
    }

    fn actor_event(
        &mut self,
        now: Time,
        key: DurableKey,
        event: ActivationEvent,
        observe: &mut dyn FnMut(&Self, &Note),
    ) {
        match event {
            ActivationEvent::Restore { user, warm } => {
                let standby = self.standbys.remove(&key);
                if let Some(order) = warm {
                    match standby {
                        Some((built, code)) if built == order => {
                            if let Some(b) = code.batching() {
                                self.core.set_batching(now, &key, b);
                            }
                            self.code.insert(key, code);
                        }
                        // Not expected (the core marks a standby ready only once
                        // its code is here, and drops both together): the
                        // activation rebuilds from its record, as after a crash of
                        // the user code.
                        _ => {
                            self.code.remove(&key);
                            self.core
                                .user_failed(now, &key, "the warm standby is gone".into());
                        }
                    }
                    return;
                }
                let spec = self
                    .core
                    .actor(&key)
                    .map(|a| a.spec().to_vec())
                    .unwrap_or_default();
                match self.kinds.build(&key, &spec, &user) {
                    Ok(code) => {
                        if let Some(b) = code.batching() {
                            self.core.set_batching(now, &key, b);
                        }
                        self.code.insert(key, code);
                    }
                    Err(why) => {
                        self.code.remove(&key);
                        self.core.user_failed(now, &key, why.to_string());
                    }
                }
            }
            ActivationEvent::Apply {
                token,
                inputs,
                snapshot,
            } => {
                self.batches += 1;
                let twice = matches!(self.config.fault, Some(Fault::DoubleApply { every }) if every > 0 && self.batches.is_multiple_of(every));
                let result = match self.code.get_mut(&key) {
                    Some(code) => {
                        if twice {
                            let _ = code.apply(inputs.clone(), false);
                        }
                        let (count, parent) = (inputs.len(), inputs.iter().find_map(|i| i.trace));
                        let mut batch = Some(inputs);
                        let mut run = || code.apply(batch.take().unwrap_or_default(), snapshot);
                        match &self.tracer {
                            Some(t) => t.around(&key, count, parent, &mut run),
                            None => run(),
                        }
                    }
                    None => Err(CodeError::Missing),
                };
                match result {
                    Ok(applied) => self.core.applied(now, &key, token, applied),
                    Err(why) => self.core.user_failed(now, &key, why.to_string()),
                }
            }
            ActivationEvent::Activated {
                ballot,
                set,
                restored,
            } => {
                self.effects.push_back(Effect::Register {
                    name: key.registry_name(),
                    actor: ActorId::new(self.me, SERVICE_LOCAL_ID),
                    rank: ballot.round,
                });
                if key == self.scheduler {
                    // The scheduler just became active here: its first view now,
                    // not up to a tick later (it answers `Starting` until then).
                    self.next_scheduler_tick = now;
                } else {
                    self.report_active(&key, set.clone(), ballot);
                }
                // The record restored names the activation that wrote it: if
                // that was another host this node saw down, this is a failover.
                let failover = restored
                    .map(|(wrote, _)| wrote.node)
                    .filter(|from| *from != self.me)
                    .and_then(|from| {
                        let seen = self.down_since.get(&from)?;
                        Some((from, now.saturating_since(*seen)))
                    });
                observe(
                    self,
                    &Note::Activated {
                        key: key.clone(),
                        ballot,
                        set,
                        restored,
                    },
                );
                if let Some((from, after)) = failover {
                    self.status.failovers += 1;
                    observe(self, &Note::FailedOver { key, from, after });
                }
            }
            ActivationEvent::Reconfigured { set } => {
                let ballot = self.core.actor(&key).map_or(Ballot::ZERO, |a| a.ballot());
                self.report_active(&key, set.clone(), ballot);
                observe(self, &Note::Reconfigured { key, set });
            }
            ActivationEvent::Committed {
                version, latency, ..
            } => {
                observe(
                    self,
                    &Note::Committed {
                        key,
                        version,
                        latency,
                    },
                );
            }
            ActivationEvent::Command { to, command } => {
                // Sent once, not retried: the scheduler reconciles.
                self.transmit(now, to, DurableMsg::Command(command), observe);
            }
            ActivationEvent::Migrated {
                to,
                pause,
                drain,
                by_reference,
                warm,
                prepare,
            } => {
                let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
                self.status.migrations += 1;
                self.status.migrations_warm += u64::from(warm);
                self.status.migration_pause_max_ms = self.status.migration_pause_max_ms.max(ms);
                if self.status.migration_pauses_us.len() >= PAUSES_KEPT {
                    self.status.migration_pauses_us.remove(0);
                }
                if self.status.migration_prepares_us.len() >= PAUSES_KEPT {
                    self.status.migration_prepares_us.remove(0);
                }
                self.status
                    .migration_prepares_us
                    .push(u64::try_from(prepare.as_micros()).unwrap_or(u64::MAX));
                self.status
                    .migration_pauses_us
                    .push(u64::try_from(pause.as_micros()).unwrap_or(u64::MAX));
                observe(
                    self,
                    &Note::Migrated {
                        key,
                        to,
                        pause,
                        drain,
                        by_reference,
                        warm,
                        prepare,
                    },
                );
            }
            ActivationEvent::MoveFailed { to, why } => {
                self.report_move_failed(&key, to, true, why.clone());
                observe(self, &Note::MoveFailed { key, to, why });
            }
            ActivationEvent::Deactivated(why) => {
                self.code.remove(&key);
                self.standbys.remove(&key);
                self.effects.push_back(Effect::Unregister {
                    name: key.registry_name(),
                });
                observe(self, &Note::Deactivated { key, why });
            }
        }
    }

    // ----- the scheduler -----

    fn scheduler_tick(&mut self, now: Time, facts: &ClusterFacts, dir: &dyn Directory) {
        let sched = self.scheduler.clone();
        let here = self.core.actor(&sched).is_some();
        facts.network.clone_into(&mut self.network);
        // When each member was first seen suspected or dead (failovers are
        // timed from it); bounded by the membership view.
        let mut down = BTreeMap::new();
        for m in &facts.members {
            if m.state != MemberState::Alive {
                let seen = self.down_since.get(&m.id).copied().unwrap_or(now);
                down.insert(m.id, seen);
            }
        }
        self.down_since = down;
        // Releases from the scheduler's host are checked with the scheduler's
        // replicas (the set every node computes from the allowlist).
        let set = scheduler_set(&facts.allowlisted_ids());
        self.core
            .set_authority(set.clone().map(|set| (sched.clone(), set)));
        let live = facts.live();
        let dead = facts.down();
        let located = dir
            .lookup(&sched.registry_name())
            .or_else(|| self.core.forward_of(&sched).map(|(node, _)| node));
        if self.watchdog.check(
            self.me,
            &live,
            &dead,
            located,
            here,
            self.config.watchdog_grace_ticks,
        ) && let Some(set) = set
        {
            self.core
                .activate(now, sched.clone(), vec![set], Vec::new(), Ballot::ZERO);
        }
        if self.hosted_scheduler() {
            let view = facts.view(self.me, self.kinds.names().map(str::to_string));
            if let Ok(tick) = encode_tick(&view) {
                self.core.local_input(now, &sched, tick);
            }
        }
        self.ticks = self.ticks.wrapping_add(1);
        self.partial = facts.names_partial;
        if facts.names_partial && self.ticks.is_multiple_of(REPORT_EVERY_TICKS) {
            self.report_actives();
        }
    }

    /// With a sharded registry the scheduler's node holds only some names, so
    /// hosts repeat what they host: every [`REPORT_EVERY_TICKS`] ticks, each
    /// actor active here (the scheduler aside) is reported again, at most
    /// [`REPORTS_PER_ROUND_MAX`] per round; past the bound, the next round goes
    /// on after the last one reported. A host with more actors reports each less
    /// often; the scheduler then orders an activation of one it has not heard
    /// of lately, which the host answers with a report (see [`Self::handle_wire`]).
    /// A round is skipped while reports of an earlier one wait to be
    /// acknowledged (the scheduler cannot be reached), so at most one is queued.
    fn report_actives(&mut self) {
        // At most one round queued: while the scheduler cannot be reached, the
        // session would otherwise fill with reports, stale by the time they land.
        if self
            .core
            .session_pending(self.session)
            .iter()
            .any(|(k, ..)| *k == self.scheduler)
        {
            return;
        }
        let mut actives: Vec<(DurableKey, ReplicaSet, Ballot)> = self
            .core
            .actors()
            .filter(|(k, a)| a.is_active() && **k != self.scheduler)
            .map(|(k, a)| (k.clone(), a.set().clone(), a.ballot()))
            .collect();
        // In key order (the core's map): this round starts after the last one.
        if let Some(last) = &self.reported_last {
            let start = actives.partition_point(|(k, _, _)| k <= last);
            actives.rotate_left(start);
        }
        let all = actives.len() <= REPORTS_PER_ROUND_MAX;
        actives.truncate(REPORTS_PER_ROUND_MAX);
        self.reported_last = if all {
            None
        } else {
            actives.last().map(|(k, _, _)| k.clone())
        };
        for (key, set, ballot) in actives {
            self.report_active(&key, set, ballot);
        }
    }

    /// Tells the scheduler `key` is active here under `ballot`, committing to `set`.
    fn report_active(&mut self, key: &DurableKey, set: ReplicaSet, ballot: Ballot) {
        let report = Report::Active {
            key: key.to_string(),
            node: self.me,
            set,
            ballot,
        };
        self.report(report);
    }

    /// Tells the scheduler the move of `key` to `to` it ordered failed here, so it
    /// acts on it at its next tick instead of finding out by waiting.
    fn report_move_failed(&mut self, key: &DurableKey, to: NodeId, started: bool, why: String) {
        let report = Report::MoveFailed {
            key: key.to_string(),
            node: self.me,
            to,
            started,
            why,
        };
        self.report(report);
    }

    fn report(&mut self, report: Report) {
        self.nonce = self.nonce.wrapping_add(1);
        // Reports are judged by signer and ballot, not by expiry or sequence (see
        // `plexus_scheduler::protocol`): no wall clock is needed here.
        let Ok(signed) = Signed::sign(
            Request::Report(report),
            &self.network,
            self.nonce,
            0,
            &self.signer,
        ) else {
            return;
        };
        if let Ok(payload) = encode_request(&signed, 0) {
            let sched = self.scheduler.clone();
            // A full session drops the report; the scheduler learns the location
            // from the registry at its next tick anyway.
            let _ = self.core.session_send(self.session, &sched, payload, None);
        }
    }
}

fn scheduler_key() -> DurableKey {
    // SCHEDULER_KEY is a constant that `DurableKey::new` accepts (tested below).
    DurableKey::new(SCHEDULER_KEY).unwrap_or_else(|_| unreachable!("SCHEDULER_KEY is a valid key"))
}
