//! Supervision across nodes.
//!
//! A supervisor links only local actors. To supervise an actor on another node,
//! [`remote_child`] starts it there through that node's agent and links a local
//! *proxy* in its place. The proxy watches the remote actor: if it stops normally the
//! proxy stops normally; if it fails, or its node is declared dead, the proxy fails
//! with the reason, so the supervisor applies its strategy exactly as for a local
//! child, and a restart places a fresh incarnation on a node chosen anew. Stopping the
//! proxy (shutdown, or a sibling's restart under one_for_all) stops the remote actor.
//!
//! Views of membership converge, they do not agree at once: the supervisor's node may
//! declare the old host dead before the new host does, and the new host then still
//! holds the old incarnation's name claim and refuses the name. A start that meets
//! such a claim, held on a node the supervisor's node no longer sees alive, retries
//! with backoff for up to [`HANDOVER_WAIT`] before it counts as a failed start (which
//! the supervisor handles like a crash, against its restart intensity).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use plexus_actors::runtime::{
    Actor, ActorError, ActorSystem, Context, Exit, KindArgs, Message, SpawnError, SpawnOptions,
};
use plexus_actors::{ActorId, NodeId};
use plexus_mesh::membership::MemberState;
use plexus_supervisor::Restart;
use plexus_supervisor::driver::{Child, StartFn, Started};

use crate::{Node, NodeError};

/// How long a start waits for the new host to learn that the holder of the child's
/// name is dead (see the module docs).
pub const HANDOVER_WAIT: Duration = Duration::from_secs(10);
/// The first pause between such retries; it doubles up to [`HANDOVER_BACKOFF_MAX`].
const HANDOVER_BACKOFF_MIN: Duration = Duration::from_millis(50);
const HANDOVER_BACKOFF_MAX: Duration = Duration::from_millis(800);

/// Chooses a node for a remote child.
pub type Chooser = Arc<dyn Fn(&Node) -> Option<NodeId> + Send + Sync>;

/// Where a remote child goes each time it is (re)started.
#[derive(Clone)]
pub enum Placement {
    /// Always this node.
    On(NodeId),
    /// The first alive member, in id order, other than this node; this node if none.
    AnyOther,
    /// A custom choice.
    With(Chooser),
}

impl Placement {
    fn pick(&self, node: &Node) -> Option<NodeId> {
        match self {
            Placement::On(n) => Some(*n),
            Placement::AnyOther => {
                let members = node.mesh().map(|m| m.member_map()).unwrap_or_default();
                members
                    .into_iter()
                    .find(|(_, v)| v.state == MemberState::Alive)
                    .map(|(id, _)| id)
                    .or(Some(node.id()))
            }
            Placement::With(f) => f(node),
        }
    }
}

/// Whether `node`'s membership sees `other` alive (itself always is).
fn is_alive(node: &Node, other: NodeId) -> bool {
    other == node.id()
        || node
            .mesh()
            .and_then(|m| {
                m.member_map()
                    .get(&other)
                    .map(|v| v.state == MemberState::Alive)
            })
            .unwrap_or(false)
}

/// A child of kind `kind` that runs on the node `placement` picks, registered
/// cluster-wide under `name` if given (so callers can find each incarnation).
pub fn remote_child(
    node: &Node,
    id: &str,
    restart: Restart,
    kind: &str,
    args: KindArgs,
    name: Option<&str>,
    placement: Placement,
) -> Child {
    let node = node.clone();
    let kind = kind.to_string();
    let name = name.map(str::to_string);
    let start: StartFn = Arc::new(
        move |system: ActorSystem,
              opts: SpawnOptions|
              -> BoxFuture<'static, Result<Started, SpawnError>> {
            let (node, kind, args, name, placement) = (
                node.clone(),
                kind.clone(),
                args.clone(),
                name.clone(),
                placement.clone(),
            );
            Box::pin(async move {
                let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
                let mut pause = HANDOVER_BACKOFF_MIN;
                let (remote, target) = loop {
                    let target = placement.pick(&node).ok_or_else(|| {
                        SpawnError::StartFailed("no node to place the child on".into())
                    })?;
                    match node
                        .spawn_on(target, &kind, args.clone(), name.as_deref())
                        .await
                    {
                        Ok(remote) => break (remote, target),
                        Err(NodeError::NameTaken { holder, .. })
                            if !is_alive(&node, holder.node)
                                && tokio::time::Instant::now() + pause < deadline =>
                        {
                            tracing::debug!(
                                holder = %holder.actor,
                                on = %target.short(),
                                "name still held by a dead node's actor there; retrying"
                            );
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(HANDOVER_BACKOFF_MAX);
                        }
                        Err(e) => return Err(SpawnError::StartFailed(e.to_string())),
                    }
                };
                let proxy = system
                    .spawn_with(Proxy { node: node.clone() }, (remote, target), opts)
                    .await?;
                let cell = proxy
                    .ractor_cell()
                    .ok_or_else(|| SpawnError::StartFailed("proxy is not local".into()))?;
                Ok(Started {
                    cell,
                    id: proxy.id(),
                })
            })
        },
    );
    Child::new(id, restart, start)
}

/// What the proxy hears.
pub enum ProxyMsg {
    /// The remote actor ended.
    Exited(Exit),
}

impl Message for ProxyMsg {
    type Reply = ();
}

struct Proxy {
    node: Node,
}

struct ProxyState {
    remote: ActorId,
    on: NodeId,
    watcher: tokio::task::JoinHandle<()>,
    ended: bool,
}

impl Actor for Proxy {
    type Msg = ProxyMsg;
    type State = ProxyState;
    type Args = (ActorId, NodeId);

    async fn started(
        &self,
        ctx: &Context<ProxyMsg>,
        (remote, on): (ActorId, NodeId),
    ) -> Result<ProxyState, ActorError> {
        let exit = self
            .node
            .watch(remote, on)
            .await
            .map_err(|e| e.to_string())?;
        let me = ctx.myself().clone();
        let watcher = tokio::spawn(async move {
            let exit = exit.await;
            let _ = me.tell(ProxyMsg::Exited(exit)).await;
        });
        Ok(ProxyState {
            remote,
            on,
            watcher,
            ended: false,
        })
    }

    async fn handle(
        &self,
        ctx: &Context<ProxyMsg>,
        msg: ProxyMsg,
        st: &mut ProxyState,
    ) -> Result<(), ActorError> {
        let ProxyMsg::Exited(exit) = msg;
        st.ended = true;
        match exit {
            Exit::Normal => {
                ctx.stop();
                Ok(())
            }
            Exit::Failed(why) => Err(format!(
                "remote child {} on {} failed: {why}",
                st.remote,
                st.on.short()
            )
            .into()),
            other => Err(format!("remote child ended: {other:?}").into()),
        }
    }

    async fn stopped(&self, _: &Context<ProxyMsg>, st: &mut ProxyState) {
        st.watcher.abort();
        if !st.ended {
            let _ = self.node.stop_on(st.on, st.remote).await;
        }
    }
}

impl Drop for ProxyState {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
