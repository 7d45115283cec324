//! Epochs under the simulator: a committee runs the real `plexus-epochs` cores (the
//! DKG, then checkpoint agreement) in virtual time over a seeded network that
//! delays and drops messages, with members that crash and restart and members that
//! lie. The same seed replays the same run exactly.
//!
//! # Byzantine behaviours ([`Behaviour`])
//!
//! - `Equivocate`: votes for the real checkpoint to everyone and, to the members at
//!   odd positions, also for a forged one (every colluder forges the same hash).
//! - `Withhold`: never releases a partial signature.
//! - `Garbage`: releases partials that do not verify (wrong message, or bytes that
//!   are not a point).
//! - `LieAvailability`: reports every other node unseen and the colluders fully up,
//!   and credits the colluders with a vast amount of work and everyone else none.
//!
//! # Work tallies
//!
//! Each member's driver hands its core a tally of verified work for the two
//! epochs before the current one, as the daemon's work service does: every
//! worker has a deterministic amount per epoch, each observer counts a little
//! differently (as if it held a different subset of receipts), and worker 0 is
//! proven wrong in odd epochs (0 units in every honest tally).
//!
//! # Checkers (each a [`EpochReport::violations`] entry)
//!
//! - `disagreement`: two honest members reported different signed checkpoints for
//!   one epoch.
//! - `invalid-certificate`: a reported checkpoint does not verify against the group key.
//! - `unvoted-root`: a signed hash that fewer than `t − b` honest members voted for
//!   (`b` Byzantine members), i.e. colluders produced a root the honest did not sign.
//! - `forgery`: the colluders' own partials on their forged hash combined into a
//!   signature the group key accepts.
//! - `double-vote`: an honest member released partials for two hashes in one epoch
//!   (across restarts too).
//! - `availability-bound`: a signed availability outside the range of honest
//!   observations of that node in that epoch (the rule's documented bound).
//! - `work-bound`: signed work units outside the range of the honest observations'
//!   tallies for that node (the same bound, `plexus_epochs::work`), or a work
//!   root that is not the one the checkpoint's observers imply.
//! - `evidence-missing`: an equivocation an honest member proved, two or more signed
//!   epochs before the end, that no signed checkpoint carries.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use plexus_actors::rng::DetRng;
use plexus_actors::{NodeId, Time};
use plexus_epochs::agreement::{
    Agreement, AgreementConfig, AllowlistView, EpochMessage, MemoryVoteLog, Output, Recipients,
};
use plexus_epochs::availability::{Observation, PPM_FULL};
use plexus_epochs::checkpoint::{CheckpointHash, SignedCheckpoint, Vote};
use plexus_epochs::dkg::{DkgOutcome, DkgOutput, DkgRecipient, DkgRound, DkgTimings};
use plexus_epochs::rewards::RewardPolicy;
use plexus_epochs::schedule::Schedule;
use plexus_epochs::threshold;
use plexus_epochs::work::{ObservedWork, WORK_LAG};
use plexus_vocab::identity::NodeKey;

/// Member `observer`'s tally of epoch `epoch`'s work by `workers`.
fn tally(epoch: u64, observer: usize, workers: &[NodeId]) -> ObservedWork {
    let rows = workers.iter().enumerate().map(|(j, w)| {
        let proven_wrong = j == 0 && epoch % 2 == 1;
        let units = if proven_wrong {
            0
        } else {
            100 + (epoch * 7 + j as u64 * 13) % 50 + (observer as u64 % 3)
        };
        (*w, units)
    });
    let mut root = [0u8; 32];
    root[..8].copy_from_slice(&epoch.to_le_bytes());
    root[8] = observer as u8;
    ObservedWork::new(epoch, root, rows)
}

/// A committee member's lie (in a scenario file: `equivocate`, `withhold`,
/// `garbage`, `lie_availability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Signs two checkpoints per epoch.
    Equivocate,
    /// Never releases its partial.
    Withhold,
    /// Releases partials that do not verify.
    Garbage,
    /// Reports false availability.
    LieAvailability,
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct EpochRun {
    /// Committee size `n`.
    pub members: usize,
    /// Admitted nodes outside the committee (measured, not measuring).
    pub workers: usize,
    /// Epochs to run.
    pub epochs: u64,
    /// Epoch length.
    pub epoch_ms: u64,
    /// Lying members (committee positions).
    pub byzantine: Vec<(usize, Behaviour)>,
    /// Per-message drop probability, parts per million.
    pub drop_ppm: u32,
    /// Largest one-way delay.
    pub delay_ms_max: u64,
    /// A member that crashes at `at_ms` after genesis for `down_ms` (its vote log
    /// and last signed checkpoint survive).
    pub crash: Option<(usize, u64, u64)>,
}

impl Default for EpochRun {
    fn default() -> Self {
        Self {
            members: 7,
            workers: 3,
            epochs: 6,
            epoch_ms: 10_000,
            byzantine: Vec::new(),
            drop_ppm: 0,
            delay_ms_max: 50,
            crash: None,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct EpochReport {
    /// Signed checkpoints by epoch (as the honest members reported them).
    pub signed: BTreeMap<u64, SignedCheckpoint>,
    /// Epochs that some honest member gave up on and none signed.
    pub failed: BTreeSet<u64>,
    /// Safety violations; empty on a correct run.
    pub violations: Vec<String>,
    /// Equivocations honest members proved: (epoch, member).
    pub equivocations: BTreeSet<(u64, NodeId)>,
    /// Partials honest members dropped as invalid.
    pub bad_partials: usize,
    /// The group key the DKG produced.
    pub group_key: Vec<u8>,
    /// The threshold.
    pub threshold: usize,
    /// The workers' node ids (the "killed" one is the first), in order.
    pub workers: Vec<NodeId>,
    /// Messages delivered.
    pub delivered: u64,
}

impl EpochReport {
    /// No violations.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The colluders' forged partials per epoch: (share index, partial, forged hash).
type Forged = BTreeMap<u64, Vec<(u32, Vec<u8>, CheckpointHash)>>;

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        from: usize,
        message: Box<EpochMessage>,
    },
    Wake(usize),
    Sample,
    Crash(usize),
    Restart(usize),
}

struct Member {
    key: NodeKey,
    core: Option<Agreement<MemoryVoteLog>>,
    /// Survives crashes.
    log: MemoryVoteLog,
    latest: Option<SignedCheckpoint>,
    behaviour: Option<Behaviour>,
}

/// Runs the committee's DKG to completion with instant delivery; every member
/// follows the protocol (the DKG's own fault handling is commonware's, tested there).
fn run_dkg(keys: &[NodeKey], committee: &[NodeId], rng: &mut DetRng) -> Option<Vec<DkgOutcome>> {
    let mut rounds: Vec<DkgRound> = keys
        .iter()
        .map(|k| {
            DkgRound::start(
                b"plexus-sim",
                0,
                k.clone(),
                committee,
                DkgTimings::default(),
                Time::ZERO,
                rng.bytes32(),
            )
            .ok()
        })
        .collect::<Option<_>>()?;
    let index: BTreeMap<NodeId, usize> = rounds
        .iter()
        .enumerate()
        .map(|(i, _)| (keys[i].node_id(), i))
        .collect();
    let mut outcomes: Vec<Option<DkgOutcome>> = vec![None; keys.len()];
    let mut now = Time::ZERO;
    for _ in 0..10_000 {
        let mut queue = Vec::new();
        for (i, r) in rounds.iter_mut().enumerate() {
            while let Some(o) = r.poll_output() {
                match o {
                    DkgOutput::Send { to, message } => queue.push((i, to, message)),
                    DkgOutput::Done(d) => outcomes[i] = Some(*d),
                    DkgOutput::Failed { .. } => return None,
                    _ => {}
                }
            }
        }
        if queue.is_empty() {
            if outcomes.iter().all(Option::is_some) {
                break;
            }
            let next = rounds.iter().filter_map(DkgRound::poll_timeout).min()?;
            now = now.max(next);
            for r in &mut rounds {
                r.handle_timeout(now);
            }
            continue;
        }
        for (i, to, message) in queue {
            let from = keys[i].node_id();
            let targets: Vec<usize> = match to {
                DkgRecipient::Node(n) => index.get(&n).copied().into_iter().collect(),
                _ => (0..keys.len()).filter(|j| *j != i).collect(),
            };
            for j in targets {
                let _ = rounds[j].handle_message(now, from, message.clone());
            }
        }
    }
    outcomes.into_iter().collect()
}

/// Runs one seeded epoch simulation.
pub fn run(params: &EpochRun, seed: u64) -> EpochReport {
    let mut report = EpochReport::default();
    let mut rng = DetRng::split(seed, 0xE90C);
    let n = params.members.max(1);
    let mut keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::from_seed(rng.bytes32())).collect();
    keys.sort_by_key(NodeKey::node_id);
    let committee: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
    let workers: Vec<NodeId> = (0..params.workers)
        .map(|_| NodeKey::from_seed(rng.bytes32()).node_id())
        .collect();
    report.workers = workers.clone();
    let Some(outcomes) = run_dkg(&keys, &committee, &mut rng) else {
        report
            .violations
            .push("dkg: did not complete with every member honest".into());
        return report;
    };
    let sharing = outcomes[0].sharing.clone();
    report.group_key = threshold::encode_group_key(sharing.public());
    report.threshold = sharing.required() as usize;
    let mut nodes: Vec<NodeId> = committee.iter().chain(&workers).copied().collect();
    nodes.sort();
    let allowlist = AllowlistView {
        version: 1,
        hash: [7; 32],
        nodes,
    };
    let genesis = Time::from_millis(1_000);
    let Ok(schedule) = Schedule::new(genesis, params.epoch_ms) else {
        report.violations.push("bad schedule".into());
        return report;
    };
    let cfg = AgreementConfig {
        network: [0x5E; 32],
        committee: committee.clone(),
        sharing: sharing.clone(),
        schedule,
        view_timeout_ms: params.epoch_ms / 5,
        collect_ms: params.epoch_ms / 20,
        policy: RewardPolicy::default(),
    };
    let behaviour: BTreeMap<usize, Behaviour> = params.byzantine.iter().copied().collect();
    let colluders: BTreeSet<NodeId> = behaviour.keys().map(|i| committee[*i]).collect();
    let new_core = |i: usize, m: &Member, rng: &mut DetRng| {
        Agreement::new(
            cfg.clone(),
            m.key.clone(),
            Some(outcomes[i].share.clone()),
            m.log.clone(),
            allowlist.clone(),
            m.latest.clone(),
            rng.bytes32(),
        )
    };
    let mut members: Vec<Member> = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let mut m = Member {
            key: key.clone(),
            core: None,
            log: MemoryVoteLog::default(),
            latest: None,
            behaviour: behaviour.get(&i).copied(),
        };
        m.core = Some(new_core(i, &m, &mut rng));
        members.push(m);
    }

    // Worker 0 is "killed" for the middle third of every epoch; the others are up.
    let worker_down = |w: usize, now: Time| -> bool {
        if w != 0 {
            return false;
        }
        let Some(e) = schedule.epoch_at(now) else {
            return false;
        };
        let start = schedule.start(e).map_or(0, Time::as_micros);
        let off = now.as_micros() - start;
        let third = params.epoch_ms * 1000 / 3;
        off >= third && off < 2 * third
    };

    let end = schedule
        .end(params.epochs.saturating_add(1))
        .unwrap_or(Time::MAX);
    let mut queue: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut events: BTreeMap<usize, Event> = BTreeMap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64, usize)>>,
                    events: &mut BTreeMap<usize, Event>,
                    at: Time,
                    ev: Event| {
        seq += 1;
        let id = seq as usize;
        events.insert(id, ev);
        queue.push(Reverse((at.as_micros(), seq, id)));
    };
    push(&mut queue, &mut events, genesis, Event::Sample);
    for i in 0..n {
        push(&mut queue, &mut events, genesis, Event::Wake(i));
    }
    if let Some((who, at_ms, down_ms)) = params.crash
        && who < n
    {
        let at = Time::from_millis(1_000 + at_ms);
        push(&mut queue, &mut events, at, Event::Crash(who));
        push(
            &mut queue,
            &mut events,
            Time::from_millis(1_000 + at_ms + down_ms),
            Event::Restart(who),
        );
    }

    // Ledgers for the checkers.
    let mut honest_signed: BTreeMap<u64, BTreeMap<usize, CheckpointHash>> = BTreeMap::new();
    let mut sent_votes: BTreeMap<(usize, u64), BTreeSet<CheckpointHash>> = BTreeMap::new();
    let mut honest_obs: BTreeMap<u64, Vec<Observation>> = BTreeMap::new();
    let mut forged: Forged = BTreeMap::new();
    let mut detected_at: BTreeMap<(u64, NodeId), u64> = BTreeMap::new();
    let mut failed_somewhere: BTreeSet<u64> = BTreeSet::new();
    let mut wake_at: Vec<Option<u64>> = vec![None; n];

    let mut steps = 0u64;
    while let Some(Reverse((at_us, _, id))) = queue.pop() {
        let now = Time::from_micros(at_us);
        if now > end || steps > 2_000_000 {
            break;
        }
        steps += 1;
        let Some(event) = events.remove(&id) else {
            continue;
        };
        let touched: Vec<usize> = match event {
            Event::Sample => {
                let alive: Vec<NodeId> = committee
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| members[*i].core.is_some())
                    .map(|(_, id)| *id)
                    .chain(
                        workers
                            .iter()
                            .enumerate()
                            .filter(|(w, _)| !worker_down(*w, now))
                            .map(|(_, id)| *id),
                    )
                    .collect();
                let current = schedule.epoch_at(now).unwrap_or(0);
                for (i, m) in members.iter_mut().enumerate() {
                    if let Some(core) = m.core.as_mut() {
                        for back in 1..=WORK_LAG {
                            if let Some(w) = current.checked_sub(back) {
                                core.handle_work(tally(w, i, &workers));
                            }
                        }
                        core.handle_view(now, alive.iter().copied());
                    }
                }
                let step = (params.epoch_ms * 1000 / 30).max(1000);
                push(
                    &mut queue,
                    &mut events,
                    Time::from_micros(at_us + step),
                    Event::Sample,
                );
                (0..n).collect()
            }
            Event::Wake(i) => {
                wake_at[i] = None;
                if let Some(core) = members[i].core.as_mut() {
                    core.handle_timeout(now);
                }
                vec![i]
            }
            Event::Crash(i) => {
                if let Some(core) = members[i].core.take() {
                    members[i].log = core.vote_log().clone();
                    members[i].latest = core.latest().cloned();
                }
                vec![]
            }
            Event::Restart(i) => {
                if members[i].core.is_none() {
                    let core = new_core(i, &members[i], &mut rng);
                    members[i].core = Some(core);
                }
                vec![i]
            }
            Event::Deliver { to, from, message } => {
                report.delivered += 1;
                if let Some(core) = members[to].core.as_mut() {
                    let _ = core.handle_message(now, committee[from], *message);
                }
                vec![to]
            }
        };
        for i in touched {
            let Some(core) = members[i].core.as_mut() else {
                continue;
            };
            core.check_invariants();
            let mut outputs = Vec::new();
            while let Some(o) = core.poll_output() {
                outputs.push(o);
            }
            let next = core.poll_timeout();
            if let Some(t) = next
                && wake_at[i].is_none_or(|w| t.as_micros() < w)
            {
                wake_at[i] = Some(t.as_micros());
                push(&mut queue, &mut events, t, Event::Wake(i));
            }
            // Keep the vote log copy current (a crash keeps what was recorded).
            let (log, latest) = (core.vote_log().clone(), core.latest().cloned());
            members[i].log = log;
            members[i].latest = latest;
            let honest = members[i].behaviour.is_none();
            for o in outputs {
                match o {
                    Output::Send { to, message } => {
                        let mut messages = vec![(None, message)];
                        if let Some(b) = members[i].behaviour {
                            messages = lie(
                                b,
                                i,
                                &members[i].key,
                                &outcomes[i],
                                &colluders,
                                &cfg.network,
                                messages,
                                &mut forged,
                            );
                        }
                        for (only, message) in messages {
                            if let EpochMessage::Vote { epoch, vote, .. } = &message {
                                sent_votes.entry((i, *epoch)).or_default().insert(vote.hash);
                            }
                            if honest && let EpochMessage::Observation(o) = &message {
                                honest_obs
                                    .entry(o.observation.epoch)
                                    .or_default()
                                    .push(o.observation.clone());
                            }
                            let targets: Vec<usize> = match to {
                                Recipients::Committee | Recipients::Everyone => {
                                    (0..n).filter(|j| *j != i).collect()
                                }
                            };
                            for j in targets {
                                if only.is_some_and(|half: bool| (j % 2 == 0) != half) {
                                    continue;
                                }
                                if params.drop_ppm > 0
                                    && rng.below(1_000_000) < u64::from(params.drop_ppm)
                                {
                                    continue;
                                }
                                let delay_us = 1_000 + rng.below(params.delay_ms_max.max(1) * 1000);
                                push(
                                    &mut queue,
                                    &mut events,
                                    Time::from_micros(at_us + delay_us),
                                    Event::Deliver {
                                        to: j,
                                        from: i,
                                        message: Box::new(message.clone()),
                                    },
                                );
                            }
                        }
                    }
                    Output::Signed(s) if honest => {
                        let e = s.checkpoint.epoch;
                        if let Err(err) = s.verify(Some(&report.group_key)) {
                            report
                                .violations
                                .push(format!("invalid-certificate: epoch {e}: {err}"));
                        }
                        if let Ok(h) = s.hash() {
                            honest_signed.entry(e).or_default().insert(i, h);
                        }
                        report.signed.entry(e).or_insert(*s);
                    }
                    Output::Failed { epoch } if honest => {
                        failed_somewhere.insert(epoch);
                    }
                    Output::Equivocation(e) if honest => {
                        report.equivocations.insert((e.epoch, e.signer));
                        detected_at.entry((e.epoch, e.signer)).or_insert(e.epoch);
                    }
                    Output::BadPartial { .. } if honest => report.bad_partials += 1,
                    _ => {}
                }
            }
        }
    }

    check(
        &mut report,
        &honest_signed,
        &sent_votes,
        &honest_obs,
        &forged,
        &members,
        &sharing,
        &cfg.network,
        &colluders,
    );
    report.failed = failed_somewhere
        .into_iter()
        .filter(|e| !report.signed.contains_key(e))
        .collect();
    report
}

/// Rewrites a Byzantine member's outgoing message. `Some(half)` sends only to the
/// members whose position parity is `half`.
#[allow(clippy::too_many_arguments)]
fn lie(
    b: Behaviour,
    _i: usize,
    key: &NodeKey,
    dkg: &DkgOutcome,
    colluders: &BTreeSet<NodeId>,
    network: &[u8; 32],
    messages: Vec<(Option<bool>, EpochMessage)>,
    forged: &mut Forged,
) -> Vec<(Option<bool>, EpochMessage)> {
    let mut out = Vec::new();
    for (only, message) in messages {
        match (b, message) {
            (Behaviour::Withhold, EpochMessage::Vote { .. }) => {}
            (Behaviour::Garbage, EpochMessage::Vote { epoch, index, vote }) => {
                // Alternate: a valid point over the wrong message, and non-points.
                let partial = if epoch % 2 == 0 {
                    let wrong =
                        threshold::signing_message(network, epoch.wrapping_add(1), &vote.hash);
                    threshold::sign_partial(&dkg.share, &wrong).1
                } else {
                    vec![0xFF; 48]
                };
                out.push((
                    only,
                    EpochMessage::Vote {
                        epoch,
                        index,
                        vote: Vote {
                            hash: vote.hash,
                            partial,
                        },
                    },
                ));
            }
            (Behaviour::Equivocate, EpochMessage::Vote { epoch, index, vote }) => {
                // Every colluder forges the same hash from the real one.
                let fake: CheckpointHash = blake3::hash(&vote.hash).into();
                let msg = threshold::signing_message(network, epoch, &fake);
                let (_, partial) = threshold::sign_partial(&dkg.share, &msg);
                forged
                    .entry(epoch)
                    .or_default()
                    .push((index, partial.clone(), fake));
                out.push((only, EpochMessage::Vote { epoch, index, vote }));
                out.push((
                    Some(false),
                    EpochMessage::Vote {
                        epoch,
                        index,
                        vote: Vote {
                            hash: fake,
                            partial,
                        },
                    },
                ));
            }
            (Behaviour::LieAvailability, EpochMessage::Observation(o)) => {
                let mut obs = o.observation.clone();
                let mut uptime: Vec<(NodeId, u32)> =
                    colluders.iter().map(|c| (*c, PPM_FULL)).collect();
                uptime.sort();
                obs.uptime = uptime;
                obs.work = obs.epoch.checked_sub(WORK_LAG).map(|w| {
                    ObservedWork::new(w, [0xBA; 32], colluders.iter().map(|c| (*c, 1 << 40)))
                });
                match obs.sign(key) {
                    Ok(signed) => out.push((only, EpochMessage::Observation(signed))),
                    Err(_) => out.push((only, EpochMessage::Observation(o))),
                }
            }
            (_, m) => out.push((only, m)),
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn check(
    report: &mut EpochReport,
    honest_signed: &BTreeMap<u64, BTreeMap<usize, CheckpointHash>>,
    sent_votes: &BTreeMap<(usize, u64), BTreeSet<CheckpointHash>>,
    honest_obs: &BTreeMap<u64, Vec<Observation>>,
    forged: &Forged,
    members: &[Member],
    sharing: &threshold::PublicSharing,
    network: &[u8; 32],
    colluders: &BTreeSet<NodeId>,
) {
    let t = report.threshold;
    let b = colluders.len();
    for (epoch, by) in honest_signed {
        let hashes: BTreeSet<_> = by.values().collect();
        if hashes.len() > 1 {
            report.violations.push(format!(
                "disagreement: epoch {epoch}: {} hashes",
                hashes.len()
            ));
        }
        for h in hashes {
            let honest_votes = sent_votes
                .iter()
                .filter(|((i, e), hs)| {
                    e == epoch && members[*i].behaviour.is_none() && hs.contains(h)
                })
                .count();
            if honest_votes + b < t {
                report.violations.push(format!(
                    "unvoted-root: epoch {epoch}: {honest_votes} honest votes"
                ));
            }
        }
    }
    for ((i, epoch), hashes) in sent_votes {
        if members[*i].behaviour.is_none() && hashes.len() > 1 {
            report
                .violations
                .push(format!("double-vote: member {i} epoch {epoch}"));
        }
    }
    for (epoch, signed) in &report.signed {
        let Some(obs) = honest_obs.get(epoch) else {
            continue;
        };
        for row in &signed.checkpoint.members {
            let values: Vec<u32> = obs.iter().map(|o| o.uptime_of(&row.node)).collect();
            let (Some(lo), Some(hi)) = (values.iter().min(), values.iter().max()) else {
                continue;
            };
            if row.availability_ppm < *lo || row.availability_ppm > *hi {
                report.violations.push(format!(
                    "availability-bound: epoch {epoch} node {}: {} outside [{lo}, {hi}]",
                    row.node, row.availability_ppm
                ));
            }
            let units: Vec<u64> = obs
                .iter()
                .map(|o| o.work.as_ref().map_or(0, |w| w.units_of(&row.node)))
                .collect();
            let (Some(lo), Some(hi)) = (units.iter().min(), units.iter().max()) else {
                continue;
            };
            if row.work_units < *lo || row.work_units > *hi {
                report.violations.push(format!(
                    "work-bound: epoch {epoch} node {}: {} outside [{lo}, {hi}]",
                    row.node, row.work_units
                ));
            }
        }
        let credited = signed.checkpoint.members.iter().any(|r| r.work_units > 0);
        if credited != (signed.checkpoint.work_root != [0; 32]) {
            report.violations.push(format!(
                "work-bound: epoch {epoch}: work credited {credited} but work root {}",
                if signed.checkpoint.work_root == [0; 32] {
                    "zero"
                } else {
                    "set"
                }
            ));
        }
    }
    // The colluders try to sign their forged hash with every partial they have.
    for (epoch, parts) in forged {
        let Some((_, _, fake)) = parts.first() else {
            continue;
        };
        let msg = threshold::signing_message(network, *epoch, fake);
        let mut partials: Vec<_> = parts
            .iter()
            .filter(|(_, _, h)| h == fake)
            .filter_map(|(i, p, _)| threshold::partial(*i, p).ok())
            .collect();
        partials.sort_by_key(|p| p.index.get());
        partials.dedup_by_key(|p| p.index.get());
        if threshold::combine(sharing, &msg, &partials).is_ok() {
            report.violations.push(format!(
                "forgery: epoch {epoch}: colluders signed a forged root"
            ));
        }
    }
    // Evidence: proven equivocations reach a checkpoint two signed epochs later.
    let carried: BTreeSet<(u64, NodeId)> = report
        .signed
        .values()
        .flat_map(|s| s.checkpoint.evidence.iter().map(|e| (e.epoch, e.signer)))
        .collect();
    let signed_epochs: Vec<u64> = report.signed.keys().copied().collect();
    for (epoch, who) in &report.equivocations {
        let later = signed_epochs.iter().filter(|e| **e > epoch + 1).count();
        if later >= 2 && !carried.contains(&(*epoch, *who)) {
            report.violations.push(format!(
                "evidence-missing: {who} equivocated in epoch {epoch}"
            ));
        }
        if !colluders.contains(who) {
            report
                .violations
                .push(format!("false-evidence: honest {who} accused"));
        }
    }
}
