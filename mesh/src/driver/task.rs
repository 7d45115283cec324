//! The driver task, its handle ([`Mesh`]) and the [`RemoteLink`] it gives the actor
//! runtime. See the module docs of `runtime` for the division of labour.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, gossipsub, identify, noise, ping,
    tcp, yamux,
};
use plexus_actors::codec::{self, FrameReader};
use plexus_actors::envelope::Failure;
use plexus_actors::runtime::{
    ActorSystem, DeliverError, LinkError, Outgoing, RemoteLink, RemoteReply,
};
use plexus_actors::{ActorId, NodeId, Time};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::allowlist::{Admission, AllowlistError, SignedAllowlist};
use crate::cluster::{Cluster, ClusterConfig, ClusterEvent};
use crate::delivery::DeliveryEvent;
use crate::membership::{MemberState, MembershipEvent};
use crate::registry::{Location, RegistryError, RegistryEvent};
use crate::wire::{self, DataBody, Frame, MESH_FRAME_BYTES_MAX};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::{NodeMeta, Resources, Tags};

/// The stream protocol actor and membership traffic runs on.
pub const PROTOCOL_NAME: &str = "/plexus/mesh/1";
const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);
const INBOUND_BATCHES_MAX: usize = 256;
const HELD_FRAMES_MAX: usize = 4096;
const CONTROL_BUFFER_BYTES_MAX: usize = 1024 * 1024;
const READ_CHUNK_BYTES: usize = 64 * 1024;
const COMMANDS_PER_TURN: usize = 4096;
const DIAL_RETRY: Duration = Duration::from_millis(500);

/// The libp2p `PeerId` of a node.
pub fn peer_id_of(node: &NodeId) -> Result<PeerId, String> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(&node.to_bytes())
        .map_err(|e| e.to_string())?;
    Ok(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The node id behind a `PeerId`, if it is an ed25519 peer.
pub fn node_id_of(peer: &PeerId) -> Option<NodeId> {
    peer.to_base58().parse().ok()
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// How to run a node's mesh.
#[derive(Clone)]
pub struct MeshConfig {
    /// The node's identity.
    pub key: NodeKey,
    /// Where to listen (`/ip4/127.0.0.1/tcp/0` picks a free port).
    pub listen: Vec<Multiaddr>,
    /// Peers to contact first.
    pub bootstrap: Vec<Multiaddr>,
    /// The network's signed allowlist; its governance key becomes the trusted one.
    pub allowlist: SignedAllowlist,
    /// Core tuning.
    pub cluster: ClusterConfig,
    /// What this node offers.
    pub resources: Resources,
    /// Tags added to those in the allowlist entry.
    pub tags: Tags,
    /// How long an inbound message waits for space in a full mailbox.
    pub remote_enqueue_wait: Duration,
    /// Outbound user frames in flight per peer.
    pub peer_window: usize,
    /// Incarnation (also the delivery session); wall-clock milliseconds if `None`.
    pub incarnation: Option<u64>,
    /// Seed of the cores' RNG; OS randomness if `None`.
    pub seed: Option<u64>,
}

impl MeshConfig {
    /// Defaults: listen on a free loopback TCP port, no bootstrap peers.
    pub fn new(key: NodeKey, allowlist: SignedAllowlist) -> Self {
        Self {
            key,
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .expect("a valid literal multiaddr"),
            ],
            bootstrap: Vec::new(),
            allowlist,
            cluster: ClusterConfig::default(),
            resources: Resources::default(),
            tags: Tags::new(),
            remote_enqueue_wait: Duration::from_secs(1),
            peer_window: 4096,
            incarnation: None,
            seed: None,
        }
    }
}

/// Why the mesh could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The allowlist does not verify (operator's fault).
    #[error("invalid allowlist: {0}")]
    Allowlist(#[from] AllowlistError),
    /// The transport could not be built.
    #[error("cannot build the transport: {0}")]
    Transport(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The mesh has shut down.
    #[error("the mesh has shut down")]
    Closed,
}

/// What the mesh reports as it runs (the daemon prints these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeshEvent {
    /// Listening on an address (with `/p2p/<peer id>` appended).
    Listening {
        /// The address.
        addr: String,
    },
    /// A member became known and alive.
    MemberJoined {
        /// It.
        node: String,
    },
    /// A member is suspected.
    MemberSuspected {
        /// It.
        node: String,
    },
    /// A suspect proved alive.
    MemberRecovered {
        /// It.
        node: String,
    },
    /// A member was declared dead.
    MemberDied {
        /// It.
        node: String,
    },
    /// A member left.
    MemberLeft {
        /// It.
        node: String,
    },
    /// A name now resolves.
    NameBound {
        /// The name.
        name: String,
        /// The actor.
        actor: String,
    },
    /// A name no longer resolves.
    NameUnbound {
        /// The name.
        name: String,
    },
    /// A connection from or to a peer not on the allowlist was refused.
    ConnectionRefused {
        /// The peer, if known.
        peer: Option<String>,
    },
    /// A newer allowlist was accepted.
    AllowlistUpdated {
        /// Its version.
        version: u64,
    },
    /// An allowlist update was refused.
    AllowlistRejected {
        /// Why.
        reason: String,
    },
}

/// A member as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// PeerId text.
    pub id: String,
    /// alive, suspect, dead or left.
    pub state: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Addresses it advertises.
    pub addrs: Vec<String>,
    /// Total resources.
    pub total: Resources,
    /// Free resources.
    pub free: Resources,
    /// Tags.
    pub tags: Tags,
}

/// Counters, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MeshStats {
    /// Frames received and decoded.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Frames that did not decode (dropped; the node carries on).
    pub malformed_frames: u64,
    /// Frames or streams from peers not on the allowlist (dropped unread).
    pub unadmitted_dropped: u64,
    /// Connections refused by admission.
    pub connections_refused: u64,
    /// Remote messages enqueued into local mailboxes.
    pub delivered: u64,
    /// Remote messages refused (no such actor, wrong type, mailbox full...).
    pub refused: u64,
    /// Allowlist updates refused.
    pub allowlist_rejected: u64,
    /// Asks waiting for a reply.
    pub asks_pending: u64,
    /// Data frames retransmitted.
    pub retransmitted: u64,
}

#[derive(Default)]
struct Counters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    malformed_frames: AtomicU64,
    unadmitted_dropped: AtomicU64,
    connections_refused: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
    allowlist_rejected: AtomicU64,
    asks_pending: AtomicU64,
    retransmitted: AtomicU64,
}

/// Per-peer admission of outbound user frames (see the module docs).
struct Gate {
    used: AtomicUsize,
    cap: usize,
    space: Notify,
    waiters: AtomicUsize,
}

impl Gate {
    fn new(cap: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            cap: cap.max(1),
            space: Notify::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    fn try_acquire(&self) -> bool {
        let mut current = self.used.load(SeqCst);
        loop {
            if current >= self.cap {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(current, current + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let _ = self
            .used
            .fetch_update(SeqCst, SeqCst, |u| Some(u.saturating_sub(n)));
        if self.waiters.load(SeqCst) > 0 {
            self.space.notify_waiters();
        }
    }
}

/// Outbound bytes for one peer, drained by its writer task.
struct PeerOut {
    buf: Mutex<Vec<u8>>,
    wake: Notify,
    ready: AtomicBool,
    closed: AtomicBool,
}

enum Command {
    Send {
        node: NodeId,
        out: Outgoing,
    },
    Reply {
        to: NodeId,
        corr: u64,
        result: Result<Vec<u8>, Failure>,
    },
    Register {
        name: String,
        actor: ActorId,
        rank: Option<u64>,
        reply: oneshot::Sender<Result<(), RegistryError>>,
    },
    Unregister {
        name: String,
        reply: oneshot::Sender<bool>,
    },
    SetFree(Resources),
    PublishAllowlist {
        signed: SignedAllowlist,
        reply: oneshot::Sender<Result<(), AllowlistError>>,
    },
    StreamReady(NodeId),
    Leave(oneshot::Sender<()>),
}

struct Shared {
    me: NodeId,
    peer: PeerId,
    names: RwLock<BTreeMap<String, Location>>,
    members: RwLock<BTreeMap<NodeId, MemberView>>,
    listen: RwLock<Vec<Multiaddr>>,
    admission: RwLock<Admission>,
    gates: Mutex<HashMap<NodeId, Arc<Gate>>>,
    counters: Counters,
    events: broadcast::Sender<MeshEvent>,
    cmd: mpsc::UnboundedSender<Command>,
    peer_window: usize,
    closed: AtomicBool,
    detection_period: Duration,
    config: ClusterConfig,
}

impl Shared {
    fn gate(&self, node: NodeId) -> Arc<Gate> {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node)
            .or_insert_with(|| Arc::new(Gate::new(self.peer_window)))
            .clone()
    }

    fn emit(&self, event: MeshEvent) {
        let _ = self.events.send(event);
    }

    fn admitted(&self, node: &NodeId) -> bool {
        self.admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .admits(node)
    }
}

/// A running mesh: the handle to a node's driver task.
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
    task: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

struct Link {
    shared: Arc<Shared>,
}

impl Link {
    fn admit(&self, node: NodeId) -> Result<(), LinkError> {
        if self.shared.closed.load(SeqCst) || !self.shared.admitted(&node) {
            return Err(LinkError::Unreachable);
        }
        Ok(())
    }

    fn push(&self, node: NodeId, out: Outgoing) -> Result<(), LinkError> {
        self.shared
            .cmd
            .send(Command::Send { node, out })
            .map_err(|_| LinkError::Unreachable)
    }
}

impl RemoteLink for Link {
    fn locate(&self, id: ActorId) -> NodeId {
        id.origin
    }

    fn lookup_name(&self, name: &str) -> Option<(NodeId, ActorId)> {
        self.shared
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|l| (l.node, l.actor))
    }

    fn try_send(&self, node: NodeId, out: Outgoing) -> Result<(), LinkError> {
        self.admit(node)?;
        if !self.shared.gate(node).try_acquire() {
            return Err(LinkError::WindowFull);
        }
        self.push(node, out)
    }

    fn send(
        self: Arc<Self>,
        node: NodeId,
        out: Outgoing,
    ) -> BoxFuture<'static, Result<(), LinkError>> {
        Box::pin(async move {
            loop {
                self.admit(node)?;
                let gate = self.shared.gate(node);
                let notified = gate.space.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                gate.waiters.fetch_add(1, SeqCst);
                let acquired = gate.try_acquire();
                if acquired {
                    gate.waiters.fetch_sub(1, SeqCst);
                    return self.push(node, out);
                }
                notified.await;
                gate.waiters.fetch_sub(1, SeqCst);
            }
        })
    }
}

impl Mesh {
    /// Starts the mesh for `system`'s node: verifies the allowlist, listens, dials the
    /// bootstrap peers and installs the remote link in the actor system.
    pub async fn start(config: MeshConfig, system: ActorSystem) -> Result<Mesh, MeshError> {
        let admission = Admission::new(config.allowlist.clone())?;
        let me = config.key.node_id();
        if me != system.node_id() {
            return Err(MeshError::Transport(format!(
                "the actor system runs as {} but the mesh key is {}",
                system.node_id(),
                me
            )));
        }
        if !admission.admits(&me) {
            tracing::warn!(node = %me, "this node is not on the allowlist; admitted peers will refuse it");
        }
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(config.key.seed())
            .map_err(|e| MeshError::Transport(e.to_string()))?;
        let peer = keypair.public().to_peer_id();
        let network = admission.current().allowlist.network.clone();
        let mut swarm = build_swarm(keypair, &network)?;
        for node in admission.current().allowlist.nodes.keys() {
            if let Ok(p) = peer_id_of(node) {
                swarm.behaviour_mut().allow.allow_peer(p);
            }
        }
        let topic = gossipsub::IdentTopic::new(format!("plexus/allowlist/{network}"));
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| MeshError::Transport(e.to_string()))?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| MeshError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        for addr in &config.bootstrap {
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, %e, "cannot dial bootstrap peer");
            }
        }
        let incarnation = config.incarnation.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(1)
        });
        let seed = config.seed.unwrap_or_else(|| {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b)
        });
        let mut tags = admission
            .entry(&me)
            .map(|e| e.tags.clone())
            .unwrap_or_default();
        tags.extend(config.tags.clone());
        let meta = NodeMeta {
            addrs: Vec::new(),
            total: config.resources,
            free: config.resources,
            tags,
            allowlist_version: admission.version(),
        };
        let mut cluster_config = config.cluster.clone();
        cluster_config.delivery.window_frames = cluster_config
            .delivery
            .window_frames
            .max(config.peer_window * 2);
        let start = Instant::now();
        let cluster = Cluster::new(
            me,
            incarnation,
            meta,
            cluster_config.clone(),
            seed,
            Time::ZERO,
        );
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let n = admission.current().allowlist.nodes.len().max(2);
        let shared = Arc::new(Shared {
            me,
            peer,
            names: RwLock::new(BTreeMap::new()),
            members: RwLock::new(BTreeMap::new()),
            listen: RwLock::new(Vec::new()),
            admission: RwLock::new(admission),
            gates: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            events,
            cmd: cmd_tx,
            peer_window: config.peer_window,
            closed: AtomicBool::new(false),
            detection_period: cluster_config.membership.detection_bound(n),
            config: cluster_config,
        });
        let control = swarm.behaviour().stream.new_control();
        let mut accept_control = control.clone();
        let incoming = accept_control
            .accept(PROTOCOL)
            .map_err(|e| MeshError::Transport(e.to_string()))?;
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_BATCHES_MAX);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(shared.clone(), incoming, inbound_tx));
        let driver = Driver {
            shared: shared.clone(),
            system: system.clone(),
            swarm,
            control,
            cluster,
            start,
            cmd_rx,
            inbound_rx,
            outs: HashMap::new(),
            retry_at: HashMap::new(),
            writers: JoinSet::new(),
            slow: JoinSet::new(),
            held: HashMap::new(),
            asks: HashMap::new(),
            next_corr: 1,
            gated: HashMap::new(),
            topic,
            publish_due: false,
            last_publish: None,
            remote_enqueue_wait: config.remote_enqueue_wait,
            _tasks: tasks,
            leaving: None,
            pending_events: Vec::new(),
            bootstrap: config.bootstrap.clone(),
        };
        let task = tokio::spawn(driver.run());
        system.set_remote(Arc::new(Link {
            shared: shared.clone(),
        }));
        Ok(Mesh {
            shared,
            task: Arc::new(tokio::sync::Mutex::new(Some(task))),
        })
    }

    /// This node.
    pub fn node_id(&self) -> NodeId {
        self.shared.me
    }

    /// This node's libp2p PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer
    }

    /// Addresses being listened on, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.shared
            .listen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Known members, this node excluded.
    pub fn members(&self) -> Vec<MemberView> {
        self.shared
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Member views keyed by node.
    pub fn member_map(&self) -> BTreeMap<NodeId, MemberView> {
        self.shared
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every bound name.
    pub fn names(&self) -> BTreeMap<String, Location> {
        self.shared
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where a name resolves.
    pub fn lookup(&self, name: &str) -> Option<Location> {
        self.shared
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    /// The allowlist in force.
    pub fn allowlist(&self) -> SignedAllowlist {
        self.shared
            .admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current()
            .clone()
    }

    /// Whether `key` may submit jobs under the allowlist in force.
    pub fn may_submit(&self, key: &NodeId) -> bool {
        self.shared
            .admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .may_submit(key)
    }

    /// The core configuration in use.
    pub fn cluster_config(&self) -> &ClusterConfig {
        &self.shared.config
    }

    /// The time within which every member declares a crashed member dead, for a
    /// cluster the size of the allowlist.
    pub fn detection_bound(&self) -> Duration {
        self.shared.detection_period
    }

    /// Counters.
    pub fn stats(&self) -> MeshStats {
        let c = &self.shared.counters;
        MeshStats {
            frames_in: c.frames_in.load(Relaxed),
            frames_out: c.frames_out.load(Relaxed),
            malformed_frames: c.malformed_frames.load(Relaxed),
            unadmitted_dropped: c.unadmitted_dropped.load(Relaxed),
            connections_refused: c.connections_refused.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            refused: c.refused.load(Relaxed),
            allowlist_rejected: c.allowlist_rejected.load(Relaxed),
            asks_pending: c.asks_pending.load(Relaxed),
            retransmitted: c.retransmitted.load(Relaxed),
        }
    }

    /// Subscribes to mesh events.
    pub fn subscribe(&self) -> broadcast::Receiver<MeshEvent> {
        self.shared.events.subscribe()
    }

    fn command(&self, cmd: Command) -> Result<(), MeshError> {
        self.shared.cmd.send(cmd).map_err(|_| MeshError::Closed)
    }

    /// Registers `name` cluster-wide for a local actor.
    pub async fn register(
        &self,
        name: &str,
        actor: ActorId,
    ) -> Result<Result<(), RegistryError>, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Register {
            name: name.to_string(),
            actor,
            rank: None,
            reply: tx,
        })?;
        rx.await.map_err(|_| MeshError::Closed)
    }

    /// Registers `name` for a local actor with precedence `rank`: the highest-ranked
    /// live claim wins, whoever holds the name (durable actors use their ballot).
    pub async fn register_ranked(
        &self,
        name: &str,
        actor: ActorId,
        rank: u64,
    ) -> Result<Result<(), RegistryError>, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Register {
            name: name.to_string(),
            actor,
            rank: Some(rank),
            reply: tx,
        })?;
        rx.await.map_err(|_| MeshError::Closed)
    }

    /// Withdraws this node's claim on `name`.
    pub async fn unregister(&self, name: &str) -> Result<bool, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Unregister {
            name: name.to_string(),
            reply: tx,
        })?;
        rx.await.map_err(|_| MeshError::Closed)
    }

    /// Advertises how much of this node's resources is free.
    pub fn set_free(&self, free: Resources) {
        let _ = self.command(Command::SetFree(free));
    }

    /// Applies a newer signed allowlist locally and gossips it.
    pub async fn publish_allowlist(
        &self,
        signed: SignedAllowlist,
    ) -> Result<Result<(), AllowlistError>, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::PublishAllowlist { signed, reply: tx })?;
        rx.await.map_err(|_| MeshError::Closed)
    }

    /// Stops the driver at once without telling anyone, as a crash would: peers find
    /// out through failure detection. For tests and fault drills.
    pub async fn shutdown_abruptly(&self) {
        self.shared.closed.store(true, SeqCst);
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Leaves the cluster gracefully (peers mark this node `left`, not dead) and stops
    /// the driver. Idempotent.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        self.shared.closed.store(true, SeqCst);
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

fn build_swarm(
    keypair: libp2p::identity::Keypair,
    network: &str,
) -> Result<Swarm<Behaviour>, MeshError> {
    let transport_error = |e: &dyn std::fmt::Display| MeshError::Transport(e.to_string());
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport_error(&e))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let protocol = format!("/plexus/{network}/1.0.0");
    let swarm = builder
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .max_transmit_size(crate::allowlist::ALLOWLIST_BYTES_MAX + 4096)
                .build()
                .map_err(|e| {
                    Box::new(std::io::Error::other(e.to_string()))
                        as Box<dyn std::error::Error + Send + Sync>
                })?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| {
                Box::new(std::io::Error::other(e.to_string()))
                    as Box<dyn std::error::Error + Send + Sync>
            })?;
            Ok(Behaviour {
                allow: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(identify::Config::new(
                    protocol.clone(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                gossipsub,
                stream: libp2p_stream::Behaviour::new(),
            })
        })
        .map_err(|e| transport_error(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

/// Accepts inbound mesh streams and runs a reader for each. Owns the readers.
async fn accept_loop(
    shared: Arc<Shared>,
    mut incoming: libp2p_stream::IncomingStreams,
    inbound: mpsc::Sender<(NodeId, Vec<Frame>)>,
) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                match node_id_of(&peer) {
                    Some(node) if shared.admitted(&node) => {
                        readers.spawn(read_loop(shared.clone(), node, stream, inbound.clone()));
                    }
                    _ => {
                        shared.counters.unadmitted_dropped.fetch_add(1, Relaxed);
                    }
                }
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

async fn read_loop(
    shared: Arc<Shared>,
    node: NodeId,
    mut stream: libp2p::Stream,
    inbound: mpsc::Sender<(NodeId, Vec<Frame>)>,
) {
    let mut reader = FrameReader::new(MESH_FRAME_BYTES_MAX);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        reader.extend(&chunk[..n]);
        let mut batch = Vec::new();
        loop {
            match reader.next_frame() {
                Ok(Some(bytes)) => match wire::decode_frame(bytes, MESH_FRAME_BYTES_MAX) {
                    Ok(frame) => batch.push(frame),
                    Err(e) => {
                        shared.counters.malformed_frames.fetch_add(1, Relaxed);
                        tracing::debug!(peer = %node, %e, "dropped a malformed frame");
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    // The stream is out of sync: close it; the sender reconnects.
                    shared.counters.malformed_frames.fetch_add(1, Relaxed);
                    tracing::warn!(peer = %node, %e, "closing a stream with a bad frame length");
                    return;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        // Admission can be revoked by an allowlist update while the stream is open.
        if !shared.admitted(&node) {
            shared
                .counters
                .unadmitted_dropped
                .fetch_add(batch.len() as u64, Relaxed);
            return;
        }
        shared
            .counters
            .frames_in
            .fetch_add(batch.len() as u64, Relaxed);
        if inbound.send((node, batch)).await.is_err() {
            return;
        }
    }
}

async fn write_loop(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    node: NodeId,
    out: Arc<PeerOut>,
    cmd: mpsc::UnboundedSender<Command>,
) -> NodeId {
    let result: Result<(), String> = async {
        let mut stream = control
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(|e| e.to_string())?;
        out.ready.store(true, SeqCst);
        let _ = cmd.send(Command::StreamReady(node));
        let mut batch = Vec::new();
        loop {
            let notified = out.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut buf = out.buf.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::swap(&mut *buf, &mut batch);
            }
            if batch.is_empty() {
                if out.closed.load(SeqCst) {
                    return Ok(());
                }
                notified.await;
                continue;
            }
            stream.write_all(&batch).await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            batch.clear();
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(peer = %node, %e, "mesh stream closed");
    }
    out.closed.store(true, SeqCst);
    out.ready.store(false, SeqCst);
    node
}

struct AskWaiter {
    peer: NodeId,
    tx: oneshot::Sender<Result<Vec<u8>, Failure>>,
}

struct Driver {
    shared: Arc<Shared>,
    system: ActorSystem,
    swarm: Swarm<Behaviour>,
    control: libp2p_stream::Control,
    cluster: Cluster,
    start: Instant,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    inbound_rx: mpsc::Receiver<(NodeId, Vec<Frame>)>,
    outs: HashMap<NodeId, Arc<PeerOut>>,
    retry_at: HashMap<NodeId, Instant>,
    writers: JoinSet<NodeId>,
    slow: JoinSet<(NodeId, u64, Result<(), Failure>)>,
    /// Peers with a delivery waiting on a full mailbox, and the frames held behind it.
    held: HashMap<NodeId, VecDeque<Frame>>,
    asks: HashMap<u64, AskWaiter>,
    next_corr: u64,
    /// Seqs of gated user frames per peer, to release gate slots on acks.
    gated: HashMap<NodeId, VecDeque<u64>>,
    topic: gossipsub::IdentTopic,
    publish_due: bool,
    last_publish: Option<Instant>,
    remote_enqueue_wait: Duration,
    _tasks: JoinSet<()>,
    leaving: Option<(Instant, oneshot::Sender<()>)>,
    pending_events: Vec<MeshEvent>,
    /// Bootstrap addresses, redialled once a second while this node knows no member.
    bootstrap: Vec<Multiaddr>,
}

enum Wake {
    Command(Option<Command>),
    Inbound(Option<(NodeId, Vec<Frame>)>),
    Slow((NodeId, u64, Result<(), Failure>)),
    WriterDone(NodeId),
    Swarm(Box<SwarmEvent<BehaviourEvent>>),
    Timer,
    Sweep,
}

impl Driver {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn deadline(&self) -> tokio::time::Instant {
        let at = self.cluster.poll_timeout();
        let offset = Duration::from_micros(at.as_micros());
        tokio::time::Instant::from_std(self.start + offset.min(Duration::from_secs(86_400 * 365)))
    }

    async fn run(mut self) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(timer);
        loop {
            let wake = tokio::select! {
                biased;
                c = self.cmd_rx.recv() => Wake::Command(c),
                b = self.inbound_rx.recv() => Wake::Inbound(b),
                Some(Ok(done)) = self.slow.join_next(), if !self.slow.is_empty() => Wake::Slow(done),
                Some(Ok(node)) = self.writers.join_next(), if !self.writers.is_empty() => Wake::WriterDone(node),
                ev = self.swarm.select_next_some() => Wake::Swarm(Box::new(ev)),
                _ = &mut timer => Wake::Timer,
                _ = sweep.tick() => Wake::Sweep,
            };
            match wake {
                Wake::Command(None) | Wake::Inbound(None) => break,
                Wake::Command(Some(cmd)) => {
                    self.handle_command(cmd);
                    for _ in 0..COMMANDS_PER_TURN {
                        match self.cmd_rx.try_recv() {
                            Ok(cmd) => self.handle_command(cmd),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Inbound(Some((peer, frames))) => {
                    self.handle_inbound(peer, frames);
                    for _ in 0..INBOUND_BATCHES_MAX {
                        match self.inbound_rx.try_recv() {
                            Ok((peer, frames)) => self.handle_inbound(peer, frames),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Slow((peer, seq, outcome)) => self.slow_done(peer, seq, outcome),
                Wake::WriterDone(node) => self.writer_done(node),
                Wake::Swarm(event) => self.handle_swarm(*event),
                Wake::Timer => {
                    let now = self.now();
                    self.cluster.handle_timeout(now);
                }
                Wake::Sweep => self.sweep(),
            }
            self.flush();
            timer.as_mut().reset(self.deadline());
            if self
                .leaving
                .as_ref()
                .is_some_and(|(until, _)| Instant::now() >= *until)
                && let Some((_, done)) = self.leaving.take()
            {
                let _ = done.send(());
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Send { node, out } => {
                let Outgoing {
                    target,
                    message_type,
                    payload,
                    reply,
                    trace,
                } = out;
                let body = match reply {
                    Some(tx) => {
                        let corr = self.next_corr;
                        self.next_corr += 1;
                        self.asks.insert(corr, AskWaiter { peer: node, tx });
                        self.shared
                            .counters
                            .asks_pending
                            .store(self.asks.len() as u64, Relaxed);
                        DataBody::Ask {
                            target,
                            message_type: message_type.to_string(),
                            payload,
                            corr,
                            trace,
                        }
                    }
                    None => DataBody::Tell {
                        target,
                        message_type: message_type.to_string(),
                        payload,
                        trace,
                    },
                };
                match self.cluster.send(now, node, Arc::new(body)) {
                    Ok(seq) => self.gated.entry(node).or_default().push_back(seq),
                    Err(body) => {
                        // The core's window is twice the gate's, so this means the peer
                        // is flooding us with asks to answer; fail the message.
                        self.shared.gate(node).release(1);
                        if let DataBody::Ask { corr, .. } = &*body
                            && let Some(w) = self.asks.remove(corr)
                        {
                            let _ = w.tx.send(Err(Failure::MailboxFull));
                        }
                    }
                }
            }
            Command::Reply { to, corr, result } => {
                let body = Arc::new(DataBody::Reply { corr, result });
                if self.cluster.send(now, to, body).is_err() {
                    tracing::warn!(peer = %to, corr, "reply dropped: window to the asker is full");
                }
            }
            Command::Register {
                name,
                actor,
                rank,
                reply,
            } => {
                let result = match rank {
                    None => self.cluster.register(now, &name, actor),
                    Some(rank) => self.cluster.register_ranked(now, &name, actor, rank),
                };
                let _ = reply.send(result.map(|_| ()));
            }
            Command::Unregister { name, reply } => {
                let _ = reply.send(self.cluster.unregister(now, &name));
            }
            Command::SetFree(free) => {
                let mut meta = self.cluster.membership().meta().clone();
                meta.free = free;
                self.cluster.set_meta(meta);
            }
            Command::PublishAllowlist { signed, reply } => {
                let result = self.apply_allowlist(signed);
                if result.is_ok() {
                    self.publish_due = true;
                }
                let _ = reply.send(result);
            }
            Command::StreamReady(node) => self.cluster.link_up(now, node),
            Command::Leave(done) => {
                self.cluster.leave();
                let linger = self.shared.config.membership.probe_interval * 2;
                self.leaving = Some((Instant::now() + linger, done));
            }
        }
    }

    fn handle_inbound(&mut self, peer: NodeId, frames: Vec<Frame>) {
        for frame in frames {
            if let Some(held) = self.held.get_mut(&peer)
                && matches!(frame, Frame::Data(_))
            {
                if held.len() < HELD_FRAMES_MAX {
                    held.push_back(frame);
                }
                // Beyond the bound the frame is dropped; the sender retransmits it.
                continue;
            }
            self.handle_frame(peer, frame);
        }
    }

    fn handle_frame(&mut self, peer: NodeId, frame: Frame) {
        let now = self.now();
        let Some((seq, body)) = self.cluster.handle_frame(now, peer, frame) else {
            return;
        };
        match &*body {
            DataBody::Reply { corr, result } => {
                if let Some(waiter) = self.asks.remove(corr) {
                    let _ = waiter.tx.send(result.clone());
                }
                self.cluster.complete(now, peer, seq, Ok(()));
            }
            DataBody::Tell {
                target,
                message_type,
                payload,
                ..
            } => {
                let outcome = self
                    .system
                    .try_deliver_remote(*target, message_type, payload, None);
                self.deliver_outcome(peer, seq, outcome);
            }
            DataBody::Ask {
                target,
                message_type,
                payload,
                corr,
                ..
            } => {
                let cmd = self.shared.cmd.clone();
                let corr = *corr;
                let reply = RemoteReply::new(move |result| {
                    let _ = cmd.send(Command::Reply {
                        to: peer,
                        corr,
                        result,
                    });
                });
                let outcome =
                    self.system
                        .try_deliver_remote(*target, message_type, payload, Some(reply));
                self.deliver_outcome(peer, seq, outcome);
            }
        }
    }

    fn deliver_outcome(&mut self, peer: NodeId, seq: u64, outcome: Result<(), DeliverError>) {
        let now = self.now();
        match outcome {
            Ok(()) => {
                self.shared.counters.delivered.fetch_add(1, Relaxed);
                self.cluster.complete(now, peer, seq, Ok(()));
            }
            Err(DeliverError::Refused(failure)) => {
                self.shared.counters.refused.fetch_add(1, Relaxed);
                self.cluster.complete(now, peer, seq, Err(failure));
            }
            Err(DeliverError::Full(pending)) => {
                let wait = self.remote_enqueue_wait;
                self.held.insert(peer, VecDeque::new());
                self.slow
                    .spawn(async move { (peer, seq, pending.wait(wait).await) });
            }
            Err(_) => {
                self.shared.counters.refused.fetch_add(1, Relaxed);
                self.cluster.complete(
                    now,
                    peer,
                    seq,
                    Err(Failure::Rejected("undeliverable".into())),
                );
            }
        }
    }

    fn slow_done(&mut self, peer: NodeId, seq: u64, outcome: Result<(), Failure>) {
        let now = self.now();
        match &outcome {
            Ok(()) => self.shared.counters.delivered.fetch_add(1, Relaxed),
            Err(_) => self.shared.counters.refused.fetch_add(1, Relaxed),
        };
        self.cluster.complete(now, peer, seq, outcome);
        let held = self.held.remove(&peer).unwrap_or_default();
        self.handle_inbound(peer, held.into_iter().collect());
    }

    /// The outbound buffer for `node`, starting its writer if connected, or dialing it
    /// (at most every `DIAL_RETRY`) if not.
    fn out_for(&mut self, node: NodeId) -> Option<Arc<PeerOut>> {
        if let Some(out) = self.outs.get(&node)
            && !out.closed.load(SeqCst)
        {
            return Some(out.clone());
        }
        if node == self.shared.me || !self.shared.admitted(&node) {
            return None;
        }
        let peer = peer_id_of(&node).ok()?;
        if !self.swarm.is_connected(&peer) {
            if self
                .retry_at
                .get(&node)
                .is_none_or(|t| Instant::now() >= *t)
            {
                self.retry_at.insert(node, Instant::now() + DIAL_RETRY);
                let addrs: Vec<Multiaddr> = self
                    .cluster
                    .membership()
                    .member(&node)
                    .map(|m| m.meta.addrs.iter().filter_map(|a| a.parse().ok()).collect())
                    .unwrap_or_default();
                if !addrs.is_empty() {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(peer = %node, %e, "dial failed");
                    }
                }
            }
            return None;
        }
        let out = Arc::new(PeerOut {
            buf: Mutex::new(Vec::new()),
            wake: Notify::new(),
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        self.outs.insert(node, out.clone());
        self.writers.spawn(write_loop(
            self.control.clone(),
            peer,
            node,
            out.clone(),
            self.shared.cmd.clone(),
        ));
        Some(out)
    }

    fn writer_done(&mut self, node: NodeId) {
        if self.outs.get(&node).is_some_and(|o| o.closed.load(SeqCst)) {
            self.outs.remove(&node);
            self.cluster.link_down(node);
        }
    }

    /// Sends everything the core wants sent and handles its events.
    fn flush(&mut self) {
        let now = self.now();
        let mut batches: HashMap<NodeId, Vec<u8>> = HashMap::new();
        let mut sent = 0u64;
        while let Some((to, frame)) = self.cluster.poll_transmit(now) {
            let is_data = matches!(frame, Frame::Data(_));
            let Some(out) = self.out_for(to) else {
                if is_data {
                    self.cluster.link_down(to);
                }
                continue;
            };
            if !out.ready.load(SeqCst) {
                if is_data {
                    // Held by the core until the stream is up (then resent).
                    self.cluster.link_down(to);
                    continue;
                }
                let buffered = out.buf.lock().map(|b| b.len()).unwrap_or(0)
                    + batches.get(&to).map_or(0, Vec::len);
                if buffered > CONTROL_BUFFER_BYTES_MAX {
                    continue;
                }
            }
            let batch = batches.entry(to).or_default();
            if codec::encode_delimited_into(&frame, MESH_FRAME_BYTES_MAX, batch).is_ok() {
                sent += 1;
            }
        }
        for (to, mut bytes) in batches {
            if let Some(out) = self.outs.get(&to) {
                let mut buf = out.buf.lock().unwrap_or_else(|p| p.into_inner());
                if buf.is_empty() {
                    // The writer has drained what it had: hand over the batch, no copy.
                    std::mem::swap(&mut *buf, &mut bytes);
                } else {
                    buf.extend_from_slice(&bytes);
                }
                drop(buf);
                out.wake.notify_one();
            }
        }
        self.shared.counters.frames_out.fetch_add(sent, Relaxed);
        self.shared
            .counters
            .retransmitted
            .store(self.cluster.delivery().stats().retransmitted, Relaxed);
        self.drain_events();
        if self.publish_due {
            self.publish_allowlist();
        }
    }

    fn drain_events(&mut self) {
        let mut members_changed = false;
        while let Some(event) = self.cluster.poll_event() {
            match event {
                ClusterEvent::Member(e) => {
                    members_changed = true;
                    self.member_event(e);
                }
                ClusterEvent::Registry(e) => self.registry_event(e),
                ClusterEvent::Delivery(e) => self.delivery_event(e),
            }
        }
        if members_changed {
            self.refresh_members();
        }
        // Published only now, so a subscriber that reads the snapshots on an event
        // sees the state the event announces.
        for event in self.pending_events.drain(..) {
            self.shared.emit(event);
        }
    }

    fn member_event(&mut self, event: MembershipEvent) {
        let text = |n: &NodeId| n.to_string();
        let mut emit = |e: MeshEvent| self.pending_events.push(e);
        match event {
            MembershipEvent::Joined(n) => {
                emit(MeshEvent::MemberJoined { node: text(&n) });
                if let (Ok(peer), Some(member)) =
                    (peer_id_of(&n), self.cluster.membership().member(&n))
                {
                    for addr in &member.meta.addrs {
                        if let Ok(addr) = addr.parse::<Multiaddr>() {
                            self.swarm.add_peer_address(peer, addr);
                        }
                    }
                }
                self.check_allowlist_version(&n);
            }
            MembershipEvent::Updated(n) => self.check_allowlist_version(&n),
            MembershipEvent::Suspected(n) => emit(MeshEvent::MemberSuspected { node: text(&n) }),
            MembershipEvent::Recovered(n) => emit(MeshEvent::MemberRecovered { node: text(&n) }),
            MembershipEvent::Died(n) | MembershipEvent::Left(n) => {
                let died = self.cluster.membership().state_of(&n) == Some(MemberState::Dead);
                emit(if died {
                    MeshEvent::MemberDied { node: text(&n) }
                } else {
                    MeshEvent::MemberLeft { node: text(&n) }
                });
                let lost: Vec<u64> = self
                    .asks
                    .iter()
                    .filter(|(_, w)| w.peer == n)
                    .map(|(c, _)| *c)
                    .collect();
                for corr in lost {
                    if let Some(w) = self.asks.remove(&corr) {
                        let _ = w.tx.send(Err(Failure::Unreachable));
                    }
                }
                self.shared
                    .counters
                    .asks_pending
                    .store(self.asks.len() as u64, Relaxed);
            }
            MembershipEvent::Refuted { incarnation } => {
                tracing::info!(incarnation, "refuted a suspicion about this node");
            }
        }
    }

    fn check_allowlist_version(&mut self, node: &NodeId) {
        let theirs = self
            .cluster
            .membership()
            .member(node)
            .map(|m| m.meta.allowlist_version)
            .unwrap_or(0);
        let ours = self
            .shared
            .admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .version();
        if theirs < ours {
            self.publish_due = true;
        }
    }

    fn refresh_members(&mut self) {
        let view: BTreeMap<NodeId, MemberView> = self
            .cluster
            .membership()
            .members()
            .map(|m| {
                let state = match m.state {
                    MemberState::Alive => "alive",
                    MemberState::Suspect => "suspect",
                    MemberState::Dead => "dead",
                    MemberState::Left => "left",
                };
                (
                    m.id,
                    MemberView {
                        id: m.id.to_string(),
                        state: state.into(),
                        incarnation: m.incarnation,
                        addrs: m.meta.addrs.clone(),
                        total: m.meta.total,
                        free: m.meta.free,
                        tags: m.meta.tags.clone(),
                    },
                )
            })
            .collect();
        *self
            .shared
            .members
            .write()
            .unwrap_or_else(|p| p.into_inner()) = view;
    }

    fn registry_event(&mut self, event: RegistryEvent) {
        let mut names = self.shared.names.write().unwrap_or_else(|p| p.into_inner());
        match event {
            RegistryEvent::Bound { name, location } => {
                names.insert(name.clone(), location);
                drop(names);
                self.shared.emit(MeshEvent::NameBound {
                    name,
                    actor: location.actor.to_string(),
                });
            }
            RegistryEvent::Unbound { name } => {
                names.remove(&name);
                drop(names);
                self.shared.emit(MeshEvent::NameUnbound { name });
            }
            RegistryEvent::ConflictLost {
                name,
                actor,
                winner,
            } => {
                drop(names);
                tracing::warn!(%name, ?actor, ?winner, "lost a concurrent registration; unregistering");
                let now = self.now();
                self.cluster.unregister(now, &name);
            }
        }
    }

    fn delivery_event(&mut self, event: DeliveryEvent) {
        match event {
            DeliveryEvent::Acked { peer, up_to, .. } => {
                let released = self.release_gated(peer, |seq| seq <= up_to);
                self.shared.gate(peer).release(released);
            }
            DeliveryEvent::Refused {
                peer,
                failure,
                body,
                ..
            } => {
                if let DataBody::Ask { corr, .. } = &*body
                    && let Some(w) = self.asks.remove(corr)
                {
                    let _ = w.tx.send(Err(failure.clone()));
                }
                tracing::debug!(%peer, %failure, "a remote message was refused");
            }
            DeliveryEvent::Unreachable { peer, frames } => {
                for (_, body) in &frames {
                    if let DataBody::Ask { corr, .. } = &**body
                        && let Some(w) = self.asks.remove(corr)
                    {
                        let _ = w.tx.send(Err(Failure::Unreachable));
                    }
                }
                let released = self.release_gated(peer, |_| true);
                self.shared.gate(peer).release(released);
            }
            DeliveryEvent::WindowOpen { .. } => {}
        }
        self.shared
            .counters
            .asks_pending
            .store(self.asks.len() as u64, Relaxed);
    }

    fn release_gated(&mut self, peer: NodeId, done: impl Fn(u64) -> bool) -> usize {
        let Some(seqs) = self.gated.get_mut(&peer) else {
            return 0;
        };
        let mut n = 0;
        while seqs.front().is_some_and(|s| done(*s)) {
            seqs.pop_front();
            n += 1;
        }
        n
    }

    fn handle_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = self.now();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with(libp2p::multiaddr::Protocol::P2p(self.shared.peer));
                self.shared
                    .listen
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(full.clone());
                self.shared.emit(MeshEvent::Listening {
                    addr: full.to_string(),
                });
                let mut meta = self.cluster.membership().meta().clone();
                meta.addrs.push(address.to_string());
                self.cluster.set_meta(meta);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(node) = node_id_of(&peer_id) {
                    self.retry_at.remove(&node);
                    self.cluster.handle_discovered(now, node);
                    self.out_for(node);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(node) = node_id_of(&peer_id) {
                    self.cluster.link_down(node);
                    if let Some(out) = self.outs.remove(&node) {
                        out.closed.store(true, SeqCst);
                        out.wake.notify_one();
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                error: libp2p::swarm::ListenError::Denied { .. },
                peer_id,
                ..
            } => {
                self.shared
                    .counters
                    .connections_refused
                    .fetch_add(1, Relaxed);
                self.shared.emit(MeshEvent::ConnectionRefused {
                    peer: peer_id.map(|p| p.to_string()),
                });
            }
            SwarmEvent::OutgoingConnectionError {
                error: libp2p::swarm::DialError::Denied { .. },
                peer_id,
                ..
            } => {
                self.shared
                    .counters
                    .connections_refused
                    .fetch_add(1, Relaxed);
                self.shared.emit(MeshEvent::ConnectionRefused {
                    peer: peer_id.map(|p| p.to_string()),
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => match SignedAllowlist::decode(&message.data) {
                Ok(update) => {
                    let current = self
                        .shared
                        .admission
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .version();
                    if update.allowlist.version > current
                        && let Err(e) = self.apply_allowlist(update)
                    {
                        self.reject_allowlist(e.to_string());
                    }
                }
                Err(e) => self.reject_allowlist(e.to_string()),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                ..
            })) => {
                self.publish_due = true;
            }
            _ => {}
        }
    }

    fn reject_allowlist(&mut self, reason: String) {
        self.shared
            .counters
            .allowlist_rejected
            .fetch_add(1, Relaxed);
        tracing::warn!(%reason, "refused an allowlist update");
        self.shared.emit(MeshEvent::AllowlistRejected { reason });
    }

    fn apply_allowlist(&mut self, signed: SignedAllowlist) -> Result<(), AllowlistError> {
        let removed = {
            let mut admission = self
                .shared
                .admission
                .write()
                .unwrap_or_else(|p| p.into_inner());
            admission.apply_update(signed.clone())?
        };
        for node in signed.allowlist.nodes.keys() {
            if let Ok(peer) = peer_id_of(node) {
                self.swarm.behaviour_mut().allow.allow_peer(peer);
            }
        }
        for node in removed {
            if let Ok(peer) = peer_id_of(&node) {
                self.swarm.behaviour_mut().allow.disallow_peer(peer);
            }
        }
        let mut meta = self.cluster.membership().meta().clone();
        meta.allowlist_version = signed.allowlist.version;
        self.cluster.set_meta(meta);
        tracing::info!(version = signed.allowlist.version, "allowlist updated");
        self.shared.emit(MeshEvent::AllowlistUpdated {
            version: signed.allowlist.version,
        });
        Ok(())
    }

    fn publish_allowlist(&mut self) {
        if self
            .last_publish
            .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        let encoded = self
            .shared
            .admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current()
            .encode();
        let Ok(bytes) = encoded else { return };
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                self.publish_due = false;
                self.last_publish = Some(Instant::now());
            }
            // No gossip peers yet: try again on a later turn.
            Err(_) => self.last_publish = Some(Instant::now()),
        }
    }

    fn sweep(&mut self) {
        // Alone (the bootstrap dials failed, or every peer left): dial again.
        if self.cluster.membership().live_count() == 1 && !self.shared.closed.load(SeqCst) {
            for addr in self.bootstrap.clone() {
                let _ = self.swarm.dial(addr);
            }
        }
        let before = self.asks.len();
        self.asks.retain(|_, w| !w.tx.is_closed());
        if self.asks.len() != before {
            self.shared
                .counters
                .asks_pending
                .store(self.asks.len() as u64, Relaxed);
        }
    }
}
