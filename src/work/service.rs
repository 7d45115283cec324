//! The work service of a daemon: the production driver of the `plexus-poai`
//! auditor.
//!
//! One actor per node, at the well-known local id [`WORK_LOCAL_ID`]. It only
//! carries things in and out:
//!
//! * forward passes from this node's `infer` executors arrive over a bounded
//!   channel ([`crate::hosting::infer::WorkSink`]); each becomes a receipt signed
//!   with the node's key ([`Auditor::record`]), stored with its inputs, and
//!   published to every other admitted node's work service;
//! * audit messages from other nodes arrive as [`WorkMsg::Wire`] (the mesh
//!   authenticated the sender) and go into the auditor;
//! * a ticker moves the auditor's epoch with the epoch schedule and, for each
//!   ended epoch, asks the epoch service for its signed checkpoint: the threshold
//!   signature is the epoch's beacon ([`Auditor::beacon`]), unknown to every worker
//!   while it did the epoch's work;
//! * a re-execution the auditor asks for fetches the batch's inputs from its
//!   worker (or this node's store), checks them against the receipt, runs the
//!   receipt's model from the node's model directory with the same batch plan on
//!   the same backend, and reports the outputs' digest ([`Auditor::executed`]);
//!   inputs that do not come, or do not match, are reported as not had.
//!
//! Bounds: the mailbox ([`MAILBOX`]); the work channel (its bound is the
//! executors'; past it a pass gets no receipt); fetches in flight
//! ([`FETCHES_MAX`], each given up after [`FETCH_TIMEOUT`] as not had); the
//! auditor's own (receipts per epoch, epochs kept).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_actors::codec;
use plexus_actors::codec::Bytes;
use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, Context, Message, ProtocolBytes, SpawnOptions, Wire,
};
use plexus_actors::{ActorId, NodeId, Time};
use plexus_epochs::schedule::Schedule;
use plexus_mesh::driver::Mesh;
use plexus_ml::engine::Engine;
use plexus_ml::executor::{self, ModelStore};
use plexus_poai::receipt::{BackendClass, RECEIPT_VERSION, items_digest, parse_class};
use plexus_poai::{
    AuditConfig, AuditMessage, Auditor, Digest, Effect, EpochWork, Evidence, Receipt, SignedReceipt,
};
use plexus_vocab::identity::NodeKey;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::store::WorkStore;
use crate::epochs::EpochMsg;
use crate::hosting::infer::{Work, backend_of};

/// The work service's well-known local actor id.
pub const WORK_LOCAL_ID: u64 = 4;
/// The mailbox capacity.
pub const MAILBOX: usize = 4_096;
/// How often time is handed to the auditor.
pub const TICK: Duration = Duration::from_millis(250);
/// Re-executions waiting for inputs at once; more wait in the auditor's queue.
pub const FETCHES_MAX: usize = 256;
/// How long a worker has to hand over a batch's inputs.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The wire type name of work messages.
pub const MESSAGE_TYPE: &str = "plexus.work";
/// The membership tag in which a node advertises the backend class it
/// re-executes on (`plexus_poai::receipt::class_text`); verifiers of a receipt
/// are drawn among the admitted nodes advertising its class.
pub const BACKEND_TAG: &str = "backend";

pub use plexus_poai::wire::WorkWire;

/// Messages to the service.
pub enum WorkMsg {
    /// Work protocol bytes from another node's service.
    Wire {
        /// The sender, as the mesh authenticated it.
        from: NodeId,
        /// The encoded [`WorkWire`].
        bytes: Bytes,
    },
    /// A forward pass this node ran.
    Work(Work),
    /// Time passes.
    Tick,
    /// What `/v1/receipts` shows.
    Status(oneshot::Sender<WorkStatus>),
}

impl ProtocolBytes for WorkMsg {
    const TYPE_NAME: &'static str = MESSAGE_TYPE;
    const BYTES_MAX: usize = codec::FRAME_BYTES_MAX;

    fn protocol_bytes(&self) -> Option<Bytes> {
        match self {
            WorkMsg::Wire { bytes, .. } => Some(bytes.clone()),
            _ => None,
        }
    }

    fn from_peer(from: NodeId, bytes: Bytes) -> Self {
        WorkMsg::Wire { from, bytes }
    }
}

impl Message for WorkMsg {
    type Reply = ();
    const WIRE: Option<Wire<Self>> = Some(Wire::protocol_bytes());
}

/// Settings of the work service.
#[derive(Clone, Debug)]
pub struct WorkSettings {
    /// The audit's tuning (network, sample rate, verifiers per receipt).
    pub audit: AuditConfig,
    /// The epoch schedule (`None`: epochs are off; every receipt is in epoch 0 and
    /// nothing is sampled, for want of a beacon).
    pub schedule: Option<(u64, u64)>,
    /// The node's epoch service, whose signed checkpoints are the beacons
    /// (`None`: no beacons, so nothing is sampled).
    pub epochs: Option<ActorId>,
    /// The backend this node re-executes on (its executors' own).
    pub engine: Engine,
}

/// What `/v1/receipts` and `plexus receipts` show.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkStatus {
    /// This node.
    pub node: NodeId,
    /// The epoch now.
    pub current: u64,
    /// The sample rate, parts per million.
    pub rate_ppm: u32,
    /// Verifiers per sampled receipt.
    pub verifiers: usize,
    /// Per epoch, oldest first: the tally as this node knows it.
    pub epochs: Vec<EpochWork>,
    /// Receipts this node signed.
    pub signed: u64,
    /// Re-executions this node ran.
    pub reexecuted: u64,
    /// Re-executions that found no inputs (withheld, timed out, or not matching).
    pub inputs_missing: u64,
    /// Messages refused.
    pub refused: u64,
    /// Every piece of evidence this node holds.
    pub evidence: Vec<Evidence>,
}

/// The service.
pub struct WorkService {
    mesh: Mesh,
    key: NodeKey,
    settings: WorkSettings,
    store: WorkStore,
    models: Arc<ModelStore>,
    epochs: Option<ActorId>,
}

/// Its state.
pub struct WorkState {
    auditor: Auditor,
    /// Re-executions waiting for a worker's inputs: receipt → (receipt, deadline).
    fetching: BTreeMap<Digest, (SignedReceipt, Instant)>,
    /// Re-executions not started yet (over [`FETCHES_MAX`]).
    waiting: std::collections::VecDeque<SignedReceipt>,
    beacons: BTreeMap<u64, ()>,
    signed: u64,
    reexecuted: u64,
    inputs_missing: u64,
    refused: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for WorkState {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn wall_now() -> Time {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    Time::from_micros(us)
}

/// Re-executes a receipt's batch on `engine`: the outputs' digest, or `None` when
/// `items` are not the receipt's inputs, the receipt names another backend than
/// `engine` (a bit-for-bit comparison needs the same one, poai.md), the model is
/// not here, or an input is malformed. What a verifier spends per sampled receipt.
pub fn recompute(
    models: &ModelStore,
    engine: &Engine,
    r: &Receipt,
    items: &[Vec<u8>],
) -> Option<Digest> {
    if items_digest(items) != r.inputs || items.len() != r.batch as usize {
        return None;
    }
    if r.backend != backend_of(engine) {
        tracing::debug!(backend = ?r.backend, "cannot verify work of another backend");
        return None;
    }
    let device = engine.device();
    let model = match models.model(&r.model, device) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot verify: model not here");
            return None;
        }
    };
    let images: Option<Vec<_>> = items
        .iter()
        .map(|b| executor::decode_input(b).ok())
        .collect();
    let logits = executor::run(&model, &images?, device);
    let encoded: Vec<[u8; executor::OUTPUT_BYTES]> =
        logits.iter().map(executor::encode_output).collect();
    Some(items_digest(&encoded))
}

impl WorkService {
    /// Starts the service; `work` is the receiving end of the executors' sink.
    pub async fn start(
        system: &ActorSystem,
        mesh: Mesh,
        key: NodeKey,
        settings: WorkSettings,
        store: WorkStore,
        models: Arc<ModelStore>,
        work: mpsc::Receiver<Work>,
    ) -> Result<ActorRef<WorkMsg>, String> {
        let me = system.node_id();
        let epochs = settings.epochs;
        let service = system
            .spawn_with(
                WorkService {
                    mesh,
                    key,
                    settings,
                    store,
                    models,
                    epochs,
                },
                work,
                SpawnOptions {
                    id: Some(ActorId::new(me, WORK_LOCAL_ID)),
                    kind: Some("plexus.work".into()),
                    capacity: Some(MAILBOX),
                    ..SpawnOptions::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(service)
    }

    fn schedule(&self) -> Option<Schedule> {
        let (genesis, length) = self.settings.schedule?;
        Schedule::new(Time::from_millis(genesis), length).ok()
    }

    fn epoch_now(&self) -> u64 {
        self.schedule()
            .and_then(|s| s.epoch_at(wall_now()))
            .unwrap_or(0)
    }

    fn send(&self, system: &ActorSystem, st: &mut WorkState, to: NodeId, wire: &WorkWire) {
        let Ok(bytes) = wire.encode() else {
            return;
        };
        let peer = system.resolve::<WorkMsg>(ActorId::new(to, WORK_LOCAL_ID));
        if peer
            .try_tell(WorkMsg::Wire {
                from: system.node_id(),
                bytes: bytes.into(),
            })
            .is_err()
        {
            st.refused += 1;
        }
    }

    fn others(&self, system: &ActorSystem) -> Vec<NodeId> {
        let me = system.node_id();
        self.mesh
            .allowlist()
            .allowlist
            .nodes
            .keys()
            .copied()
            .filter(|n| *n != me)
            .collect()
    }

    fn on_work(&self, st: &mut WorkState, work: Work) {
        let receipt = Receipt {
            version: RECEIPT_VERSION,
            network: [0; 32],
            epoch: 0,
            worker: self.key.node_id(),
            seq: 0,
            job: work
                .job
                .chars()
                .take(plexus_poai::receipt::NAME_BYTES_MAX)
                .collect(),
            executor: work
                .executor
                .chars()
                .take(plexus_poai::receipt::NAME_BYTES_MAX)
                .collect(),
            model: work.model,
            inputs: items_digest(&work.inputs),
            outputs: items_digest(&work.output_items()),
            batch: u32::try_from(work.inputs.len()).unwrap_or(u32::MAX),
            backend: (*work.backend).clone(),
            started_us: work.started_us,
            took_us: work.took_us,
        };
        match st.auditor.record(receipt) {
            Ok(signed) => {
                st.signed += 1;
                let stored = signed.hash().map(|hash| {
                    (
                        self.store.put_receipt(&hash, &signed),
                        self.store
                            .put_inputs(signed.receipt.epoch, &hash, &work.inputs),
                    )
                });
                if let Ok((Err(e), _) | (_, Err(e))) = stored {
                    tracing::warn!(error = %e, "cannot store a receipt");
                }
            }
            Err(e) => {
                st.refused += 1;
                tracing::warn!(error = %e, "a receipt was not made");
            }
        }
    }

    fn on_wire(&self, system: &ActorSystem, st: &mut WorkState, from: NodeId, bytes: &[u8]) {
        let wire = match WorkWire::decode(bytes) {
            Ok(w) => w,
            Err(e) => {
                st.refused += 1;
                tracing::debug!(%from, error = %e, "an undecodable work message");
                return;
            }
        };
        match wire {
            WorkWire::Audit(msg) => {
                let msg = *msg;
                // A receipt is stored only once the auditor accepted it (signed
                // by its worker, of this network, within the epoch's bound).
                let receipt = match &msg {
                    AuditMessage::Receipt(r) => Some(r.clone()),
                    AuditMessage::Verification { .. } => None,
                };
                match st.auditor.handle(from, msg) {
                    Ok(()) => {
                        if let Some(r) = receipt
                            && let Ok(hash) = r.hash()
                        {
                            let _ = self.store.put_receipt(&hash, &r);
                        }
                    }
                    Err(e) => {
                        st.refused += 1;
                        tracing::debug!(%from, error = %e, "an audit message was refused");
                    }
                }
            }
            WorkWire::Fetch { epoch, receipt } => {
                // Any admitted node may ask (a dispute makes every auditor judge).
                let items = self
                    .store
                    .inputs(epoch, &receipt)
                    .ok()
                    .flatten()
                    .map(|v| v.into_iter().map(serde_bytes::ByteBuf::from).collect());
                self.send(system, st, from, &WorkWire::Inputs { receipt, items });
            }
            WorkWire::Inputs { receipt, items } => {
                // Only the worker's own answer to a fetch of ours counts.
                let Some((signed, _)) = st.fetching.get(&receipt) else {
                    return;
                };
                if signed.receipt.worker != from {
                    st.refused += 1;
                    return;
                }
                if let Some((signed, _)) = st.fetching.remove(&receipt) {
                    let items: Option<Vec<Vec<u8>>> =
                        items.map(|v| v.into_iter().map(|b| b.into_vec()).collect());
                    self.reexecute(st, &signed, items);
                }
            }
        }
    }

    /// Runs a receipt's batch again, if its inputs are had and match; reports the
    /// outputs' digest, or `None`.
    fn reexecute(&self, st: &mut WorkState, signed: &SignedReceipt, items: Option<Vec<Vec<u8>>>) {
        let r = &signed.receipt;
        let Ok(hash) = signed.hash() else {
            return;
        };
        let outputs =
            items.and_then(|items| recompute(&self.models, &self.settings.engine, r, &items));
        if outputs.is_some() {
            st.reexecuted += 1;
        } else {
            st.inputs_missing += 1;
        }
        st.auditor.executed(r.epoch, &hash, outputs);
    }

    fn start_fetch(&self, system: &ActorSystem, st: &mut WorkState, signed: SignedReceipt) {
        let Ok(hash) = signed.hash() else {
            return;
        };
        let epoch = signed.receipt.epoch;
        // This node's own batch (a dispute about it): the inputs are here.
        if signed.receipt.worker == system.node_id() {
            let items = self.store.inputs(epoch, &hash).ok().flatten();
            self.reexecute(st, &signed, items);
            return;
        }
        if st.fetching.len() >= FETCHES_MAX {
            st.waiting.push_back(signed);
            return;
        }
        let worker = signed.receipt.worker;
        st.fetching
            .insert(hash, (signed, Instant::now() + FETCH_TIMEOUT));
        self.send(
            system,
            st,
            worker,
            &WorkWire::Fetch {
                epoch,
                receipt: hash,
            },
        );
    }

    fn drain(&self, system: &ActorSystem, st: &mut WorkState) {
        // Effects can cause effects (a re-execution publishes a verification).
        for _ in 0..100_000 {
            let Some(effect) = st.auditor.poll_effect() else {
                break;
            };
            match effect {
                Effect::Publish(msg) => {
                    let wire = WorkWire::Audit(Box::new(msg));
                    for n in self.others(system) {
                        self.send(system, st, n, &wire);
                    }
                }
                Effect::ReExecute { receipt, .. } => self.start_fetch(system, st, receipt),
                Effect::Evidence(e) => {
                    tracing::warn!(against = %e.against(), epoch = e.epoch(), "proof of wrong work");
                    if let Err(err) = self.store.put_evidence(&e) {
                        tracing::warn!(error = %err, "cannot store evidence");
                    }
                }
            }
        }
    }

    async fn tick(&self, system: &ActorSystem, st: &mut WorkState) {
        // Verifiers: the admitted nodes, each with the backend class it
        // advertises (a node that does not say is drawn for no receipt).
        let members = self.mesh.member_map();
        let allowlist = self.mesh.allowlist().allowlist;
        let mut nodes: Vec<(NodeId, BackendClass)> = allowlist
            .nodes
            .keys()
            .filter_map(|n| {
                let m = members.get(n)?;
                let class = m.tags.get(BACKEND_TAG).and_then(|c| parse_class(c))?;
                Some((*n, class))
            })
            .collect();
        nodes.push((system.node_id(), backend_of(&self.settings.engine).class()));
        st.auditor.set_eligible(nodes);
        let now = self.epoch_now();
        st.auditor.advance(now);
        // Fetches that timed out: the inputs were not had.
        let at = Instant::now();
        let late: Vec<Digest> = st
            .fetching
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= at)
            .map(|(h, _)| *h)
            .collect();
        for h in late {
            if let Some((signed, _)) = st.fetching.remove(&h) {
                self.reexecute(st, &signed, None);
            }
        }
        while st.fetching.len() < FETCHES_MAX {
            let Some(next) = st.waiting.pop_front() else {
                break;
            };
            self.start_fetch(system, st, next);
        }
        // Beacons of ended epochs, from their signed checkpoints.
        let kept = self.settings.audit.epochs_kept;
        let oldest = now.saturating_sub(kept.saturating_sub(1));
        if let Some(epochs) = self.epochs {
            for epoch in oldest..now {
                if st.beacons.contains_key(&epoch) {
                    continue;
                }
                let service = system.resolve::<EpochMsg>(epochs);
                let (tx, rx) = oneshot::channel();
                if service.try_tell(EpochMsg::Get(epoch, tx)).is_err() {
                    break;
                }
                if let Ok(Ok(Some(signed))) = tokio::time::timeout(Duration::from_secs(1), rx).await
                {
                    st.auditor.beacon(epoch, &signed.signature);
                    st.beacons.insert(epoch, ());
                }
            }
        }
        while st
            .beacons
            .first_key_value()
            .is_some_and(|(e, _)| *e < oldest)
        {
            st.beacons.pop_first();
        }
        // Tallies of the kept epochs, as they stand; older inputs go.
        for epoch in oldest..=now {
            let work = st.auditor.tally(epoch);
            if work.workers.is_empty() && work.evidence.is_empty() {
                continue;
            }
            if let Err(e) = self.store.put_tally(&work) {
                tracing::warn!(error = %e, "cannot store a tally");
            }
        }
        // The tallies the checkpoints credit: the two ended epochs before this
        // one, once their beacon drew the sample (work of an epoch without a
        // signed checkpoint was never sampled, so it is credited nothing).
        if let Some(epochs) = self.epochs {
            let service = system.resolve::<EpochMsg>(epochs);
            for back in 1..=plexus_epochs::work::WORK_LAG {
                let Some(epoch) = now.checked_sub(back) else {
                    continue;
                };
                let Some(work) = st.auditor.credited(epoch) else {
                    continue;
                };
                let units = work.workers.iter().map(|(n, row)| (*n, row.work_units));
                let tally = plexus_epochs::work::ObservedWork::new(epoch, work.root, units);
                // Best effort: the next tick sends it again.
                let _ = service.try_tell(EpochMsg::Work(tally));
            }
        }
        if let Err(e) = self.store.prune(oldest) {
            tracing::warn!(error = %e, "cannot prune the work store");
        }
    }

    fn status(&self, system: &ActorSystem, st: &WorkState) -> WorkStatus {
        let now = self.epoch_now();
        let mut epochs: BTreeMap<u64, EpochWork> = self
            .store
            .tallies()
            .unwrap_or_default()
            .into_iter()
            .map(|w| (w.epoch, w))
            .collect();
        let kept = self.settings.audit.epochs_kept;
        for epoch in now.saturating_sub(kept.saturating_sub(1))..=now {
            let work = st.auditor.tally(epoch);
            if !work.workers.is_empty() || !work.evidence.is_empty() {
                epochs.insert(epoch, work);
            }
        }
        WorkStatus {
            node: system.node_id(),
            current: now,
            rate_ppm: self.settings.audit.rate_ppm,
            verifiers: self.settings.audit.verifiers,
            epochs: epochs.into_values().collect(),
            signed: st.signed,
            reexecuted: st.reexecuted,
            inputs_missing: st.inputs_missing,
            refused: st.refused,
            evidence: self.store.evidence().unwrap_or_default(),
        }
    }
}

impl Actor for WorkService {
    type Msg = WorkMsg;
    type State = WorkState;
    type Args = mpsc::Receiver<Work>;

    async fn started(
        &self,
        ctx: &Context<WorkMsg>,
        mut work: mpsc::Receiver<Work>,
    ) -> Result<WorkState, ActorError> {
        let me = ctx.myself().clone();
        let feeder = {
            let me = me.clone();
            tokio::spawn(async move {
                while let Some(w) = work.recv().await {
                    // Waits for mailbox space: the executors' channel, bounded,
                    // fills behind it.
                    if me.tell(WorkMsg::Work(w)).await.is_err() {
                        break;
                    }
                }
            })
        };
        let ticker = crate::ticker::spawn(me, TICK, || WorkMsg::Tick);
        let current = self.epoch_now();
        let auditor = Auditor::new(
            self.settings.audit.clone(),
            NodeKey::from_seed(self.key.seed()),
            current,
        );
        Ok(WorkState {
            auditor,
            fetching: BTreeMap::new(),
            waiting: std::collections::VecDeque::new(),
            beacons: BTreeMap::new(),
            signed: 0,
            reexecuted: 0,
            inputs_missing: 0,
            refused: 0,
            tasks: vec![feeder, ticker],
        })
    }

    async fn handle(
        &self,
        ctx: &Context<WorkMsg>,
        msg: WorkMsg,
        st: &mut WorkState,
    ) -> Result<(), ActorError> {
        let system = ctx.system();
        match msg {
            WorkMsg::Wire { from, bytes } => self.on_wire(system, st, from, &bytes),
            WorkMsg::Work(w) => {
                // A pass that began in an earlier epoch is counted in the current.
                let now = self.epoch_now();
                st.auditor.advance(now);
                self.on_work(st, w);
            }
            WorkMsg::Tick => self.tick(system, st).await,
            WorkMsg::Status(reply) => {
                let _ = reply.send(self.status(system, st));
                return Ok(());
            }
        }
        self.drain(system, st);
        Ok(())
    }
}
