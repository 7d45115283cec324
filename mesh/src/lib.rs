//! # plexus-mesh: the cluster
//!
//! Nodes are run by identified operators and talk peer to peer; there is no broker.
//!
//! Cores (always compiled, sans-IO):
//! * [`admitted`]: the allowlist's nodes as the cores check senders against them
//!   (shared and hashed);
//! * [`allowlist`]: the governance-signed allowlist, the rules for updating it and
//!   when to gossip it;
//! * [`broadcast`]: the piggyback queue for epidemic dissemination;
//! * [`membership`]: SWIM membership and failure detection with incarnations;
//! * [`registry`]: the cluster name registry, a convergent CRDT, a full replica on
//!   every node or sharded over owners;
//! * [`owners`]: which nodes own a name when the registry is sharded (rendezvous
//!   hashing over the live view);
//! * [`delivery`]: reliable, ordered, acknowledged links for actor traffic, and the
//!   window that is their flow control;
//! * [`asks`]: ask correlation (every ask gets exactly one answer);
//! * [`sig`]: signature bytes, shared between a view, its gossip and its frames;
//! * `table`: entries found by key with one hash probe and walked in key order
//!   (membership's members, the registry's names);
//! * [`wire`]: the frames on a mesh stream and their (fuzzed) decoder;
//! * [`cluster`]: one node's mesh state machine composing the above, the single
//!   object both the libp2p driver and the simulator drive.
//!
//! The driver (feature `runtime`) adapts them to libp2p and tokio.

pub mod admitted;
pub mod allowlist;
pub mod asks;
pub mod broadcast;
pub mod cluster;
pub mod delivery;
pub mod membership;
pub mod owners;
pub mod registry;
mod shuffle;
pub mod sig;
mod table;
pub mod wire;

#[cfg(feature = "runtime")]
pub mod driver;
