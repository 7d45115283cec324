//! [`ActorSystem`]: one node's actors, names, groups and kinds.
//!
//! Everything here belongs to one system value; nothing is process-global. ractor's
//! own name registry and process groups are process-wide, so Plexus never gives
//! ractor a name and keeps its registry here instead: two systems in one process
//! (two nodes in a test, or a host embedding several) cannot see each other.

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::actor::{Actor, Host, HostParts};
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

/// One actor in the table. Kept small (the table is probed on every spawn and stop):
/// what the actor's mailbox already knows is read through its inbox, and labels are
/// boxed, since most actors have none.
struct Entry {
    incarnation: u64,
    /// Its `LocalMailbox<M>` with the counters, and delivery from other nodes if `M`
    /// has a wire form.
    inbox: Arc<dyn Inbox>,
    cell: ractor::ActorCell,
    labels: Option<Box<Labels>>,
}

/// An actor's registered name, the kind it was made from, and its process groups.
#[derive(Default)]
struct Labels {
    name: Option<String>,
    kind: Option<String>,
    groups: BTreeSet<String>,
}

impl Entry {
    fn is_live(&self) -> bool {
        !self.shared().is_closed()
            && !matches!(
                self.cell.get_status(),
                ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
            )
    }

    fn shared(&self) -> &MailboxShared {
        self.inbox.shared()
    }

    fn type_name(&self) -> &'static str {
        self.inbox.rust_type().0
    }

    fn name(&self) -> Option<&String> {
        self.labels.as_ref().and_then(|l| l.name.as_ref())
    }

    fn kind(&self) -> Option<&String> {
        self.labels.as_ref().and_then(|l| l.kind.as_ref())
    }

    fn groups(&self) -> impl Iterator<Item = &String> {
        self.labels.iter().flat_map(|l| l.groups.iter())
    }

    fn labels_mut(&mut self) -> &mut Labels {
        self.labels.get_or_insert_with(Box::default)
    }
}

/// How many locks the actor table is split over. Spawns, stops and lookups of
/// different actors mostly take different locks, so the workers ending actors and
/// the task spawning them rarely queue on one.
const SHARDS: usize = 16;

/// One shard of the actor table. A hash map, not a B-tree: an entry is large, and a
/// B-tree node moves its neighbours on every insert and remove. Nothing iterates it
/// in an order that is observable: listings sort by id, and shutdown by incarnation.
/// Hashed with foldhash (seeded per process): SipHash over a 40-byte id cost more
/// than the rest of the table's work.
#[allow(clippy::disallowed_types)]
type Shard = std::collections::HashMap<ActorId, Entry, foldhash::fast::RandomState>;

/// This node's names and process groups, each tagged with the incarnation of the
/// actor that took it, so that an old incarnation leaving never removes what a new
/// one of the same id (a restart, a migration arriving) has just taken.
#[derive(Default)]
struct Names {
    names: BTreeMap<String, (ActorId, u64)>,
    groups: BTreeMap<String, BTreeMap<ActorId, u64>>,
}

impl Names {
    /// Forgets the name and memberships incarnation `incarnation` of `id` held.
    fn forget(&mut self, id: ActorId, incarnation: u64, labels: &Labels) {
        if let Some(name) = &labels.name
            && self.names.get(name) == Some(&(id, incarnation))
        {
            self.names.remove(name);
        }
        for group in &labels.groups {
            if let Some(members) = self.groups.get_mut(group) {
                if members.get(&id) == Some(&incarnation) {
                    members.remove(&id);
                }
                if members.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
    }
}

pub(crate) struct SystemInner {
    config: SystemConfig,
    next_local: AtomicU64,
    next_incarnation: AtomicU64,
    /// The actors, by `ActorId::local` modulo [`SHARDS`]. Lock order: `names`
    /// before any shard, and never two shards at once.
    shards: [Mutex<Shard>; SHARDS],
    names: Mutex<Names>,
    /// Woken during a shutdown whenever a shard has become empty.
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

/// Recovers from a poisoned lock: a panic while one is held cannot leave a table
/// half-updated in a way that matters (each update is a few map operations whose
/// partial effect the next remove or insert corrects).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SystemInner {
    fn shard(&self, id: ActorId) -> MutexGuard<'_, Shard> {
        // `local` counts up on the minting node, so consecutive spawns spread evenly.
        lock(&self.shards[(id.local % SHARDS as u64) as usize])
    }

    fn names(&self) -> MutexGuard<'_, Names> {
        lock(&self.names)
    }

    /// Whether `id` runs here and has not begun to stop.
    fn is_live(&self, id: ActorId) -> bool {
        self.shard(id).get(&id).is_some_and(Entry::is_live)
    }

    /// Removes incarnation `incarnation` of `id`, with its names and memberships;
    /// does nothing if the table holds another incarnation or none.
    fn remove(&self, id: ActorId, incarnation: u64) {
        let (entry, emptied) = {
            let mut shard = self.shard(id);
            match shard.entry(id) {
                std::collections::hash_map::Entry::Occupied(e)
                    if e.get().incarnation == incarnation =>
                {
                    let entry = e.remove();
                    (entry, shard.is_empty())
                }
                _ => return,
            }
        };
        if let Some(labels) = &entry.labels {
            self.names().forget(id, incarnation, labels);
        }
        if emptied && self.shutting_down.load(SeqCst) {
            self.drained.notify_waiters();
        }
        // The entry (its mailbox handles) is dropped here, outside every lock.
    }

    /// Whether no actor is left in the table.
    fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| lock(shard).is_empty())
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
                shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
                names: Mutex::new(Names::default()),
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

    /// Removes incarnation `incarnation` of `id` from the table (its host ended).
    pub(crate) fn forget(&self, id: ActorId, incarnation: u64) {
        self.inner.remove(id, incarnation);
    }

    pub(crate) fn downgrade(&self) -> WeakSystem {
        WeakSystem(Arc::downgrade(&self.inner))
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
        if self.inner.is_live(id) {
            return Err(SpawnError::AlreadyRunning(id));
        }
        if let Some(name) = &opts.name {
            check_name(name)?;
            if let Some(&(holder, _)) = self.inner.names().names.get(name)
                && holder != id
            {
                return Err(RegistryError::NameTaken {
                    name: name.clone(),
                    holder,
                }
                .into());
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
        let host = Host(Box::new(HostParts {
            actor,
            id,
            incarnation,
            shared: shared.clone(),
            system: self.clone(),
            span,
            ctx: std::sync::OnceLock::new(),
        }));
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
        let labelled = opts.name.is_some() || opts.kind.is_some() || !opts.groups.is_empty();
        let entry = Entry {
            incarnation,
            inbox: Arc::new(TypedInbox {
                mailbox: mailbox.clone(),
                wire: <A::Msg as Message>::WIRE,
            }),
            cell: cell.clone(),
            labels: labelled.then(|| {
                Box::new(Labels {
                    name: opts.name.clone(),
                    kind: opts.kind.clone(),
                    groups: opts.groups.iter().cloned().collect(),
                })
            }),
        };
        let replaced = {
            // Names first, then the shard (the lock order); most spawns take no name.
            let mut names =
                (opts.name.is_some() || !opts.groups.is_empty()).then(|| self.inner.names());
            if let (Some(names), Some(name)) = (names.as_mut(), &opts.name) {
                match names.names.get(name) {
                    Some(&(holder, _)) if holder != id && self.inner.is_live(holder) => {
                        // (`stop` only posts a signal; holding the names lock is fine.)
                        cell.stop(Some("name taken".into()));
                        return Err(RegistryError::NameTaken {
                            name: name.clone(),
                            holder,
                        }
                        .into());
                    }
                    _ => {
                        names.names.insert(name.clone(), (id, incarnation));
                    }
                }
            }
            if let Some(names) = names.as_mut() {
                for group in &opts.groups {
                    names
                        .groups
                        .entry(group.clone())
                        .or_default()
                        .insert(id, incarnation);
                }
            }
            self.inner.shard(id).insert(id, entry)
        };
        // A previous incarnation that had ended but not yet left: forget what it held
        // (what this one took is tagged with the new incarnation and stays).
        if let Some(old) = replaced
            && let Some(labels) = &old.labels
        {
            self.inner.names().forget(id, old.incarnation, labels);
        }
        // A shutdown that began while this spawn was under way did not see it.
        if self.inner.shutting_down.load(SeqCst) {
            cell.stop(None);
        }
        // The actor may have ended before we inserted it; its host's drop then
        // found nothing to remove, so remove it here.
        if shared.is_closed() {
            self.inner.remove(id, incarnation);
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
        let shard = self.inner.shard(id);
        let entry = shard.get(&id).ok_or(LookupError::NotFound(id))?;
        entry
            .inbox
            .mailbox_any()
            .downcast_ref::<LocalMailbox<M>>()
            .cloned()
            .ok_or(LookupError::WrongType {
                id,
                actual: entry.type_name(),
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
        payload: &crate::codec::Bytes,
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
            self.inner
                .shard(target)
                .get(&target)
                .filter(|e| e.is_live())
                .map(|entry| match entry.inbox.message_type() {
                    Some(_) => Ok(entry.inbox.clone()),
                    None => Err(entry.type_name()),
                })
        };
        let inbox = match inbox {
            None => return refuse(Failure::NoSuchActor, reply),
            Some(Err(type_name)) => {
                let why = format!("`{type_name}` has no wire form; the actor is local-only");
                return refuse(Failure::Rejected(why), reply);
            }
            Some(Ok(inbox)) => inbox,
        };
        if inbox.message_type() != Some(message_type) {
            let failure = Failure::WrongType {
                expected: inbox.message_type().unwrap_or_default().to_string(),
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
        self.inner
            .shard(id)
            .get(&id)
            .filter(|e| e.is_live())
            .map(|e| e.cell.clone())
    }

    /// Whether an actor with this id runs here.
    pub fn contains(&self, id: ActorId) -> bool {
        self.inner.is_live(id)
    }

    /// The message type name of a local actor (used to check remote frames).
    pub fn message_type_of(&self, id: ActorId) -> Option<(&'static str, TypeId)> {
        self.inner.shard(id).get(&id).map(|e| e.inbox.rust_type())
    }

    /// Registers `name` for a running actor. Re-registering the same pair is a no-op.
    pub fn register(&self, name: &str, id: ActorId) -> Result<(), RegistryError> {
        check_name(name)?;
        let mut names = self.inner.names();
        let mut shard = self.inner.shard(id);
        let Some(entry) = shard.get_mut(&id) else {
            return Err(RegistryError::NoSuchActor(id));
        };
        if let Some(&(holder, _)) = names.names.get(name)
            && holder != id
        {
            return Err(RegistryError::NameTaken {
                name: name.to_string(),
                holder,
            });
        }
        names
            .names
            .insert(name.to_string(), (id, entry.incarnation));
        if let Some(old) = entry.labels_mut().name.replace(name.to_string())
            && old != name
        {
            names.names.remove(&old);
        }
        Ok(())
    }

    /// Removes a name. Returns the id it named.
    pub fn unregister(&self, name: &str) -> Option<ActorId> {
        let mut names = self.inner.names();
        let (id, incarnation) = names.names.remove(name)?;
        if let Some(entry) = self.inner.shard(id).get_mut(&id)
            && entry.incarnation == incarnation
            && let Some(labels) = entry.labels.as_mut()
        {
            labels.name = None;
        }
        Some(id)
    }

    /// The id registered under `name` on this node.
    pub fn whereis(&self, name: &str) -> Option<ActorId> {
        self.inner.names().names.get(name).map(|&(id, _)| id)
    }

    /// A typed ref to the actor registered under `name` on this node.
    pub fn whereis_typed<M: Message>(&self, name: &str) -> Option<ActorRef<M>> {
        let id = self.whereis(name)?;
        self.lookup(id).ok()
    }

    /// Adds a running actor to a process group.
    pub fn join_group(&self, group: &str, id: ActorId) -> Result<(), RegistryError> {
        check_name(group)?;
        let mut names = self.inner.names();
        let mut shard = self.inner.shard(id);
        let entry = shard.get_mut(&id).ok_or(RegistryError::NoSuchActor(id))?;
        entry.labels_mut().groups.insert(group.to_string());
        names
            .groups
            .entry(group.to_string())
            .or_default()
            .insert(id, entry.incarnation);
        Ok(())
    }

    /// Removes an actor from a process group.
    pub fn leave_group(&self, group: &str, id: ActorId) {
        let mut names = self.inner.names();
        if let Some(entry) = self.inner.shard(id).get_mut(&id)
            && let Some(labels) = entry.labels.as_mut()
        {
            labels.groups.remove(group);
        }
        if let Some(members) = names.groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                names.groups.remove(group);
            }
        }
    }

    /// The members of a process group on this node, in id order.
    pub fn group_members(&self, group: &str) -> Vec<ActorId> {
        self.inner
            .names()
            .groups
            .get(group)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The process groups with at least one member on this node.
    pub fn groups(&self) -> Vec<String> {
        self.inner.names().groups.keys().cloned().collect()
    }

    /// A listing of the actors running here, in id order.
    pub fn actors(&self) -> Vec<ActorInfo> {
        let mut all = Vec::new();
        for shard in &self.inner.shards {
            all.extend(
                lock(shard)
                    .iter()
                    .filter(|(_, e)| e.is_live())
                    .map(|(id, e)| ActorInfo {
                        id: *id,
                        name: e.name().cloned(),
                        kind: e.kind().cloned(),
                        message_type: e.type_name().to_string(),
                        mailbox_depth: e.shared().depth(),
                        mailbox_capacity: e.shared().capacity(),
                        handled: e
                            .shared()
                            .handled
                            .load(std::sync::atomic::Ordering::Relaxed),
                        groups: e.groups().cloned().collect(),
                    }),
            );
        }
        all.sort_unstable_by_key(|info| info.id);
        all
    }

    /// How many actors run here.
    pub fn actor_count(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).values().filter(|e| e.is_live()).count())
            .sum()
    }

    /// Waits for a local actor (of any message type) to end and says how. `None` if
    /// no such actor runs here.
    pub fn exit_of(
        &self,
        id: ActorId,
    ) -> Option<impl std::future::Future<Output = super::Exit> + Send + 'static> {
        let shared = self
            .inner
            .shard(id)
            .get(&id)
            .filter(|e| e.is_live())
            .map(|e| e.inbox.shared().clone())?;
        Some(async move { shared.exited().await })
    }

    /// Stops one actor and waits for it to end (killing it after the stop timeout).
    /// Returns `false` if no such actor runs here.
    pub async fn stop(&self, id: ActorId) -> bool {
        let cell = self
            .inner
            .shard(id)
            .get(&id)
            .map(|e| (e.cell.clone(), e.inbox.shared().clone()));
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
            let mut live: Vec<(u64, ractor::ActorCell)> = Vec::new();
            let mut ids: Vec<(u64, ActorId)> = Vec::new();
            for shard in &self.inner.shards {
                for (id, e) in lock(shard).iter() {
                    live.push((e.incarnation, e.cell.clone()));
                    ids.push((e.incarnation, *id));
                }
            }
            if live.is_empty() {
                break;
            }
            // Newest first. Beyond the promise, the order matters for speed: actors
            // ending in spawn order (or its reverse) free memory next to memory just
            // freed, where the table's order would send the allocator and the task
            // list all over the heap (stopping 10,000 actors took twice as long in
            // hash order).
            let live = newest_first(live);
            for cell in &live {
                cell.stop(None);
            }
            // One wait for all of them: the last entry to leave the table wakes this.
            // (A spawn that raced past the shutting-down check stops itself, so it
            // cannot hold the count up.)
            let wait_all = async {
                loop {
                    let notified = self.inner.drained.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if self.inner.is_empty() {
                        break;
                    }
                    notified.await;
                }
            };
            if tokio::time::timeout(self.inner.config.stop_timeout, wait_all)
                .await
                .is_err()
            {
                for (incarnation, id) in &ids {
                    let running = self
                        .inner
                        .shard(*id)
                        .get(id)
                        .filter(|e| e.incarnation == *incarnation && !e.shared().is_closed())
                        .map(|e| e.cell.clone());
                    if let Some(cell) = running {
                        tracing::warn!(actor = %id, "actor did not stop in time; killing it");
                        cell.kill();
                    }
                }
            }
            // Make progress even if a killed actor's host has not been dropped yet: every
            // actor this round stopped leaves the table.
            drop(live);
            if !self.inner.is_empty() {
                for (incarnation, id) in ids {
                    self.inner.remove(id, incarnation);
                }
            }
        }
    }

    /// Whether `shutdown` has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(SeqCst)
    }
}

/// Orders cells by incarnation, newest first: in one pass when the incarnations are
/// dense (they count up per spawn, so a system's live actors usually are), by
/// sorting otherwise.
fn newest_first<T>(mut live: Vec<(u64, T)>) -> Vec<T> {
    let lowest = live.iter().map(|(i, _)| *i).min().unwrap_or(0);
    let highest = live.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let span = highest.saturating_sub(lowest).saturating_add(1);
    if span <= 4 * live.len() as u64 {
        let mut slots: Vec<Option<T>> = (0..span).map(|_| None).collect();
        // Incarnations are unique; anything that would share a slot still gets
        // its stop, after the others.
        let mut rest = Vec::new();
        for (incarnation, cell) in live {
            match slots.get_mut((incarnation - lowest) as usize) {
                Some(slot @ None) => *slot = Some(cell),
                _ => rest.push(cell),
            }
        }
        slots.into_iter().rev().flatten().chain(rest).collect()
    } else {
        live.sort_unstable_by_key(|(incarnation, _)| std::cmp::Reverse(*incarnation));
        live.into_iter().map(|(_, cell)| cell).collect()
    }
}

async fn stop_cell(cell: ractor::ActorCell, shared: Arc<MailboxShared>, timeout: Duration) {
    if shared.is_closed() {
        return;
    }
    cell.stop(None);
    if tokio::time::timeout(timeout, shared.exited())
        .await
        .is_err()
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_are_ordered_newest_first_whether_incarnations_are_dense_or_not() {
        let dense = vec![(12, 'b'), (10, 'd'), (13, 'a'), (11, 'c')];
        assert_eq!(newest_first(dense), vec!['a', 'b', 'c', 'd']);
        // Too sparse for the one-pass order: sorted instead.
        let sparse = vec![(5, 'c'), (1_000_000, 'a'), (70, 'b')];
        assert_eq!(newest_first(sparse), vec!['a', 'b', 'c']);
        // Incarnations never repeat, but if they did, nothing would be dropped.
        let repeated = vec![(3, 'x'), (4, 'y'), (3, 'z')];
        let ordered = newest_first(repeated);
        assert_eq!(ordered.len(), 3);
        assert_eq!(ordered.first(), Some(&'y'));
        assert!(newest_first(Vec::<(u64, char)>::new()).is_empty());
    }

    #[test]
    fn an_old_incarnation_leaving_keeps_what_the_new_one_took() {
        let id = ActorId::new(NodeId::synthetic(1), 40);
        let labels = Labels {
            name: Some("svc".into()),
            kind: None,
            groups: ["g".to_string()].into_iter().collect(),
        };
        let mut names = Names::default();
        // Incarnation 2 of the same id (a restart, a migration arriving) took the
        // name and the group before incarnation 1 left the table.
        names.names.insert("svc".into(), (id, 2));
        names.groups.entry("g".into()).or_default().insert(id, 2);
        names.forget(id, 1, &labels);
        assert_eq!(names.names.get("svc"), Some(&(id, 2)));
        assert_eq!(names.groups.get("g").map(|m| m.get(&id)), Some(Some(&2)));
        // Incarnation 2 leaving takes both with it, and the empty group goes.
        names.forget(id, 2, &labels);
        assert!(names.names.is_empty());
        assert!(names.groups.is_empty());
    }
}
