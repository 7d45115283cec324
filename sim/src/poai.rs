//! Proof of AI work under the simulator: nodes run the real `plexus-poai` auditor
//! over a seeded network that delays and drops messages, with nodes that crash
//! (losing their auditor's memory) and nodes that cheat or lie. The model is a
//! stand-in (a hash of the inputs' digest): the core under test is the receipt,
//! sampling, dispute and evidence logic, not Burn. The same seed replays exactly.
//!
//! # Roles ([`Role`])
//!
//! - `Cheat`: returns wrong outputs for every `n`th batch it runs.
//! - `Liar`: as a verifier or judge, signs wrong outputs for whatever it re-runs.
//! - `Lazy`: as a verifier, signs the worker's outputs without running anything.
//! - `Withhold`: never hands its inputs to verifiers.
//!
//! # Checkers (each a [`PoaiReport::violations`] entry)
//!
//! - `false-accusation`: an honest node holds evidence against an honest node.
//! - `bad-evidence`: an honest node's evidence does not hold up when the checker
//!   re-executes it (its signatures, and the outputs it claims are wrong are wrong).
//! - `missed-cheat`: a cheater's wrong receipt was sampled with an honest verifier
//!   that was up for the whole verification window, the network lost nothing, and
//!   yet some honest node that was up throughout holds no evidence against it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use plexus_actors::NodeId;
use plexus_actors::rng::DetRng;
use plexus_poai::audit::{AuditConfig, AuditMessage, Auditor, Effect, Evidence};
use plexus_poai::receipt::{Backend, Digest, RECEIPT_VERSION, Receipt, items_digest};
use plexus_vocab::identity::NodeKey;
use sha2::{Digest as _, Sha256};

/// A node's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Wrong outputs for every `n`th batch.
    Cheat(u64),
    /// Signs wrong re-executions.
    Liar,
    /// Vouches without computing.
    Lazy,
    /// Never hands over its inputs.
    Withhold,
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct PoaiRun {
    /// Node roles (their count is the network's size).
    pub roles: Vec<Role>,
    /// Epochs to run.
    pub epochs: u64,
    /// Epoch length, ms.
    pub epoch_ms: u64,
    /// Batches each node runs per epoch.
    pub batches: u64,
    /// Sample rate, ppm.
    pub rate_ppm: u32,
    /// Verifiers per sample.
    pub verifiers: usize,
    /// Per-message drop probability, ppm.
    pub drop_ppm: u32,
    /// Largest one-way delay, ms.
    pub delay_ms_max: u64,
    /// A node that crashes at `at_ms` for `down_ms` (its auditor's memory is lost).
    pub crash: Option<(usize, u64, u64)>,
    /// Honest nodes compute differently (a non-deterministic backend): shows the
    /// checker can fail when the determinism assumption breaks.
    pub nondeterministic: bool,
}

impl Default for PoaiRun {
    fn default() -> Self {
        Self {
            roles: vec![Role::Honest; 6],
            epochs: 3,
            epoch_ms: 10_000,
            batches: 8,
            rate_ppm: 250_000,
            verifiers: 2,
            drop_ppm: 0,
            delay_ms_max: 50,
            crash: None,
            nondeterministic: false,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct PoaiReport {
    /// Safety violations; empty on a correct run.
    pub violations: Vec<String>,
    /// Evidence honest nodes hold: (epoch, accused), deduplicated.
    pub proven: BTreeSet<(u64, NodeId)>,
    /// Receipts recorded.
    pub receipts: u64,
    /// Re-executions run (sampled and disputes).
    pub re_executions: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// The nodes, in role order.
    pub nodes: Vec<NodeId>,
}

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        from: usize,
        msg: Box<AuditMessage>,
    },
    Work {
        node: usize,
        batch: u64,
    },
    Executed {
        node: usize,
        epoch: u64,
        hash: Digest,
        outputs: Option<Digest>,
    },
    EpochEnd(u64),
    Crash(usize),
    Restart(usize),
}

/// The one backend every simulated node runs (the sweep's disagreement mode
/// models honest nodes computing differently under it).
fn backend() -> Backend {
    Backend {
        name: "flex".into(),
        version: "burn 0.22.0".into(),
    }
}

fn truth(inputs: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(b"the model");
    h.update(inputs);
    h.finalize().into()
}

/// Runs one seeded simulation.
pub fn run(params: &PoaiRun, seed: u64) -> PoaiReport {
    let mut report = PoaiReport::default();
    let mut rng = DetRng::split(seed, 0x90A1);
    let n = params.roles.len();
    let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::from_seed(rng.bytes32())).collect();
    let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
    report.nodes = ids.clone();
    let cfg = AuditConfig {
        rate_ppm: params.rate_ppm,
        verifiers: params.verifiers,
        ..AuditConfig::new([0xA1; 32])
    };
    let new_auditor = |i: usize, epoch: u64| {
        let mut a = Auditor::new(cfg.clone(), keys[i].clone(), epoch);
        a.set_eligible(ids.iter().map(|id| (*id, backend().class())));
        a
    };
    let mut auditors: Vec<Option<Auditor>> = (0..n).map(|i| Some(new_auditor(i, 0))).collect();
    let honest: BTreeSet<usize> = (0..n)
        .filter(|i| params.roles[*i] == Role::Honest)
        .collect();
    // Every node's down intervals (ms), for the liveness checker.
    let down: Vec<(u64, u64)> = params
        .crash
        .iter()
        .map(|(_, at, d)| (*at, at.saturating_add(*d)))
        .collect();
    let crashed_node = params.crash.map(|(i, _, _)| i);
    let up_between = |i: usize, from: u64, to: u64| {
        crashed_node != Some(i) || down.iter().all(|(a, b)| *b <= from || *a >= to)
    };

    let mut queue: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut events: BTreeMap<u64, Event> = BTreeMap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64)>>,
                    events: &mut BTreeMap<u64, Event>,
                    at: u64,
                    ev: Event| {
        seq += 1;
        events.insert(seq, ev);
        queue.push(Reverse((at, seq)));
    };
    for e in 0..params.epochs {
        let start = e * params.epoch_ms;
        for node in 0..n {
            for b in 0..params.batches {
                let at = start + 1 + rng.below(params.epoch_ms.saturating_sub(2).max(1));
                push(&mut queue, &mut events, at, Event::Work { node, batch: b });
            }
        }
        push(
            &mut queue,
            &mut events,
            start + params.epoch_ms,
            Event::EpochEnd(e),
        );
    }
    if let Some((i, at, d)) = params.crash {
        push(&mut queue, &mut events, at, Event::Crash(i));
        push(&mut queue, &mut events, at + d, Event::Restart(i));
    }
    // Run one more epoch so the last one's receipts get verified.
    let end = (params.epochs + 1) * params.epoch_ms;
    let mut current = 0u64;
    // (epoch, wrong receipt hash, worker, chosen verifiers) for the liveness check.
    let mut wrong: Vec<(u64, Digest, usize)> = Vec::new();
    let mut lost_any = false;
    let mut evidence: Vec<(usize, Evidence)> = Vec::new();
    let mut beacons: BTreeMap<u64, Vec<u8>> = BTreeMap::new();

    while let Some(Reverse((now, id))) = queue.pop() {
        if now > end {
            break;
        }
        let Some(ev) = events.remove(&id) else {
            continue;
        };
        match ev {
            Event::Work { node, batch } => {
                let Some(a) = auditors[node].as_mut() else {
                    continue;
                };
                let inputs = items_digest(&[[node as u8, batch as u8, current as u8]]);
                let cheat =
                    matches!(params.roles[node], Role::Cheat(every) if batch % every.max(1) == 0);
                let outputs = if cheat { [0xEE; 32] } else { truth(&inputs) };
                let r = Receipt {
                    version: RECEIPT_VERSION,
                    network: [0; 32],
                    epoch: 0,
                    worker: ids[node],
                    seq: 0,
                    job: "digits".into(),
                    executor: format!("digits/infer/{node}"),
                    model: [2; 32],
                    inputs,
                    outputs,
                    batch: 1 + (batch % 8) as u32,
                    backend: backend(),
                    started_us: now * 1_000,
                    took_us: 1_000,
                };
                if let Ok(signed) = a.record(r) {
                    report.receipts += 1;
                    if cheat && let Ok(h) = signed.hash() {
                        wrong.push((current, h, node));
                    }
                }
            }
            Event::EpochEnd(e) => {
                current = e + 1;
                let beacon = rng.bytes32().to_vec();
                beacons.insert(e, beacon.clone());
                for a in auditors.iter_mut().flatten() {
                    a.advance(current);
                    a.beacon(e, &beacon);
                }
            }
            Event::Deliver { to, from, msg } => {
                if let Some(a) = auditors[to].as_mut() {
                    report.delivered += 1;
                    let _ = a.handle(ids[from], *msg);
                }
            }
            Event::Executed {
                node,
                epoch,
                hash,
                outputs,
            } => {
                if let Some(a) = auditors[node].as_mut() {
                    a.executed(epoch, &hash, outputs);
                }
            }
            Event::Crash(i) => auditors[i] = None,
            Event::Restart(i) => {
                let mut a = new_auditor(i, current);
                // It learns the beacons again from the checkpoints it syncs.
                for (e, b) in &beacons {
                    a.beacon(*e, b);
                }
                auditors[i] = Some(a);
            }
        }
        // Carry out what the auditors asked for.
        for (i, slot) in auditors.iter_mut().enumerate() {
            let Some(a) = slot.as_mut() else {
                continue;
            };
            while let Some(effect) = a.poll_effect() {
                match effect {
                    Effect::Publish(msg) => {
                        for j in (0..n).filter(|j| *j != i) {
                            if rng.chance(f64::from(params.drop_ppm) / 1e6) {
                                lost_any = true;
                                continue;
                            }
                            let at = now + 1 + rng.below(params.delay_ms_max.max(1));
                            push(
                                &mut queue,
                                &mut events,
                                at,
                                Event::Deliver {
                                    to: j,
                                    from: i,
                                    msg: Box::new(msg.clone()),
                                },
                            );
                        }
                    }
                    Effect::ReExecute { receipt, hash } => {
                        report.re_executions += 1;
                        let r = &receipt.receipt;
                        let worker = ids.iter().position(|x| *x == r.worker);
                        // A worker that withholds, or is down, hands over no inputs.
                        let withheld = worker.is_some_and(|w| {
                            params.roles[w] == Role::Withhold
                                || (crashed_node == Some(w)
                                    && down.iter().any(|(a, b)| now >= *a && now < *b))
                        });
                        let outputs = if withheld {
                            None
                        } else {
                            match params.roles[i] {
                                Role::Liar => Some([0xAA; 32]),
                                Role::Lazy => Some(r.outputs),
                                _ if params.nondeterministic && i % 2 == 1 => {
                                    let mut t = truth(&r.inputs);
                                    t[0] ^= 1;
                                    Some(t)
                                }
                                _ => Some(truth(&r.inputs)),
                            }
                        };
                        let at = now + 5 + rng.below(50);
                        push(
                            &mut queue,
                            &mut events,
                            at,
                            Event::Executed {
                                node: i,
                                epoch: r.epoch,
                                hash,
                                outputs,
                            },
                        );
                    }
                    Effect::Evidence(e) => evidence.push((i, e)),
                }
            }
        }
    }

    // Checkers.
    for (by, e) in &evidence {
        if !honest.contains(by) {
            continue;
        }
        let against = e.against();
        report.proven.insert((e.epoch(), against));
        if let Some(j) = ids.iter().position(|x| *x == against)
            && honest.contains(&j)
        {
            report.violations.push(format!(
                "false-accusation: honest node {by} holds evidence against honest node {j} in epoch {}",
                e.epoch()
            ));
        }
        if !evidence_holds(e) {
            report.violations.push(format!(
                "bad-evidence: honest node {by}'s evidence does not hold: {e:?}"
            ));
        }
    }
    if !lost_any && !params.nondeterministic {
        for (epoch, hash, worker) in &wrong {
            let Some(beacon) = beacons.get(epoch) else {
                continue;
            };
            if !plexus_poai::sample::sampled(beacon, hash, params.rate_ppm) {
                continue;
            }
            let chosen =
                plexus_poai::sample::verifiers(beacon, hash, &ids[*worker], &ids, params.verifiers);
            let window = (epoch * params.epoch_ms, (epoch + 2) * params.epoch_ms);
            let honest_checker = chosen.iter().any(|v| {
                ids.iter()
                    .position(|x| x == v)
                    .is_some_and(|j| honest.contains(&j) && up_between(j, window.0, window.1))
            });
            if !honest_checker {
                continue;
            }
            for j in honest
                .iter()
                .filter(|j| up_between(**j, window.0, window.1))
            {
                let caught = evidence
                    .iter()
                    .any(|(by, e)| by == j && e.against() == ids[*worker] && e.epoch() == *epoch);
                if !caught {
                    report.violations.push(format!(
                        "missed-cheat: honest node {j} holds no evidence against cheater {worker} in epoch {epoch}"
                    ));
                }
            }
        }
    }
    report.violations.sort();
    report.violations.dedup();
    report
}

/// Checks a piece of evidence as a third party would: signatures, and the
/// claimed truth is the model's output for the receipt's inputs.
fn evidence_holds(e: &Evidence) -> bool {
    match e {
        Evidence::WrongOutputs { receipt, judge } => {
            let t = truth(&receipt.receipt.inputs);
            receipt.verify().is_ok()
                && judge.verify().is_ok()
                && judge.verification.outputs == Some(t)
                && receipt.receipt.outputs != t
        }
        Evidence::FalseVerification {
            receipt,
            verification,
            judge,
        } => {
            let t = truth(&receipt.receipt.inputs);
            receipt.verify().is_ok()
                && verification.verify().is_ok()
                && judge.verify().is_ok()
                && judge.verification.outputs == Some(t)
                && verification.verification.outputs.is_some_and(|o| o != t)
        }
        Evidence::Equivocation { first, second } => {
            first.verify().is_ok()
                && second.verify().is_ok()
                && first.receipt.worker == second.receipt.worker
                && first.receipt.seq == second.receipt.seq
                && first != second
        }
    }
}
