//! The seam between the actor runtime and the mesh.
//!
//! The runtime knows nothing about libp2p. A node that joins a mesh installs a
//! [`RemoteLink`] in its [`ActorSystem`]; from then on refs to actors elsewhere route
//! through it, and the mesh driver hands inbound traffic to
//! [`ActorSystem::try_deliver_remote`].
//!
//! Refs inside messages: an [`ActorRef`] encodes as its [`ActorId`]. When a message is
//! decoded on a node, the decoder runs inside [`with_decode_context`], so every ref in
//! it is bound to that node's system: local if the actor is there, remote otherwise.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::oneshot;

use super::actor_ref::ActorRef;
use super::mailbox::{Envelope, LocalMailbox, MailboxShared, ReplyTo};
use super::message::{Message, Wire};
use super::system::{ActorSystem, WeakSystem};
use crate::codec::Bytes;
use crate::envelope::{Failure, TraceContext};
use crate::{ActorId, NodeId};

/// A message on its way to an actor on another node.
pub struct Outgoing {
    /// The receiving actor.
    pub target: ActorId,
    /// Its message type's wire name.
    pub message_type: &'static str,
    /// The encoded message (shared: the driver copies it once, into its frame).
    pub payload: Bytes,
    /// For an ask: where the encoded reply (or the failure) goes.
    pub reply: Option<oneshot::Sender<Result<Vec<u8>, Failure>>>,
    /// For an ask: how long the asker waits. The link answers
    /// [`Failure::TimedOut`] once this has passed since it took the ask; `None`
    /// leaves the deadline to the link's own bound. Ignored for a tell.
    pub timeout: Option<Duration>,
    /// The sender's trace context.
    pub trace: Option<TraceContext>,
}

/// Why the link did not take a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The outbound window to that node is full; retry after acks arrive.
    WindowFull,
    /// The node is unknown, down, or the link is shut.
    Unreachable,
    /// The encoded message is over the link's size bound (the sender's mistake;
    /// retrying does not help).
    TooLarge,
}

/// How an actor system reaches other nodes. Implemented by the mesh driver.
pub trait RemoteLink: Send + Sync + 'static {
    /// The node believed to host `id` now.
    fn locate(&self, id: ActorId) -> NodeId;

    /// Where a cluster-wide name resolves.
    fn lookup_name(&self, name: &str) -> Option<(NodeId, ActorId)>;

    /// Queues without waiting. The message is dropped on failure; callers keep
    /// their own copy (refs encode by reference, so the typed message survives).
    fn try_send(&self, node: NodeId, out: Outgoing) -> Result<(), LinkError>;

    /// Queues, waiting for window space; fails only if the node is unreachable.
    fn send(
        self: Arc<Self>,
        node: NodeId,
        out: Outgoing,
    ) -> BoxFuture<'static, Result<(), LinkError>>;
}

/// Sends a remote reply. Called at most once; if dropped uncalled (the actor died
/// before answering) it reports a failure instead, so the asker is never left waiting.
type ReplySender = Box<dyn FnOnce(Result<Vec<u8>, Failure>) + Send>;

pub struct RemoteReply {
    send: Option<ReplySender>,
}

impl RemoteReply {
    /// Wraps the function that routes the encoded reply back.
    pub fn new(send: impl FnOnce(Result<Vec<u8>, Failure>) + Send + 'static) -> Self {
        Self {
            send: Some(Box::new(send)),
        }
    }

    /// Sends the reply.
    pub fn send(mut self, result: Result<Vec<u8>, Failure>) {
        if let Some(f) = self.send.take() {
            f(result);
        }
    }
}

impl Drop for RemoteReply {
    fn drop(&mut self) {
        if let Some(f) = self.send.take() {
            f(Err(Failure::Failed(
                "the actor stopped before replying".into(),
            )));
        }
    }
}

type WaitFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// A delivery that found the mailbox full; await it to wait for space.
pub struct PendingDelivery {
    wait: Box<dyn FnOnce(Duration) -> WaitFuture + Send>,
}

impl PendingDelivery {
    /// Waits up to `limit` for mailbox space; `MailboxFull` if none came.
    pub async fn wait(self, limit: Duration) -> Result<(), Failure> {
        (self.wait)(limit).await
    }
}

/// Why an inbound remote message was not enqueued at once. A refusal has already been
/// sent through the message's reply, if it was an ask.
#[non_exhaustive]
pub enum DeliverError {
    /// Refused for good.
    Refused(Failure),
    /// The mailbox is full; the message waits inside.
    Full(PendingDelivery),
}

/// The type-erased receiving end of a local actor: its typed mailbox, for lookups
/// by type, and, when its message type has a wire form, delivery of encoded
/// messages from other nodes. One allocation per actor serves both.
pub(crate) trait Inbox: Send + Sync {
    /// The actor's `LocalMailbox<M>`.
    fn mailbox_any(&self) -> &dyn std::any::Any;
    /// The counters its refs share with it.
    fn shared(&self) -> &Arc<MailboxShared>;
    /// `M`'s Rust name and type id.
    fn rust_type(&self) -> (&'static str, std::any::TypeId);
    /// The message type's wire name; `None` if the type has no wire form.
    fn message_type(&self) -> Option<&'static str>;
    fn try_deliver(
        &self,
        system: &ActorSystem,
        from: NodeId,
        payload: &Bytes,
        reply: Option<RemoteReply>,
    ) -> Result<(), DeliverError>;
}

pub(crate) struct TypedInbox<M: Message> {
    pub(crate) mailbox: LocalMailbox<M>,
    pub(crate) wire: Option<Wire<M>>,
}

impl<M: Message> Inbox for TypedInbox<M> {
    fn mailbox_any(&self) -> &dyn std::any::Any {
        &self.mailbox
    }

    fn shared(&self) -> &Arc<MailboxShared> {
        &self.mailbox.shared
    }

    fn rust_type(&self) -> (&'static str, std::any::TypeId) {
        (std::any::type_name::<M>(), std::any::TypeId::of::<M>())
    }

    fn message_type(&self) -> Option<&'static str> {
        self.wire.map(|wire| (wire.type_name)())
    }

    fn try_deliver(
        &self,
        system: &ActorSystem,
        from: NodeId,
        payload: &Bytes,
        reply: Option<RemoteReply>,
    ) -> Result<(), DeliverError> {
        let Some(wire) = self.wire else {
            let failure = Failure::Rejected(format!(
                "`{}` has no wire form; the actor is local-only",
                std::any::type_name::<M>()
            ));
            if let Some(reply) = reply {
                reply.send(Err(failure.clone()));
            }
            return Err(DeliverError::Refused(failure));
        };
        let decode = || with_decode_sender(from, || (wire.decode)(payload));
        let msg = match with_decode_context(system, decode) {
            Ok(msg) => msg,
            Err(e) => {
                let failure = Failure::Malformed(e.to_string());
                if let Some(reply) = reply {
                    reply.send(Err(failure.clone()));
                }
                return Err(DeliverError::Refused(failure));
            }
        };
        let reply = reply.map(|r| {
            let encode = wire.encode_reply;
            ReplyTo::Remote(Box::new(move |result: Result<M::Reply, String>| {
                let encoded = result.map_err(Failure::Failed).and_then(|value| {
                    encode(&value)
                        .map_err(|e| Failure::Failed(format!("reply does not encode: {e}")))
                });
                r.send(encoded);
            }))
        });
        match self.mailbox.try_send(Envelope { msg, reply }) {
            Ok(()) => Ok(()),
            Err(super::errors::SendError::MailboxFull(env)) => {
                let mailbox = self.mailbox.clone();
                Err(DeliverError::Full(PendingDelivery {
                    wait: Box::new(move |limit| {
                        Box::pin(async move {
                            // Hand on a batch, not a message, when room comes (see
                            // `mailbox`): wait for half the mailbox to drain first.
                            let send = async {
                                mailbox.shared.drained().await;
                                mailbox.send(env).await
                            };
                            match tokio::time::timeout(limit, send).await {
                                Ok(Ok(())) => Ok(()),
                                Ok(Err(_)) => Err(Failure::NoSuchActor),
                                Err(_) => Err(Failure::MailboxFull),
                            }
                        })
                    }),
                }))
            }
            Err(_) => Err(DeliverError::Refused(Failure::NoSuchActor)),
        }
    }
}

thread_local! {
    static DECODE_SYSTEM: RefCell<Option<WeakSystem>> = const { RefCell::new(None) };
    static DECODE_SENDER: RefCell<Option<NodeId>> = const { RefCell::new(None) };
}

/// Runs `f` (a decode) knowing that the message came from node `from`, as the
/// transport authenticated it; a decoder reads it with [`decode_sender`].
pub fn with_decode_sender<R>(from: NodeId, f: impl FnOnce() -> R) -> R {
    crate::scoped::with_slot(&DECODE_SENDER, from, f)
}

/// Inside a decoder of a message from another node: the node it came from, as the
/// transport authenticated it (never a field of the message). `None` outside
/// [`ActorSystem::try_deliver_remote`]. Decoders of protocol messages pass it on,
/// so the protocol's core can check the sender may say what it says.
pub fn decode_sender() -> Option<NodeId> {
    DECODE_SENDER.with(|slot| *slot.borrow())
}

/// The node a message came from, for a message that needs to know who asks (the
/// node agent: may this node stop that actor?).
///
/// It never travels: it encodes as nothing, and decodes as the sender the
/// transport authenticated (the peer's Noise key), so a peer cannot claim to be
/// another. A message built in this process says [`Origin::local`]: code in the
/// process is trusted, peers are not. Decoding one outside a remote delivery
/// fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin(NodeId);

impl Origin {
    /// A message from this node.
    pub fn local(system: &ActorSystem) -> Origin {
        Origin(system.node_id())
    }

    /// The sending node.
    pub fn node(self) -> NodeId {
        self.0
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <()>::deserialize(deserializer)?;
        decode_sender()
            .map(Origin)
            .ok_or_else(|| serde::de::Error::custom("no authenticated sender for this message"))
    }
}

/// Runs `f` (a decode) with `system` as the place refs inside bind to.
pub fn with_decode_context<R>(system: &ActorSystem, f: impl FnOnce() -> R) -> R {
    crate::scoped::with_slot(&DECODE_SYSTEM, system.downgrade(), f)
}

fn decode_system() -> Option<ActorSystem> {
    DECODE_SYSTEM.with(|slot| slot.borrow().as_ref().and_then(WeakSystem::upgrade))
}

impl<M: Message> Serialize for ActorRef<M> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.id().serialize(serializer)
    }
}

impl<'de, M: Message> Deserialize<'de> for ActorRef<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = ActorId::deserialize(deserializer)?;
        Ok(match decode_system() {
            Some(system) => system.resolve(id),
            None => ActorRef::unbound(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decode_sender_is_set_only_inside_and_restored() {
        assert_eq!(decode_sender(), None);
        let (a, b) = (NodeId::synthetic(1), NodeId::synthetic(2));
        with_decode_sender(a, || {
            assert_eq!(decode_sender(), Some(a));
            with_decode_sender(b, || assert_eq!(decode_sender(), Some(b)));
            assert_eq!(decode_sender(), Some(a));
        });
        assert_eq!(decode_sender(), None);
    }
}
