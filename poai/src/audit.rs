//! One node's auditor: receipts in, re-executions out, disputes judged, work
//! tallied per epoch.
//!
//! # The protocol
//!
//! 1. A worker signs a receipt for every batch it runs ([`Auditor::record`]) and
//!    publishes it to the other auditors.
//! 2. When epoch `e`'s beacon is known ([`Auditor::beacon`]), every auditor
//!    computes, for every receipt of `e`, whether it is sampled and who its `k`
//!    verifiers are ([`crate::sample`]). A chosen verifier asks its driver to
//!    re-execute the receipt ([`Effect::ReExecute`]): fetch the inputs from the
//!    worker, check them against the receipt's input digest, run the same model
//!    with the same backend and batch plan, and report the output digest
//!    ([`Auditor::executed`]). It then signs and publishes a [`Verification`].
//! 3. A verification whose outputs differ from the receipt's opens a **dispute**:
//!    every auditor that sees it re-executes the receipt itself, and judges with
//!    its own result as the truth: a worker whose signed outputs differ from it is
//!    proven wrong ([`Evidence::WrongOutputs`]); a verifier whose signed outputs
//!    differ from it is proven lying ([`Evidence::FalseVerification`]), which also
//!    catches a lazy verifier that vouched for a wrong result. An honest auditor
//!    therefore never holds evidence its own computation does not back, and
//!    anyone can check a piece of evidence by re-executing it.
//! 4. [`Auditor::tally`] reports epoch `e`'s work: per worker its receipts and
//!    items, how many were sampled and verified, the evidence against it, and its
//!    work units (its items, or zero with evidence against it in the epoch), with a
//!    root over the receipts.
//!
//! A worker that will not hand over inputs matching its receipt gets a signed
//! verification with no outputs: its receipt is not verified, and nothing is
//! proven (a verifier could lie about that); the tally shows it.
//!
//! # Bounds
//!
//! Receipts per epoch ([`AuditConfig::receipts_per_epoch`]; past it new receipts
//! are refused and counted), epochs kept ([`AuditConfig::epochs_kept`]; older ones
//! are dropped, and receipts for them or for epochs not begun are refused),
//! verifications per receipt (one per eligible node; those from nodes the beacon
//! did not choose are dropped once it is known), evidence (one piece per accused
//! node per epoch), and the effect queue (one re-execution per receipt).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use plexus_actors::NodeId;
use plexus_vocab::identity::NodeKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::receipt::{
    BackendClass, Digest, Receipt, ReceiptError, SignedReceipt, SignedVerification, Verification,
};
use crate::sample;

/// Tuning of the audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// The network.
    pub network: [u8; 32],
    /// Share of receipts re-executed, parts per million.
    pub rate_ppm: u32,
    /// Verifiers per sampled receipt (`k`).
    pub verifiers: usize,
    /// Receipts kept per epoch, all workers together.
    pub receipts_per_epoch: usize,
    /// Epochs kept (the current one and those before it).
    pub epochs_kept: u64,
}

impl AuditConfig {
    /// Defaults: 5% sampled, two verifiers each, 100,000 receipts an epoch, four
    /// epochs kept.
    pub fn new(network: [u8; 32]) -> Self {
        Self {
            network,
            rate_ppm: 50_000,
            verifiers: 2,
            receipts_per_epoch: 100_000,
            epochs_kept: 4,
        }
    }
}

/// What auditors send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditMessage {
    /// A worker's receipt.
    Receipt(SignedReceipt),
    /// A verifier's result, with the receipt it is about (so a node that missed
    /// the receipt can still judge).
    Verification {
        /// The receipt.
        receipt: SignedReceipt,
        /// The verification.
        verification: SignedVerification,
    },
}

/// Why a message was refused. The sender or signer is at fault; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A receipt or verification that does not verify.
    #[error(transparent)]
    Invalid(#[from] ReceiptError),
    /// For another network.
    #[error("for another network")]
    WrongNetwork,
    /// For an epoch this node does not keep (too old, or not begun).
    #[error("epoch {0} is outside the epochs kept")]
    Epoch(u64),
    /// The epoch holds all the receipts it may.
    #[error("epoch {0} is full")]
    Full(u64),
    /// A verification sent by another node than its signer.
    #[error("{from} sent a verification signed by {signer}")]
    NotTheSigner {
        /// The sender.
        from: NodeId,
        /// The signer.
        signer: NodeId,
    },
    /// A verification by a node the beacon did not choose for that receipt.
    #[error("{0} was not chosen to verify this receipt")]
    NotChosen(NodeId),
    /// A verification that names another receipt or worker than the one it came with.
    #[error("the verification is about another receipt")]
    Mismatched,
    /// A node already proven to lie in this epoch.
    #[error("{0} is already proven wrong in this epoch")]
    Accused(NodeId),
}

/// What the driver does for the auditor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Re-execute `receipt`: fetch its inputs from its worker, check them against
    /// `receipt.inputs`, run `receipt.model` on `receipt.backend` with the same
    /// batch, and report with [`Auditor::executed`] (`None` if the inputs could not
    /// be had).
    ReExecute {
        /// The receipt.
        receipt: SignedReceipt,
        /// Its name.
        hash: Digest,
    },
    /// Send to every other auditor.
    Publish(AuditMessage),
    /// Proof that a node was wrong.
    Evidence(Evidence),
}

/// Proof that a node signed something false; checkable by re-execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evidence {
    /// The worker signed outputs its inputs do not give: its receipt and the
    /// judge's signed re-execution.
    WrongOutputs {
        /// The worker's receipt.
        receipt: SignedReceipt,
        /// The judge's re-execution.
        judge: SignedVerification,
    },
    /// A verifier signed outputs the receipt's inputs do not give.
    FalseVerification {
        /// The receipt.
        receipt: SignedReceipt,
        /// The verifier's false verification.
        verification: SignedVerification,
        /// The judge's re-execution.
        judge: SignedVerification,
    },
    /// The worker signed two receipts with one number.
    Equivocation {
        /// One.
        first: SignedReceipt,
        /// The other.
        second: SignedReceipt,
    },
}

impl Evidence {
    /// Who it proves wrong.
    pub fn against(&self) -> NodeId {
        match self {
            Evidence::WrongOutputs { receipt, .. } => receipt.receipt.worker,
            Evidence::FalseVerification { verification, .. } => verification.verification.verifier,
            Evidence::Equivocation { first, .. } => first.receipt.worker,
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        match self {
            Evidence::WrongOutputs { receipt, .. }
            | Evidence::FalseVerification { receipt, .. } => receipt.receipt.epoch,
            Evidence::Equivocation { first, .. } => first.receipt.epoch,
        }
    }
}

/// One worker's line in an epoch's tally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkRow {
    /// Receipts.
    pub receipts: u64,
    /// Items over all its receipts.
    pub items: u64,
    /// Receipts the beacon sampled.
    pub sampled: u64,
    /// Sampled receipts a verifier's re-execution confirmed.
    pub verified: u64,
    /// Sampled receipts nobody could re-execute (no inputs, no verifier answer).
    pub unverified: u64,
    /// Whether evidence against it exists in this epoch.
    pub proven_wrong: bool,
    /// Work units for rewards: zero if proven wrong, else `items` less those of
    /// receipts in a dispute this node cannot settle (work of another backend
    /// than its own, which a verifier contradicted: this node cannot tell whether
    /// the worker or the verifier lied, so it credits neither way; nodes of that
    /// backend judge it).
    pub work_units: u64,
}

/// An epoch's tally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochWork {
    /// The epoch.
    pub epoch: u64,
    /// Whether its beacon is known (before that nothing is sampled).
    pub beacon: bool,
    /// Per worker.
    pub workers: BTreeMap<NodeId, WorkRow>,
    /// SHA-256 over the receipt hashes, sorted.
    pub root: Digest,
    /// Evidence, one piece per node proven wrong.
    pub evidence: Vec<Evidence>,
    /// Receipts refused because the epoch was full.
    pub refused: u64,
}

#[derive(Debug)]
struct Entry {
    receipt: SignedReceipt,
    /// The beacon's choice, once known: `None` until then, `Some(vec![])` if not
    /// sampled.
    chosen: Option<Vec<NodeId>>,
    verifications: BTreeMap<NodeId, SignedVerification>,
    /// This node's own re-execution.
    mine: Option<Option<Digest>>,
    requested: bool,
    published: bool,
}

impl Entry {
    /// Whether a verification contradicts the worker's outputs.
    fn disputed(&self) -> bool {
        let claimed = self.receipt.receipt.outputs;
        self.verifications
            .values()
            .any(|v| v.verification.outputs.is_some_and(|o| o != claimed))
    }
}

#[derive(Debug, Default)]
struct EpochState {
    beacon: Option<Vec<u8>>,
    receipts: BTreeMap<Digest, Entry>,
    seqs: BTreeMap<(NodeId, u64), Digest>,
    accused: BTreeMap<NodeId, Evidence>,
    next_seq: u64,
    refused: u64,
}

/// Whether `me` can judge work of `class`: only a node of that class reproduces
/// its output bytes.
fn judges(eligible: &BTreeMap<NodeId, BackendClass>, me: &NodeId, class: &BackendClass) -> bool {
    eligible.get(me) == Some(class)
}

/// The nodes of `eligible` whose class is `class`, sorted.
fn eligible_of(eligible: &BTreeMap<NodeId, BackendClass>, class: &BackendClass) -> Vec<NodeId> {
    eligible
        .iter()
        .filter(|(_, c)| *c == class)
        .map(|(n, _)| *n)
        .collect()
}

/// One node's auditor.
pub struct Auditor {
    cfg: AuditConfig,
    key: NodeKey,
    me: NodeId,
    /// The nodes that may verify, by node, with the backend class each runs.
    eligible: BTreeMap<NodeId, BackendClass>,
    current: u64,
    epochs: BTreeMap<u64, EpochState>,
    outbox: VecDeque<Effect>,
}

impl Auditor {
    /// An auditor signing with `key`, in epoch `current`.
    pub fn new(cfg: AuditConfig, key: NodeKey, current: u64) -> Self {
        let me = key.node_id();
        Self {
            cfg,
            key,
            me,
            eligible: BTreeMap::new(),
            current,
            epochs: BTreeMap::new(),
            outbox: VecDeque::new(),
        }
    }

    /// The nodes that may verify (the admitted executors), each with the backend
    /// class it re-executes on; the beacon draws a receipt's verifiers among those
    /// of the receipt's class, since only they can reproduce its output bytes. A
    /// node named twice keeps its last class.
    pub fn set_eligible(&mut self, nodes: impl IntoIterator<Item = (NodeId, BackendClass)>) {
        self.eligible = nodes.into_iter().collect();
    }

    /// Time moves to epoch `epoch`: older epochs than the ones kept are dropped.
    pub fn advance(&mut self, epoch: u64) {
        self.current = self.current.max(epoch);
        let oldest = self.oldest_kept();
        while self
            .epochs
            .first_key_value()
            .is_some_and(|(e, _)| *e < oldest)
        {
            self.epochs.pop_first();
        }
    }

    fn oldest_kept(&self) -> u64 {
        self.current
            .saturating_sub(self.cfg.epochs_kept.saturating_sub(1))
    }

    /// The next effect for the driver.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.outbox.pop_front()
    }

    /// Signs a receipt for a batch this node ran (its worker, network, epoch and
    /// number are filled in) and publishes it.
    pub fn record(&mut self, mut receipt: Receipt) -> Result<SignedReceipt, AuditError> {
        let epoch = self.current;
        let seq = self.epochs.entry(epoch).or_default().next_seq;
        receipt.network = self.cfg.network;
        receipt.worker = self.me;
        receipt.epoch = epoch;
        receipt.seq = seq;
        let signed = receipt.sign(&self.key)?;
        self.insert(signed.clone())?;
        if let Some(st) = self.epochs.get_mut(&epoch) {
            st.next_seq = seq.saturating_add(1);
        }
        self.outbox
            .push_back(Effect::Publish(AuditMessage::Receipt(signed.clone())));
        Ok(signed)
    }

    /// A message from `from`, as the transport authenticated it.
    pub fn handle(&mut self, from: NodeId, msg: AuditMessage) -> Result<(), AuditError> {
        match msg {
            AuditMessage::Receipt(r) => {
                // Receipts may be relayed: the worker's signature is what counts.
                self.insert(r).map(|_| ())
            }
            AuditMessage::Verification {
                receipt,
                verification,
            } => self.on_verification(from, receipt, verification),
        }
    }

    /// Epoch `epoch`'s beacon: receipts of that epoch are sampled now.
    pub fn beacon(&mut self, epoch: u64, beacon: &[u8]) {
        if epoch < self.oldest_kept() || epoch > self.current {
            return;
        }
        let st = self.epochs.entry(epoch).or_default();
        if st.beacon.is_some() {
            return;
        }
        st.beacon = Some(beacon.to_vec());
        let hashes: Vec<Digest> = st.receipts.keys().copied().collect();
        for h in hashes {
            self.choose(epoch, &h);
            self.evaluate(epoch, &h);
        }
    }

    /// The driver's result for an [`Effect::ReExecute`]: the outputs' digest, or
    /// `None` if inputs matching the receipt could not be had.
    pub fn executed(&mut self, epoch: u64, receipt: &Digest, outputs: Option<Digest>) {
        let me = self.me;
        let Some(entry) = self.entry_mut(epoch, receipt) else {
            return;
        };
        entry.mine = Some(outputs);
        let chosen = entry.chosen.as_ref().is_some_and(|c| c.contains(&me));
        if chosen && !entry.published {
            entry.published = true;
            let signed_receipt = entry.receipt.clone();
            if let Some(signed) = self.my_verification(&signed_receipt, outputs) {
                if let Some(entry) = self.entry_mut(epoch, receipt) {
                    entry.verifications.insert(me, signed.clone());
                }
                self.outbox
                    .push_back(Effect::Publish(AuditMessage::Verification {
                        receipt: signed_receipt,
                        verification: signed,
                    }));
            }
        }
        self.evaluate(epoch, receipt);
    }

    fn entry_mut(&mut self, epoch: u64, hash: &Digest) -> Option<&mut Entry> {
        self.epochs.get_mut(&epoch)?.receipts.get_mut(hash)
    }

    /// Epoch `epoch`'s work as the checkpoints may credit it: its tally once the
    /// epoch's beacon drew the sample, `None` before. Work of an epoch whose beacon
    /// never comes (no signed checkpoint) was never sampled, so it is credited
    /// nothing: crediting it would pay for unchecked work.
    pub fn credited(&self, epoch: u64) -> Option<EpochWork> {
        let work = self.tally(epoch);
        work.beacon.then_some(work)
    }

    /// Epoch `epoch`'s work as this node knows it.
    pub fn tally(&self, epoch: u64) -> EpochWork {
        let mut work = EpochWork {
            epoch,
            ..EpochWork::default()
        };
        let Some(st) = self.epochs.get(&epoch) else {
            work.root = root(std::iter::empty());
            return work;
        };
        work.beacon = st.beacon.is_some();
        work.refused = st.refused;
        let mut unsettled_items: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (hash, e) in &st.receipts {
            let r = &e.receipt.receipt;
            let row = work.workers.entry(r.worker).or_default();
            row.receipts += 1;
            row.items += u64::from(r.batch);
            let unsettled = e.disputed() && !judges(&self.eligible, &self.me, &r.backend.class());
            if unsettled {
                *unsettled_items.entry(r.worker).or_default() += u64::from(r.batch);
            }
            // Sampled: verifiers were drawn, or the draw found nobody of the
            // receipt's backend to draw (it then counts as unverified).
            if let Some(chosen) = &e.chosen
                && (!chosen.is_empty()
                    || st
                        .beacon
                        .as_ref()
                        .is_some_and(|b| sample::sampled(b, hash, self.cfg.rate_ppm)))
            {
                row.sampled += 1;
                let confirmed = !unsettled
                    && e.verifications.values().any(|v| {
                        chosen.contains(&v.verification.verifier)
                            && v.verification.outputs == Some(r.outputs)
                            && !st.accused.contains_key(&v.verification.verifier)
                    });
                if confirmed {
                    row.verified += 1;
                } else if !st.accused.contains_key(&r.worker) {
                    row.unverified += 1;
                }
            }
        }
        for (node, row) in &mut work.workers {
            row.proven_wrong = st.accused.contains_key(node);
            let unsettled = unsettled_items.get(node).copied().unwrap_or(0);
            row.work_units = if row.proven_wrong {
                0
            } else {
                row.items.saturating_sub(unsettled)
            };
        }
        work.root = root(st.receipts.keys());
        work.evidence = st.accused.values().cloned().collect();
        work
    }

    fn my_verification(
        &self,
        receipt: &SignedReceipt,
        outputs: Option<Digest>,
    ) -> Option<SignedVerification> {
        let hash = receipt.hash().ok()?;
        Verification {
            network: self.cfg.network,
            epoch: receipt.receipt.epoch,
            receipt: hash,
            worker: receipt.receipt.worker,
            verifier: self.me,
            outputs,
        }
        .sign(&self.key)
        .ok()
    }

    /// Stores a receipt (checked); returns its hash.
    fn insert(&mut self, r: SignedReceipt) -> Result<Digest, AuditError> {
        r.verify()?;
        if r.receipt.network != self.cfg.network {
            return Err(AuditError::WrongNetwork);
        }
        let epoch = r.receipt.epoch;
        if epoch < self.oldest_kept() || epoch > self.current {
            return Err(AuditError::Epoch(epoch));
        }
        let hash = r.hash()?;
        let max = self.cfg.receipts_per_epoch;
        let st = self.epochs.entry(epoch).or_default();
        if st.receipts.contains_key(&hash) {
            return Ok(hash);
        }
        let slot = (r.receipt.worker, r.receipt.seq);
        if let Some(other) = st.seqs.get(&slot).copied() {
            // Two receipts with one number: proof, and the second is not kept.
            if let Some(first) = st.receipts.get(&other).map(|e| e.receipt.clone()) {
                self.accuse(epoch, Evidence::Equivocation { first, second: r });
            }
            return Ok(hash);
        }
        if st.receipts.len() >= max {
            st.refused = st.refused.saturating_add(1);
            return Err(AuditError::Full(epoch));
        }
        st.seqs.insert(slot, hash);
        st.receipts.insert(
            hash,
            Entry {
                receipt: r,
                chosen: None,
                verifications: BTreeMap::new(),
                mine: None,
                requested: false,
                published: false,
            },
        );
        if st.beacon.is_some() {
            self.choose(epoch, &hash);
            self.evaluate(epoch, &hash);
        }
        Ok(hash)
    }

    fn on_verification(
        &mut self,
        from: NodeId,
        receipt: SignedReceipt,
        v: SignedVerification,
    ) -> Result<(), AuditError> {
        let signer = v.verification.verifier;
        if from != signer {
            return Err(AuditError::NotTheSigner { from, signer });
        }
        v.verify()?;
        if v.verification.network != self.cfg.network {
            return Err(AuditError::WrongNetwork);
        }
        let epoch = receipt.receipt.epoch;
        let hash = self.insert(receipt)?;
        if v.verification.receipt != hash || v.verification.epoch != epoch {
            return Err(AuditError::Mismatched);
        }
        let Some(st) = self.epochs.get_mut(&epoch) else {
            return Err(AuditError::Epoch(epoch));
        };
        if st.accused.contains_key(&signer) {
            return Err(AuditError::Accused(signer));
        }
        let Some(entry) = st.receipts.get_mut(&hash) else {
            // Not kept (the second of an equivocation): nothing to judge.
            return Ok(());
        };
        if v.verification.worker != entry.receipt.receipt.worker {
            return Err(AuditError::Mismatched);
        }
        match &entry.chosen {
            Some(chosen) if !chosen.contains(&signer) => {
                return Err(AuditError::NotChosen(signer));
            }
            // Before the beacon: kept (one per node), checked when it comes.
            _ => {}
        }
        let class = entry.receipt.receipt.backend.class();
        if self.eligible.get(&signer) != Some(&class) {
            return Err(AuditError::NotChosen(signer));
        }
        entry.verifications.entry(signer).or_insert(v);
        self.evaluate(epoch, &hash);
        Ok(())
    }

    /// Applies the beacon to one receipt: sampled or not, and its verifiers.
    fn choose(&mut self, epoch: u64, hash: &Digest) {
        let Some(st) = self.epochs.get_mut(&epoch) else {
            return;
        };
        let Some(beacon) = st.beacon.clone() else {
            return;
        };
        let Some(entry) = st.receipts.get_mut(hash) else {
            return;
        };
        if entry.chosen.is_some() {
            return;
        }
        let pool = eligible_of(&self.eligible, &entry.receipt.receipt.backend.class());
        let chosen = if sample::sampled(&beacon, hash, self.cfg.rate_ppm) {
            sample::verifiers(
                &beacon,
                hash,
                &entry.receipt.receipt.worker,
                &pool,
                self.cfg.verifiers,
            )
        } else {
            Vec::new()
        };
        entry.verifications.retain(|node, _| chosen.contains(node));
        if chosen.contains(&self.me) && !entry.requested {
            entry.requested = true;
            self.outbox.push_back(Effect::ReExecute {
                receipt: entry.receipt.clone(),
                hash: *hash,
            });
        }
        entry.chosen = Some(chosen);
    }

    /// Opens a dispute or judges one, as far as what this node knows allows.
    fn evaluate(&mut self, epoch: u64, hash: &Digest) {
        let Some(st) = self.epochs.get_mut(&epoch) else {
            return;
        };
        let Some(entry) = st.receipts.get_mut(hash) else {
            return;
        };
        let claimed = entry.receipt.receipt.outputs;
        if !entry.disputed() {
            return;
        }
        match entry.mine {
            // Another backend's work: this node cannot reproduce its bytes, so it
            // neither re-executes nor judges (the receipt's class judges it).
            None if !judges(
                &self.eligible,
                &self.me,
                &entry.receipt.receipt.backend.class(),
            ) => {}
            None => {
                if !entry.requested {
                    entry.requested = true;
                    self.outbox.push_back(Effect::ReExecute {
                        receipt: entry.receipt.clone(),
                        hash: *hash,
                    });
                }
            }
            // This node could not get the inputs: it cannot judge.
            Some(None) => {}
            Some(Some(truth)) => {
                let receipt = entry.receipt.clone();
                let liars: Vec<SignedVerification> = entry
                    .verifications
                    .values()
                    .filter(|v| v.verification.outputs.is_some_and(|o| o != truth))
                    .cloned()
                    .collect();
                let Some(judge) = self.my_verification(&receipt, Some(truth)) else {
                    return;
                };
                if claimed != truth {
                    self.accuse(
                        epoch,
                        Evidence::WrongOutputs {
                            receipt: receipt.clone(),
                            judge: judge.clone(),
                        },
                    );
                }
                for verification in liars {
                    self.accuse(
                        epoch,
                        Evidence::FalseVerification {
                            receipt: receipt.clone(),
                            verification,
                            judge: judge.clone(),
                        },
                    );
                }
            }
        }
    }

    fn accuse(&mut self, epoch: u64, evidence: Evidence) {
        let Some(st) = self.epochs.get_mut(&epoch) else {
            return;
        };
        let who = evidence.against();
        if who == self.me || st.accused.contains_key(&who) {
            return;
        }
        st.accused.insert(who, evidence.clone());
        self.outbox.push_back(Effect::Evidence(evidence));
    }

    /// Evidence against `node` in `epoch`, if this node holds any.
    pub fn evidence_against(&self, epoch: u64, node: &NodeId) -> Option<&Evidence> {
        self.epochs.get(&epoch)?.accused.get(node)
    }

    /// The nodes proven wrong in `epoch`.
    pub fn accused(&self, epoch: u64) -> BTreeSet<NodeId> {
        self.epochs
            .get(&epoch)
            .map(|st| st.accused.keys().copied().collect())
            .unwrap_or_default()
    }
}

fn root<'a>(hashes: impl Iterator<Item = &'a Digest>) -> Digest {
    let mut h = Sha256::new();
    h.update(b"plexus-poai-receipts-v1");
    for d in hashes {
        h.update(d);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
