//! The actor trait users implement, its context, and the ractor adapter that hosts it.

use std::future::Future;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, OnceLock};

use tracing::Instrument;

use super::actor_ref::ActorRef;
use super::errors::ActorError;
use super::mailbox::{Envelope, LocalMailbox, MailboxShared};
use super::message::Message;
use super::system::ActorSystem;
use crate::ActorId;

/// The reply type of an actor's message.
pub type Reply<A> = <<A as Actor>::Msg as Message>::Reply;

/// A typed actor: behaviour in `self`, state in `State`.
///
/// Lifecycle: [`Actor::started`] builds the state from the spawn arguments; then
/// [`Actor::handle`] runs once per message, one at a time, in mailbox order; then
/// [`Actor::stopped`] runs when the actor is stopped (not after a failure).
/// An error from `started` fails the spawn. An error or panic in `handle` fails the
/// actor: the asker (if any) gets [`super::AskError::Failed`] and the supervisor (if
/// any) decides whether to restart it, with fresh state from `started`.
pub trait Actor: Send + Sync + Sized + 'static {
    /// What the actor accepts.
    type Msg: Message;
    /// What the actor keeps between messages.
    type State: Send + 'static;
    /// What `started` needs to build the state.
    type Args: Send + 'static;

    /// Builds the initial state.
    fn started(
        &self,
        ctx: &Context<Self::Msg>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::State, ActorError>> + Send;

    /// Handles one message and returns its reply.
    fn handle(
        &self,
        ctx: &Context<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<Reply<Self>, ActorError>> + Send;

    /// Runs after a requested or self-initiated stop.
    fn stopped(
        &self,
        ctx: &Context<Self::Msg>,
        state: &mut Self::State,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, state);
        async {}
    }
}

/// What an actor knows about itself and its node while it runs.
pub struct Context<M: Message> {
    myself: ActorRef<M>,
    system: ActorSystem,
    cell: ractor::ActorCell,
}

impl<M: Message> Context<M> {
    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.myself.id()
    }

    /// A ref to this actor, to hand to others.
    pub fn myself(&self) -> &ActorRef<M> {
        &self.myself
    }

    /// The node-local actor system this actor runs in.
    pub fn system(&self) -> &ActorSystem {
        &self.system
    }

    /// Stops this actor after the current message; `stopped` then runs.
    pub fn stop(&self) {
        self.cell.stop(None);
    }
}

/// The ractor actor that hosts a Plexus actor: one pointer, because ractor moves
/// its actor value through every layer of a spawn (a spawn's cost grew with its
/// size), and the parts live behind it in one allocation.
pub(crate) struct Host<A: Actor>(pub(crate) Box<HostParts<A>>);

pub(crate) struct HostParts<A: Actor> {
    pub(crate) actor: A,
    pub(crate) id: ActorId,
    /// This incarnation's number in the node's table.
    pub(crate) incarnation: u64,
    pub(crate) shared: Arc<MailboxShared>,
    pub(crate) system: ActorSystem,
    pub(crate) span: tracing::Span,
    /// Set once, by `pre_start`, before any message is handled. It lives here rather
    /// than in ractor's state so that the state ractor moves (and boxes at the end)
    /// is only the user's.
    pub(crate) ctx: OnceLock<Context<A::Msg>>,
}

/// Removes the actor from the node's table and publishes its exit when the host is
/// dropped, which ractor does when the actor's task ends, however it ends.
impl<A: Actor> Drop for HostParts<A> {
    fn drop(&mut self) {
        self.system.forget(self.id, self.incarnation);
        self.shared.close();
    }
}

impl<A: Actor> ractor::Actor for Host<A> {
    type Msg = Envelope<A::Msg>;
    type State = A::State;
    type Arguments = A::Args;

    async fn pre_start(
        &self,
        myself: ractor::ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        let host = &self.0;
        let cell = myself.get_cell();
        let mailbox = LocalMailbox {
            inner: myself,
            shared: host.shared.clone(),
        };
        let ctx = host.ctx.get_or_init(|| Context {
            myself: ActorRef::local(host.id, mailbox, Some(host.system.downgrade())),
            system: host.system.clone(),
            cell,
        });
        let state = host
            .actor
            .started(ctx, args)
            .instrument(host.span.clone())
            .await?;
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        env: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let host = &self.0;
        host.shared.dequeued();
        let Envelope { msg, reply } = env;
        let Some(ctx) = host.ctx.get() else {
            // ractor runs `pre_start` to completion before any message.
            let why = "handled a message before it started".to_string();
            if let Some(reply) = reply {
                reply.send(Err(why.clone()));
            }
            return Err(why.into());
        };
        let span = tracing::debug_span!(parent: &host.span, "handle");
        match host.actor.handle(ctx, msg, state).instrument(span).await {
            Ok(value) => {
                if let Some(reply) = reply {
                    reply.send(Ok(value));
                }
                Ok(())
            }
            Err(err) => {
                let why = err.to_string();
                if let Ok(mut failure) = host.shared.failure.lock() {
                    *failure = Some(why.clone());
                }
                if let Some(reply) = reply {
                    reply.send(Err(why));
                }
                Err(err)
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let host = &self.0;
        if let Some(ctx) = host.ctx.get() {
            host.actor
                .stopped(ctx, state)
                .instrument(host.span.clone())
                .await;
        }
        host.shared.stopped_normally.store(true, SeqCst);
        Ok(())
    }
}
