//! The model executor (issue 11), each figure beside its peer in the same run:
//!
//! 1. **Overhead.** The `infer` executor's own work per forward pass (decoding
//!    the requests, the pass, the receipt's input and output digests, the
//!    replies, the hand-off to the work service) against a bare Burn pass on the
//!    same model and batch (a tensor from the host's floats, `forward`, the logits
//!    back). Median per pass, the two interleaved in rounds.
//! 2. **PyTorch on the CPU**, the peer a user would otherwise pick: the same
//!    architecture, weights and batch, when a Python with torch is found
//!    (`PLEXUS_TORCH_PYTHON`, else `~/.cache/plexus/torch-venv/bin/python`);
//!    its logits are checked against Burn's first. Never a test dependency.
//! 3. **Verification cost.** One sampled receipt re-executed by a verifier
//!    (`plexus::work::recompute`: the inputs' digest checked, the model loaded by
//!    hash, the pass, the outputs' digest), and the share of all compute that
//!    re-execution takes at the default sample rate and verifier count.
//! 4. **Dynamic batching.** Images a second through a real `plexus node` (one
//!    node, the HTTP API, `/v1/infer` from concurrent clients) with batching on
//!    (`max_batch = 32, max_wait_ms = 2`) and off (`max_batch = 1`).
//!
//! `cargo bench -p plexus-benches --bench executor` (`--batch N`, default 32).
//! Under `cargo test` it runs as a smoke test with few iterations.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use plexus::cli::CliError;
use plexus::cli::digits;
use plexus::cli::local::{LocalCluster, LocalOptions, in_scratch_dir};
use plexus::hosting::infer::{InferKind, WorkSink};
use plexus::ml::digits::{Digits, Image};
use plexus::ml::engine::Engine;
use plexus::ml::executor::{self, ModelStore};
use plexus::ml::model::{Mlp, Weights};
use plexus::poai::receipt::{RECEIPT_VERSION, items_digest};
use plexus::poai::{Receipt, SignedReceipt};
use plexus_actors::migratable::Snapshot;
use plexus_benches::flag;
use plexus_durable::activation::Input;
use plexus_durable::types::DurableKey;
use plexus_host::DurableKind;
use plexus_scheduler::protocol::ActorSpec;
use plexus_vocab::identity::NodeKey;

/// The daemon's defaults (`[work]`): receipts sampled, verifiers per sample.
const SAMPLE_RATE: f64 = 0.05;
const VERIFIERS: f64 = 2.0;

struct Params {
    batch: usize,
    rounds: usize,
    per_round: usize,
    images: usize,
}

fn main() -> ExitCode {
    if plexus_benches::is_node() {
        return plexus::cli::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let p = match flag(&args, "--batch", 32usize) {
        Ok(batch) if (1..=executor::BATCH_MAX).contains(&batch) => Params {
            batch,
            rounds: if full { 40 } else { 2 },
            per_round: if full { 250 } else { 5 },
            images: if full { 3_600 } else { 64 },
        },
        Ok(batch) => {
            eprintln!(
                "error: --batch must be 1..={}, not {batch}",
                executor::BATCH_MAX
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match in_scratch_dir("bench-executor", false, |dir| bench(dir, &p)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn bench(dir: &Path, p: &Params) -> Result<(), CliError> {
    let data = Digits::bundled().map_err(failed)?;
    let weights = Weights::init(7);
    let engine = Engine::flex();
    let device = engine.device().clone();
    let model = Mlp::from_weights(&weights, &device).map_err(failed)?;
    let images: Vec<Image> = data.images[..p.batch].to_vec();
    let requests: Vec<Vec<u8>> = images
        .iter()
        .map(|im| executor::encode_input(im).to_vec())
        .collect();
    let (backend, version) = (engine.name(), engine.version());
    println!(
        "executor bench: digits MLP 64-128-10, batch {}, {backend} ({version}), {} rounds of {} passes",
        p.batch, p.rounds, p.per_round
    );

    // 1. The executor against a bare pass.
    let models = Arc::new(ModelStore::open(&dir.join("models")).map_err(failed)?);
    let hash = models.add_weights(&weights).map_err(failed)?;
    let (sink, mut taken) = WorkSink::new(p.per_round + 1);
    let kind = InferKind::new(models.clone(), Some(sink), None);
    let key = DurableKey::new("bench/classify/0").map_err(failed)?;
    let spec = ActorSpec {
        job: "bench".into(),
        stage: "classify".into(),
        index: 0,
        kind: "infer".into(),
        config: format!(
            r#"{{"model":"{}","max_batch":{}}}"#,
            plexus::ml::hex(&hash),
            p.batch
        ),
        outputs: vec![],
    };
    let empty = Snapshot {
        schema_version: 0,
        bytes: vec![],
    };
    let mut code = kind.build(&key, &spec, &empty).map_err(failed)?;
    let inputs = || -> Vec<Input> {
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| Input {
                from: None,
                seq: i as u64 + 1,
                payload: r.clone(),
                trace: None,
            })
            .collect()
    };
    // Both compute the same logits.
    let bare_logits = model.infer(&images, &device);
    let applied = code.apply(inputs(), false).map_err(failed)?;
    for (reply, want) in applied.replies.iter().zip(&bare_logits) {
        let bytes = match reply {
            Some(Ok(b)) => b,
            other => return Err(failed(format!("the executor answered {other:?}"))),
        };
        let got = executor::decode_output(bytes).map_err(failed)?;
        if got != *want {
            return Err(failed("the executor's logits differ from the bare pass's"));
        }
    }
    while taken.try_recv().is_ok() {}
    let (mut bare, mut exec) = (Vec::new(), Vec::new());
    for _ in 0..p.rounds {
        let start = Instant::now();
        for _ in 0..p.per_round {
            std::hint::black_box(model.infer(std::hint::black_box(&images), &device));
        }
        bare.push(start.elapsed().as_nanos() as f64 / p.per_round as f64);
        let batches: Vec<Vec<Input>> = (0..p.per_round).map(|_| inputs()).collect();
        let start = Instant::now();
        for batch in batches {
            std::hint::black_box(code.apply(batch, false).map_err(failed)?);
        }
        exec.push(start.elapsed().as_nanos() as f64 / p.per_round as f64);
        let mut passes = 0;
        while taken.try_recv().is_ok() {
            passes += 1;
        }
        if passes != p.per_round {
            return Err(failed(format!(
                "{passes} passes reached the work service, not {}",
                p.per_round
            )));
        }
    }
    let (bare, exec) = (median(bare), median(exec));
    let overhead = (exec - bare) / bare * 100.0;
    println!(
        "  bare burn pass            {:>9.1} µs/pass  {:>8.0} img/s",
        bare / 1e3,
        p.batch as f64 / bare * 1e9
    );
    println!(
        "  infer executor pass       {:>9.1} µs/pass  {:>8.0} img/s  overhead {overhead:+.1}% (target ≤ 5%)",
        exec / 1e3,
        p.batch as f64 / exec * 1e9
    );

    // Signing the receipt happens on the work service, off the request path.
    let node_key = NodeKey::from_seed([9; 32]);
    let outputs: Vec<[u8; executor::OUTPUT_BYTES]> =
        bare_logits.iter().map(executor::encode_output).collect();
    let receipt = Receipt {
        version: RECEIPT_VERSION,
        network: [0; 32],
        epoch: 1,
        worker: node_key.node_id(),
        seq: 1,
        job: "bench".into(),
        executor: key.to_string(),
        model: hash,
        inputs: items_digest(&requests),
        outputs: items_digest(&outputs),
        batch: p.batch as u32,
        backend: plexus::hosting::infer::backend_of(&engine),
        started_us: 0,
        took_us: 0,
    };
    let n = p.rounds * p.per_round / 4 + 1;
    let start = Instant::now();
    let mut signed: Option<SignedReceipt> = None;
    for _ in 0..n {
        signed = Some(receipt.clone().sign(&node_key).map_err(failed)?);
    }
    let sign = start.elapsed().as_nanos() as f64 / n as f64;
    signed
        .ok_or_else(|| failed("nothing signed"))?
        .verify()
        .map_err(failed)?;
    println!(
        "  receipt signing           {:>9.1} µs/pass  (work service, off the request path)",
        sign / 1e3
    );

    // 2. PyTorch.
    match torch_python() {
        Some(python) => torch(dir, &python, &weights, &images, &bare_logits, bare, p)?,
        None => println!(
            "  pytorch                   not found (set PLEXUS_TORCH_PYTHON to a Python with torch)"
        ),
    }

    // 3. Verification.
    let again = plexus::work::recompute(&models, &engine, &receipt, &requests)
        .ok_or_else(|| failed("the verifier could not re-execute the receipt"))?;
    if again != receipt.outputs {
        return Err(failed("the verifier computed other outputs"));
    }
    let n = p.rounds * p.per_round / 4 + 1;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(plexus::work::recompute(
            &models, &engine, &receipt, &requests,
        ));
    }
    let verify = start.elapsed().as_nanos() as f64 / n as f64;
    let extra = SAMPLE_RATE * VERIFIERS * verify;
    println!(
        "  re-execution of a receipt {:>9.1} µs  (model loaded by hash each time)",
        verify / 1e3
    );
    println!(
        "  verification share        {:>9.1} %  of all compute at sample rate {SAMPLE_RATE}, {VERIFIERS} verifiers",
        extra / (exec + sign + extra) * 100.0
    );

    // 4. Dynamic batching through a node.
    let mut images_per_s = Vec::new();
    for (label, max_batch, wait) in [("on (32, 2 ms)", 32, 2), ("off (1)", 1, 0)] {
        let rate = through_a_node(
            &dir.join(format!("node-{max_batch}")),
            &weights,
            p,
            max_batch,
            wait,
        )?;
        println!("  node, batching {label:<14}{rate:>9.0} img/s");
        images_per_s.push(rate);
    }
    println!(
        "  batching speed-up         {:>9.2}×",
        images_per_s[0] / images_per_s[1]
    );
    Ok(())
}

fn torch_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PLEXUS_TORCH_PYTHON").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/plexus/torch-venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn torch(
    dir: &Path,
    python: &Path,
    weights: &Weights,
    images: &[Image],
    want: &[[f32; 10]],
    bare: f64,
    p: &Params,
) -> Result<(), CliError> {
    // Where cargo runs it from; the compiled-in path is stale if the checkout moved.
    let script = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("peers/torch/digits_mlp.py");
    let named: serde_json::Map<String, serde_json::Value> = weights
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                serde_json::json!({ "shape": t.shape, "values": t.values }),
            )
        })
        .collect();
    let batch: Vec<Vec<f32>> = images.iter().map(|im| im.to_vec()).collect();
    for threads in [1, 2] {
        let spec = dir.join(format!("torch-{threads}.json"));
        let body = serde_json::json!({
            "weights": named,
            "batch": batch,
            "iters": p.rounds * p.per_round,
            "threads": threads,
        });
        std::fs::write(&spec, serde_json::to_vec(&body).map_err(failed)?).map_err(failed)?;
        let out = Command::new(python)
            .arg(&script)
            .arg(&spec)
            .output()
            .map_err(failed)?;
        if !out.status.success() {
            return Err(failed(format!(
                "the torch peer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(failed)?;
        let logits: Vec<Vec<f32>> = serde_json::from_value(v["logits"].clone()).map_err(failed)?;
        let diff = logits
            .iter()
            .zip(want)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        if logits.len() != want.len() || diff > 1e-3 {
            return Err(failed(format!(
                "torch computed other logits (max difference {diff})"
            )));
        }
        let ns = v["median_ns"].as_f64().unwrap_or(f64::NAN);
        println!(
            "  pytorch {} {threads} thread{}    {:>9.1} µs/pass  {:>8.0} img/s  burn/torch time {:.2}×  (logits within {diff:.1e})",
            v["torch"].as_str().unwrap_or("?"),
            if threads == 1 { " " } else { "s" },
            ns / 1e3,
            p.batch as f64 / ns * 1e9,
            bare / ns
        );
        if let Some(fwd) = v["forward_ns"].as_f64() {
            println!(
                "  pytorch forward only, {threads} thr  {:>9.1} µs/pass  {:>8.0} img/s  burn/torch time {:.2}×  (tensor built beforehand, logits not read back)",
                fwd / 1e3,
                p.batch as f64 / fwd * 1e9,
                bare / fwd
            );
        }
    }
    Ok(())
}

/// Images a second through one `plexus node`'s `/v1/infer`, from 8 concurrent
/// clients of 8 images a call.
fn through_a_node(
    dir: &Path,
    weights: &Weights,
    p: &Params,
    max_batch: u32,
    max_wait_ms: u64,
) -> Result<f64, CliError> {
    std::fs::create_dir_all(dir).map_err(failed)?;
    let exe = std::env::current_exe().map_err(failed)?;
    let options = LocalOptions {
        nodes: 1,
        ..LocalOptions::default()
    };
    let mut cluster =
        LocalCluster::start_with(dir, || plexus_benches::node_command(&exe), &options)?;
    let model = digits::add_model(&cluster, weights)?;
    digits::deploy_job(
        &cluster,
        &digits::job_with(&model, 1, max_batch, max_wait_ms),
    )?;
    let cases = digits::cases(weights)?;
    let all: Vec<digits::Case> = cases.iter().cycle().take(p.images).cloned().collect();
    // Warm up, then measure.
    digits::classify(&cluster, &model, &all[..all.len().min(64)], 8, 8, &[])?;
    let t = digits::classify(&cluster, &model, &all, 8, 8, &[])?;
    cluster.stop();
    if t.answered != t.sent || t.wrong != 0 {
        return Err(failed(format!(
            "{} of {} answered, {} wrong",
            t.answered, t.sent, t.wrong
        )));
    }
    Ok(t.answered as f64 / t.took.as_secs_f64())
}
