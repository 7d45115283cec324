//! The durable-actor service of a daemon: the production driver of
//! [`plexus_durable::DurableNode`] and of the scheduler.
//!
//! One actor per node, at the well-known local id [`SERVICE_LOCAL_ID`], owns the
//! node's [`DurableNode`] (with its rocksdb replica store) and the user code of the
//! durable actors active here. Everything it does is glue: protocol messages from
//! other nodes' services arrive as [`ServiceMsg::Wire`] and go into the core;
//! what the core transmits goes to the other services through the mesh; a ticker
//! drives the core's timers and the scheduler's reconciliation; activation events
//! run user code, (de)register actors in the cluster registry (ranked by ballot) and
//! report to the scheduler. Every decision is in the cores, as in the simulator
//! (`sim/src/world.rs`), which drives the same `DurableNode` and `Scheduler`.
//!
//! Bounds: the service's mailbox (`MAILBOX`), the core's own limits (sessions,
//! activations, forwards, per-actor pending input), and `WAITERS_MAX` local
//! requests waiting for the scheduler's answer.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, Context, Message, SpawnOptions, Wire,
};
use plexus_actors::{ActorId, NodeId, Time};
use plexus_durable::activation::ActivationEvent;
use plexus_durable::node::{DurableNode, NodeConfig, NodeEvent};
use plexus_durable::stream::StreamEvent;
use plexus_durable::types::{Ballot, DurableKey};
use plexus_durable::wire::DurableMsg;
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::{Resources, Tags};
use plexus_mesh::driver::Mesh;
use plexus_scheduler::SCHEDULER_KEY;
use plexus_scheduler::app::{
    WATCHDOG_GRACE_TICKS, Watchdog, decode_response, encode_request, encode_tick, scheduler_set,
};
use plexus_scheduler::placement::NodeInfo;
use plexus_scheduler::protocol::{Report, Request, Response, Signed, View};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::apps::{self, DurableCode};
use super::store::RocksStore;

pub use plexus_durable::SERVICE_LOCAL_ID;

/// The service's mailbox capacity; remote messages past it are refused and resent
/// by their senders' streams.
pub const MAILBOX: usize = 16_384;
/// Local requests waiting for the scheduler's answer at once; more are refused.
pub const WAITERS_MAX: usize = 1_024;
/// How often the core's timers are checked.
pub const TICK: Duration = Duration::from_millis(10);
/// How often the scheduler reconciles (and the watchdog looks for it).
pub const SCHEDULER_TICK: Duration = Duration::from_millis(500);
/// Client session numbers: one-shot sessions (one request each) have this bit.
const ONE_SHOT: u64 = 1 << 63;

/// Messages to the service.
#[derive(Serialize, Deserialize)]
pub enum ServiceMsg {
    /// A protocol message from another node's service.
    Wire(DurableMsg),
    /// Time passes (local only).
    #[serde(skip)]
    Tick,
    /// A request from this node's API (local only).
    #[serde(skip)]
    Local(Local),
}

impl Message for ServiceMsg {
    type Reply = ();
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

/// Requests from the node's own API.
pub enum Local {
    /// Send a signed request to the scheduler and wait for its answer.
    Scheduler {
        /// The request.
        signed: Signed,
        /// The answer.
        reply: oneshot::Sender<Result<Response, String>>,
    },
    /// Send a client message to a durable actor (exactly once); answered when it is
    /// accepted for sending (its ack comes later, see `Status`).
    Send {
        /// The actor.
        to: DurableKey,
        /// The message.
        payload: Vec<u8>,
        /// The caller's trace context; it travels with the message and with
        /// everything the message causes, across stages and nodes.
        trace: Option<plexus_actors::envelope::TraceContext>,
        /// Its number in this node's client session, or why not.
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// What runs here.
    Status {
        /// The answer.
        reply: oneshot::Sender<ServiceStatus>,
    },
}

/// Why a request to the scheduler got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The local durable service is gone (the node is stopping).
    #[error("the durable service stopped")]
    Stopped,
    /// The service could not pass the request on; the string says why.
    #[error("{0}")]
    Failed(String),
    /// No answer before the deadline.
    #[error("the scheduler did not answer in time (is a majority of its replicas up?)")]
    Timeout,
}

/// How often a request is asked again while the scheduler answers
/// [`plexus_scheduler::core::STARTING`].
const STARTING_RETRY: Duration = Duration::from_millis(200);

/// Hands `signed` to the scheduler through this node's service and waits for the
/// answer until `deadline`. A scheduler that just (re)started answers
/// [`plexus_scheduler::core::STARTING`] until its first view of the cluster (half a
/// second at most); the request is then asked again, within the same deadline.
pub async fn ask_scheduler(
    service: &ActorRef<ServiceMsg>,
    signed: &Signed,
    deadline: tokio::time::Instant,
) -> Result<Response, AskError> {
    loop {
        let (tx, rx) = oneshot::channel();
        let request = ServiceMsg::Local(Local::Scheduler {
            signed: signed.clone(),
            reply: tx,
        });
        service.tell(request).await.map_err(|_| AskError::Stopped)?;
        let answer = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(answer))) => answer,
            Ok(Ok(Err(why))) => return Err(AskError::Failed(why)),
            Ok(Err(_)) => return Err(AskError::Stopped),
            Err(_) => return Err(AskError::Timeout),
        };
        match &answer {
            Response::Rejected { reason }
                if reason == plexus_scheduler::core::STARTING
                    && tokio::time::Instant::now() + STARTING_RETRY < deadline =>
            {
                tokio::time::sleep(STARTING_RETRY).await;
            }
            _ => return Ok(answer),
        }
    }
}

/// What the service reports about this node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Durable actors active here, with a summary of their state.
    pub actors: BTreeMap<String, serde_json::Value>,
    /// Client messages sent from this node.
    pub sent: u64,
    /// Of which acknowledged (their effects are committed at a majority).
    pub acked: u64,
    /// Live migrations completed from this node.
    pub migrations: u64,
    /// Longest migration pause seen here, ms.
    pub migration_pause_max_ms: u64,
    /// Migration pauses, µs (the last 1,000).
    pub migration_pauses_us: Vec<u64>,
    /// Activations started here.
    pub activations: u64,
    /// Commits by actors here.
    pub commits: u64,
    /// Whether the scheduler is active here.
    pub scheduler_here: bool,
}

/// The service actor.
pub struct DurableService {
    mesh: Mesh,
    key: NodeKey,
    data_dir: std::path::PathBuf,
    /// What this node offers and its tags (the mesh lists only the others).
    local: (Resources, Tags),
}

/// Its state.
pub struct ServiceState {
    start: std::time::Instant,
    core: DurableNode<RocksStore>,
    code: BTreeMap<DurableKey, Box<dyn DurableCode>>,
    watchdog: Watchdog,
    next_scheduler_tick: Time,
    /// The session this node's reports and API traffic go on.
    session: u64,
    next_one_shot: u64,
    nonce: u64,
    waiting: BTreeMap<u64, oneshot::Sender<Result<Response, String>>>,
    status: ServiceStatus,
    /// Per receiver: how far this node's client session was acknowledged.
    acked_by: BTreeMap<DurableKey, u64>,
    me: NodeId,
}

impl DurableService {
    /// Starts the service on a meshed node.
    pub async fn start(
        system: &ActorSystem,
        mesh: Mesh,
        key: NodeKey,
        data_dir: &std::path::Path,
        resources: Resources,
        tags: Tags,
    ) -> Result<ActorRef<ServiceMsg>, String> {
        let me = system.node_id();
        let service = system
            .spawn_with(
                DurableService {
                    mesh,
                    key,
                    data_dir: data_dir.to_path_buf(),
                    local: (resources, tags),
                },
                (),
                SpawnOptions {
                    id: Some(ActorId::new(me, SERVICE_LOCAL_ID)),
                    kind: Some("plexus.durable".into()),
                    capacity: Some(MAILBOX),
                    ..SpawnOptions::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let ticker = service.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                // A full mailbox already has work queued: skip this tick.
                match ticker.try_tell(ServiceMsg::Tick) {
                    Ok(()) => {}
                    Err(plexus_actors::runtime::SendError::MailboxFull(_)) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(service)
    }
}

impl Actor for DurableService {
    type Msg = ServiceMsg;
    type State = ServiceState;
    type Args = ();

    async fn started(&self, ctx: &Context<ServiceMsg>, _: ()) -> Result<ServiceState, ActorError> {
        let path = super::store::store_dir(&self.data_dir);
        std::fs::create_dir_all(&path)
            .map_err(|e| ActorError::from(format!("cannot create {}: {e}", path.display())))?;
        let store = RocksStore::open(&path).map_err(|e| ActorError::from(e.to_string()))?;
        let me = ctx.system().node_id();
        // A fresh client session per process life: its numbering restarts at 1.
        // Receivers deduplicate by session number, cluster-wide, so every session
        // (this node's, and each one-shot request's) takes a random 63-bit number.
        let mut seed = [0u8; 24];
        getrandom::fill(&mut seed).map_err(|e| ActorError::from(e.to_string()))?;
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let session = word(0) & !ONE_SHOT;
        let mut core = DurableNode::new(me, NodeConfig::default(), store);
        core.session_open(session);
        Ok(ServiceState {
            start: std::time::Instant::now(),
            core,
            code: BTreeMap::new(),
            watchdog: Watchdog::default(),
            next_scheduler_tick: Time::ZERO,
            session,
            next_one_shot: word(1) & !ONE_SHOT,
            nonce: word(2) >> 16,
            waiting: BTreeMap::new(),
            status: ServiceStatus::default(),
            acked_by: BTreeMap::new(),
            me,
        })
    }

    async fn handle(
        &self,
        ctx: &Context<ServiceMsg>,
        msg: ServiceMsg,
        st: &mut ServiceState,
    ) -> Result<(), ActorError> {
        let now = st.now();
        match msg {
            ServiceMsg::Wire(m) => st.core.handle(now, m),
            ServiceMsg::Tick => {
                if st.core.poll_timeout().is_some_and(|t| t <= now) {
                    st.core.handle_timeout(now);
                }
                if now >= st.next_scheduler_tick {
                    st.next_scheduler_tick = now + SCHEDULER_TICK;
                    self.scheduler_tick(st, now);
                    // Requests whose asker gave up (the API timed out): stop
                    // resending them.
                    let core = &mut st.core;
                    st.waiting.retain(|id, reply| {
                        let keep = !reply.is_closed();
                        if !keep {
                            core.session_close(*id);
                        }
                        keep
                    });
                }
            }
            ServiceMsg::Local(local) => self.local(st, now, local),
        }
        self.pump(ctx.system(), st).await;
        Ok(())
    }
}

impl ServiceState {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

fn scheduler_key() -> Option<DurableKey> {
    DurableKey::new(SCHEDULER_KEY).ok()
}

impl DurableService {
    fn sign(&self, st: &mut ServiceState, request: Request) -> Option<Vec<u8>> {
        st.nonce += 1;
        let signed = Signed::sign(request, st.nonce, &self.key).ok()?;
        encode_request(&signed).ok()
    }

    fn report(&self, st: &mut ServiceState, report: Report) {
        let Some(sched) = scheduler_key() else { return };
        if let Some(payload) = self.sign(st, Request::Report(report)) {
            let session = st.session;
            let _ = st.core.session_send(session, &sched, payload, None);
        }
    }

    /// Tells the scheduler `key` is active here under `ballot`, committing to `set`.
    fn report_active(
        &self,
        st: &mut ServiceState,
        key: &DurableKey,
        set: plexus_durable::ReplicaSet,
        ballot: Ballot,
    ) {
        let report = Report::Active {
            key: key.to_string(),
            node: st.me,
            set,
            ballot,
        };
        self.report(st, report);
    }

    fn local(&self, st: &mut ServiceState, now: Time, local: Local) {
        let _ = now;
        match local {
            Local::Scheduler { signed, reply } => {
                if st.waiting.len() >= WAITERS_MAX {
                    let _ = reply.send(Err("too many requests waiting for the scheduler".into()));
                    return;
                }
                let (Some(sched), Ok(payload)) = (scheduler_key(), encode_request(&signed)) else {
                    let _ = reply.send(Err("the request does not encode".into()));
                    return;
                };
                // One session per request: its ack carries the reply.
                let session = ONE_SHOT | st.next_one_shot;
                st.next_one_shot = (st.next_one_shot + 1) & !ONE_SHOT;
                if !st.core.session_open(session) {
                    let _ = reply.send(Err("too many client sessions open".into()));
                    return;
                }
                if st
                    .core
                    .session_send(session, &sched, payload, None)
                    .is_none()
                {
                    st.core.session_close(session);
                    let _ = reply.send(Err("the session refused the request".into()));
                    return;
                }
                st.waiting.insert(session, reply);
            }
            Local::Send {
                to,
                payload,
                trace,
                reply,
            } => {
                let session = st.session;
                match st.core.session_send(session, &to, payload, trace) {
                    Some(seq) => {
                        st.status.sent += 1;
                        let _ = reply.send(Ok(seq));
                    }
                    None => {
                        let _ = reply.send(Err("the client session is full; retry".into()));
                    }
                }
            }
            Local::Status { reply } => {
                let mut status = st.status.clone();
                let stats = st.core.stats;
                status.activations = stats.activations;
                status.commits = stats.commits;
                status.actors = st
                    .core
                    .actors()
                    .filter(|(_, a)| a.is_active())
                    .map(|(k, _)| {
                        let summary = st
                            .code
                            .get(k)
                            .map(|c| c.describe())
                            .unwrap_or(serde_json::Value::Null);
                        (k.to_string(), summary)
                    })
                    .collect();
                status.scheduler_here =
                    scheduler_key().is_some_and(|k| status.actors.contains_key(k.as_str()));
                let _ = reply.send(status);
            }
        }
    }

    /// The mesh's view, for the scheduler.
    fn view(&self, me: NodeId) -> View {
        let allowlist = self.mesh.allowlist().allowlist;
        let mut view = View {
            me: Some(me),
            submitters: allowlist.submitters.keys().copied().collect(),
            members: allowlist.nodes.keys().copied().collect(),
            kinds: apps::KINDS.iter().map(|s| s.to_string()).collect(),
            ..View::default()
        };
        let mut tags = allowlist
            .nodes
            .get(&me)
            .map(|e| e.tags.clone())
            .unwrap_or_default();
        tags.extend(self.local.1.clone());
        view.nodes.push(NodeInfo {
            id: me,
            tags,
            capacity: self.local.0,
            alive: true,
            draining: false,
        });
        for m in self.mesh.members() {
            let Ok(id) = m.id.parse::<NodeId>() else {
                continue;
            };
            view.nodes.push(NodeInfo {
                id,
                tags: m.tags.clone(),
                capacity: m.total,
                alive: m.state == "alive",
                draining: false,
            });
        }
        for (name, loc) in self.mesh.names() {
            if let Some(key) = name.strip_prefix("durable:") {
                view.locations.insert(key.to_string(), loc.node);
            }
        }
        view
    }

    fn scheduler_tick(&self, st: &mut ServiceState, now: Time) {
        let Some(sched) = scheduler_key() else { return };
        let allowlisted: Vec<NodeId> = self
            .mesh
            .allowlist()
            .allowlist
            .nodes
            .keys()
            .copied()
            .collect();
        let live: Vec<NodeId> = self
            .mesh
            .members()
            .iter()
            .filter(|m| m.state == "alive")
            .filter_map(|m| m.id.parse().ok())
            .collect();
        let located = self.mesh.lookup(&sched.registry_name()).is_some()
            || st.core.forward_of(&sched).is_some();
        let here = st.core.actor(&sched).is_some();
        if st
            .watchdog
            .check(st.me, &live, located, here, WATCHDOG_GRACE_TICKS)
            && let Some(set) = scheduler_set(&allowlisted)
        {
            st.core
                .activate(now, sched.clone(), vec![set], Vec::new(), Ballot::ZERO);
        }
        let hosting = st.core.actor(&sched).is_some_and(|a| a.is_active());
        if hosting && let Ok(tick) = encode_tick(&self.view(st.me)) {
            st.core.local_input(now, &sched, tick);
        }
    }

    /// Runs the core until it has nothing more to say.
    async fn pump(&self, system: &ActorSystem, st: &mut ServiceState) {
        for _ in 0..1_000 {
            let now = st.now();
            let mesh = self.mesh.clone();
            st.core.flush(now, &mut |k| {
                mesh.lookup(&k.registry_name())
                    .map(|l| (l.node, Ballot::ZERO))
            });
            let mut sends = Vec::new();
            while let Some(t) = st.core.poll_transmit() {
                sends.push(t);
            }
            let mut events = Vec::new();
            while let Some(e) = st.core.poll_event() {
                events.push(e);
            }
            if sends.is_empty() && events.is_empty() {
                return;
            }
            for (to, msg) in sends {
                if to == st.me {
                    st.core.handle(now, msg);
                } else {
                    let peer = system.resolve::<ServiceMsg>(ActorId::new(to, SERVICE_LOCAL_ID));
                    // Refused (window or mailbox full, peer down): the core resends.
                    let _ = peer.try_tell(ServiceMsg::Wire(msg));
                }
            }
            for e in events {
                self.event(system, st, now, e).await;
            }
        }
        tracing::warn!("the durable service did not quiesce in 1,000 rounds");
    }

    async fn event(&self, system: &ActorSystem, st: &mut ServiceState, now: Time, e: NodeEvent) {
        let me = st.me;
        match e {
            NodeEvent::Actor { key, event } => match event {
                ActivationEvent::Restore { user } => {
                    let spec = st
                        .core
                        .actor(&key)
                        .map(|a| a.spec().to_vec())
                        .unwrap_or_default();
                    match apps::build(&key, &spec, &user) {
                        Ok(code) => {
                            st.code.insert(key, code);
                        }
                        Err(why) => {
                            st.code.remove(&key);
                            st.core.user_failed(now, &key, why);
                        }
                    }
                }
                ActivationEvent::Apply {
                    token,
                    inputs,
                    snapshot,
                } => {
                    let span = apply_span(&key, &inputs);
                    let _entered = span.enter();
                    let result = match st.code.get_mut(&key) {
                        Some(code) => code.apply(inputs, snapshot),
                        None => Err("no user code".to_string()),
                    };
                    match result {
                        Ok(mut applied) => {
                            pass_on_trace(&span, &mut applied);
                            st.core.applied(now, &key, token, applied)
                        }
                        Err(why) => st.core.user_failed(now, &key, why),
                    }
                }
                ActivationEvent::Activated { ballot, set, .. } => {
                    let name = key.registry_name();
                    let id = ActorId::new(me, SERVICE_LOCAL_ID);
                    if let Ok(Err(e)) = self.mesh.register_ranked(&name, id, ballot.round).await {
                        tracing::warn!(%key, error = %e, "cannot register a durable actor");
                    }
                    if key.as_str() != SCHEDULER_KEY {
                        self.report_active(st, &key, set, ballot);
                    }
                    tracing::info!(%key, round = ballot.round, "durable actor active here");
                }
                ActivationEvent::Reconfigured { set } => {
                    let ballot = st.core.actor(&key).map_or(Ballot::ZERO, |a| a.ballot());
                    self.report_active(st, &key, set, ballot);
                }
                ActivationEvent::Committed { .. } => {}
                ActivationEvent::Command { to, command } => {
                    let msg = DurableMsg::Command(command);
                    if to == me {
                        st.core.handle(now, msg);
                    } else {
                        // Not retried: the scheduler reconciles.
                        let peer = system.resolve::<ServiceMsg>(ActorId::new(to, SERVICE_LOCAL_ID));
                        let _ = peer.try_tell(ServiceMsg::Wire(msg));
                    }
                }
                ActivationEvent::Migrated { to, pause } => {
                    let ms = pause.as_millis() as u64;
                    st.status.migrations += 1;
                    st.status.migration_pause_max_ms = st.status.migration_pause_max_ms.max(ms);
                    if st.status.migration_pauses_us.len() >= 1_000 {
                        st.status.migration_pauses_us.remove(0);
                    }
                    st.status.migration_pauses_us.push(pause.as_micros() as u64);
                    tracing::info!(%key, to = %to.short(), pause_ms = ms, "migrated");
                }
                ActivationEvent::Deactivated(why) => {
                    st.code.remove(&key);
                    // Withdraw this node's claim whether or not it still wins: a
                    // stale claim left behind would resolve again once the newer
                    // holder's node died.
                    let _ = self.mesh.unregister(&key.registry_name()).await;
                    tracing::info!(%key, ?why, "durable actor deactivated here");
                }
            },
            NodeEvent::Session { id, event } => {
                let StreamEvent::Acked { to, up_to, replies } = event;
                if id == st.session && Some(&to) != scheduler_key().as_ref() {
                    let seen = st.acked_by.entry(to).or_insert(0);
                    if up_to > *seen {
                        st.status.acked += up_to - *seen;
                        *seen = up_to;
                    }
                }
                if id & ONE_SHOT != 0 {
                    if let Some((_, reply)) = replies.into_iter().next()
                        && let Some(waiter) = st.waiting.remove(&id)
                    {
                        let answer = match reply {
                            Ok(bytes) => decode_response(&bytes).map_err(|e| e.to_string()),
                            Err(why) => Err(why),
                        };
                        let _ = waiter.send(answer);
                    }
                    if st.core.session_unacked(id) == Some(0) {
                        st.core.session_close(id);
                    }
                }
            }
            NodeEvent::Refused { key, why } => {
                tracing::warn!(%key, %why, "a durable command was refused here");
            }
        }
    }
}

/// A span for applying a batch, whose parent is the trace context the batch's
/// first traced input carried (from another node, usually): with the exporter on,
/// a request through several stages on several nodes shows as one trace.
fn apply_span(key: &DurableKey, inputs: &[plexus_durable::activation::Input]) -> tracing::Span {
    let span = tracing::info_span!("durable.apply", %key, inputs = inputs.len());
    if let Some(t) = inputs.iter().find_map(|i| i.trace) {
        crate::telemetry::adopt(&span, &t);
    }
    span
}

/// Outputs of a traced batch carry the apply span's context on, so the receiver's
/// span is a child of this one.
fn pass_on_trace(span: &tracing::Span, applied: &mut plexus_durable::activation::Applied) {
    for output in &mut applied.outputs {
        if let plexus_durable::activation::Output::Send { trace, .. } = output {
            *trace = crate::telemetry::pass_on(span, *trace);
        }
    }
}
