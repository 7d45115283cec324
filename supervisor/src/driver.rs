//! The supervision driver: a ractor actor that hosts a [`Supervisor`] core.
//!
//! Children are spawned through the Plexus actor runtime, linked to this actor, so
//! ractor reports their exits here as supervision events. Each exit goes to the core
//! with its incarnation and the current time; the core's actions are carried out in
//! order, each `Stop` waited for before the next action. Children keep their
//! [`ActorId`] across restarts, so refs held elsewhere keep working.
//!
//! Bounds: a child gets `stop_timeout` to stop before it is killed; restart storms
//! are bounded by the core's intensity, after which this supervisor fails and its
//! own parent decides.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use plexus_actors::runtime::{Actor, ActorSystem, Exit, KindArgs, SpawnError, SpawnOptions};
use plexus_actors::{ActorId, Time};
use ractor::{ActorProcessingErr, SupervisionEvent};
use tokio::sync::{oneshot, watch};

use crate::core::{
    Action, ChildSpec, ChildStatus, ExitReason, Intensity, Restart, Strategy, Supervisor,
    SupervisorError,
};

/// How long a child gets to stop before it is killed, unless its spec says otherwise.
pub const CHILD_STOP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// A started child: its ractor cell (for linking and stopping) and its Plexus id.
pub struct Started {
    /// The cell ractor reports exits for.
    pub cell: ractor::ActorCell,
    /// The child's stable id.
    pub id: ActorId,
}

/// Starts one incarnation of a child. `opts` carries the child's stable id and the
/// supervisor link; pass it to the spawn unchanged.
pub type StartFn = Arc<
    dyn Fn(ActorSystem, SpawnOptions) -> BoxFuture<'static, Result<Started, SpawnError>>
        + Send
        + Sync,
>;

/// A child: what the core needs plus how to start it.
///
/// A `Child` value stands for one actor identity: the [`ActorId`] is minted the first
/// time it is started and kept by every clone, so the child keeps its id across its
/// own restarts and across restarts of a nested supervisor that owns it.
#[derive(Clone)]
pub struct Child {
    /// Id and restart policy.
    pub spec: ChildSpec,
    /// How to start an incarnation.
    pub start: StartFn,
    /// How long it gets to stop before it is killed.
    pub stop_timeout: Duration,
    actor_id: Arc<OnceLock<ActorId>>,
}

impl Child {
    /// A child started by a custom function (for example one that spawns on another
    /// node and links a local proxy).
    pub fn new(id: &str, restart: Restart, start: StartFn) -> Self {
        Self {
            spec: ChildSpec::new(id, restart),
            start,
            stop_timeout: CHILD_STOP_TIMEOUT_DEFAULT,
            actor_id: Arc::default(),
        }
    }

    /// A child made by `make`, called again for every restart so each incarnation
    /// starts from fresh arguments.
    pub fn actor<A, F>(id: &str, restart: Restart, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Args) + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let start: StartFn = Arc::new(move |system: ActorSystem, opts: SpawnOptions| {
            let (actor, args) = make();
            Box::pin(async move {
                let r = system.spawn_with(actor, args, opts).await?;
                let cell = r
                    .ractor_cell()
                    .ok_or_else(|| SpawnError::StartFailed("child is not local".into()))?;
                Ok(Started { cell, id: r.id() })
            })
        });
        Self {
            spec: ChildSpec::new(id, restart),
            start,
            stop_timeout: CHILD_STOP_TIMEOUT_DEFAULT,
            actor_id: Arc::default(),
        }
    }

    /// A child of a registered kind.
    pub fn kind(id: &str, restart: Restart, kind: &str, args: KindArgs) -> Self {
        let kind = kind.to_string();
        let start: StartFn = Arc::new(move |system: ActorSystem, opts: SpawnOptions| {
            let kind = kind.clone();
            let args = args.clone();
            Box::pin(async move {
                let id = system.spawn_kind(&kind, args, opts).await?;
                let cell = system
                    .cell_of(id)
                    .ok_or_else(|| SpawnError::StartFailed("child ended during start".into()))?;
                Ok(Started { cell, id })
            })
        });
        Self {
            spec: ChildSpec::new(id, restart),
            start,
            stop_timeout: CHILD_STOP_TIMEOUT_DEFAULT,
            actor_id: Arc::default(),
        }
    }

    /// A nested supervisor. Its escalation reaches this supervisor as a failure.
    pub fn supervisor(id: &str, restart: Restart, spec: SupervisorSpec) -> Self {
        let start: StartFn = Arc::new(move |system: ActorSystem, opts: SpawnOptions| {
            let spec = spec.clone();
            Box::pin(async move {
                let sup = spawn_supervisor(&system, spec, opts).await?;
                Ok(Started {
                    cell: sup.cell.clone(),
                    id: sup.id,
                })
            })
        });
        Self {
            spec: ChildSpec::new(id, restart),
            start,
            stop_timeout: Duration::from_secs(30),
            actor_id: Arc::default(),
        }
    }

    /// Gives the child a fixed id (a well-known local id other nodes address it
    /// by) instead of one minted at its first start. Every incarnation gets it.
    pub fn with_id(self, id: ActorId) -> Self {
        let _ = self.actor_id.set(id);
        self
    }

    /// Sets the stop timeout.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }
}

/// A supervisor's strategy, intensity and initial children (started in order).
#[derive(Clone)]
pub struct SupervisorSpec {
    /// The strategy.
    pub strategy: Strategy,
    /// The restart intensity.
    pub intensity: Intensity,
    /// Initial children, in start order.
    pub children: Vec<Child>,
}

impl SupervisorSpec {
    /// A spec with no children yet.
    pub fn new(strategy: Strategy, intensity: Intensity) -> Self {
        Self {
            strategy,
            intensity,
            children: Vec::new(),
        }
    }

    /// Adds an initial child.
    pub fn child(mut self, child: Child) -> Self {
        self.children.push(child);
        self
    }
}

/// A supervisor's view of one child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's id within the supervisor.
    pub name: String,
    /// Its stable actor id.
    pub actor: ActorId,
    /// Running, stopping or stopped.
    pub status: ChildStatus,
}

/// Why a supervisor operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisionError {
    /// The core refused (duplicate child, unknown child...).
    #[error(transparent)]
    Core(#[from] SupervisorError),
    /// The child could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The supervisor is gone.
    #[error("the supervisor has stopped")]
    Gone,
}

enum SupMsg {
    Add(Child, oneshot::Sender<Result<ActorId, SupervisionError>>),
    Terminate(String, oneshot::Sender<Result<(), SupervisionError>>),
    Restart(String, oneshot::Sender<Result<(), SupervisionError>>),
    Delete(String, oneshot::Sender<Result<(), SupervisionError>>),
    Children(oneshot::Sender<Vec<ChildInfo>>),
}

/// A handle to a running supervisor.
#[derive(Clone)]
pub struct SupervisorRef {
    inner: ractor::ActorRef<SupMsg>,
    cell: ractor::ActorCell,
    id: ActorId,
    exit: watch::Receiver<Option<Exit>>,
}

impl std::fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SupervisorRef({:?})", self.id)
    }
}

/// Starts a top-level supervisor and its initial children, in order.
pub async fn start_supervisor(
    system: &ActorSystem,
    spec: SupervisorSpec,
) -> Result<SupervisorRef, SpawnError> {
    spawn_supervisor(system, spec, SpawnOptions::default()).await
}

async fn spawn_supervisor(
    system: &ActorSystem,
    spec: SupervisorSpec,
    opts: SpawnOptions,
) -> Result<SupervisorRef, SpawnError> {
    let id = opts.id.unwrap_or_else(|| system.mint_id());
    let (exit_tx, exit_rx) = watch::channel(None);
    let actor = SupervisorActor {
        system: system.clone(),
        exit: exit_tx,
        span: tracing::info_span!("supervisor", id = %id),
    };
    let spawned = match opts.parent {
        Some(parent) => ractor::Actor::spawn_linked(None, actor, spec, parent).await,
        None => ractor::Actor::spawn(None, actor, spec).await,
    };
    let (inner, _join) = spawned.map_err(|e| SpawnError::StartFailed(e.to_string()))?;
    let cell = inner.get_cell();
    Ok(SupervisorRef {
        inner,
        cell,
        id,
        exit: exit_rx,
    })
}

impl SupervisorRef {
    /// The supervisor's id.
    pub fn id(&self) -> ActorId {
        self.id
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> SupMsg,
    ) -> Result<T, SupervisionError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .send_message(make(tx))
            .map_err(|_| SupervisionError::Gone)?;
        rx.await.map_err(|_| SupervisionError::Gone)
    }

    /// Adds and starts a dynamic child; returns its actor id.
    pub async fn add_child(&self, child: Child) -> Result<ActorId, SupervisionError> {
        self.call(|tx| SupMsg::Add(child, tx)).await?
    }

    /// Stops a child; it stays stopped until restarted.
    pub async fn terminate_child(&self, name: &str) -> Result<(), SupervisionError> {
        self.call(|tx| SupMsg::Terminate(name.to_string(), tx))
            .await?
    }

    /// Starts a stopped child again.
    pub async fn restart_child(&self, name: &str) -> Result<(), SupervisionError> {
        self.call(|tx| SupMsg::Restart(name.to_string(), tx))
            .await?
    }

    /// Forgets a stopped child.
    pub async fn delete_child(&self, name: &str) -> Result<(), SupervisionError> {
        self.call(|tx| SupMsg::Delete(name.to_string(), tx)).await?
    }

    /// The children, in start order.
    pub async fn children(&self) -> Result<Vec<ChildInfo>, SupervisionError> {
        self.call(SupMsg::Children).await
    }

    /// Stops the children in reverse start order, then the supervisor.
    pub async fn shutdown(&self) -> Exit {
        self.cell.stop(None);
        self.wait_exit().await
    }

    /// Waits until the supervisor has ended, and says how (`Failed` after escalating).
    pub async fn wait_exit(&self) -> Exit {
        let mut rx = self.exit.clone();
        loop {
            if let Some(exit) = rx.borrow_and_update().clone() {
                return exit;
            }
            if rx.changed().await.is_err() {
                return Exit::Failed("supervisor vanished".into());
            }
        }
    }
}

struct SupervisorActor {
    system: ActorSystem,
    exit: watch::Sender<Option<Exit>>,
    span: tracing::Span,
}

impl Drop for SupervisorActor {
    fn drop(&mut self) {
        // ractor drops the handler when the actor's task ends, however it ends.
        self.exit.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(Exit::Failed("supervisor failed".into()));
                true
            } else {
                false
            }
        });
    }
}

struct ChildSlot {
    start: StartFn,
    id: ActorId,
    cell: Option<ractor::ActorCell>,
    stop_timeout: Duration,
}

struct SupState {
    core: Supervisor,
    slots: BTreeMap<String, ChildSlot>,
    /// ractor cell id of each live incarnation -> (child name, incarnation)
    running: HashMap<ractor::ActorId, (String, u64)>,
    origin: Instant,
}

impl SupState {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

impl SupervisorActor {
    /// Carries out `actions` and whatever they lead to. Returns the escalation reason.
    async fn execute(
        &self,
        myself: &ractor::ActorCell,
        st: &mut SupState,
        actions: Vec<Action>,
    ) -> Result<(), String> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Start { child, incarnation } => {
                    let Some(slot) = st.slots.get(&child) else {
                        continue;
                    };
                    let opts = SpawnOptions {
                        id: Some(slot.id),
                        parent: Some(myself.clone()),
                        ..SpawnOptions::default()
                    };
                    match (slot.start)(self.system.clone(), opts).await {
                        Ok(started) => {
                            tracing::debug!(parent: &self.span, child = %child, incarnation, "child started");
                            st.running
                                .insert(started.cell.get_id(), (child.clone(), incarnation));
                            if let Some(slot) = st.slots.get_mut(&child) {
                                slot.cell = Some(started.cell);
                            }
                        }
                        Err(err) => {
                            tracing::warn!(parent: &self.span, child = %child, %err, "child failed to start");
                            let now = st.now();
                            queue.extend(st.core.handle_start_failed(
                                now,
                                &child,
                                incarnation,
                                err.to_string(),
                            ));
                        }
                    }
                }
                Action::Stop { child, incarnation } => {
                    let Some(slot) = st.slots.get_mut(&child) else {
                        continue;
                    };
                    if let Some(cell) = slot.cell.take() {
                        stop_child(&cell, slot.stop_timeout).await;
                        st.running.remove(&cell.get_id());
                    }
                    let now = st.now();
                    queue.extend(
                        st.core
                            .handle_exit(now, &child, incarnation, ExitReason::Normal),
                    );
                }
                Action::Escalate { reason } => {
                    tracing::error!(parent: &self.span, %reason, "supervisor escalating");
                    return Err(reason);
                }
            }
        }
        st.slots
            .retain(|name, _| st.core.children().any(|(s, _)| &s.id == name));
        Ok(())
    }

    fn add_slot(&self, st: &mut SupState, child: &Child) -> ActorId {
        let id = *child.actor_id.get_or_init(|| self.system.mint_id());
        st.slots.insert(
            child.spec.id.clone(),
            ChildSlot {
                start: child.start.clone(),
                id,
                cell: None,
                stop_timeout: child.stop_timeout,
            },
        );
        id
    }
}

async fn stop_child(cell: &ractor::ActorCell, timeout: Duration) {
    if cell.stop_and_wait(None, Some(timeout)).await.is_err() {
        let _ = cell.kill_and_wait(Some(timeout)).await;
    }
}

impl ractor::Actor for SupervisorActor {
    type Msg = SupMsg;
    type State = SupState;
    type Arguments = SupervisorSpec;

    async fn pre_start(
        &self,
        myself: ractor::ActorRef<SupMsg>,
        spec: SupervisorSpec,
    ) -> Result<SupState, ActorProcessingErr> {
        let mut st = SupState {
            core: Supervisor::new(spec.strategy, spec.intensity),
            slots: BTreeMap::new(),
            running: HashMap::new(),
            origin: Instant::now(),
        };
        let cell = myself.get_cell();
        for child in spec.children {
            self.add_slot(&mut st, &child);
            let actions = st.core.add_child(child.spec.clone())?;
            if let Err(reason) = self.execute(&cell, &mut st, actions).await {
                self.shutdown_children(&cell, &mut st).await;
                return Err(reason.into());
            }
        }
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ractor::ActorRef<SupMsg>,
        msg: SupMsg,
        st: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = myself.get_cell();
        let escalation = match msg {
            SupMsg::Add(child, reply) => match st.core.add_child(child.spec.clone()) {
                Ok(actions) => {
                    let id = self.add_slot(st, &child);
                    let result = self.execute(&cell, st, actions).await;
                    let started = st.core.children().any(|(s, status)| {
                        s.id == child.spec.id && matches!(status, ChildStatus::Running(_))
                    });
                    let _ = reply.send(if started {
                        Ok(id)
                    } else {
                        Err(SupervisionError::Spawn(SpawnError::StartFailed(format!(
                            "child `{}` did not start",
                            child.spec.id
                        ))))
                    });
                    result
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                    Ok(())
                }
            },
            SupMsg::Terminate(name, reply) => {
                let actions = st.core.terminate_child(&name);
                self.answer(&cell, st, actions, reply).await
            }
            SupMsg::Restart(name, reply) => {
                let actions = st.core.restart_child(&name);
                self.answer(&cell, st, actions, reply).await
            }
            SupMsg::Delete(name, reply) => {
                let result = st.core.delete_child(&name);
                if result.is_ok() {
                    st.slots.remove(&name);
                }
                let _ = reply.send(result.map_err(Into::into));
                Ok(())
            }
            SupMsg::Children(reply) => {
                let list = st
                    .core
                    .children()
                    .filter_map(|(spec, status)| {
                        st.slots.get(&spec.id).map(|slot| ChildInfo {
                            name: spec.id.clone(),
                            actor: slot.id,
                            status,
                        })
                    })
                    .collect();
                let _ = reply.send(list);
                Ok(())
            }
        };
        match escalation {
            Ok(()) => Ok(()),
            Err(reason) => Err(reason.into()),
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ractor::ActorRef<SupMsg>,
        event: SupervisionEvent,
        st: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, ExitReason::Failed(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, Some(why)) if why == "killed" => {
                (cell, ExitReason::Failed(why))
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, ExitReason::Normal),
            _ => return Ok(()),
        };
        let Some((child, incarnation)) = st.running.remove(&cell.get_id()) else {
            return Ok(());
        };
        if let Some(slot) = st.slots.get_mut(&child)
            && slot
                .cell
                .as_ref()
                .is_some_and(|c| c.get_id() == cell.get_id())
        {
            slot.cell = None;
        }
        tracing::info!(parent: &self.span, child = %child, incarnation, ?reason, "child exited");
        let now = st.now();
        let actions = st.core.handle_exit(now, &child, incarnation, reason);
        let me = myself.get_cell();
        if let Err(reason) = self.execute(&me, st, actions).await {
            return Err(reason.into());
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ractor::ActorRef<SupMsg>,
        st: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        self.shutdown_children(&myself.get_cell(), st).await;
        self.exit.send_replace(Some(Exit::Normal));
        Ok(())
    }
}

impl SupervisorActor {
    async fn answer(
        &self,
        cell: &ractor::ActorCell,
        st: &mut SupState,
        actions: Result<Vec<Action>, SupervisorError>,
        reply: oneshot::Sender<Result<(), SupervisionError>>,
    ) -> Result<(), String> {
        match actions {
            Ok(actions) => {
                let result = self.execute(cell, st, actions).await;
                let _ = reply.send(Ok(()));
                result
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                Ok(())
            }
        }
    }

    async fn shutdown_children(&self, cell: &ractor::ActorCell, st: &mut SupState) {
        let actions = st.core.shutdown();
        // Stops only; nothing is started during shutdown.
        let _ = self.execute(cell, st, actions).await;
    }
}
