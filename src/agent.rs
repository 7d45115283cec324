//! The node agent: the actor through which other nodes act on this one.
//!
//! Every meshed node runs one agent under the well-known id `(node, 0)`, so any node
//! can reach any other's agent without a registry lookup. It spawns actors of
//! registered kinds (remote spawn), stops them, and watches them for others: when a
//! watched actor ends, the agent tells the watcher's exit relay.
//!
//! The watching side ([`Watches`]) also fails every watch on a node the moment the
//! mesh declares that node dead, so a watcher learns of a child's death whether the
//! child crashed or its whole node did.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, Context, Exit, KindArgs, Message, Origin,
    SpawnOptions, Wire,
};
use plexus_actors::{ActorId, NodeId};
use plexus_mesh::driver::Mesh;
use plexus_mesh::registry::{Location, RegistryError};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// The agent's local number on every node.
pub const AGENT_LOCAL_ID: u64 = 0;
/// The exit relay's local number on every node.
pub const RELAY_LOCAL_ID: u64 = 1;
/// Most watches one agent serves at once; more are refused.
pub const WATCHES_MAX: usize = 100_000;

/// The agent of `node`.
pub fn agent_id(node: NodeId) -> ActorId {
    ActorId::new(node, AGENT_LOCAL_ID)
}

/// Requests to a node's agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AgentMsg {
    /// Start an actor of a registered kind here; register `name` cluster-wide if set.
    Spawn {
        /// The kind.
        kind: String,
        /// Its arguments.
        args: KindArgs,
        /// A cluster-wide name for it.
        name: Option<String>,
        /// Who asks (authenticated; it becomes the actor's owner here).
        origin: Origin,
    },
    /// Stop a local actor. Only its owner (the node that had it spawned here) or
    /// this node itself may; system actors are never stopped this way.
    Stop {
        /// The actor.
        actor: ActorId,
        /// Who asks (authenticated).
        origin: Origin,
    },
    /// Tell `relay` when `actor` ends.
    Watch {
        /// The actor.
        actor: ActorId,
        /// Where to send the notice.
        relay: ActorRef<ExitNotice>,
    },
}

/// The agent's answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentReply {
    /// Spawned with this id.
    Spawned(ActorId),
    /// Whether the actor was running.
    Stopped(bool),
    /// Whether the watch was set (false: no such actor).
    Watching(bool),
    /// The name asked for is held by another actor in the asked node's view; the
    /// spawned actor was stopped again.
    NameTaken {
        /// The name.
        name: String,
        /// Its holder, as the asked node sees it.
        holder: Location,
    },
    /// The request failed; the string says why.
    Error(String),
    /// The asking node may not do this (not the actor's owner, or a system actor).
    Forbidden(String),
}

impl Message for AgentMsg {
    type Reply = AgentReply;
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

/// An actor ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitNotice {
    /// Which.
    pub actor: ActorId,
    /// `None` for a normal stop, else why it failed.
    pub failure: Option<String>,
}

impl Message for ExitNotice {
    type Reply = ();
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

pub(crate) struct Agent {
    pub(crate) mesh: Mesh,
}

pub(crate) struct AgentState {
    watchers: JoinSet<()>,
    /// Which node had each live actor spawned here through the agent (its owner).
    /// Entries of ended actors are dropped at the next request, so this is bounded
    /// by the actors running here.
    owners: BTreeMap<ActorId, NodeId>,
}

/// Whether `origin` may stop `actor` on the node `me`: never a system actor (the
/// agent, the exit relay, the durable service: local numbers below
/// `RESERVED_LOCAL_IDS`); otherwise this node itself, or the actor's owner.
pub(crate) fn may_stop(
    me: NodeId,
    owners: &BTreeMap<ActorId, NodeId>,
    actor: ActorId,
    origin: NodeId,
) -> Result<(), String> {
    if actor.local < plexus_actors::runtime::RESERVED_LOCAL_IDS {
        return Err(format!("{actor} is a system actor"));
    }
    if origin == me || owners.get(&actor) == Some(&origin) {
        return Ok(());
    }
    Err(format!(
        "{} may not stop {actor}: only the node that spawned it may",
        origin.short()
    ))
}

impl Actor for Agent {
    type Msg = AgentMsg;
    type State = AgentState;
    type Args = ();

    async fn started(&self, _: &Context<AgentMsg>, _: ()) -> Result<AgentState, ActorError> {
        Ok(AgentState {
            watchers: JoinSet::new(),
            owners: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        ctx: &Context<AgentMsg>,
        msg: AgentMsg,
        st: &mut AgentState,
    ) -> Result<AgentReply, ActorError> {
        let system = ctx.system();
        while st.watchers.try_join_next().is_some() {}
        st.owners.retain(|id, _| system.contains(*id));
        Ok(match msg {
            AgentMsg::Spawn { kind, name, .. }
                if [Some(kind.as_str()), name.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(plexus_vocab::names::is_reserved) =>
            {
                tracing::warn!(%kind, ?name, "refused a spawn of a reserved name");
                AgentReply::Forbidden(format!(
                    "`{}` is a reserved system name",
                    name.unwrap_or(kind)
                ))
            }
            AgentMsg::Spawn {
                kind,
                args,
                name,
                origin,
            } => match system
                .spawn_kind(&kind, args, SpawnOptions::default())
                .await
            {
                Ok(id) => match name {
                    Some(name) => match self.mesh.register(&name, id).await {
                        Ok(Ok(())) => {
                            if let Some(exit) = system.exit_of(id) {
                                st.watchers.spawn(unregister_on_exit(
                                    self.mesh.clone(),
                                    name,
                                    id,
                                    exit,
                                ));
                            }
                            st.owners.insert(id, origin.node());
                            AgentReply::Spawned(id)
                        }
                        Ok(Err(RegistryError::Taken { name, holder })) => {
                            system.stop(id).await;
                            AgentReply::NameTaken { name, holder }
                        }
                        Ok(Err(e)) => {
                            system.stop(id).await;
                            AgentReply::Error(e.to_string())
                        }
                        Err(e) => AgentReply::Error(e.to_string()),
                    },
                    None => {
                        st.owners.insert(id, origin.node());
                        AgentReply::Spawned(id)
                    }
                },
                Err(e) => AgentReply::Error(e.to_string()),
            },
            AgentMsg::Stop { actor, origin } => {
                match may_stop(system.node_id(), &st.owners, actor, origin.node()) {
                    Ok(()) => AgentReply::Stopped(system.stop(actor).await),
                    Err(why) => {
                        tracing::warn!(%actor, from = %origin.node(), "refused a stop");
                        AgentReply::Forbidden(why)
                    }
                }
            }
            AgentMsg::Watch { actor, relay } => {
                if st.watchers.len() >= WATCHES_MAX {
                    return Ok(AgentReply::Error(format!(
                        "this node serves {WATCHES_MAX} watches already"
                    )));
                }
                match system.exit_of(actor) {
                    Some(exit) => {
                        st.watchers.spawn(async move {
                            let failure = match exit.await {
                                Exit::Normal => None,
                                Exit::Failed(why) => Some(why),
                                other => Some(format!("{other:?}")),
                            };
                            let _ = relay.tell(ExitNotice { actor, failure }).await;
                        });
                        AgentReply::Watching(true)
                    }
                    None => AgentReply::Watching(false),
                }
            }
        })
    }
}

/// The watchers of one remote actor, and the node it lives on.
type Watchers = (NodeId, Vec<oneshot::Sender<Exit>>);

/// Withdraws `name` once `actor` ends, unless the name has moved on meanwhile.
pub(crate) async fn unregister_on_exit(
    mesh: Mesh,
    name: String,
    actor: ActorId,
    exit: impl std::future::Future<Output = Exit>,
) {
    exit.await;
    if mesh.lookup(&name).is_some_and(|l| l.actor == actor) {
        let _ = mesh.unregister(&name).await;
    }
}

/// Watches this node holds on actors elsewhere.
#[derive(Default)]
pub struct Watches {
    table: Mutex<BTreeMap<ActorId, Watchers>>,
}

impl Watches {
    pub(crate) fn add(&self, actor: ActorId, node: NodeId, tx: oneshot::Sender<Exit>) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(actor)
            .or_insert((node, Vec::new()))
            .1
            .push(tx);
    }

    pub(crate) fn resolve(&self, actor: ActorId, exit: Exit) {
        let waiters = self
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&actor);
        for tx in waiters.map(|(_, w)| w).unwrap_or_default() {
            let _ = tx.send(exit.clone());
        }
    }

    /// Fails every watch on an actor hosted by `node`.
    pub(crate) fn node_died(&self, node: NodeId) {
        let lost: Vec<ActorId> = {
            let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            table
                .iter()
                .filter(|(_, (n, _))| *n == node)
                .map(|(a, _)| *a)
                .collect()
        };
        for actor in lost {
            self.resolve(
                actor,
                Exit::Failed(format!("its node {} died", node.short())),
            );
        }
    }
}

pub(crate) struct Relay {
    pub(crate) watches: Arc<Watches>,
}

impl Actor for Relay {
    type Msg = ExitNotice;
    type State = ();
    type Args = ();

    async fn started(&self, _: &Context<ExitNotice>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(
        &self,
        _: &Context<ExitNotice>,
        notice: ExitNotice,
        _: &mut (),
    ) -> Result<(), ActorError> {
        let exit = match notice.failure {
            None => Exit::Normal,
            Some(why) => Exit::Failed(why),
        };
        self.watches.resolve(notice.actor, exit);
        Ok(())
    }
}

/// Spawns the agent and the relay with their well-known ids.
pub(crate) async fn start(
    system: &ActorSystem,
    mesh: Mesh,
    watches: Arc<Watches>,
) -> Result<(), plexus_actors::runtime::SpawnError> {
    let node = system.node_id();
    system
        .spawn_with(
            Agent { mesh },
            (),
            SpawnOptions {
                id: Some(agent_id(node)),
                kind: Some("plexus.agent".into()),
                ..SpawnOptions::default()
            },
        )
        .await?;
    system
        .spawn_with(
            Relay { watches },
            (),
            SpawnOptions {
                id: Some(ActorId::new(node, RELAY_LOCAL_ID)),
                kind: Some("plexus.relay".into()),
                ..SpawnOptions::default()
            },
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer may stop only what it had spawned here; nobody stops system actors
    /// through the agent; the node itself may stop its user actors.
    #[test]
    fn only_the_owner_or_the_node_stops_an_actor_and_system_actors_never() {
        let me = NodeId::synthetic(1);
        let owner = NodeId::synthetic(2);
        let other = NodeId::synthetic(3);
        let user = ActorId::new(me, plexus_actors::runtime::RESERVED_LOCAL_IDS + 5);
        let unowned = ActorId::new(me, plexus_actors::runtime::RESERVED_LOCAL_IDS + 6);
        let owners = BTreeMap::from([(user, owner)]);
        assert!(may_stop(me, &owners, user, owner).is_ok());
        assert!(may_stop(me, &owners, user, me).is_ok());
        assert!(may_stop(me, &owners, user, other).is_err(), "not the owner");
        assert!(
            may_stop(me, &owners, unowned, owner).is_err(),
            "owns another one"
        );
        assert!(may_stop(me, &owners, unowned, me).is_ok());
        for system in [AGENT_LOCAL_ID, RELAY_LOCAL_ID, 15] {
            let id = ActorId::new(me, system);
            assert!(
                may_stop(me, &owners, id, me).is_err(),
                "system actor {system}"
            );
            assert!(
                may_stop(me, &owners, id, owner).is_err(),
                "system actor {system}"
            );
        }
    }
}
