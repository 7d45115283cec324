//! The scheduler: a pure state machine that runs as a durable actor.
//!
//! Its state is the jobs and where each of their actors should run. Requests
//! (deploy, stop, migrate, drain, reports) and ticks (the host node's view of the
//! cluster) go in; responses and commands to nodes come out. Commands are
//! level-triggered: each tick compares the desired placement with the registry
//! (where actors actually run) and re-issues what is missing, so a lost command
//! or a crashed node only delays convergence.
//!
//! Each tick, in priority order (then key order):
//! * an actor whose host is dead (or draining) and that runs nowhere is placed on
//!   another node, which restores it from its replicas (if no node can take it,
//!   it is marked stranded, and tried again next tick);
//! * an actor found running elsewhere than planned (it migrated) is re-recorded;
//! * an actor on a draining node is migrated off it;
//! * an actor whose replica set lost a member gets a new set (a reconfiguration);
//! * an actor running that belongs to no job is released;
//! * when a node joins empty, one actor of a `spread` job moves to it per tick,
//!   until no node has two more actors than another; an actor an operator moved
//!   (`Migrate`) is pinned and never rebalanced, until its host dies or drains.
//!
//! A move holds room on its target until it lands or times out
//! ([`MIGRATION_TICKS`]); [`Scheduler::check_invariants`] lists what the state
//! promises.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::NodeId;
use plexus_actors::codec::{self, FRAME_BYTES_MAX};
use plexus_actors::migratable::{Migratable, RestoreError, Snapshot};
use plexus_durable::types::{Ballot, DurableKey, ReplicaSet};
use plexus_durable::wire::Command;
use plexus_vocab::resources::Resources;
use serde::{Deserialize, Serialize};

use crate::job::{JobSpec, Strategy, actor_key};
use crate::placement::{Demand, Ledger, NodeInfo, pick, place_all, replica_set};
use crate::protocol::{
    ActorSpec, ActorStatus, JobStatus, REPORT_EVERY_TICKS, Rejection, Report, Request, Response,
    Rights, SCHEDULER_KEY, Signed, Status, View, WHY_BYTES_MAX, admit,
};
use crate::tags::Expr;

/// Ticks between re-issues of a command that has not taken effect.
pub const RETRY_TICKS: u64 = 6;
/// Ticks after which a migration that has not happened is forgotten (and may be
/// retried).
pub const MIGRATION_TICKS: u64 = 40;
/// With a sharded registry ([`View::partial`]): ticks a host's report that an
/// actor is active on it stays evidence of where the actor runs. Hosts repeat
/// their reports every [`REPORT_EVERY_TICKS`] ticks, so this outlasts three lost
/// reports in a row. It is also how long a scheduler just restored waits for
/// reports before it takes an actor it has heard nothing of as inactive.
pub const REPORT_FRESH_TICKS: u64 = 4 * REPORT_EVERY_TICKS;
/// Most orphans released within one [`RETRY_TICKS`] period from reports (with a
/// sharded registry); more wait for the next period.
pub const RELEASED_MAX: usize = 4_096;
/// Most signers whose sequence numbers the scheduler keeps. Only signers with a
/// right in the allowlist get an entry (the allowlist, at most 4 MiB, bounds them
/// first), and each tick forgets signers the allowlist no longer names; past this
/// bound a new signer's requests are refused with [`Rejection::TooManySigners`]
/// until the allowlist shrinks.
pub const SIGNERS_MAX: usize = 100_000;

/// One job as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The spec.
    pub spec: JobSpec,
    /// Who deployed it.
    pub submitter: NodeId,
    /// Set when an actor failed for good.
    pub failure: Option<String>,
}

/// Where one actor should run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Its job.
    pub job: String,
    /// Its stage's kind.
    pub kind: String,
    /// The planned (or actual) host.
    pub node: NodeId,
    /// Replica sets that may hold its newest state; the last is current.
    pub sets: Vec<ReplicaSet>,
    /// What it needs.
    pub resources: Resources,
    /// Where it may run.
    pub constraints: Expr,
    /// Its job's priority.
    pub priority: u32,
    /// Its job's strategy.
    pub strategy: Strategy,
    /// Snapshot replicas wanted.
    pub durability: usize,
    /// The encoded [`ActorSpec`].
    #[serde(with = "serde_bytes")]
    pub spec: Vec<u8>,
    /// When a command was last sent for it.
    pub last_command: u64,
    /// A migration under way: target and start tick. The target's room is held
    /// for it until the move lands or times out (after [`MIGRATION_TICKS`]).
    pub migrating: Option<(NodeId, u64)>,
    /// Whether the registry showed it active at the last tick.
    pub active: bool,
    /// The highest ballot an activation reported under.
    pub ballot: Ballot,
    /// Its host is down (or draining) and it runs nowhere, and the last tick found
    /// no node that can take it; every tick tries again.
    pub stranded: bool,
    /// An operator moved it (`Migrate`): rebalancing leaves it where it was put,
    /// so the scheduler never undoes an operator's choice. Its host's death or
    /// drain still moves it, and clears the pin.
    pub pinned: bool,
}

/// The scheduler's durable state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Jobs by name.
    pub jobs: BTreeMap<String, JobRecord>,
    /// Actors by key.
    pub actors: BTreeMap<String, Placement>,
    /// Nodes being drained, with the tick the drain started.
    pub draining: BTreeMap<NodeId, u64>,
    /// Ticks so far.
    pub tick: u64,
    /// The last view of the cluster, so a restored scheduler can judge requests
    /// (who may submit, which nodes exist) before its first tick.
    pub view: View,
    /// Per signer: the highest sequence number of a deploy, stop, migrate or drain
    /// that changed the state (a refused or idempotent request commits nothing,
    /// and leaves no number; within its expiry it can still do, once, only what its
    /// signer asked). A request at or below it is
    /// a replay, refused with [`Rejection::Replayed`] and changing nothing. At most
    /// [`SIGNERS_MAX`] entries, for signers the allowlist names.
    pub seqs: BTreeMap<NodeId, u64>,
}

impl Migratable for State {
    // 4: `View::partial` (a sharded registry); version 3 is upgraded (a full
    // registry: nothing partial, and the next tick's view replaces it anyway).
    // 3: `State::seqs`, `View::network` (signed requests name their network and
    // sequence); version 2 is upgraded (no sequences yet, and the network comes
    // with the first tick). Version 1 is not read: no cluster ran it.
    const SCHEMA_VERSION: u32 = 4;

    fn upgrade(snapshot: &Snapshot) -> Result<Self, RestoreError> {
        let bytes = &snapshot.bytes;
        match snapshot.schema_version {
            3 => Ok(codec::decode_body::<StateV3>(bytes, FRAME_BYTES_MAX)?.upgrade()),
            2 => Ok(codec::decode_body::<StateV2>(bytes, FRAME_BYTES_MAX)?
                .upgrade()
                .upgrade()),
            found => Err(RestoreError::NoUpgrade {
                found,
                supported: Self::SCHEMA_VERSION,
            }),
        }
    }
}

/// [`State`] as schema version 3 wrote it.
#[derive(Serialize, Deserialize)]
struct StateV3 {
    jobs: BTreeMap<String, JobRecord>,
    actors: BTreeMap<String, Placement>,
    draining: BTreeMap<NodeId, u64>,
    tick: u64,
    view: ViewV3,
    seqs: BTreeMap<NodeId, u64>,
}

/// [`View`] as schema version 3 wrote it (no `partial`).
#[derive(Serialize, Deserialize)]
struct ViewV3 {
    me: Option<NodeId>,
    nodes: Vec<NodeInfo>,
    locations: BTreeMap<String, NodeId>,
    submitters: BTreeSet<NodeId>,
    members: BTreeSet<NodeId>,
    kinds: BTreeSet<String>,
    network: String,
}

impl StateV3 {
    fn upgrade(self) -> State {
        State {
            jobs: self.jobs,
            actors: self.actors,
            draining: self.draining,
            tick: self.tick,
            view: self.view.upgrade(),
            seqs: self.seqs,
        }
    }
}

impl ViewV3 {
    fn upgrade(self) -> View {
        View {
            me: self.me,
            nodes: self.nodes,
            locations: self.locations,
            submitters: self.submitters,
            members: self.members,
            kinds: self.kinds,
            network: self.network,
            partial: false,
        }
    }
}

/// [`State`] as schema version 2 wrote it.
#[derive(Serialize, Deserialize)]
struct StateV2 {
    jobs: BTreeMap<String, JobRecord>,
    actors: BTreeMap<String, Placement>,
    draining: BTreeMap<NodeId, u64>,
    tick: u64,
    view: ViewV2,
}

/// [`View`] as schema version 2 wrote it (no network).
#[derive(Serialize, Deserialize)]
struct ViewV2 {
    me: Option<NodeId>,
    nodes: Vec<NodeInfo>,
    locations: BTreeMap<String, NodeId>,
    submitters: BTreeSet<NodeId>,
    members: BTreeSet<NodeId>,
    kinds: BTreeSet<String>,
}

impl StateV2 {
    /// No sequences yet, and the network comes with the first tick.
    fn upgrade(self) -> StateV3 {
        StateV3 {
            jobs: self.jobs,
            actors: self.actors,
            draining: self.draining,
            tick: self.tick,
            view: ViewV3 {
                me: self.view.me,
                nodes: self.view.nodes,
                locations: self.view.locations,
                submitters: self.view.submitters,
                members: self.view.members,
                kinds: self.view.kinds,
                network: String::new(),
            },
            seqs: BTreeMap::new(),
        }
    }
}

/// What handling one input produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The answer (requests only).
    pub response: Option<Response>,
    /// Commands to send once the state is committed.
    pub commands: Vec<(NodeId, Command)>,
    /// Whether the state changed.
    pub changed: bool,
}

/// The scheduler.
#[derive(Clone, Debug, Default)]
pub struct Scheduler {
    state: State,
    /// The last view (not durable: the host sends one right after activation).
    view: View,
    /// Orphans released recently, to rate-limit re-releases (not durable).
    released: BTreeMap<String, u64>,
    /// Per actor, why the last move ordered failed, as its host reported (not
    /// durable; one entry per placed actor at most).
    move_failed: BTreeMap<String, String>,
    /// Moves whose source could not start them: ordered again at the next tick
    /// rather than after [`RETRY_TICKS`] (not durable).
    retry_now: BTreeSet<String>,
    /// Per placed actor, the live node that last reported it active and the
    /// tick the report came in (not durable; one entry per placed actor at most).
    /// Read only with a partial view (a sharded registry).
    heard: BTreeMap<String, (NodeId, u64)>,
    /// The first tick this scheduler ran since it was restored (not durable).
    since: Option<u64>,
}

fn reject(why: Rejection) -> Outcome {
    Outcome {
        response: Some(Response::Rejected(why)),
        ..Outcome::default()
    }
}

/// Holds `p`'s room in `ledger`: on its host, and on its move's target while the
/// move is under way (so nothing else takes the room it will land in).
fn charge(ledger: &mut Ledger, p: &Placement) {
    ledger.add(p.node, p.resources);
    if let Some((to, _)) = p.migrating {
        ledger.add(to, p.resources);
    }
}

/// Undoes [`charge`].
fn discharge(ledger: &mut Ledger, p: &Placement) {
    ledger.remove(p.node, p.resources);
    if let Some((to, _)) = p.migrating {
        ledger.remove(to, p.resources);
    }
}

fn key_of(text: &str) -> Option<DurableKey> {
    DurableKey::new(text).ok()
}

/// Live nodes of `view` meeting `constraints` (see [`Scheduler::live_meeting`]).
fn live_meeting(view: &View, constraints: &Expr) -> Vec<NodeId> {
    view.nodes
        .iter()
        .filter(|n| n.alive && constraints.eval(&n.tags))
        .map(|n| n.id)
        .collect()
}

impl Scheduler {
    /// A scheduler restored from `state`.
    pub fn new(state: State) -> Self {
        Self {
            view: state.view.clone(),
            state,
            released: BTreeMap::new(),
            move_failed: BTreeMap::new(),
            retry_now: BTreeSet::new(),
            heard: BTreeMap::new(),
            since: None,
        }
    }

    /// The state (for snapshots).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Checks what the state promises, against the last view the scheduler saw;
    /// `Err` names the first broken promise. Holds after every request and tick
    /// (the unit and property tests check it after each step; the simulator on the
    /// hosted scheduler), given nodes that run only what they were told while the
    /// order is current and declared capacities that do not shrink:
    ///
    /// * the durable copy of the view is the working one;
    /// * at most [`SIGNERS_MAX`] signers' sequence numbers are kept;
    /// * every actor belongs to a recorded job, and every job has exactly the
    ///   actors its spec names, with its kind and priority; the scheduler's own key
    ///   is never among them;
    /// * every actor has one or two replica sets (two only while it reconfigures);
    /// * every move started at or before this tick, has not outlived
    ///   [`MIGRATION_TICKS`], and leads away from the actor's host;
    /// * every actor is on a live member, or where the registry last saw it, or is
    ///   marked stranded; and only an actor whose host is down or draining is;
    /// * no live node is over-committed: what its actors need, counting actors
    ///   moving to it, fits in what it declared.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.state.view != self.view {
            return Err("the durable view is not the view in use".into());
        }
        if self.state.seqs.len() > SIGNERS_MAX {
            return Err(format!(
                "{} signers' sequences kept, over {SIGNERS_MAX}",
                self.state.seqs.len()
            ));
        }
        let tick = self.state.tick;
        // What each job's spec names: key -> (job, kind, priority).
        let mut named: BTreeMap<String, (&str, &str, u32)> = BTreeMap::new();
        for (name, job) in &self.state.jobs {
            for (stage, i) in job.spec.actors() {
                let entry = (name.as_str(), stage.kind.as_str(), job.spec.priority);
                named.insert(actor_key(name, &stage.name, i), entry);
            }
        }
        for (key, p) in &self.state.actors {
            if key == SCHEDULER_KEY || key_of(key).is_none() {
                return Err(format!("`{key}` is not an actor key a job can have"));
            }
            if !self.state.jobs.contains_key(&p.job) {
                return Err(format!("`{key}` belongs to `{}`, which is no job", p.job));
            }
            let Some(&(job, kind, priority)) = named.get(key) else {
                return Err(format!("job `{}` names no actor `{key}`", p.job));
            };
            if job != p.job || kind != p.kind || priority != p.priority {
                return Err(format!("`{key}` differs from its job's spec"));
            }
            if p.sets.is_empty() || p.sets.len() > 2 {
                return Err(format!("`{key}` has {} replica sets", p.sets.len()));
            }
            if p.last_command > tick {
                return Err(format!("`{key}` was last commanded in the future"));
            }
            if let Some((to, since)) = p.migrating {
                if since > tick {
                    return Err(format!("`{key}` moves since tick {since}, after {tick}"));
                }
                if tick - since > MIGRATION_TICKS {
                    return Err(format!("`{key}`'s move outlived its timeout"));
                }
                if to == p.node {
                    return Err(format!("`{key}` moves to {to}, where it is"));
                }
            }
            let seen_there = self.view.locations.get(key) == Some(&p.node);
            if !(self.alive(&p.node) || seen_there || p.stranded) {
                return Err(format!(
                    "`{key}` is on {}, which is down, and not marked stranded",
                    p.node
                ));
            }
            if p.stranded && self.alive(&p.node) && !self.state.draining.contains_key(&p.node) {
                return Err(format!(
                    "`{key}` is marked stranded on {}, a live, undrained host",
                    p.node
                ));
            }
        }
        for (key, (job, _, _)) in &named {
            if self.state.actors.get(key).is_none_or(|p| p.job != *job) {
                return Err(format!("job `{job}` lacks its actor `{key}`"));
            }
        }
        let ledger = self.ledger();
        for n in self.view.nodes.iter().filter(|n| n.alive) {
            let used = ledger.used(&n.id);
            if !n.capacity.covers(&used) {
                return Err(format!(
                    "{} is over-committed: {} placed, {} declared",
                    n.id,
                    crate::placement::describe(&used),
                    crate::placement::describe(&n.capacity)
                ));
            }
        }
        Ok(())
    }

    fn alive(&self, n: &NodeId) -> bool {
        self.view.nodes.iter().any(|x| x.id == *n && x.alive)
    }

    /// Live nodes meeting `constraints` (on governance tags): where replicas of an
    /// actor under those constraints may be kept. An actor's state is the data its
    /// constraints protect, so a `kyc` actor's replicas stay on `kyc` nodes too.
    fn live_meeting(&self, constraints: &Expr) -> Vec<NodeId> {
        live_meeting(&self.view, constraints)
    }

    fn live_nodes(&self) -> Vec<NodeId> {
        self.view
            .nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.id)
            .collect()
    }

    fn nodes_for_placement(&self) -> Vec<NodeInfo> {
        self.view
            .nodes
            .iter()
            .map(|n| {
                let mut n = n.clone();
                n.draining |= self.state.draining.contains_key(&n.id);
                n
            })
            .collect()
    }

    /// What is allocated where: every actor on its host, and on its move's target
    /// while it moves.
    fn ledger(&self) -> Ledger {
        let mut l = Ledger::default();
        for p in self.state.actors.values() {
            charge(&mut l, p);
        }
        l
    }

    /// Handles a signed request, submitted when the submitting host's clock read
    /// `now_ms` (milliseconds since the Unix epoch; see [`admit`]). A request
    /// refused by admission (signature, network, expiry, rights) or as a replay
    /// changes nothing.
    pub fn request(&mut self, signed: &Signed, now_ms: u64) -> Outcome {
        if let Err(e) = signed.verify() {
            return reject(Rejection::BadSignature(e.to_string()));
        }
        if self.view.me.is_none() {
            return reject(Rejection::Starting);
        }
        let rights = Rights {
            network: &self.view.network,
            submitters: &self.view.submitters,
            members: &self.view.members,
        };
        if let Err(why) = admit(signed, rights, now_ms) {
            return reject(why);
        }
        let signer = signed.signer;
        // Requests that change the state are applied at most once per signer and
        // sequence number; status requests read, and reports are ordered by ballot.
        let sequenced = matches!(
            signed.request,
            Request::Deploy { .. }
                | Request::Stop { .. }
                | Request::Migrate { .. }
                | Request::Drain { .. }
        );
        if sequenced {
            match self.state.seqs.get(&signer) {
                Some(&last) if signed.seq <= last => {
                    return reject(Rejection::Replayed {
                        signer,
                        seq: signed.seq,
                        last,
                    });
                }
                None if self.state.seqs.len() >= SIGNERS_MAX => {
                    return reject(Rejection::TooManySigners);
                }
                _ => {}
            }
        }
        let out = match &signed.request {
            Request::Deploy { spec } => self.deploy(spec, signer),
            Request::Stop { job } => self.stop(job),
            Request::Migrate { actor, to } => self.migrate(actor, *to),
            Request::Drain { node } => {
                let count = self
                    .state
                    .actors
                    .values()
                    .filter(|p| p.node == *node)
                    .count();
                let tick = self.state.tick;
                let changed = self.state.draining.insert(*node, tick).is_none();
                Outcome {
                    response: Some(Response::Draining {
                        node: *node,
                        actors: count,
                    }),
                    commands: Vec::new(),
                    changed,
                }
            }
            Request::Status => Outcome {
                response: Some(Response::Status(self.status())),
                ..Outcome::default()
            },
            Request::Report(report) => {
                let changed = self.report(report);
                Outcome {
                    response: Some(Response::Noted),
                    commands: self.orphan_reported(report).into_iter().collect(),
                    changed,
                }
            }
        };
        // Only a request that changed the state leaves its number: a refused or
        // idempotent one commits nothing, and replayed within its expiry it could
        // do at most what its signer asked, once.
        if sequenced && out.changed {
            self.state.seqs.insert(signer, signed.seq);
        }
        out
    }

    fn deploy(&mut self, text: &str, submitter: NodeId) -> Outcome {
        let spec = match JobSpec::from_toml(text) {
            Ok(s) => s,
            Err(e) => return reject(Rejection::Spec(e)),
        };
        if let Some(existing) = self.state.jobs.get(&spec.name) {
            if existing.spec == spec {
                let actors = self
                    .state
                    .actors
                    .iter()
                    .filter(|(_, p)| p.job == spec.name)
                    .map(|(k, p)| (k.clone(), p.node))
                    .collect();
                return Outcome {
                    response: Some(Response::Deployed {
                        job: spec.name,
                        actors,
                    }),
                    ..Outcome::default()
                };
            }
            return reject(Rejection::JobExists { job: spec.name });
        }
        if !self.view.kinds.is_empty()
            && let Err(e) = spec.check_kinds(&self.view.kinds)
        {
            return reject(Rejection::Spec(e));
        }
        let actors = spec.actors();
        let mut demands = Vec::with_capacity(actors.len());
        let mut stage_nodes: BTreeMap<&str, usize> = BTreeMap::new();
        for (stage, _) in &actors {
            *stage_nodes.entry(stage.name.as_str()).or_default() += 1;
            demands.push(Demand {
                resources: stage.resources,
                constraints: &stage.constraints,
                avoid: BTreeSet::new(),
                exclude: BTreeSet::new(),
            });
        }
        // Spread replicas of one stage over different nodes where possible: place
        // one at a time, avoiding the nodes earlier replicas took.
        let nodes = self.nodes_for_placement();
        let mut ledger = self.ledger();
        let mut chosen = Vec::with_capacity(actors.len());
        let mut taken: BTreeMap<&str, BTreeSet<NodeId>> = BTreeMap::new();
        for (i, (stage, index)) in actors.iter().enumerate() {
            let mut d = demands[i].clone();
            if spec.placement == Strategy::Spread {
                d.avoid = taken.get(stage.name.as_str()).cloned().unwrap_or_default();
            }
            match place_all(&nodes, &ledger, std::slice::from_ref(&d), spec.placement) {
                Ok(n) => {
                    let node = n[0];
                    ledger.add(node, d.resources);
                    taken.entry(stage.name.as_str()).or_default().insert(node);
                    chosen.push(node);
                }
                Err((_, why)) => {
                    return reject(Rejection::Unsatisfiable {
                        stage: stage.name.clone(),
                        replica: *index,
                        why,
                    });
                }
            }
        }
        let tick = self.state.tick;
        let mut commands = Vec::new();
        let mut placed = Vec::new();
        for ((stage, index), node) in actors.iter().zip(chosen) {
            let key = actor_key(&spec.name, &stage.name, *index);
            let outputs = stage
                .to
                .iter()
                .filter_map(|t| spec.stage(t).map(|s| (s.name.clone(), s.replicas)))
                .collect();
            let actor_spec = ActorSpec {
                job: spec.name.clone(),
                stage: stage.name.clone(),
                index: *index,
                kind: stage.kind.clone(),
                config: stage.config.clone(),
                outputs,
            };
            let bytes = match actor_spec.encode() {
                Ok(b) => b,
                Err(e) => {
                    return reject(Rejection::Internal(format!(
                        "the actor spec does not encode: {e}"
                    )));
                }
            };
            let Some(dkey) = key_of(&key) else {
                return reject(Rejection::InvalidKey { key });
            };
            let eligible = self.live_meeting(&stage.constraints);
            let set = replica_set(&key, node, &eligible, spec.durability);
            commands.push((
                node,
                Command::Activate {
                    key: dkey,
                    sets: vec![set.clone()],
                    spec: bytes.clone(),
                },
            ));
            placed.push((key.clone(), node));
            self.state.actors.insert(
                key,
                Placement {
                    job: spec.name.clone(),
                    kind: stage.kind.clone(),
                    node,
                    sets: vec![set],
                    resources: stage.resources,
                    constraints: stage.constraints.clone(),
                    priority: spec.priority,
                    strategy: spec.placement,
                    durability: spec.durability,
                    spec: bytes,
                    last_command: tick,
                    migrating: None,
                    active: false,
                    ballot: Ballot::ZERO,
                    stranded: false,
                    pinned: false,
                },
            );
        }
        let name = spec.name.clone();
        self.state.jobs.insert(
            name.clone(),
            JobRecord {
                spec,
                submitter,
                failure: None,
            },
        );
        Outcome {
            response: Some(Response::Deployed {
                job: name,
                actors: placed,
            }),
            commands,
            changed: true,
        }
    }

    fn stop(&mut self, job: &str) -> Outcome {
        if self.state.jobs.remove(job).is_none() {
            return reject(Rejection::UnknownJob {
                job: job.to_string(),
            });
        }
        let keys: Vec<String> = self
            .state
            .actors
            .iter()
            .filter(|(_, p)| p.job == job)
            .map(|(k, _)| k.clone())
            .collect();
        let mut commands = Vec::new();
        for k in &keys {
            if let Some(p) = self.state.actors.remove(k)
                && let Some(dkey) = key_of(k)
            {
                let mut nodes: BTreeSet<NodeId> = p
                    .sets
                    .iter()
                    .flat_map(|s| s.nodes().iter().copied())
                    .collect();
                nodes.insert(p.node);
                for n in nodes {
                    commands.push((n, Command::Release { key: dkey.clone() }));
                }
            }
        }
        Outcome {
            response: Some(Response::Stopped {
                job: job.to_string(),
                actors: keys.len(),
            }),
            commands,
            changed: true,
        }
    }

    fn migrate(&mut self, actor: &str, to: NodeId) -> Outcome {
        if actor == SCHEDULER_KEY {
            let Some(me) = self.view.me else {
                return reject(Rejection::Starting);
            };
            if !self.alive(&to) {
                return reject(Rejection::NotLive { node: to });
            }
            let Some(key) = key_of(SCHEDULER_KEY) else {
                return reject(Rejection::Internal(format!(
                    "`{SCHEDULER_KEY}` is not a valid key"
                )));
            };
            return Outcome {
                response: Some(Response::Migrating {
                    actor: actor.to_string(),
                    from: me,
                    to,
                }),
                commands: vec![(me, Command::Migrate { key, to })],
                changed: false,
            };
        }
        let nodes = self.nodes_for_placement();
        let mut ledger = self.ledger();
        let Some(p) = self.state.actors.get(actor) else {
            return reject(Rejection::UnknownActor {
                actor: actor.to_string(),
            });
        };
        if p.node == to {
            return reject(Rejection::AlreadyThere {
                actor: actor.to_string(),
                node: to,
            });
        }
        let Some(target) = nodes.iter().find(|n| n.id == to) else {
            return reject(Rejection::UnknownNode { node: to });
        };
        if !target.alive || target.draining {
            return reject(Rejection::Unavailable { node: to });
        }
        if !p.constraints.eval(&target.tags) {
            return reject(Rejection::ConstraintUnmet {
                node: to,
                constraint: p.constraints.to_string(),
            });
        }
        // Its own room (on its host, and on the target of a move this one
        // replaces) does not count against it.
        discharge(&mut ledger, p);
        if !target
            .capacity
            .saturating_sub(&ledger.used(&to))
            .covers(&p.resources)
        {
            return reject(Rejection::NoRoom {
                node: to,
                actor: actor.to_string(),
            });
        }
        let (from, Some(key)) = (p.node, key_of(actor)) else {
            return reject(Rejection::InvalidKey {
                key: actor.to_string(),
            });
        };
        let tick = self.state.tick;
        if let Some(p) = self.state.actors.get_mut(actor) {
            p.migrating = Some((to, tick));
            p.pinned = true;
        }
        // A failure reported from here on is this move's.
        self.move_failed.remove(actor);
        Outcome {
            response: Some(Response::Migrating {
                actor: actor.to_string(),
                from,
                to,
            }),
            commands: vec![(from, Command::Migrate { key, to })],
            changed: true,
        }
    }

    fn report(&mut self, report: &Report) -> bool {
        match report {
            Report::Active {
                key,
                node,
                set,
                ballot,
            } => {
                let live = self.alive(node);
                let Some(p) = self.state.actors.get_mut(key) else {
                    return false;
                };
                if *ballot < p.ballot {
                    return false;
                }
                // With a partial view the reports say where actors run, and an
                // actor that moves (a migration, or a new activation placed by a
                // tick) reports a higher ballot from its new host: a report of the
                // same ballot from elsewhere is from before the move (one delayed,
                // or repeated by a host falsely declared dead).
                if self.view.partial && *ballot == p.ballot && p.node != *node {
                    return false;
                }
                let before = (p.node, p.sets.clone(), p.ballot, p.migrating, p.stranded);
                // A node the view shows down sent it before it died: the actor is
                // not there any more, and the next tick places it.
                if live {
                    self.heard.insert(key.clone(), (*node, self.state.tick));
                    if p.node != *node {
                        self.move_failed.remove(key);
                    }
                    p.node = *node;
                    p.stranded = false;
                    if p.migrating.is_some_and(|(to, _)| to == *node) {
                        p.migrating = None;
                    }
                }
                p.ballot = *ballot;
                // Only the newest set retires the older ones: an activation still on
                // an older set has not committed to the new one, so a successor must
                // keep fencing both.
                if p.sets.last() == Some(set) {
                    p.sets = vec![set.clone()];
                }
                before != (p.node, p.sets.clone(), p.ballot, p.migrating, p.stranded)
            }
            Report::Failed { key, node, why } => {
                // Only the actor's host may fail it (the reporter is `node`).
                let Some(p) = self.state.actors.get(key).filter(|p| p.node == *node) else {
                    return false;
                };
                let job = p.job.clone();
                if let Some(j) = self.state.jobs.get_mut(&job) {
                    j.failure = Some(format!("{key}: {why}"));
                    return true;
                }
                false
            }
            Report::MoveFailed {
                key,
                node,
                to,
                started,
                why,
            } => {
                // Only from the actor's host, about the move under way.
                let under_way =
                    self.state.actors.get(key).is_some_and(|p| {
                        p.node == *node && p.migrating.is_some_and(|(t, _)| t == *to)
                    });
                if !under_way {
                    return false;
                }
                let why = plexus_vocab::text::cut(why, WHY_BYTES_MAX);
                self.move_failed.insert(
                    key.clone(),
                    format!("{node} could not move it to {to}: {why}"),
                );
                // The source was busy: order it again at the next tick. A handoff
                // the target refused or left unanswered cost the actor a pause: it
                // is ordered again only after the usual spacing, until the move's
                // deadline; the status says why meanwhile.
                if !*started {
                    self.retry_now.insert(key.clone());
                }
                false
            }
        }
    }

    /// With a sharded registry the scheduler's node does not hold every actor's
    /// name, so orphans (active actors no job owns) are found from their hosts'
    /// reports: a report of an actor no job owns releases it on the reporter
    /// (once per [`RETRY_TICKS`], as the tick's releases). A full registry finds
    /// them at the tick.
    fn orphan_reported(&mut self, report: &Report) -> Option<(NodeId, Command)> {
        let Report::Active { key, node, .. } = report else {
            return None;
        };
        if !self.view.partial
            || key == SCHEDULER_KEY
            || self.state.actors.contains_key(key)
            || self.released.contains_key(key)
            || self.released.len() >= RELEASED_MAX
        {
            return None;
        }
        let dkey = key_of(key)?;
        self.released.insert(key.clone(), self.state.tick);
        Some((*node, Command::Release { key: dkey }))
    }

    /// Where `key` runs by its host's word: the node that reported it active
    /// within [`REPORT_FRESH_TICKS`], if that node still counts as alive.
    fn reported_at(&self, key: &str, tick: u64, live: &[NodeId]) -> Option<NodeId> {
        self.heard
            .get(key)
            .filter(|(n, at)| tick.saturating_sub(*at) <= REPORT_FRESH_TICKS && live.contains(n))
            .map(|(n, _)| *n)
    }

    /// One reconciliation pass over `view`.
    ///
    /// Where each actor runs comes from the registry (`view.locations`). With a
    /// partial view (a sharded registry, which holds only some names on the
    /// scheduler's node), a host's fresh report stands in for a name not held;
    /// and an actor on a live host that neither shows is *unknown*, not inactive,
    /// for the first [`REPORT_FRESH_TICKS`] ticks after the scheduler starts (its
    /// hosts' reports have not come in yet): it is left as it was for the tick.
    /// After that, silence means inactive, as a missing name does with a full
    /// registry (hosts report every [`REPORT_EVERY_TICKS`] ticks).
    pub fn tick(&mut self, view: View) -> Outcome {
        self.state.view = view.clone();
        self.view = view;
        self.state.tick += 1;
        let tick = self.state.tick;
        let since = *self.since.get_or_insert(tick);
        let partial = self.view.partial;
        let mut out = Outcome {
            changed: false,
            ..Outcome::default()
        };
        // Signers the allowlist no longer names lose their sequence state (their
        // requests are refused anyway; one re-admitted later is still held to its
        // requests' expiry).
        let (submitters, members) = (&self.view.submitters, &self.view.members);
        let signers = self.state.seqs.len();
        self.state
            .seqs
            .retain(|k, _| submitters.contains(k) || members.contains(k));
        out.changed |= signers != self.state.seqs.len();
        // Drains end when the node is gone.
        let before = self.state.draining.len();
        let nodes = &self.view.nodes;
        self.state
            .draining
            .retain(|n, _| nodes.iter().any(|x| x.id == *n && x.alive));
        out.changed |= before != self.state.draining.len();

        let nodes = self.nodes_for_placement();
        let live = self.live_nodes();
        let mut ledger = self.ledger();
        let mut order: Vec<(u32, String)> = self
            .state
            .actors
            .iter()
            .map(|(k, p)| (p.priority, k.clone()))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let draining = self.state.draining.clone();
        for (_, key) in order {
            let Some(dkey) = key_of(&key) else { continue };
            let mut loc = self.view.locations.get(&key).copied();
            if partial && loc.is_none() {
                loc = self.reported_at(&key, tick, &live);
                let young = tick.saturating_sub(since) < REPORT_FRESH_TICKS;
                let host_up = self
                    .state
                    .actors
                    .get(&key)
                    .is_some_and(|p| live.contains(&p.node));
                if loc.is_none() && young && host_up {
                    // Left as it is, but a move past its deadline is still
                    // forgotten (and its target's room freed).
                    if let Some(p) = self.state.actors.get_mut(&key)
                        && p.migrating
                            .is_some_and(|(_, at)| tick.saturating_sub(at) > MIGRATION_TICKS)
                    {
                        discharge(&mut ledger, p);
                        p.migrating = None;
                        charge(&mut ledger, p);
                        out.changed = true;
                    }
                    continue;
                }
            }
            let Some(p) = self.state.actors.get_mut(&key) else {
                continue;
            };
            let was = p.clone();
            // Its room is taken out while it is decided on, and put back where the
            // decision leaves it, so the ledger stays exact whatever happens below.
            discharge(&mut ledger, p);
            p.active = loc.is_some();
            p.stranded = false;
            if !live.contains(&p.node) || draining.contains_key(&p.node) {
                p.pinned = false;
            }
            // A move that has not landed by its deadline is forgotten (and its
            // target's room freed); it may be ordered again.
            if p.migrating
                .is_some_and(|(_, since)| tick.saturating_sub(since) > MIGRATION_TICKS)
            {
                p.migrating = None;
            }
            match loc {
                Some(n) => {
                    if p.node != n {
                        self.move_failed.remove(&key);
                    }
                    p.node = n;
                    if p.migrating.is_some_and(|(to, _)| to == n) {
                        p.migrating = None;
                    }
                    // Still at the source a while after the move was ordered: the
                    // host may have refused it (busy finishing another move, or a
                    // hand-off that failed and resumed). Order it again; a host
                    // that is moving it already ignores the repeat.
                    let now = self.retry_now.remove(&key);
                    if let Some((to, since)) = p.migrating
                        && live.contains(&to)
                        && (now
                            || (tick.saturating_sub(since) >= RETRY_TICKS
                                && tick.saturating_sub(p.last_command) >= RETRY_TICKS))
                    {
                        p.last_command = tick;
                        out.commands.push((
                            n,
                            Command::Migrate {
                                key: dkey.clone(),
                                to,
                            },
                        ));
                    }
                    if draining.contains_key(&n) && p.migrating.is_none() {
                        let d = Demand {
                            resources: p.resources,
                            constraints: &p.constraints,
                            avoid: BTreeSet::new(),
                            exclude: [n].into(),
                        };
                        if let Ok(to) = pick(&nodes, &ledger, &d, p.strategy) {
                            p.migrating = Some((to, tick));
                            out.commands.push((
                                n,
                                Command::Migrate {
                                    key: dkey.clone(),
                                    to,
                                },
                            ));
                        }
                    }
                    // Replace dead replicas.
                    let current = p.sets.last().cloned();
                    if let Some(cur) = current {
                        let dead = cur.nodes().iter().any(|m| !live.contains(m));
                        if p.sets.len() == 1 && dead && p.migrating.is_none() {
                            let eligible = live_meeting(&self.view, &p.constraints);
                            let new = replica_set(&key, n, &eligible, p.durability);
                            if new != cur {
                                p.sets.push(new.clone());
                                p.last_command = tick;
                                out.commands.push((
                                    n,
                                    Command::Reconfigure {
                                        key: dkey.clone(),
                                        set: new,
                                    },
                                ));
                            }
                        } else if p.sets.len() > 1
                            && tick.saturating_sub(p.last_command) >= RETRY_TICKS
                        {
                            p.last_command = tick;
                            out.commands.push((
                                n,
                                Command::Reconfigure {
                                    key: dkey.clone(),
                                    set: cur,
                                },
                            ));
                        }
                    }
                }
                None => {
                    let host_ok = live.contains(&p.node) && !draining.contains_key(&p.node);
                    let moving_to = p
                        .migrating
                        .filter(|&(to, _)| live.contains(&to))
                        .map(|(to, _)| to);
                    if moving_to.is_some() && host_ok {
                        // Between the source's deregistration and the target's
                        // registration the actor is nowhere in the view: wait for
                        // the migration rather than start a rival activation.
                    } else if !host_ok {
                        // The host is gone. A move under way restores on its target
                        // (which may hold the hand-off already: the command is then
                        // a no-op there, and its room is held already), so no rival
                        // starts elsewhere and nothing waits out a move that cannot
                        // finish; else place anew.
                        let target = moving_to.or_else(|| {
                            let d = Demand {
                                resources: p.resources,
                                constraints: &p.constraints,
                                avoid: BTreeSet::new(),
                                exclude: BTreeSet::new(),
                            };
                            pick(&nodes, &ledger, &d, p.strategy).ok()
                        });
                        if let Some(to) = target {
                            p.node = to;
                            p.migrating = None;
                            p.last_command = tick;
                            // The old host's reports no longer say where it runs.
                            self.heard.remove(&key);
                            out.commands.push((
                                to,
                                Command::Activate {
                                    key: dkey.clone(),
                                    sets: p.sets.clone(),
                                    spec: p.spec.clone(),
                                },
                            ));
                        } else {
                            p.stranded = true;
                        }
                    } else if tick.saturating_sub(p.last_command) >= RETRY_TICKS {
                        p.last_command = tick;
                        out.commands.push((
                            p.node,
                            Command::Activate {
                                key: dkey.clone(),
                                sets: p.sets.clone(),
                                spec: p.spec.clone(),
                            },
                        ));
                    }
                }
            }
            charge(&mut ledger, p);
            if *p != was {
                out.changed = true;
            }
        }
        // The scheduler itself leaves a draining host.
        if let Some(me) = self.view.me
            && self.state.draining.contains_key(&me)
            && let Some(to) = live
                .iter()
                .copied()
                .find(|n| *n != me && !self.state.draining.contains_key(n))
            && let Some(key) = key_of(SCHEDULER_KEY)
        {
            out.commands.push((me, Command::Migrate { key, to }));
        }
        // Notes about actors no longer placed go with them.
        let actors = &self.state.actors;
        self.move_failed.retain(|k, _| actors.contains_key(k));
        self.retry_now.retain(|k| actors.contains_key(k));
        self.heard.retain(|k, _| actors.contains_key(k));
        // Orphans: active actors no job owns.
        self.released
            .retain(|_, t| tick.saturating_sub(*t) < RETRY_TICKS);
        for (key, node) in &self.view.locations {
            if key == SCHEDULER_KEY || self.state.actors.contains_key(key) {
                continue;
            }
            if self.released.contains_key(key) {
                continue;
            }
            if let Some(dkey) = key_of(key) {
                self.released.insert(key.clone(), tick);
                out.commands.push((*node, Command::Release { key: dkey }));
            }
        }
        if let Some(c) = self.rebalance(&nodes, &ledger) {
            out.commands.push(c);
            out.changed = true;
        }
        out
    }

    /// Moves one actor of a `spread` job from the busiest node to the idlest when
    /// they differ by two or more, if nothing is moving already.
    fn rebalance(&mut self, nodes: &[NodeInfo], ledger: &Ledger) -> Option<(NodeId, Command)> {
        if self
            .state
            .actors
            .values()
            .any(|p| p.migrating.is_some() || !p.active)
        {
            return None;
        }
        let usable: Vec<&NodeInfo> = nodes.iter().filter(|n| n.alive && !n.draining).collect();
        let idlest = usable.iter().min_by_key(|n| (ledger.count(&n.id), n.id))?;
        let busiest = usable
            .iter()
            .max_by_key(|n| (ledger.count(&n.id), std::cmp::Reverse(n.id)))?;
        if ledger.count(&busiest.id) < ledger.count(&idlest.id) + 2 {
            return None;
        }
        let tick = self.state.tick;
        let free = idlest.capacity.saturating_sub(&ledger.used(&idlest.id));
        let (key, p) = self
            .state
            .actors
            .iter_mut()
            .filter(|(_, p)| {
                p.node == busiest.id
                    && !p.pinned
                    && p.strategy == Strategy::Spread
                    && p.constraints.eval(&idlest.tags)
                    && free.covers(&p.resources)
            })
            .min_by_key(|(k, p)| (p.priority, (*k).clone()))?;
        let dkey = key_of(key)?;
        p.migrating = Some((idlest.id, tick));
        Some((
            busiest.id,
            Command::Migrate {
                key: dkey,
                to: idlest.id,
            },
        ))
    }

    /// The state in listing form.
    pub fn status(&self) -> Status {
        let mut jobs = Vec::new();
        for (name, j) in &self.state.jobs {
            let actors: Vec<&Placement> = self
                .state
                .actors
                .values()
                .filter(|p| p.job == *name)
                .collect();
            let running = actors.iter().filter(|p| p.active).count();
            let state = match &j.failure {
                Some(f) => format!("failed: {f}"),
                None if running == actors.len() => "running".into(),
                None if running == 0 => "starting".into(),
                None => "degraded".into(),
            };
            jobs.push(JobStatus {
                name: name.clone(),
                priority: j.spec.priority,
                actors: actors.len(),
                running,
                state,
                submitter: j.submitter,
            });
        }
        let actors = self
            .state
            .actors
            .iter()
            .map(|(k, p)| ActorStatus {
                key: k.clone(),
                job: p.job.clone(),
                kind: p.kind.clone(),
                node: p.node,
                active: p.active,
                replicas: p
                    .sets
                    .last()
                    .map(|s| s.nodes().to_vec())
                    .unwrap_or_default(),
                moving_to: p.migrating.map(|(to, _)| to),
                move_failed: self.move_failed.get(k).cloned(),
                config: ActorSpec::decode(&p.spec)
                    .map(|s| s.config)
                    .unwrap_or_default(),
            })
            .collect();
        Status {
            host: self.view.me,
            jobs,
            actors,
            draining: self.state.draining.keys().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests;
