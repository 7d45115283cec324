//! [`ActorRef`]: the handle through which everyone talks to an actor.

use std::fmt;
use std::time::Duration;

use tokio::sync::oneshot;

use super::errors::{AskError, SendError};
use super::mailbox::{Envelope, Exit, LocalMailbox, ReplyTo};
use super::message::Message;
use super::system::WeakSystem;
use crate::ActorId;

/// A handle to an actor. Cheap to clone. The same methods work wherever the actor
/// runs; delivery errors are typed ([`SendError`], [`AskError`]) and a message that
/// was not accepted is handed back.
///
/// A ref names the actor by its stable [`ActorId`]. If the actor was restarted by
/// its supervisor (same id, new incarnation), a send through an old ref finds the new
/// incarnation through the node's table.
pub struct ActorRef<M: Message> {
    id: ActorId,
    route: Route<M>,
    system: Option<WeakSystem>,
}

pub(crate) enum Route<M: Message> {
    Local(LocalMailbox<M>),
    /// Known by id only (e.g. decoded without a node to bind to).
    Unbound,
}

impl<M: Message> Clone for ActorRef<M> {
    fn clone(&self) -> Self {
        let route = match &self.route {
            Route::Local(m) => Route::Local(m.clone()),
            Route::Unbound => Route::Unbound,
        };
        Self {
            id: self.id,
            route,
            system: self.system.clone(),
        }
    }
}

impl<M: Message> fmt::Debug for ActorRef<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let where_ = match self.route {
            Route::Local(_) => "local",
            Route::Unbound => "unbound",
        };
        write!(f, "ActorRef({:?}, {where_})", self.id)
    }
}

impl<M: Message> ActorRef<M> {
    pub(crate) fn local(id: ActorId, mailbox: LocalMailbox<M>, system: Option<WeakSystem>) -> Self {
        Self {
            id,
            route: Route::Local(mailbox),
            system,
        }
    }

    /// A ref that knows only the id; every send fails with `Unreachable` until the
    /// mesh can bind it.
    pub fn unbound(id: ActorId) -> Self {
        Self {
            id,
            route: Route::Unbound,
            system: None,
        }
    }

    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.id
    }

    /// Whether the actor runs in this process.
    pub fn is_local(&self) -> bool {
        matches!(self.route, Route::Local(_))
    }

    /// Messages waiting in the mailbox, for a local actor.
    pub fn mailbox_depth(&self) -> Option<usize> {
        match &self.route {
            Route::Local(m) => Some(m.shared.depth()),
            Route::Unbound => None,
        }
    }

    /// The mailbox capacity, for a local actor.
    pub fn mailbox_capacity(&self) -> Option<usize> {
        match &self.route {
            Route::Local(m) => Some(m.shared.capacity()),
            Route::Unbound => None,
        }
    }

    /// The ractor cell of a local actor, for drivers that link supervisors.
    pub fn ractor_cell(&self) -> Option<ractor::ActorCell> {
        match &self.route {
            Route::Local(m) => Some(m.inner.get_cell()),
            Route::Unbound => None,
        }
    }

    /// The current incarnation's mailbox if this ref's is gone (supervised restart).
    fn reincarnated(&self) -> Option<LocalMailbox<M>> {
        let system = self.system.as_ref()?.upgrade()?;
        let Route::Local(old) = &self.route else {
            return None;
        };
        let fresh = system.local_mailbox::<M>(self.id).ok()?;
        (!std::sync::Arc::ptr_eq(&fresh.shared, &old.shared)).then_some(fresh)
    }

    /// Enqueues without waiting. Fails with `MailboxFull` if the mailbox is at capacity.
    #[inline]
    pub fn try_tell(&self, msg: M) -> Result<(), SendError<M>> {
        match &self.route {
            Route::Local(mailbox) => match mailbox.try_send(Envelope { msg, reply: None }) {
                Ok(()) => Ok(()),
                Err(SendError::Stopped(env)) => match self.reincarnated() {
                    Some(fresh) => fresh.try_send(env).map_err(|e| map_env(e)),
                    None => Err(SendError::Stopped(env.msg)),
                },
                Err(e) => Err(map_env(e)),
            },
            Route::Unbound => Err(SendError::Unreachable(msg)),
        }
    }

    /// Enqueues, waiting for mailbox space if needed (backpressure). Fails only if the
    /// actor is gone or unreachable. Wrap it in a timeout to bound the wait.
    pub async fn tell(&self, msg: M) -> Result<(), SendError<M>> {
        self.send_envelope(Envelope { msg, reply: None })
            .await
            .map_err(map_env)
    }

    async fn send_envelope(&self, env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        match &self.route {
            Route::Local(mailbox) => match mailbox.send(env).await {
                Err(SendError::Stopped(env)) => match self.reincarnated() {
                    Some(fresh) => fresh.send(env).await,
                    None => Err(SendError::Stopped(env)),
                },
                other => other,
            },
            Route::Unbound => Err(SendError::Unreachable(env)),
        }
    }

    /// Sends a request and waits for the reply, within the node's default ask timeout.
    pub async fn ask(&self, msg: M) -> Result<M::Reply, AskError<M>> {
        let timeout = self
            .system
            .as_ref()
            .and_then(WeakSystem::upgrade)
            .map(|s| s.config().ask_timeout)
            .unwrap_or(super::system::ASK_TIMEOUT_DEFAULT);
        self.ask_timeout(msg, timeout).await
    }

    /// Sends a request and waits at most `timeout` (queueing included) for the reply.
    pub async fn ask_timeout(&self, msg: M, timeout: Duration) -> Result<M::Reply, AskError<M>> {
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            msg,
            reply: Some(ReplyTo::Local(tx)),
        };
        let exchange = async {
            self.send_envelope(env)
                .await
                .map_err(|e| AskError::NotSent(map_env(e)))?;
            match rx.await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(why)) => Err(AskError::Failed(why)),
                Err(_) => Err(AskError::Failed("stopped before replying".into())),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(AskError::Timeout),
        }
    }

    /// Asks the actor to stop after its current message.
    pub fn stop(&self) {
        if let Route::Local(m) = &self.route {
            m.inner.stop(None);
        }
    }

    /// Waits until this incarnation of a local actor has ended, and says how.
    /// Returns at once with `Exit::Normal` for a non-local ref.
    pub async fn wait_exit(&self) -> Exit {
        let Route::Local(m) = &self.route else {
            return Exit::Normal;
        };
        let mut rx = m.shared.subscribe_exit();
        loop {
            if let Some(exit) = rx.borrow_and_update().clone() {
                return exit;
            }
            if rx.changed().await.is_err() {
                return Exit::Failed("exit channel closed".into());
            }
        }
    }
}

fn map_env<M: Message>(e: SendError<Envelope<M>>) -> SendError<M> {
    match e {
        SendError::MailboxFull(env) => SendError::MailboxFull(env.msg),
        SendError::Stopped(env) => SendError::Stopped(env.msg),
        SendError::Unreachable(env) => SendError::Unreachable(env.msg),
    }
}
