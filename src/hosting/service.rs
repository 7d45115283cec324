//! The durable-actor service of a daemon: the production driver of
//! [`plexus_host::DurableHost`].
//!
//! One actor per node, at the well-known local id [`SERVICE_LOCAL_ID`], owns the
//! node's host (with its rocksdb replica store). It only carries things in and out:
//! durable protocol bytes from other nodes' services arrive as [`ServiceMsg::Wire`]
//! and go into the host; a ticker hands it time; the node's API hands it requests.
//! What the host emits goes out: bytes to the other services over the mesh,
//! registrations to the cluster registry, answers to the API. Every decision
//! (routing, user code, sessions, the scheduler's watchdog and tick, reports) is
//! the host's, and the simulator drives the same host.
//!
//! **Group commit.** The replica store's writes are not synced inside the
//! service's turn (an fsync would hold an async worker for milliseconds, and every
//! durable actor of the node behind it). Everything the host emits after an
//! unsynced write is held back, tagged with the store's write count; one sync at a
//! time runs on tokio's blocking pool and covers every write made before it
//! started, from all the actors this node hosts and replicates, and its
//! [`ServiceMsg::Synced`] releases what it covered, in order. Writes that arrive
//! while a sync runs wait for the next one, so under load a sync carries many
//! writes. With `[durable] durability = "each"` every write is synced in place
//! instead (the previous behaviour, kept to measure against).
//!
//! Bounds: the service's mailbox ([`MAILBOX`]; remote messages past it are refused
//! and resent by their senders' streams, a tick past it is skipped), the output
//! held back for a sync ([`HELD_MAX`]; past it the service waits for a sync in its
//! turn, so its mailbox fills and pushes back), and the host's own (requests waiting
//! for the scheduler, sessions, activations, per-actor input).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::codec::Bytes;
use plexus_actors::envelope::TraceContext;
use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, Context, Message, ProtocolBytes, SpawnOptions, Wire,
};
use plexus_actors::{ActorId, NodeId, Time};
use plexus_durable::activation::{Applied, Output};
use plexus_durable::types::DurableKey;
use plexus_host::{
    AnswerError, ApplyTracer, ClusterFacts, CodeError, Directory, DurableHost, Effect, Grant,
    HostConfig, Kinds, MemberFacts, Note, RequestId, SendError, SubmitError,
};
use plexus_mesh::driver::{Mesh, MeshEvent};
use plexus_scheduler::protocol::{Response, Signed};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::{Resources, Tags};
use tokio::sync::oneshot;

use super::store::{RocksStore, Syncer};

pub use plexus_durable::SERVICE_LOCAL_ID;
pub use plexus_host::HostStatus as ServiceStatus;

/// The service's mailbox capacity; remote messages past it are refused and resent
/// by their senders' streams.
pub const MAILBOX: usize = 16_384;
/// How often the host's timers are checked.
pub const TICK: Duration = Duration::from_millis(10);
/// Effects held back for a sync at most; past it the service syncs in its turn.
pub const HELD_MAX: usize = 65_536;

/// Messages to the service.
pub enum ServiceMsg {
    /// A durable protocol message from another node's service: the bytes
    /// `plexus_durable::wire::encode` made, decoded by the host, with `from`, the
    /// node the mesh authenticated as its sender (never a field of the message).
    Wire {
        /// The sending node, as the transport authenticated it.
        from: NodeId,
        /// The encoded message.
        bytes: Bytes,
    },
    /// Time passes (local only).
    Tick,
    /// The membership declared a node dead, or it left (local only): the
    /// scheduler's tick runs at once instead of at its next turn.
    MemberDown,
    /// A request from this node's API (local only).
    Local(Local),
    /// A sync of the replica store ended (local only): the writes counted up to
    /// `upto` are durable, or the sync failed.
    Synced {
        /// The store's write count when the sync began.
        upto: u64,
        /// Whether it worked.
        result: Result<(), String>,
    },
}

impl ProtocolBytes for ServiceMsg {
    const TYPE_NAME: &'static str = plexus_durable::MESSAGE_TYPE;
    const BYTES_MAX: usize = plexus_durable::wire::MSG_BYTES_MAX;

    fn protocol_bytes(&self) -> Option<Bytes> {
        match self {
            ServiceMsg::Wire { bytes, .. } => Some(bytes.clone()),
            ServiceMsg::Tick
            | ServiceMsg::MemberDown
            | ServiceMsg::Local(_)
            | ServiceMsg::Synced { .. } => None,
        }
    }

    fn from_peer(from: NodeId, bytes: Bytes) -> Self {
        ServiceMsg::Wire { from, bytes }
    }
}

impl Message for ServiceMsg {
    type Reply = ();
    /// The durable wire format, under the durable message type: on the mesh these
    /// are exactly the tells the simulator sends. A message with no authenticated
    /// sender is refused.
    const WIRE: Option<Wire<Self>> = Some(Wire::protocol_bytes());
}

/// Requests from the node's own API.
pub enum Local {
    /// Send a signed request to the scheduler and wait for its answer.
    Scheduler {
        /// The request.
        signed: Signed,
        /// The answer.
        reply: oneshot::Sender<Result<Response, AskError>>,
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
        trace: Option<TraceContext>,
        /// Its number in this node's client session, or why not.
        reply: oneshot::Sender<Result<u64, SendError>>,
    },
    /// Send one message to an actor and wait for its reply (exactly once).
    Ask {
        /// The actor.
        to: DurableKey,
        /// The message.
        payload: Vec<u8>,
        /// The caller's trace context.
        trace: Option<TraceContext>,
        /// The actor's reply (its bytes, or its code's refusal), or why none.
        reply: oneshot::Sender<Result<Result<Vec<u8>, String>, SendError>>,
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
    /// The host could not hand the request on.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The scheduler's answer was not a response.
    #[error(transparent)]
    Answer(#[from] AnswerError),
    /// No answer before the deadline.
    #[error("the scheduler did not answer in time (is a majority of its replicas up?)")]
    Timeout,
}

/// How often a request is asked again while the scheduler answers
/// [`Rejection::Starting`](plexus_scheduler::Rejection::Starting).
const STARTING_RETRY: Duration = Duration::from_millis(200);

/// Hands `signed` to the scheduler through this node's service and waits for the
/// answer until `deadline`. A scheduler that just (re)started answers
/// [`Rejection::Starting`](plexus_scheduler::Rejection::Starting) until its first
/// view of the cluster (half a second at most); the request is then asked again,
/// within the same deadline.
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
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(AskError::Stopped),
            Err(_) => return Err(AskError::Timeout),
        };
        match &answer {
            Response::Rejected(plexus_scheduler::Rejection::Starting)
                if tokio::time::Instant::now() + STARTING_RETRY < deadline =>
            {
                tokio::time::sleep(STARTING_RETRY).await;
            }
            _ => return Ok(answer),
        }
    }
}

/// The service actor.
pub struct DurableService {
    mesh: Mesh,
    /// Where commit latency, migration pauses and failovers are recorded.
    metrics: Arc<crate::metrics::Metrics>,
    key: NodeKey,
    kinds: Kinds,
    /// What this node offers and its tags (the mesh lists only the others).
    local: (Resources, Tags),
}

/// Its state.
pub struct ServiceState {
    start: std::time::Instant,
    host: DurableHost<RocksStore>,
    /// Local requests waiting for the scheduler's answer.
    waiting: BTreeMap<RequestId, oneshot::Sender<Result<Response, AskError>>>,
    /// Local asks waiting for an actor's reply.
    asks: BTreeMap<RequestId, AskReply>,
    /// Group commit: effects emitted after writes not yet durable.
    held: Held<Effect>,
}

/// Output held back until the store writes made before it are durable (group
/// commit), in order. Writes are named by the store's write count.
struct Held<T> {
    /// Each item with the write count when it was emitted.
    queue: VecDeque<(u64, T)>,
    /// The write count known durable.
    synced: u64,
    /// A sync is running.
    syncing: bool,
}

impl<T> Held<T> {
    fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            synced: 0,
            syncing: false,
        }
    }

    /// An item emitted when the store had made `written` writes: given back if it
    /// may go now, else held.
    fn admit(&mut self, written: u64, item: T) -> Option<T> {
        if written <= self.synced && self.queue.is_empty() {
            return Some(item);
        }
        self.queue.push_back((written, item));
        None
    }

    /// The next held item whose writes are durable.
    fn ready(&mut self) -> Option<T> {
        if self.queue.front().is_some_and(|(w, _)| *w <= self.synced) {
            return self.queue.pop_front().map(|(_, item)| item);
        }
        None
    }

    /// Whether a sync should start now.
    fn wants_sync(&self, written: u64) -> bool {
        !self.syncing && written > self.synced
    }

    /// The writes up to `upto` are durable.
    fn synced(&mut self, upto: u64) {
        self.synced = self.synced.max(upto);
    }

    /// A sync of the writes up to `upto` failed: what they caused is dropped
    /// (never released); returns how many items.
    fn failed(&mut self, upto: u64) -> usize {
        let dropped = self.queue.iter().take_while(|(w, _)| *w <= upto).count();
        self.queue.drain(..dropped);
        dropped
    }

    fn len(&self) -> usize {
        self.queue.len()
    }
}

/// Where an ask's answer goes: the actor's reply (or the error it returned), or
/// why the message was not delivered.
type AskReply = oneshot::Sender<Result<Result<Vec<u8>, String>, SendError>>;

impl DurableService {
    /// Starts the service on a meshed node, running `kinds` (see
    /// [`super::kinds::standard`]) besides the scheduler, offering `local`
    /// (this node's resources and tags), with the host tuned by `config`.
    pub async fn start(
        node: &crate::Node,
        mesh: Mesh,
        key: NodeKey,
        store: RocksStore,
        local: (Resources, Tags),
        kinds: Kinds,
        config: HostConfig,
    ) -> Result<ActorRef<ServiceMsg>, String> {
        let system = node.system();
        let me = system.node_id();
        let mut events = mesh.subscribe();
        let service = system
            .spawn_with(
                DurableService {
                    mesh,
                    metrics: node.metrics().clone(),
                    key,
                    kinds,
                    local,
                },
                (store, config),
                SpawnOptions {
                    id: Some(ActorId::new(me, SERVICE_LOCAL_ID)),
                    kind: Some("plexus.durable".into()),
                    capacity: Some(MAILBOX),
                    ..SpawnOptions::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        // Ends with the service.
        drop(crate::ticker::spawn(service.clone(), TICK, || {
            ServiceMsg::Tick
        }));
        // Deaths, as the membership declares them; ends with the service or the
        // mesh. A full mailbox drops one (the next tick covers it within 500 ms).
        let target = service.clone();
        drop(tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(MeshEvent::MemberDied { .. } | MeshEvent::MemberLeft { .. }) => {
                        match target.try_tell(ServiceMsg::MemberDown) {
                            Ok(()) | Err(plexus_actors::runtime::SendError::MailboxFull(_)) => {}
                            Err(_) => break,
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        }));
        Ok(service)
    }
}

impl Actor for DurableService {
    type Msg = ServiceMsg;
    type State = ServiceState;
    /// The store, opened by the caller before the node joined the mesh, and the
    /// host's settings.
    type Args = (RocksStore, HostConfig);

    async fn started(
        &self,
        ctx: &Context<ServiceMsg>,
        (store, config): (RocksStore, HostConfig),
    ) -> Result<ServiceState, ActorError> {
        // Client session numbers must differ per process life, cluster-wide: the
        // host derives them from this seed.
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| ActorError::from(e.to_string()))?;
        let mut host = DurableHost::new(
            ctx.system().node_id(),
            config,
            store,
            self.kinds.clone(),
            NodeKey::from_seed(self.key.seed()),
            u64::from_le_bytes(seed),
        );
        host.set_tracer(Box::new(SpanTracer));
        Ok(ServiceState {
            start: std::time::Instant::now(),
            host,
            waiting: BTreeMap::new(),
            asks: BTreeMap::new(),
            held: Held::new(),
        })
    }

    async fn handle(
        &self,
        ctx: &Context<ServiceMsg>,
        msg: ServiceMsg,
        st: &mut ServiceState,
    ) -> Result<(), ActorError> {
        let now = st.now();
        let kind = msg.kind();
        match msg {
            ServiceMsg::Wire { from, bytes } => {
                match st.host.handle_wire(now, from, &bytes) {
                    Ok(()) => {}
                    // Honest nodes cause a few refusals too (a late ack from an
                    // old host, a command before the registry shows the new
                    // scheduler host); they are counted (`refused` in /v1/durable).
                    Err(e @ plexus_host::WireError::Refused(_)) => {
                        tracing::debug!(error = %e, %from, "a durable message was refused");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %from, "a durable message was dropped");
                    }
                }
            }
            ServiceMsg::Tick => {
                st.host.handle_timeout(now, &self.directory());
                // Requests whose asker gave up (the API timed out): stop resending.
                let host = &mut st.host;
                st.waiting.retain(|id, reply| {
                    let keep = !reply.is_closed();
                    if !keep {
                        host.cancel(*id);
                    }
                    keep
                });
                st.asks.retain(|id, reply| {
                    let keep = !reply.is_closed();
                    if !keep {
                        host.cancel(*id);
                    }
                    keep
                });
            }
            ServiceMsg::MemberDown => st.host.member_down(now, &self.directory()),
            ServiceMsg::Local(local) => {
                // Timers first before a report, so what the API shows (an
                // activation whose lease lapsed while this process was stopped,
                // say) is current; sends and asks wait for the next tick, as
                // before, and stay off the timers' work.
                if matches!(local, Local::Status { .. }) {
                    st.host.handle_timeout(now, &self.directory());
                }
                self.local(st, local);
            }
            ServiceMsg::Synced { upto, result } => {
                st.held.syncing = false;
                match result {
                    Ok(()) => st.held.synced(upto),
                    Err(e) => {
                        // Not durable: what it covered must never be released.
                        // rocksdb refuses writes after a failed sync, so the
                        // replica answers `Failed` from here on; peers resend.
                        let dropped = st.held.failed(upto);
                        tracing::error!(error = %e, dropped, "syncing the replica store failed");
                    }
                }
            }
        }
        self.pump(ctx, st).await;
        // A turn holds up every durable actor on this node (and a migration's
        // pause, where this node is in one): say which were long.
        log_if_slow(
            st.now().saturating_since(now),
            "a slow durable service turn",
            kind,
        );
        Ok(())
    }
}

/// A service turn (or a sync of the store) at least this long is logged, at debug
/// level (a migration's pause target is 10 ms at 1 MiB of state and 20 ms at 16
/// MiB; an actor with 16 MiB of state makes a turn of about 40 ms at each commit).
const SLOW_TURN: Duration = Duration::from_millis(20);
/// From this long, at info level: every durable actor on the node waited.
const VERY_SLOW: Duration = Duration::from_millis(100);

/// Logs `what` (of `kind`) if it took [`SLOW_TURN`] or more: at debug level, at
/// info from [`VERY_SLOW`].
fn log_if_slow(took: Duration, what: &str, kind: &str) {
    if took < SLOW_TURN {
        return;
    }
    let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    if took >= VERY_SLOW {
        tracing::info!(kind, took_ms, "{what}");
    } else {
        tracing::debug!(kind, took_ms, "{what}");
    }
}

impl ServiceMsg {
    /// What kind of input this is, for logs.
    fn kind(&self) -> &'static str {
        match self {
            ServiceMsg::Wire { .. } => "wire",
            ServiceMsg::Tick => "tick",
            ServiceMsg::MemberDown => "member-down",
            ServiceMsg::Local(_) => "local",
            ServiceMsg::Synced { .. } => "synced",
        }
    }
}

impl ServiceState {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

impl DurableService {
    fn directory(&self) -> MeshDirectory<'_> {
        MeshDirectory {
            mesh: &self.mesh,
            local: &self.local,
        }
    }

    fn local(&self, st: &mut ServiceState, local: Local) {
        match local {
            Local::Scheduler { signed, reply } => {
                // The wall clock judges the request's expiry (recorded with it).
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                match st.host.submit(&signed, now_ms, &self.directory()) {
                    Ok(id) => {
                        st.waiting.insert(id, reply);
                    }
                    // Refused before any session opened: answered as the
                    // scheduler would.
                    Err(SubmitError::Refused(why)) => {
                        let _ = reply.send(Ok(Response::Rejected(why)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Local::Send {
                to,
                payload,
                trace,
                reply,
            } => {
                let _ = reply.send(st.host.send(&to, payload, trace));
            }
            Local::Ask {
                to,
                payload,
                trace,
                reply,
            } => match st.host.ask(&to, payload, trace) {
                Ok(id) => {
                    st.asks.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Local::Status { reply } => {
                let _ = reply.send(st.host.status());
            }
        }
    }

    /// Runs the host until it is quiet, then carries out what it asked for, once
    /// the writes before it are durable.
    async fn pump(&self, ctx: &Context<ServiceMsg>, st: &mut ServiceState) {
        let system = ctx.system();
        let now = st.now();
        let dir = self.directory();
        let metrics = &self.metrics;
        let mut observe = |_: &DurableHost<RocksStore>, note: &Note| {
            match note {
                Note::Committed { latency, .. } => metrics.commit(*latency),
                Note::Migrated { pause, .. } => metrics.migration_pause(*pause),
                Note::FailedOver { after, .. } => metrics.failover(*after),
                _ => {}
            }
            log(note);
        };
        if let Err(e) = st.host.pump(now, &dir, &mut observe) {
            tracing::warn!(error = %e, "the durable host is busy; the rest waits for the next tick");
        }
        let written = st.host.core().replica().store().written();
        while let Some(effect) = st.host.poll_effect() {
            if let Some(effect) = st.held.admit(written, effect) {
                self.effect(system, st, effect).await;
            }
        }
        if st.held.len() > HELD_MAX {
            // Too much waiting: sync here, in the turn (the mailbox then fills
            // and pushes back on senders).
            let syncer = st.host.core().replica().store().syncer();
            match sync_off_workers(syncer).await {
                Ok(()) => st.held.synced(written),
                Err(e) => {
                    let dropped = st.held.failed(written);
                    tracing::error!(error = %e, dropped, "syncing the replica store failed");
                }
            }
        }
        while let Some(effect) = st.held.ready() {
            self.effect(system, st, effect).await;
        }
        if st.held.wants_sync(written) {
            st.held.syncing = true;
            let syncer = st.host.core().replica().store().syncer();
            let me = ctx.myself().clone();
            tokio::spawn(async move {
                let result = sync_off_workers(syncer).await;
                // Waits for mailbox space: a lost `Synced` would hold output back
                // until the next write's sync.
                let _ = me
                    .tell(ServiceMsg::Synced {
                        upto: written,
                        result,
                    })
                    .await;
            });
        }
    }

    /// Carries out one effect of the host.
    async fn effect(&self, system: &ActorSystem, st: &mut ServiceState, effect: Effect) {
        match effect {
            Effect::Send { to, bytes } => {
                let peer = system.resolve::<ServiceMsg>(ActorId::new(to, SERVICE_LOCAL_ID));
                // Refused (window or mailbox full, peer down): the host resends
                // what matters.
                // `from` does not travel (only the bytes do): the receiver's
                // mesh says who sent them.
                let _ = peer.try_tell(ServiceMsg::Wire {
                    from: system.node_id(),
                    bytes: bytes.into(),
                });
            }
            Effect::Register { name, actor, rank } => {
                if let Ok(Err(e)) = self.mesh.register_ranked(&name, actor, rank).await {
                    tracing::warn!(%name, error = %e, "cannot register a durable actor");
                }
            }
            Effect::Unregister { name } => {
                let _ = self.mesh.unregister(&name).await;
            }
            Effect::Replied { request, reply } => {
                if let Some(asker) = st.asks.remove(&request) {
                    let _ = asker.send(Ok(reply));
                }
            }
            Effect::Answer { request, answer } => {
                if let Some(reply) = st.waiting.remove(&request) {
                    let _ = reply.send(answer.map_err(AskError::from));
                }
            }
            _ => {}
        }
    }
}

/// Syncs the store's log on tokio's blocking pool.
async fn sync_off_workers(syncer: Syncer) -> Result<(), String> {
    let began = std::time::Instant::now();
    let result = match tokio::task::spawn_blocking(move || syncer.sync()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the sync task failed: {e}")),
    };
    // The wait for a blocking thread counts too: output waits on both.
    log_if_slow(began.elapsed(), "a slow sync of the replica store", "sync");
    result
}

fn log(note: &Note) {
    match note {
        Note::Activated { key, ballot, .. } => {
            tracing::info!(%key, round = ballot.round, "durable actor active here");
        }
        Note::Migrated {
            key,
            to,
            pause,
            drain,
            by_reference,
            warm,
            prepare,
        } => {
            let pause_us = u64::try_from(pause.as_micros()).unwrap_or(u64::MAX);
            let drain_us = u64::try_from(drain.as_micros()).unwrap_or(u64::MAX);
            let prepare_us = u64::try_from(prepare.as_micros()).unwrap_or(u64::MAX);
            tracing::info!(%key, to = %to.short(), pause_us, drain_us, prepare_us, by_reference, warm, "migrated");
        }
        Note::FailedOver { key, from, after } => {
            let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
            tracing::info!(%key, from = %from.short(), after_ms, "took over from a host seen down");
        }
        Note::Deactivated { key, why } => {
            tracing::info!(%key, ?why, "durable actor deactivated here");
        }
        Note::Refused { key, why } => {
            tracing::warn!(%key, %why, "a durable command was refused here");
        }
        Note::MoveFailed { key, to, why } => {
            tracing::warn!(%key, to = %to.short(), %why, "a move failed here (reported to the scheduler)");
        }
        Note::Unencodable { to, error } => {
            tracing::warn!(to = %to.short(), %error, "a durable message does not encode");
        }
        _ => {}
    }
}

/// The host's questions, answered from the libp2p mesh.
struct MeshDirectory<'a> {
    mesh: &'a Mesh,
    local: &'a (Resources, Tags),
}

impl Directory for MeshDirectory<'_> {
    fn lookup(&self, name: &str) -> Option<NodeId> {
        self.mesh.lookup(name).map(|l| l.node)
    }

    fn facts(&self) -> ClusterFacts {
        let allowlist = self.mesh.allowlist().allowlist;
        // Placement takes tags and capacity grants from the governance-signed
        // allowlist only; what nodes say of themselves (config tags, gossiped
        // totals) is display, or capped by the grant (see plexus_host::facts).
        ClusterFacts {
            network: allowlist.network.clone(),
            capacity: self.local.0,
            tags: self.local.1.clone(),
            members: self
                .mesh
                .members()
                .into_iter()
                .map(|m| MemberFacts {
                    id: m.id,
                    state: m.state,
                    capacity: m.total,
                    tags: m.tags,
                })
                .collect(),
            allowlisted: allowlist
                .nodes
                .iter()
                .map(|(id, e)| {
                    (
                        *id,
                        Grant {
                            tags: e.tags.clone(),
                            capacity: e.declared,
                        },
                    )
                })
                .collect(),
            submitters: allowlist.submitters.keys().copied().collect(),
            names: self
                .mesh
                .names()
                .into_iter()
                .map(|(name, loc)| (name, loc.node))
                .collect(),
            names_partial: self.mesh.registry_sharded(),
        }
    }
}

/// Opens a `durable.apply` span around each batch, whose parent is the trace
/// context the batch's first traced input carried (from another node, usually),
/// and passes the span's context on to the batch's outputs: with the exporter on,
/// a request through several stages on several nodes shows as one trace.
struct SpanTracer;

impl ApplyTracer for SpanTracer {
    fn around(
        &self,
        key: &DurableKey,
        inputs: usize,
        parent: Option<TraceContext>,
        apply: &mut dyn FnMut() -> Result<Applied, CodeError>,
    ) -> Result<Applied, CodeError> {
        let span = tracing::info_span!("durable.apply", %key, inputs);
        if let Some(t) = parent {
            crate::telemetry::adopt(&span, &t);
        }
        let _entered = span.enter();
        let mut result = apply();
        if let Ok(applied) = &mut result {
            for output in &mut applied.outputs {
                if let Output::Send { trace, .. } = output {
                    *trace = crate::telemetry::pass_on(&span, *trace);
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_output_goes_only_once_its_writes_are_durable_and_in_order() {
        let mut h = Held::new();
        // Nothing written: output goes at once.
        assert_eq!(h.admit(0, "a"), Some("a"));
        // After a write, output waits, even output that wrote nothing itself
        // (it may tell of state only that write holds).
        assert_eq!(h.admit(1, "b"), None);
        assert_eq!(h.admit(1, "c"), None);
        assert!(h.wants_sync(1));
        h.syncing = true;
        assert!(!h.wants_sync(3), "one sync at a time");
        assert_eq!(h.admit(3, "d"), None);
        assert_eq!(h.ready(), None, "nothing is durable yet");
        // The sync that began at write 1 covers b and c, not d.
        h.syncing = false;
        h.synced(1);
        assert_eq!(
            (h.ready(), h.ready(), h.ready()),
            (Some("b"), Some("c"), None)
        );
        assert!(h.wants_sync(3));
        // A later item may not overtake a held one even if it wrote nothing new.
        assert_eq!(h.admit(1, "e"), None);
        h.synced(3);
        assert_eq!(
            (h.ready(), h.ready(), h.ready()),
            (Some("d"), Some("e"), None)
        );
        // A stale sync report never lowers what is known durable.
        h.synced(2);
        assert_eq!(h.admit(3, "f"), Some("f"));
        // A failed sync drops what it covered and nothing after.
        assert_eq!(h.admit(5, "g"), None);
        assert_eq!(h.admit(6, "h"), None);
        assert_eq!(h.failed(5), 1);
        assert_eq!(h.len(), 1);
        h.synced(6);
        assert_eq!(h.ready(), Some("h"));
    }

    #[test]
    fn service_messages_travel_as_the_durable_wire_bytes_under_the_durable_type() {
        let Some(wire) = ServiceMsg::WIRE else {
            panic!("the service must be reachable from other nodes");
        };
        assert_eq!((wire.type_name)(), plexus_durable::MESSAGE_TYPE);
        let msg =
            plexus_durable::wire::DurableMsg::Command(plexus_durable::wire::Command::Release {
                key: DurableKey::new("a/b/0").unwrap(),
            });
        let bytes = Bytes::from(plexus_durable::wire::encode(&msg).unwrap());
        let me = NodeId::synthetic(1);
        let sent = (wire.encode)(&ServiceMsg::Wire {
            from: me,
            bytes: bytes.clone(),
        })
        .unwrap();
        assert_eq!(sent, bytes, "no second envelope around the durable codec");
        // Outside a delivery from another node there is no authenticated sender.
        assert!((wire.decode)(&sent).is_err());
        let peer = NodeId::synthetic(2);
        let decoded = plexus_actors::runtime::with_decode_sender(peer, || (wire.decode)(&sent));
        let Ok(ServiceMsg::Wire {
            from,
            bytes: received,
        }) = decoded
        else {
            panic!("not decoded as wire bytes");
        };
        assert_eq!(from, peer, "the sender is the one the mesh authenticated");
        assert_eq!(plexus_durable::wire::decode(&received).unwrap(), msg);
        assert!(
            (wire.encode)(&ServiceMsg::Tick).is_err(),
            "ticks stay local"
        );
        assert!(
            (wire.encode)(&ServiceMsg::MemberDown).is_err(),
            "deaths stay local"
        );
    }
}
