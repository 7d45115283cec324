//! [`Node`]: the embedding API. A host builds a node, spawns actors, supervisors and
//! pipelines on it, and shuts it down.
//!
//! Nothing a node owns is process-global: two nodes in one process have separate
//! actor tables, names, groups and kinds (`tests/embedding.rs` checks it).

use std::sync::Mutex;
use std::time::Duration;

use plexus_actors::NodeId;
use plexus_actors::pipeline::spec::PipelineSpec;
use plexus_actors::pipeline::{Pipeline, PipelineError, PipelineReport};
use plexus_actors::runtime::{
    Actor, ActorRef, ActorSystem, Kinds, MAILBOX_CAPACITY_DEFAULT, SpawnError, SpawnOptions,
    SystemConfig,
};
use plexus_supervisor::runtime::{SupervisorRef, SupervisorSpec, start_supervisor};

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

/// Builds a [`Node`].
#[derive(Default)]
pub struct NodeBuilder {
    config: NodeConfig,
    node_id: Option<NodeId>,
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

    /// Uses this node id instead of a fresh ephemeral one.
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Builds the node and registers the standard stage kinds.
    pub fn build(self) -> Node {
        let node = self.node_id.unwrap_or_else(ephemeral_node_id);
        let system = ActorSystem::new(SystemConfig {
            node,
            mailbox_capacity: self.config.mailbox_capacity,
            ask_timeout: self.config.ask_timeout,
            stop_timeout: self.config.stop_timeout,
        });
        crate::stages::register_all(system.kinds());
        Node {
            system,
            supervisors: Mutex::new(Vec::new()),
        }
    }
}

/// A node id from a fresh ed25519 key, for nodes that never join a mesh.
fn ephemeral_node_id() -> NodeId {
    let mut seed = [0u8; 32];
    // OS randomness is a driver concern; only a broken OS fails here, and then an
    // all-zero seed still yields a valid (if predictable) local-only id.
    let _ = getrandom::fill(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    NodeId::from_public_key(key.verifying_key().to_bytes())
}

/// One Plexus node in this process.
pub struct Node {
    system: ActorSystem,
    supervisors: Mutex<Vec<SupervisorRef>>,
}

impl Node {
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
    /// then every remaining actor. Idempotent.
    pub async fn shutdown(&self) {
        let supervisors: Vec<SupervisorRef> =
            std::mem::take(&mut *self.supervisors.lock().unwrap_or_else(|p| p.into_inner()));
        for sup in supervisors.into_iter().rev() {
            sup.shutdown().await;
        }
        self.system.shutdown().await;
    }
}
