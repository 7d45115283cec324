//! Agreement on each epoch's checkpoint: a rotating proposer, one signature per
//! member per epoch, threshold certificates and equivocation evidence.
//!
//! # The protocol, for epoch `e`
//!
//! 1. **Observe.** When `e` ends, every committee member signs its uptime vector
//!    ([`crate::availability`]) and sends it to the committee.
//! 2. **Propose.** Views rotate on a fixed clock: view `v` starts at
//!    `end(e) + v·view_timeout`, and its proposer is `committee[(e + v) mod n]`.
//!    The proposer waits until it holds every member's observation or `collect`
//!    has passed with at least `q` of them, then builds the checkpoint from them and
//!    sends a [`Proposal`] carrying the checkpoint, the signed observations it used
//!    and the previous signed checkpoint it links to. In a later view, a proposer
//!    that has seen votes for an earlier proposal proposes that one again (the one
//!    with most votes), so a split vote can still finish.
//! 3. **Check and vote.** A member recomputes everything it can from the signed
//!    inputs: the sender is the view's proposer; every observation verifies and
//!    comes from a distinct committee member, at least `q` of them; the
//!    availability is their aggregate over the allowlist in force; the rewards
//!    follow the rule; the previous checkpoint is signed by the group and is not
//!    older than the newest one the member knows; every piece of evidence verifies.
//!    Only then, and only if it has not voted for another hash in `e`, it records
//!    its vote in the [`VoteLog`] (durably) and *then* sends its partial signature
//!    to the committee.
//! 4. **Combine.** Anyone holding `t` partials for one hash (and the proposal for
//!    it) verifies them in one batch, drops invalid ones, combines, verifies the
//!    result against the group key and sends the [`SignedCheckpoint`] as a
//!    certificate. Anyone can check a certificate against the group key alone.
//! 5. **Give up.** If nothing is signed by `end(e + 1)`, the epoch has failed: it
//!    has no checkpoint and pays nobody.
//!
//! Two valid partials from one share index for one epoch over different hashes
//! are an [`Equivocation`]; the next proposal carries it as evidence.
//!
//! # Bounds
//!
//! At most [`ROUNDS_MAX`] epochs are in agreement at once (older rounds are
//! dropped when a newer one opens). Per round: one observation per member, one
//! proposal per view (views are bounded by the round's deadline), at most two vote
//! hashes per member (the second proves equivocation; a third is dropped). Pending
//! evidence is bounded by [`EVIDENCE_MAX`]. Messages are bounded by
//! [`MESSAGE_BYTES_MAX`] on decode.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use plexus_actors::codec::{self, CodecError};
use plexus_actors::{NodeId, Time};
use plexus_vocab::identity::NodeKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::availability::{self, AvailabilityMeter, Observation, SignedObservation};
use crate::checkpoint::{
    CHECKPOINT_VERSION, Checkpoint, CheckpointError, CheckpointHash, EVIDENCE_MAX, Equivocation,
    GENESIS_PREVIOUS, MemberRow, SignedCheckpoint, Vote,
};
use crate::rewards::RewardPolicy;
use crate::schedule::Schedule;
use crate::threshold::{self, PublicSharing, SecretShare};
use crate::work::{self, ObservedWork, WORK_LAG};

/// Epochs in agreement at once.
pub const ROUNDS_MAX: usize = 2;

/// Epochs for which carried evidence is remembered (so it is not carried twice).
const CARRIED_EPOCHS: u64 = 16;

/// Largest epoch message accepted (a proposal carries up to `n` observations).
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Where a member records its vote before releasing its partial.
///
/// Contract: when [`record`](VoteLog::record) returns `Ok`, the vote is durable; a
/// member restarted on the same log sees every recorded vote through
/// [`voted`](VoteLog::voted). Recording a second, different hash for an epoch is
/// the caller's bug; implementations may refuse it.
pub trait VoteLog {
    /// The hash this member voted for in `epoch`, if any.
    fn voted(&self, epoch: u64) -> Option<CheckpointHash>;
    /// Durably records a vote.
    fn record(&mut self, epoch: u64, hash: CheckpointHash) -> Result<(), VoteLogError>;
}

/// The vote log failed; the vote was not recorded and no partial is released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VoteLogError {
    /// The store could not persist.
    #[error("vote log: {0}")]
    Store(String),
}

/// An in-memory vote log (tests and the simulator, where a "crash" keeps it).
#[derive(Clone, Debug, Default)]
pub struct MemoryVoteLog {
    votes: BTreeMap<u64, CheckpointHash>,
}

impl VoteLog for MemoryVoteLog {
    fn voted(&self, epoch: u64) -> Option<CheckpointHash> {
        self.votes.get(&epoch).copied()
    }
    fn record(&mut self, epoch: u64, hash: CheckpointHash) -> Result<(), VoteLogError> {
        match self.votes.get(&epoch) {
            Some(h) if *h != hash => Err(VoteLogError::Store(format!(
                "epoch {epoch} already has a vote"
            ))),
            _ => {
                self.votes.insert(epoch, hash);
                Ok(())
            }
        }
    }
}

/// A proposal for one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The view it is proposed in.
    pub view: u32,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed observations its availability aggregates, in observer order.
    pub observations: Vec<SignedObservation>,
    /// The signed checkpoint `checkpoint.previous` names (none for the first).
    pub previous: Option<SignedCheckpoint>,
}

/// What committee members and observers send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EpochMessage {
    /// A member's signed uptime vector.
    Observation(SignedObservation),
    /// A proposer's checkpoint.
    Proposal(Box<Proposal>),
    /// A member's partial signature over a checkpoint hash.
    Vote {
        /// The epoch.
        epoch: u64,
        /// The sender's share index.
        index: u32,
        /// The hash and partial.
        vote: Vote,
    },
    /// A combined, verified checkpoint.
    Certificate(Box<SignedCheckpoint>),
    /// Proof that a member equivocated, for the next proposers.
    Evidence(Box<Equivocation>),
}

impl EpochMessage {
    /// Encodes for the wire.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }
    /// Decodes from the wire, bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_with_limit(bytes, MESSAGE_BYTES_MAX)
    }
}

/// Who a message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Every other committee member.
    Committee,
    /// Every node (certificates).
    Everyone,
}

/// Why an input was refused. The sender is at fault for all of these; the core's
/// state is unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The sender is not on the committee.
    #[error("{0} is not on the committee")]
    NotOnCommittee(NodeId),
    /// A vote under another member's share index.
    #[error("{from} sent a vote under share index {index}, which is not its own")]
    NotYourShare {
        /// Sender.
        from: NodeId,
        /// Claimed index.
        index: u32,
    },
    /// A message signed by someone other than the sender says it is theirs.
    #[error("{from} relayed an observation signed by {observer} as its own")]
    NotYourObservation {
        /// Sender.
        from: NodeId,
        /// Signer.
        observer: NodeId,
    },
    /// For an epoch not in agreement here (too old, or not ended yet).
    #[error("epoch {0} is not in agreement")]
    OutOfWindow(u64),
    /// A proposal from someone who is not this view's proposer.
    #[error("{from} is not the proposer of epoch {epoch} view {view}")]
    NotProposer {
        /// Sender.
        from: NodeId,
        /// Epoch.
        epoch: u64,
        /// View.
        view: u32,
    },
    /// The proposal does not follow from its inputs.
    #[error("proposal for epoch {epoch} refused: {why}")]
    BadProposal {
        /// Epoch.
        epoch: u64,
        /// Why.
        why: String,
    },
    /// A signature or observation that does not verify.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// What the core asks its driver to do, in order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Send `message` to `to`.
    Send {
        /// Recipients.
        to: Recipients,
        /// The message.
        message: EpochMessage,
    },
    /// Epoch signed: the verified certificate.
    Signed(Box<SignedCheckpoint>),
    /// The epoch failed: no checkpoint, no rewards.
    Failed {
        /// The epoch.
        epoch: u64,
    },
    /// A member was caught signing two checkpoints for one epoch.
    Equivocation(Box<Equivocation>),
    /// A member sent a partial that does not verify (dropped).
    BadPartial {
        /// Its sender.
        from: NodeId,
        /// The epoch.
        epoch: u64,
    },
    /// The vote log failed; this member did not vote.
    VoteLogFailed(VoteLogError),
}

/// Fixed parameters of one committee.
#[derive(Clone)]
pub struct AgreementConfig {
    /// The network id.
    pub network: [u8; 32],
    /// The committee, sorted; position `i` holds share index `i`.
    pub committee: Vec<NodeId>,
    /// The committee's public sharing (from the DKG).
    pub sharing: PublicSharing,
    /// The epoch schedule.
    pub schedule: Schedule,
    /// How long a view lasts.
    pub view_timeout_ms: u64,
    /// How long a proposer waits for every observation before proposing with a quorum.
    pub collect_ms: u64,
    /// The reward rule.
    pub policy: RewardPolicy,
}

impl std::fmt::Debug for AgreementConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgreementConfig")
            .field("committee", &self.committee.len())
            .field("threshold", &self.sharing.required())
            .finish_non_exhaustive()
    }
}

/// The allowlist in force, as the checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowlistView {
    /// Its version.
    pub version: u64,
    /// SHA-256 of its signed encoding.
    pub hash: [u8; 32],
    /// Admitted nodes, sorted.
    pub nodes: Vec<NodeId>,
}

#[derive(Debug, Default)]
struct Round {
    observations: BTreeMap<NodeId, SignedObservation>,
    /// Proposals seen, by checkpoint hash.
    proposals: BTreeMap<CheckpointHash, Proposal>,
    /// Views this node already proposed in.
    proposed: BTreeSet<u32>,
    /// Votes by share index: at most two hashes each.
    votes: BTreeMap<u32, BTreeMap<CheckpointHash, Vote>>,
    /// Indices whose partial failed verification, per hash.
    bad: BTreeSet<(u32, CheckpointHash)>,
    signed: Option<SignedCheckpoint>,
    failed: bool,
    observed: bool,
}

/// One node's side of checkpoint agreement (member or observer).
pub struct Agreement<L: VoteLog> {
    cfg: AgreementConfig,
    me: NodeId,
    key: NodeKey,
    share: Option<SecretShare>,
    log: L,
    rng: ChaCha20Rng,
    meter: AvailabilityMeter,
    allowlist: AllowlistView,
    latest: Option<SignedCheckpoint>,
    rounds: BTreeMap<u64, Round>,
    evidence: BTreeMap<(u64, NodeId), Equivocation>,
    /// Evidence already carried by a signed checkpoint (newest epochs only).
    carried: BTreeSet<(u64, NodeId)>,
    /// The driver's tallies of verified work, by epoch of the work (newest
    /// [`work::REPORTS_KEPT`]).
    work: BTreeMap<u64, ObservedWork>,
    now: Time,
    outbox: VecDeque<Output>,
}

impl<L: VoteLog> std::fmt::Debug for Agreement<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agreement")
            .field("me", &self.me)
            .field("rounds", &self.rounds.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn observations_root(obs: &[SignedObservation]) -> Result<[u8; 32], CodecError> {
    let mut h = Sha256::new();
    for o in obs {
        h.update(codec::encode(o)?);
    }
    Ok(h.finalize().into())
}

impl<L: VoteLog> Agreement<L> {
    /// A node's agreement core. `share` is `None` on a node outside the committee
    /// (it follows certificates but never votes). `seed` seeds the generator used
    /// for batch-verification weights (from the OS in production).
    pub fn new(
        cfg: AgreementConfig,
        key: NodeKey,
        share: Option<SecretShare>,
        log: L,
        allowlist: AllowlistView,
        latest: Option<SignedCheckpoint>,
        seed: [u8; 32],
    ) -> Self {
        let meter = AvailabilityMeter::new(cfg.schedule);
        Self {
            me: key.node_id(),
            cfg,
            key,
            share,
            log,
            rng: ChaCha20Rng::from_seed(seed),
            meter,
            allowlist,
            latest,
            rounds: BTreeMap::new(),
            evidence: BTreeMap::new(),
            carried: BTreeSet::new(),
            work: BTreeMap::new(),
            now: Time::ZERO,
            outbox: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }
    /// The threshold `t`.
    pub fn threshold(&self) -> usize {
        self.cfg.sharing.required() as usize
    }
    /// Whether this node votes.
    pub fn is_member(&self) -> bool {
        self.share.is_some() && self.index_of(&self.me).is_some()
    }
    /// The newest signed checkpoint known.
    pub fn latest(&self) -> Option<&SignedCheckpoint> {
        self.latest.as_ref()
    }
    /// The vote log.
    pub fn vote_log(&self) -> &L {
        &self.log
    }
    /// The config.
    pub fn config(&self) -> &AgreementConfig {
        &self.cfg
    }
    /// Evidence waiting for the next checkpoint.
    pub fn pending_evidence(&self) -> impl Iterator<Item = &Equivocation> {
        self.evidence.values()
    }
    /// The quorum of observations a proposal needs (`q = n − f`).
    pub fn quorum(&self) -> usize {
        let n = self.cfg.committee.len();
        n - (n.saturating_sub(1)) / 3
    }
    fn index_of(&self, node: &NodeId) -> Option<u32> {
        self.cfg
            .committee
            .binary_search(node)
            .ok()
            .map(|i| i as u32)
    }
    /// Proposer of `epoch` in `view`.
    pub fn proposer(&self, epoch: u64, view: u32) -> NodeId {
        let n = self.cfg.committee.len() as u64;
        let i = epoch.wrapping_add(u64::from(view)) % n.max(1);
        self.cfg.committee[i as usize]
    }
    /// The view in force for `epoch` at `now` (`None` before the epoch ends).
    fn view_at(&self, epoch: u64, now: Time) -> Option<u32> {
        let end = self.cfg.schedule.end(epoch)?;
        let since_ms = now.as_micros().checked_sub(end.as_micros())? / 1000;
        Some(u32::try_from(since_ms / self.cfg.view_timeout_ms.max(1)).unwrap_or(u32::MAX))
    }
    fn view_start(&self, epoch: u64, view: u32) -> Option<Time> {
        let end = self.cfg.schedule.end(epoch)?;
        let off = u64::from(view)
            .checked_mul(self.cfg.view_timeout_ms)?
            .checked_mul(1000)?;
        end.as_micros().checked_add(off).map(Time::from_micros)
    }
    /// When the round for `epoch` gives up.
    fn deadline(&self, epoch: u64) -> Option<Time> {
        self.cfg.schedule.end(epoch.checked_add(1)?)
    }

    // ---- inputs ----

    /// This node's tally of an epoch's verified work (from the proof-of-AI-work
    /// audit), replacing any earlier tally of that epoch. The observation of epoch
    /// `work.epoch + WORK_LAG` carries the latest one given before that epoch
    /// ends; tallies of older epochs than the newest [`work::REPORTS_KEPT`] are
    /// dropped.
    pub fn handle_work(&mut self, work: ObservedWork) {
        self.work.insert(work.epoch, work);
        while self.work.len() > work::REPORTS_KEPT {
            self.work.pop_first();
        }
    }

    /// The allowlist changed (admitted nodes, version, hash).
    pub fn handle_allowlist(&mut self, allowlist: AllowlistView) {
        self.allowlist = allowlist;
    }

    /// The membership view changed, or a periodic sample: `alive` is every node
    /// this node sees alive from `now` on.
    pub fn handle_view(&mut self, now: Time, alive: impl IntoIterator<Item = NodeId>) {
        self.meter.sample(now, alive);
        self.tick(now);
    }

    /// Time passed: close epochs, rotate views, propose, give up.
    pub fn handle_timeout(&mut self, now: Time) {
        self.tick(now);
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Time> {
        let current = self.cfg.schedule.epoch_at(self.now);
        let mut next = match current {
            Some(e) => self.cfg.schedule.end(e),
            None => Some(self.cfg.schedule.genesis()),
        };
        for (&epoch, round) in &self.rounds {
            if round.signed.is_some() || round.failed {
                continue;
            }
            let view = self.view_at(epoch, self.now).unwrap_or(0);
            let candidates = [
                self.view_start(epoch, view.saturating_add(1)),
                self.view_start(epoch, view)
                    .and_then(|t| t.checked_add_ms(self.cfg.collect_ms)),
                self.deadline(epoch),
            ];
            for t in candidates.into_iter().flatten() {
                if t > self.now {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        next
    }

    /// A message from `from` (authenticated by the transport).
    pub fn handle_message(
        &mut self,
        now: Time,
        from: NodeId,
        message: EpochMessage,
    ) -> Result<(), Refusal> {
        self.tick(now);
        match message {
            EpochMessage::Observation(obs) => self.on_observation(from, obs),
            EpochMessage::Proposal(p) => self.on_proposal(from, *p),
            EpochMessage::Vote { epoch, index, vote } => self.on_vote(from, epoch, index, vote),
            EpochMessage::Certificate(c) => self.on_certificate(*c),
            EpochMessage::Evidence(e) => self.on_evidence(from, *e),
        }
    }

    // ---- outputs ----

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    // ---- internals ----

    fn tick(&mut self, now: Time) {
        if now < self.now {
            return;
        }
        self.now = now;
        let Some(current) = self.cfg.schedule.epoch_at(now) else {
            return;
        };
        // Every epoch that ended (the newest ROUNDS_MAX) is in agreement.
        let first = current.saturating_sub(ROUNDS_MAX as u64);
        for epoch in first..current {
            self.open(epoch);
        }
        let epochs: Vec<u64> = self.rounds.keys().copied().collect();
        for epoch in epochs {
            self.advance(epoch);
        }
    }

    /// Opens the round for an ended epoch (once) and sends this member's observation.
    fn open(&mut self, epoch: u64) {
        if self.rounds.contains_key(&epoch) {
            return;
        }
        if self
            .latest
            .as_ref()
            .is_some_and(|l| l.checkpoint.epoch >= epoch)
        {
            return;
        }
        self.rounds.insert(epoch, Round::default());
        while self.rounds.len() > ROUNDS_MAX {
            self.rounds.pop_first();
        }
        if !self.rounds.contains_key(&epoch) {
            return;
        }
        if self.is_member() {
            // Close the meter's books: credit up to now (past the epoch's end).
            self.meter.advance(self.now);
            let uptime = self.meter.take(epoch);
            let work = epoch
                .checked_sub(WORK_LAG)
                .and_then(|w| self.work.get(&w).cloned());
            let obs = Observation {
                network: self.cfg.network,
                epoch,
                observer: self.me,
                uptime,
                work,
            };
            if let Ok(signed) = obs.sign(&self.key) {
                if let Some(round) = self.rounds.get_mut(&epoch) {
                    round.observations.insert(self.me, signed.clone());
                    round.observed = true;
                }
                self.outbox.push_back(Output::Send {
                    to: Recipients::Committee,
                    message: EpochMessage::Observation(signed),
                });
            }
        }
    }

    fn advance(&mut self, epoch: u64) {
        let now = self.now;
        let Some(round) = self.rounds.get(&epoch) else {
            return;
        };
        if round.signed.is_some() || round.failed {
            return;
        }
        if self.deadline(epoch).is_some_and(|d| now >= d) {
            if let Some(r) = self.rounds.get_mut(&epoch) {
                r.failed = true;
            }
            self.outbox.push_back(Output::Failed { epoch });
            return;
        }
        let Some(view) = self.view_at(epoch, now) else {
            return;
        };
        if !self.is_member()
            || self.proposer(epoch, view) != self.me
            || round.proposed.contains(&view)
        {
            return;
        }
        let collected = round.observations.len();
        let all = collected >= self.cfg.committee.len();
        let collect_over = self
            .view_start(epoch, view)
            .and_then(|t| t.checked_add_ms(self.cfg.collect_ms))
            .is_some_and(|t| now >= t);
        if !(all || (collect_over && collected >= self.quorum())) {
            return;
        }
        // Re-propose the proposal with most votes, if any has votes.
        let mut best: Option<(usize, CheckpointHash)> = None;
        for hash in round.proposals.keys() {
            let votes = round
                .votes
                .values()
                .filter(|v| v.contains_key(hash))
                .count();
            if votes > 0 && best.is_none_or(|(b, _)| votes > b) {
                best = Some((votes, *hash));
            }
        }
        let proposal = match best.and_then(|(_, h)| round.proposals.get(&h)) {
            Some(p) => Some(Proposal { view, ..p.clone() }),
            None => self.build(epoch, view).ok(),
        };
        if let Some(r) = self.rounds.get_mut(&epoch) {
            r.proposed.insert(view);
        }
        if let Some(p) = proposal {
            self.outbox.push_back(Output::Send {
                to: Recipients::Committee,
                message: EpochMessage::Proposal(Box::new(p.clone())),
            });
            let me = self.me;
            let _ = self.on_proposal(me, p);
        }
    }

    /// Builds this proposer's checkpoint for `epoch` from the observations it holds.
    fn build(&self, epoch: u64, view: u32) -> Result<Proposal, CheckpointError> {
        let round = self.rounds.get(&epoch).ok_or(CheckpointError::Malformed {
            epoch,
            why: "no round".into(),
        })?;
        let observations: Vec<SignedObservation> = round.observations.values().cloned().collect();
        let observers: Vec<NodeId> = round.observations.keys().copied().collect();
        let nodes = &self.allowlist.nodes;
        let availability =
            availability::aggregate(nodes, observations.iter().map(|o| &o.observation));
        let work_units = work::aggregate(nodes, observations.iter().map(|o| &o.observation));
        let members = nodes
            .iter()
            .zip(availability)
            .zip(work_units)
            .map(|((node, ppm), units)| MemberRow {
                node: *node,
                availability_ppm: ppm,
                work_units: units,
                reward_units: self.cfg.policy.units(ppm, units),
            })
            .collect();
        let (previous_hash, previous) = match &self.latest {
            Some(l) => (l.hash()?, Some(l.clone())),
            None => (GENESIS_PREVIOUS, None),
        };
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            network: self.cfg.network,
            epoch,
            previous: previous_hash,
            allowlist_version: self.allowlist.version,
            allowlist_hash: self.allowlist.hash,
            members,
            observers,
            observations_root: observations_root(&observations)?,
            work_root: work::root(observations.iter().map(|o| &o.observation)),
            reward_policy: self.cfg.policy,
            evidence: self
                .evidence
                .values()
                .filter(|e| e.epoch <= epoch)
                .cloned()
                .collect(),
            committee: self.cfg.committee.clone(),
            group_key: threshold::encode_group_key(self.cfg.sharing.public()),
        };
        Ok(Proposal {
            view,
            checkpoint,
            observations,
            previous,
        })
    }

    fn on_observation(&mut self, from: NodeId, obs: SignedObservation) -> Result<(), Refusal> {
        if self.index_of(&from).is_none() {
            return Err(Refusal::NotOnCommittee(from));
        }
        if obs.observation.observer != from {
            return Err(Refusal::NotYourObservation {
                from,
                observer: obs.observation.observer,
            });
        }
        let epoch = obs.observation.epoch;
        if obs.observation.network != self.cfg.network {
            return Err(Refusal::Invalid("observation for another network".into()));
        }
        let round = self.rounds.get(&epoch).ok_or(Refusal::OutOfWindow(epoch))?;
        if round.observations.contains_key(&from) {
            return Ok(()); // first one wins; a member's later one is ignored
        }
        obs.verify().map_err(|e| Refusal::Invalid(e.to_string()))?;
        if let Some(r) = self.rounds.get_mut(&epoch) {
            r.observations.insert(from, obs);
        }
        self.advance(epoch);
        Ok(())
    }

    /// Checks a proposal against its signed inputs; the error says why not.
    fn check_proposal(&self, from: NodeId, p: &Proposal) -> Result<CheckpointHash, Refusal> {
        let c = &p.checkpoint;
        let epoch = c.epoch;
        let bad = |why: &str| Refusal::BadProposal {
            epoch,
            why: why.to_string(),
        };
        if self.proposer(epoch, p.view) != from {
            return Err(Refusal::NotProposer {
                from,
                epoch,
                view: p.view,
            });
        }
        c.check().map_err(|e| bad(&e.to_string()))?;
        if c.network != self.cfg.network {
            return Err(bad("another network"));
        }
        if c.committee != self.cfg.committee
            || c.group_key != threshold::encode_group_key(self.cfg.sharing.public())
        {
            return Err(bad("another committee or group key"));
        }
        if c.allowlist_version != self.allowlist.version || c.allowlist_hash != self.allowlist.hash
        {
            return Err(bad("another allowlist"));
        }
        if c.reward_policy != self.cfg.policy {
            return Err(bad("another reward policy"));
        }
        // The previous checkpoint: signed by the group, and not behind what we know.
        match &p.previous {
            None => {
                if c.previous != GENESIS_PREVIOUS || self.latest.is_some() {
                    return Err(bad("links no previous checkpoint, but one exists"));
                }
            }
            Some(prev) => {
                let key = threshold::encode_group_key(self.cfg.sharing.public());
                prev.verify(Some(&key))
                    .map_err(|e| bad(&format!("previous: {e}")))?;
                let prev_hash = prev.hash().map_err(|e| bad(&e.to_string()))?;
                if prev_hash != c.previous || prev.checkpoint.epoch >= epoch {
                    return Err(bad("previous checkpoint does not link"));
                }
                if self
                    .latest
                    .as_ref()
                    .is_some_and(|l| l.checkpoint.epoch > prev.checkpoint.epoch)
                {
                    return Err(bad("links an older checkpoint than the newest signed"));
                }
            }
        }
        // The observations.
        if p.observations.len() < self.quorum() {
            return Err(bad("fewer observations than a quorum"));
        }
        let observers: Vec<NodeId> = p
            .observations
            .iter()
            .map(|o| o.observation.observer)
            .collect();
        if observers != c.observers {
            return Err(bad("observer list does not match the observations"));
        }
        for o in &p.observations {
            if o.observation.epoch != epoch || o.observation.network != self.cfg.network {
                return Err(bad("an observation for another epoch or network"));
            }
            o.verify().map_err(|e| bad(&e.to_string()))?;
        }
        let root = observations_root(&p.observations).map_err(|e| bad(&e.to_string()))?;
        if root != c.observations_root {
            return Err(bad("observations root"));
        }
        let nodes: Vec<NodeId> = c.members.iter().map(|r| r.node).collect();
        if nodes != self.allowlist.nodes {
            return Err(bad("member set is not the allowlist"));
        }
        let availability =
            availability::aggregate(&nodes, p.observations.iter().map(|o| &o.observation));
        if c.members
            .iter()
            .zip(&availability)
            .any(|(r, a)| r.availability_ppm != *a)
        {
            return Err(bad("availability is not the aggregate of the observations"));
        }
        let units = work::aggregate(&nodes, p.observations.iter().map(|o| &o.observation));
        if c.members
            .iter()
            .zip(&units)
            .any(|(r, u)| r.work_units != *u)
        {
            return Err(bad("work is not the aggregate of the observations"));
        }
        if c.work_root != work::root(p.observations.iter().map(|o| &o.observation)) {
            return Err(bad("work root"));
        }
        for e in &c.evidence {
            self.check_evidence(e).map_err(|why| bad(&why))?;
        }
        c.hash().map_err(|e| bad(&e.to_string()))
    }

    fn check_evidence(&self, e: &Equivocation) -> Result<(), String> {
        if self.index_of(&e.signer) != Some(e.index) {
            return Err("evidence names a signer under another index".into());
        }
        if e.first.hash == e.second.hash {
            return Err("evidence votes are for one hash".into());
        }
        for v in [&e.first, &e.second] {
            let msg = threshold::signing_message(&self.cfg.network, e.epoch, &v.hash);
            let p = threshold::partial(e.index, &v.partial).map_err(|x| x.to_string())?;
            threshold::verify_partial(&self.cfg.sharing, &msg, &p).map_err(|x| x.to_string())?;
        }
        Ok(())
    }

    fn on_proposal(&mut self, from: NodeId, p: Proposal) -> Result<(), Refusal> {
        let epoch = p.checkpoint.epoch;
        if !self.rounds.contains_key(&epoch) {
            return Err(Refusal::OutOfWindow(epoch));
        }
        let hash = self.check_proposal(from, &p)?;
        // A valid previous checkpoint we did not know moves our head forward.
        if let Some(prev) = &p.previous
            && self
                .latest
                .as_ref()
                .is_none_or(|l| l.checkpoint.epoch < prev.checkpoint.epoch)
        {
            self.adopt(prev.clone());
        }
        let Some(round) = self.rounds.get_mut(&epoch) else {
            return Ok(());
        };
        if round.signed.is_some() || round.failed {
            return Ok(());
        }
        round.proposals.entry(hash).or_insert(p);
        self.vote(epoch, hash);
        self.try_combine(epoch, hash);
        Ok(())
    }

    /// Votes for `hash` in `epoch` if this member may: persists first, then releases.
    fn vote(&mut self, epoch: u64, hash: CheckpointHash) {
        let Some(share) = self.share.clone() else {
            return;
        };
        let Some(index) = self.index_of(&self.me) else {
            return;
        };
        match self.log.voted(epoch) {
            Some(h) if h != hash => return, // one signature per epoch
            Some(_) => {}                   // already recorded: re-send the same partial
            None => {
                if let Err(e) = self.log.record(epoch, hash) {
                    self.outbox.push_back(Output::VoteLogFailed(e));
                    return;
                }
            }
        }
        let msg = threshold::signing_message(&self.cfg.network, epoch, &hash);
        let (i, partial) = threshold::sign_partial(&share, &msg);
        debug_assert_eq!(i, index);
        let vote = Vote { hash, partial };
        self.outbox.push_back(Output::Send {
            to: Recipients::Committee,
            message: EpochMessage::Vote {
                epoch,
                index,
                vote: vote.clone(),
            },
        });
        self.record_vote(self.me, epoch, index, vote);
    }

    fn on_vote(&mut self, from: NodeId, epoch: u64, index: u32, vote: Vote) -> Result<(), Refusal> {
        match self.index_of(&from) {
            None => return Err(Refusal::NotOnCommittee(from)),
            Some(i) if i != index => return Err(Refusal::NotYourShare { from, index }),
            Some(_) => {}
        }
        if !self.rounds.contains_key(&epoch) {
            return Err(Refusal::OutOfWindow(epoch));
        }
        self.record_vote(from, epoch, index, vote.clone());
        self.try_combine(epoch, vote.hash);
        Ok(())
    }

    fn record_vote(&mut self, from: NodeId, epoch: u64, index: u32, vote: Vote) {
        let network = self.cfg.network;
        let Some(round) = self.rounds.get_mut(&epoch) else {
            return;
        };
        let votes = round.votes.entry(index).or_default();
        if votes.contains_key(&vote.hash) || votes.len() >= 2 {
            return;
        }
        votes.insert(vote.hash, vote);
        if votes.len() < 2 || self.evidence.contains_key(&(epoch, from)) {
            return;
        }
        // Two hashes from one index: equivocation, if both partials are genuine.
        let mut pair: Vec<Vote> = votes.values().cloned().collect();
        pair.sort_by_key(|v| v.hash);
        let genuine = pair.iter().all(|v| {
            let msg = threshold::signing_message(&network, epoch, &v.hash);
            threshold::partial(index, &v.partial)
                .and_then(|p| threshold::verify_partial(&self.cfg.sharing, &msg, &p))
                .is_ok()
        });
        if !genuine {
            return;
        }
        let second = pair.pop();
        let first = pair.pop();
        if let (Some(first), Some(second)) = (first, second) {
            let e = Equivocation {
                epoch,
                signer: from,
                index,
                first,
                second,
            };
            if self.evidence.len() < EVIDENCE_MAX {
                self.evidence.insert((epoch, from), e.clone());
            }
            self.outbox.push_back(Output::Send {
                to: Recipients::Committee,
                message: EpochMessage::Evidence(Box::new(e.clone())),
            });
            self.outbox.push_back(Output::Equivocation(Box::new(e)));
        }
    }

    fn try_combine(&mut self, epoch: u64, hash: CheckpointHash) {
        let t = self.threshold();
        let network = self.cfg.network;
        let Some(round) = self.rounds.get(&epoch) else {
            return;
        };
        if round.signed.is_some() || round.failed {
            return;
        }
        let Some(proposal) = round.proposals.get(&hash) else {
            return;
        };
        let candidates: Vec<(u32, Vote)> = round
            .votes
            .iter()
            .filter(|(i, _)| !round.bad.contains(&(**i, hash)))
            .filter_map(|(i, v)| v.get(&hash).map(|v| (*i, v.clone())))
            .collect();
        if candidates.len() < t {
            return;
        }
        let checkpoint = proposal.checkpoint.clone();
        let msg = threshold::signing_message(&network, epoch, &hash);
        let mut partials = Vec::with_capacity(candidates.len());
        let mut undecodable = Vec::new();
        for (i, v) in &candidates {
            match threshold::partial(*i, &v.partial) {
                Ok(p) => partials.push(p),
                Err(_) => undecodable.push(*i),
            }
        }
        let invalid =
            match threshold::verify_partials(&mut self.rng, &self.cfg.sharing, &msg, &partials) {
                Ok(()) => Vec::new(),
                Err(bad) => bad,
            };
        let mut bad_indices: Vec<u32> = undecodable.into_iter().chain(invalid).collect();
        bad_indices.sort_unstable();
        bad_indices.dedup();
        if !bad_indices.is_empty() {
            partials.retain(|p| !bad_indices.contains(&p.index.get()));
            for i in &bad_indices {
                let from = self.cfg.committee[*i as usize];
                self.outbox.push_back(Output::BadPartial { from, epoch });
            }
            if let Some(r) = self.rounds.get_mut(&epoch) {
                for i in &bad_indices {
                    r.bad.insert((*i, hash));
                    // An invalid partial is not a vote: forget it so it proves nothing.
                    if let Some(v) = r.votes.get_mut(i) {
                        v.remove(&hash);
                    }
                }
            }
        }
        if partials.len() < t {
            return;
        }
        partials.sort_by_key(|p| p.index.get());
        partials.truncate(t);
        let Ok(sig) = threshold::combine(&self.cfg.sharing, &msg, &partials) else {
            return;
        };
        let signed = SignedCheckpoint {
            signers: partials
                .iter()
                .map(|p| self.cfg.committee[p.index.get() as usize])
                .collect(),
            checkpoint,
            signature: threshold::encode_signature(&sig),
        };
        self.outbox.push_back(Output::Send {
            to: Recipients::Everyone,
            message: EpochMessage::Certificate(Box::new(signed.clone())),
        });
        self.finish(signed);
    }

    fn on_evidence(&mut self, from: NodeId, e: Equivocation) -> Result<(), Refusal> {
        if self.index_of(&from).is_none() {
            return Err(Refusal::NotOnCommittee(from));
        }
        let key = (e.epoch, e.signer);
        if self.evidence.contains_key(&key) || self.carried.contains(&key) {
            return Ok(());
        }
        self.check_evidence(&e).map_err(Refusal::Invalid)?;
        if self.evidence.len() < EVIDENCE_MAX {
            self.evidence.insert(key, e);
        }
        Ok(())
    }

    fn on_certificate(&mut self, signed: SignedCheckpoint) -> Result<(), Refusal> {
        let epoch = signed.checkpoint.epoch;
        let key = threshold::encode_group_key(self.cfg.sharing.public());
        signed
            .verify(Some(&key))
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        if signed.checkpoint.network != self.cfg.network {
            return Err(Refusal::Invalid("certificate for another network".into()));
        }
        if self.rounds.get(&epoch).is_some_and(|r| r.signed.is_some()) {
            return Ok(());
        }
        if self
            .latest
            .as_ref()
            .is_some_and(|l| l.checkpoint.epoch >= epoch)
        {
            return Ok(());
        }
        self.finish(signed);
        Ok(())
    }

    fn finish(&mut self, signed: SignedCheckpoint) {
        let epoch = signed.checkpoint.epoch;
        if let Some(r) = self.rounds.get_mut(&epoch) {
            r.signed = Some(signed.clone());
        }
        self.adopt(signed.clone());
        self.outbox.push_back(Output::Signed(Box::new(signed)));
    }

    /// Makes `signed` the head if it is newer; drops evidence it carries.
    fn adopt(&mut self, signed: SignedCheckpoint) {
        for e in &signed.checkpoint.evidence {
            self.evidence.remove(&(e.epoch, e.signer));
            self.carried.insert((e.epoch, e.signer));
        }
        // Remember carried evidence for the newest epochs only (bounded).
        let horizon = signed.checkpoint.epoch.saturating_sub(CARRIED_EPOCHS);
        self.carried.retain(|(epoch, _)| *epoch >= horizon);
        while self.carried.len() > EVIDENCE_MAX {
            self.carried.pop_first();
        }
        if self
            .latest
            .as_ref()
            .is_none_or(|l| l.checkpoint.epoch < signed.checkpoint.epoch)
        {
            self.latest = Some(signed);
        }
    }

    /// Cross-checks of the state; called after every step in tests.
    pub fn check_invariants(&self) {
        for (epoch, round) in &self.rounds {
            assert!(round.votes.values().all(|v| v.len() <= 2));
            assert!(round.observations.len() <= self.cfg.committee.len());
            if let Some(s) = &round.signed {
                // (Its signature was verified before it was stored; re-verifying
                // here would cost a pairing per step.)
                assert_eq!(s.checkpoint.epoch, *epoch);
                assert!(!round.failed, "epoch {epoch} both signed and failed");
            }
            if let Some(h) = self.log.voted(*epoch) {
                // Our own vote, if present, is the logged one.
                if let Some(i) = self.index_of(&self.me)
                    && let Some(mine) = round.votes.get(&i)
                    && self.share.is_some()
                {
                    assert!(mine.keys().all(|k| *k == h), "voted twice in epoch {epoch}");
                }
            }
        }
        assert!(self.rounds.len() <= ROUNDS_MAX);
        assert!(self.evidence.len() <= EVIDENCE_MAX);
        assert!(self.carried.len() <= EVIDENCE_MAX);
        assert!(self.evidence.keys().all(|k| !self.carried.contains(k)));
    }
}

/// Adds milliseconds to a time, checked.
trait AddMs: Sized {
    fn checked_add_ms(self, ms: u64) -> Option<Self>;
}

impl AddMs for Time {
    fn checked_add_ms(self, ms: u64) -> Option<Self> {
        ms.checked_mul(1000)
            .and_then(|us| self.as_micros().checked_add(us))
            .map(Time::from_micros)
    }
}

#[cfg(test)]
mod tests;
