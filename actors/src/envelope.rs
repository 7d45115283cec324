//! Plain types shared by the actor runtime and the mesh wire format: why a remote
//! delivery failed, and the trace context that travels with a message.

use serde::{Deserialize, Serialize};

/// Why a message to a remote actor was not delivered, or an ask not answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// No actor with that id runs on the receiving node.
    #[error("no such actor")]
    NoSuchActor,
    /// The actor takes another message type.
    #[error("wrong message type: actor takes `{expected}`, got `{got}`")]
    WrongType {
        /// What the actor takes.
        expected: String,
        /// What was sent.
        got: String,
    },
    /// The payload did not decode.
    #[error("payload does not decode: {0}")]
    Malformed(String),
    /// The actor's mailbox stayed full.
    #[error("mailbox full")]
    MailboxFull,
    /// The actor failed while handling the request, or stopped before replying.
    #[error("actor failed: {0}")]
    Failed(String),
    /// The receiver refused for another reason (the actor is local-only, say).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The node hosting the actor is unreachable or was declared dead.
    #[error("unreachable")]
    Unreachable,
    /// No answer came before the ask's deadline. The asking node's own mesh core
    /// decides this; a correct node never sends it. The request may or may not have
    /// been handled.
    #[error("timed out")]
    TimedOut,
}

/// W3C trace context carried with a message, so a request that crosses nodes stays
/// one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The sending span's id.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}
