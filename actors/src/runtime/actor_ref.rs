//! [`ActorRef`]: the handle through which everyone talks to an actor, wherever it runs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::errors::{AskError, SendError};
use super::mailbox::{Envelope, Exit, LocalMailbox, ReplyTo};
use super::message::{Message, Wire};
use super::remote::{LinkError, Outgoing, RemoteLink, with_decode_context};
use super::system::WeakSystem;
use crate::envelope::Failure;
use crate::{ActorId, NodeId};

/// A handle to an actor. Cheap to clone. The same methods work whether the actor
/// runs in this process or on another node; delivery errors are typed ([`SendError`],
/// [`AskError`]) and a message that was not accepted is handed back.
///
/// A ref names the actor by its stable [`ActorId`]. If the actor was restarted by its
/// supervisor (same id, new incarnation), a send through an old ref finds the new
/// incarnation through the node's table. Refs serialize as their id and bind to the
/// receiving node when decoded there.
pub struct ActorRef<M: Message> {
    id: ActorId,
    route: Route<M>,
    system: Option<WeakSystem>,
}

pub(crate) enum Route<M: Message> {
    Local(LocalMailbox<M>),
    /// Shared, so a ref stays small (a ref is moved through every spawn and held in
    /// every context) and a clone is one count.
    Remote(Arc<RemoteRoute<M>>),
    /// Known by id only: sends look the actor up locally each time, and fail with
    /// `Unreachable` if it is not there.
    Unbound,
}

pub(crate) struct RemoteRoute<M: Message> {
    pub(crate) link: Arc<dyn RemoteLink>,
    pub(crate) node: NodeId,
    pub(crate) wire: Wire<M>,
}

impl<M: Message> Clone for ActorRef<M> {
    fn clone(&self) -> Self {
        let route = match &self.route {
            Route::Local(m) => Route::Local(m.clone()),
            Route::Remote(r) => Route::Remote(r.clone()),
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
        match &self.route {
            Route::Local(_) => write!(f, "ActorRef({:?}, local)", self.id),
            Route::Remote(r) => write!(f, "ActorRef({:?}, on {:?})", self.id, r.node),
            Route::Unbound => write!(f, "ActorRef({:?}, unbound)", self.id),
        }
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

    pub(crate) fn remote(id: ActorId, route: RemoteRoute<M>, system: Option<WeakSystem>) -> Self {
        Self {
            id,
            route: Route::Remote(Arc::new(route)),
            system,
        }
    }

    pub(crate) fn unbound_in(id: ActorId, system: Option<WeakSystem>) -> Self {
        Self {
            id,
            route: Route::Unbound,
            system,
        }
    }

    /// A ref that knows only the id and no node; every send fails with `Unreachable`.
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

    /// The node this ref sends to, if it is bound to one.
    pub fn node(&self) -> Option<NodeId> {
        match &self.route {
            Route::Local(_) => self
                .system
                .as_ref()
                .and_then(WeakSystem::upgrade)
                .map(|s| s.node_id()),
            Route::Remote(r) => Some(r.node),
            Route::Unbound => None,
        }
    }

    /// Messages waiting in the mailbox, for a local actor.
    pub fn mailbox_depth(&self) -> Option<usize> {
        match &self.route {
            Route::Local(m) => Some(m.shared.depth()),
            _ => None,
        }
    }

    /// The mailbox capacity, for a local actor.
    pub fn mailbox_capacity(&self) -> Option<usize> {
        match &self.route {
            Route::Local(m) => Some(m.shared.capacity()),
            _ => None,
        }
    }

    /// The ractor cell of a local actor, for drivers that link supervisors.
    pub fn ractor_cell(&self) -> Option<ractor::ActorCell> {
        match &self.route {
            Route::Local(m) => Some(m.inner.get_cell()),
            _ => None,
        }
    }

    /// The mailbox of the actor's current local incarnation, if it is not the one this
    /// ref holds (supervised restart) or this ref holds none.
    fn current_local(&self) -> Option<LocalMailbox<M>> {
        let system = self.system.as_ref()?.upgrade()?;
        let fresh = system.local_mailbox::<M>(self.id).ok()?;
        match &self.route {
            Route::Local(old) if Arc::ptr_eq(&fresh.shared, &old.shared) => None,
            _ => Some(fresh),
        }
    }

    fn outgoing(r: &RemoteRoute<M>, target: ActorId, msg: &M) -> Result<Outgoing, ()> {
        let payload = (r.wire.encode)(msg).map_err(|_| ())?;
        Ok(Outgoing {
            target,
            message_type: (r.wire.type_name)(),
            payload,
            reply: None,
            timeout: None,
            trace: None,
        })
    }

    /// Enqueues without waiting. Fails with `MailboxFull` if the mailbox (or, for a
    /// remote actor, the outbound window to its node) is at capacity.
    #[inline]
    pub fn try_tell(&self, msg: M) -> Result<(), SendError<M>> {
        match &self.route {
            Route::Local(mailbox) => match mailbox.try_send(Envelope { msg, reply: None }) {
                Ok(()) => Ok(()),
                Err(SendError::Stopped(env)) => match self.current_local() {
                    Some(fresh) => fresh.try_send(env).map_err(map_env),
                    None => Err(SendError::Stopped(env.msg)),
                },
                Err(e) => Err(map_env(e)),
            },
            Route::Remote(r) => {
                let Ok(out) = Self::outgoing(r, self.id, &msg) else {
                    return Err(SendError::Unencodable(msg));
                };
                match r.link.try_send(r.node, out) {
                    Ok(()) => Ok(()),
                    Err(LinkError::WindowFull) => Err(SendError::MailboxFull(msg)),
                    Err(LinkError::TooLarge) => Err(SendError::TooLarge(msg)),
                    Err(_) => Err(SendError::Unreachable(msg)),
                }
            }
            Route::Unbound => match self.current_local() {
                Some(fresh) => fresh
                    .try_send(Envelope { msg, reply: None })
                    .map_err(map_env),
                None => Err(SendError::Unreachable(msg)),
            },
        }
    }

    /// Enqueues, waiting for space if needed (backpressure). Fails only if the actor
    /// is gone or unreachable. Wrap it in a timeout to bound the wait.
    pub async fn tell(&self, msg: M) -> Result<(), SendError<M>> {
        match &self.route {
            Route::Remote(r) => {
                let Ok(out) = Self::outgoing(r, self.id, &msg) else {
                    return Err(SendError::Unencodable(msg));
                };
                match r.link.clone().send(r.node, out).await {
                    Ok(()) => Ok(()),
                    Err(LinkError::TooLarge) => Err(SendError::TooLarge(msg)),
                    Err(_) => Err(SendError::Unreachable(msg)),
                }
            }
            _ => self
                .send_local(Envelope { msg, reply: None })
                .await
                .map_err(map_env),
        }
    }

    async fn send_local(&self, env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        match &self.route {
            Route::Local(mailbox) => match mailbox.send(env).await {
                Err(SendError::Stopped(env)) => match self.current_local() {
                    Some(fresh) => fresh.send(env).await,
                    None => Err(SendError::Stopped(env)),
                },
                other => other,
            },
            _ => match self.current_local() {
                Some(fresh) => fresh.send(env).await,
                None => Err(SendError::Unreachable(env)),
            },
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
        match tokio::time::timeout(timeout, self.ask_inner(msg, timeout)).await {
            Ok(result) => result,
            Err(_) => Err(AskError::Timeout),
        }
    }

    async fn ask_inner(&self, msg: M, timeout: Duration) -> Result<M::Reply, AskError<M>> {
        if let Route::Remote(r) = &self.route {
            let Ok(mut out) = Self::outgoing(r, self.id, &msg) else {
                return Err(AskError::NotSent(SendError::Unencodable(msg)));
            };
            let (tx, rx) = oneshot::channel();
            out.reply = Some(tx);
            // The link's own deadline: it answers `TimedOut` after this, so a pending
            // ask never outlives its asker's patience for long.
            out.timeout = Some(timeout);
            match r.link.clone().send(r.node, out).await {
                Ok(()) => {}
                Err(LinkError::TooLarge) => {
                    return Err(AskError::NotSent(SendError::TooLarge(msg)));
                }
                Err(_) => return Err(AskError::NotSent(SendError::Unreachable(msg))),
            }
            return match rx.await {
                Ok(Ok(bytes)) => {
                    let system = self.system.as_ref().and_then(WeakSystem::upgrade);
                    let decode = || (r.wire.decode_reply)(&bytes);
                    let decoded = match &system {
                        Some(s) => with_decode_context(s, decode),
                        None => decode(),
                    };
                    decoded.map_err(|e| {
                        AskError::Rejected(Failure::Malformed(format!(
                            "reply does not decode: {e}"
                        )))
                    })
                }
                Ok(Err(failure)) => Err(AskError::from_failure(failure)),
                Err(_) => Err(AskError::from_failure(Failure::Unreachable)),
            };
        }
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            msg,
            reply: Some(ReplyTo::Local(tx)),
        };
        self.send_local(env)
            .await
            .map_err(|e| AskError::NotSent(map_env(e)))?;
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(why)) => Err(AskError::Failed(why)),
            Err(_) => Err(AskError::Failed("stopped before replying".into())),
        }
    }

    /// Asks a local actor to stop after its current message.
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
        m.shared.exited().await
    }
}

fn map_env<M: Message>(e: SendError<Envelope<M>>) -> SendError<M> {
    match e {
        SendError::MailboxFull(env) => SendError::MailboxFull(env.msg),
        SendError::Stopped(env) => SendError::Stopped(env.msg),
        SendError::Unreachable(env) => SendError::Unreachable(env.msg),
        SendError::Unencodable(env) => SendError::Unencodable(env.msg),
        SendError::TooLarge(env) => SendError::TooLarge(env.msg),
    }
}
