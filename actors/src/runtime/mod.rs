//! The actor runtime: typed actors hosted on ractor, with bounded mailboxes, a
//! per-node registry and process groups, and kinds spawnable by name.
//!
//! This is driver code: it runs on tokio through ractor. Decisions that must also run
//! in the simulator do not live here (see `docs/ARCHITECTURE.md`).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod actor;
mod actor_ref;
mod errors;
mod kinds;
mod mailbox;
mod message;
mod remote;
mod system;

pub use actor::{Actor, Context, Reply};
pub use actor_ref::ActorRef;
pub use errors::{ActorError, AskError, LookupError, RegistryError, SendError, SpawnError};
pub use kinds::{KindArgs, KindFactory, Kinds};
pub use mailbox::{Exit, MAILBOX_CAPACITY_DEFAULT};
pub use message::{Message, ProtocolBytes, Wire};
pub use remote::{
    DeliverError, LinkError, Origin, Outgoing, PendingDelivery, RemoteLink, RemoteReply,
    decode_sender, with_decode_context, with_decode_sender,
};
pub use system::{
    ASK_TIMEOUT_DEFAULT, ActorInfo, ActorSystem, NAME_BYTES_MAX, RESERVED_LOCAL_IDS, SpawnOptions,
    SystemConfig,
};
