//! One activation of a durable actor: the sans-IO state machine that restores it,
//! commits its state, acknowledges its inputs, releases its outputs, and migrates it.
//!
//! # Lifecycle
//!
//! ```text
//!            fence a majority of every replica set given
//! Fencing ────────────────────────────────────────────► Active ◄──┐
//!    │ refused (a higher ballot holds)                    │  │      │ handoff refused /
//!    ▼                                                    │  │      │ timed out: re-fence
//!  Gone ◄──── fenced by a later activation, stalled, ─────┘  │      │
//!   ▲          released, or the user code keeps failing      ▼      │
//!   └───────────── handoff accepted ◄──── HandingOff ◄──── Draining
//! ```
//!
//! # What an acknowledgement promises
//!
//! An input is acknowledged only after a record containing its effect (the user
//! state after applying it, the sender's sequence number in the dedup table, and
//! every output it produced, numbered) is stored by a majority of the replica set.
//! Any later activation fences a majority first, so it restores that record or a
//! newer one: an acknowledged input's effect is never lost and never applied twice.
//! Outputs and scheduler commands are released only after the record holding them is
//! committed, so nothing downstream ever sees an effect that a crash could undo.
//!
//! # Migration
//!
//! `Draining` stops taking new input. If the target acknowledged writing the last
//! committed record as a replica, the handoff names that record by its order and
//! goes as soon as no batch is being applied: the commit in flight and the inputs
//! applied since the record are rolled back (nothing of theirs was released, so
//! nothing anyone saw is undone) and their senders resend after the redirect; the
//! target fences, reads the body from its own replica, and refuses the handoff if
//! it holds nothing that new. Otherwise the source commits what it applied first
//! and sends the record whole, which the target restores only once a replica
//! confirms holding exactly it.
//!
//! # Commits
//!
//! Inputs are applied in batches; at most one commit is in flight, and inputs keep
//! being applied while it is (group commit). A commit waits at least
//! `snapshot bytes / snapshot_bandwidth` after the previous one started, so a large
//! state is committed less often (its acks wait longer) instead of saturating disks
//! and links. A migration target takes the handed-over record as the previous
//! commit, so the pace holds across a handoff.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use plexus_actors::codec;
use plexus_actors::envelope::TraceContext;
use plexus_actors::migratable::Snapshot;
use plexus_actors::{NodeId, Time};
use serde::{Deserialize, Serialize};

use crate::patch::{self, RecordPatch};
use crate::stream::{OutStream, StreamConfig, StreamEvent, Streams};
use crate::types::{Ballot, DurableKey, Record, ReplicaSet, SenderId};
use crate::wire::{
    Ack, Command, DurableMsg, Envelope, HandedRecord, Handoff, Nack, Prepare, Redirect, Refusal,
    ReplicaOp, ReplicaReply, Reply, ballot_step_ok,
};

/// What a sender's entry in the dedup table holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// The last sequence number applied.
    pub last: u64,
    /// The reply to `last`, kept so a retried request gets its answer (only if at
    /// most [`ActivationConfig::reply_bytes_max`]).
    pub reply: Option<Reply>,
    /// The actor's applied-input counter when the sender was last heard; the least
    /// recent client is evicted first when the table is full.
    pub touched: u64,
}

/// Everything a commit stores: the user's snapshot plus what exactly-once needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DurableState {
    /// The user code's state.
    pub user: Snapshot,
    /// Per sender: the last sequence number applied.
    pub inbound: BTreeMap<SenderId, Inbound>,
    /// Per receiver: numbered outputs not yet acknowledged.
    pub streams: BTreeMap<DurableKey, OutStream>,
    /// Inputs applied over the actor's whole life.
    pub applied: u64,
}

impl DurableState {
    /// The state of an actor that never ran.
    pub fn empty() -> Self {
        Self {
            user: Snapshot::default(),
            inbound: BTreeMap::new(),
            streams: BTreeMap::new(),
            applied: 0,
        }
    }

    /// Decodes a record body.
    pub fn decode(body: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode_body(body, crate::STATE_BYTES_MAX)
    }
}

/// Lease checks whose late answers still count.
const CHECKS_KEPT: usize = 8;

/// Settings of activations.
#[derive(Clone, Copy, Debug)]
pub struct ActivationConfig {
    /// Outbound stream settings.
    pub stream: StreamConfig,
    /// Most inputs handed to the user code at once.
    pub apply_batch_max: usize,
    /// Most inputs accepted and waiting to be applied; past it senders are told to
    /// retry later (they keep the messages, so nothing is lost).
    pub pending_max: usize,
    /// Shortest time between the starts of two commits.
    pub commit_interval_min: Duration,
    /// Snapshot bytes per second one actor may commit; bounds commit frequency for
    /// large states.
    pub snapshot_bandwidth: u64,
    /// Resend unanswered replica requests after this long.
    pub retry_interval: Duration,
    /// Give up fencing after this long.
    pub activate_timeout: Duration,
    /// Give up (deactivate) when a commit finds no majority for this long: the
    /// activation is cut off, and the scheduler will place the actor where a
    /// majority is reachable.
    pub stall_timeout: Duration,
    /// Resume on the source if the target does not answer a handoff in this long.
    pub handoff_timeout: Duration,
    /// Most senders in the dedup table; past it the least recently heard client
    /// session is forgotten (actor senders are never evicted).
    pub senders_max: usize,
    /// Longest reply kept in the dedup table for retried requests.
    pub reply_bytes_max: usize,
    /// User-code failures tolerated within `restart_period` before the actor is
    /// deactivated as failed.
    pub restarts_max: u32,
    /// See `restarts_max`.
    pub restart_period: Duration,
    /// Fences retried after a refusal before giving up.
    pub fence_attempts_max: u32,
    /// How often an active actor with no commit in flight checks that no newer
    /// activation fenced its replicas ([`ReplicaOp::Check`], one small message per
    /// replica). Bounds how long a superseded activation that has nothing to
    /// commit stays up (and registered) after a partition or a duel; renews the
    /// lease. Shorter than `lease`, so a lost check is retried before it lapses.
    pub lease_check: Duration,
    /// An active actor that has not heard a majority of its replica set confirm
    /// its ballot (a fence, a commit or a check) for this long steps down
    /// ([`Deactivation::Unconfirmed`]): it is cut off from its replicas, or paused,
    /// and a newer activation may be serving. Must be shorter than the cluster
    /// takes to declare a cut-off node dead and place the actor elsewhere
    /// (failure detection: a probe period plus the suspicion timeout), so the old
    /// activation has stepped down before the new one serves. Only a timing
    /// bound: replicas do not refuse newer fences while a lease runs, and safety
    /// (one activation commits) rests on ballots, never on it.
    pub lease: Duration,
    /// Send each commit to the replicas that hold the previous record as a patch
    /// of it ([`crate::patch`]) when the patch carries at most half the body.
    /// Off: every commit sends the whole record (the migration bench's peer).
    pub patches: bool,
    /// Before a live migration quiesces, have the target restore the user code
    /// from its own replica's copy of the last committed record (a warm standby,
    /// [`DurableMsg::Prepare`]), so the pause holds no decode and no restore.
    /// Off: the target restores during the pause (the migration bench's peer).
    pub warm_handoffs: bool,
    /// How long a move waits for the target's standby before it quiesces without
    /// one. No commit starts while it waits (acknowledgements wait too), so this
    /// is short: a standby costs a decode and a restore, tens of ms at 16 MiB.
    pub prepare_timeout: Duration,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        Self {
            stream: StreamConfig::default(),
            apply_batch_max: 256,
            pending_max: 8_192,
            commit_interval_min: Duration::ZERO,
            snapshot_bandwidth: 64 * 1024 * 1024,
            retry_interval: Duration::from_millis(250),
            lease_check: Duration::from_secs(1),
            lease: Duration::from_secs(4),
            activate_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            handoff_timeout: Duration::from_secs(5),
            senders_max: 65_536,
            reply_bytes_max: 64 * 1024,
            restarts_max: 5,
            restart_period: Duration::from_secs(10),
            fence_attempts_max: 5,
            patches: true,
            warm_handoffs: true,
            prepare_timeout: Duration::from_secs(1),
        }
    }
}

/// One input for the user code.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// The sender; `None` for a local input (a scheduler tick).
    pub from: Option<SenderId>,
    /// The sender's number for it (0 for local inputs).
    pub seq: u64,
    /// The encoded message.
    pub payload: Vec<u8>,
    /// Its trace context.
    pub trace: Option<TraceContext>,
}

/// Something the user code produced while applying inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A message to another durable actor (exactly once, in order).
    Send {
        /// The receiver.
        to: DurableKey,
        /// The encoded message.
        payload: Vec<u8>,
        /// Its trace context.
        trace: Option<TraceContext>,
    },
    /// An order to a node (the scheduler's); sent once after the commit, not retried
    /// (the scheduler reconciles).
    Command {
        /// The node.
        to: NodeId,
        /// The order.
        command: Command,
    },
}

/// How an actor's inputs are grouped into batches for its user code (a model
/// executor's dynamic batching). Without it, every pending input (up to
/// [`ActivationConfig::apply_batch_max`]) goes as soon as the code is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Most inputs per batch.
    pub max: usize,
    /// How long a partial batch waits for more inputs (zero: not at all).
    pub wait: Duration,
}

/// What the user code returns for one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// One reply per input, in order: `Some` for inputs that answer.
    pub replies: Vec<Option<Reply>>,
    /// What the batch produced.
    pub outputs: Vec<Output>,
    /// The state after the batch, if the batch asked for it.
    pub snapshot: Option<Snapshot>,
    /// Whether local inputs changed the state (sender inputs always count).
    pub changed: bool,
}

/// Why an activation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deactivation {
    /// A later activation holds the replicas.
    Superseded(Ballot),
    /// No majority answered the fence in time.
    NoQuorum,
    /// No majority accepted a commit in time.
    Stalled,
    /// No majority of the replicas confirmed this activation within the lease
    /// ([`ActivationConfig::lease`]): it stepped down, so that at most one
    /// activation serves once the cluster places the actor elsewhere.
    Unconfirmed,
    /// Moved to another node.
    Migrated {
        /// The new host.
        to: NodeId,
        /// Its ballot.
        ballot: Ballot,
    },
    /// Stopped for good.
    Released,
    /// The user code failed too often, or its state does not restore.
    Failed(String),
}

/// What an activation tells its owner.
#[derive(Clone, Debug, PartialEq)]
pub enum ActivationEvent {
    /// Build (or rebuild) the user code from this state; later `Apply`s follow it.
    Restore {
        /// The state (empty when `warm` is set).
        user: Snapshot,
        /// Set when the owner built the user code from this record ahead of time
        /// (a migration's warm standby, [`crate::NodeEvent::Prepare`]): use that
        /// code instead of building it again.
        warm: Option<(Ballot, u64)>,
    },
    /// Apply these inputs in order, then call [`Activation::applied`] with `token`,
    /// including a snapshot if `snapshot` is set.
    Apply {
        /// Echo it.
        token: u64,
        /// The inputs.
        inputs: Vec<Input>,
        /// Whether to return a snapshot.
        snapshot: bool,
    },
    /// The actor serves here now: register it.
    Activated {
        /// Its ballot.
        ballot: Ballot,
        /// Where it commits.
        set: ReplicaSet,
        /// The order of the record it restored, if any.
        restored: Option<(Ballot, u64)>,
    },
    /// A record reached a majority.
    Committed {
        /// Its version.
        version: u64,
        /// Its size.
        bytes: usize,
        /// From the write's first send to its majority.
        latency: Duration,
    },
    /// A scheduler command released by a commit.
    Command {
        /// The node.
        to: NodeId,
        /// The order.
        command: Command,
    },
    /// The replica set changed (report it to the scheduler).
    Reconfigured {
        /// The new set.
        set: ReplicaSet,
    },
    /// A live migration completed; `pause` is how long the actor applied nothing.
    Migrated {
        /// The new host.
        to: NodeId,
        /// From quiescing to the target's confirmation.
        pause: Duration,
        /// The part of `pause` before the handoff left (a batch being applied
        /// finishing; for a handoff of the whole record, the commits too).
        drain: Duration,
        /// Whether the handoff named the record by reference.
        by_reference: bool,
        /// Whether the target had restored that record ahead of the pause (a
        /// warm standby).
        warm: bool,
        /// From the move's start to the quiesce: the wait for the standby, while
        /// the actor served on (zero without one).
        prepare: Duration,
    },
    /// A live migration failed after the handoff left: the target refused it, or
    /// did not answer within the handoff timeout. The actor resumes here (report
    /// it to the scheduler, so it need not wait to find out).
    MoveFailed {
        /// The target.
        to: NodeId,
        /// Why.
        why: String,
    },
    /// The activation ended; the owner removes it.
    Deactivated(Deactivation),
}

/// A migration's source-side progress.
#[derive(Clone, Debug)]
struct Migration {
    id: u64,
    to: NodeId,
    since: Time,
    /// The target holds a warm standby of the record the handoff names.
    warm: bool,
    /// When the move started (before `since` by the wait for the standby).
    asked: Time,
}

/// A migration waiting for its target's warm standby; the actor serves
/// meanwhile (`Phase::Active`).
#[derive(Clone, Debug)]
struct Preparing {
    id: u64,
    to: NodeId,
    /// The record the standby is asked for.
    order: (Ballot, u64),
    /// Prepares sent, counting this one.
    attempts: u32,
    /// When the move started.
    asked: Time,
    /// Quiesce without a standby if no answer comes by then.
    deadline: Time,
}

/// Prepares sent for one migration before it quiesces anyway: a commit that
/// completes while the target prepares makes the standby one record behind,
/// and the next prepare names the new record.
const PREPARE_ATTEMPTS_MAX: u32 = 3;

/// A migration target's warm standby (see [`DurableMsg::Prepare`]): the record
/// it restored the user code from, read from this node's own replica.
#[derive(Clone, Debug)]
pub struct Warm {
    /// The record.
    pub record: Record,
    /// blake3 of its body.
    pub digest: [u8; 32],
    /// Its decoded state, the user's snapshot taken out (the owner built the
    /// user code from it).
    pub state: DurableState,
}

#[derive(Debug)]
enum Phase {
    Fencing(Box<Fencing>),
    Active,
    Draining(Migration),
    HandingOff {
        mig: Migration,
        deadline: Time,
        /// When the handoff left, and whether it named the record by reference.
        sent: Time,
        by_reference: bool,
        /// Senders whose uncommitted inputs the handoff rolled back: their
        /// messages held here are not forwarded (they resend them).
        rolled: BTreeSet<SenderId>,
    },
    Gone,
}

#[derive(Debug)]
struct Fencing {
    /// The sets named by the command; the last is where the actor should commit.
    sets: Vec<ReplicaSet>,
    /// Sets the newest record found so far points to (fenced too; see
    /// `on_fence_reply`).
    found: Vec<ReplicaSet>,
    members: BTreeSet<NodeId>,
    replied: BTreeSet<NodeId>,
    best: Option<Record>,
    req: u64,
    started: Time,
    next_retry: Time,
    attempts: u32,
    handoff: Option<(NodeId, u64)>,
    /// For a migration target: the order and body digest of the record the
    /// handoff brought, until a replica confirms it holds exactly that record.
    /// A handoff record no replica vouches for is not restored.
    unconfirmed: Option<((Ballot, u64), [u8; 32])>,
    /// For a migration target handed a record by reference: its order. The body
    /// comes from this node's own replica (`local`), and the fence fails unless
    /// a record at least that new is found.
    expect: Option<(Ballot, u64)>,
    /// This node, when its own replica's reply must be had (see `expect`).
    local: Option<NodeId>,
}

#[derive(Debug)]
struct Pending {
    /// When it was accepted (for [`Batching::wait`]).
    arrived: Time,
    from: Option<SenderId>,
    seq: u64,
    payload: Vec<u8>,
    trace: Option<TraceContext>,
    reply_to: Option<NodeId>,
}

#[derive(Debug)]
struct Applying {
    token: u64,
    inputs: Vec<(Option<SenderId>, u64)>,
    snapshot: bool,
}

/// Effects of applied inputs that wait for the commit holding them.
#[derive(Debug, Default)]
struct Unsnapshotted {
    acks: Vec<(SenderId, u64, Option<Reply>)>,
    commands: Vec<(NodeId, Command)>,
}

#[derive(Debug)]
struct Commit {
    record: Record,
    /// Where the record commits: a majority of `set`, and during a
    /// reconfiguration also a majority of `old` (the set the activation fenced or
    /// last committed to). The joint majority keeps an activation that a newer one
    /// fenced through `old` from committing on a fresh set alone.
    set: ReplicaSet,
    old: Option<ReplicaSet>,
    req: u64,
    acked: BTreeSet<NodeId>,
    /// The record as a patch of the previous one, and the members it still goes
    /// to (those of the previous record's set that have not asked for it whole).
    patch: Option<(RecordPatch, BTreeSet<NodeId>)>,
    effects: Unsnapshotted,
    marks: BTreeMap<DurableKey, u64>,
    started: Time,
    next_retry: Time,
}

impl Fencing {
    /// Follows the newest record found so far: if it was committed to a set not
    /// fenced yet, fence that set too (its members go to `extra`). A record moves
    /// to a new set only through a joint commit that reached a majority of the old
    /// set as well, so following the newest record from any fenced set ends at
    /// the set holding the newest state.
    fn follow(&mut self, extra: &mut Vec<NodeId>) {
        let Some(best) = &self.best else {
            return;
        };
        if self.sets.contains(&best.set) || self.found.contains(&best.set) {
            return;
        }
        self.found.push(best.set.clone());
        for n in best.set.nodes() {
            if self.members.insert(*n) {
                extra.push(*n);
            }
        }
    }

    /// A majority of every commanded set, and of the set the newest record
    /// found lives in.
    fn is_done(&self) -> bool {
        let enough = |s: &ReplicaSet| {
            s.nodes()
                .iter()
                .filter(|n| self.replied.contains(n))
                .count()
                >= s.quorum()
        };
        self.sets.iter().all(enough)
            && self.best.as_ref().is_none_or(|b| enough(&b.set))
            && self.local.is_none_or(|me| self.replied.contains(&me))
    }
}

impl Commit {
    fn members(&self) -> BTreeSet<NodeId> {
        let mut m: BTreeSet<NodeId> = self.set.nodes().iter().copied().collect();
        if let Some(old) = &self.old {
            m.extend(old.nodes().iter().copied());
        }
        m
    }

    fn is_member(&self, n: &NodeId) -> bool {
        self.set.contains(n) || self.old.as_ref().is_some_and(|o| o.contains(n))
    }

    fn has_quorum(&self) -> bool {
        let enough = |s: &ReplicaSet| {
            s.nodes().iter().filter(|n| self.acked.contains(n)).count() >= s.quorum()
        };
        enough(&self.set) && self.old.as_ref().is_none_or(enough)
    }
}

/// One activation of a durable actor.
pub struct Activation {
    key: DurableKey,
    me: NodeId,
    config: ActivationConfig,
    ballot: Ballot,
    set: ReplicaSet,
    /// Set by a reconfiguration: the next commit goes here, then it becomes `set`.
    next_set: Option<ReplicaSet>,
    spec: Vec<u8>,
    phase: Phase,
    // The state as of the last applied input.
    inbound: BTreeMap<SenderId, Inbound>,
    streams: Streams,
    applied_total: u64,
    // Acceptance (ahead of application).
    accepted: BTreeMap<SenderId, u64>,
    reply_to: BTreeMap<SenderId, NodeId>,
    committed_last: BTreeMap<SenderId, u64>,
    pending: VecDeque<Pending>,
    /// Envelopes that arrived before the actor was active (or while it drains).
    held: VecDeque<Envelope>,
    applying: Option<Applying>,
    unsnap: Unsnapshotted,
    dirty: bool,
    // Commits.
    version: u64,
    in_flight: Option<Commit>,
    /// The newest record handed to the replicas (in flight or committed): what a
    /// rollback returns to.
    base: Option<Record>,
    committed: Option<Record>,
    /// Replicas known to hold `committed` (they acknowledged writing it).
    holders: BTreeSet<NodeId>,
    /// Replicas sent `committed` whole after its patch named a base they lacked
    /// (at most once each).
    whole_to: BTreeSet<NodeId>,
    first_commit_done: bool,
    last_commit_start: Time,
    last_bytes: usize,
    commit_timer: Option<Time>,
    /// How the user code wants its inputs batched (`None`: as they come).
    batching: Option<Batching>,
    /// When a waiting partial batch is due.
    batch_timer: Option<Time>,
    /// The next lease check.
    next_check: Time,
    /// The recent checks: request number and when it was sent (at most
    /// [`CHECKS_KEPT`]), so a late answer still counts, from its check's time.
    checks: VecDeque<(u64, Time)>,
    /// Per replica, when the newest check it confirmed was sent.
    held_since: BTreeMap<NodeId, Time>,
    /// A time since which a majority of the replica set confirmed this
    /// activation's ballot (the fence's end, a commit's start, a check's send):
    /// the lease runs from it.
    confirmed: Time,
    // Bookkeeping.
    next_token: u64,
    next_req: u64,
    next_migration: u64,
    restarts: VecDeque<Time>,
    transmit: VecDeque<(NodeId, DurableMsg)>,
    /// Every node sent a replica request (whose replies count); members of
    /// replica sets, so as bounded as the cluster.
    asked: BTreeSet<NodeId>,
    events: VecDeque<ActivationEvent>,
    /// A migration waiting for its target's warm standby.
    preparing: Option<Preparing>,
    /// While fencing as a migration target: the warm standby of the record the
    /// handoff named, used if the fence restores exactly that record.
    warm: Option<Box<Warm>>,
    /// Counters, for metrics.
    pub stats: ActivationStats,
}

/// Counters of one activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActivationStats {
    /// Commits that reached a majority.
    pub commits: u64,
    /// Inputs applied by this activation.
    pub applied: u64,
    /// Duplicate inputs dropped.
    pub duplicates: u64,
    /// Inputs refused for being out of order or over `pending_max`.
    pub refused: u64,
    /// Replica writes sent as patches.
    pub patches: u64,
    /// Replicas that could not use a patch and got the whole record.
    pub wholes_wanted: u64,
}

/// A migration target's half of a handoff.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// The source's last committed record, whole or by reference.
    pub record: HandedRecord,
    /// Messages the source had accepted but not applied.
    pub queued: Vec<Envelope>,
    /// The source.
    pub from: NodeId,
    /// The migration's number.
    pub migration: u64,
}

/// How an activation starts.
#[derive(Clone, Debug)]
pub struct Start {
    /// The actor.
    pub key: DurableKey,
    /// This node.
    pub me: NodeId,
    /// Every replica set that may hold the newest record; the last is where it
    /// commits.
    pub sets: Vec<ReplicaSet>,
    /// What the actor runs (opaque here).
    pub spec: Vec<u8>,
    /// The highest ballot known for the key (the new one goes above it).
    pub seen: Ballot,
    /// For a migration target: what the source handed over.
    pub handoff: Option<Arrival>,
    /// Where this activation's request numbers start (the node keeps them unique
    /// across its activations).
    pub req_base: u64,
    /// For a migration target handed a record by reference: the warm standby
    /// built from that record, if this node prepared one.
    pub warm: Option<Box<Warm>>,
}

impl Activation {
    /// Starts an activation: it fences the replicas, then restores and serves.
    /// `None` if `sets` is empty.
    pub fn start(now: Time, config: ActivationConfig, start: Start) -> Option<Activation> {
        let set = start.sets.last()?.clone();
        let me = start.me;
        let mut seen = start.seen;
        let mut best = None;
        let mut handoff = None;
        let mut held = VecDeque::new();
        let mut expect = None;
        let mut warm = None;
        if let Some(arrival) = start.handoff {
            match arrival.record {
                HandedRecord::Whole(record) => {
                    seen = seen.max(record.ballot);
                    best = Some(record);
                }
                HandedRecord::Held { order } => {
                    seen = seen.max(order.0);
                    expect = Some(order);
                    // The standby's record is this node's own replica's copy of
                    // the named one: the fence starts from it, so this node's
                    // replica is asked only whether it still holds it (no body
                    // read), and the others whether they hold anything newer.
                    warm = start.warm.filter(|w| w.record.order() >= order);
                    best = warm.as_ref().map(|w| w.record.clone());
                }
            }
            held.extend(arrival.queued);
            handoff = Some((arrival.from, arrival.migration));
        }
        let mut a = Activation {
            key: start.key.clone(),
            me,
            config,
            ballot: Ballot::above(seen, me),
            set,
            next_set: None,
            spec: start.spec,
            phase: Phase::Gone,
            inbound: BTreeMap::new(),
            streams: Streams::new(SenderId::Actor(start.key), config.stream),
            applied_total: 0,
            accepted: BTreeMap::new(),
            reply_to: BTreeMap::new(),
            committed_last: BTreeMap::new(),
            pending: VecDeque::new(),
            held,
            applying: None,
            unsnap: Unsnapshotted::default(),
            dirty: false,
            version: 0,
            in_flight: None,
            base: None,
            committed: None,
            holders: BTreeSet::new(),
            whole_to: BTreeSet::new(),
            first_commit_done: false,
            last_commit_start: Time::ZERO,
            last_bytes: 0,
            commit_timer: None,
            batching: None,
            batch_timer: None,
            next_token: 1,
            next_req: start.req_base.max(1),
            next_check: Time::ZERO,
            checks: VecDeque::new(),
            held_since: BTreeMap::new(),
            confirmed: Time::ZERO,
            next_migration: 1,
            restarts: VecDeque::new(),
            transmit: VecDeque::new(),
            asked: BTreeSet::new(),
            events: VecDeque::new(),
            preparing: None,
            warm,
            stats: ActivationStats::default(),
        };
        a.begin_fence(now, start.sets, best, handoff, 0, expect);
        Some(a)
    }

    /// The actor.
    pub fn key(&self) -> &DurableKey {
        &self.key
    }

    /// Its ballot.
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// Where it commits.
    pub fn set(&self) -> &ReplicaSet {
        &self.set
    }

    /// What it runs.
    pub fn spec(&self) -> &[u8] {
        &self.spec
    }

    /// Whether it serves (active, or draining for a migration).
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Active | Phase::Draining(_))
    }

    /// Whether it is still restoring.
    pub fn is_fencing(&self) -> bool {
        matches!(self.phase, Phase::Fencing(_))
    }

    /// Whether it is handing off or draining for a migration.
    pub fn is_migrating(&self) -> bool {
        matches!(self.phase, Phase::Draining(_) | Phase::HandingOff { .. })
    }

    /// Whether it ended.
    pub fn is_gone(&self) -> bool {
        matches!(self.phase, Phase::Gone)
    }

    /// The last committed record.
    pub fn committed(&self) -> Option<&Record> {
        self.committed.as_ref()
    }

    /// Inputs waiting to be applied.
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.held.len()
    }

    /// Outputs waiting for acks.
    pub fn unacked_outputs(&self) -> usize {
        self.streams.unacked()
    }

    fn req(&mut self) -> u64 {
        let r = self.next_req;
        // Local: unique within this activation's range of 2^32 numbers.
        self.next_req = self.next_req.wrapping_add(1);
        r
    }

    // ----- fencing -----

    fn begin_fence(
        &mut self,
        now: Time,
        sets: Vec<ReplicaSet>,
        best: Option<Record>,
        handoff: Option<(NodeId, u64)>,
        attempts: u32,
        expect: Option<(Ballot, u64)>,
    ) {
        let req = self.req();
        let members: BTreeSet<NodeId> = sets
            .iter()
            .flat_map(|s| s.nodes().iter().copied())
            .collect();
        let unconfirmed = match (&handoff, &best) {
            (Some(_), Some(r)) => {
                let digest = match &self.warm {
                    Some(w) if w.record.order() == r.order() => w.digest,
                    _ => *blake3::hash(&r.body).as_bytes(),
                };
                Some((r.order(), digest))
            }
            _ => None,
        };
        let local = (expect.is_some() && members.contains(&self.me)).then_some(self.me);
        let mut f = Fencing {
            expect,
            local,
            sets,
            found: Vec::new(),
            members,
            replied: BTreeSet::new(),
            unconfirmed,
            best,
            req,
            started: now,
            next_retry: now + self.config.retry_interval,
            attempts,
            handoff,
        };
        // A handoff's record may already point elsewhere: fence there too.
        f.follow(&mut Vec::new());
        let to: Vec<NodeId> = f.members.iter().copied().collect();
        self.phase = Phase::Fencing(Box::new(f));
        self.send_fences(req, to);
    }

    fn send_fences(&mut self, req: u64, to: Vec<NodeId>) {
        let Phase::Fencing(f) = &self.phase else {
            return;
        };
        let have = f.best.as_ref().map(Record::order).or(f.expect);
        // A record handed over by reference is read from this node's own
        // replica; the others only say what they hold.
        let from_local = f.best.is_none() && f.local.is_some();
        for n in to {
            let have = if from_local && n == self.me {
                None
            } else {
                have
            };
            self.transmit.push_back((
                n,
                DurableMsg::Replica {
                    from: self.me,
                    req,
                    key: self.key.clone(),
                    op: ReplicaOp::Fence {
                        ballot: self.ballot,
                        have,
                    },
                },
            ));
        }
    }

    fn on_fence_reply(&mut self, now: Time, from: NodeId, req: u64, reply: ReplicaReply) {
        let Phase::Fencing(f) = &mut self.phase else {
            return;
        };
        if req != f.req || !f.members.contains(&from) {
            return;
        }
        match reply {
            ReplicaReply::Promised {
                ballot,
                record,
                order,
                digest,
            } => {
                if ballot != self.ballot {
                    return;
                }
                // A replica that promised this ballot cannot hold a record
                // written under it or above: such a record is made up.
                if record.as_ref().is_some_and(|r| r.ballot >= self.ballot)
                    || order.is_some_and(|(b, _)| b >= self.ballot)
                {
                    return;
                }
                if let (Some(u), Some(o), Some(d)) = (f.unconfirmed, order, digest)
                    && u == (o, d)
                {
                    f.unconfirmed = None;
                }
                if let Some(r) = record
                    && f.best.as_ref().is_none_or(|b| r.order() > b.order())
                {
                    f.best = Some(r);
                }
                f.replied.insert(from);
                let mut extra = Vec::new();
                f.follow(&mut extra);
                let req = f.req;
                if f.is_done() {
                    self.fence_done(now);
                } else if !extra.is_empty() {
                    self.send_fences(req, extra);
                }
            }
            ReplicaReply::Refused { promised } => {
                let attempts = f.attempts + 1;
                if f.handoff.is_none() && attempts < self.config.fence_attempts_max {
                    // Someone fenced in between: go above them.
                    let sets = std::mem::take(&mut f.sets);
                    let best = f.best.take();
                    self.ballot = Ballot::above(promised.max(self.ballot), self.me);
                    self.begin_fence(now, sets, best, None, attempts, None);
                } else {
                    let handoff = f.handoff;
                    self.refuse_handoff(handoff, format!("superseded by ballot {promised}"));
                    self.end(Deactivation::Superseded(promised));
                }
            }
            ReplicaReply::Written { .. }
            | ReplicaReply::WantWhole { .. }
            | ReplicaReply::Dropped
            | ReplicaReply::Holds
            | ReplicaReply::Failed(_) => {}
        }
    }

    fn refuse_handoff(&mut self, handoff: Option<(NodeId, u64)>, why: String) {
        if let Some((source, migration)) = handoff {
            self.transmit.push_back((
                source,
                DurableMsg::HandoffReply {
                    key: self.key.clone(),
                    migration,
                    from: self.me,
                    result: Err(why),
                },
            ));
        }
    }

    fn fence_done(&mut self, now: Time) {
        let Phase::Fencing(f) = std::mem::replace(&mut self.phase, Phase::Active) else {
            return;
        };
        if let Some((order, _)) = f.unconfirmed
            && f.best.as_ref().is_some_and(|b| b.order() == order)
        {
            // No replica holds the record the handoff brought: whoever sent it is
            // not the actor's holder, or made the state up. Restore nothing.
            self.refuse_handoff(f.handoff, "no replica holds the handed-off record".into());
            self.end(Deactivation::Failed(
                "a handoff brought a record no replica holds".into(),
            ));
            return;
        }
        if let Some(order) = f.expect
            && f.best.as_ref().is_none_or(|b| b.order() < order)
        {
            // Handed over by reference, but this node's replica does not hold it
            // (or the source named a record nobody holds): restore nothing here.
            self.refuse_handoff(
                f.handoff,
                "this node's replica does not hold the handed-off record".into(),
            );
            self.end(Deactivation::Failed(
                "a handoff named a record this node's replica does not hold".into(),
            ));
            return;
        }
        let restored = f.best.as_ref().map(Record::order);
        // The fence restores exactly the standby's record (it started from it and
        // found nothing newer): its state was decoded, and the user code built,
        // before the pause.
        let warm = self
            .warm
            .take()
            .filter(|w| restored == Some(w.record.order()));
        let warm_order = warm.as_ref().map(|w| w.record.order());
        let state = match (&f.best, warm) {
            (Some(_), Some(w)) => w.state,
            (Some(r), None) => match DurableState::decode(&r.body) {
                Ok(s) => s,
                Err(e) => {
                    self.refuse_handoff(f.handoff, format!("state does not decode: {e}"));
                    self.end(Deactivation::Failed(format!(
                        "the stored state does not decode: {e}"
                    )));
                    return;
                }
            },
            (None, _) => DurableState::empty(),
        };
        // Commit where the restored state lives; if the command names another set,
        // the first commit is a joint one that moves it there (so a fencer of the
        // old set finds the record pointing to the new one).
        let target = f.sets.last().cloned();
        let home = f.best.as_ref().map(|r| r.set.clone()).or(target.clone());
        if let Some(home) = home {
            self.set = home;
        }
        self.next_set = target.filter(|t| *t != self.set);
        let rolled = self.rolled_back(&state);
        self.install(state, warm_order);
        // Nothing restored is released until it is committed under this ballot.
        self.base = f.best.clone();
        self.committed = None;
        self.holders.clear();
        self.whole_to.clear();
        self.first_commit_done = false;
        self.dirty = true;
        self.commit_timer = None;
        if f.handoff.is_some()
            && let Some(best) = &f.best
        {
            // The commits go on at the source's pace across a handoff: the record
            // handed over counts as the last commit, so the first one here waits
            // its interval like any other. (Made at once, a large state's first
            // commit, encoding, diffing, hashing and writing it, ran in the turn
            // that answers the handoff, and the source's pause waited for it.)
            self.last_bytes = best.body.len();
            self.last_commit_start = now;
        }
        self.next_check = now + self.config.lease_check;
        self.confirmed = now;
        self.checks.clear();
        self.held_since.clear();
        self.events.push_back(ActivationEvent::Activated {
            ballot: self.ballot,
            set: self.set.clone(),
            restored,
        });
        if let Some((source, migration)) = f.handoff {
            self.transmit.push_back((
                source,
                DurableMsg::HandoffReply {
                    key: self.key.clone(),
                    migration,
                    from: self.me,
                    result: Ok(self.ballot),
                },
            ));
        }
        // Inputs accepted here beyond what was restored (a handoff that failed
        // rolled them back): their senders resend from the restored marks.
        self.ask_to_resend(rolled);
        let held: Vec<Envelope> = self.held.drain(..).collect();
        for env in held {
            self.accept(now, env);
        }
        self.pump(now);
    }

    /// Loads a state into memory and tells the owner to rebuild the user code
    /// (or, `warm`, to take the code it built from that record ahead of time).
    fn install(&mut self, state: DurableState, warm: Option<(Ballot, u64)>) {
        let me = SenderId::Actor(self.key.clone());
        self.accepted = state
            .inbound
            .iter()
            .map(|(s, i)| (s.clone(), i.last))
            .collect();
        self.committed_last = self.accepted.clone();
        self.inbound = state.inbound;
        self.streams = Streams::restore(me, self.config.stream, state.streams);
        // Restored outputs wait for the first commit under this ballot.
        self.streams.hold_all();
        self.applied_total = state.applied;
        self.pending.clear();
        self.applying = None;
        self.unsnap = Unsnapshotted::default();
        self.events.push_back(ActivationEvent::Restore {
            user: state.user,
            warm,
        });
    }

    // ----- inputs -----

    /// A message for this actor arrived.
    pub fn handle_envelope(&mut self, now: Time, env: Envelope) {
        if env.ballot > self.ballot
            && ballot_step_ok(env.ballot, self.ballot)
            && matches!(self.phase, Phase::Active | Phase::Draining(_))
        {
            // The sender heard from a newer activation: this one can never commit
            // again. Step down and send the sender back to its resolver.
            self.transmit.push_back((
                env.reply_to,
                DurableMsg::Redirect(Redirect {
                    key: self.key.clone(),
                    to: env.from.clone(),
                    node: None,
                }),
            ));
            self.end(Deactivation::Superseded(env.ballot));
            return;
        }
        match self.phase {
            Phase::Fencing(_) | Phase::Draining(_) | Phase::HandingOff { .. } => {
                if self.held.len() >= self.config.pending_max {
                    self.stats.refused += 1;
                    self.nack(&env.from, env.reply_to, env.seq, 50);
                } else {
                    self.held.push_back(env);
                }
            }
            Phase::Active => {
                self.accept(now, env);
                self.pump(now);
            }
            Phase::Gone => {}
        }
    }

    /// A local input (not from a sender: not deduplicated, not acknowledged).
    pub fn local_input(&mut self, now: Time, payload: Vec<u8>) {
        if matches!(self.phase, Phase::Active) && self.pending.len() < self.config.pending_max {
            self.pending.push_back(Pending {
                arrived: now,
                from: None,
                seq: 0,
                payload,
                trace: None,
                reply_to: None,
            });
            self.pump(now);
        }
    }

    fn nack(&mut self, to: &SenderId, node: NodeId, expected: u64, retry_after_ms: u32) {
        self.transmit.push_back((
            node,
            DurableMsg::Nack(Nack {
                key: self.key.clone(),
                to: to.clone(),
                expected,
                retry_after_ms,
            }),
        ));
    }

    fn accept(&mut self, now: Time, env: Envelope) {
        let sender = env.from.clone();
        let last = self.accepted.get(&sender).copied().unwrap_or(0);
        self.reply_to.insert(sender.clone(), env.reply_to);
        if env.seq <= last {
            self.stats.duplicates += 1;
            let committed = self.committed_last.get(&sender).copied().unwrap_or(0);
            if env.seq <= committed && self.first_commit_done {
                let replies = self
                    .inbound
                    .get(&sender)
                    .filter(|i| i.last == env.seq)
                    .and_then(|i| i.reply.clone())
                    .map(|r| vec![(env.seq, r)])
                    .unwrap_or_default();
                self.transmit.push_back((
                    env.reply_to,
                    DurableMsg::Ack(Ack {
                        key: self.key.clone(),
                        to: sender,
                        up_to: committed,
                        replies,
                        ballot: self.ballot,
                    }),
                ));
            }
            return;
        }
        let next = last.saturating_add(1);
        if env.seq > next {
            self.stats.refused += 1;
            self.nack(&sender, env.reply_to, next, 0);
            return;
        }
        if self.pending.len() >= self.config.pending_max {
            self.stats.refused += 1;
            self.nack(&sender, env.reply_to, env.seq, 50);
            return;
        }
        self.accepted.insert(sender.clone(), env.seq);
        self.pending.push_back(Pending {
            arrived: now,
            from: Some(sender),
            seq: env.seq,
            payload: env.payload,
            trace: env.trace,
            reply_to: Some(env.reply_to),
        });
    }

    /// The user code applied batch `token`.
    pub fn applied(&mut self, now: Time, token: u64, result: Applied) {
        let Some(batch) = self.applying.take_if(|a| a.token == token) else {
            return;
        };
        if !matches!(self.phase, Phase::Active | Phase::Draining(_)) {
            return;
        }
        let mut replies = result.replies.into_iter();
        for (from, seq) in batch.inputs {
            let reply = replies.next().flatten();
            let Some(sender) = from else {
                continue;
            };
            self.applied_total += 1;
            self.stats.applied += 1;
            self.dirty = true;
            let kept = reply
                .as_ref()
                .filter(|r| reply_len(r) <= self.config.reply_bytes_max)
                .cloned();
            self.inbound.insert(
                sender.clone(),
                Inbound {
                    last: seq,
                    reply: kept,
                    touched: self.applied_total,
                },
            );
            self.unsnap.acks.push((sender, seq, reply));
        }
        self.evict_senders();
        if result.changed {
            self.dirty = true;
        }
        for out in result.outputs {
            match out {
                Output::Send { to, payload, trace } => {
                    self.streams.push(&to, payload, trace);
                    self.dirty = true;
                }
                Output::Command { to, command } => {
                    self.unsnap.commands.push((to, command));
                    self.dirty = true;
                }
            }
        }
        // A batch that changed nothing (local inputs only, none of them changing
        // the state, no outputs) commits nothing: an idle scheduler's ticks must
        // not rewrite its record at a majority twice a second.
        if batch.snapshot && self.dirty {
            match result.snapshot {
                Some(snapshot) => self.begin_commit(now, snapshot),
                None => {
                    self.user_failed(now, "the user code returned no snapshot".into());
                    return;
                }
            }
        }
        self.pump(now);
    }

    fn evict_senders(&mut self) {
        while self.inbound.len() > self.config.senders_max {
            let victim = self
                .inbound
                .iter()
                .filter(|(s, _)| matches!(s, SenderId::Client(_)))
                .min_by_key(|(_, i)| i.touched)
                .map(|(s, _)| s.clone());
            let Some(victim) = victim else {
                break;
            };
            self.inbound.remove(&victim);
            self.accepted.remove(&victim);
            self.committed_last.remove(&victim);
            self.reply_to.remove(&victim);
        }
    }

    /// The user code failed (panicked, or its state did not restore): roll back to
    /// the newest record handed to the replicas and rebuild it, or give up after
    /// too many failures.
    pub fn user_failed(&mut self, now: Time, why: String) {
        if !matches!(self.phase, Phase::Active | Phase::Draining(_)) {
            return;
        }
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_since(*t) > self.config.restart_period)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        if self.restarts.len() as u32 > self.config.restarts_max {
            self.end(Deactivation::Failed(why));
            return;
        }
        let state = match &self.base {
            Some(r) => match DurableState::decode(&r.body) {
                Ok(s) => s,
                Err(e) => {
                    self.end(Deactivation::Failed(format!("state does not decode: {e}")));
                    return;
                }
            },
            None => DurableState::empty(),
        };
        // Senders whose inputs were dropped resend from what the base holds.
        let rolled = self.rolled_back(&state);
        let committed_last = std::mem::take(&mut self.committed_last);
        let released = self.first_commit_done;
        self.install(state, None);
        self.committed_last = committed_last;
        if released && let Some(c) = &self.committed {
            // What the committed record holds stays released.
            if let Ok(s) = DurableState::decode(&c.body) {
                let marks = s
                    .streams
                    .iter()
                    .map(|(k, o)| (k.clone(), o.next_seq.saturating_sub(1)))
                    .collect();
                self.streams.release(&marks);
            }
        }
        self.dirty = self.in_flight.is_none() && !self.first_commit_done;
        self.ask_to_resend(rolled);
        self.pump(now);
    }

    /// Senders this activation accepted inputs from beyond what `state` holds,
    /// each with the number to resend from: restoring `state` drops those inputs.
    fn rolled_back(&self, state: &DurableState) -> Vec<(SenderId, u64)> {
        self.accepted
            .iter()
            .filter_map(|(s, last)| {
                let kept = state.inbound.get(s).map_or(0, |i| i.last);
                (kept < *last).then(|| (s.clone(), kept.saturating_add(1)))
            })
            .collect()
    }

    /// Asks each sender to resend from its number (they keep every message not
    /// acknowledged).
    fn ask_to_resend(&mut self, rolled: Vec<(SenderId, u64)>) {
        for (sender, expected) in rolled {
            if let Some(node) = self.reply_to.get(&sender).copied() {
                self.nack(&sender, node, expected, 0);
            }
        }
    }

    // ----- commits -----

    fn commit_interval(&self) -> Duration {
        let by_size = Duration::from_secs_f64(
            self.last_bytes as f64 / self.config.snapshot_bandwidth.max(1) as f64,
        );
        by_size.max(self.config.commit_interval_min)
    }

    /// No commit starts while a migration waits for its target's standby: the
    /// standby must hold the newest record the replicas may have (see
    /// [`Activation::on_prepared`]), and the wait is short (one prepare).
    fn commit_due(&self, now: Time) -> bool {
        self.in_flight.is_none()
            && self.preparing.is_none()
            && now >= self.last_commit_start + self.commit_interval()
    }

    fn begin_commit(&mut self, now: Time, user: Snapshot) {
        let state = DurableState {
            user,
            inbound: self.inbound.clone(),
            streams: self.streams.durable(),
            applied: self.applied_total,
        };
        let body = match codec::encode_body(&state) {
            Ok(b) => b,
            Err(e) => {
                self.user_failed(now, format!("the state does not encode: {e}"));
                return;
            }
        };
        self.version += 1;
        let (set, old) = match &self.next_set {
            Some(next) => (next.clone(), Some(self.set.clone())),
            None => (self.set.clone(), None),
        };
        let record = Record {
            ballot: self.ballot,
            version: self.version,
            set: set.clone(),
            body: body.into(),
        };
        // Pacing counts the whole body either way: every replica still stores it.
        self.last_bytes = record.body.len();
        self.last_commit_start = now;
        let req = self.req();
        let patch = self.patch_of(&record, &set, old.as_ref());
        let commit = Commit {
            record,
            set,
            old,
            req,
            acked: BTreeSet::new(),
            patch,
            effects: std::mem::take(&mut self.unsnap),
            marks: self.streams.marks(),
            started: now,
            next_retry: now + self.config.retry_interval,
        };
        self.dirty = false;
        self.base = Some(commit.record.clone());
        self.send_writes(&commit, None);
        self.in_flight = Some(commit);
    }

    /// `record` as a patch of the last record this activation wrote or restored,
    /// for the members of the commit that were in that record's set; `None` when
    /// patches are off, there is no such record, or the patch would carry more
    /// than half the body.
    fn patch_of(
        &self,
        record: &Record,
        set: &ReplicaSet,
        old: Option<&ReplicaSet>,
    ) -> Option<(RecordPatch, BTreeSet<NodeId>)> {
        let base = self.base.as_ref().filter(|_| self.config.patches)?;
        let edits = patch::diff(&base.body, &record.body);
        if edits.inserted() > record.body.len() / 2 {
            return None;
        }
        let to: BTreeSet<NodeId> = set
            .nodes()
            .iter()
            .chain(old.map_or(&[][..], |o| o.nodes()))
            .filter(|n| base.set.contains(n))
            .copied()
            .collect();
        let patch = RecordPatch {
            ballot: record.ballot,
            version: record.version,
            set: record.set.clone(),
            base: base.order(),
            patch: edits,
            digest: *blake3::hash(&record.body).as_bytes(),
        };
        Some((patch, to))
    }

    fn send_writes(&mut self, commit: &Commit, skip: Option<&BTreeSet<NodeId>>) {
        for n in commit.members() {
            if skip.is_some_and(|s| s.contains(&n)) {
                continue;
            }
            let op = match &commit.patch {
                Some((patch, to)) if to.contains(&n) => {
                    self.stats.patches += 1;
                    ReplicaOp::Patch {
                        patch: patch.clone(),
                    }
                }
                _ => ReplicaOp::Write {
                    record: commit.record.clone(),
                },
            };
            self.send_write(n, commit.req, op);
        }
    }

    fn send_write(&mut self, to: NodeId, req: u64, op: ReplicaOp) {
        self.transmit.push_back((
            to,
            DurableMsg::Replica {
                from: self.me,
                req,
                key: self.key.clone(),
                op,
            },
        ));
    }

    fn on_write_reply(&mut self, now: Time, from: NodeId, req: u64, reply: ReplicaReply) {
        // A replica that wrote the committed record after its quorum: it holds it.
        if let ReplicaReply::Written { ballot, version } = &reply
            && let Some(c) = &self.committed
            && c.order() == (*ballot, *version)
            && c.set.contains(&from)
        {
            self.holders.insert(from);
        }
        // A replica outside the commit's quorum answers after it completed: one
        // that could not use the patch gets the committed record whole, or it
        // would stay behind while the others commit.
        if let ReplicaReply::WantWhole { ballot, version } = &reply
            && let Some(c) = &self.committed
            && c.order() == (*ballot, *version)
            && c.set.contains(&from)
            && self.whole_to.insert(from)
        {
            let record = c.clone();
            let req = self.req();
            self.stats.wholes_wanted += 1;
            self.send_write(from, req, ReplicaOp::Write { record });
            return;
        }
        let Some(c) = self.in_flight.as_mut() else {
            return;
        };
        if c.req != req || !c.is_member(&from) {
            return;
        }
        match reply {
            ReplicaReply::Written { ballot, version } => {
                if (ballot, version) != c.record.order() {
                    return;
                }
                c.acked.insert(from);
                let started = c.started;
                if self.set.contains(&from) {
                    self.confirm(from, started);
                }
                if self.in_flight.as_ref().is_some_and(Commit::has_quorum) {
                    self.commit_done(now);
                }
            }
            ReplicaReply::WantWhole { ballot, version } => {
                // Once per replica and commit: it leaves the patch's list.
                if (ballot, version) == c.record.order()
                    && let Some((_, to)) = c.patch.as_mut()
                    && to.remove(&from)
                {
                    let (req, record) = (c.req, c.record.clone());
                    self.stats.wholes_wanted += 1;
                    self.send_write(from, req, ReplicaOp::Write { record });
                }
            }
            ReplicaReply::Refused { promised } if promised > self.ballot => {
                self.end(Deactivation::Superseded(promised));
            }
            _ => {}
        }
    }

    fn commit_done(&mut self, now: Time) {
        let Some(c) = self.in_flight.take() else {
            return;
        };
        if self.next_set.as_ref() == Some(&c.set) {
            self.set = c.set.clone();
            self.next_set = None;
            self.events
                .push_back(ActivationEvent::Reconfigured { set: c.set.clone() });
        }
        self.stats.commits += 1;
        self.first_commit_done = true;
        // A majority wrote it under this ballot, each after the commit began.
        self.confirmed = self.confirmed.max(c.started);
        self.events.push_back(ActivationEvent::Committed {
            version: c.record.version,
            bytes: c.record.body.len(),
            latency: now.saturating_since(c.started),
        });
        // Acks, grouped per sender.
        let mut per_sender: BTreeMap<SenderId, (u64, Vec<(u64, Reply)>)> = BTreeMap::new();
        for (sender, seq, reply) in c.effects.acks {
            let e = per_sender.entry(sender).or_insert((0, Vec::new()));
            e.0 = e.0.max(seq);
            if let Some(r) = reply {
                e.1.push((seq, r));
            }
        }
        for (sender, (up_to, replies)) in per_sender {
            self.committed_last.insert(sender.clone(), up_to);
            if let Some(node) = self.reply_to.get(&sender).copied() {
                self.transmit.push_back((
                    node,
                    DurableMsg::Ack(Ack {
                        key: self.key.clone(),
                        to: sender,
                        up_to,
                        replies,
                        ballot: self.ballot,
                    }),
                ));
            }
        }
        self.streams.release(&c.marks);
        for (to, command) in c.effects.commands {
            self.events
                .push_back(ActivationEvent::Command { to, command });
        }
        self.holders = c
            .acked
            .iter()
            .filter(|n| c.record.set.contains(n))
            .copied()
            .collect();
        self.committed = Some(c.record);
        self.whole_to.clear();
        self.pump(now);
    }

    // ----- streams (this actor as a sender) -----

    /// A receiver acknowledged this actor's outputs.
    pub fn on_ack(&mut self, now: Time, ack: Ack) {
        self.streams
            .on_ack(now, &ack.key, ack.up_to, ack.ballot, ack.replies);
        while self.streams.poll_event().is_some() {}
        self.pump(now);
    }

    /// A receiver asked this actor to resend.
    pub fn on_nack(&mut self, now: Time, nack: Nack) {
        self.streams.on_nack(
            now,
            &nack.key,
            nack.expected,
            Duration::from_millis(u64::from(nack.retry_after_ms)),
        );
    }

    /// A receiver moved.
    pub fn on_redirect(&mut self, now: Time, r: Redirect) {
        self.streams.on_redirect(now, &r.key, r.node);
    }

    /// Envelopes this actor's streams want sent now.
    pub fn poll_streams(
        &mut self,
        now: Time,
        resolve: &mut dyn FnMut(&DurableKey) -> Option<(NodeId, Ballot)>,
        out: &mut Vec<(NodeId, Envelope)>,
    ) {
        if self.is_active() || matches!(self.phase, Phase::HandingOff { .. }) {
            self.streams.poll_transmit(now, self.me, resolve, out);
        }
    }

    // ----- migration -----

    /// Starts a live migration to `to`. Returns false if the actor is not in a state
    /// to move (restoring, moving already, or gone).
    ///
    /// With [`ActivationConfig::warm_handoffs`], a target that holds the last
    /// committed record as a replica is first asked to prepare a warm standby
    /// from it ([`DurableMsg::Prepare`]), and the actor quiesces only once the
    /// target answers (or does not within `prepare_timeout`): see
    /// [`Activation::on_prepared`].
    pub fn migrate(&mut self, now: Time, to: NodeId) -> bool {
        if self.why_not_migrate(to).is_some() {
            return false;
        }
        let id = self.next_migration;
        self.next_migration += 1;
        if self.config.warm_handoffs
            && let Some(order) = self.handed_by_reference(&to)
        {
            self.prepare(Preparing {
                id,
                to,
                order,
                attempts: 1,
                deadline: now + self.config.prepare_timeout,
                asked: now,
            });
            return true;
        }
        self.quiesce(now, id, to, false, now);
        true
    }

    fn prepare(&mut self, p: Preparing) {
        self.transmit.push_back((
            p.to,
            DurableMsg::Prepare(Prepare {
                key: self.key.clone(),
                migration: p.id,
                from: self.me,
                order: p.order,
                spec: self.spec.clone(),
            }),
        ));
        self.preparing = Some(p);
    }

    /// Stops taking input and hands off once nothing is being applied.
    fn quiesce(&mut self, now: Time, id: u64, to: NodeId, warm: bool, asked: Time) {
        self.preparing = None;
        self.phase = Phase::Draining(Migration {
            id,
            to,
            since: now,
            warm,
            asked,
        });
        self.pump(now);
    }

    /// The migration target's answer to a [`DurableMsg::Prepare`], from node
    /// `from` (authenticated; only the target may answer). A standby of the
    /// newest record a replica may hold (the commit in flight, else the last
    /// committed one): quiesce now, and the handoff names the committed record.
    /// One behind (the target's replica had not written that commit yet): ask
    /// again (no commit starts meanwhile), at most
    /// [`PREPARE_ATTEMPTS_MAX`] times in all. A refusal, or too many tries:
    /// quiesce anyway (the target restores during the pause, as without
    /// standbys).
    pub fn on_prepared(
        &mut self,
        now: Time,
        from: NodeId,
        migration: u64,
        result: Result<(Ballot, u64), String>,
    ) -> Result<(), Refusal> {
        let Some(p) = self.preparing.clone() else {
            return Ok(());
        };
        if p.id != migration {
            return Ok(());
        }
        if from != p.to {
            return Err(Refusal::NotHolder { sender: from });
        }
        if !matches!(self.phase, Phase::Active) {
            self.preparing = None;
            return Ok(());
        }
        let now_by_reference = self.handed_by_reference(&p.to);
        // The newest record a replica may hold: the commit in flight (rolled
        // back by the handoff here, but a replica that wrote it gives it to the
        // target's fence), else the committed one.
        let newest = match &self.in_flight {
            Some(c) => Some(c.record.order()),
            None => now_by_reference,
        };
        match result {
            Ok(order) if now_by_reference.is_some() && newest.is_some_and(|n| order >= n) => {
                self.quiesce(now, p.id, p.to, true, p.asked)
            }
            Ok(_) if p.attempts < PREPARE_ATTEMPTS_MAX && now_by_reference.is_some() => {
                if let Some(order) = now_by_reference {
                    self.prepare(Preparing {
                        order,
                        attempts: p.attempts + 1,
                        ..p
                    });
                }
            }
            Ok(_) | Err(_) => self.quiesce(now, p.id, p.to, false, p.asked),
        }
        Ok(())
    }

    /// Where the actor is moving to, while a move is under way.
    pub fn moving_to(&self) -> Option<NodeId> {
        match &self.phase {
            Phase::Draining(mig) | Phase::HandingOff { mig, .. } => Some(mig.to),
            Phase::Active => self.preparing.as_ref().map(|p| p.to),
            _ => None,
        }
    }

    /// Why a move to `to` cannot start now, if it cannot.
    pub fn why_not_migrate(&self, to: NodeId) -> Option<&'static str> {
        if to == self.me {
            return Some("the actor is on the target already");
        }
        match self.phase {
            Phase::Active if self.preparing.is_some() => {
                Some("the actor is moving elsewhere already")
            }
            Phase::Active => None,
            Phase::Fencing(_) => Some("the actor is still restoring here"),
            Phase::Draining(_) | Phase::HandingOff { .. } => {
                Some("the actor is moving elsewhere already")
            }
            Phase::Gone => Some("the actor has ended here"),
        }
    }

    /// The record a handoff may name by reference: the committed one, when the
    /// target acknowledged writing it as a replica.
    fn handed_by_reference(&self, to: &NodeId) -> Option<(Ballot, u64)> {
        self.committed
            .as_ref()
            .filter(|_| self.holders.contains(to))
            .map(Record::order)
    }

    /// Hands the actor to the migration's target once it can.
    ///
    /// When the target holds the last committed record as a replica, the handoff
    /// names that record and goes at once: a commit in flight and inputs applied
    /// since the record are rolled back (their effects were never released, so
    /// nothing anyone saw is undone), their senders resend to the target once
    /// redirected, and the target restores from its own copy: no commit and no state on the
    /// pause's path (only the fence, and whatever the links and replicas still
    /// have queued). Otherwise the source commits what it applied and hands the
    /// record over whole.
    fn try_hand_off(&mut self, now: Time) {
        let Phase::Draining(mig) = &self.phase else {
            return;
        };
        if self.applying.is_some() {
            return;
        }
        let by_reference = self.handed_by_reference(&mig.to);
        if by_reference.is_none() && (self.in_flight.is_some() || self.dirty) {
            return;
        }
        let Some(committed) = self.committed.as_ref() else {
            return;
        };
        let record = match by_reference {
            Some(order) => HandedRecord::Held { order },
            None => HandedRecord::Whole(committed.clone()),
        };
        let mig = mig.clone();
        // Senders with inputs applied past what the record holds: rolled back
        // with it. Once the target answers, the redirect every sender gets makes
        // them resend all they have not had acknowledged (if the handoff fails,
        // the re-fence here asks them to: `rolled_back`); their queued messages
        // stay behind, so the target sees no gap in their numbers.
        let rolled: BTreeSet<SenderId> = self
            .inbound
            .iter()
            .filter(|(s, i)| self.committed_last.get(*s).copied().unwrap_or(0) < i.last)
            .map(|(s, _)| s.clone())
            .collect();
        // A commit in flight is abandoned: it is never acknowledged from here.
        self.in_flight = None;
        let mut queued: Vec<Envelope> = self
            .pending
            .drain(..)
            .filter(|p| p.from.as_ref().is_none_or(|s| !rolled.contains(s)))
            .filter_map(|p| {
                Some(Envelope {
                    to: self.key.clone(),
                    from: p.from?,
                    reply_to: p.reply_to?,
                    seq: p.seq,
                    payload: p.payload,
                    trace: p.trace,
                    hops: 0,
                    ballot: Ballot::ZERO,
                })
            })
            .collect();
        queued.extend(self.held.drain(..).filter(|e| !rolled.contains(&e.from)));
        self.transmit.push_back((
            mig.to,
            DurableMsg::Handoff(Handoff {
                key: self.key.clone(),
                migration: mig.id,
                from: self.me,
                record,
                set: self.set.clone(),
                spec: self.spec.clone(),
                queued,
            }),
        ));
        let deadline = now + self.config.handoff_timeout;
        self.phase = Phase::HandingOff {
            by_reference: by_reference.is_some(),
            sent: now,
            mig,
            deadline,
            rolled,
        };
    }

    /// The target's answer to a handoff, from node `from` (authenticated). Only
    /// the migration's target may answer, and a ballot it reports must be its own.
    pub fn on_handoff_reply(
        &mut self,
        now: Time,
        from: NodeId,
        migration: u64,
        result: Result<Ballot, String>,
    ) -> Result<(), Refusal> {
        let Phase::HandingOff { mig, .. } = &self.phase else {
            return Ok(());
        };
        if mig.id != migration {
            return Ok(());
        }
        if from != mig.to {
            return Err(Refusal::NotHolder { sender: from });
        }
        if let Ok(ballot) = &result
            && ballot.node != from
        {
            return Err(Refusal::ForeignBallot {
                ballot: *ballot,
                sender: from,
            });
        }
        let mig = mig.clone();
        match result {
            Ok(ballot) => {
                // Senders whose inputs were rolled back resend every message not
                // acknowledged once redirected (`Streams::on_redirect`).
                let (rolled, sent, by_reference) = match &mut self.phase {
                    Phase::HandingOff {
                        rolled,
                        sent,
                        by_reference,
                        ..
                    } => (std::mem::take(rolled), *sent, *by_reference),
                    _ => (BTreeSet::new(), now, false),
                };
                // Tell every sender heard from where the actor is now.
                let senders: Vec<(SenderId, NodeId)> =
                    self.reply_to.iter().map(|(s, n)| (s.clone(), *n)).collect();
                for (sender, node) in senders {
                    self.transmit.push_back((
                        node,
                        DurableMsg::Redirect(Redirect {
                            key: self.key.clone(),
                            to: sender,
                            node: Some((mig.to, ballot)),
                        }),
                    ));
                }
                // (A rolled-back sender's messages are left out: it resends them.)
                let held: Vec<Envelope> = self
                    .held
                    .drain(..)
                    .filter(|e| !rolled.contains(&e.from))
                    .collect();
                for mut env in held {
                    env.hops = env.hops.saturating_add(1);
                    self.transmit.push_back((mig.to, DurableMsg::Envelope(env)));
                }
                self.events.push_back(ActivationEvent::Migrated {
                    to: mig.to,
                    pause: now.saturating_since(mig.since),
                    drain: sent.saturating_since(mig.since),
                    by_reference,
                    warm: mig.warm && by_reference,
                    prepare: mig.since.saturating_since(mig.asked),
                });
                self.end(Deactivation::Migrated { to: mig.to, ballot });
            }
            Err(why) => {
                self.events.push_back(ActivationEvent::MoveFailed {
                    to: mig.to,
                    why: format!("the target refused the handoff: {why}"),
                });
                self.resume(now);
            }
        }
        Ok(())
    }

    /// Whether `node` is a replica this activation sent requests to (members of
    /// the sets it fenced, committed or moved to). Replies from others are refused.
    pub fn asks(&self, node: &NodeId) -> bool {
        self.asked.contains(node)
    }

    /// The streams of this actor's outputs (for checking who may ack them).
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The handoff failed or timed out: fence again (the target may have fenced) and
    /// serve here.
    fn resume(&mut self, now: Time) {
        let best = self.committed.clone();
        let sets = vec![self.set.clone()];
        let queued: Vec<Envelope> = std::mem::take(&mut self.held).into_iter().collect();
        self.ballot = Ballot::above(self.ballot, self.me);
        self.begin_fence(now, sets, best, None, 0, None);
        self.held.extend(queued);
    }

    /// Commits go to `set` from the next commit on (after which the owner hears
    /// `Reconfigured`).
    pub fn reconfigure(&mut self, now: Time, set: ReplicaSet) {
        if set == self.set || !self.is_active() {
            return;
        }
        self.next_set = Some(set);
        self.dirty = true;
        self.pump(now);
    }

    /// Stops the actor for good and drops its replicas.
    pub fn release(&mut self) {
        let mut nodes: Vec<NodeId> = self.set.nodes().to_vec();
        if let Some(next) = &self.next_set {
            nodes.extend(next.nodes().iter().filter(|n| !self.set.contains(n)));
        }
        for n in nodes {
            let req = self.req();
            self.transmit.push_back((
                n,
                DurableMsg::Replica {
                    from: self.me,
                    req,
                    key: self.key.clone(),
                    op: ReplicaOp::Drop {
                        ballot: self.ballot,
                    },
                },
            ));
        }
        self.end(Deactivation::Released);
    }

    fn end(&mut self, why: Deactivation) {
        if matches!(self.phase, Phase::Gone) {
            return;
        }
        self.phase = Phase::Gone;
        self.in_flight = None;
        self.applying = None;
        self.pending.clear();
        self.events.push_back(ActivationEvent::Deactivated(why));
    }

    /// Stops without further ado (the node is shutting down or lost the actor).
    pub fn abandon(&mut self, why: Deactivation) {
        self.end(why);
    }

    /// Envelopes that arrived too late to hand off (the owner forwards them).
    pub fn take_held(&mut self) -> Vec<Envelope> {
        self.held.drain(..).collect()
    }

    // ----- replica replies -----

    /// A replica answered.
    pub fn on_replica_reply(&mut self, now: Time, from: NodeId, req: u64, reply: ReplicaReply) {
        match self.phase {
            Phase::Fencing(_) => self.on_fence_reply(now, from, req, reply),
            Phase::Active | Phase::Draining(_) => {
                if let Some(&(_, sent)) = self.checks.iter().find(|(r, _)| *r == req) {
                    match reply {
                        ReplicaReply::Refused { promised }
                            if promised > self.ballot && self.set.contains(&from) =>
                        {
                            self.end(Deactivation::Superseded(promised));
                        }
                        ReplicaReply::Holds if self.set.contains(&from) => {
                            self.confirm(from, sent);
                        }
                        _ => {}
                    }
                    return;
                }
                self.on_write_reply(now, from, req, reply)
            }
            Phase::HandingOff { .. } | Phase::Gone => {}
        }
    }

    // ----- driving -----

    /// Hands the next batch to the user code, or starts a commit, as due.
    fn pump(&mut self, now: Time) {
        // A target that holds the committed record takes the actor at once: no
        // final commit first (see `try_hand_off`).
        if let Phase::Draining(mig) = &self.phase
            && self.applying.is_none()
            && self.handed_by_reference(&mig.to).is_some()
        {
            self.try_hand_off(now);
            return;
        }
        if self.applying.is_none() {
            let draining = matches!(self.phase, Phase::Draining(_));
            let active = matches!(self.phase, Phase::Active);
            let lingering = self.linger(now);
            if active && !self.pending.is_empty() && !self.streams.is_full() && !lingering {
                let n = self.pending.len().min(self.batch_max());
                let batch: Vec<Pending> = self.pending.drain(..n).collect();
                let snapshot = self.commit_due(now);
                let token = self.next_token;
                self.next_token += 1;
                self.applying = Some(Applying {
                    token,
                    inputs: batch.iter().map(|p| (p.from.clone(), p.seq)).collect(),
                    snapshot,
                });
                let inputs = batch
                    .into_iter()
                    .map(|p| Input {
                        from: p.from,
                        seq: p.seq,
                        payload: p.payload,
                        trace: p.trace,
                    })
                    .collect();
                self.events.push_back(ActivationEvent::Apply {
                    token,
                    inputs,
                    snapshot,
                });
            } else if (active || draining) && self.dirty {
                if self.commit_due(now) || (draining && self.in_flight.is_none()) {
                    let token = self.next_token;
                    self.next_token += 1;
                    self.applying = Some(Applying {
                        token,
                        inputs: Vec::new(),
                        snapshot: true,
                    });
                    self.events.push_back(ActivationEvent::Apply {
                        token,
                        inputs: Vec::new(),
                        snapshot: true,
                    });
                    self.commit_timer = None;
                } else if self.in_flight.is_none() && self.preparing.is_none() {
                    self.commit_timer = Some(self.last_commit_start + self.commit_interval());
                }
            }
        }
        if matches!(self.phase, Phase::Draining(_)) {
            self.try_hand_off(now);
        }
    }

    /// Replica `from` confirmed this activation's ballot in answer to a request
    /// sent at `sent` (a check, or a commit's write): the lease runs from the
    /// newest time a majority of the set confirmed.
    fn confirm(&mut self, from: NodeId, sent: Time) {
        let t = self.held_since.entry(from).or_insert(sent);
        *t = (*t).max(sent);
        let mut times: Vec<Time> = self
            .set
            .nodes()
            .iter()
            .filter_map(|n| self.held_since.get(n).copied())
            .collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(&t) = times.get(self.set.quorum().saturating_sub(1)) {
            self.confirmed = self.confirmed.max(t);
        }
    }

    /// Steps down if the lease lapsed (no majority confirmed this activation for
    /// [`ActivationConfig::lease`]); returns whether it did.
    fn lapsed(&mut self, now: Time) -> bool {
        if matches!(self.phase, Phase::Active | Phase::Draining(_))
            && now.saturating_since(self.confirmed) >= self.config.lease
        {
            self.end(Deactivation::Unconfirmed);
            return true;
        }
        false
    }

    /// Timers: retries, deadlines, the commit pacing timer.
    pub fn handle_timeout(&mut self, now: Time) {
        self.streams.handle_timeout(now);
        if let Some(p) = &self.preparing
            && now >= p.deadline
        {
            // No standby in time: move without one.
            let (id, to, asked) = (p.id, p.to, p.asked);
            if matches!(self.phase, Phase::Active) {
                self.quiesce(now, id, to, false, asked);
            } else {
                self.preparing = None;
            }
        }
        match &mut self.phase {
            Phase::Fencing(f) => {
                if now.saturating_since(f.started) >= self.config.activate_timeout {
                    let handoff = f.handoff;
                    self.refuse_handoff(handoff, "no majority of replicas answered".into());
                    self.end(Deactivation::NoQuorum);
                    return;
                }
                if now >= f.next_retry {
                    f.next_retry = now + self.config.retry_interval;
                    let missing: Vec<NodeId> = f.members.difference(&f.replied).copied().collect();
                    let req = f.req;
                    self.send_fences(req, missing);
                }
            }
            Phase::HandingOff { deadline, mig, .. } => {
                if now >= *deadline {
                    let to = mig.to;
                    self.events.push_back(ActivationEvent::MoveFailed {
                        to,
                        why: format!(
                            "the target did not answer the handoff within {:?}",
                            self.config.handoff_timeout
                        ),
                    });
                    self.resume(now);
                    return;
                }
            }
            Phase::Active | Phase::Draining(_) => {
                if self.lapsed(now) {
                    return;
                }
                if now >= self.next_check {
                    self.next_check = now + self.config.lease_check;
                    // A commit in flight checks the same thing.
                    if self.in_flight.is_none() {
                        let req = self.req();
                        if self.checks.len() >= CHECKS_KEPT {
                            self.checks.pop_front();
                        }
                        self.checks.push_back((req, now));
                        for &n in self.set.nodes() {
                            self.transmit.push_back((
                                n,
                                DurableMsg::Replica {
                                    from: self.me,
                                    req,
                                    key: self.key.clone(),
                                    op: ReplicaOp::Check {
                                        ballot: self.ballot,
                                    },
                                },
                            ));
                        }
                    }
                }
            }
            Phase::Gone => {}
        }
        if let Some(c) = self.in_flight.as_mut() {
            if now.saturating_since(c.started) >= self.config.stall_timeout {
                self.end(Deactivation::Stalled);
                return;
            }
            if now >= c.next_retry {
                c.next_retry = now + self.config.retry_interval;
                let acked = c.acked.clone();
                if let Some(c) = self.in_flight.take() {
                    self.send_writes(&c, Some(&acked));
                    self.in_flight = Some(c);
                }
            }
        }
        if self.commit_timer.is_some_and(|t| t <= now) {
            self.commit_timer = None;
        }
        if self.batch_timer.is_some_and(|t| t <= now) {
            self.batch_timer = None;
        }
        self.pump(now);
    }

    /// Sets how this actor's inputs are batched (its user code asks, through the
    /// host): at most `max` inputs per batch (and never more than
    /// [`ActivationConfig::apply_batch_max`]), and, with a non-zero `wait`, a
    /// partial batch waits until its oldest input has waited that long.
    pub fn set_batching(&mut self, now: Time, batching: Batching) {
        self.batching = Some(batching);
        self.pump(now);
    }

    fn batch_max(&self) -> usize {
        let max = self.batching.map_or(usize::MAX, |b| b.max.max(1));
        max.min(self.config.apply_batch_max)
    }

    /// Whether a partial batch should wait for more inputs; sets the timer if so.
    fn linger(&mut self, now: Time) -> bool {
        let Some(b) = self.batching else {
            return false;
        };
        if b.wait.is_zero() || self.pending.len() >= self.batch_max() {
            self.batch_timer = None;
            return false;
        }
        let Some(oldest) = self.pending.front() else {
            return false;
        };
        let due = oldest.arrived + b.wait;
        if now >= due {
            self.batch_timer = None;
            false
        } else {
            self.batch_timer = Some(due);
            true
        }
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        let phase = match &self.phase {
            Phase::Fencing(f) => Some(f.next_retry.min(f.started + self.config.activate_timeout)),
            Phase::HandingOff { deadline, .. } => Some(*deadline),
            Phase::Active | Phase::Draining(_) => {
                Some(self.next_check.min(self.confirmed + self.config.lease))
            }
            Phase::Gone => None,
        };
        let preparing = self.preparing.as_ref().map(|p| p.deadline);
        let commit = self
            .in_flight
            .as_ref()
            .map(|c| c.next_retry.min(c.started + self.config.stall_timeout));
        [
            phase,
            preparing,
            commit,
            self.commit_timer,
            self.batch_timer,
            self.streams.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, DurableMsg)> {
        let t = self.transmit.pop_front()?;
        if matches!(t.1, DurableMsg::Replica { .. }) {
            self.asked.insert(t.0);
        }
        Some(t)
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<ActivationEvent> {
        self.events.pop_front()
    }

    /// Checks internal invariants (tests and the simulator).
    pub fn check_invariants(&self) -> Result<(), String> {
        if let Some(c) = &self.in_flight
            && c.record.ballot != self.ballot
        {
            return Err(format!(
                "{}: commit in flight under a foreign ballot",
                self.key
            ));
        }
        for (s, last) in &self.accepted {
            let applied = self.inbound.get(s).map_or(0, |i| i.last);
            if *last < applied {
                return Err(format!(
                    "{}: {s} accepted {last} < applied {applied}",
                    self.key
                ));
            }
        }
        if let Some(c) = &self.committed
            && self.base.as_ref().is_some_and(|b| b.order() < c.order())
        {
            return Err(format!(
                "{}: base older than the committed record",
                self.key
            ));
        }
        Ok(())
    }

    /// Handles a stream event (drains them; activations do not use stream replies).
    pub fn drain_stream_events(&mut self) -> Vec<StreamEvent> {
        let mut v = Vec::new();
        while let Some(e) = self.streams.poll_event() {
            v.push(e);
        }
        v
    }
}

fn reply_len(r: &Reply) -> usize {
    match r {
        Ok(b) => b.len(),
        Err(s) => s.len(),
    }
}

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("key", &self.key)
            .field("ballot", &self.ballot)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
