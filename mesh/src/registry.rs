//! The cluster registry: names mapped to actor locations, replicated by gossip as a
//! convergent CRDT.
//!
//! # Data model
//!
//! Every `(name, node)` pair is a register written only by that node: the node's
//! *claim* on the name, with the actor it names, a write `version` and a `removed`
//! flag (a tombstone). Replicas merge a claim by keeping the higher version, so the
//! state is a map of single-writer registers: merge is commutative, associative and
//! idempotent, and every replica that has seen the same claims agrees.
//!
//! # Which claim wins a name
//!
//! A claim also carries the Lamport time at which the name was first claimed. Of the
//! live claims on a name, the one with the smallest `(lamport, node id)` wins: the
//! earliest claim, ties broken by node id — unless claims carry a *rank*: a higher
//! rank wins first ([`Registry::register_ranked`]). Durable actors register under
//! their activation's ballot round as rank, so the newest activation's claim wins
//! as soon as a replica hears it, whatever order claims and withdrawals arrive in.
//! This is a pure function of the state, so
//! all replicas pick the same winner. When two nodes claim a name concurrently, the
//! loser sees a [`RegistryEvent::ConflictLost`] and should unregister (the daemon
//! does); its actor keeps running, unnamed. A node's re-registration of a name it
//! already holds (say, its actor restarted) keeps the original Lamport time, so it
//! keeps its precedence.
//!
//! # Dead nodes and stale claims
//!
//! When membership declares a node dead, every replica drops that node's claims and
//! ignores claims from it while it is down, so its entries disappear within the
//! failure-detection bound. A node is the authority on its own claims: if a replica
//! offers it a claim in its name that it does not hold (left over from before a
//! restart, whose versions this life counts from 1 again), it answers at a higher
//! version with what it holds now: its live claim on the name if it has one (a
//! restarted node's actor named again keeps its name), a tombstone otherwise.
//!
//! # Who may claim what (trust)
//!
//! A claim is signed by its claimant ([`Claim::sign`], domain [`CLAIM_DOMAIN`]) over
//! every field. A replica with a key ([`Registry::with_key`], as the [`Cluster`]
//! builds it) signs its own claims and merges another node's claim only with that
//! node's valid signature, so no node can claim, withdraw or move a name in another
//! node's name; a replay of an old claim loses to the newer version already held.
//! Versions, Lamport times and ranks are bounded per message: a claim whose version
//! is more than [`VERSION_STEP_MAX`] above the one held (or a first one above
//! [`VERSION_MAX`]), whose Lamport time is more than [`VERSION_STEP_MAX`] above this
//! replica's clock,
//! or whose rank is more than [`RANK_STEP_MAX`] above the highest rank held on the
//! name, is refused, and every version rise is checked arithmetic: `u64::MAX` cannot
//! wedge a name. Refusals are counted by reason ([`Registry::refused`]).
//!
//! What signatures cannot stop: an admitted node may still claim, in its own name, a
//! name nobody holds, or a name at a rank one above the holder's (ranks are durable
//! ballot rounds, which the registry cannot check); such a claim is attributable to
//! its signer.
//!
//! [`Cluster`]: crate::cluster::Cluster
//!
//! # Full replicas or shards
//!
//! With [`RegistryConfig::owners`] 0 (the default) every node is a full replica:
//! claims spread by piggybacked gossip and full syncs. With `owners = r`, the
//! registry is sharded: a name's claims are held by its `r` owners
//! ([`crate::owners`]), by their claimants, and by the nodes that look the name
//! up; the [`Cluster`] routes claims to them instead of gossiping them. The merge
//! rules above are the same in both modes: a replica here is whatever this node
//! holds, and [`Registry::take_changed`] tells the cluster what to route.
//!
//! # Bounds
//!
//! At most `names_max` claims are kept (further claims are refused with a counter);
//! tombstones are forgotten after `tombstone_retention`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::{ActorId, NodeId, Time};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::broadcast::BroadcastQueue;
use crate::sig::SigBytes;
use crate::table::{Keyed, Table};
use plexus_vocab::identity::{NodeKey, SigCheck};

/// Longest name accepted, in bytes.
pub const NAME_BYTES_MAX: usize = 256;

/// Domain of a claimant's signature over its claim.
pub const CLAIM_DOMAIN: &[u8] = b"plexus/mesh/claim/v1";

/// Domain of the signature a replica seeds its hashed tables with (never sent).
const TABLE_SEED_DOMAIN: &[u8] = b"plexus/mesh/table-seed/v1";

/// Largest rise of a claim's version over the version held, in one message.
pub const VERSION_STEP_MAX: u64 = 1 << 32;

/// Largest version of a claim not held yet.
pub const VERSION_MAX: u64 = 1 << 62;

/// Largest rise of a claim's rank over the highest rank held on its name.
pub const RANK_STEP_MAX: u64 = 1 << 32;

/// Why a claim from another replica was refused. Its sender (or whoever it relayed)
/// is at fault; the claim is dropped and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimRefused {
    /// Not signed by the node it names as claimant.
    #[error("a claim not signed by its claimant")]
    Forged,
    /// The version jumps more than the bound.
    #[error("the claim's version jumps past the bound")]
    VersionJump,
    /// The rank jumps more than the bound.
    #[error("the claim's rank jumps past the bound")]
    RankJump,
    /// Empty or too long a name.
    #[error("an invalid name")]
    InvalidName,
    /// The claimant is not admitted.
    #[error("the claimant is not admitted")]
    NotAdmitted,
}

/// Refused claims, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimRefusals {
    /// [`ClaimRefused::Forged`].
    pub forged: u64,
    /// [`ClaimRefused::VersionJump`].
    pub version_jump: u64,
    /// [`ClaimRefused::RankJump`].
    pub rank_jump: u64,
    /// [`ClaimRefused::InvalidName`].
    pub invalid_name: u64,
    /// [`ClaimRefused::NotAdmitted`].
    pub not_admitted: u64,
}

impl ClaimRefusals {
    /// Counts one refusal.
    pub fn count(&mut self, why: ClaimRefused) {
        match why {
            ClaimRefused::Forged => self.forged += 1,
            ClaimRefused::VersionJump => self.version_jump += 1,
            ClaimRefused::RankJump => self.rank_jump += 1,
            ClaimRefused::InvalidName => self.invalid_name += 1,
            ClaimRefused::NotAdmitted => self.not_admitted += 1,
        }
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.forged + self.version_jump + self.rank_jump + self.invalid_name + self.not_admitted
    }
}

/// A node's claim on a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The name (shared: claims are cloned into every piggybacked message).
    pub name: Arc<str>,
    /// The claimant, sole writer of this claim.
    pub node: NodeId,
    /// The actor the name points to.
    pub actor: ActorId,
    /// Lamport time of the first claim; earlier claims win.
    pub lamport: u64,
    /// Precedence over the Lamport order: the highest rank wins (0 for plain
    /// names).
    pub rank: u64,
    /// The claimant's write counter for this claim; higher replaces lower.
    pub version: u64,
    /// A tombstone.
    pub removed: bool,
    /// The claimant's signature over every other field, domain [`CLAIM_DOMAIN`].
    #[serde(default)]
    pub sig: SigBytes,
}

impl Claim {
    fn signed_bytes(&self) -> Vec<u8> {
        // Sized for a claim at once, not grown byte by byte.
        let mut out = Vec::with_capacity(128);
        let fields = (
            &*self.name,
            self.node,
            self.actor,
            self.lamport,
            self.rank,
            self.version,
            self.removed,
        );
        match plexus_actors::codec::encode_body_into(&fields, &mut out) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    /// Signs the claim with `key` (the claimant's).
    pub fn sign(mut self, key: &NodeKey) -> Self {
        self.sig = key.sign(CLAIM_DOMAIN, &self.signed_bytes()).to_vec().into();
        self
    }

    /// Whether the claim carries its claimant's valid signature.
    pub fn verify(&self) -> bool {
        self.verify_with(&SigCheck::Direct)
    }

    /// [`Claim::verify`], through `check`.
    pub fn verify_with(&self, check: &SigCheck) -> bool {
        !self.sig.is_empty()
            && check
                .verify(&self.node, CLAIM_DOMAIN, &self.signed_bytes(), &self.sig)
                .is_ok()
    }
}

/// Where a name points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The node hosting the actor.
    pub node: NodeId,
    /// The actor.
    pub actor: ActorId,
}

/// Changes of what names resolve to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryEvent {
    /// `name` now resolves to `location`.
    Bound {
        /// The name.
        name: String,
        /// Where it points.
        location: Location,
    },
    /// `name` no longer resolves.
    Unbound {
        /// The name.
        name: String,
    },
    /// A sharded registry stopped holding `name`: this node neither owns, claims
    /// nor looks it up any more. It is not unbound; this node just no longer knows.
    Forgotten {
        /// The name.
        name: String,
    },
    /// This node's claim on `name` lost to an earlier claim elsewhere.
    ConflictLost {
        /// The name.
        name: String,
        /// This node's actor that was named.
        actor: ActorId,
        /// The winning location.
        winner: Location,
    },
}

/// Registry misuse by the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Empty or longer than [`NAME_BYTES_MAX`].
    #[error("invalid name `{0}`")]
    InvalidName(String),
    /// Already resolves to an actor on another node.
    #[error("`{name}` is registered to {holder:?}")]
    Taken {
        /// The name.
        name: String,
        /// Its current holder.
        holder: Location,
    },
    /// `names_max` claims are held already.
    #[error("the registry is full ({0} claims)")]
    Full(usize),
    /// This node's claim on the name is at version `u64::MAX` (unreachable by honest
    /// use: versions rise by one per write, and others' bumps are bounded).
    #[error("the claim on `{0}` has no version left")]
    VersionExhausted(String),
}

/// Registry tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistryConfig {
    /// Most claims held (live and tombstones).
    pub names_max: usize,
    /// Tombstones are forgotten after this long.
    pub tombstone_retention: Duration,
    /// Piggyback transmissions per claim, times `ceil(log2(n+1))`.
    pub retransmit_mult: u32,
    /// Owners per name: 0 keeps a full replica on every node; `r` (at most
    /// [`crate::owners::OWNERS_MAX`]) shards the registry over `r` owners per
    /// name ([`crate::owners`]).
    #[serde(default)]
    pub owners: u32,
    /// Sharded: most names a node keeps asking owners about for its lookups
    /// (further lookups of unknown names miss, and are counted).
    #[serde(default = "watch_max_default")]
    pub watch_max: usize,
    /// Sharded: most `(name, asker)` watches an owner keeps (further asks are
    /// answered but not followed by pushes, and are counted).
    #[serde(default = "watchers_max_default")]
    pub watchers_max: usize,
    /// Sharded: how often a node asks the owners again about the names it looks
    /// up, and re-sends its own claims to the owners of their names.
    #[serde(default = "watch_refresh_default")]
    pub watch_refresh: Duration,
    /// Sharded: a name not looked up for this long is no longer asked about.
    #[serde(default = "watch_idle_default")]
    pub watch_idle: Duration,
}

fn watch_max_default() -> usize {
    4096
}

fn watchers_max_default() -> usize {
    65_536
}

fn watch_refresh_default() -> Duration {
    Duration::from_secs(30)
}

fn watch_idle_default() -> Duration {
    Duration::from_secs(300)
}

impl RegistryConfig {
    /// Whether the registry is sharded (`owners > 0`).
    pub fn sharded(&self) -> bool {
        self.owners > 0
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            names_max: 100_000,
            tombstone_retention: Duration::from_secs(600),
            // Names are not failure detection: each node forwards a claim
            // 2·ceil(log2(n+1)) times (20 at a thousand nodes), and anti-entropy
            // syncs repair any node the epidemic misses.
            retransmit_mult: 2,
            owners: 0,
            watch_max: watch_max_default(),
            watchers_max: watchers_max_default(),
            watch_refresh: watch_refresh_default(),
            watch_idle: watch_idle_default(),
        }
    }
}

/// The claims on one name, sorted by node. Almost always one, so it is held inline
/// (in the registry's dense table, a walk or lookup reaches it without another
/// pointer) and a second spills to the heap: a B-tree node per name cost ten times
/// the memory.
#[derive(Clone, Debug, Default)]
struct Claimants(SmallVec<[(NodeId, ClaimState); 1]>);

impl Claimants {
    fn position(&self, node: &NodeId) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.cmp(node))
    }

    fn get(&self, node: &NodeId) -> Option<&ClaimState> {
        self.position(node).ok().map(|i| &self.0[i].1)
    }

    fn contains_key(&self, node: &NodeId) -> bool {
        self.position(node).is_ok()
    }

    /// Inserts or replaces; returns the old state.
    fn insert(&mut self, node: NodeId, state: ClaimState) -> Option<ClaimState> {
        match self.position(&node) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, state)),
            Err(i) => {
                // Grow one at a time: most names have a single claimant forever.
                self.0.reserve_exact(1);
                self.0.insert(i, (node, state));
                None
            }
        }
    }

    fn remove(&mut self, node: &NodeId) -> Option<ClaimState> {
        self.position(node).ok().map(|i| self.0.remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&NodeId, &ClaimState)> {
        self.0.iter().map(|(n, s)| (n, s))
    }

    fn retain(&mut self, mut keep: impl FnMut(&NodeId, &ClaimState) -> bool) {
        self.0.retain(|(n, s)| keep(n, s));
    }
}

/// A name and its claims: an entry of the registry's [`Table`].
#[derive(Debug)]
struct Named {
    name: Arc<str>,
    claimants: Claimants,
}

impl Keyed for Named {
    type Key = str;
    fn key(&self) -> &str {
        &self.name
    }
}

#[derive(Clone, Debug)]
struct ClaimState {
    actor: ActorId,
    lamport: u64,
    rank: u64,
    version: u64,
    removed: bool,
    changed_at: Time,
    sig: SigBytes,
}

impl ClaimState {
    fn to_claim(&self, name: Arc<str>, node: NodeId) -> Claim {
        Claim {
            name,
            node,
            actor: self.actor,
            lamport: self.lamport,
            rank: self.rank,
            version: self.version,
            removed: self.removed,
            sig: self.sig.clone(),
        }
    }
}

/// One replica of the registry.
pub struct Registry {
    me: NodeId,
    /// Signs this node's claims; with it, others' claims must carry their signature.
    key: Option<NodeKey>,
    /// How others' signatures are checked.
    sig_check: SigCheck,
    /// [`Registry::sync_digest`] while `claims` is unchanged; every write clears it.
    digest: Option<[u8; 32]>,
    refused: ClaimRefusals,
    config: RegistryConfig,
    clock: u64,
    /// The claims by name: found by hash (every gossiped claim is looked up),
    /// walked in name order (snapshots, digests).
    claims: Table<Named>,
    /// Tombstones held, so the collector only runs when there is something to collect.
    tombstones: usize,
    count: usize,
    gossip: BroadcastQueue<(Arc<str>, NodeId), Claim>,
    /// Sharded: the claims stored since [`Registry::take_changed`], by name and
    /// claimant, for the cluster to route (a full replica gossips them instead).
    changed: Vec<(Arc<str>, NodeId)>,
    events: VecDeque<RegistryEvent>,
    refused_full: u64,
}

impl Registry {
    /// An empty replica.
    pub fn new(me: NodeId, config: RegistryConfig) -> Self {
        let gossip =
            BroadcastQueue::new(config.retransmit_mult, config.names_max.clamp(16, 65_536));
        Self {
            me,
            key: None,
            sig_check: SigCheck::Direct,
            digest: None,
            refused: ClaimRefusals::default(),
            config,
            clock: 0,
            claims: Table::default(),
            tombstones: 0,
            count: 0,
            gossip,
            changed: Vec::new(),
            events: VecDeque::new(),
            refused_full: 0,
        }
    }

    /// A replica that signs its claims with `key` and merges only claims signed by
    /// their claimant (the mesh's registry; [`Registry::new`] trusts its caller and
    /// suits single-process tests only).
    pub fn with_key(key: NodeKey, config: RegistryConfig) -> Self {
        let mut this = Self::new(key.node_id(), config);
        // Names are chosen by the claimants, so the tables that hash them take a
        // seed no other node knows (see `table`): the node's own signature over a
        // fixed message, the same in every replay.
        let [a, b, c, d, e, f, g, h, ..] = key.sign(TABLE_SEED_DOMAIN, b"registry");
        let seed = u64::from_le_bytes([a, b, c, d, e, f, g, h]);
        this.claims = Table::with_seed(seed);
        this.gossip = BroadcastQueue::with_seed(
            this.config.retransmit_mult,
            this.config.names_max.clamp(16, 65_536),
            seed,
        );
        this.key = Some(key);
        this
    }

    /// Checks signatures through `check` (a memo shared by the simulator's nodes).
    pub fn set_sig_check(&mut self, check: SigCheck) {
        self.sig_check = check;
    }

    /// The settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Claims from other replicas refused, by reason.
    pub fn refused(&self) -> ClaimRefusals {
        self.refused
    }

    /// Counts a claim refused by the caller (for a reason the registry cannot see).
    pub fn count_refused(&mut self, why: ClaimRefused) {
        self.refused.count(why);
    }

    /// Where `name` resolves, if anywhere.
    pub fn lookup(&self, name: &str) -> Option<Location> {
        winner(&self.claims.get(name)?.claimants)
    }

    /// Where `name` resolves if any claim on it is held (`Some(None)`: held, only
    /// tombstones); `None` if none is held. One probe where [`Registry::holds`]
    /// and [`Registry::lookup`] would take two.
    pub fn lookup_held(&self, name: &str) -> Option<Option<Location>> {
        self.claims.get(name).map(|n| winner(&n.claimants))
    }

    /// Whether any claim on `name` is held (a tombstone counts).
    pub fn holds(&self, name: &str) -> bool {
        self.claims.contains_key(name)
    }

    /// Whether this node has a claim on `name` (a tombstone counts).
    pub fn claims_own(&self, name: &str) -> bool {
        self.claims
            .get(name)
            .is_some_and(|n| n.claimants.contains_key(&self.me))
    }

    /// The names held, in order.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.claims.values().map(|n| &n.name)
    }

    /// Every claim held on `name`, tombstones included, by claimant.
    pub fn claims_on(&self, name: &str) -> Vec<Claim> {
        let Some(named) = self.claims.get(name) else {
            return Vec::new();
        };
        named
            .claimants
            .iter()
            .map(|(node, s)| s.to_claim(named.name.clone(), *node))
            .collect()
    }

    /// This node's claim on `name`, tombstone or not.
    pub fn own_claim(&self, name: &str) -> Option<Claim> {
        self.claim_of(name, self.me)
    }

    /// Sharded: the `(name, claimant)` of each claim stored since the last call, in
    /// the order stored (repeats removed), for the cluster to route.
    pub fn take_changed(&mut self) -> Vec<(Arc<str>, NodeId)> {
        let mut changed = std::mem::take(&mut self.changed);
        let mut seen = std::collections::BTreeSet::new();
        changed.retain(|(name, node)| seen.insert((name.clone(), *node)));
        changed
    }

    /// Sharded: drops every claim on `name` without a trace (no tombstone): this
    /// node no longer owns, claims or looks up the name. A [`RegistryEvent::Forgotten`]
    /// follows if it resolved. Returns whether anything was held.
    pub fn forget(&mut self, name: &str) -> bool {
        let Some(named) = self.claims.remove(name) else {
            return false;
        };
        self.digest = None;
        self.count -= named.claimants.len();
        self.tombstones -= named.claimants.iter().filter(|(_, s)| s.removed).count();
        if winner(&named.claimants).is_some() {
            self.events.push_back(RegistryEvent::Forgotten {
                name: name.to_string(),
            });
        }
        true
    }

    /// Every bound name and its location, in name order.
    pub fn entries(&self) -> Vec<(String, Location)> {
        self.claims
            .values()
            .filter_map(|n| winner(&n.claimants).map(|l| (n.name.to_string(), l)))
            .collect()
    }

    /// Every bound name and its location, borrowed (no allocation).
    pub fn locations(&self) -> impl Iterator<Item = (&str, Location)> {
        self.claims
            .values()
            .filter_map(|n| winner(&n.claimants).map(|l| (&*n.name, l)))
    }

    /// Names bound to actors on `node`.
    pub fn names_on(&self, node: &NodeId) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|(_, l)| l.node == *node)
            .map(|(n, _)| n)
            .collect()
    }

    /// Claims held, tombstones included.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no claims are held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Claims refused because the registry was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full
    }

    /// Claims this node makes that are not tombstones.
    pub fn my_claims(&self) -> Vec<Claim> {
        self.snapshot()
            .into_iter()
            .filter(|c| c.node == self.me && !c.removed)
            .collect()
    }

    /// Every claim, for a full-state sync.
    pub fn snapshot(&self) -> Vec<Claim> {
        let mut out = Vec::with_capacity(self.count);
        for Named {
            name, claimants, ..
        } in self.claims.values()
        {
            for (node, s) in claimants.iter() {
                out.push(s.to_claim(name.clone(), *node));
            }
        }
        out
    }

    /// A digest of [`Registry::snapshot`]: every claim's `(name, node, version)`
    /// in order. A claim's version names its content (one signed writer per
    /// claim), so two replicas with equal digests would learn nothing from each
    /// other's snapshots. Cached until the claims change; computing it is one
    /// pass over the claims into one buffer, hashed at once.
    pub fn sync_digest(&mut self) -> [u8; 32] {
        if let Some(d) = self.digest {
            return d;
        }
        let d = self.compute_digest();
        self.digest = Some(d);
        d
    }

    fn compute_digest(&self) -> [u8; 32] {
        self.walk_claims(|_| {})
    }

    /// The sync digest, computed in one walk over the claims that also shows each
    /// claimant set to `visit` (the invariant check counts them in the same pass:
    /// the claims of a thousand names are scattered over the heap, and each walk
    /// costs a cache miss per set).
    fn walk_claims(&self, mut visit: impl FnMut(&Claimants)) -> [u8; 32] {
        // One buffer hashed at once (see `Membership::view_digest`).
        let mut buf = Vec::with_capacity(self.count * 64);
        for Named {
            name, claimants, ..
        } in self.claims.values()
        {
            visit(claimants);
            for (node, s) in claimants.iter() {
                buf.extend_from_slice(&(name.len() as u64).to_le_bytes());
                buf.extend_from_slice(name.as_bytes());
                buf.extend_from_slice(&node.to_bytes());
                buf.extend_from_slice(&s.version.to_le_bytes());
            }
        }
        blake3::hash(&buf).into()
    }

    /// Claims `name` for `actor` on this node.
    pub fn register(
        &mut self,
        now: Time,
        name: &str,
        actor: ActorId,
    ) -> Result<Claim, RegistryError> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return Err(RegistryError::InvalidName(name.to_string()));
        }
        if let Some(holder) = self.lookup(name)
            && holder.node != self.me
        {
            return Err(RegistryError::Taken {
                name: name.to_string(),
                holder,
            });
        }
        self.claim(now, name, actor, 0)
    }

    /// Claims `name` with precedence `rank`: the live claim with the highest rank
    /// wins, whoever else holds the name (a claim of equal rank falls back to the
    /// Lamport order). Re-registering with another rank or actor replaces this
    /// node's claim.
    pub fn register_ranked(
        &mut self,
        now: Time,
        name: &str,
        actor: ActorId,
        rank: u64,
    ) -> Result<Claim, RegistryError> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return Err(RegistryError::InvalidName(name.to_string()));
        }
        self.claim(now, name, actor, rank)
    }

    fn claim(
        &mut self,
        now: Time,
        name: &str,
        actor: ActorId,
        rank: u64,
    ) -> Result<Claim, RegistryError> {
        let existing = self
            .claims
            .get(name)
            .and_then(|n| n.claimants.get(&self.me))
            .cloned();
        if let Some(e) = &existing
            && !e.removed
            && e.actor == actor
            && e.rank == rank
        {
            return Ok(self
                .claim_of(name, self.me)
                .unwrap_or_else(|| unreachable_claim(name, self.me)));
        }
        if existing.is_none() && self.count >= self.config.names_max {
            self.refused_full += 1;
            return Err(RegistryError::Full(self.count));
        }
        let lamport = match &existing {
            Some(e) if !e.removed => e.lamport,
            _ => {
                self.clock = self.clock.saturating_add(1);
                self.clock
            }
        };
        let version = match existing {
            None => 1,
            Some(e) => e
                .version
                .checked_add(1)
                .ok_or_else(|| RegistryError::VersionExhausted(name.to_string()))?,
        };
        let claim = self.signed(Claim {
            name: Arc::from(name),
            node: self.me,
            actor,
            lamport,
            rank,
            version,
            removed: false,
            sig: SigBytes::default(),
        });
        self.store(now, claim.clone(), true);
        Ok(claim)
    }

    /// Withdraws this node's claim on `name`. Returns whether there was one.
    pub fn unregister(&mut self, now: Time, name: &str) -> bool {
        let Some(e) = self
            .claims
            .get(name)
            .and_then(|n| n.claimants.get(&self.me))
            .cloned()
        else {
            return false;
        };
        if e.removed {
            return false;
        }
        let Some(version) = e.version.checked_add(1) else {
            return false;
        };
        let claim = self.signed(Claim {
            name: Arc::from(name),
            node: self.me,
            actor: e.actor,
            lamport: e.lamport,
            rank: e.rank,
            version,
            removed: true,
            sig: SigBytes::default(),
        });
        self.store(now, claim, true);
        true
    }

    fn signed(&self, claim: Claim) -> Claim {
        match &self.key {
            Some(key) => claim.sign(key),
            None => claim,
        }
    }

    /// Whether `claim` would change this replica (a version newer than the one held
    /// from its claimant), before any check of who sent it.
    pub fn is_news(&self, claim: &Claim) -> bool {
        let held = self
            .claims
            .get(&claim.name)
            .and_then(|n| n.claimants.get(&claim.node));
        self.news_given(held, claim)
    }

    fn news_given(&self, held: Option<&ClaimState>, claim: &Claim) -> bool {
        match held {
            Some(held) => claim.version > held.version,
            None => claim.node != self.me || !claim.removed,
        }
    }

    /// [`Registry::is_news`] of each claim of a full-state sync, found in one walk
    /// alongside this replica's claims rather than one lookup per claim (with names
    /// in a B-tree, merging the syncs of 1,000 nodes joining at once spent a seventh
    /// of its time looking them up; with names hashed, lookups instead of the walk
    /// still made a 2,000-node join 1–4% slower). `None` unless the claims are in [`Registry::snapshot`]'s order,
    /// strictly ascending by name and node; a peer may send any order, and then
    /// each claim is looked up.
    pub fn news_in_snapshot(&self, claims: &[Claim]) -> Option<Vec<bool>> {
        let ascending = claims
            .windows(2)
            .all(|w| (&*w[0].name, w[0].node) < (&*w[1].name, w[1].node));
        if !ascending {
            return None;
        }
        let mut ours = self.claims.values().peekable();
        let news = claims
            .iter()
            .map(|claim| {
                while ours.next_if(|n| *n.name < *claim.name).is_some() {}
                let held = ours
                    .peek()
                    .filter(|n| *n.name == *claim.name)
                    .and_then(|n| n.claimants.get(&claim.node));
                self.news_given(held, claim)
            })
            .collect();
        Some(news)
    }

    /// Merges a claim heard from another replica. `claimant_down` tells whether
    /// membership considers the claimant dead or departed (its claims are ignored).
    /// Returns whether the state changed.
    pub fn merge(&mut self, now: Time, claim: Claim, claimant_down: bool) -> bool {
        self.merge_with(now, claim, claimant_down, true)
    }

    /// Merges a claim, re-gossiping it only if `rebroadcast` (claims read from a
    /// full-state sync are applied quietly unless they are the partner's own; see
    /// `Membership`'s sync handling for why).
    pub fn merge_with(
        &mut self,
        now: Time,
        claim: Claim,
        claimant_down: bool,
        rebroadcast: bool,
    ) -> bool {
        match self.try_merge(now, claim, claimant_down, rebroadcast) {
            Ok(changed) => changed,
            Err(why) => {
                self.refused.count(why);
                false
            }
        }
    }

    /// Like [`Registry::merge_with`], saying why a claim was refused. `Ok(false)`:
    /// nothing new (an old version, a claim of a down node, a full registry).
    pub fn try_merge(
        &mut self,
        now: Time,
        claim: Claim,
        claimant_down: bool,
        rebroadcast: bool,
    ) -> Result<bool, ClaimRefused> {
        if claim.name.is_empty() || claim.name.len() > NAME_BYTES_MAX {
            return Err(ClaimRefused::InvalidName);
        }
        // One lookup of the name serves the news check and both bounds.
        let named = self.claims.get(&claim.name).map(|n| &n.claimants);
        let held = named.and_then(|c| c.get(&claim.node));
        if !self.news_given(held, &claim) {
            return Ok(false);
        }
        let jump = match held {
            Some(h) => claim.version - h.version > VERSION_STEP_MAX,
            None => claim.version > VERSION_MAX,
        } || claim.lamport > self.clock.saturating_add(VERSION_STEP_MAX);
        if jump {
            return Err(ClaimRefused::VersionJump);
        }
        let top_rank = named
            .and_then(|c| c.iter().map(|(_, s)| s.rank).max())
            .unwrap_or(0);
        let was_held = held.is_some();
        if claim.rank.saturating_sub(top_rank) > RANK_STEP_MAX {
            return Err(ClaimRefused::RankJump);
        }
        if self.key.is_some() && !claim.verify_with(&self.sig_check) {
            return Err(ClaimRefused::Forged);
        }
        self.clock = self.clock.max(claim.lamport);
        if claim.node == self.me {
            // I am the authority on my claims. One I do not hold at that version is a
            // leftover from an earlier life (signed by me, its versions counted
            // from 1 again since): restate what I hold now above it. A claim of
            // this life stays (a restarted node's durable actor, named again,
            // must not lose its name to its previous life's tombstone); with
            // none, the leftover is buried.
            let Some(version) = claim.version.checked_add(1) else {
                return Err(ClaimRefused::VersionJump);
            };
            let restated = match self.claim_of(&claim.name, self.me) {
                Some(mine) if !mine.removed => Claim {
                    version,
                    sig: SigBytes::default(),
                    ..mine
                },
                _ => Claim {
                    version,
                    removed: true,
                    sig: SigBytes::default(),
                    ..claim
                },
            };
            let restated = self.signed(restated);
            self.store(now, restated, true);
            return Ok(true);
        }
        if claimant_down {
            return Ok(false);
        }
        if !was_held && self.count >= self.config.names_max {
            self.refused_full += 1;
            return Ok(false);
        }
        self.store(now, claim, rebroadcast);
        Ok(true)
    }

    /// Drops every claim of `node` (it was declared dead or left).
    pub fn remove_node(&mut self, node: &NodeId) {
        let names: Vec<Arc<str>> = self
            .claims
            .values()
            .filter(|n| n.claimants.contains_key(node))
            .map(|n| n.name.clone())
            .collect();
        for name in names {
            let before = self.lookup(&name);
            self.digest = None;
            if let Some(named) = self.claims.get_mut(&name) {
                if named.claimants.remove(node).is_some_and(|old| old.removed) {
                    self.tombstones -= 1;
                }
                self.count -= 1;
                if named.claimants.is_empty() {
                    self.claims.remove(&name);
                }
            }
            self.note_change(&name, before);
        }
    }

    /// Forgets tombstones older than the retention.
    pub fn handle_timeout(&mut self, now: Time) {
        let retention = self.config.tombstone_retention;
        let mut emptied = Vec::new();
        if self.tombstones == 0 {
            return;
        }
        self.digest = None;
        // The order of this walk decides nothing: counts, and names to drop.
        for named in self.claims.values_mut_unordered() {
            let by_node = &mut named.claimants;
            let before = by_node.len();
            by_node.retain(|_, s| !(s.removed && now.saturating_since(s.changed_at) >= retention));
            self.count -= before - by_node.len();
            if by_node.is_empty() {
                emptied.push(named.name.clone());
            }
        }
        for name in emptied {
            self.claims.remove(&name);
        }
        self.tombstones = self
            .claims
            .values()
            .flat_map(|n| n.claimants.iter())
            .filter(|(_, s)| s.removed)
            .count();
    }

    /// Queues this node's live claims for gossip again (after it refuted being dead,
    /// others may have dropped them).
    pub fn announce_mine(&mut self) {
        for claim in self.my_claims() {
            if self.config.sharded() {
                self.changed.push((claim.name.clone(), claim.node));
            } else {
                self.gossip.push((claim.name.clone(), claim.node), claim);
            }
        }
    }

    /// Claims to piggyback on an outgoing message.
    pub fn take_gossip(&mut self, max: usize, cluster_size: usize) -> Vec<Claim> {
        self.gossip.take(max, cluster_size)
    }

    /// Claims waiting to be gossiped.
    pub fn gossip_backlog(&self) -> usize {
        self.gossip.len()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RegistryEvent> {
        crate::broadcast::pop_shrinking(&mut self.events)
    }

    /// `node`'s claim on `name`, tombstone or not.
    pub fn claim_of(&self, name: &str, node: NodeId) -> Option<Claim> {
        let named = self.claims.get(name)?;
        let s = named.claimants.get(&node)?;
        Some(s.to_claim(named.name.clone(), node))
    }

    fn store(&mut self, now: Time, claim: Claim, rebroadcast: bool) {
        self.digest = None;
        let before = self.lookup(&claim.name);
        let Some(named) = self.claims.get_or_insert_with(&claim.name, || Named {
            name: claim.name.clone(),
            claimants: Claimants::default(),
        }) else {
            // Only past `TABLE_MAX` names, far above any `names_max`.
            self.refused_full += 1;
            return;
        };
        let by_node = &mut named.claimants;
        let state = ClaimState {
            actor: claim.actor,
            lamport: claim.lamport,
            rank: claim.rank,
            version: claim.version,
            removed: claim.removed,
            changed_at: now,
            sig: claim.sig.clone(),
        };
        let removed = state.removed;
        match by_node.insert(claim.node, state) {
            None => self.count += 1,
            Some(old) if old.removed => self.tombstones -= 1,
            Some(_) => {}
        }
        if removed {
            self.tombstones += 1;
        }
        let name = claim.name.clone();
        if self.config.sharded() {
            // The cluster routes it (to owners, claimants and watchers).
            self.changed.push((name.clone(), claim.node));
        } else if rebroadcast {
            self.gossip.push((claim.name.clone(), claim.node), claim);
        }
        self.note_change(&name, before);
    }

    fn note_change(&mut self, name: &str, before: Option<Location>) {
        let after = self.lookup(name);
        if after == before {
            return;
        }
        match after {
            Some(location) => {
                self.events.push_back(RegistryEvent::Bound {
                    name: name.to_string(),
                    location,
                });
                if location.node != self.me
                    && let Some(mine) = self
                        .claims
                        .get(name)
                        .and_then(|n| n.claimants.get(&self.me))
                    && !mine.removed
                {
                    self.events.push_back(RegistryEvent::ConflictLost {
                        name: name.to_string(),
                        actor: mine.actor,
                        winner: location,
                    });
                }
            }
            None => self.events.push_back(RegistryEvent::Unbound {
                name: name.to_string(),
            }),
        }
    }

    /// Checks internal consistency.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.claims.check_invariants()?;
        // One walk over the claims (a node holds thousands) for the counts and the
        // digest.
        let (mut counted, mut tombstones, mut empty) = (0, 0, 0);
        let mut visit = |claimants: &Claimants| {
            empty += usize::from(claimants.is_empty());
            counted += claimants.len();
            tombstones += claimants.iter().filter(|(_, s)| s.removed).count();
        };
        let stale = match self.digest {
            Some(cached) => cached != self.walk_claims(&mut visit),
            None => {
                self.claims.values().for_each(|n| visit(&n.claimants));
                false
            }
        };
        if empty > 0 {
            return Err(format!("{empty} empty claim sets are kept"));
        }
        if counted != self.count {
            return Err(format!("claim count {} but {} held", self.count, counted));
        }
        if stale {
            return Err("the cached sync digest is out of date".into());
        }
        if tombstones != self.tombstones {
            return Err(format!(
                "{} tombstones counted, {tombstones} held",
                self.tombstones
            ));
        }
        if self.config.sharded() && !self.gossip.is_empty() {
            return Err("a sharded registry queued claims for gossip".into());
        }
        if self.count > self.config.names_max {
            return Err(format!(
                "{} claims exceed names_max {}",
                self.count, self.config.names_max
            ));
        }
        Ok(())
    }
}

fn winner(by_node: &Claimants) -> Option<Location> {
    by_node
        .iter()
        .filter(|(_, s)| !s.removed)
        .min_by_key(|(node, s)| (std::cmp::Reverse(s.rank), s.lamport, **node))
        .map(|(node, s)| Location {
            node: *node,
            actor: s.actor,
        })
}

#[cold]
fn unreachable_claim(name: &str, node: NodeId) -> Claim {
    // `register` only calls this right after finding the claim; keep a total function.
    Claim {
        name: Arc::from(name),
        node,
        actor: ActorId::new(node, 0),
        lamport: 0,
        rank: 0,
        version: 0,
        removed: true,
        sig: SigBytes::default(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use proptest::prelude::*;

    /// A replica with a key hashes names with a seed of its own, the same for the
    /// same key (a replay) and unlike another node's or the fixed one.
    #[test]
    fn names_are_hashed_with_a_seed_of_the_nodes_own() {
        let keyed = |seed: u8| {
            Registry::with_key(NodeKey::from_seed([seed; 32]), RegistryConfig::default())
        };
        let (a, again, b) = (keyed(1), keyed(1), keyed(2));
        let fixed = Registry::new(node(1), RegistryConfig::default());
        assert_eq!(a.claims.hash("svc"), again.claims.hash("svc"));
        assert_ne!(a.claims.hash("svc"), b.claims.hash("svc"));
        assert_ne!(a.claims.hash("svc"), fixed.claims.hash("svc"));
    }

    fn node(i: u64) -> NodeId {
        NodeId::synthetic(i)
    }

    fn actor(n: u64, l: u64) -> ActorId {
        ActorId::new(node(n), l)
    }

    #[test]
    fn register_lookup_unregister() {
        let mut r = Registry::new(node(1), RegistryConfig::default());
        let c = r.register(Time::ZERO, "svc", actor(1, 7)).unwrap();
        assert_eq!(
            r.lookup("svc"),
            Some(Location {
                node: node(1),
                actor: actor(1, 7)
            })
        );
        assert_eq!(
            r.poll_event(),
            Some(RegistryEvent::Bound {
                name: "svc".into(),
                location: Location {
                    node: node(1),
                    actor: actor(1, 7)
                }
            })
        );
        // Re-registering the same actor is a no-op; a new actor keeps precedence.
        assert_eq!(r.register(Time::ZERO, "svc", actor(1, 7)).unwrap(), c);
        let c2 = r.register(Time::ZERO, "svc", actor(1, 8)).unwrap();
        assert_eq!(c2.lamport, c.lamport);
        assert_eq!(c2.version, c.version + 1);
        assert!(r.unregister(Time::ZERO, "svc"));
        assert_eq!(r.lookup("svc"), None);
        assert!(!r.unregister(Time::ZERO, "svc"));
        assert!(matches!(
            r.register(Time::ZERO, "", actor(1, 1)),
            Err(RegistryError::InvalidName(_))
        ));
        r.check_invariants().unwrap();
    }

    #[test]
    fn concurrent_claims_resolve_to_the_earliest_then_lowest_node() {
        let mut a = Registry::new(node(1), RegistryConfig::default());
        let mut b = Registry::new(node(2), RegistryConfig::default());
        let ca = a.register(Time::ZERO, "leader", actor(1, 1)).unwrap();
        let cb = b.register(Time::ZERO, "leader", actor(2, 1)).unwrap();
        assert_eq!(ca.lamport, cb.lamport, "concurrent: same Lamport time");
        a.merge(Time::ZERO, cb.clone(), false);
        b.merge(Time::ZERO, ca.clone(), false);
        let want = Some(Location {
            node: node(1),
            actor: actor(1, 1),
        });
        assert_eq!(a.lookup("leader"), want);
        assert_eq!(b.lookup("leader"), want, "both replicas agree");
        let mut lost = false;
        while let Some(e) = b.poll_event() {
            lost |= matches!(e, RegistryEvent::ConflictLost { ref name, .. } if name == "leader");
        }
        assert!(lost, "the loser is told");
        // A later claim (higher Lamport time) does not displace the holder.
        let mut c = Registry::new(node(0), RegistryConfig::default());
        c.merge(Time::ZERO, ca.clone(), false);
        assert!(matches!(
            c.register(Time::ZERO, "leader", actor(0, 1)),
            Err(RegistryError::Taken { .. })
        ));
    }

    #[test]
    fn dead_nodes_lose_their_names_and_stay_out_while_down() {
        let mut r = Registry::new(node(1), RegistryConfig::default());
        let claim = Claim {
            name: "x".into(),
            node: node(5),
            actor: actor(5, 1),
            lamport: 1,
            rank: 0,
            version: 1,
            removed: false,
            sig: SigBytes::default(),
        };
        assert!(r.merge(Time::ZERO, claim.clone(), false));
        r.remove_node(&node(5));
        assert_eq!(r.lookup("x"), None);
        assert!(
            !r.merge(Time::ZERO, claim.clone(), true),
            "ignored while the claimant is down"
        );
        assert_eq!(r.lookup("x"), None);
        assert!(
            r.merge(Time::ZERO, claim, false),
            "accepted once it is back"
        );
        r.check_invariants().unwrap();
    }

    #[test]
    fn a_node_buries_its_own_stale_claims() {
        let mut r = Registry::new(node(1), RegistryConfig::default());
        let stale = Claim {
            name: "old".into(),
            node: node(1),
            actor: actor(1, 3),
            lamport: 4,
            rank: 0,
            version: 2,
            removed: false,
            sig: SigBytes::default(),
        };
        assert!(r.merge(Time::ZERO, stale, false));
        assert_eq!(r.lookup("old"), None);
        let tomb = r
            .snapshot()
            .into_iter()
            .find(|c| &*c.name == "old")
            .unwrap();
        assert!(tomb.removed);
        assert_eq!(tomb.version, 3);
    }

    #[test]
    fn a_restarted_node_keeps_the_claim_of_this_life_over_its_last_lifes() {
        // Node 1 restarted: its registry counts versions from 1 again, and it has
        // named its actor anew. Peers still hold its last life's claims on the
        // name, a live one or a tombstone, at higher versions.
        for removed in [false, true] {
            let mut r = Registry::new(node(1), RegistryConfig::default());
            r.register_ranked(Time::ZERO, "durable:a", actor(1, 2), 11)
                .unwrap();
            let leftover = Claim {
                name: "durable:a".into(),
                node: node(1),
                actor: actor(1, 9),
                lamport: 1,
                rank: 7,
                version: 5,
                removed,
                sig: SigBytes::default(),
            };
            assert!(r.merge(Time::ZERO, leftover.clone(), false));
            // This life's claim still names the actor, restated above the leftover.
            assert_eq!(
                r.lookup("durable:a").map(|l| l.actor),
                Some(actor(1, 2)),
                "removed: {removed}"
            );
            let mine = r
                .my_claims()
                .into_iter()
                .find(|c| &*c.name == "durable:a")
                .expect("still claimed");
            assert!(!mine.removed && mine.version == 6 && mine.rank == 11);
            // A peer holding the leftover takes the restatement.
            let mut peer = Registry::new(node(2), RegistryConfig::default());
            peer.merge(Time::ZERO, leftover, false);
            peer.merge(Time::ZERO, r.claim_of("durable:a", node(1)).unwrap(), false);
            assert_eq!(peer.lookup("durable:a").map(|l| l.actor), Some(actor(1, 2)));
            r.check_invariants().unwrap();
        }
    }

    #[test]
    fn tombstones_expire_and_capacity_is_bounded() {
        let config = RegistryConfig {
            names_max: 2,
            tombstone_retention: Duration::from_secs(10),
            retransmit_mult: 1,
            ..RegistryConfig::default()
        };
        let mut r = Registry::new(node(1), config);
        r.register(Time::ZERO, "a", actor(1, 1)).unwrap();
        r.register(Time::ZERO, "b", actor(1, 2)).unwrap();
        assert!(matches!(
            r.register(Time::ZERO, "c", actor(1, 3)),
            Err(RegistryError::Full(2))
        ));
        r.unregister(Time::ZERO, "a");
        r.handle_timeout(Time::from_millis(9_000));
        assert_eq!(r.len(), 2);
        r.handle_timeout(Time::from_millis(10_000));
        assert_eq!(r.len(), 1);
        r.register(Time::from_millis(10_000), "c", actor(1, 3))
            .unwrap();
        r.check_invariants().unwrap();
    }

    fn arb_claim() -> impl Strategy<Value = Claim> {
        (0u64..4, 0usize..3, 1u64..4, 1u64..5, any::<bool>(), 0u64..3).prop_map(
            |(n, name, lamport, version, removed, l)| Claim {
                name: ["a", "b", "c"][name].into(),
                node: node(10 + n),
                actor: actor(10 + n, l),
                lamport,
                rank: l % 2,
                version,
                removed,
                sig: SigBytes::default(),
            },
        )
    }

    proptest! {
        /// Merge order does not matter: two replicas that receive the same claims in
        /// different orders (with duplicates) resolve every name the same way.
        #[test]
        fn replicas_converge_whatever_the_order(claims in proptest::collection::vec(arb_claim(), 0..40), seed in any::<u64>()) {
            // Claims from one (node, name, version) must agree, as a single writer makes them.
            let mut canonical: BTreeMap<(String, NodeId, u64), Claim> = BTreeMap::new();
            for c in claims {
                canonical.entry((c.name.to_string(), c.node, c.version)).or_insert(c);
            }
            let claims: Vec<Claim> = canonical.into_values().collect();
            let mut shuffled = claims.clone();
            plexus_actors::rng::DetRng::new(seed).shuffle(&mut shuffled);
            shuffled.extend(claims.iter().take(3).cloned());
            let mut a = Registry::new(node(1), RegistryConfig::default());
            let mut b = Registry::new(node(2), RegistryConfig::default());
            for c in &claims { a.merge(Time::ZERO, c.clone(), false); }
            for c in &shuffled { b.merge(Time::ZERO, c.clone(), false); }
            prop_assert_eq!(a.entries(), b.entries());
            a.check_invariants().map_err(TestCaseError::fail)?;
            b.check_invariants().map_err(TestCaseError::fail)?;
        }
    }

    proptest! {
        /// The walk that finds a sync's news answers as a lookup per claim would,
        /// for any two replicas, and declines claims out of snapshot order.
        #[test]
        fn news_found_in_one_walk_match_lookups(
            mine in proptest::collection::vec(arb_claim(), 0..30),
            theirs in proptest::collection::vec(arb_claim(), 0..30),
        ) {
            let mut a = Registry::new(node(1), RegistryConfig::default());
            let mut b = Registry::new(node(2), RegistryConfig::default());
            for c in mine { a.merge(Time::ZERO, c, false); }
            for c in theirs { b.merge(Time::ZERO, c, false); }
            let snapshot = b.snapshot();
            let looked_up: Vec<bool> = snapshot.iter().map(|c| a.is_news(c)).collect();
            prop_assert_eq!(a.news_in_snapshot(&snapshot), Some(looked_up));
            if snapshot.len() > 1 {
                let mut reversed = snapshot;
                reversed.reverse();
                prop_assert_eq!(a.news_in_snapshot(&reversed), None);
            }
        }
    }

    #[test]
    fn the_highest_rank_wins_whatever_the_order() {
        let mut a = Registry::new(node(1), RegistryConfig::default());
        let mut b = Registry::new(node(2), RegistryConfig::default());
        let old = a
            .register_ranked(Time::ZERO, "durable:k", actor(1, 2), 3)
            .unwrap();
        b.merge(Time::ZERO, old.clone(), false);
        // The newer activation claims the name although node 1 holds it.
        let new = b
            .register_ranked(Time::ZERO, "durable:k", actor(2, 2), 4)
            .unwrap();
        assert_eq!(b.lookup("durable:k").map(|l| l.node), Some(node(2)));
        // Node 1 hears it before it withdraws its own claim: it still resolves to
        // the higher rank, not to its own earlier claim.
        a.merge(Time::ZERO, new, false);
        assert_eq!(a.lookup("durable:k").map(|l| l.node), Some(node(2)));
        // A plain registration still refuses a taken name.
        assert!(matches!(
            a.register(Time::ZERO, "durable:k", actor(1, 3)),
            Err(RegistryError::Taken { .. })
        ));
        // Once the winner withdraws, the lower-ranked claim resolves again.
        b.unregister(Time::ZERO, "durable:k");
        let tomb = b
            .snapshot()
            .into_iter()
            .find(|c| c.node == node(2))
            .unwrap();
        a.merge(Time::ZERO, tomb, false);
        assert_eq!(a.lookup("durable:k").map(|l| l.node), Some(node(1)));
    }
}
