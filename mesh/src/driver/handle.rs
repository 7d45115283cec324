//! The [`Mesh`] handle: starting a node's mesh, reading the loop's snapshots and
//! sending it commands; the types the handle speaks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, gossipsub};
use plexus_actors::runtime::ActorSystem;
use plexus_actors::{ActorId, NodeId, Time};
use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;

use super::link::Link;
use super::streams::{PROTOCOL, accept_loop};
use super::swarm::{Driver, build_swarm};
use super::{Command, Counters, INBOUND_BATCHES_MAX, Shared};
use crate::allowlist::{Admission, AllowlistError, SignedAllowlist};
use crate::cluster::{Cluster, ClusterConfig};
use crate::membership::MemberState;
use crate::registry::{Location, RegistryError};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::{NodeMeta, Resources, Tags};

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
    /// Core tuning, the outbound window per peer (`cluster.delivery`) and the
    /// bound on pending asks (`cluster.asks`) included.
    pub cluster: ClusterConfig,
    /// What this node offers.
    pub resources: Resources,
    /// Tags added to those in the allowlist entry.
    pub tags: Tags,
    /// The software this node runs, as peers will show it (gossiped in its meta).
    pub software: String,
    /// How long an inbound message waits for space in a full mailbox.
    pub remote_enqueue_wait: Duration,
    /// Incarnation (also the delivery session); wall-clock milliseconds if `None`.
    pub incarnation: Option<u64>,
    /// Seed of the cores' RNG; OS randomness if `None`.
    pub seed: Option<u64>,
    /// Where accepted allowlist updates are persisted, so a restarted node never
    /// goes back to an older list (re-admitting revoked peers until gossip catches
    /// up). At start a stored list newer than `allowlist`, signed by the same
    /// governance for the same network, takes its place.
    pub allowlist_store: Option<std::path::PathBuf>,
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
            software: String::new(),
            remote_enqueue_wait: Duration::from_secs(1),
            incarnation: None,
            seed: None,
            allowlist_store: None,
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

/// Writes an id as its text (`origin/local` for an actor), as the API always has.
fn as_text<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// What the mesh reports as it runs (the daemon prints these as JSON lines; ids are
/// written as their text).
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
        node: NodeId,
    },
    /// A member is suspected.
    MemberSuspected {
        /// It.
        node: NodeId,
    },
    /// A suspect proved alive.
    MemberRecovered {
        /// It.
        node: NodeId,
    },
    /// A member was declared dead.
    MemberDied {
        /// It.
        node: NodeId,
    },
    /// A member left.
    MemberLeft {
        /// It.
        node: NodeId,
    },
    /// A name now resolves.
    NameBound {
        /// The name.
        name: String,
        /// The actor.
        #[serde(serialize_with = "as_text")]
        actor: ActorId,
    },
    /// A name no longer resolves.
    NameUnbound {
        /// The name.
        name: String,
    },
    /// A connection from or to a peer not on the allowlist was refused.
    ConnectionRefused {
        /// The peer's libp2p id, if known. Text, not a [`NodeId`]: a refused peer
        /// need not have an ed25519 key.
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

/// A member as the API shows it (JSON: `id` as PeerId text, `state` as `alive`,
/// `suspect`, `dead` or `left`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member.
    pub id: NodeId,
    /// Its state in this node's view.
    pub state: MemberState,
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
    /// The software it says it runs (at most `SOFTWARE_SHOWN_MAX` bytes; display
    /// only).
    #[serde(default)]
    pub software: String,
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
    /// Membership statements and registry claims refused from peers (forged, not
    /// admitted, or jumping past a bound): a rising count names a liar.
    pub gossip_refused: u64,
    /// Times this node's membership suspected a member.
    pub suspicions: u64,
    /// Times this node's membership declared a member dead.
    pub deaths: u64,
    /// Lifeguard's local health score now (0: healthy; this node probes
    /// `score + 1` times slower than configured).
    pub local_health: u64,
    /// Peers whose delivery waits for a full local mailbox to drain, their later
    /// data frames held behind it (backpressure on those peers now).
    pub peers_held: u64,
}

/// A running mesh: the handle to a node's driver task.
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
    task: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Mesh {
    /// Starts the mesh for `system`'s node: verifies the allowlist, listens, dials the
    /// bootstrap peers and installs the remote link in the actor system.
    pub async fn start(config: MeshConfig, system: ActorSystem) -> Result<Mesh, MeshError> {
        let mut admission = Admission::new(config.allowlist.clone())?;
        if let Some(path) = &config.allowlist_store {
            restore_allowlist(&mut admission, path);
        }
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
        let seed = match config.seed {
            Some(seed) => seed,
            None => {
                // Fail closed: a predictable seed makes probe targets guessable.
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| {
                    MeshError::Transport(format!("the OS random source failed: {e}"))
                })?;
                u64::from_le_bytes(b)
            }
        };
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
            software: config.software.clone(),
        };
        let cluster_config = config.cluster.clone();
        let mut cluster = Cluster::new(
            config.key.clone(),
            incarnation,
            meta,
            cluster_config.clone(),
            seed,
            Time::ZERO,
        );
        // Members not on the allowlist are ignored wherever they appear in gossip.
        cluster.set_admitted(
            Time::ZERO,
            Some(
                admission
                    .current()
                    .allowlist
                    .nodes
                    .keys()
                    .copied()
                    .collect(),
            ),
        );
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let n = admission.current().allowlist.nodes.len().max(2);
        let shared = Arc::new(Shared {
            me,
            peer,
            names: RwLock::new(BTreeMap::new()),
            wanted: Mutex::new(std::collections::BTreeSet::new()),
            members: RwLock::new(BTreeMap::new()),
            listen: RwLock::new(Vec::new()),
            admission: RwLock::new(admission),
            windows: Mutex::new(Default::default()),
            counters: Counters::default(),
            events,
            cmd: cmd_tx,
            closed: AtomicBool::new(false),
            detection_period: cluster_config.membership.detection_bound(n),
            config: cluster_config,
            allowlist_store: config.allowlist_store.clone(),
        });
        let control = swarm.behaviour().stream.new_control();
        let mut accept_control = control.clone();
        let incoming = accept_control
            .accept(PROTOCOL)
            .map_err(|e| MeshError::Transport(e.to_string()))?;
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_BATCHES_MAX);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(shared.clone(), incoming, inbound_tx));
        let driver = Driver::new(
            shared.clone(),
            system.clone(),
            swarm,
            control,
            cluster,
            cmd_rx,
            inbound_rx,
            tasks,
            topic,
            &config,
        );
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

    /// Every bound name (with a sharded registry: every name this node holds).
    pub fn names(&self) -> BTreeMap<String, Location> {
        self.shared
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, n)| (name.clone(), n.location))
            .collect()
    }

    /// Whether the registry is sharded (`registry.owners` > 0): [`Self::names`]
    /// then lists this node's share of the names, not all of them.
    pub fn registry_sharded(&self) -> bool {
        self.shared.config.registry.sharded()
    }

    /// Where a name resolves. With a sharded registry (`registry.owners` > 0), a
    /// name this node does not hold misses the first time: the node then asks the
    /// name's owners, and a later lookup finds it.
    pub fn lookup(&self, name: &str) -> Option<Location> {
        self.shared.lookup_name(name)
    }

    /// Test-only (feature `evil`): sends `frame` to `to` exactly as given, past
    /// the core, so a test can play an admitted node that lies. Never built into
    /// a release binary.
    #[cfg(feature = "evil")]
    pub fn evil_send_frame(&self, to: NodeId, frame: crate::wire::Frame) -> Result<(), MeshError> {
        self.command(Command::RawFrame { to, frame })
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
            gossip_refused: c.gossip_refused.load(Relaxed),
            suspicions: c.suspicions.load(Relaxed),
            deaths: c.deaths.load(Relaxed),
            local_health: c.local_health.load(Relaxed),
            peers_held: c.peers_held.load(Relaxed),
        }
    }

    /// Subscribes to mesh events from now on. The mesh runs from [`Mesh::start`], so
    /// members may have joined already: to know every member, subscribe first, then
    /// read [`Mesh::members`] (a member that joins in between is in both; the
    /// daemon's printer dedups such joins). A receiver that falls more than 1,024
    /// events behind is told how many it lost (`RecvError::Lagged`).
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

/// Replaces the configured allowlist with the stored one if that is a valid update
/// of it (same network and governance, newer, correctly signed). A stored list that
/// is unreadable or not an update is logged and ignored: the configured list, which
/// the operator gave, stands.
fn restore_allowlist(admission: &mut Admission, path: &std::path::Path) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the stored allowlist");
            return;
        }
    };
    let stored = match SignedAllowlist::decode(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the stored allowlist is malformed; ignored");
            return;
        }
    };
    if stored.allowlist.version <= admission.version() {
        return;
    }
    match admission.apply_update(stored) {
        Ok(_) => tracing::info!(
            version = admission.version(),
            "using the newer allowlist accepted before the restart"
        ),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the stored allowlist is not an update of the configured one; ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's JSON and the daemon's event lines are read by scripts: the typed
    /// fields must print exactly as the strings they replaced.
    #[test]
    fn typed_views_print_as_the_text_they_replaced() {
        let node = NodeId::synthetic(3);
        let text = node.to_string();
        let view = MemberView {
            id: node,
            state: MemberState::Suspect,
            incarnation: 7,
            addrs: vec!["/ip4/1.2.3.4/tcp/5".into()],
            total: Resources::default(),
            free: Resources::default(),
            tags: Tags::new(),
            software: "0.1.0 (1aa91d8b0c2e)".into(),
        };
        let json = serde_json::to_string(&view).unwrap();
        assert!(
            json.starts_with(&format!(
                r#"{{"id":"{text}","state":"suspect","incarnation":7,"#
            )),
            "{json}"
        );
        let back: MemberView = serde_json::from_str(&json).unwrap();
        assert_eq!(back, view);
        for (state, word) in [
            (MemberState::Alive, "alive"),
            (MemberState::Suspect, "suspect"),
            (MemberState::Dead, "dead"),
            (MemberState::Left, "left"),
        ] {
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{word}\"")
            );
            assert_eq!(state.to_string(), word);
        }
        assert_eq!(
            serde_json::to_string(&MeshEvent::MemberDied { node }).unwrap(),
            format!(r#"{{"event":"member_died","node":"{text}"}}"#)
        );
        let actor = ActorId::new(node, 12);
        assert_eq!(
            serde_json::to_string(&MeshEvent::NameBound {
                name: "svc".into(),
                actor
            })
            .unwrap(),
            format!(r#"{{"event":"name_bound","name":"svc","actor":"{text}/12"}}"#)
        );
    }
}
