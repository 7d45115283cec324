//! The auditor among several nodes: honest, cheating workers, lying and lazy
//! verifiers, over an instant network. The "model" is a hash of the inputs'
//! digest, which every honest node computes the same way.

use proptest::prelude::*;

use super::*;
use crate::receipt::tests::key;
use crate::receipt::{Backend, RECEIPT_VERSION, items_digest};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Honest,
    /// Returns wrong outputs for every `n`th batch it runs.
    Cheat(u64),
    /// Claims wrong outputs whenever it re-executes.
    Liar,
    /// Claims the worker's outputs without running anything.
    Lazy,
}

fn flex() -> Backend {
    Backend {
        name: "flex".into(),
        version: "burn 0.22.0".into(),
    }
}

fn gpu() -> Backend {
    Backend {
        name: "wgpu".into(),
        version: "burn 0.22.0; an adapter".into(),
    }
}

/// What an honest node on `backend` computes: backends differ in the last bits,
/// so each has its own truth.
fn truth_on(backend: &Backend, inputs: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(b"the model");
    if *backend != flex() {
        h.update(backend.name.as_bytes());
    }
    h.update(inputs);
    h.finalize().into()
}

fn truth(inputs: &Digest) -> Digest {
    truth_on(&flex(), inputs)
}

struct Net {
    nodes: Vec<(Auditor, Role)>,
    backends: Vec<Backend>,
    /// Re-executions a node was asked for on another backend than its own.
    cross: usize,
    evidence: Vec<(usize, Evidence)>,
    refused: usize,
}

fn cfg(rate_ppm: u32, k: usize) -> AuditConfig {
    AuditConfig {
        rate_ppm,
        verifiers: k,
        ..AuditConfig::new([1; 32])
    }
}

fn blank(batch: u32) -> Receipt {
    Receipt {
        version: RECEIPT_VERSION,
        network: [0; 32],
        epoch: 0,
        worker: key(0).node_id(),
        seq: 0,
        job: "digits".into(),
        executor: "digits/infer/0".into(),
        model: [2; 32],
        inputs: [0; 32],
        outputs: [0; 32],
        batch,
        backend: flex(),
        started_us: 0,
        took_us: 1,
    }
}

impl Net {
    fn new(roles: &[Role], rate_ppm: u32, k: usize) -> Self {
        Self::on(roles, &vec![flex(); roles.len()], rate_ppm, k)
    }

    /// Node `i` runs on `backends[i]`.
    fn on(roles: &[Role], backends: &[Backend], rate_ppm: u32, k: usize) -> Self {
        let nodes: Vec<(Auditor, Role)> = roles
            .iter()
            .enumerate()
            .map(|(i, r)| (Auditor::new(cfg(rate_ppm, k), key(i as u8 + 1), 0), *r))
            .collect();
        let ids: Vec<NodeId> = nodes.iter().map(|(a, _)| a.me).collect();
        let classes: Vec<(NodeId, crate::BackendClass)> = ids
            .iter()
            .zip(backends)
            .map(|(id, b)| (*id, b.class()))
            .collect();
        let mut net = Net {
            nodes,
            backends: backends.to_vec(),
            cross: 0,
            evidence: Vec::new(),
            refused: 0,
        };
        for (a, _) in &mut net.nodes {
            a.set_eligible(classes.clone());
        }
        net
    }

    fn id(&self, i: usize) -> NodeId {
        self.nodes[i].0.me
    }

    /// Every node runs `batches` batches in epoch 0.
    fn work(&mut self, batches: u64) {
        for i in 0..self.nodes.len() {
            for b in 0..batches {
                let inputs = items_digest(&[[i as u8, b as u8]]);
                let honest = truth_on(&self.backends[i], &inputs);
                let outputs = match self.nodes[i].1 {
                    Role::Cheat(every) if b % every == 0 => [0xEE; 32],
                    _ => honest,
                };
                let mut r = blank(1 + (b % 4) as u32);
                r.inputs = inputs;
                r.outputs = outputs;
                r.backend = self.backends[i].clone();
                self.nodes[i].0.record(r).unwrap();
            }
        }
        self.pump();
    }

    fn beacon(&mut self, beacon: &[u8]) {
        for (a, _) in &mut self.nodes {
            a.beacon(0, beacon);
        }
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(effect) = self.nodes[i].0.poll_effect() {
                    progressed = true;
                    match effect {
                        Effect::Publish(msg) => {
                            let from = self.id(i);
                            for j in 0..self.nodes.len() {
                                if j != i && self.nodes[j].0.handle(from, msg.clone()).is_err() {
                                    self.refused += 1;
                                }
                            }
                        }
                        Effect::ReExecute { receipt, hash } => {
                            let r = &receipt.receipt;
                            // A driver cannot reproduce another backend's bytes
                            // (`recompute` answers `None`).
                            let mine = &self.backends[i];
                            if r.backend != *mine {
                                self.cross += 1;
                            }
                            let outputs = match self.nodes[i].1 {
                                _ if r.backend != *mine => None,
                                Role::Liar => Some([0xAA; 32]),
                                Role::Lazy => Some(r.outputs),
                                _ => Some(truth_on(mine, &r.inputs)),
                            };
                            self.nodes[i].0.executed(r.epoch, &hash, outputs);
                        }
                        Effect::Evidence(e) => self.evidence.push((i, e)),
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn honest(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].1 == Role::Honest)
            .collect()
    }

    /// Evidence honest nodes hold against honest nodes (must be none).
    fn false_accusations(&self) -> Vec<(usize, NodeId)> {
        let honest_ids: Vec<NodeId> = self.honest().iter().map(|i| self.id(*i)).collect();
        self.evidence
            .iter()
            .filter(|(by, e)| {
                self.nodes[*by].1 == Role::Honest && honest_ids.contains(&e.against())
            })
            .map(|(by, e)| (*by, e.against()))
            .collect()
    }
}

#[test]
fn honest_work_is_verified_and_paid_and_every_node_agrees() {
    let mut net = Net::new(&[Role::Honest; 4], PPM_ALL, 2);
    net.work(6);
    // Before the beacon nothing was sampled: nothing may be credited yet.
    assert!(net.nodes.iter().all(|(a, _)| a.credited(0).is_none()));
    assert!(!net.nodes[0].0.tally(0).workers.is_empty());
    net.beacon(b"beacon-0");
    assert_eq!(net.nodes[0].0.credited(0), Some(net.nodes[0].0.tally(0)));
    assert!(net.evidence.is_empty());
    assert_eq!(net.refused, 0);
    let tallies: Vec<EpochWork> = net.nodes.iter().map(|(a, _)| a.tally(0)).collect();
    for t in &tallies {
        assert_eq!(t, &tallies[0], "every node tallies the same");
        assert!(t.beacon);
    }
    for row in tallies[0].workers.values() {
        assert_eq!(row.receipts, 6);
        assert_eq!(row.sampled, 6);
        assert_eq!(row.verified, 6);
        assert_eq!(row.items, 1 + 2 + 3 + 4 + 1 + 2);
        assert_eq!(row.work_units, row.items);
    }
}

const PPM_ALL: u32 = crate::sample::PPM;

/// GPU work is verified by GPU nodes only: a CPU node cannot reproduce a GPU's
/// last bits, so drawing it would accuse honest GPU workers or verify nothing.
#[test]
fn each_backends_work_is_verified_by_nodes_of_that_backend_only() {
    use Role::{Cheat, Honest};
    let backends = [flex(), flex(), flex(), gpu(), gpu(), gpu()];
    let mut net = Net::on(
        &[Honest, Honest, Honest, Honest, Cheat(2), Honest],
        &backends,
        PPM_ALL,
        2,
    );
    net.work(4);
    net.beacon(b"beacon-0");
    assert_eq!(
        net.cross, 0,
        "nobody was asked to re-execute another backend's work"
    );
    // (The cheater's own verifications are refused by the nodes that proved it
    // wrong, so `refused` is not zero here.)
    assert!(net.false_accusations().is_empty());
    let cheater = net.id(4);
    for i in net.honest() {
        let t = net.nodes[i].0.tally(0);
        for (w, row) in &t.workers {
            assert_eq!(row.sampled, 4, "{w}");
            if *w == cheater && backends[i] == gpu() {
                // Its own backend's nodes proved it wrong: nothing is credited.
                assert!(row.proven_wrong);
                assert_eq!(row.work_units, 0);
            } else if *w == cheater {
                // The CPU nodes cannot settle the disputes over its GPU work
                // (batches 0 and 2, of 1 and 3 items): they credit neither way,
                // only its undisputed batches (1 and 3: 2 + 4 items).
                assert!(!row.proven_wrong);
                assert_eq!((row.items, row.work_units), (10, 6));
                assert_eq!((row.verified, row.unverified), (2, 2));
            } else {
                // Two verifiers of the worker's own backend vouched for each.
                assert_eq!(row.verified, 4, "{w}");
                assert_eq!(row.work_units, row.items);
            }
        }
        // Only the GPU nodes can judge the GPU cheater; the CPU nodes hold no
        // evidence (they could not reproduce it), and never any against the
        // honest GPU nodes.
        let caught = net.nodes[i].0.evidence_against(0, &cheater).is_some();
        assert_eq!(caught, backends[i] == gpu(), "node {i}");
    }
    // Every verification of a GPU receipt came from a GPU node, and of a CPU
    // receipt from a CPU node.
    for (a, _) in &net.nodes {
        for st in a.epochs.values() {
            for entry in st.receipts.values() {
                let class = entry.receipt.receipt.backend.class();
                for signer in entry.verifications.keys() {
                    let j = net.nodes.iter().position(|(b, _)| b.me == *signer).unwrap();
                    assert_eq!(backends[j].class(), class);
                }
                assert_eq!(entry.chosen.as_ref().map(Vec::len), Some(2));
            }
        }
    }
}

/// A lying GPU verifier is proven wrong by the GPU nodes; the CPU nodes, which
/// cannot tell who lied, accuse nobody and withhold only the disputed receipts.
#[test]
fn a_lying_verifier_of_another_backend_cannot_make_cpu_nodes_accuse_anyone() {
    use Role::{Honest, Liar};
    let backends = [flex(), flex(), flex(), gpu(), gpu(), gpu()];
    let mut net = Net::on(
        &[Honest, Honest, Honest, Honest, Liar, Honest],
        &backends,
        PPM_ALL,
        2,
    );
    net.work(4);
    net.beacon(b"beacon-0");
    assert_eq!(net.cross, 0);
    assert!(net.false_accusations().is_empty());
    let liar = net.id(4);
    for i in net.honest() {
        let held = net.nodes[i].0.evidence_against(0, &liar).is_some();
        assert_eq!(held, backends[i] == gpu(), "node {i}");
        let t = net.nodes[i].0.tally(0);
        assert_eq!(t.evidence.len(), usize::from(backends[i] == gpu()));
        for (w, row) in &t.workers {
            if *w == liar {
                continue;
            }
            assert!(!row.proven_wrong);
            let worker_on_gpu =
                backends[net.nodes.iter().position(|(a, _)| a.me == *w).unwrap()] == gpu();
            if backends[i] == gpu() || !worker_on_gpu {
                assert_eq!(row.work_units, row.items, "node {i} on {w}");
            } else {
                // A CPU node withholds exactly the receipts the liar disputed.
                let disputed: u64 = net.nodes[i].0.epochs[&0]
                    .receipts
                    .values()
                    .filter(|e| e.receipt.receipt.worker == *w)
                    .filter(|e| e.verifications.contains_key(&liar))
                    .map(|e| u64::from(e.receipt.receipt.batch))
                    .sum();
                assert!(disputed > 0);
                assert_eq!(row.work_units, row.items - disputed, "node {i} on {w}");
            }
        }
    }
}

/// A backend only its worker runs has nobody to verify it: its sampled receipts
/// show as unverified in the tally, and nobody is accused.
#[test]
fn work_on_a_backend_nobody_else_runs_is_not_verified_and_accuses_nobody() {
    let backends = [flex(), flex(), flex(), gpu()];
    let mut net = Net::on(&[Role::Honest; 4], &backends, PPM_ALL, 2);
    net.work(3);
    net.beacon(b"beacon-0");
    assert_eq!(net.cross, 0);
    assert!(net.evidence.is_empty());
    let t = net.nodes[0].0.tally(0);
    let lone = &t.workers[&net.id(3)];
    assert_eq!((lone.sampled, lone.verified, lone.unverified), (3, 0, 3));
    assert_eq!(t.workers[&net.id(0)].verified, 3);
}

#[test]
fn a_cheating_worker_is_proven_wrong_by_every_honest_node() {
    let mut net = Net::new(
        &[Role::Honest, Role::Cheat(3), Role::Honest, Role::Honest],
        PPM_ALL,
        2,
    );
    net.work(6);
    net.beacon(b"beacon-0");
    let cheater = net.id(1);
    assert!(net.false_accusations().is_empty());
    for i in net.honest() {
        let e = net.nodes[i]
            .0
            .evidence_against(0, &cheater)
            .expect("caught");
        assert!(matches!(e, Evidence::WrongOutputs { .. }));
        // The evidence checks out: the judge's signed re-execution is the truth.
        if let Evidence::WrongOutputs { receipt, judge } = e {
            assert_eq!(judge.verify(), Ok(()));
            assert_eq!(
                judge.verification.outputs,
                Some(truth(&receipt.receipt.inputs))
            );
            assert_ne!(receipt.receipt.outputs, truth(&receipt.receipt.inputs));
        }
        let t = net.nodes[i].0.tally(0);
        assert!(t.workers[&cheater].proven_wrong);
        assert_eq!(t.workers[&cheater].work_units, 0);
        assert_eq!(t.evidence.len(), 1);
        assert_eq!(
            t.workers[&net.id(0)].work_units,
            t.workers[&net.id(0)].items
        );
    }
}

#[test]
fn a_lying_verifier_is_proven_wrong_and_the_worker_is_not() {
    let mut net = Net::new(
        &[Role::Honest, Role::Honest, Role::Liar, Role::Honest],
        PPM_ALL,
        2,
    );
    net.work(4);
    net.beacon(b"beacon-0");
    let liar = net.id(2);
    assert!(net.false_accusations().is_empty());
    for i in net.honest() {
        assert!(matches!(
            net.nodes[i].0.evidence_against(0, &liar),
            Some(Evidence::FalseVerification { .. })
        ));
        assert_eq!(net.nodes[i].0.accused(0), [liar].into_iter().collect());
    }
}

#[test]
fn a_lazy_verifier_vouching_for_a_cheater_falls_with_it() {
    // Three nodes, k = 2: each of the cheater's receipts is checked by the lazy
    // node and the honest one.
    let mut net = Net::new(&[Role::Cheat(1), Role::Lazy, Role::Honest], PPM_ALL, 2);
    net.work(2);
    net.beacon(b"beacon-0");
    let honest = &net.nodes[2].0;
    assert!(matches!(
        honest.evidence_against(0, &net.id(0)),
        Some(Evidence::WrongOutputs { .. })
    ));
    assert!(matches!(
        honest.evidence_against(0, &net.id(1)),
        Some(Evidence::FalseVerification { .. })
    ));
    assert!(net.false_accusations().is_empty());
}

#[test]
fn unsampled_work_is_not_re_executed_and_proves_nothing() {
    let mut net = Net::new(&[Role::Honest, Role::Cheat(1), Role::Honest], 0, 2);
    net.work(5);
    net.beacon(b"beacon-0");
    assert!(net.evidence.is_empty());
    let t = net.nodes[0].0.tally(0);
    assert!(
        t.workers
            .values()
            .all(|r| r.sampled == 0 && r.verified == 0)
    );
}

#[test]
fn verifications_from_the_wrong_nodes_are_refused() {
    let mut net = Net::new(&[Role::Honest; 4], PPM_ALL, 2);
    net.work(1);
    net.beacon(b"beacon-0");
    let receipt = net.nodes[0].0.epochs[&0]
        .receipts
        .values()
        .find(|e| e.receipt.receipt.worker == net.id(0))
        .unwrap()
        .clone_receipt();
    let hash = receipt.hash().unwrap();
    let chosen = crate::sample::verifiers(
        b"beacon-0",
        &hash,
        &net.id(0),
        &eligible_of(&net.nodes[0].0.eligible, &flex().class()),
        2,
    );
    let outsider = (1..4)
        .map(|i| net.id(i))
        .find(|n| !chosen.contains(n))
        .unwrap();
    let outsider_idx = (0..4).find(|i| net.id(*i) == outsider).unwrap();
    let v = net.nodes[outsider_idx]
        .0
        .my_verification(&receipt, Some([0xAB; 32]))
        .unwrap();
    let auditor = &mut net.nodes[0].0;
    let msg = AuditMessage::Verification {
        receipt: receipt.clone(),
        verification: v.clone(),
    };
    // Relayed by someone else than its signer.
    assert!(matches!(
        auditor.handle(chosen[0], msg.clone()),
        Err(AuditError::NotTheSigner { .. })
    ));
    // Signed by a node the beacon did not choose.
    assert_eq!(
        auditor.handle(outsider, msg),
        Err(AuditError::NotChosen(outsider))
    );
    assert!(auditor.accused(0).is_empty());
}

#[test]
fn receipts_out_of_the_window_or_over_the_bound_are_refused_and_equivocation_is_proof() {
    let w = key(9);
    let mut a = Auditor::new(
        AuditConfig {
            receipts_per_epoch: 2,
            ..cfg(PPM_ALL, 1)
        },
        key(1),
        5,
    );
    let signed = |epoch: u64, seq: u64, out: u8| {
        let mut r = blank(1);
        r.network = [1; 32];
        r.worker = w.node_id();
        r.epoch = epoch;
        r.seq = seq;
        r.outputs = [out; 32];
        r.sign(&w).unwrap()
    };
    assert_eq!(
        a.handle(w.node_id(), AuditMessage::Receipt(signed(6, 0, 1))),
        Err(AuditError::Epoch(6))
    );
    assert_eq!(
        a.handle(w.node_id(), AuditMessage::Receipt(signed(1, 0, 1))),
        Err(AuditError::Epoch(1))
    );
    a.handle(w.node_id(), AuditMessage::Receipt(signed(5, 0, 1)))
        .unwrap();
    a.handle(w.node_id(), AuditMessage::Receipt(signed(5, 1, 1)))
        .unwrap();
    assert_eq!(
        a.handle(w.node_id(), AuditMessage::Receipt(signed(5, 2, 1))),
        Err(AuditError::Full(5))
    );
    assert_eq!(a.tally(5).refused, 1);
    // Number 0 again, with other outputs.
    a.handle(w.node_id(), AuditMessage::Receipt(signed(5, 0, 2)))
        .unwrap();
    assert!(matches!(
        a.evidence_against(5, &w.node_id()),
        Some(Evidence::Equivocation { .. })
    ));
    assert_eq!(a.tally(5).workers[&w.node_id()].work_units, 0);
    let mut other_net = signed(5, 3, 1);
    other_net.receipt.network = [7; 32];
    let other_net = other_net.receipt.sign(&w).unwrap();
    assert_eq!(
        a.handle(w.node_id(), AuditMessage::Receipt(other_net)),
        Err(AuditError::WrongNetwork)
    );
    // Epochs roll out of the window.
    a.advance(9);
    assert!(a.tally(5).workers.is_empty());
}

impl Entry {
    fn clone_receipt(&self) -> SignedReceipt {
        self.receipt.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the liars and cheaters do, no honest node holds evidence against an
    /// honest node; and a cheater whose wrong receipt was sampled with an honest
    /// verifier is proven wrong by every honest node.
    #[test]
    fn honest_nodes_are_never_accused_and_sampled_cheats_are_caught(
        roles in proptest::collection::vec(
            prop_oneof![
                4 => Just(Role::Honest),
                1 => (1u64..4).prop_map(Role::Cheat),
                1 => Just(Role::Liar),
                1 => Just(Role::Lazy),
            ],
            3..8,
        ),
        rate in prop_oneof![Just(PPM_ALL), 100_000u32..900_000],
        k in 1usize..4,
        beacon in proptest::collection::vec(any::<u8>(), 8..48),
    ) {
        let mut net = Net::new(&roles, rate, k);
        net.work(4);
        net.beacon(&beacon);
        prop_assert!(net.false_accusations().is_empty(), "{:?}", net.false_accusations());
        let honest = net.honest();
        for (w, role) in roles.iter().enumerate() {
            let Role::Cheat(_) = role else { continue };
            let worker = net.id(w);
            // Was one of its wrong receipts sampled with an honest verifier?
            let Some(&h) = honest.first() else { continue };
            let entries = &net.nodes[h].0.epochs[&0].receipts;
            let exposed = entries.values().any(|e| {
                e.receipt.receipt.worker == worker
                    && e.receipt.receipt.outputs != truth(&e.receipt.receipt.inputs)
                    && e.chosen.as_ref().is_some_and(|c| {
                        c.iter().any(|v| honest.iter().any(|i| net.id(*i) == *v))
                    })
            });
            if exposed {
                for i in &honest {
                    prop_assert!(net.nodes[*i].0.evidence_against(0, &worker).is_some());
                }
            }
        }
    }
}
