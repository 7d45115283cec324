//! The `infer` stage kind: the model executor as a durable actor.
//!
//! A job deploys it like any stage (`kind = "infer"`), and the scheduler places it
//! by resources and tags like any other (`gpu = "true"` included). Its config:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `model` | required | the weights' content hash (64 hex digits), loaded from the node's model directory |
//! | `max_batch` | 32 | most requests in one forward pass, `1..=`[`plexus_ml::executor::BATCH_MAX`] |
//! | `max_wait_ms` | 2 | how long a partial batch waits for more requests, `0..=`[`MAX_WAIT_MS_MAX`] |
//!
//! **Batching and backpressure are the activation's**: it holds a bounded queue
//! of accepted requests (past its bound, senders are told to retry later and keep
//! their messages), and hands this code at most `max_batch` of them at once,
//! waiting up to `max_wait_ms` for a partial batch to fill ([`DurableCode::batching`]).
//! Each request is answered with its own output, in its reply slot, exactly once.
//!
//! **Migration**: the snapshot is the model reference and the config, never the
//! weights (a few dozen bytes); the target loads the weights by hash from its own
//! model directory, and refuses to start if they are missing or not the ones named.
//! The requests queued at the source travel with the handoff, so none is lost.
//!
//! **Receipts**: every forward pass is handed to the node's work service
//! ([`crate::work`]) with its inputs and the digest of its outputs; the service
//! signs the receipt, keeps the inputs for verifiers, and publishes it. The hand-off
//! is a bounded channel: when it is full the pass is still answered but no receipt
//! is made (the work goes unpaid, and `receipts_dropped` counts it).
//!
//! A request is [`plexus_ml::executor::INPUT_BYTES`] pixel bytes; a malformed one
//! gets an error reply and does not fail the batch. A reply is the output's bytes
//! ([`plexus_ml::executor::OUTPUT_BYTES`]: the 10 logits as little-endian f32),
//! exactly the bytes whose digest the pass's receipt signs, so a caller can check
//! its answer against a receipt; `/v1/infer` turns them into
//! `{"class": 3, "logits": [..10 floats..]}`. With downstream stages, the same
//! bytes go on to one of them (by hash of the request).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_durable::activation::{Applied, Batching, Input, Output};
use plexus_durable::types::DurableKey;
use plexus_host::{CodeError, DurableCode, DurableKind};
use plexus_ml::Digest;
use plexus_ml::digits::{CLASSES, PIXELS};
use plexus_ml::engine::Engine;
use plexus_ml::executor::{self, ModelStore};
use plexus_ml::model::Mlp;
use plexus_scheduler::protocol::ActorSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

/// The kind's name.
pub const KIND: &str = "infer";
/// Longest `max_wait_ms`.
pub const MAX_WAIT_MS_MAX: u64 = 1_000;
/// The snapshot's schema.
const SCHEMA: u32 = 2;

/// One forward pass, for the work service to sign a receipt for.
#[derive(Clone, Debug)]
pub struct Work {
    /// The job.
    pub job: Arc<str>,
    /// The executor's durable key.
    pub executor: Arc<str>,
    /// The model.
    pub model: Digest,
    /// The requests, in batch order.
    pub inputs: Vec<Vec<u8>>,
    /// The outputs ([`executor::encode_output`]'s bytes), one after another in
    /// batch order, [`executor::OUTPUT_BYTES`] each; the receipt names their
    /// `items_digest` ([`Work::output_items`]).
    pub outputs: bytes::Bytes,
    /// When it started, Unix microseconds.
    pub started_us: u64,
    /// How long it took, microseconds.
    pub took_us: u64,
    /// The backend that computed it.
    pub backend: Arc<plexus_poai::Backend>,
}

impl Work {
    /// Each output's bytes, in batch order.
    pub fn output_items(&self) -> Vec<&[u8]> {
        self.outputs.chunks(executor::OUTPUT_BYTES).collect()
    }
}

/// Where executors hand their work: a bounded channel to the work service.
#[derive(Clone, Debug)]
pub struct WorkSink {
    tx: mpsc::Sender<Work>,
    dropped: Arc<AtomicU64>,
}

impl WorkSink {
    /// A sink holding at most `bound` passes not yet taken; and its receiving end.
    pub fn new(bound: usize) -> (Self, mpsc::Receiver<Work>) {
        let (tx, rx) = mpsc::channel(bound.max(1));
        (
            Self {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    fn put(&self, work: Work) {
        if self.tx.try_send(work).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Passes that got no receipt because the channel was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A fault to inject, for demos and tests of the audit: the executor returns wrong
/// outputs (and signs them) for about `ppm` in a million of its passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongOutputs {
    /// Parts per million of passes.
    pub ppm: u32,
}

/// Where weights named by a storage id come from.
pub trait WeightsSource: Send + Sync {
    /// The file `id`'s bytes (blocking: called from the kind's build).
    fn fetch(&self, id: plexus_storage::ChunkId) -> Result<Vec<u8>, String>;
}

/// The `infer` kind: runs models from `models` (fetching weights a config names
/// by storage id from `weights` first, if missing), hands work to `sink`.
pub struct InferKind {
    models: Arc<ModelStore>,
    engine: Engine,
    sink: Option<WorkSink>,
    fault: Option<WrongOutputs>,
    weights: Option<Arc<dyn WeightsSource>>,
}

impl InferKind {
    /// The kind, serving from `models`; with a sink, every pass gets a receipt.
    pub fn new(
        models: Arc<ModelStore>,
        sink: Option<WorkSink>,
        fault: Option<WrongOutputs>,
    ) -> Self {
        Self {
            models,
            engine: Engine::flex(),
            sink,
            fault,
            weights: None,
        }
    }

    /// The kind, serving on `engine` (flex unless told otherwise).
    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// The kind, fetching weights named by a storage id from `source`.
    pub fn with_weights(mut self, source: Arc<dyn WeightsSource>) -> Self {
        self.weights = Some(source);
        self
    }
}

/// The config, as a job spec gives it, and the state a snapshot carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferState {
    /// The model.
    pub model: Digest,
    /// Most requests per pass.
    pub max_batch: u32,
    /// How long a partial batch waits.
    pub max_wait_ms: u64,
    /// Requests answered over the actor's life.
    pub served: u64,
    /// Forward passes over its life.
    pub passes: u64,
    /// Requests refused as malformed.
    pub malformed: u64,
    /// Where the weights are in the cluster's storage, if the node lacks them.
    pub weights: Option<plexus_storage::ChunkId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    model: String,
    #[serde(default)]
    weights: Option<String>,
    #[serde(default = "default_batch")]
    max_batch: u32,
    #[serde(default = "default_wait")]
    max_wait_ms: u64,
}

fn default_batch() -> u32 {
    32
}

fn default_wait() -> u64 {
    2
}

/// Parses and checks an `infer` stage's config.
pub fn parse_config(text: &str) -> Result<InferState, String> {
    let c: Config = serde_json::from_str(if text.trim().is_empty() { "{}" } else { text })
        .map_err(|e| e.to_string())?;
    let model = executor::parse_hash(&c.model)
        .ok_or_else(|| format!("`model` must be 64 hex digits, not `{}`", c.model))?;
    if c.max_batch == 0 || c.max_batch as usize > executor::BATCH_MAX {
        return Err(format!(
            "`max_batch` must be 1..={}, not {}",
            executor::BATCH_MAX,
            c.max_batch
        ));
    }
    if c.max_wait_ms > MAX_WAIT_MS_MAX {
        return Err(format!(
            "`max_wait_ms` must be 0..={MAX_WAIT_MS_MAX}, not {}",
            c.max_wait_ms
        ));
    }
    let weights = match &c.weights {
        None => None,
        Some(w) => Some(
            w.parse::<plexus_storage::ChunkId>()
                .map_err(|e| format!("`weights`: {e}"))?,
        ),
    };
    Ok(InferState {
        model,
        max_batch: c.max_batch,
        max_wait_ms: c.max_wait_ms,
        served: 0,
        passes: 0,
        malformed: 0,
        weights,
    })
}

impl DurableKind for InferKind {
    fn name(&self) -> &str {
        KIND
    }

    fn build(
        &self,
        key: &DurableKey,
        spec: &ActorSpec,
        state: &Snapshot,
    ) -> Result<Box<dyn DurableCode>, CodeError> {
        let state: InferState = if state.bytes.is_empty() {
            parse_config(&spec.config).map_err(CodeError::Config)?
        } else if state.schema_version == SCHEMA {
            codec::decode_body(&state.bytes, plexus_durable::STATE_BYTES_MAX)
                .map_err(CodeError::State)?
        } else {
            return Err(CodeError::Config(format!(
                "infer state schema {} is not {SCHEMA}",
                state.schema_version
            )));
        };
        let device = self.engine.device().clone();
        let model = match (
            self.models.model(&state.model, &device),
            state.weights,
            &self.weights,
        ) {
            (Ok(m), _, _) => m,
            // Not here, but named in storage: fetched, checked against the
            // model's hash as it is added, then loaded.
            (Err(missing), Some(id), Some(source)) => {
                let bytes = source
                    .fetch(id)
                    .map_err(|e| CodeError::Config(format!("{missing}; from storage {id}: {e}")))?;
                let added = self
                    .models
                    .add(&bytes)
                    .map_err(|e| CodeError::Config(format!("weights {id}: {e}")))?;
                if added != state.model {
                    return Err(CodeError::Config(format!(
                        "weights {id} are model {}, not {}",
                        plexus_ml::hex(&added),
                        plexus_ml::hex(&state.model)
                    )));
                }
                self.models
                    .model(&state.model, &device)
                    .map_err(|e| CodeError::Config(e.to_string()))?
            }
            (Err(e), _, _) => return Err(CodeError::Config(e.to_string())),
        };
        Ok(Box::new(Executor {
            key: key.to_string().into(),
            job: spec.job.as_str().into(),
            state,
            model,
            device,
            backend: Arc::new(backend_of(&self.engine)),
            outputs: spec.output_keys(),
            sink: self.sink.clone(),
            fault: self.fault,
        }))
    }
}

struct Executor {
    // Shared with every pass's [`Work`], so a hand-off allocates none of them.
    key: Arc<str>,
    job: Arc<str>,
    state: InferState,
    model: Mlp,
    device: executor::Device,
    backend: Arc<plexus_poai::Backend>,
    outputs: Vec<DurableKey>,
    sink: Option<WorkSink>,
    fault: Option<WrongOutputs>,
}

/// The backend an engine's receipts name.
pub fn backend_of(engine: &Engine) -> plexus_poai::Backend {
    plexus_poai::Backend {
        name: engine.name().into(),
        version: engine.version().into(),
    }
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Whether an injected fault strikes the pass with these inputs.
fn strikes(fault: Option<WrongOutputs>, inputs: &Digest) -> bool {
    let Some(f) = fault else {
        return false;
    };
    let h: [u8; 32] = Sha256::digest(inputs).into();
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 1_000_000 < f.ppm
}

impl DurableCode for Executor {
    fn batching(&self) -> Option<Batching> {
        Some(Batching {
            max: self.state.max_batch as usize,
            wait: Duration::from_millis(self.state.max_wait_ms),
        })
    }

    fn apply(&mut self, mut inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodeError> {
        let mut out = Applied::default();
        let mut replies: Vec<Option<plexus_durable::wire::Reply>> = vec![None; inputs.len()];
        // Check; a malformed request is answered with why, and skipped.
        let mut good: Vec<usize> = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            match executor::check_input(&input.payload) {
                Ok(_) => good.push(i),
                Err(e) => {
                    self.state.malformed += 1;
                    replies[i] = Some(Err(e.to_string()));
                }
            }
        }
        let max = (self.state.max_batch as usize).max(1);
        for pass in good.chunks(max) {
            // The pass's input matrix, decoded straight from the requests.
            let mut pixels = Vec::with_capacity(pass.len() * PIXELS);
            for i in pass {
                if let Ok(bytes) = <&[u8; executor::INPUT_BYTES]>::try_from(&inputs[*i].payload[..])
                {
                    executor::push_input(bytes, &mut pixels);
                }
            }
            let started_us = unix_us();
            let clock = std::time::Instant::now();
            let mut logits = executor::run_rows(&self.model, pixels, &self.device);
            let took_us = u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX);
            if self.fault.is_some() {
                let requests: Vec<&[u8]> =
                    pass.iter().map(|i| inputs[*i].payload.as_slice()).collect();
                if strikes(self.fault, &plexus_poai::receipt::items_digest(&requests)) {
                    for row in logits.chunks_exact_mut(CLASSES) {
                        row.rotate_right(1);
                    }
                }
            }
            // Every output in one buffer, which the replies share.
            let encoded = bytes::Bytes::from(executor::encode_outputs(&logits));
            self.state.passes += 1;
            for (k, i) in pass.iter().enumerate() {
                let at = k * executor::OUTPUT_BYTES..(k + 1) * executor::OUTPUT_BYTES;
                let Some(bytes) = (at.end <= encoded.len()).then(|| encoded.slice(at)) else {
                    // The model gave fewer rows than it was given (it cannot with
                    // a checked model); said, not panicked on.
                    replies[*i] = Some(Err("the model gave no output for it".into()));
                    continue;
                };
                self.state.served += 1;
                if !self.outputs.is_empty() {
                    let h = blake3::hash(&inputs[*i].payload);
                    let k = (h.as_bytes()[0] as usize) % self.outputs.len();
                    out.outputs.push(Output::Send {
                        to: self.outputs[k].clone(),
                        payload: bytes.to_vec(),
                        trace: inputs[*i].trace,
                    });
                }
                replies[*i] = Some(Ok(bytes));
            }
            if let Some(sink) = &self.sink {
                // The requests go to the work service (which digests them for the
                // receipt, off this path) and are not needed here again.
                let requests: Vec<Vec<u8>> = pass
                    .iter()
                    .map(|i| std::mem::take(&mut inputs[*i].payload))
                    .collect();
                sink.put(Work {
                    job: self.job.clone(),
                    executor: self.key.clone(),
                    model: self.state.model,
                    inputs: requests,
                    outputs: encoded,
                    started_us,
                    took_us,
                    backend: self.backend.clone(),
                });
            }
        }
        out.replies = replies;
        if snapshot {
            out.snapshot = Some(plexus_host::code::snapshot_of(&self.state, SCHEMA)?);
        }
        Ok(out)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": KIND,
            "model": plexus_ml::hex(&self.state.model),
            "max_batch": self.state.max_batch,
            "max_wait_ms": self.state.max_wait_ms,
            "served": self.state.served,
            "passes": self.state.passes,
            "malformed": self.state.malformed,
            "backend": format!("{} ({})", self.backend.name, self.backend.version),
            "receipts_dropped": self.sink.as_ref().map_or(0, WorkSink::dropped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_ml::digits::Digits;
    use plexus_ml::model::{Weights, class};

    fn store(name: &str) -> (Arc<ModelStore>, Digest, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("plexus-infer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ModelStore::open(&dir).unwrap();
        let hash = store.add_weights(&Weights::init(5)).unwrap();
        (Arc::new(store), hash, dir)
    }

    fn spec(config: String) -> ActorSpec {
        ActorSpec {
            job: "digits".into(),
            stage: "classify".into(),
            index: 0,
            kind: KIND.into(),
            config,
            outputs: vec![],
        }
    }

    fn input(seq: u64, payload: Vec<u8>) -> Input {
        Input {
            from: None,
            seq,
            payload,
            trace: None,
        }
    }

    fn empty() -> Snapshot {
        Snapshot {
            schema_version: 0,
            bytes: vec![],
        }
    }

    fn reply_bytes(r: &Option<plexus_durable::wire::Reply>) -> Vec<u8> {
        r.as_ref().unwrap().as_ref().unwrap().to_vec()
    }

    #[test]
    fn each_request_gets_its_own_output_and_every_pass_a_receipt() {
        let (models, hash, dir) = store("own");
        let (sink, mut rx) = WorkSink::new(64);
        let kind = InferKind::new(models.clone(), Some(sink), None);
        let key = DurableKey::new("digits/classify/0").unwrap();
        let cfg = format!(
            r#"{{"model":"{}","max_batch":4,"max_wait_ms":7}}"#,
            plexus_ml::hex(&hash)
        );
        let mut code = kind.build(&key, &spec(cfg), &empty()).unwrap();
        assert_eq!(
            code.batching(),
            Some(Batching {
                max: 4,
                wait: Duration::from_millis(7)
            })
        );
        let digits = Digits::bundled().unwrap();
        let requests: Vec<Vec<u8>> = digits.images[..10]
            .iter()
            .map(|im| executor::encode_input(im).to_vec())
            .collect();
        let mut inputs: Vec<Input> = requests
            .iter()
            .enumerate()
            .map(|(i, p)| input(i as u64 + 1, p.clone()))
            .collect();
        // One malformed request in the middle: its own error, the rest unharmed.
        inputs.insert(5, input(99, vec![1, 2, 3]));
        let applied = code.apply(inputs, true).unwrap();
        assert_eq!(applied.replies.len(), 11);
        assert!(matches!(&applied.replies[5], Some(Err(e)) if e.contains("64 bytes")));
        let device = Engine::flex().device().clone();
        let model = models.model(&hash, &device).unwrap();
        let mut good = applied.replies.clone();
        good.remove(5);
        for (req, reply) in requests.iter().zip(&good) {
            let alone = executor::run(&model, &[executor::decode_input(req).unwrap()], &device);
            // The reply is exactly the output bytes a receipt digests.
            assert_eq!(
                reply_bytes(reply),
                executor::encode_output(&alone[0]).to_vec()
            );
            let logits = executor::decode_output(&reply_bytes(reply)).unwrap();
            assert_eq!(class(&logits), class(&alone[0]));
        }
        // Passes of at most `max_batch`, in order, each with the digest of its outputs.
        let mut passes = Vec::new();
        while let Ok(w) = rx.try_recv() {
            passes.push(w);
        }
        assert_eq!(
            passes.iter().map(|w| w.inputs.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let first: Vec<_> = requests[..4]
            .iter()
            .map(|r| executor::decode_input(r).unwrap())
            .collect();
        let outs: Vec<_> = executor::run(&model, &first, &device)
            .iter()
            .map(executor::encode_output)
            .collect();
        assert_eq!(passes[0].inputs, requests[..4].to_vec());
        assert_eq!(
            passes[0].output_items(),
            outs.iter().map(|o| &o[..]).collect::<Vec<_>>()
        );
        // The snapshot is the model reference and the config, not the weights.
        let snap = applied.snapshot.unwrap();
        assert!(snap.bytes.len() < 128, "{} bytes", snap.bytes.len());
        let again = kind.build(&key, &spec(String::new()), &snap).unwrap();
        assert_eq!(again.describe()["served"], 10);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_wrong_or_corrupt_weights_are_refused_with_the_reason() {
        let (models, hash, dir) = store("refuse");
        let kind = InferKind::new(models.clone(), None, None);
        let key = DurableKey::new("digits/classify/0").unwrap();
        let other = Weights::init(6).hash();
        let err = |h: &Digest| match kind.build(
            &key,
            &spec(format!(r#"{{"model":"{}"}}"#, plexus_ml::hex(h))),
            &empty(),
        ) {
            Err(CodeError::Config(why)) => why,
            Err(e) => panic!("expected a config error, got {e}"),
            Ok(_) => panic!("built with bad weights"),
        };
        assert!(err(&other).contains("no model"), "{}", err(&other));
        // The file named by `hash` now holds other weights: refused by hash.
        let path = dir.join(format!("{}.weights", plexus_ml::hex(&hash)));
        std::fs::write(&path, Weights::init(6).encode().unwrap()).unwrap();
        let fresh = Arc::new(ModelStore::open(&dir).unwrap());
        let kind = InferKind::new(fresh, None, None);
        let why = match kind.build(
            &key,
            &spec(format!(r#"{{"model":"{}"}}"#, plexus_ml::hex(&hash))),
            &empty(),
        ) {
            Err(CodeError::Config(why)) => why,
            _ => panic!("substituted weights were served"),
        };
        assert!(why.contains("expected"), "{why}");
        // A corrupt file: a clear error.
        std::fs::write(&path, b"\x00garbage").unwrap();
        let fresh = Arc::new(ModelStore::open(&dir).unwrap());
        let kind = InferKind::new(fresh, None, None);
        let why = match kind.build(
            &key,
            &spec(format!(r#"{{"model":"{}"}}"#, plexus_ml::hex(&hash))),
            &empty(),
        ) {
            Err(CodeError::Config(why)) => why,
            _ => panic!("a corrupt file was served"),
        };
        assert!(why.contains("not a weights file"), "{why}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_injected_fault_signs_wrong_outputs() {
        let (models, hash, dir) = store("fault");
        let (sink, mut rx) = WorkSink::new(8);
        let kind = InferKind::new(
            models.clone(),
            Some(sink),
            Some(WrongOutputs { ppm: 1_000_000 }),
        );
        let key = DurableKey::new("digits/classify/0").unwrap();
        let mut code = kind
            .build(
                &key,
                &spec(format!(r#"{{"model":"{}"}}"#, plexus_ml::hex(&hash))),
                &empty(),
            )
            .unwrap();
        let digits = Digits::bundled().unwrap();
        let req = executor::encode_input(&digits.images[0]).to_vec();
        code.apply(vec![input(1, req.clone())], false).unwrap();
        let w = rx.try_recv().unwrap();
        let device = Engine::flex().device().clone();
        let model = models.model(&hash, &device).unwrap();
        let honest = executor::run(&model, &[executor::decode_input(&req).unwrap()], &device);
        let honest = plexus_poai::receipt::items_digest(&[executor::encode_output(&honest[0])]);
        assert_ne!(
            plexus_poai::receipt::items_digest(&w.output_items()),
            honest
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn configs_are_checked() {
        let h = "ab".repeat(32);
        let s = parse_config(&format!(r#"{{"model":"{h}"}}"#)).unwrap();
        assert_eq!((s.max_batch, s.max_wait_ms), (32, 2));
        assert!(
            parse_config(r#"{"model":"abc"}"#)
                .unwrap_err()
                .contains("64 hex")
        );
        assert!(
            parse_config(&format!(r#"{{"model":"{h}","max_batch":0}}"#))
                .unwrap_err()
                .contains("max_batch")
        );
        assert!(
            parse_config(&format!(r#"{{"model":"{h}","max_wait_ms":5000}}"#))
                .unwrap_err()
                .contains("max_wait_ms")
        );
        assert!(parse_config(&format!(r#"{{"model":"{h}","colour":1}}"#)).is_err());
        assert!(parse_config("").is_err());
    }
}
