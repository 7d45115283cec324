//! Errors of the actor runtime, grouped by who is at fault.

use std::fmt;

/// What an actor's own code returns when it gives up. Returning it from
/// `started` fails the spawn; from `handle` it fails the actor (its supervisor decides
/// what happens next), exactly like a panic.
pub type ActorError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a message was not accepted. The message comes back inside, so the caller can
/// retry or reroute it without losing it.
#[non_exhaustive]
pub enum SendError<M> {
    /// The receiver's mailbox (or, for a remote actor, the outbound queue to its
    /// node) is at capacity. Back off and retry, or use the awaiting `tell`.
    MailboxFull(M),
    /// The actor is not running.
    Stopped(M),
    /// The actor's node cannot be reached, or the ref is not bound to a node.
    Unreachable(M),
    /// The message could not be encoded for the wire (a bug in its serde impl).
    Unencodable(M),
    /// The encoded message is over the bound of the link to the actor's node
    /// (the mesh's `message_bytes_max`, 64 MiB by default).
    TooLarge(M),
}

impl<M> SendError<M> {
    /// Takes the message back.
    pub fn into_inner(self) -> M {
        match self {
            SendError::MailboxFull(m)
            | SendError::Stopped(m)
            | SendError::Unreachable(m)
            | SendError::Unencodable(m)
            | SendError::TooLarge(m) => m,
        }
    }

    /// The kind of failure, without the message.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::MailboxFull(_) => "mailbox full",
            SendError::Stopped(_) => "actor stopped",
            SendError::Unreachable(_) => "unreachable",
            SendError::Unencodable(_) => "message does not encode",
            SendError::TooLarge(_) => "message over the link's size bound",
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendError({})", self.kind())
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message not sent: {}", self.kind())
    }
}

impl<M> std::error::Error for SendError<M> {}

/// Why an `ask` produced no reply.
#[non_exhaustive]
pub enum AskError<M> {
    /// The request never left: the message is handed back.
    NotSent(SendError<M>),
    /// No reply within the timeout. The request may or may not have been handled.
    Timeout,
    /// The actor failed (error or panic) while handling the request, or stopped
    /// before replying.
    Failed(String),
    /// The actor's node became unreachable after the request was sent.
    Unreachable,
    /// The receiving node refused the request (unknown actor, wrong message type,
    /// local-only actor), or its reply did not decode here
    /// ([`Failure::Malformed`](crate::envelope::Failure::Malformed)): the failure says
    /// which.
    Rejected(crate::envelope::Failure),
    /// The remote actor's mailbox was full when the request arrived.
    MailboxFull,
}

impl<M> AskError<M> {
    /// The kind of failure.
    pub fn kind(&self) -> String {
        match self {
            AskError::NotSent(e) => format!("not sent: {}", e.kind()),
            AskError::Timeout => "timed out".into(),
            AskError::Failed(why) => format!("actor failed: {why}"),
            AskError::Unreachable => "unreachable".into(),
            AskError::Rejected(why) => format!("rejected: {why}"),
            AskError::MailboxFull => "remote mailbox full".into(),
        }
    }
}

impl<M> fmt::Debug for AskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AskError({})", self.kind())
    }
}

impl<M> fmt::Display for AskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ask failed: {}", self.kind())
    }
}

impl<M> std::error::Error for AskError<M> {}

impl<M> AskError<M> {
    /// Maps a remote failure to the ask error an asker sees.
    pub fn from_failure(failure: crate::envelope::Failure) -> Self {
        use crate::envelope::Failure as F;
        match failure {
            F::MailboxFull => AskError::MailboxFull,
            F::Failed(why) => AskError::Failed(why),
            F::Unreachable => AskError::Unreachable,
            F::TimedOut => AskError::Timeout,
            other => AskError::Rejected(other),
        }
    }
}

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The actor's `started` returned an error or panicked (actor's fault).
    #[error("actor failed to start: {0}")]
    StartFailed(String),
    /// No kind of that name is registered (caller's fault).
    #[error("unknown actor kind `{kind}` (known: {known})")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The registered kinds, comma separated.
        known: String,
    },
    /// The kind's factory refused the config (caller's fault).
    #[error("invalid config for kind `{kind}`: {reason}")]
    InvalidConfig {
        /// The kind.
        kind: String,
        /// Why the factory refused.
        reason: String,
    },
    /// The requested name is already registered on this node (caller's fault).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An actor with this id is already running on this node (caller's fault).
    #[error("actor {0} is already running here")]
    AlreadyRunning(crate::ActorId),
    /// The node is shutting down and takes no new actors.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Errors of the local name registry. The caller is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name belongs to another actor.
    #[error("the name `{name}` is taken by {holder:?}")]
    NameTaken {
        /// The name.
        name: String,
        /// Who holds it.
        holder: crate::ActorId,
    },
    /// The actor is not running on this node.
    #[error("no actor {0:?} on this node")]
    NoSuchActor(crate::ActorId),
    /// The name is empty or longer than [`crate::runtime::NAME_BYTES_MAX`].
    #[error("invalid name `{0}`")]
    InvalidName(String),
}

/// Why a lookup by id failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No such actor runs on this node.
    #[error("no actor {0:?} on this node")]
    NotFound(crate::ActorId),
    /// The actor exists but takes another message type.
    #[error("actor {id:?} takes `{actual}`, not `{requested}`")]
    WrongType {
        /// The actor.
        id: crate::ActorId,
        /// Its message type.
        actual: &'static str,
        /// The type asked for.
        requested: &'static str,
    },
}
