//! The mesh driver: the [`Cluster`](crate::cluster::Cluster) core on libp2p and tokio.
//!
//! # Where the core ends and the driver begins
//!
//! Every decision (who is alive, who is dead, what a name resolves to, which frame
//! goes next, what is acknowledged, what is retransmitted, how much traffic a peer may
//! have in flight, which reply answers which ask and when an ask times out, whether
//! an allowlist update is accepted and when to gossip it, which of two concurrent
//! claims on a name withdraws) is made by the sans-IO cores. This module only moves
//! bytes and time, in four rooms:
//!
//! * `swarm.rs`: one task owns the libp2p `Swarm` and the `Cluster` core and runs a
//!   loop that feeds the core swarm events, inbound frames, commands and timer ticks,
//!   then drains its outputs (frames to the writers, answers to askers, snapshots
//!   for the handle);
//! * `streams.rs`: each peer gets a writer task holding one outbound libp2p stream
//!   (`/plexus/mesh/1`, over TCP + Noise + Yamux, or QUIC) onto which the driver
//!   appends length-delimited codec frames in batches; each inbound stream gets a
//!   reader task that reassembles and decodes frames (malformed ones are counted and
//!   dropped) and hands them to the loop in batches, tagged with the peer the
//!   transport authenticated;
//! * `handle.rs`: the [`Mesh`] handle (start, snapshots, commands);
//! * `link.rs`: the [`RemoteLink`](plexus_actors::runtime::RemoteLink) the actor
//!   runtime sends through.
//!
//! libp2p's own behaviours are transport plumbing: `allow_block_list` refuses
//! connections from peers not on the allowlist, `identify` learns addresses, `ping`
//! keeps connections alive, and gossipsub spreads signed allowlist updates (which the
//! `Admission` core accepts or refuses).
//!
//! # Bounds
//!
//! * Outbound tells and asks to a peer are bounded by the delivery core's user window
//!   (`cluster.delivery.window_frames`, default 4,096 frames, and `window_bytes`,
//!   64 MiB, per peer). It is the only outbound flow control: `link.rs` keeps a
//!   concurrent copy of each peer's user window, applying the core's own rule
//!   (`delivery::Window::admits`) on the caller's thread and released only as the
//!   core's `Released` events say, so it always holds at least what the core holds
//!   and the core never refuses what it admitted. At the bound `try_tell` returns
//!   `MailboxFull` and `tell` (and `ask`) wait for the core's `Released` wake-up.
//!   Replies have a window of the same size of their own; a reply that finds it full
//!   is dropped and its asker times out.
//! * Pending asks: at most `cluster.asks.pending_max` (then an ask fails with
//!   `MailboxFull`), each answered by the core within its timeout (at most
//!   `cluster.asks.timeout_max`).
//! * Inbound batches queue in a channel of `INBOUND_BATCHES_MAX`; a full channel stops
//!   the readers, and backpressure reaches the sender through the transport.
//! * An inbound message whose target mailbox is full waits up to
//!   `remote_enqueue_wait` for the mailbox to drain to half its capacity and take
//!   it, holding back later frames from the same peer (at most `HELD_FRAMES_MAX`;
//!   more are dropped and will be retransmitted), then is refused with
//!   `MailboxFull`.
//! * Control frames for a peer whose stream is not open yet are buffered up to
//!   `CONTROL_BUFFER_BYTES_MAX`, then dropped (membership tolerates loss).
//! * Commands: at most `COMMANDS_PER_TURN` handled per loop turn. The channel is
//!   unbounded, but every queued send holds room in its peer's window copy, so
//!   queued sends are bounded by the windows; replies by the asks delivered.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use plexus_actors::envelope::Failure;
use plexus_actors::fixed::FixedMap;
use plexus_actors::runtime::Outgoing;
use plexus_actors::{ActorId, NodeId};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::allowlist::{Admission, AllowlistError, SignedAllowlist};
use crate::cluster::ClusterConfig;
use crate::registry::{Location, RegistryError};
use plexus_vocab::resources::Resources;

mod handle;
mod keystore;
mod limits;
mod link;
mod streams;
mod swarm;

pub use handle::{
    MemberView, Mesh, MeshConfig, MeshError, MeshEvent, MeshStats, node_id_of, peer_id_of,
};
pub use keystore::{
    KeyStoreError, NODE_KEY_FILE, create_private_dir, load_or_create_node_key, read_key,
    write_atomic, write_new_key,
};
pub use streams::PROTOCOL_NAME;

use link::PeerWindow;

/// Inbound frame batches queued between the readers and the loop.
const INBOUND_BATCHES_MAX: usize = 256;
/// Data frames held behind a delivery waiting on a full mailbox, per peer.
const HELD_FRAMES_MAX: usize = 4096;
/// Control bytes buffered for a peer whose stream is not open yet.
const CONTROL_BUFFER_BYTES_MAX: usize = 1024 * 1024;
/// Commands handled per loop turn before the loop looks at other inputs.
const COMMANDS_PER_TURN: usize = 4096;
/// Least time between two dials of one peer.
const DIAL_RETRY: Duration = Duration::from_millis(500);

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
    gossip_refused: AtomicU64,
    suspicions: AtomicU64,
    deaths: AtomicU64,
    local_health: AtomicU64,
    peers_held: AtomicU64,
}

/// What the handle, the link and the streams ask of the loop.
enum Command {
    /// A tell or an ask, holding `bytes` of `node`'s user window.
    Send {
        node: NodeId,
        out: Outgoing,
        bytes: usize,
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
    /// A lookup of a name the sharded registry does not hold: ask its owners.
    WantName(String),
    SetFree(Resources),
    PublishAllowlist {
        signed: SignedAllowlist,
        reply: oneshot::Sender<Result<(), AllowlistError>>,
    },
    StreamReady(NodeId),
    Leave(oneshot::Sender<()>),
    /// Test-only: put `frame` on the wire to `to` as it is.
    #[cfg(feature = "evil")]
    RawFrame {
        to: NodeId,
        frame: crate::wire::Frame,
    },
}

/// State the loop publishes and the handle, the link and the streams read.
struct Shared {
    me: NodeId,
    peer: PeerId,
    names: RwLock<BTreeMap<String, MirroredName>>,
    /// Sharded registry: names looked up and not known, with a
    /// [`Command::WantName`] on its way (so a lookup in a loop sends one).
    wanted: Mutex<std::collections::BTreeSet<String>>,
    members: RwLock<BTreeMap<NodeId, handle::MemberView>>,
    listen: RwLock<Vec<Multiaddr>>,
    admission: RwLock<Admission>,
    /// The concurrent copies of the core's user windows, per peer.
    windows: Mutex<FixedMap<NodeId, Arc<PeerWindow>>>,
    counters: Counters,
    events: broadcast::Sender<handle::MeshEvent>,
    cmd: mpsc::UnboundedSender<Command>,
    closed: AtomicBool,
    detection_period: Duration,
    config: ClusterConfig,
    /// Where accepted allowlist updates are written (see `MeshConfig`).
    allowlist_store: Option<std::path::PathBuf>,
}

/// A name as the loop publishes it to lookups.
struct MirroredName {
    location: Location,
    /// Looked up since the loop last reported it to a sharded registry (which keeps
    /// asking the owners about the names in use).
    used: AtomicBool,
}

impl Shared {
    /// Where `name` resolves, for the handle and the link. With a sharded
    /// registry, a hit is noted as use, and a miss sends the loop one
    /// [`Command::WantName`] (one in flight per name) so it asks the owners.
    fn lookup_name(&self, name: &str) -> Option<Location> {
        let registry = &self.config.registry;
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = names.get(name) {
            if registry.sharded() {
                found.used.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Some(found.location);
        }
        drop(names);
        if registry.sharded() {
            let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
            if wanted.len() < registry.watch_max && wanted.insert(name.to_string()) {
                drop(wanted);
                let _ = self.cmd.send(Command::WantName(name.to_string()));
            }
        }
        None
    }

    /// The copy of `node`'s user window.
    fn window(&self, node: NodeId) -> Arc<PeerWindow> {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node)
            .or_default()
            .clone()
    }

    fn emit(&self, event: handle::MeshEvent) {
        let _ = self.events.send(event);
    }

    fn admitted(&self, node: &NodeId) -> bool {
        self.admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .admits(node)
    }
}
