//! The epoch service of a daemon: the production driver of the `plexus-epochs`
//! cores.
//!
//! One actor per node, at the well-known local id [`EPOCH_LOCAL_ID`], owns the
//! node's DKG round and then its checkpoint agreement. It only carries things in
//! and out: epoch protocol bytes from other nodes' services arrive as
//! [`EpochMsg::Wire`] (the mesh authenticates the sender; DKG dealings travel only
//! on the direct, noise-encrypted link to their one recipient); a ticker hands it
//! wall-clock time (epochs are numbered from a wall-clock genesis); the membership
//! view feeds the availability meter; what the cores emit goes out to the other
//! committee members' services, to the epoch store, and to the ledger.
//!
//! Anchoring runs in one task the service owns ([`Anchorer`]): signed checkpoints
//! go to it, oldest first, over a bounded channel; it anchors each with bounded
//! retries (a ledger that stays down keeps them, and stops taking more past
//! [`ANCHOR_QUEUE`]) and then follows the anchor until it is final, and reports
//! back as [`EpochMsg::Anchored`]. Epochs the channel does not take yet wait in the
//! service, by number (the checkpoints are in the store), and go on the next tick;
//! past [`EPOCHS_SHOWN`] of them the oldest wait for a restart, which hands the
//! saved checkpoints to the anchorer again (anchoring is idempotent).
//!
//! Bounds: the mailbox ([`MAILBOX`]); the in-memory epoch table
//! ([`EPOCHS_SHOWN`], older epochs are read from the store); the anchor queue
//! ([`ANCHOR_QUEUE`]).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::codec;
use plexus_actors::codec::Bytes;
use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, Context, Message, ProtocolBytes, SpawnError,
    SpawnOptions, Wire,
};
use plexus_actors::{ActorId, NodeId, Time};
use plexus_epochs::agreement::{
    Agreement, AgreementConfig, AllowlistView, EpochMessage, Output, Recipients,
};
use plexus_epochs::checkpoint::SignedCheckpoint;
use plexus_epochs::dkg::{DkgMessage, DkgOutcome, DkgOutput, DkgRecipient, DkgRound, DkgTimings};
use plexus_epochs::follower::{FollowError, Follower};
use plexus_epochs::rewards::RewardPolicy;
use plexus_epochs::schedule::Schedule;
use plexus_epochs::threshold;
use plexus_ledger_bridge::{Anchor, AnchorStatus};
use plexus_mesh::driver::Mesh;
use plexus_mesh::membership::MemberState;
use plexus_supervisor::driver::{Child, StartFn, Started, SupervisorSpec};
use plexus_supervisor::{Intensity, Restart, Strategy};
use plexus_vocab::identity::NodeKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::store::{EpochStore, RocksVoteLog};

/// The epoch service's well-known local actor id.
pub const EPOCH_LOCAL_ID: u64 = 3;
/// The mailbox capacity.
pub const MAILBOX: usize = 4_096;
/// Restarts of a failed service tolerated per minute.
pub const RESTARTS_PER_MINUTE: u32 = 5;
/// How often time is handed to the cores.
pub const TICK: Duration = Duration::from_millis(100);
/// Epochs kept in the in-memory table.
pub const EPOCHS_SHOWN: usize = 256;
/// Signed checkpoints waiting for the anchorer.
pub const ANCHOR_QUEUE: usize = 64;
/// Attempts per anchor before it waits for the next signed epoch.
const ANCHOR_ATTEMPTS: u32 = 5;
/// The wire type name of epoch messages.
pub const MESSAGE_TYPE: &str = "plexus.epochs";
/// Largest epoch wire message.
const WIRE_BYTES_MAX: usize = plexus_epochs::agreement::MESSAGE_BYTES_MAX;

/// The allowlist tag that designates a committee member: `role=validator`.
pub const VALIDATOR_TAG: (&str, &str) = ("role", "validator");

/// What travels between epoch services.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EpochWire {
    /// DKG traffic.
    Dkg(DkgMessage),
    /// Agreement traffic.
    Epoch(EpochMessage),
}

/// An epoch's state as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochState {
    /// Ended; the committee is agreeing on its checkpoint.
    Collecting,
    /// A threshold signature exists.
    Signed,
    /// Anchored on the ledger, not yet final.
    Anchored,
    /// Anchored with enough confirmations.
    Final,
    /// No checkpoint: pays nobody.
    Failed,
}

/// One row of `plexus epochs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRow {
    /// The epoch.
    pub epoch: u64,
    /// Its state.
    pub state: EpochState,
    /// Checkpoint hash (hex), once signed.
    pub hash: Option<String>,
    /// Partials combined.
    pub signers: usize,
    /// Per node: availability ppm and reward units.
    pub members: Vec<(NodeId, u32, u64)>,
    /// Ledger receipt (tx hash or ledger entry), once anchored.
    pub anchor: Option<String>,
}

/// Configuration of the epoch service (from the node's `[epochs]` section).
#[derive(Clone, Debug)]
pub struct EpochSettings {
    /// Genesis, Unix milliseconds.
    pub genesis_unix_ms: u64,
    /// Epoch length.
    pub length_ms: u64,
    /// View timeout.
    pub view_timeout_ms: u64,
    /// How long a proposer waits for every observation.
    pub collect_ms: u64,
    /// DKG phase timings.
    pub dkg: DkgTimings,
    /// The reward rule.
    pub policy: RewardPolicy,
}

impl EpochSettings {
    /// Development defaults for a genesis.
    pub fn dev(genesis_unix_ms: u64, length_ms: u64) -> Self {
        Self {
            genesis_unix_ms,
            length_ms,
            view_timeout_ms: (length_ms / 6).max(1_000),
            collect_ms: (length_ms / 30).max(300),
            dkg: DkgTimings::default(),
            policy: RewardPolicy::default(),
        }
    }
}

/// Where checkpoints are anchored; the ledger is opened once the DKG has given the
/// committee its group key (both ledgers verify every anchor against it).
#[derive(Clone, Debug)]
pub enum LedgerChoice {
    /// The embedded hash-linked ledger in this directory.
    Embedded(std::path::PathBuf),
    /// An EVM chain: JSON-RPC URL, the paying key, confirmations for finality.
    Evm {
        /// JSON-RPC URL.
        url: String,
        /// The secret key that pays for anchors.
        key: [u8; 32],
        /// Confirmations before an anchor is final.
        confirmations: u64,
    },
}

/// Messages to the service.
pub enum EpochMsg {
    /// Epoch protocol bytes from another node's service.
    Wire {
        /// The sender, as the mesh authenticated it.
        from: NodeId,
        /// The encoded [`EpochWire`].
        bytes: Bytes,
    },
    /// Time passes.
    Tick,
    /// The anchorer's report.
    Anchored {
        /// The epoch.
        epoch: u64,
        /// Where it stands.
        state: EpochState,
        /// Receipt text.
        receipt: Option<String>,
    },
    /// The anchorer opened the ledger (its description: `embedded` or `evm 0x…`).
    LedgerOpen(String),
    /// The epoch table.
    List(oneshot::Sender<EpochStatus>),
    /// One signed checkpoint (from memory or the store).
    Get(u64, oneshot::Sender<Option<SignedCheckpoint>>),
    /// This node's tally of an ended epoch's verified work, from the work
    /// service; this node's observation two epochs later carries it
    /// (`plexus_epochs::work`). Dropped before the agreement runs.
    Work(plexus_epochs::work::ObservedWork),
}

/// What `/v1/epochs` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochStatus {
    /// This node.
    pub node: NodeId,
    /// Whether it is on the committee.
    pub member: bool,
    /// DKG state: `waiting`, `running`, `done`, `failed: …`, or, outside the
    /// committee, `not a member: following`.
    pub dkg: String,
    /// Committee size and threshold, once the DKG is done.
    pub committee: usize,
    /// The threshold.
    pub threshold: usize,
    /// Group key (hex), once the DKG is done.
    pub group_key: Option<String>,
    /// The epoch now.
    pub current: Option<u64>,
    /// The ledger, once open: `embedded` or `evm 0x<contract>`.
    pub ledger: Option<String>,
    /// Epochs, newest last.
    pub epochs: Vec<EpochRow>,
    /// Counters.
    pub equivocations: u64,
    /// Partials that failed verification.
    pub bad_partials: u64,
    /// Messages refused.
    pub refused: u64,
}

impl ProtocolBytes for EpochMsg {
    const TYPE_NAME: &'static str = MESSAGE_TYPE;
    const BYTES_MAX: usize = WIRE_BYTES_MAX;

    fn protocol_bytes(&self) -> Option<Bytes> {
        match self {
            EpochMsg::Wire { bytes, .. } => Some(bytes.clone()),
            _ => None,
        }
    }

    fn from_peer(from: NodeId, bytes: Bytes) -> Self {
        EpochMsg::Wire { from, bytes }
    }
}

impl Message for EpochMsg {
    type Reply = ();
    const WIRE: Option<Wire<Self>> = Some(Wire::protocol_bytes());
}

enum Phase {
    /// Not on the committee, or before the DKG's first round.
    Waiting,
    Dkg(Box<DkgRound>),
    Running(Box<Agreement<RocksVoteLog>>),
    Failed(String),
}

/// The service.
pub struct EpochService {
    mesh: Mesh,
    key: NodeKey,
    settings: EpochSettings,
    store: EpochStore,
    ledger: LedgerChoice,
}

/// Its state.
pub struct EpochServiceState {
    phase: Phase,
    committee: Vec<NodeId>,
    dkg_round: u64,
    table: BTreeMap<u64, EpochRow>,
    anchor_tx: Option<mpsc::Sender<SignedCheckpoint>>,
    /// Signed epochs not yet handed to the anchorer (its queue was full, or the
    /// ledger is not open yet); at most [`EPOCHS_SHOWN`], the oldest beyond that
    /// wait for a restart (they are in the store).
    unanchored: BTreeSet<u64>,
    anchorer: Option<tokio::task::JoinHandle<()>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    equivocations: u64,
    bad_partials: u64,
    refused: u64,
    /// DKG messages that arrived before this node's round started (bounded).
    early: Vec<(NodeId, DkgMessage)>,
    /// Outside the committee: which certificates to believe.
    follower: Option<Follower>,
    ledger: Option<String>,
}

impl Drop for EpochServiceState {
    fn drop(&mut self) {
        if let Some(a) = &self.anchorer {
            a.abort();
        }
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }
}

/// Wall-clock now as a core `Time` (Unix microseconds): genesis is wall-clock.
fn wall_now() -> Time {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    Time::from_micros(us)
}

fn seed() -> Result<[u8; 32], ActorError> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| ActorError::from(e.to_string()))?;
    Ok(s)
}

/// The committee the allowlist designates: nodes tagged `role=validator`, sorted.
pub fn committee_of(mesh: &Mesh) -> Vec<NodeId> {
    let list = mesh.allowlist();
    list.allowlist
        .nodes
        .iter()
        .filter(|(_, e)| e.tags.get(VALIDATOR_TAG.0).map(String::as_str) == Some(VALIDATOR_TAG.1))
        .map(|(id, _)| *id)
        .collect()
}

fn allowlist_view(mesh: &Mesh) -> AllowlistView {
    let signed = mesh.allowlist();
    let hash: [u8; 32] = match signed.encode() {
        Ok(bytes) => Sha256::digest(bytes).into(),
        Err(_) => [0; 32],
    };
    AllowlistView {
        version: signed.allowlist.version,
        hash,
        nodes: signed.allowlist.nodes.keys().copied().collect(),
    }
}

/// The network id: SHA-256 of the network's name.
pub fn network_id(mesh: &Mesh) -> [u8; 32] {
    Sha256::digest(mesh.allowlist().allowlist.network.as_bytes()).into()
}

impl EpochService {
    /// Starts the service under a supervisor of its own, which `node` stops at
    /// shutdown: a failed service restarts (at most [`RESTARTS_PER_MINUTE`] times a
    /// minute, then the supervisor gives up and epochs stop on this node) at the
    /// same well-known id, and resumes from its store (the DKG share, the vote log,
    /// the signed checkpoints).
    pub async fn start(
        node: &crate::Node,
        mesh: Mesh,
        key: NodeKey,
        settings: EpochSettings,
        store: EpochStore,
        ledger: LedgerChoice,
    ) -> Result<ActorId, String> {
        let id = ActorId::new(node.system().node_id(), EPOCH_LOCAL_ID);
        let seed = key.seed();
        let make = move || EpochService {
            mesh: mesh.clone(),
            key: NodeKey::from_seed(seed),
            settings: settings.clone(),
            store: store.clone(),
            ledger: ledger.clone(),
        };
        let start: StartFn = Arc::new(move |system: ActorSystem, opts: SpawnOptions| {
            let service = make();
            Box::pin(async move {
                let opts = SpawnOptions {
                    kind: Some("plexus.epochs".into()),
                    capacity: Some(MAILBOX),
                    ..opts
                };
                let r = system.spawn_with(service, (), opts).await?;
                let cell = r.ractor_cell().ok_or_else(|| {
                    SpawnError::StartFailed("the epoch service is not local".into())
                })?;
                Ok(Started { cell, id: r.id() })
            })
        });
        let spec = SupervisorSpec::new(
            Strategy::OneForOne,
            Intensity {
                max_restarts: RESTARTS_PER_MINUTE,
                period: Duration::from_secs(60),
            },
        )
        .child(Child::new("epochs", Restart::Permanent, start).with_id(id));
        node.supervise(spec).await.map_err(|e| e.to_string())?;
        Ok(id)
    }

    fn schedule(&self) -> Option<Schedule> {
        Schedule::new(
            Time::from_millis(self.settings.genesis_unix_ms),
            self.settings.length_ms,
        )
        .ok()
    }

    /// When DKG round `r` starts.
    fn dkg_start(&self, round: u64) -> Time {
        let ms = self
            .settings
            .genesis_unix_ms
            .saturating_add(round.saturating_mul(self.settings.dkg.round_ms));
        Time::from_millis(ms)
    }

    fn agreement(&self, outcome: &DkgOutcome) -> Result<Agreement<RocksVoteLog>, String> {
        let schedule = self.schedule().ok_or("bad epoch schedule")?;
        let cfg = AgreementConfig {
            network: network_id(&self.mesh),
            committee: outcome.committee.clone(),
            sharing: outcome.sharing.clone(),
            schedule,
            view_timeout_ms: self.settings.view_timeout_ms,
            collect_ms: self.settings.collect_ms,
            policy: self.settings.policy,
        };
        outcome.sharing.precompute_partial_publics();
        let latest = self.store.checkpoints(1).map_err(|e| e.to_string())?.pop();
        Ok(Agreement::new(
            cfg,
            NodeKey::from_seed(self.key.seed()),
            Some(outcome.share.clone()),
            self.store.vote_log(),
            allowlist_view(&self.mesh),
            latest,
            seed().map_err(|e| e.to_string())?,
        ))
    }

    /// Enters the agreement phase with a DKG outcome and starts the anchorer.
    fn run_agreement(
        &self,
        me: &ActorRef<EpochMsg>,
        st: &mut EpochServiceState,
        outcome: &DkgOutcome,
    ) {
        match self.agreement(outcome) {
            Ok(a) => st.phase = Phase::Running(Box::new(a)),
            Err(e) => {
                st.phase = Phase::Failed(e);
                return;
            }
        }
        if st.anchorer.is_none() {
            let (tx, rx) = mpsc::channel(ANCHOR_QUEUE);
            st.anchor_tx = Some(tx);
            st.anchorer = Some(tokio::spawn(
                Anchorer {
                    choice: self.ledger.clone(),
                    network: network_id(&self.mesh),
                    group_key: threshold::encode_group_key(outcome.sharing.public()),
                    service: me.clone(),
                }
                .run(rx),
            ));
        }
    }

    fn send(&self, system: &ActorSystem, st: &mut EpochServiceState, to: NodeId, wire: &EpochWire) {
        let Ok(bytes) = codec::encode(wire) else {
            return;
        };
        let peer = system.resolve::<EpochMsg>(ActorId::new(to, EPOCH_LOCAL_ID));
        if peer
            .try_tell(EpochMsg::Wire {
                from: system.node_id(),
                bytes: bytes.into(),
            })
            .is_err()
        {
            st.refused += 1;
        }
    }

    fn broadcast(
        &self,
        system: &ActorSystem,
        st: &mut EpochServiceState,
        to: &[NodeId],
        wire: &EpochWire,
    ) {
        let me = system.node_id();
        for node in to.iter().filter(|n| **n != me) {
            self.send(system, st, *node, wire);
        }
    }

    /// Moves the phase on with time: start the DKG round due, or the next one.
    fn advance_phase(&self, st: &mut EpochServiceState, now: Time) -> Result<(), ActorError> {
        let me = self.key.node_id();
        if !st.committee.contains(&me) {
            return Ok(());
        }
        if let Phase::Waiting = st.phase
            && now >= self.dkg_start(st.dkg_round)
        {
            // A node that starts late joins the round in progress or the next.
            while now >= self.dkg_start(st.dkg_round.saturating_add(1)) {
                st.dkg_round += 1;
            }
            match DkgRound::start(
                &network_id(&self.mesh),
                st.dkg_round,
                NodeKey::from_seed(self.key.seed()),
                &st.committee,
                self.settings.dkg,
                now,
                seed()?,
            ) {
                Ok(round) => {
                    tracing::info!(
                        round = st.dkg_round,
                        committee = st.committee.len(),
                        "dkg round started"
                    );
                    st.phase = Phase::Dkg(Box::new(round));
                    let current = st.dkg_round;
                    let early = std::mem::take(&mut st.early);
                    if let Phase::Dkg(r) = &mut st.phase {
                        for (from, m) in early {
                            match m.round().cmp(&current) {
                                std::cmp::Ordering::Equal => {
                                    let _ = r.handle_message(now, from, m);
                                }
                                // A later round's: kept until that round starts here.
                                std::cmp::Ordering::Greater => st.early.push((from, m)),
                                std::cmp::Ordering::Less => {}
                            }
                        }
                    }
                }
                Err(e) => st.phase = Phase::Failed(e.to_string()),
            }
        }
        Ok(())
    }

    fn on_wire(&self, st: &mut EpochServiceState, now: Time, from: NodeId, bytes: &[u8]) {
        let wire: EpochWire = match codec::decode_with_limit(bytes, WIRE_BYTES_MAX) {
            Ok(w) => w,
            Err(e) => {
                st.refused += 1;
                tracing::debug!(%from, error = %e, "an epoch message does not decode");
                return;
            }
        };
        if let (Some(f), EpochWire::Epoch(EpochMessage::Certificate(c))) = (&mut st.follower, &wire)
        {
            let Some(current) = self.schedule().and_then(|s| s.epoch_at(now)) else {
                st.refused += 1;
                return;
            };
            match f.handle(from, (**c).clone(), current) {
                Ok(Some(signed)) => {
                    tracing::info!(epoch = signed.checkpoint.epoch, %from, "following a signed checkpoint");
                    self.on_signed(st, signed, false);
                }
                Ok(None) | Err(FollowError::Known(_)) => {}
                Err(e) => {
                    st.refused += 1;
                    tracing::debug!(%from, error = %e, "a certificate was not followed");
                }
            }
            return;
        }
        let early_max = 8 * st.committee.len().max(1);
        let result = match (&mut st.phase, wire) {
            // A later round's message (this node's clock is a tick behind): kept
            // until that round starts here.
            (Phase::Dkg(r), EpochWire::Dkg(m)) if m.round() > r.round() => {
                if st.early.len() < early_max && st.committee.contains(&from) {
                    st.early.push((from, m));
                }
                Ok(())
            }
            (Phase::Dkg(r), EpochWire::Dkg(m)) => {
                r.handle_message(now, from, m).map_err(|e| e.to_string())
            }
            (Phase::Waiting, EpochWire::Dkg(m)) => {
                if st.early.len() < early_max && st.committee.contains(&from) {
                    st.early.push((from, m));
                }
                Ok(())
            }
            (Phase::Running(a), EpochWire::Epoch(m)) => {
                a.handle_message(now, from, m).map_err(|e| e.to_string())
            }
            _ => Ok(()), // another phase's traffic: moot here
        };
        if let Err(why) = result {
            st.refused += 1;
            tracing::debug!(%from, %why, "an epoch message was refused");
        }
    }

    fn view(&self, st: &mut EpochServiceState, now: Time) {
        if let Phase::Running(a) = &mut st.phase {
            let mut alive: Vec<NodeId> = self
                .mesh
                .members()
                .into_iter()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.id)
                .collect();
            alive.push(self.key.node_id());
            a.handle_view(now, alive);
        }
    }

    /// Carries out what the cores asked for.
    fn pump(&self, system: &ActorSystem, st: &mut EpochServiceState, now: Time) {
        loop {
            let mut progressed = false;
            // The DKG.
            let mut done = None;
            if let Phase::Dkg(r) = &mut st.phase {
                r.handle_timeout(now);
                let mut outs = Vec::new();
                while let Some(o) = r.poll_output() {
                    outs.push(o);
                }
                for o in outs {
                    progressed = true;
                    match o {
                        DkgOutput::Send { to, message } => {
                            let wire = EpochWire::Dkg(message);
                            match to {
                                DkgRecipient::Node(n) => self.send(system, st, n, &wire),
                                _ => {
                                    let committee = st.committee.clone();
                                    self.broadcast(system, st, &committee, &wire);
                                }
                            }
                        }
                        DkgOutput::Done(outcome) => done = Some(outcome),
                        DkgOutput::Failed { round, why } => {
                            tracing::warn!(round, %why, "dkg round failed; the next one starts on schedule");
                            st.dkg_round = round + 1;
                            st.phase = Phase::Waiting;
                        }
                        _ => {}
                    }
                }
            }
            if let Some(outcome) = done {
                if let Err(e) = self.store.save_dkg(&outcome) {
                    st.phase = Phase::Failed(format!("cannot save the DKG outcome: {e}"));
                } else {
                    tracing::info!(
                        round = outcome.round,
                        group_key = %plexus_epochs::checkpoint::hex(&threshold::encode_group_key(outcome.sharing.public())),
                        "dkg done"
                    );
                    let me =
                        system.resolve::<EpochMsg>(ActorId::new(system.node_id(), EPOCH_LOCAL_ID));
                    self.run_agreement(&me, st, &outcome);
                }
            }
            // The agreement.
            if let Phase::Running(a) = &mut st.phase {
                a.handle_timeout(now);
                let mut outs = Vec::new();
                while let Some(o) = a.poll_output() {
                    outs.push(o);
                }
                let committee = a.config().committee.clone();
                let current = a.config().schedule.epoch_at(now);
                for o in outs {
                    progressed = true;
                    match o {
                        Output::Send { to, message } => {
                            let wire = EpochWire::Epoch(message);
                            let targets: Vec<NodeId> = match to {
                                Recipients::Committee => committee.clone(),
                                _ => self
                                    .mesh
                                    .members()
                                    .into_iter()
                                    .map(|m| m.id)
                                    .chain(committee.iter().copied())
                                    .collect::<BTreeSet<_>>()
                                    .into_iter()
                                    .collect(),
                            };
                            self.broadcast(system, st, &targets, &wire);
                        }
                        Output::Signed(signed) => self.on_signed(st, *signed, true),
                        Output::Failed { epoch } => {
                            tracing::warn!(epoch, "epoch failed: no checkpoint, no rewards");
                            st.table.entry(epoch).or_insert_with(|| EpochRow {
                                epoch,
                                state: EpochState::Failed,
                                hash: None,
                                signers: 0,
                                members: Vec::new(),
                                anchor: None,
                            });
                        }
                        Output::Equivocation(e) => {
                            st.equivocations += 1;
                            tracing::warn!(epoch = e.epoch, signer = %e.signer, "a committee member equivocated");
                        }
                        Output::BadPartial { from, epoch } => {
                            st.bad_partials += 1;
                            tracing::warn!(%from, epoch, "a partial signature did not verify");
                        }
                        Output::VoteLogFailed(e) => {
                            tracing::error!(error = %e, "the vote log failed; this member did not vote");
                        }
                        _ => {}
                    }
                }
                // Epochs in agreement show as collecting.
                if let Some(current) = current {
                    for epoch in current.saturating_sub(2)..current {
                        st.table.entry(epoch).or_insert_with(|| EpochRow {
                            epoch,
                            state: EpochState::Collecting,
                            hash: None,
                            signers: 0,
                            members: Vec::new(),
                            anchor: None,
                        });
                    }
                }
            }
            while st.table.len() > EPOCHS_SHOWN {
                st.table.pop_first();
            }
            if !progressed {
                break;
            }
        }
    }

    /// A checkpoint this node now holds signed: saved, shown, and (`anchor`, on a
    /// committee member) handed to the anchorer.
    fn on_signed(&self, st: &mut EpochServiceState, signed: SignedCheckpoint, anchor: bool) {
        let epoch = signed.checkpoint.epoch;
        if let Err(e) = self.store.save_checkpoint(&signed) {
            tracing::error!(epoch, error = %e, "cannot save a signed checkpoint");
        }
        tracing::info!(epoch, signers = signed.signers.len(), "checkpoint signed");
        st.table.insert(
            epoch,
            EpochRow {
                epoch,
                state: EpochState::Signed,
                hash: signed
                    .hash()
                    .ok()
                    .map(|h| plexus_epochs::checkpoint::hex(&h)),
                signers: signed.signers.len(),
                members: signed
                    .checkpoint
                    .members
                    .iter()
                    .map(|r| (r.node, r.availability_ppm, r.reward_units))
                    .collect(),
                anchor: None,
            },
        );
        if !anchor {
            return;
        }
        st.unanchored.insert(epoch);
        while st.unanchored.len() > EPOCHS_SHOWN {
            if let Some(oldest) = st.unanchored.pop_first() {
                tracing::warn!(
                    epoch = oldest,
                    "too many checkpoints wait for the ledger; this one is anchored after a restart"
                );
            }
        }
        self.flush_anchors(st);
    }

    /// Hands signed checkpoints not yet given to the anchorer to it, oldest first,
    /// as far as its queue takes them; the rest wait for the next tick.
    fn flush_anchors(&self, st: &mut EpochServiceState) {
        let Some(tx) = &st.anchor_tx else {
            return;
        };
        while let Some(&epoch) = st.unanchored.first() {
            let signed = match self.store.checkpoint(epoch) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    st.unanchored.pop_first();
                    continue;
                }
                Err(e) => {
                    tracing::error!(epoch, error = %e, "cannot read a checkpoint to anchor");
                    return;
                }
            };
            match tx.try_send(signed) {
                Ok(()) => {
                    st.unanchored.pop_first();
                }
                Err(_) => return,
            }
        }
    }

    fn status(&self, st: &EpochServiceState) -> EpochStatus {
        let me = self.key.node_id();
        let (dkg, committee, threshold, group_key, current) = match (&st.phase, &st.follower) {
            (Phase::Waiting, Some(f)) => (
                "not a member: following".to_string(),
                st.committee.len(),
                st.committee.len() - st.committee.len().saturating_sub(1) / 3,
                f.group_key().map(plexus_epochs::checkpoint::hex),
                self.schedule().and_then(|s| s.epoch_at(wall_now())),
            ),
            (Phase::Waiting, None) => ("waiting".to_string(), st.committee.len(), 0, None, None),
            (Phase::Dkg(_), _) => ("running".to_string(), st.committee.len(), 0, None, None),
            (Phase::Failed(why), _) => {
                (format!("failed: {why}"), st.committee.len(), 0, None, None)
            }
            (Phase::Running(a), _) => (
                "done".to_string(),
                a.config().committee.len(),
                a.threshold(),
                Some(plexus_epochs::checkpoint::hex(
                    &threshold::encode_group_key(a.config().sharing.public()),
                )),
                a.config().schedule.epoch_at(wall_now()),
            ),
        };
        EpochStatus {
            node: me,
            member: st.committee.contains(&me),
            dkg,
            committee,
            threshold,
            group_key,
            current,
            ledger: st.ledger.clone(),
            epochs: st.table.values().cloned().collect(),
            equivocations: st.equivocations,
            bad_partials: st.bad_partials,
            refused: st.refused,
        }
    }
}

/// Opens the chosen ledger for the committee's group key.
async fn open_ledger(
    choice: &LedgerChoice,
    network: [u8; 32],
    group_key: &[u8],
) -> Result<(Arc<dyn Anchor>, String), String> {
    match choice {
        LedgerChoice::Embedded(path) => {
            let ledger = plexus_ledger_bridge::EmbeddedLedger::open(path, network, group_key)
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(ledger), "embedded".into()))
        }
        LedgerChoice::Evm {
            url,
            key,
            confirmations,
        } => {
            let mut config = plexus_ledger_bridge::EvmConfig::new(url.clone(), *key);
            config.confirmations = *confirmations;
            let evm = plexus_ledger_bridge::deploy::deterministic(config, network, group_key)
                .await
                .map_err(|e| e.to_string())?;
            let what = format!("evm 0x{}", plexus_epochs::checkpoint::hex(&evm.address()));
            Ok((Arc::new(evm), what))
        }
    }
}

/// Anchors signed checkpoints and follows them to finality; owned by the service.
struct Anchorer {
    choice: LedgerChoice,
    network: [u8; 32],
    group_key: Vec<u8>,
    service: ActorRef<EpochMsg>,
}

impl Anchorer {
    async fn run(self, mut rx: mpsc::Receiver<SignedCheckpoint>) {
        // Open the ledger, retrying (a chain that is not up yet).
        let mut delay = Duration::from_millis(200);
        let ledger = loop {
            match open_ledger(&self.choice, self.network, &self.group_key).await {
                Ok((l, what)) => {
                    let _ = self.service.try_tell(EpochMsg::LedgerOpen(what));
                    break l;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the ledger; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        tracing::info!(ledger = ?self.choice, "ledger open");
        let ledger: Arc<dyn Anchor> = ledger;
        // At most ANCHOR_QUEUE checkpoints wait here; past that the channel fills
        // and the service keeps the rest (`unanchored`).
        let mut pending: BTreeMap<u64, SignedCheckpoint> = BTreeMap::new();
        let mut following: BTreeSet<u64> = BTreeSet::new();
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                got = rx.recv(), if pending.len() < ANCHOR_QUEUE => match got {
                    Some(s) => { pending.insert(s.checkpoint.epoch, s); }
                    None => return,
                },
                _ = every.tick() => {}
            }
            // Oldest first; a checkpoint that fails every attempt stays, with all
            // after it, for the next round.
            while let Some(entry) = pending.first_entry() {
                let epoch = *entry.key();
                let mut outcome = None;
                for attempt in 0..ANCHOR_ATTEMPTS {
                    match ledger.anchor(entry.get()).await {
                        Ok(o) => {
                            outcome = Some(o);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(epoch, attempt, error = %e, "anchoring failed");
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                    }
                }
                let Some(o) = outcome else {
                    break;
                };
                entry.remove();
                let receipt = format!("{:?}", o.record().location);
                let _ = self.service.try_tell(EpochMsg::Anchored {
                    epoch,
                    state: EpochState::Anchored,
                    receipt: Some(receipt),
                });
                following.insert(epoch);
                if following.len() > EPOCHS_SHOWN {
                    // A chain that never reports finality: stop watching the oldest.
                    following.pop_first();
                }
            }
            for epoch in following.clone() {
                if let Ok(AnchorStatus::Final) = ledger.status(epoch).await {
                    following.remove(&epoch);
                    let _ = self.service.try_tell(EpochMsg::Anchored {
                        epoch,
                        state: EpochState::Final,
                        receipt: None,
                    });
                }
            }
        }
    }
}

impl Actor for EpochService {
    type Msg = EpochMsg;
    type State = EpochServiceState;
    type Args = ();

    async fn started(
        &self,
        ctx: &Context<EpochMsg>,
        _: (),
    ) -> Result<EpochServiceState, ActorError> {
        let committee = committee_of(&self.mesh);
        let ticker = crate::ticker::spawn(ctx.myself().clone(), TICK, || EpochMsg::Tick);
        let mut st = EpochServiceState {
            phase: Phase::Waiting,
            committee,
            dkg_round: 0,
            table: BTreeMap::new(),
            anchor_tx: None,
            unanchored: BTreeSet::new(),
            anchorer: None,
            ticker: Some(ticker),
            equivocations: 0,
            bad_partials: 0,
            refused: 0,
            early: Vec::new(),
            follower: None,
            ledger: None,
        };
        let me = self.key.node_id();
        if !st.committee.is_empty() && !st.committee.contains(&me) {
            st.follower = Some(Follower::new(network_id(&self.mesh), &st.committee));
        }
        // A restarted member resumes with its saved share.
        match self.store.load_dkg() {
            Ok(Some(outcome)) => self.run_agreement(ctx.myself(), &mut st, &outcome),
            Ok(None) => {}
            Err(e) => st.phase = Phase::Failed(e.to_string()),
        }
        // Signed checkpoints from earlier lives show in the table, and any not yet
        // final go back to the anchorer (anchoring is idempotent).
        if let Ok(saved) = self.store.checkpoints(EPOCHS_SHOWN) {
            for s in saved {
                match &mut st.follower {
                    Some(f) => {
                        f.resume(&s);
                        self.on_signed(&mut st, s, false);
                    }
                    None => self.on_signed(&mut st, s, true),
                }
            }
        }
        Ok(st)
    }

    async fn handle(
        &self,
        ctx: &Context<EpochMsg>,
        msg: EpochMsg,
        st: &mut EpochServiceState,
    ) -> Result<(), ActorError> {
        let now = wall_now();
        match msg {
            EpochMsg::Wire { from, bytes } => self.on_wire(st, now, from, &bytes),
            EpochMsg::Tick => {
                self.advance_phase(st, now)?;
                self.view(st, now);
                self.flush_anchors(st);
            }
            EpochMsg::Anchored {
                epoch,
                state,
                receipt,
            } => {
                if let Some(row) = st.table.get_mut(&epoch) {
                    // Never move backwards (a late "anchored" after "final").
                    if !(row.state == EpochState::Final && state == EpochState::Anchored) {
                        row.state = state;
                    }
                    if receipt.is_some() {
                        row.anchor = receipt;
                    }
                }
                if state == EpochState::Final {
                    tracing::info!(epoch, "checkpoint final on the ledger");
                }
            }
            EpochMsg::LedgerOpen(what) => st.ledger = Some(what),
            EpochMsg::List(reply) => {
                let _ = reply.send(self.status(st));
            }
            EpochMsg::Get(epoch, reply) => {
                let _ = reply.send(self.store.checkpoint(epoch).ok().flatten());
            }
            EpochMsg::Work(work) => {
                if let Phase::Running(a) = &mut st.phase {
                    a.handle_work(work);
                }
            }
        }
        self.pump(ctx.system(), st, now);
        Ok(())
    }
}
