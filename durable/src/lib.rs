//! Durable actors: state that survives crashes and moves between nodes, with
//! exactly-once, per-sender-FIFO delivery.
//!
//! Every module is a sans-IO core: no clock, no sockets, no threads, no randomness.
//! The production driver (in the `plexus` crate) adapts them to ractor, libp2p and
//! rocksdb; the simulator (`plexus-sim`) drives the same code in virtual time.
//!
//! * [`types`]: keys, senders, ballots, replica sets, records.
//! * [`wire`]: the protocol messages.
//! * [`patch`]: commits as deltas of the record a replica holds.
//! * [`replica`]: a node's snapshot store rules (Paxos acceptor rules per key).
//! * [`stream`]: the sender side (numbering, windows, retransmission).
//! * [`activation`]: one hosted actor (restore, apply, commit, ack, migrate).
//! * [`node`]: a node's whole service (routing, forwarding, client sessions).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activation;
pub mod node;
pub mod patch;
pub mod replica;
pub mod stream;
pub mod types;
pub mod wire;

/// The local number of every node's durable service actor (the mesh routes
/// [`wire::DurableMsg`]s to `(node, SERVICE_LOCAL_ID)`).
pub const SERVICE_LOCAL_ID: u64 = 2;
/// The message type name durable messages travel under.
pub const MESSAGE_TYPE: &str = "plexus.durable";

/// The largest body of a record (the encoded [`activation::DurableState`]: the
/// actor's own state and its bookkeeping) a node writes, decodes or rebuilds
/// (48 MiB). A record crosses the mesh in chunks (the mesh's
/// `message_bytes_max`, 64 MiB by default, is above [`wire::MSG_BYTES_MAX`]),
/// so the 8 MiB frame bound does not limit it.
pub const STATE_BYTES_MAX: usize = 48 << 20;

pub use activation::{
    Activation, ActivationConfig, ActivationEvent, Applied, Deactivation, DurableState, Input,
    Output,
};
pub use node::{DurableNode, NodeConfig, NodeEvent};
pub use replica::{MemStore, Slot, SlotStore, StoreError};
pub use types::{Ballot, DurableKey, Record, ReplicaSet, SenderId, rendezvous};
pub use wire::{Command, DurableMsg, Envelope};
