//! The mesh driver: the [`Cluster`](crate::cluster::Cluster) core on libp2p and tokio.
//!
//! # Where the core ends and the driver begins
//!
//! Every decision (who is alive, who is dead, what a name resolves to, which frame
//! goes next, what is acknowledged, what is retransmitted, whether an allowlist update
//! is accepted) is made by the sans-IO cores. This module only moves bytes and time:
//!
//! * one task owns the libp2p `Swarm` and the `Cluster` core and runs a loop that
//!   feeds the core swarm events, inbound frames, commands and timer ticks, then
//!   drains its outputs;
//! * each peer gets a writer task holding one outbound libp2p stream
//!   (`/plexus/mesh/1`, over TCP + Noise + Yamux, or QUIC) onto which the driver
//!   appends length-delimited codec frames in batches;
//! * each inbound stream gets a reader task that reassembles and decodes frames
//!   (malformed ones are counted and dropped) and hands them to the driver in batches;
//! * libp2p's own behaviours are transport plumbing: `allow_block_list` refuses
//!   connections from peers not on the allowlist, `identify` learns addresses, `ping`
//!   keeps connections alive, and gossipsub spreads signed allowlist updates (which the
//!   `Admission` core accepts or refuses).
//!
//! # Bounds
//!
//! * Per-peer outbound user traffic is admitted through a gate of `peer_window`
//!   frames (the core's window is twice that, leaving room for replies); at the bound
//!   `try_tell` returns `MailboxFull` and `tell` waits for acks.
//! * Inbound batches queue in a channel of `INBOUND_BATCHES_MAX`; a full channel stops
//!   the readers, and backpressure reaches the sender through the transport.
//! * An inbound message whose target mailbox is full waits up to
//!   `remote_enqueue_wait`, holding back later frames from the same peer (at most
//!   `HELD_FRAMES_MAX`; more are dropped and will be retransmitted), then is refused
//!   with `MailboxFull`.
//! * Control frames for a peer whose stream is not open yet are buffered up to
//!   `CONTROL_BUFFER_BYTES_MAX`, then dropped (membership tolerates loss).
//! * Pending asks are swept once a second when their asker has given up.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod keystore;
mod task;

pub use keystore::{
    KeyStoreError, NODE_KEY_FILE, create_private_dir, load_or_create_node_key, read_key,
    write_atomic, write_new_key,
};
pub use task::{
    MemberView, Mesh, MeshConfig, MeshError, MeshEvent, MeshStats, PROTOCOL_NAME, node_id_of,
    peer_id_of,
};
