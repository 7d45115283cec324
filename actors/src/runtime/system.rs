//! [`ActorSystem`]: one node's actors, names, groups and kinds.
//!
//! Everything here belongs to one system value; nothing is process-global. ractor's
//! own name registry and process groups are process-wide, so Plexus never gives
//! ractor a name and keeps its registry here instead: two systems in one process
//! (two nodes in a test, or a host embedding several) cannot see each other.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::actor::{Actor, Host};
use super::actor_ref::{ActorRef, RemoteRoute};
use super::errors::{LookupError, RegistryError, SpawnError};
use super::kinds::{KindArgs, Kinds};
use super::mailbox::{LocalMailbox, MAILBOX_CAPACITY_DEFAULT, MailboxShared};
use super::message::Message;
use super::remote::{DeliverError, Inbox, RemoteLink, RemoteReply, TypedInbox};
use crate::envelope::Failure;
use crate::{ActorId, NodeId};

/// Default time an `ask` waits for its reply.
pub const ASK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Local numbers below this are reserved for well-known system actors (the node
/// agent is 0, the exit relay 1); minted ids start here.
pub const RESERVED_LOCAL_IDS: u64 = 16;
/// Longest name the registry accepts, in bytes.
pub const NAME_BYTES_MAX: usize = 256;

/// Settings of one actor system.
#[derive(Clone, Debug)]
pub struct SystemConfig {
    /// The node this system runs on; it mints actor ids under this node.
    pub node: NodeId,
    /// Mailbox capacity for spawns that do not set one.
    pub mailbox_capacity: usize,
    /// How long `ask` waits by default.
    pub ask_timeout: Duration,
    /// How long `shutdown` waits for each actor before killing it.
    pub stop_timeout: Duration,
}

impl SystemConfig {
    /// Defaults for `node`.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            mailbox_capacity: MAILBOX_CAPACITY_DEFAULT,
            ask_timeout: ASK_TIMEOUT_DEFAULT,
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// How to spawn an actor.
#[derive(Clone, Default)]
pub struct SpawnOptions {
    /// Register the actor under this name on this node.
    pub name: Option<String>,
    /// Mailbox capacity; the system default if `None`.
    pub capacity: Option<usize>,
    /// The registered kind it was made from, for listings.
    pub kind: Option<String>,
    /// Reuse this id (a supervised restart or a migration arriving); mint one if `None`.
    pub id: Option<ActorId>,
    /// Link to this ractor cell as supervisor (set by supervisor drivers).
    pub parent: Option<ractor::ActorCell>,
    /// Join these process groups.
    pub groups: Vec<String>,
}

impl SpawnOptions {
    /// Options with a registered name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Sets the mailbox capacity.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }
}

/// What a listing says about one actor.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActorInfo {
    /// Its id.
    pub id: ActorId,
    /// Its registered name, if any.
    pub name: Option<String>,
    /// The kind it was spawned from, if any.
    pub kind: Option<String>,
    /// Its message type.
    pub message_type: String,
    /// Messages waiting.
    pub mailbox_depth: usize,
    /// Mailbox capacity.
    pub mailbox_capacity: usize,
    /// Messages handled by this incarnation.
    pub handled: u64,
    /// Process groups it belongs to.
    pub groups: Vec<String>,
}

struct Entry {
    incarnation: u64,
    type_id: TypeId,
    type_name: &'static str,
    /// A `LocalMailbox<M>` for the actor's message type `M`.
    mailbox: Box<dyn Any + Send + Sync>,
    cell: ractor::ActorCell,
    shared: Arc<MailboxShared>,
    name: Option<String>,
    kind: Option<String>,
    groups: BTreeSet<String>,
    /// Present when the message type has a wire form.
    inbox: Option<Arc<dyn Inbox>>,
}

impl Entry {
    fn is_live(&self) -> bool {
        !self.shared.is_closed()
            && !matches!(
                self.cell.get_status(),
                ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
            )
    }
}

#[derive(Default)]
struct Tables {
    actors: BTreeMap<ActorId, Entry>,
    names: BTreeMap<String, ActorId>,
    groups: BTreeMap<String, BTreeSet<ActorId>>,
    /// During a shutdown: the newest incarnation it stopped, and how many of the
    /// actors it stopped are still in the table.
    draining: Option<(u64, usize)>,
}

impl Tables {
    /// Removes an entry; true when that was the last actor a shutdown waits for.
    fn remove(&mut self, id: ActorId, incarnation: u64) -> bool {
        let Some(entry) = self.actors.get(&id) else {
            return false;
        };
        if entry.incarnation != incarnation {
            return false;
        }
        let mut drained = false;
        if let Some((newest, left)) = &mut self.draining
            && incarnation <= *newest
        {
            *left = left.saturating_sub(1);
            drained = *left == 0;
        }
        if let Some(entry) = self.actors.remove(&id) {
            if let Some(name) = entry.name
                && self.names.get(&name) == Some(&id)
            {
                self.names.remove(&name);
            }
            for group in entry.groups {
                if let Some(members) = self.groups.get_mut(&group) {
                    members.remove(&id);
                    if members.is_empty() {
                        self.groups.remove(&group);
                    }
                }
            }
        }
        drained
    }
}

pub(crate) struct SystemInner {
    config: SystemConfig,
    next_local: AtomicU64,
    next_incarnation: AtomicU64,
    tables: Mutex<Tables>,
    /// Woken when the last actor a shutdown stopped has left the table.
    drained: tokio::sync::Notify,
    kinds: Kinds,
    shutting_down: AtomicBool,
    remote: std::sync::RwLock<Option<Arc<dyn RemoteLink>>>,
}

/// One node's actor system. Cheap to clone; all clones are the same system.
#[derive(Clone)]
pub struct ActorSystem {
    inner: Arc<SystemInner>,
}

/// A non-owning handle, held by refs so they do not keep a system alive.
#[derive(Clone)]
pub(crate) struct WeakSystem(Weak<SystemInner>);

impl WeakSystem {
    pub(crate) fn upgrade(&self) -> Option<ActorSystem> {
        self.0.upgrade().map(|inner| ActorSystem { inner })
    }
}

/// Removes an actor's entry when its host is dropped (its task ended, however).
pub(crate) struct EntryGuard {
    system: WeakSystem,
    id: ActorId,
    incarnation: u64,
    shared: Arc<MailboxShared>,
}

impl Drop for EntryGuard {
    fn drop(&mut self) {
        if let Some(system) = self.system.upgrade()
            && system.tables().remove(self.id, self.incarnation)
        {
            system.inner.drained.notify_waiters();
        }
        self.shared.close();
    }
}

impl ActorSystem {
    /// A new, empty system.
    pub fn new(config: SystemConfig) -> Self {
        Self {
            inner: Arc::new(SystemInner {
                config,
                next_local: AtomicU64::new(RESERVED_LOCAL_IDS),
                next_incarnation: AtomicU64::new(1),
                tables: Mutex::new(Tables::default()),
                drained: tokio::sync::Notify::new(),
                kinds: Kinds::default(),
                shutting_down: AtomicBool::new(false),
                remote: std::sync::RwLock::new(None),
            }),
        }
    }

    /// The node this system runs on.
    pub fn node_id(&self) -> NodeId {
        self.inner.config.node
    }

    /// The settings.
    pub fn config(&self) -> &SystemConfig {
        &self.inner.config
    }

    /// The kinds that can be spawned by name.
    pub fn kinds(&self) -> &Kinds {
        &self.inner.kinds
    }

    pub(crate) fn downgrade(&self) -> WeakSystem {
        WeakSystem(Arc::downgrade(&self.inner))
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while the lock is held cannot leave the tables half-updated in a way
        // that matters (each update is a single map operation), so recover from poison.
        self.inner.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mints a fresh actor id on this node.
    pub fn mint_id(&self) -> ActorId {
        ActorId::new(
            self.inner.config.node,
            self.inner.next_local.fetch_add(1, SeqCst),
        )
    }

    /// Spawns an actor with default options.
    pub async fn spawn<A: Actor>(
        &self,
        actor: A,
        args: A::Args,
    ) -> Result<ActorRef<A::Msg>, SpawnError> {
        self.spawn_with(actor, args, SpawnOptions::default()).await
    }

    /// Spawns an actor. Returns once `started` has built its state.
    pub async fn spawn_with<A: Actor>(
        &self,
        actor: A,
        args: A::Args,
        opts: SpawnOptions,
    ) -> Result<ActorRef<A::Msg>, SpawnError> {
        if self.inner.shutting_down.load(SeqCst) {
            return Err(SpawnError::ShuttingDown);
        }
        let id = opts.id.unwrap_or_else(|| self.mint_id());
        {
            let tables = self.tables();
            if let Some(existing) = tables.actors.get(&id)
                && existing.is_live()
            {
                return Err(SpawnError::AlreadyRunning(id));
            }
            if let Some(name) = &opts.name {
                check_name(name)?;
                if let Some(holder) = tables.names.get(name)
                    && *holder != id
                {
                    return Err(RegistryError::NameTaken {
                        name: name.clone(),
                        holder: *holder,
                    }
                    .into());
                }
            }
        }
        let capacity = opts
            .capacity
            .unwrap_or(self.inner.config.mailbox_capacity)
            .max(1);
        let shared = Arc::new(MailboxShared::new(capacity));
        let incarnation = self.inner.next_incarnation.fetch_add(1, SeqCst);
        let span = tracing::info_span!(
            "actor",
            id = %id,
            kind = opts.kind.as_deref().unwrap_or(""),
            name = opts.name.as_deref().unwrap_or(""),
        );
        let host = Host {
            actor,
            id,
            shared: shared.clone(),
            system: self.clone(),
            span,
            _guard: EntryGuard {
                system: self.downgrade(),
                id,
                incarnation,
                shared: shared.clone(),
            },
        };
        let spawned = match opts.parent.clone() {
            Some(parent) => ractor::Actor::spawn_linked(None, host, args, parent).await,
            None => ractor::Actor::spawn(None, host, args).await,
        };
        let (inner, _join) = spawned.map_err(|e| SpawnError::StartFailed(startup_reason(e)))?;
        let mailbox = LocalMailbox {
            inner,
            shared: shared.clone(),
        };
        let cell = mailbox.inner.get_cell();
        {
            let mut tables = self.tables();
            if let Some(name) = &opts.name {
                match tables.names.get(name) {
                    Some(holder)
                        if *holder != id
                            && tables.actors.get(holder).is_some_and(Entry::is_live) =>
                    {
                        let holder = *holder;
                        drop(tables);
                        cell.stop(Some("name taken".into()));
                        return Err(RegistryError::NameTaken {
                            name: name.clone(),
                            holder,
                        }
                        .into());
                    }
                    _ => {
                        tables.names.insert(name.clone(), id);
                    }
                }
            }
            for group in &opts.groups {
                tables.groups.entry(group.clone()).or_default().insert(id);
            }
            tables.actors.insert(
                id,
                Entry {
                    incarnation,
                    type_id: TypeId::of::<A::Msg>(),
                    type_name: std::any::type_name::<A::Msg>(),
                    mailbox: Box::new(mailbox.clone()),
                    cell,
                    shared: shared.clone(),
                    name: opts.name.clone(),
                    kind: opts.kind.clone(),
                    groups: opts.groups.iter().cloned().collect(),
                    inbox: <A::Msg as Message>::WIRE.map(|wire| {
                        Arc::new(TypedInbox {
                            mailbox: mailbox.clone(),
                            wire,
                        }) as Arc<dyn Inbox>
                    }),
                },
            );
            // The actor may have ended before we inserted it; its guard then found
            // nothing to remove, so remove it here.
            if shared.is_closed() {
                tables.remove(id, incarnation);
            }
        }
        Ok(ActorRef::local(id, mailbox, Some(self.downgrade())))
    }

    /// Spawns an actor of a registered kind.
    pub async fn spawn_kind(
        &self,
        kind: &str,
        args: KindArgs,
        mut opts: SpawnOptions,
    ) -> Result<ActorId, SpawnError> {
        let factory = self
            .inner
            .kinds
            .get(kind)
            .ok_or_else(|| SpawnError::UnknownKind {
                kind: kind.to_string(),
                known: self.inner.kinds.names().join(", "),
            })?;
        opts.kind = Some(kind.to_string());
        factory(self.clone(), args, opts).await
    }

    pub(crate) fn local_mailbox<M: Message>(
        &self,
        id: ActorId,
    ) -> Result<LocalMailbox<M>, LookupError> {
        let tables = self.tables();
        let entry = tables.actors.get(&id).ok_or(LookupError::NotFound(id))?;
        entry
            .mailbox
            .downcast_ref::<LocalMailbox<M>>()
            .cloned()
            .ok_or(LookupError::WrongType {
                id,
                actual: entry.type_name,
                requested: std::any::type_name::<M>(),
            })
    }

    /// Installs the link to other nodes (done by the mesh driver when the node joins).
    pub fn set_remote(&self, link: Arc<dyn RemoteLink>) {
        *self.inner.remote.write().unwrap_or_else(|p| p.into_inner()) = Some(link);
    }

    /// Removes the link to other nodes (the mesh shut down).
    pub fn clear_remote(&self) {
        *self.inner.remote.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The installed link, if the node is part of a mesh.
    pub fn remote(&self) -> Option<Arc<dyn RemoteLink>> {
        self.inner
            .remote
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A ref to `id` wherever it runs: local if it is here, routed through the mesh if
    /// it is elsewhere and its message type has a wire form, unbound otherwise.
    pub fn resolve<M: Message>(&self, id: ActorId) -> ActorRef<M> {
        if let Ok(local) = self.lookup::<M>(id) {
            return local;
        }
        if let (Some(link), Some(wire)) = (self.remote(), M::WIRE) {
            let node = link.locate(id);
            if node != self.node_id() {
                return ActorRef::remote(
                    id,
                    RemoteRoute { link, node, wire },
                    Some(self.downgrade()),
                );
            }
        }
        ActorRef::unbound_in(id, Some(self.downgrade()))
    }

    /// A ref to `id`, which runs on `node`.
    pub fn resolve_at<M: Message>(&self, id: ActorId, node: NodeId) -> ActorRef<M> {
        if node == self.node_id() {
            return self
                .lookup::<M>(id)
                .unwrap_or_else(|_| ActorRef::unbound_in(id, Some(self.downgrade())));
        }
        match (self.remote(), M::WIRE) {
            (Some(link), Some(wire)) => {
                ActorRef::remote(id, RemoteRoute { link, node, wire }, Some(self.downgrade()))
            }
            _ => ActorRef::unbound_in(id, Some(self.downgrade())),
        }
    }

    /// A ref to the actor a name points to: the cluster registry first (if the node is
    /// in a mesh), then this node's local names.
    pub fn resolve_name<M: Message>(&self, name: &str) -> Option<ActorRef<M>> {
        if let Some(link) = self.remote()
            && let Some((node, id)) = link.lookup_name(name)
        {
            return Some(self.resolve_at(id, node));
        }
        self.whereis_typed(name)
    }

    /// Hands a message that arrived from node `from` (the sender the transport
    /// authenticated) to a local actor, without waiting. The payload is decoded
    /// here, with refs inside bound to this node and `from` readable through
    /// [`super::remote::decode_sender`] (and so in [`super::Origin`] fields).
    pub fn try_deliver_remote(
        &self,
        from: NodeId,
        target: ActorId,
        message_type: &str,
        payload: &[u8],
        reply: Option<RemoteReply>,
    ) -> Result<(), DeliverError> {
        let refuse = |failure: Failure, reply: Option<RemoteReply>| {
            // An asker learns the reason through its reply; a teller through the ack.
            if let Some(reply) = reply {
                reply.send(Err(failure.clone()));
            }
            Err(DeliverError::Refused(failure))
        };
        let inbox = {
            let tables = self.tables();
            tables
                .actors
                .get(&target)
                .filter(|e| e.is_live())
                .map(|entry| entry.inbox.clone().ok_or(entry.type_name))
        };
        let inbox = match inbox {
            None => return refuse(Failure::NoSuchActor, reply),
            Some(Err(type_name)) => {
                let why = format!("`{type_name}` has no wire form; the actor is local-only");
                return refuse(Failure::Rejected(why), reply);
            }
            Some(Ok(inbox)) => inbox,
        };
        if inbox.message_type() != message_type {
            let failure = Failure::WrongType {
                expected: inbox.message_type().to_string(),
                got: message_type.to_string(),
            };
            return refuse(failure, reply);
        }
        inbox.try_deliver(self, from, payload, reply)
    }

    /// A typed ref to an actor running on this node.
    pub fn lookup<M: Message>(&self, id: ActorId) -> Result<ActorRef<M>, LookupError> {
        let mailbox = self.local_mailbox::<M>(id)?;
        Ok(ActorRef::local(id, mailbox, Some(self.downgrade())))
    }

    /// The ractor cell of a local actor, for drivers that link or stop it.
    pub fn cell_of(&self, id: ActorId) -> Option<ractor::ActorCell> {
        self.tables()
            .actors
            .get(&id)
            .filter(|e| e.is_live())
            .map(|e| e.cell.clone())
    }

    /// Whether an actor with this id runs here.
    pub fn contains(&self, id: ActorId) -> bool {
        self.tables().actors.get(&id).is_some_and(Entry::is_live)
    }

    /// The message type name of a local actor (used to check remote frames).
    pub fn message_type_of(&self, id: ActorId) -> Option<(&'static str, TypeId)> {
        self.tables()
            .actors
            .get(&id)
            .map(|e| (e.type_name, e.type_id))
    }

    /// Registers `name` for a running actor. Re-registering the same pair is a no-op.
    pub fn register(&self, name: &str, id: ActorId) -> Result<(), RegistryError> {
        check_name(name)?;
        let mut tables = self.tables();
        if !tables.actors.contains_key(&id) {
            return Err(RegistryError::NoSuchActor(id));
        }
        if let Some(holder) = tables.names.get(name)
            && *holder != id
        {
            return Err(RegistryError::NameTaken {
                name: name.to_string(),
                holder: *holder,
            });
        }
        tables.names.insert(name.to_string(), id);
        if let Some(entry) = tables.actors.get_mut(&id)
            && let Some(old) = entry.name.replace(name.to_string())
            && old != name
        {
            tables.names.remove(&old);
        }
        Ok(())
    }

    /// Removes a name. Returns the id it named.
    pub fn unregister(&self, name: &str) -> Option<ActorId> {
        let mut tables = self.tables();
        let id = tables.names.remove(name)?;
        if let Some(entry) = tables.actors.get_mut(&id) {
            entry.name = None;
        }
        Some(id)
    }

    /// The id registered under `name` on this node.
    pub fn whereis(&self, name: &str) -> Option<ActorId> {
        self.tables().names.get(name).copied()
    }

    /// A typed ref to the actor registered under `name` on this node.
    pub fn whereis_typed<M: Message>(&self, name: &str) -> Option<ActorRef<M>> {
        let id = self.whereis(name)?;
        self.lookup(id).ok()
    }

    /// Adds a running actor to a process group.
    pub fn join_group(&self, group: &str, id: ActorId) -> Result<(), RegistryError> {
        check_name(group)?;
        let mut tables = self.tables();
        let entry = tables
            .actors
            .get_mut(&id)
            .ok_or(RegistryError::NoSuchActor(id))?;
        entry.groups.insert(group.to_string());
        tables
            .groups
            .entry(group.to_string())
            .or_default()
            .insert(id);
        Ok(())
    }

    /// Removes an actor from a process group.
    pub fn leave_group(&self, group: &str, id: ActorId) {
        let mut tables = self.tables();
        if let Some(entry) = tables.actors.get_mut(&id) {
            entry.groups.remove(group);
        }
        if let Some(members) = tables.groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                tables.groups.remove(group);
            }
        }
    }

    /// The members of a process group on this node, in id order.
    pub fn group_members(&self, group: &str) -> Vec<ActorId> {
        self.tables()
            .groups
            .get(group)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The process groups with at least one member on this node.
    pub fn groups(&self) -> Vec<String> {
        self.tables().groups.keys().cloned().collect()
    }

    /// A listing of the actors running here, in id order.
    pub fn actors(&self) -> Vec<ActorInfo> {
        self.tables()
            .actors
            .iter()
            .filter(|(_, e)| e.is_live())
            .map(|(id, e)| ActorInfo {
                id: *id,
                name: e.name.clone(),
                kind: e.kind.clone(),
                message_type: e.type_name.to_string(),
                mailbox_depth: e.shared.depth(),
                mailbox_capacity: e.shared.capacity(),
                handled: e.shared.handled.load(std::sync::atomic::Ordering::Relaxed),
                groups: e.groups.iter().cloned().collect(),
            })
            .collect()
    }

    /// How many actors run here.
    pub fn actor_count(&self) -> usize {
        self.tables()
            .actors
            .values()
            .filter(|e| e.is_live())
            .count()
    }

    /// Waits for a local actor (of any message type) to end and says how. `None` if
    /// no such actor runs here.
    pub fn exit_of(
        &self,
        id: ActorId,
    ) -> Option<impl std::future::Future<Output = super::Exit> + Send + 'static> {
        let mut rx = self
            .tables()
            .actors
            .get(&id)
            .filter(|e| e.is_live())
            .map(|e| e.shared.subscribe_exit())?;
        Some(async move {
            loop {
                if let Some(exit) = rx.borrow_and_update().clone() {
                    return exit;
                }
                if rx.changed().await.is_err() {
                    return super::Exit::Failed("exit channel closed".into());
                }
            }
        })
    }

    /// Stops one actor and waits for it to end (killing it after the stop timeout).
    /// Returns `false` if no such actor runs here.
    pub async fn stop(&self, id: ActorId) -> bool {
        let cell = self
            .tables()
            .actors
            .get(&id)
            .map(|e| (e.cell.clone(), e.shared.clone()));
        let Some((cell, shared)) = cell else {
            return false;
        };
        stop_cell(cell, shared, self.inner.config.stop_timeout).await;
        true
    }

    /// Refuses new spawns, asks every actor to stop (newest first), waits for all of
    /// them up to the stop timeout, and kills any still running. Idempotent.
    ///
    /// Actors stop concurrently; use a supervisor where the order of shutdown matters
    /// (it stops its children one by one, newest first).
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, SeqCst);
        loop {
            let mut live: Vec<(u64, ractor::ActorCell, Arc<MailboxShared>)> = {
                let mut tables = self.tables();
                let live: Vec<_> = tables
                    .actors
                    .values()
                    .map(|e| (e.incarnation, e.cell.clone(), e.shared.clone()))
                    .collect();
                let newest = live.iter().map(|(i, _, _)| *i).max().unwrap_or(0);
                tables.draining = Some((newest, live.len()));
                live
            };
            if live.is_empty() {
                self.tables().draining = None;
                break;
            }
            live.sort_unstable_by_key(|(incarnation, _, _)| std::cmp::Reverse(*incarnation));
            for (_, cell, _) in &live {
                cell.stop(None);
            }
            // One wait for all of them: each leaving actor counts itself out of
            // `draining`, and the last one wakes this.
            let wait_all = async {
                loop {
                    let notified = self.inner.drained.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if self.tables().draining.is_none_or(|(_, left)| left == 0) {
                        break;
                    }
                    notified.await;
                }
            };
            if tokio::time::timeout(self.inner.config.stop_timeout, wait_all)
                .await
                .is_err()
            {
                for (_, cell, shared) in &live {
                    if !shared.is_closed() {
                        tracing::warn!(actor = ?cell.get_id(), "actor did not stop in time; killing it");
                        cell.kill();
                    }
                }
            }
            // Make progress even if a killed actor's guard has not run yet: every
            // actor this round stopped (none newer) leaves the table.
            let newest = live.first().map_or(0, |(incarnation, _, _)| *incarnation);
            drop(live);
            let mut tables = self.tables();
            let leftovers: Vec<(ActorId, u64)> = tables
                .actors
                .iter()
                .filter(|(_, e)| e.incarnation <= newest)
                .map(|(id, e)| (*id, e.incarnation))
                .collect();
            for (id, incarnation) in leftovers {
                tables.remove(id, incarnation);
            }
            tables.draining = None;
        }
    }

    /// Whether `shutdown` has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(SeqCst)
    }
}

async fn stop_cell(cell: ractor::ActorCell, shared: Arc<MailboxShared>, timeout: Duration) {
    if shared.is_closed() {
        return;
    }
    let mut exit = shared.subscribe_exit();
    cell.stop(None);
    let wait = async {
        while exit.borrow_and_update().is_none() {
            if exit.changed().await.is_err() {
                break;
            }
        }
    };
    if tokio::time::timeout(timeout, wait).await.is_err() {
        tracing::warn!(actor = ?cell.get_id(), "actor did not stop in time; killing it");
        cell.kill();
    }
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(RegistryError::InvalidName(name.to_string()));
    }
    Ok(())
}

fn startup_reason(err: ractor::SpawnErr) -> String {
    match err {
        ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

#[doc(hidden)]
pub fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<ActorSystem>();
}

impl std::fmt::Debug for ActorSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActorSystem({:?})", self.inner.config.node)
    }
}

impl KindArgs {
    /// Args holding only a config.
    pub fn config(config: serde_json::Value) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }
}
