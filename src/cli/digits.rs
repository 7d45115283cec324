//! The digits part of `plexus demo`, and of its multi-process test: the bundled
//! classifier's weights added to every node through the API, an `infer` job
//! deployed through the scheduler, real held-out images classified by concurrent
//! clients while the executor migrates, each reply checked against the same model
//! run here, and the audit's verdict read back from the nodes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexus_ml::digits::Digits;
use plexus_ml::executor;
use plexus_ml::model::{Mlp, Weights, class};
use plexus_scheduler::protocol::Request;
use serde_json::Value;

use super::CliError;
use super::local::{LocalCluster, wait_until};

/// The job's name.
pub const JOB: &str = "digits";
/// The executor's key.
pub const EXECUTOR: &str = "digits/classify/0";

/// The classifier job: one `infer` stage serving `model`, in passes of up to 32
/// requests, a partial pass waiting up to 2 ms.
pub fn job(model_hex: &str) -> String {
    job_with(model_hex, 3, 32, 2)
}

/// The classifier job with its durability (copies of its request log) and
/// batching spelled out.
pub fn job_with(model_hex: &str, durability: u32, max_batch: u32, max_wait_ms: u64) -> String {
    format!(
        "name = \"{JOB}\"\ndurability = {durability}\n[resources]\ncpu = \"500m\"\nmemory = \"64MiB\"\n\n\
         [[stage]]\nname = \"classify\"\nkind = \"infer\"\n\
         config = {{ model = \"{model_hex}\", max_batch = {max_batch}, max_wait_ms = {max_wait_ms} }}\n"
    )
}

/// A held-out image: the request bytes, its label, and the class the honest model
/// gives it here.
#[derive(Clone, Debug)]
pub struct Case {
    /// The request.
    pub input: Vec<u8>,
    /// The data set's label.
    pub label: u8,
    /// What the model computes for it on this machine.
    pub expected: u8,
}

/// The held-out images, with the classes `weights` gives them here.
pub fn cases(weights: &Weights) -> Result<Vec<Case>, CliError> {
    let data = Digits::bundled().map_err(|e| CliError::Failed(e.to_string()))?;
    let device = plexus_ml::engine::Engine::flex().device().clone();
    let model = Mlp::from_weights(weights, &device).map_err(|e| CliError::Failed(e.to_string()))?;
    let test = data.test_indices();
    let inputs: Vec<Vec<u8>> = test
        .iter()
        .map(|i| executor::encode_input(&data.images[*i]).to_vec())
        .collect();
    let images: Vec<_> = inputs
        .iter()
        .map(|b| executor::decode_input(b))
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let logits = executor::run(&model, &images, &device);
    Ok(test
        .iter()
        .zip(inputs)
        .zip(logits)
        .map(|((i, input), l)| Case {
            input,
            label: data.labels[*i],
            expected: class(&l),
        })
        .collect())
}

/// Adds the weights to every live node; returns their hash (hex).
pub fn add_model(cluster: &LocalCluster, weights: &Weights) -> Result<String, CliError> {
    let bytes = weights
        .encode()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let want = plexus_ml::hex(&weights.hash());
    for node in cluster.nodes.iter().filter(|n| n.alive()) {
        let v = node.api.post_bytes("/v1/models", &bytes)?;
        if v["hash"].as_str() != Some(want.as_str()) {
            return Err(CliError::Failed(format!(
                "node {} named the model {}",
                node.id, v["hash"]
            )));
        }
    }
    Ok(want)
}

/// Where the executor is, by the scheduler, once active.
pub fn executor_node(cluster: &LocalCluster) -> Option<String> {
    let status = cluster.status()?;
    status["actors"]
        .as_array()?
        .iter()
        .find(|a| a["key"].as_str() == Some(EXECUTOR) && a["active"] == true)
        .and_then(|a| a["node"].as_str())
        .map(String::from)
}

/// Deploys the job; returns the executor's node once it serves.
pub fn deploy(cluster: &LocalCluster, model_hex: &str) -> Result<String, CliError> {
    deploy_job(cluster, &job(model_hex))
}

/// Deploys a classifier job ([`job_with`]); returns the executor's node once it serves.
pub fn deploy_job(cluster: &LocalCluster, job: &str) -> Result<String, CliError> {
    cluster.deploy(job)?;
    let (node, _) = wait_until("the executor to start", Duration::from_secs(60), || {
        executor_node(cluster)
    })?;
    Ok(node)
}

/// What the traffic did.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Images sent.
    pub sent: u64,
    /// Images answered with a class.
    pub answered: u64,
    /// Answers equal to the label.
    pub correct: u64,
    /// Answers that differ from what the model computes here (a cheat).
    pub wrong: u64,
    /// Calls retried because no request of theirs had been sent.
    pub retried: u64,
    /// How long it took.
    pub took: Duration,
    /// Migrations: from, to, how long from request to serving.
    pub moves: Vec<(String, String, Duration)>,
}

/// Sends every case through the executor (by model hash, through node 0's API)
/// from `clients` concurrent clients, `group` images per call; moves the executor
/// to each node of `moves` (indices) in turn, evenly spread through the traffic.
pub fn classify(
    cluster: &LocalCluster,
    model_hex: &str,
    cases: &[Case],
    clients: usize,
    group: usize,
    moves: &[usize],
) -> Result<Traffic, CliError> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // sent, answered, correct, retried, wrong
    let totals: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let api = cluster
        .nodes
        .iter()
        .find(|n| n.alive())
        .ok_or_else(|| CliError::Failed("no live node".into()))?
        .api
        .clone();
    let start = Instant::now();
    let mut traffic = Traffic::default();
    std::thread::scope(|scope| -> Result<(), CliError> {
        for _ in 0..clients.max(1) {
            let (next, done, totals, failure, api) = (
                next.clone(),
                done.clone(),
                totals.clone(),
                failure.clone(),
                api.clone(),
            );
            scope.spawn(move || {
                loop {
                    let from = next.fetch_add(group, Ordering::SeqCst);
                    if from >= cases.len() {
                        return;
                    }
                    let chunk = &cases[from..(from + group).min(cases.len())];
                    let body = serde_json::json!({
                        "target": model_hex,
                        "inputs": chunk.iter().map(|c| c.input.clone()).collect::<Vec<_>>(),
                    });
                    let mut tries = 0;
                    let answer = loop {
                        match api.post("/v1/infer", &body) {
                            Ok(v) => break v,
                            Err(_) if tries < 100 => {
                                // Refused before any request went out (no
                                // executor found yet): safe to send again.
                                tries += 1;
                                totals[3].fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            Err(e) => {
                                if let Ok(mut f) = failure.lock() {
                                    *f = Some(e.to_string());
                                }
                                return;
                            }
                        }
                    };
                    let outputs = answer["outputs"].as_array().cloned().unwrap_or_default();
                    totals[0].fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    for (case, out) in chunk.iter().zip(&outputs) {
                        let Some(c) = out["class"].as_u64() else {
                            continue;
                        };
                        totals[1].fetch_add(1, Ordering::Relaxed);
                        if c == u64::from(case.label) {
                            totals[2].fetch_add(1, Ordering::Relaxed);
                        }
                        if c != u64::from(case.expected) {
                            totals[4].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(chunk.len(), Ordering::SeqCst);
                }
            });
        }
        // Moves, evenly spread through the traffic, while it flows.
        for (k, &to) in moves.iter().enumerate() {
            let at = cases.len() * (k + 1) / (moves.len() + 1);
            while done.load(Ordering::SeqCst) < at && next.load(Ordering::SeqCst) < cases.len() {
                std::thread::sleep(Duration::from_millis(5));
            }
            traffic.moves.push(migrate(cluster, to)?);
        }
        Ok(())
    })?;
    if let Some(why) = failure.lock().ok().and_then(|f| f.clone()) {
        return Err(CliError::Failed(format!("a client gave up: {why}")));
    }
    traffic.sent = totals[0].load(Ordering::Relaxed);
    traffic.answered = totals[1].load(Ordering::Relaxed);
    traffic.correct = totals[2].load(Ordering::Relaxed);
    traffic.retried = totals[3].load(Ordering::Relaxed);
    traffic.wrong = totals[4].load(Ordering::Relaxed);
    traffic.took = start.elapsed();
    Ok(traffic)
}

/// Moves the executor to node `to` (an index); returns from, to, and how long.
pub fn migrate(cluster: &LocalCluster, to: usize) -> Result<(String, String, Duration), CliError> {
    let from = executor_node(cluster).unwrap_or_default();
    let target = cluster
        .nodes
        .get(to)
        .ok_or_else(|| CliError::Failed(format!("no node {to}")))?
        .id
        .clone();
    if from == target {
        return Ok((from, target, Duration::ZERO));
    }
    let start = Instant::now();
    cluster.ask(Request::Migrate {
        actor: EXECUTOR.into(),
        to: target
            .parse()
            .map_err(|e| CliError::Failed(format!("{e}")))?,
    })?;
    wait_until("the executor's migration", Duration::from_secs(30), || {
        (executor_node(cluster).as_deref() == Some(target.as_str())).then_some(())
    })?;
    Ok((from, target, start.elapsed()))
}

/// The audit's verdict, as one node sees it.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// Receipts of the job's work.
    pub receipts: u64,
    /// Of those, sampled by the beacons.
    pub sampled: u64,
    /// Sampled and confirmed by a verifier's re-execution.
    pub verified: u64,
    /// Sampled, not (yet) confirmed.
    pub unverified: u64,
    /// Per node proven wrong and epoch: the kind of evidence.
    pub evidence: Vec<(String, u64, String)>,
    /// Epochs whose beacon is known / that hold receipts.
    pub beacons: (u64, u64),
    /// How long the wait took.
    pub waited: Duration,
}

fn audit_of(v: &Value) -> Audit {
    let mut a = Audit::default();
    for e in v["epochs"].as_array().cloned().unwrap_or_default() {
        a.beacons.1 += 1;
        if e["beacon"] == true {
            a.beacons.0 += 1;
        }
        for w in e["workers"].as_array().cloned().unwrap_or_default() {
            a.receipts += w["receipts"].as_u64().unwrap_or(0);
            a.sampled += w["sampled"].as_u64().unwrap_or(0);
            a.verified += w["verified"].as_u64().unwrap_or(0);
            a.unverified += w["unverified"].as_u64().unwrap_or(0);
        }
    }
    for e in v["evidence"].as_array().cloned().unwrap_or_default() {
        a.evidence.push((
            e["against"].as_str().unwrap_or_default().to_string(),
            e["epoch"].as_u64().unwrap_or(0),
            e["kind"].as_str().unwrap_or_default().to_string(),
        ));
    }
    a
}

/// Waits (up to `limit`) until node `at` knows every epoch's beacon, `cheater` (if
/// one is expected) is proven wrong, and every sampled receipt is verified, or
/// the counts have stood still for longer than a fetch may take (a receipt whose
/// verifiers were a dead node and a proven cheater, whose word no longer counts,
/// stays unverified); returns the verdict.
pub fn audit(
    cluster: &LocalCluster,
    at: usize,
    cheater: Option<&str>,
    limit: Duration,
) -> Result<Audit, CliError> {
    let node = cluster
        .nodes
        .get(at)
        .ok_or_else(|| CliError::Failed(format!("no node {at}")))?;
    let start = Instant::now();
    let mut last = Audit::default();
    let mut still_since = Instant::now();
    let settle = crate::work::FETCH_TIMEOUT + Duration::from_secs(2);
    while start.elapsed() < limit {
        if let Ok(v) = node.api.get("/v1/receipts") {
            let now = audit_of(&v);
            if (now.receipts, now.sampled, now.verified, now.evidence.len())
                != (
                    last.receipts,
                    last.sampled,
                    last.verified,
                    last.evidence.len(),
                )
            {
                still_since = Instant::now();
            }
            last = now;
            let beacons = last.beacons.1 > 0 && last.beacons.0 == last.beacons.1;
            let caught = cheater.is_none_or(|c| last.evidence.iter().any(|(n, _, _)| n == c));
            let judged = last.unverified == 0 || still_since.elapsed() > settle;
            if beacons && caught && judged && last.sampled > 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    last.waited = start.elapsed();
    Ok(last)
}

/// One worker's verified work of one epoch, and what the checkpoint two epochs
/// later credits it.
#[derive(Clone, Debug)]
pub struct Credit {
    /// The epoch of the work.
    pub epoch: u64,
    /// The worker.
    pub node: String,
    /// Work units in node `at`'s own tally (0 if it holds evidence against it).
    pub tallied: u64,
    /// Work units checkpoint `epoch + WORK_LAG` credits it.
    pub credited: u64,
    /// That checkpoint's work root (hex).
    pub work_root: String,
}

/// The credit of every worker in node `at`'s tallies, once the checkpoints that
/// carry it are signed (waiting up to `limit` for them).
pub fn credits(
    cluster: &LocalCluster,
    at: usize,
    limit: Duration,
) -> Result<Vec<Credit>, CliError> {
    use plexus_epochs::work::WORK_LAG;
    let node = cluster
        .nodes
        .get(at)
        .ok_or_else(|| CliError::Failed(format!("no node {at}")))?;
    let receipts = node.api.get("/v1/receipts")?;
    let mut owed: Vec<(u64, String, u64)> = Vec::new();
    for e in receipts["epochs"].as_array().cloned().unwrap_or_default() {
        let epoch = e["epoch"].as_u64().unwrap_or(0);
        for w in e["workers"].as_array().cloned().unwrap_or_default() {
            let worker = w["node"].as_str().unwrap_or_default().to_string();
            owed.push((epoch, worker, w["work_units"].as_u64().unwrap_or(0)));
        }
    }
    let epochs: std::collections::BTreeSet<u64> = owed.iter().map(|(e, _, _)| *e).collect();
    let (checkpoints, _) = wait_until("the checkpoints crediting the work", limit, || {
        epochs
            .iter()
            .map(|e| {
                let c = node
                    .api
                    .get(&format!("/v1/epochs/{}", e.saturating_add(WORK_LAG)))
                    .ok()?;
                Some((*e, c))
            })
            .collect::<Option<std::collections::BTreeMap<u64, Value>>>()
    })?;
    Ok(owed
        .into_iter()
        .map(|(epoch, worker, tallied)| {
            let c = &checkpoints[&epoch];
            let credited = c["members"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["node"] == worker.as_str())
                .and_then(|m| m["work_units"].as_u64())
                .unwrap_or(0);
            Credit {
                epoch,
                node: worker,
                tallied,
                credited,
                work_root: c["work_root"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect())
}
