//! The runtime's remote seam, exercised with an in-process link between two systems:
//! remote tell/ask, refs travelling inside messages, typed refusals. The libp2p
//! driver is tested end to end in the mesh crate; this isolates the runtime's half.

// Driver-level tests: they run on tokio like the drivers they test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use plexus_actors::codec::Bytes;
use plexus_actors::envelope::Failure;
use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, AskError, Context, DeliverError, LinkError, Message,
    Outgoing, RemoteLink, RemoteReply, SystemConfig, Wire,
};
use plexus_actors::{ActorId, NodeId};
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Loop {
    systems: Mutex<BTreeMap<NodeId, ActorSystem>>,
    names: Mutex<BTreeMap<String, (NodeId, ActorId)>>,
}

impl RemoteLink for Loop {
    fn locate(&self, id: ActorId) -> NodeId {
        id.origin
    }

    fn lookup_name(&self, name: &str) -> Option<(NodeId, ActorId)> {
        self.names.lock().unwrap().get(name).copied()
    }

    fn try_send(&self, node: NodeId, out: Outgoing) -> Result<(), LinkError> {
        let Some(system) = self.systems.lock().unwrap().get(&node).cloned() else {
            return Err(LinkError::Unreachable);
        };
        let Outgoing {
            target,
            message_type,
            payload,
            reply,
            ..
        } = out;
        let (reply_tx, remote_reply) = match reply {
            Some(tx) => {
                let tx = Arc::new(Mutex::new(Some(tx)));
                let tx2 = tx.clone();
                (
                    Some(tx),
                    Some(RemoteReply::new(move |r| {
                        if let Some(tx) = tx2.lock().unwrap().take() {
                            let _ = tx.send(r);
                        }
                    })),
                )
            }
            None => (None, None),
        };
        // This loopback link does not know the sending node; nothing here reads it.
        match system.try_deliver_remote(NodeId::ZERO, target, message_type, &payload, remote_reply)
        {
            Ok(()) => Ok(()),
            // A tell has nobody to tell; the real driver reports refusals in acks.
            Err(_) if reply_tx.is_none() => Ok(()),
            Err(err) => {
                let failure = match err {
                    DeliverError::Refused(f) => f,
                    _ => Failure::MailboxFull,
                };
                if let Some(tx) = reply_tx.and_then(|t| t.lock().unwrap().take()) {
                    let _ = tx.send(Err(failure));
                }
                Ok(())
            }
        }
    }

    fn send(
        self: Arc<Self>,
        node: NodeId,
        out: Outgoing,
    ) -> BoxFuture<'static, Result<(), LinkError>> {
        let result = self.try_send(node, out);
        Box::pin(async move { result })
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Cmd {
    Add(u64),
    Get,
    /// Tell `to` our count (a ref travelling inside a message).
    Report {
        to: ActorRef<Cmd>,
    },
}

impl Message for Cmd {
    type Reply = u64;
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

struct Counter;
impl Actor for Counter {
    type Msg = Cmd;
    type State = u64;
    type Args = u64;
    async fn started(&self, _: &Context<Cmd>, n: u64) -> Result<u64, ActorError> {
        Ok(n)
    }
    async fn handle(&self, _: &Context<Cmd>, msg: Cmd, n: &mut u64) -> Result<u64, ActorError> {
        match msg {
            Cmd::Add(k) => *n += k,
            Cmd::Get => {}
            Cmd::Report { to } => {
                to.tell(Cmd::Add(*n)).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(*n)
    }
}

/// A local-only message type (no wire form).
struct Secret;
impl Message for Secret {
    type Reply = ();
}
struct Vault;
impl Actor for Vault {
    type Msg = Secret;
    type State = ();
    type Args = ();
    async fn started(&self, _: &Context<Secret>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Context<Secret>, _: Secret, _: &mut ()) -> Result<(), ActorError> {
        Ok(())
    }
}

fn pair() -> (ActorSystem, ActorSystem, Arc<Loop>) {
    let link = Arc::new(Loop::default());
    let a = ActorSystem::new(SystemConfig::new(NodeId::synthetic(1)));
    let b = ActorSystem::new(SystemConfig::new(NodeId::synthetic(2)));
    link.systems.lock().unwrap().insert(a.node_id(), a.clone());
    link.systems.lock().unwrap().insert(b.node_id(), b.clone());
    a.set_remote(link.clone());
    b.set_remote(link.clone());
    (a, b, link)
}

#[tokio::test]
async fn remote_tell_ask_and_refs_inside_messages() {
    let (a, b, link) = pair();
    let on_a = a.spawn(Counter, 10).await.unwrap();
    let on_b = b.spawn(Counter, 0).await.unwrap();
    // B resolves A's actor by id: a remote ref with the same API.
    let remote = b.resolve::<Cmd>(on_a.id());
    assert!(!remote.is_local());
    assert_eq!(remote.node(), Some(a.node_id()));
    remote.tell(Cmd::Add(5)).await.unwrap();
    assert_eq!(remote.ask(Cmd::Get).await.unwrap(), 15);
    // A ref to B's actor travels to A inside a message and is used there.
    assert_eq!(
        remote.ask(Cmd::Report { to: on_b.clone() }).await.unwrap(),
        15
    );
    assert_eq!(on_b.ask(Cmd::Get).await.unwrap(), 15);
    // Names resolve through the link.
    link.names
        .lock()
        .unwrap()
        .insert("counter".into(), (a.node_id(), on_a.id()));
    let by_name = b.resolve_name::<Cmd>("counter").unwrap();
    assert_eq!(by_name.ask(Cmd::Get).await.unwrap(), 15);
}

#[tokio::test]
async fn remote_refusals_are_typed() {
    let (a, b, _link) = pair();
    let vault = a.spawn(Vault, ()).await.unwrap();
    // Unknown actor.
    let ghost = b.resolve::<Cmd>(ActorId::new(a.node_id(), 999));
    match ghost.ask(Cmd::Get).await {
        Err(AskError::Rejected(Failure::NoSuchActor)) => {}
        other => panic!("{other:?}"),
    }
    // An actor of another message type.
    let wrong = b.resolve::<Cmd>(vault.id());
    match wrong.ask(Cmd::Get).await {
        Err(AskError::Rejected(Failure::Rejected(why))) => {
            assert!(why.contains("local-only"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // A node nobody knows.
    let lost = b.resolve_at::<Cmd>(ActorId::new(NodeId::synthetic(9), 1), NodeId::synthetic(9));
    assert!(matches!(
        lost.try_tell(Cmd::Get),
        Err(plexus_actors::SendError::Unreachable(Cmd::Get))
    ));
    // Garbage payload.
    let counter = a.spawn(Counter, 0).await.unwrap();
    let name = std::any::type_name::<Cmd>();
    match a.try_deliver_remote(
        NodeId::ZERO,
        counter.id(),
        name,
        &Bytes::from_static(&[0xff, 0xff, 0xff]),
        None,
    ) {
        Err(DeliverError::Refused(Failure::Malformed(_))) => {}
        _ => panic!("garbage must be refused as malformed"),
    }
}
