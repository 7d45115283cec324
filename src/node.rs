//! [`Node`]: the embedding API. A host builds a node, spawns actors, supervisors and
//! pipelines on it, optionally joins it to a mesh, and shuts it down.
//!
//! Nothing a node owns is process-global: two nodes in one process have separate
//! actor tables, names, groups, kinds and meshes (`tests/embedding.rs` checks it).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_actors::pipeline::spec::PipelineSpec;
use plexus_actors::pipeline::{Pipeline, PipelineError, PipelineReport};
use plexus_actors::runtime::{
    Actor, ActorRef, ActorSystem, Exit, KindArgs, Kinds, MAILBOX_CAPACITY_DEFAULT, Message, Origin,
    SpawnError, SpawnOptions, SystemConfig,
};
use plexus_actors::{ActorId, NodeId};
use plexus_mesh::driver::{Mesh, MeshConfig, MeshError, MeshEvent};
use plexus_mesh::registry::{Location, RegistryError};
use plexus_supervisor::driver::{SupervisorRef, SupervisorSpec, start_supervisor};
use plexus_vocab::identity::NodeKey;

use crate::agent::{self, AgentMsg, AgentReply, ExitNotice, RELAY_LOCAL_ID, Watches};

/// Settings of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Mailbox capacity for actors that do not choose one.
    pub mailbox_capacity: usize,
    /// Default `ask` timeout.
    pub ask_timeout: Duration,
    /// How long an actor gets to stop at shutdown before it is killed.
    pub stop_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: MAILBOX_CAPACITY_DEFAULT,
            ask_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a node could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The mesh could not start.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// An actor could not be spawned.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The operation needs a mesh and this node has none.
    #[error("this node is not part of a mesh")]
    NotMeshed,
    /// The cluster-wide name asked for is held by another actor, as the node asked
    /// to host the new one sees it. The new actor was stopped again.
    #[error("`{name}` is registered to {} on {}", holder.actor, holder.node.short())]
    NameTaken {
        /// The name.
        name: String,
        /// Its holder.
        holder: Location,
    },
    /// Another node refused or failed the request.
    #[error("remote request failed: {0}")]
    Remote(String),
}

/// Builds a [`Node`].
#[derive(Default)]
pub struct NodeBuilder {
    config: NodeConfig,
    key: Option<NodeKey>,
}

impl NodeBuilder {
    /// Sets the default mailbox capacity.
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.config.mailbox_capacity = capacity.max(1);
        self
    }

    /// Sets the default ask timeout.
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.config.ask_timeout = timeout;
        self
    }

    /// Uses this identity instead of a fresh ephemeral one.
    pub fn key(mut self, key: NodeKey) -> Self {
        self.key = Some(key);
        self
    }

    fn system(&self, node: NodeId) -> ActorSystem {
        let system = ActorSystem::new(SystemConfig {
            node,
            mailbox_capacity: self.config.mailbox_capacity,
            ask_timeout: self.config.ask_timeout,
            stop_timeout: self.config.stop_timeout,
        });
        crate::stages::register_all(system.kinds());
        crate::kinds::register_all(system.kinds());
        system
    }

    /// Builds a local node (no mesh).
    ///
    /// # Panics
    /// Without a key given, if the OS random source fails: the node's id must not
    /// be predictable, and there is no input to blame (see [`ephemeral_key`]).
    pub fn build(self) -> Node {
        #[allow(clippy::expect_used)] // an OS failure, not input; failing closed
        let node = match &self.key {
            Some(key) => key.node_id(),
            None => ephemeral_key()
                .expect("a node id from OS randomness")
                .node_id(),
        };
        Node::assemble(self.system(node), None, Arc::new(Watches::default()), None)
    }

    /// Builds a node and joins it to a mesh with `config` (whose key is the node's
    /// identity).
    pub async fn start_meshed(self, config: MeshConfig) -> Result<Node, NodeError> {
        let system = self.system(config.key.node_id());
        let mesh = Mesh::start(config, system.clone()).await?;
        let watches = Arc::new(Watches::default());
        agent::start(&system, mesh.clone(), watches.clone()).await?;
        let mut events = mesh.subscribe();
        let deaths = watches.clone();
        let listener = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(MeshEvent::MemberDied { node } | MeshEvent::MemberLeft { node }) => {
                        deaths.node_died(node);
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Node::assemble(system, Some(mesh), watches, Some(listener)))
    }
}

/// The OS random source failed, so no key was made. Keys are never made from a
/// fallback seed: a predictable key is worse than none.
#[derive(Debug, thiserror::Error)]
#[error("the OS random source failed ({0}); refusing to make a predictable key")]
pub struct RandomnessError(String);

/// A fresh identity from OS randomness. Fails closed: there is no fallback seed.
pub fn ephemeral_key() -> Result<NodeKey, RandomnessError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| RandomnessError(e.to_string()))?;
    Ok(NodeKey::from_seed(seed))
}

/// A fresh key seed for a key file (see [`ephemeral_key`]).
pub fn fresh_seed() -> Result<[u8; 32], plexus_mesh::driver::KeyStoreError> {
    ephemeral_key()
        .map(|k| k.seed())
        .map_err(|e| plexus_mesh::driver::KeyStoreError::Randomness(e.0))
}

/// One Plexus node in this process. Cheap to clone: clones are handles to the same
/// node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

/// A node's state, shared by its handles.
pub struct NodeInner {
    system: ActorSystem,
    supervisors: Mutex<Vec<SupervisorRef>>,
    mesh: Option<Mesh>,
    watches: Arc<Watches>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Background work owned by the node (name cleanup on exit), aborted at shutdown.
    tasks: Mutex<tokio::task::JoinSet<()>>,
    /// The histograms the node keeps (its `/metrics`).
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::ops::Deref for Node {
    type Target = NodeInner;

    fn deref(&self) -> &NodeInner {
        &self.inner
    }
}

impl Node {
    fn assemble(
        system: ActorSystem,
        mesh: Option<Mesh>,
        watches: Arc<Watches>,
        listener: Option<tokio::task::JoinHandle<()>>,
    ) -> Node {
        Node {
            inner: Arc::new(NodeInner {
                system,
                supervisors: Mutex::new(Vec::new()),
                mesh,
                watches,
                listener: Mutex::new(listener),
                tasks: Mutex::new(tokio::task::JoinSet::new()),
                metrics: Arc::default(),
            }),
        }
    }

    /// Starts building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.system.node_id()
    }

    /// The node's actor system (spawn, lookup, registry, groups).
    pub fn system(&self) -> &ActorSystem {
        &self.system
    }

    /// The kinds registered on this node.
    pub fn kinds(&self) -> &Kinds {
        self.system.kinds()
    }

    /// The histograms this node keeps (see [`crate::metrics`]).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The mesh, if the node joined one.
    pub fn mesh(&self) -> Option<&Mesh> {
        self.mesh.as_ref()
    }

    /// Spawns an unsupervised actor.
    pub async fn spawn<A: Actor>(
        &self,
        actor: A,
        args: A::Args,
    ) -> Result<ActorRef<A::Msg>, SpawnError> {
        self.system.spawn(actor, args).await
    }

    /// Spawns an unsupervised actor with options (name, capacity, groups).
    pub async fn spawn_with<A: Actor>(
        &self,
        actor: A,
        args: A::Args,
        opts: SpawnOptions,
    ) -> Result<ActorRef<A::Msg>, SpawnError> {
        self.system.spawn_with(actor, args, opts).await
    }

    /// Registers `name` for a local actor: cluster-wide on a meshed node, on this
    /// node only otherwise.
    pub async fn register(&self, name: &str, actor: ActorId) -> Result<(), NodeError> {
        match &self.mesh {
            Some(mesh) => {
                mesh.register(name, actor).await?.map_err(|e| match e {
                    RegistryError::Taken { name, holder } => NodeError::NameTaken { name, holder },
                    other => NodeError::Remote(other.to_string()),
                })?;
                if let Some(exit) = self.system.exit_of(actor) {
                    let cleanup =
                        agent::unregister_on_exit(mesh.clone(), name.to_string(), actor, exit);
                    self.tasks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .spawn(cleanup);
                }
                Ok(())
            }
            None => self
                .system
                .register(name, actor)
                .map_err(|e| NodeError::Remote(e.to_string())),
        }
    }

    /// A ref to whatever `name` resolves to, in the cluster or on this node.
    pub fn resolve_name<M: Message>(&self, name: &str) -> Option<ActorRef<M>> {
        self.system.resolve_name(name)
    }

    /// A ref to actor `id`, which runs on `node`.
    pub fn resolve_at<M: Message>(&self, id: ActorId, node: NodeId) -> ActorRef<M> {
        self.system.resolve_at(id, node)
    }

    /// Starts an actor of a registered kind on `node` (this one or another), and
    /// registers `name` for it cluster-wide if given.
    pub async fn spawn_on(
        &self,
        node: NodeId,
        kind: &str,
        args: KindArgs,
        name: Option<&str>,
    ) -> Result<ActorId, NodeError> {
        if node == self.id() && self.mesh.is_none() {
            let id = self
                .system
                .spawn_kind(kind, args, SpawnOptions::default())
                .await?;
            if let Some(name) = name {
                self.register(name, id).await?;
            }
            return Ok(id);
        }
        let msg = AgentMsg::Spawn {
            kind: kind.to_string(),
            args,
            name: name.map(str::to_string),
            origin: Origin::local(&self.system),
        };
        match self.agent(node).ask(msg).await {
            Ok(AgentReply::Spawned(id)) => Ok(id),
            Ok(AgentReply::NameTaken { name, holder }) => {
                Err(NodeError::NameTaken { name, holder })
            }
            Ok(AgentReply::Forbidden(why)) => Err(NodeError::Remote(why)),
            Ok(AgentReply::Error(why)) => Err(NodeError::Remote(why)),
            Ok(other) => Err(NodeError::Remote(format!(
                "unexpected agent reply {other:?}"
            ))),
            Err(e) => Err(NodeError::Remote(e.to_string())),
        }
    }

    /// Stops an actor on `node`. Returns whether it was running.
    pub async fn stop_on(&self, node: NodeId, actor: ActorId) -> Result<bool, NodeError> {
        if node == self.id() {
            return Ok(self.system.stop(actor).await);
        }
        let stop = AgentMsg::Stop {
            actor,
            origin: Origin::local(&self.system),
        };
        match self.agent(node).ask(stop).await {
            Ok(AgentReply::Stopped(was)) => Ok(was),
            Ok(AgentReply::Forbidden(why)) => Err(NodeError::Remote(why)),
            Ok(other) => Err(NodeError::Remote(format!(
                "unexpected agent reply {other:?}"
            ))),
            Err(e) => Err(NodeError::Remote(e.to_string())),
        }
    }

    fn agent(&self, node: NodeId) -> ActorRef<AgentMsg> {
        self.system.resolve_at(agent::agent_id(node), node)
    }

    /// Watches an actor on `node`. The future resolves when it ends: `Normal` if it
    /// stopped cleanly, `Failed` if it failed or its node died.
    pub async fn watch(
        &self,
        actor: ActorId,
        node: NodeId,
    ) -> Result<impl Future<Output = Exit> + Send + 'static, NodeError> {
        if node == self.id() {
            let exit = self.system.exit_of(actor);
            return Ok(futures::future::Either::Left(async move {
                match exit {
                    Some(exit) => exit.await,
                    None => Exit::Failed("no such actor".into()),
                }
            }));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.watches.add(actor, node, tx);
        let relay = self
            .system
            .resolve_at::<ExitNotice>(ActorId::new(self.id(), RELAY_LOCAL_ID), self.id());
        match self.agent(node).ask(AgentMsg::Watch { actor, relay }).await {
            Ok(AgentReply::Watching(true)) => {}
            Ok(AgentReply::Watching(false)) => self
                .watches
                .resolve(actor, Exit::Failed("no such actor".into())),
            Ok(other) => {
                return Err(NodeError::Remote(format!(
                    "unexpected agent reply {other:?}"
                )));
            }
            Err(e) => return Err(NodeError::Remote(e.to_string())),
        }
        Ok(futures::future::Either::Right(async move {
            rx.await
                .unwrap_or_else(|_| Exit::Failed("the watch was dropped".into()))
        }))
    }

    /// Starts a top-level supervisor; the node stops it (and its tree) at shutdown.
    pub async fn supervise(&self, spec: SupervisorSpec) -> Result<SupervisorRef, SpawnError> {
        let sup = start_supervisor(&self.system, spec).await?;
        self.supervisors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sup.clone());
        Ok(sup)
    }

    /// Validates a spec against this node's kinds.
    pub fn pipeline(&self, spec: PipelineSpec) -> Result<Pipeline, PipelineError> {
        Pipeline::from_spec(spec, self.kinds())
    }

    /// Runs a pipeline spec to completion.
    pub async fn run_pipeline(&self, spec: PipelineSpec) -> Result<PipelineReport, PipelineError> {
        self.pipeline(spec)?.run(&self.system).await
    }

    /// Stops supervisors (newest first, each stopping its children newest first),
    /// then every remaining actor, then leaves the mesh. Idempotent.
    pub async fn shutdown(&self) {
        let supervisors: Vec<SupervisorRef> =
            std::mem::take(&mut *self.supervisors.lock().unwrap_or_else(|p| p.into_inner()));
        for sup in supervisors.into_iter().rev() {
            sup.shutdown().await;
        }
        self.system.shutdown().await;
        if let Some(mesh) = &self.mesh {
            mesh.shutdown().await;
            self.system.clear_remote();
        }
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            listener.abort();
        }
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}
