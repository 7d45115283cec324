//! # plexus-mesh: the cluster
//!
//! Nodes are run by identified operators and talk peer to peer; there is no broker.
//!
//! Cores (always compiled, sans-IO):
//! * [`identity`]: ed25519 keys and domain-separated signatures;
//! * [`allowlist`]: the governance-signed allowlist and the rules for updating it;
//! * [`resources`]: resources and tags nodes declare and advertise;
//! * [`broadcast`]: the piggyback queue for epidemic dissemination;
//! * [`membership`]: SWIM membership and failure detection with incarnations;
//!
//! The driver (feature `runtime`) adapts them to libp2p and tokio.

pub mod allowlist;
pub mod broadcast;
pub mod identity;
pub mod membership;
pub mod resources;
