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
//!   another node, which restores it from its replicas;
//! * an actor found running elsewhere than planned (it migrated) is re-recorded;
//! * an actor on a draining node is migrated off it;
//! * an actor whose replica set lost a member gets a new set (a reconfiguration);
//! * an actor running that belongs to no job is released;
//! * when a node joins empty, one actor of a `spread` job moves to it per tick,
//!   until no node has two more actors than another.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::NodeId;
use plexus_actors::migratable::Migratable;
use plexus_durable::types::{Ballot, DurableKey, ReplicaSet};
use plexus_durable::wire::Command;
use plexus_vocab::resources::Resources;
use serde::{Deserialize, Serialize};

use crate::job::{JobSpec, Strategy, actor_key};
use crate::placement::{Demand, Ledger, NodeInfo, pick, place_all, replica_set};
use crate::protocol::{
    ActorSpec, ActorStatus, JobStatus, Report, Request, Response, SCHEDULER_KEY, Signed, Status,
    View,
};
use crate::tags::Expr;

/// Ticks between re-issues of a command that has not taken effect.
pub const RETRY_TICKS: u64 = 6;
/// Ticks after which a migration that has not happened is forgotten (and may be
/// retried).
pub const MIGRATION_TICKS: u64 = 40;

/// The reason given for requests that arrive before the scheduler's first view of
/// the cluster; clients retry them.
pub const STARTING: &str = "the scheduler is starting (no view of the cluster yet); retry";

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
    /// A migration under way: target and start tick.
    pub migrating: Option<(NodeId, u64)>,
    /// Whether the registry showed it active at the last tick.
    pub active: bool,
    /// The highest ballot an activation reported under.
    pub ballot: Ballot,
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
}

impl Migratable for State {
    const SCHEMA_VERSION: u32 = 1;
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
}

fn reject(reason: impl Into<String>) -> Outcome {
    Outcome {
        response: Some(Response::Rejected {
            reason: reason.into(),
        }),
        ..Outcome::default()
    }
}

fn key_of(text: &str) -> Option<DurableKey> {
    DurableKey::new(text).ok()
}

impl Scheduler {
    /// A scheduler restored from `state`.
    pub fn new(state: State) -> Self {
        Self {
            view: state.view.clone(),
            state,
            released: BTreeMap::new(),
        }
    }

    /// The state (for snapshots).
    pub fn state(&self) -> &State {
        &self.state
    }

    fn alive(&self, n: &NodeId) -> bool {
        self.view.nodes.iter().any(|x| x.id == *n && x.alive)
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

    fn ledger(&self) -> Ledger {
        let mut l = Ledger::default();
        for p in self.state.actors.values() {
            l.add(p.node, p.resources);
        }
        l
    }

    /// Handles a signed request.
    pub fn request(&mut self, signed: &Signed) -> Outcome {
        if let Err(e) = signed.verify() {
            return reject(format!("bad signature: {e}"));
        }
        if self.view.me.is_none() {
            return reject(STARTING.to_string());
        }
        let signer = signed.signer;
        let submitter = self.view.submitters.contains(&signer);
        let member = self.view.members.contains(&signer);
        match &signed.request {
            Request::Deploy { spec } => {
                if !submitter {
                    return reject(format!("{signer} is not an allowlisted submitter"));
                }
                self.deploy(spec, signer)
            }
            Request::Stop { job } => {
                if !submitter {
                    return reject(format!("{signer} is not an allowlisted submitter"));
                }
                self.stop(job)
            }
            Request::Migrate { actor, to } => {
                if !submitter {
                    return reject(format!("{signer} is not an allowlisted submitter"));
                }
                self.migrate(actor, *to)
            }
            Request::Drain { node } => {
                if !(submitter || signer == *node) {
                    return reject(format!("{signer} may not drain {node}"));
                }
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
            Request::Status => {
                if !(submitter || member) {
                    return reject(format!("{signer} is neither a node nor a submitter"));
                }
                Outcome {
                    response: Some(Response::Status(self.status())),
                    ..Outcome::default()
                }
            }
            Request::Report(report) => {
                if !(member || submitter) {
                    return reject(format!("{signer} is not an allowlisted node"));
                }
                let changed = self.report(report);
                Outcome {
                    response: Some(Response::Noted),
                    commands: Vec::new(),
                    changed,
                }
            }
        }
    }

    fn deploy(&mut self, text: &str, submitter: NodeId) -> Outcome {
        let spec = match JobSpec::from_toml(text) {
            Ok(s) => s,
            Err(e) => return reject(e.to_string()),
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
            return reject(format!(
                "job `{}` already runs with another spec; stop it first",
                spec.name
            ));
        }
        if !self.view.kinds.is_empty()
            && let Err(e) = spec.check_kinds(&self.view.kinds)
        {
            return reject(e.to_string());
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
                    return reject(format!(
                        "unsatisfiable: stage `{}` replica {index}: {why}",
                        stage.name
                    ));
                }
            }
        }
        let live = self.live_nodes();
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
            let Ok(bytes) = actor_spec.encode() else {
                return reject("the actor spec does not encode");
            };
            let Some(dkey) = key_of(&key) else {
                return reject(format!("`{key}` is not a valid actor key"));
            };
            let set = replica_set(&key, node, &live, spec.durability);
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
            return reject(format!("no job named `{job}`"));
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
                return reject("the scheduler does not know its host yet");
            };
            if !self.alive(&to) {
                return reject(format!("{to} is not a live member"));
            }
            let Some(key) = key_of(SCHEDULER_KEY) else {
                return reject("bad scheduler key");
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
            return reject(format!("no actor `{actor}`"));
        };
        if p.node == to {
            return reject(format!("`{actor}` already runs on {to}"));
        }
        let Some(target) = nodes.iter().find(|n| n.id == to) else {
            return reject(format!("{to} is not a member"));
        };
        if !target.alive || target.draining {
            return reject(format!("{to} is not a live, undrained member"));
        }
        if !p.constraints.eval(&target.tags) {
            return reject(format!("{to} does not satisfy `{}`", p.constraints));
        }
        ledger.remove(p.node, p.resources);
        if !target
            .capacity
            .saturating_sub(&ledger.used(&to))
            .covers(&p.resources)
        {
            return reject(format!("{to} has no room for `{actor}`"));
        }
        let (from, Some(key)) = (p.node, key_of(actor)) else {
            return reject(format!("`{actor}` is not a valid key"));
        };
        let tick = self.state.tick;
        if let Some(p) = self.state.actors.get_mut(actor) {
            p.migrating = Some((to, tick));
        }
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
                let Some(p) = self.state.actors.get_mut(key) else {
                    return false;
                };
                if *ballot < p.ballot {
                    return false;
                }
                let before = (p.node, p.sets.clone(), p.ballot);
                p.node = *node;
                p.ballot = *ballot;
                // Only the newest set retires the older ones: an activation still on
                // an older set has not committed to the new one, so a successor must
                // keep fencing both.
                if p.sets.last() == Some(set) {
                    p.sets = vec![set.clone()];
                }
                before != (p.node, p.sets.clone(), p.ballot)
            }
            Report::Failed { key, why, .. } => {
                let Some(p) = self.state.actors.get(key) else {
                    return false;
                };
                let job = p.job.clone();
                if let Some(j) = self.state.jobs.get_mut(&job) {
                    j.failure = Some(format!("{key}: {why}"));
                    return true;
                }
                false
            }
        }
    }

    /// One reconciliation pass over `view`.
    pub fn tick(&mut self, view: View) -> Outcome {
        self.state.view = view.clone();
        self.view = view;
        self.state.tick += 1;
        let tick = self.state.tick;
        let mut out = Outcome {
            changed: false,
            ..Outcome::default()
        };
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
        for (_, key) in order {
            let Some(dkey) = key_of(&key) else { continue };
            let loc = self.view.locations.get(&key).copied();
            let draining = self.state.draining.clone();
            let Some(p) = self.state.actors.get_mut(&key) else {
                continue;
            };
            let was = p.clone();
            p.active = loc.is_some();
            match loc {
                Some(n) => {
                    if p.node != n {
                        ledger.remove(p.node, p.resources);
                        ledger.add(n, p.resources);
                        p.node = n;
                    }
                    if p.migrating.is_some_and(|(to, since)| {
                        to == n || tick.saturating_sub(since) > MIGRATION_TICKS
                    }) {
                        p.migrating = None;
                    }
                    // Still at the source a while after the move was ordered: the
                    // host may have refused it (busy finishing another move, or a
                    // hand-off that failed and resumed). Order it again; a host
                    // that is moving it already ignores the repeat.
                    if let Some((to, since)) = p.migrating
                        && live.contains(&to)
                        && tick.saturating_sub(since) >= RETRY_TICKS
                        && tick.saturating_sub(p.last_command) >= RETRY_TICKS
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
                        let mut l = ledger.clone();
                        l.remove(n, p.resources);
                        if let Ok(to) = pick(&nodes, &l, &d, p.strategy) {
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
                            let new = replica_set(&key, n, &live, p.durability);
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
                        .filter(|&(to, since)| {
                            live.contains(&to) && tick.saturating_sub(since) <= MIGRATION_TICKS
                        })
                        .map(|(to, _)| to);
                    if moving_to.is_some() && host_ok {
                        // Between the source's deregistration and the target's
                        // registration the actor is nowhere in the view: wait for
                        // the migration rather than start a rival activation.
                    } else if !host_ok {
                        // The host is gone. A move under way restores on its target
                        // (which may hold the hand-off already: the command is then
                        // a no-op there), so no rival starts elsewhere and nothing
                        // waits out a move that cannot finish; else place anew.
                        let target = moving_to.or_else(|| {
                            let d = Demand {
                                resources: p.resources,
                                constraints: &p.constraints,
                                avoid: BTreeSet::new(),
                                exclude: BTreeSet::new(),
                            };
                            let mut l = ledger.clone();
                            l.remove(p.node, p.resources);
                            pick(&nodes, &l, &d, p.strategy).ok()
                        });
                        if let Some(to) = target {
                            ledger.remove(p.node, p.resources);
                            ledger.add(to, p.resources);
                            p.node = to;
                            p.migrating = None;
                            p.last_command = tick;
                            out.commands.push((
                                to,
                                Command::Activate {
                                    key: dkey.clone(),
                                    sets: p.sets.clone(),
                                    spec: p.spec.clone(),
                                },
                            ));
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
