//! `plexus demo` and `plexus up`.
//!
//! The demo is the README's main job: a 4-node cluster of real `plexus node`
//! processes on loopback, a three-stage pipeline of durable actors deployed through
//! the scheduler, client traffic into it, a live migration of a stateful stage while
//! traffic flows, and a node killed with SIGKILL whose actors the scheduler restores
//! elsewhere from their replicated snapshots; a threshold-signed checkpoint of the
//! epoch the kill fell in; then the digits classifier trained, served by an `infer`
//! stage that migrates while it classifies, and its receipts audited (`--cheat`:
//! one node signs wrong outputs and is caught); then the model stored sealed in the
//! cluster's storage, a node holding a copy killed, the copies repaired back to r and
//! the model read back intact. It ends with the message count line
//! `sent: N delivered: N lost: 0`, and exits non-zero if anything was lost or
//! applied twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plexus_scheduler::protocol::Request;

use super::CliError;
use super::client::{CLIENT_KEY_FILE, client_key};
use super::keys;
use super::local::{
    LocalCluster, Settled, WORDS, admit_node, admit_submitter, in_scratch_dir, node_key, wait_until,
};

/// The demo's job.
pub const DEMO_JOB: &str = r#"name = "demo"
durability = 3
[resources]
cpu = "500m"
memory = "64MiB"

[[stage]]
name = "ingest"
kind = "relay"
to = ["count"]
replicas = 2

[[stage]]
name = "count"
kind = "word-count"
to = ["tally"]
replicas = 2

[[stage]]
name = "tally"
kind = "tally"
"#;

/// `plexus up`: a single-node dev cluster on embedded defaults.
pub async fn up(
    data_dir: Option<PathBuf>,
    api: String,
    epoch_length: Duration,
    log: &str,
) -> Result<(), CliError> {
    let dir = data_dir.unwrap_or_else(crate::config::default_data_dir);
    let net = dir.join("network");
    let key = node_key(&dir)?;
    let client = client_key(&dir.join(CLIENT_KEY_FILE))?;
    if !net.join(keys::ALLOWLIST_FILE).exists() {
        keys::network_init(Some(net.clone()), "dev")?;
        let (k, v) = crate::epochs::VALIDATOR_TAG;
        admit_node(
            &net,
            &key,
            vec!["dev".into(), format!("{k}={v}")],
            "plexus up".into(),
            None,
        )?;
        admit_submitter(&net, &client, "local client")?;
    }
    let config = dir.join("up.toml");
    if !config.exists() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // A dev committee of one: this node, with epochs from now (60 s unless
        // asked otherwise).
        let genesis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| CliError::Failed(e.to_string()))?
            .as_millis();
        // The dashboard's actions are signed with the local client key.
        let text = format!(
            "listen = [\"/ip4/127.0.0.1/tcp/0\"]\napi_operator_key = \"{}\"\n\
             [resources]\ncpu = {cores}\nmemory = \"4GiB\"\n\
             [epochs]\ngenesis_unix_ms = {genesis}\nlength = \"{}ms\"\ndkg_round = \"5s\"\n",
            dir.join(CLIENT_KEY_FILE).display(),
            epoch_length.as_millis()
        );
        keys::write_file(&config, text.as_bytes())?;
    }
    eprintln!(
        "dev cluster: data in {}, API on http://{api}; client key {}",
        dir.display(),
        dir.join(CLIENT_KEY_FILE).display()
    );
    super::daemon::run(
        super::daemon::NodeArgs {
            config: Some(config),
            data_dir: Some(dir),
            api: Some(api),
            print_dashboard: true,
            ..super::daemon::NodeArgs::default()
        },
        log,
    )
    .await
}

/// Every actor of the job active on a live node; returns the actor → node map.
fn all_active(cluster: &LocalCluster) -> Option<Vec<(String, String)>> {
    let nodes = &cluster.nodes;
    let status = cluster.status()?;
    let live: Vec<&str> = nodes
        .iter()
        .filter(|n| n.alive())
        .map(|n| n.id.as_str())
        .collect();
    let actors = status.get("actors")?.as_array()?;
    let placed: Vec<(String, String)> = actors
        .iter()
        .filter(|a| a["job"].as_str() == Some("demo"))
        .map(|a| {
            (
                a["key"].as_str().unwrap_or_default().to_string(),
                a["node"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let ok = placed.len() == 5
        && actors
            .iter()
            .filter(|a| a["job"].as_str() == Some("demo"))
            .all(|a| {
                a["active"].as_bool() == Some(true)
                    && live.contains(&a["node"].as_str().unwrap_or_default())
            });
    // Double-check with the hosts themselves: each actor active on exactly one node.
    let ok = ok
        && placed.iter().all(|(key, _)| {
            nodes
                .iter()
                .filter_map(|n| n.durable())
                .filter(|s| s["actors"].get(key.as_str()).is_some())
                .count()
                == 1
        });
    ok.then_some(placed)
}

fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// The demo's epoch length: short, so a checkpoint covering the kill is signed
/// within the demo's run.
const DEMO_EPOCH: Duration = Duration::from_secs(10);

/// Anvil's well-known development keys (its default mnemonic), one per node.
pub const ANVIL_KEYS: [&str; 4] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// `plexus demo`: with `chain`, checkpoints are anchored on a local anvil.
/// With `cheat`, node 4 signs wrong outputs for every forward pass it runs.
pub fn run(messages: u64, keep: bool, chain: bool, cheat: bool) -> Result<(), CliError> {
    in_scratch_dir("demo", keep, |dir| demo(dir, messages, chain, cheat, keep))
}

/// `--keep`: the cluster stays up for a person to look at until Ctrl-C.
fn keep_up(cluster: &LocalCluster) -> Result<(), CliError> {
    let Some(node) = cluster.nodes.iter().find(|n| n.alive()) else {
        return Ok(());
    };
    say!(
        "the cluster stays up (--keep): open {} ; Ctrl-C stops it",
        node.dashboard_url()
    );
    // The demo runs on the CLI runtime's blocking pool: wait there.
    let waited = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(tokio::signal::ctrl_c()),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Failed(e.to_string()))?
            .block_on(tokio::signal::ctrl_c()),
    };
    waited.map_err(|e| CliError::Failed(e.to_string()))
}

/// The demo's audit sample rate: high, so that a short run samples enough.
const DEMO_SAMPLE_RATE: f64 = 0.5;
/// The node (1-based) that cheats with `--cheat`; never the one killed.
const CHEATER: usize = 4;

fn demo(dir: &Path, messages: u64, chain: bool, cheat: bool, keep: bool) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::Failed(e.to_string()))?;
    let t0 = Instant::now();
    say!(
        "== plexus demo: 4 nodes on 127.0.0.1, pipeline ingest -> count -> tally, epochs of {} s, \
         then a digits classifier, then the model in sealed, replicated storage",
        DEMO_EPOCH.as_secs()
    );
    // The model: trained here, by the project's own code, on the bundled data.
    let trained_in = Instant::now();
    let data = plexus_ml::digits::Digits::bundled().map_err(|e| CliError::Failed(e.to_string()))?;
    let trained = plexus_ml::train::train(&plexus_ml::train::TrainConfig::default(), &data)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    say!(
        "trained the digits classifier in {:.1} s: held-out accuracy {:.1}% ({}/{}), weights {}",
        trained_in.elapsed().as_secs_f64(),
        trained.accuracy() * 100.0,
        trained.correct,
        trained.held_out,
        &plexus_ml::hex(&trained.hash)[..16]
    );

    let anvil = if chain {
        Some(super::anvil::Anvil::start()?)
    } else {
        None
    };
    if let Some(a) = &anvil {
        say!("chain: anvil at {} (Prague, EIP-2537)", a.url);
    }
    let options = super::local::LocalOptions {
        nodes: 4,
        epochs: Some(super::local::LocalEpochs {
            length: DEMO_EPOCH,
            genesis_in: Duration::from_secs(6),
            chain: anvil.as_ref().map(|a| {
                (
                    a.url.clone(),
                    ANVIL_KEYS.iter().map(|k| k.to_string()).collect(),
                )
            }),
        }),
        observers: 0,
        workers: 0,
        work: Some(super::local::LocalWork {
            sample_rate: DEMO_SAMPLE_RATE,
            verifiers: 2,
            cheat: cheat.then_some(CHEATER),
        }),
        ..super::local::LocalOptions::default()
    };
    let mut cluster = LocalCluster::start_with(dir, || Command::new(&exe), &options)?;
    say!(
        "dashboard (watch the cluster live): {}",
        cluster.nodes[0].dashboard_url()
    );

    // Deploy, signed by the client key.
    let deploy_start = Instant::now();
    cluster.deploy(DEMO_JOB)?;
    let (placed, _) = wait_until(
        "the job's 5 actors to start",
        Duration::from_secs(60),
        || all_active(&cluster),
    )?;
    say!(
        "deployed `demo` in {:.2} s: {}",
        deploy_start.elapsed().as_secs_f64(),
        placed
            .iter()
            .map(|(k, n)| format!("{k}@{}", short(n)))
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Traffic, with a live migration a third of the way in and a node killed at
    // two thirds.
    let ingest = ["demo/ingest/0", "demo/ingest/1"];
    let batch = 50u64;
    let mut sent = 0u64;
    let mut migrated = None;
    let mut killed: Option<(usize, Instant)> = None;
    let mut killed_at_ms = 0u64;
    let mut failover = None;
    let mut word = 0usize;
    let traffic_start = Instant::now();
    while sent < messages {
        let n = batch.min(messages - sent);
        let texts: Vec<String> = (0..n)
            .map(|_| {
                word += 7;
                format!(
                    "{} {}",
                    WORDS[word % WORDS.len()],
                    WORDS[(word / 3) % WORDS.len()]
                )
            })
            .collect();
        let to = ingest[(sent / batch) as usize % ingest.len()];
        let answer = cluster.nodes[0].api.post(
            "/v1/send",
            &serde_json::json!({ "actor": to, "messages": texts }),
        );
        match answer {
            Ok(v) => sent += v["accepted"].as_u64().unwrap_or(0),
            Err(_) => {
                // The session is full: wait for acks.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        if migrated.is_none() && sent >= messages / 3 {
            migrated = Some(migrate_count(&cluster)?);
        }
        if killed.is_none() && sent >= 2 * messages / 3 {
            let status = cluster.status().unwrap_or_default();
            let nodes = &mut cluster.nodes;
            // Kill a node other than the one taking the traffic, hosting the most.
            let victim = (1..3)
                .max_by_key(|&i| {
                    status["actors"].as_array().map_or(0, |a| {
                        a.iter()
                            .filter(|x| x["node"].as_str() == Some(nodes[i].id.as_str()))
                            .count()
                    })
                })
                .unwrap_or(2);
            nodes[victim].kill();
            say!(
                "killed node {} ({}) with SIGKILL after {sent} messages",
                victim + 1,
                short(&nodes[victim].id)
            );
            killed = Some((victim, Instant::now()));
            killed_at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
        }
        if let Some((_, at)) = killed
            && failover.is_none()
            && all_active(&cluster).is_some()
        {
            failover = Some(at.elapsed());
        }
        // About 500 messages a second, so the migration and the kill happen
        // while traffic flows.
        std::thread::sleep(Duration::from_millis(100));
    }
    say!(
        "sent {sent} messages in {:.1} s",
        traffic_start.elapsed().as_secs_f64()
    );
    if failover.is_none() && killed.is_some() {
        let (_, took) = wait_until(
            "the lost actors to be restored",
            Duration::from_secs(60),
            || all_active(&cluster),
        )?;
        failover = killed.map(|(_, at)| at.elapsed().max(took));
    }
    if let Some(f) = failover {
        say!(
            "restored every actor of the killed node elsewhere {:.2} s after the kill",
            f.as_secs_f64()
        );
    }

    // Every message acknowledged, then count what the sink holds.
    let Settled {
        sent,
        acked,
        delivered,
        out_of_order,
    } = cluster.settle("demo/tally/0", sent)?;
    let lost = sent.saturating_sub(delivered);
    let duplicated = delivered.saturating_sub(sent) + out_of_order;
    if let Some((actor, from, to, took)) = &migrated {
        say!(
            "live migration of {actor}: {} -> {} in {:.2} s end to end",
            short(from),
            short(to),
            took.as_secs_f64()
        );
    }
    let pauses: Vec<u64> = cluster
        .nodes
        .iter()
        .filter_map(|n| n.durable())
        .flat_map(|s| {
            s["migration_pauses_us"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_u64())
        .collect();
    if !pauses.is_empty() {
        let ms: Vec<String> = pauses
            .iter()
            .map(|us| format!("{:.1}", *us as f64 / 1000.0))
            .collect();
        say!("migration hand-off pauses (ms): {}", ms.join(", "));
    }
    let digits = digits_part(&cluster, &trained.weights, cheat);
    let checkpoint = epochs_part(
        &cluster,
        killed.map(|(v, _)| v),
        killed_at_ms,
        anvil.as_ref(),
    );
    let audit = match &digits {
        Ok(_) => audit_part(&cluster, cheat),
        Err(e) => Err(CliError::Failed(format!("the digits part failed: {e}"))),
    };
    let storage = storage_part(&mut cluster, dir, &trained.weights);
    say!(
        "acked {acked}, duplicates {duplicated}, total time {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    if keep {
        keep_up(&cluster)?;
    }
    cluster.stop();
    drop(anvil);
    checkpoint?;
    digits?;
    audit?;
    storage?;
    say!("sent: {sent} delivered: {delivered} lost: {lost}");
    if lost > 0 || duplicated > 0 {
        return Err(CliError::Failed(format!(
            "{lost} messages lost, {duplicated} duplicated"
        )));
    }
    Ok(())
}

/// Moves `demo/count/0` to a live node other than its host; returns what moved and
/// how long the request took to complete.
fn migrate_count(cluster: &LocalCluster) -> Result<(String, String, String, Duration), CliError> {
    let actor = "demo/count/0";
    let nodes = &cluster.nodes;
    let status = cluster
        .status()
        .ok_or_else(|| CliError::Failed("no scheduler status".into()))?;
    let from = status["actors"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"].as_str() == Some(actor)))
        .and_then(|x| x["node"].as_str())
        .unwrap_or_default()
        .to_string();
    let to = nodes
        .iter()
        .filter(|n| n.alive() && n.id != from)
        .map(|n| n.id.clone())
        .next_back()
        .ok_or_else(|| CliError::Failed("no node to migrate to".into()))?;
    let start = Instant::now();
    cluster.ask(Request::Migrate {
        actor: actor.into(),
        to: to.parse().map_err(|e| CliError::Failed(format!("{e}")))?,
    })?;
    let (_, _) = wait_until("the migration", Duration::from_secs(30), || {
        let s = nodes.iter().find(|n| n.id == to)?.durable()?;
        s["actors"].get(actor).map(|_| ())
    })?;
    let took = start.elapsed();
    say!(
        "migrated {actor} live: {} -> {} ({:.2} s from request to serving)",
        short(&from),
        short(&to),
        took.as_secs_f64()
    );
    Ok((actor.to_string(), from, to, took))
}

/// Waits for a checkpoint of the epoch after the kill to be signed and final on
/// the ledger, verifies it against the group key another node reports (and, on a
/// chain, that the contract holds its hash), and prints it.
fn epochs_part(
    cluster: &LocalCluster,
    victim: Option<usize>,
    killed_at_ms: u64,
    anvil: Option<&super::anvil::Anvil>,
) -> Result<(), CliError> {
    use plexus_epochs::checkpoint::{SignedCheckpoint, hex};
    let genesis = cluster.genesis_unix_ms.unwrap_or(0);
    let length = DEMO_EPOCH.as_millis() as u64;
    // The first epoch that ends after the kill covers it.
    let target = killed_at_ms.saturating_sub(genesis) / length;
    let live: Vec<&super::local::LocalNode> = cluster.nodes.iter().filter(|n| n.alive()).collect();
    let reporter = live
        .first()
        .ok_or_else(|| CliError::Failed("no live node".into()))?;
    let pinner = live
        .last()
        .ok_or_else(|| CliError::Failed("no live node".into()))?;
    let (row, took) = wait_until(
        &format!("epoch {target}'s checkpoint to be final on the ledger"),
        DEMO_EPOCH * 4,
        || {
            let status = reporter.api.get("/v1/epochs").ok()?;
            status["epochs"]
                .as_array()?
                .iter()
                .find(|r| {
                    r["epoch"].as_u64() >= Some(target) && r["state"].as_str() == Some("final")
                })
                .cloned()
        },
    )?;
    let epoch = row["epoch"].as_u64().unwrap_or(target);
    let c = reporter.api.get(&format!("/v1/epochs/{epoch}"))?;
    let bytes = super::client::from_hex(c["export"].as_str().unwrap_or_default())
        .ok_or_else(|| CliError::Failed("bad export".into()))?;
    let signed = SignedCheckpoint::decode(&bytes).map_err(|e| CliError::Failed(e.to_string()))?;
    // The key to trust comes from another node's own DKG output, not the checkpoint.
    let pinned_hex = pinner.api.get("/v1/epochs")?["group_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pinned = super::client::from_hex(&pinned_hex)
        .ok_or_else(|| CliError::Failed("no group key".into()))?;
    signed
        .verify(Some(&pinned))
        .map_err(|e| CliError::Failed(format!("the checkpoint does not verify: {e}")))?;
    let status = reporter.api.get("/v1/epochs")?;
    say!(
        "checkpoint of epoch {epoch} signed by {} of {} (threshold {}), final on the {} ledger (waited {:.1} s); verified against the group key {}…",
        signed.signers.len(),
        signed.checkpoint.committee.len(),
        status["threshold"],
        status["ledger"].as_str().unwrap_or("?"),
        took.as_secs_f64(),
        &pinned_hex[..16.min(pinned_hex.len())],
    );
    if let Some(a) = anvil {
        let ledger = status["ledger"].as_str().unwrap_or_default();
        let address = ledger
            .rsplit(' ')
            .next()
            .and_then(super::client::from_hex)
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .ok_or_else(|| CliError::Failed(format!("no contract address in `{ledger}`")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let on_chain = runtime
            .block_on(plexus_ledger_bridge::deploy::anchored_hash(
                &a.url, address, epoch,
            ))
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let hash = signed.hash().map_err(|e| CliError::Failed(e.to_string()))?;
        if on_chain != Some(hash) {
            return Err(CliError::Failed(format!(
                "the contract does not hold epoch {epoch}'s hash"
            )));
        }
        say!(
            "the contract at 0x{} verified the threshold signature on chain and holds hash {}",
            hex(&address),
            hex(&hash)
        );
    }
    if let Some(v) = victim {
        let id: plexus_actors::NodeId = cluster.nodes[v]
            .id
            .parse()
            .map_err(|e| CliError::Failed(format!("{e}")))?;
        let row = signed
            .checkpoint
            .row(&id)
            .ok_or_else(|| CliError::Failed("the killed node has no row".into()))?;
        say!(
            "killed node {} ({}): availability {:.1}% in epoch {epoch}, reward {} units",
            v + 1,
            short(&cluster.nodes[v].id),
            row.availability_ppm as f64 / 10_000.0,
            row.reward_units
        );
    }
    Ok(())
}

/// Deploys the classifier, classifies the held-out images while the executor
/// moves (to the cheater, with `cheat`), and prints accuracy and throughput.
fn digits_part(
    cluster: &LocalCluster,
    weights: &plexus_ml::model::Weights,
    cheat: bool,
) -> Result<(), CliError> {
    use super::digits;
    let model = digits::add_model(cluster, weights)?;
    let at = digits::deploy(cluster, &model)?;
    say!(
        "deployed `digits` (an infer stage, model {}…) on {}; every live node holds the weights",
        &model[..16],
        short(&at)
    );
    let cases = digits::cases(weights)?;
    // Move the executor mid-traffic: to the cheater, or to another live node.
    let to = if cheat {
        CHEATER - 1
    } else {
        (0..cluster.nodes.len())
            .rev()
            .find(|&i| cluster.nodes[i].alive() && cluster.nodes[i].id != at)
            .unwrap_or(0)
    };
    let t = digits::classify(cluster, &model, &cases, 4, 4, &[to])?;
    for (from, to, took) in &t.moves {
        say!(
            "migrated {} live under load: {} -> {} in {:.2} s",
            digits::EXECUTOR,
            short(from),
            short(to),
            took.as_secs_f64()
        );
    }
    let lost = t.sent.saturating_sub(t.answered);
    say!(
        "classified {} held-out images in {:.2} s ({:.0} images/s): accuracy {:.1}% ({}/{}), \
         answered {}, lost {lost}, {} answers differ from the model run here",
        t.sent,
        t.took.as_secs_f64(),
        t.sent as f64 / t.took.as_secs_f64().max(1e-9),
        100.0 * t.correct as f64 / t.answered.max(1) as f64,
        t.correct,
        t.answered,
        t.answered,
        t.wrong,
    );
    if lost > 0 {
        return Err(CliError::Failed(format!("{lost} requests got no answer")));
    }
    if !cheat && t.wrong > 0 {
        return Err(CliError::Failed(format!(
            "{} answers differ from the model's outputs",
            t.wrong
        )));
    }
    Ok(())
}

/// Waits for the beacons and the re-executions, and prints the audit's verdict.
fn audit_part(cluster: &LocalCluster, cheat: bool) -> Result<(), CliError> {
    let cheater = cheat.then(|| cluster.nodes[CHEATER - 1].id.clone());
    let a = super::digits::audit(cluster, 0, cheater.as_deref(), DEMO_EPOCH * 4)?;
    say!(
        "receipts: {} signed, {} sampled by the checkpoint beacons ({:.0}%), {} verified by \
         re-execution, {} not verified, disputes {} (waited {:.1} s)",
        a.receipts,
        a.sampled,
        DEMO_SAMPLE_RATE * 100.0,
        a.verified,
        a.unverified,
        a.evidence.len(),
        a.waited.as_secs_f64()
    );
    for (against, epoch, kind) in &a.evidence {
        say!(
            "evidence: {kind} against {} in epoch {epoch}",
            short(against)
        );
    }
    if a.unverified > 0 {
        say!(
            "({} sampled receipts stay unverified: no verifier chosen for them could vouch, \
             being dead or proven wrong)",
            a.unverified
        );
    }
    match cheater.clone() {
        None => {
            if !a.evidence.is_empty() || a.verified == 0 {
                return Err(CliError::Failed(format!(
                    "{} disputes and {} verified receipts in an honest run",
                    a.evidence.len(),
                    a.verified
                )));
            }
        }
        Some(c) => {
            let caught = a.evidence.iter().any(|(n, _, _)| *n == c);
            let framed: Vec<&String> = a
                .evidence
                .iter()
                .map(|(n, _, _)| n)
                .filter(|n| **n != c)
                .collect();
            if !caught || !framed.is_empty() {
                return Err(CliError::Failed(format!(
                    "the cheater was {}caught; honest nodes accused: {}",
                    if caught { "" } else { "not " },
                    framed.len()
                )));
            }
            say!(
                "node {CHEATER} ({}) signed wrong outputs and was caught by re-execution: its work \
                 earns nothing this epoch",
                short(&c)
            );
        }
    }
    // Two epochs later the signed checkpoints credit the verified work.
    let credits = match super::digits::credits(cluster, 0, DEMO_EPOCH * 4) {
        Ok(c) => c,
        Err(e) => {
            // An epoch with no checkpoint pays nobody: nothing to show, and
            // nothing wrong with what was shown above.
            say!("no credits to show: {e}");
            Vec::new()
        }
    };
    for c in &credits {
        say!(
            "checkpoint {} credits {} with {} work units for epoch {} (its tally here: {})",
            c.epoch + plexus_epochs::work::WORK_LAG,
            short(&c.node),
            c.credited,
            c.epoch,
            c.tallied
        );
    }
    if let Some(c) = credits
        .iter()
        .find(|c| Some(&c.node) == cheater.as_ref() && c.credited > 0)
    {
        return Err(CliError::Failed(format!(
            "checkpoint {} pays the cheater {} work units",
            c.epoch + plexus_epochs::work::WORK_LAG,
            c.credited
        )));
    }
    Ok(())
}

/// Stores the trained model sealed in the cluster's storage, kills a node holding
/// a copy, waits for the copies to be repaired back to r on the others, and reads
/// the model back through another node, checked against its hash.
fn storage_part(
    cluster: &mut LocalCluster,
    dir: &Path,
    weights: &plexus_ml::model::Weights,
) -> Result<(), CliError> {
    use super::fs;
    let live: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&i| cluster.nodes[i].alive())
        .collect();
    // r = live - 1, so a holder can die and leave room to repair back to r.
    let r = u8::try_from(live.len().saturating_sub(1).clamp(1, 3)).unwrap_or(1);
    let file = dir.join("digits.weights");
    let bytes = weights
        .encode()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    std::fs::write(&file, &bytes).map_err(|e| CliError::Failed(e.to_string()))?;
    let identity = fs::identity_or_new(&dir.join("reader.age"))?;
    let gateway = live
        .first()
        .copied()
        .ok_or_else(|| CliError::Failed("no live node".into()))?;
    let stored = fs::store(
        &cluster.nodes[gateway].api,
        &file,
        &[identity.to_public()],
        false,
        Some(r),
        None,
    )?;
    let id = stored.id;
    let holders = |cluster: &LocalCluster| -> Option<(usize, Vec<String>)> {
        let s = cluster.nodes[gateway]
            .api
            .get(&format!("/v1/fs/files/{id}"))
            .ok()?;
        let min = usize::try_from(s["copies_min"].as_u64()?).ok()?;
        let mut all: Vec<String> = s["chunk_holders"]
            .as_array()?
            .iter()
            .flat_map(|c| c["holders"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        all.sort();
        all.dedup();
        Some((min, all))
    };
    let (copies, on) =
        holders(cluster).ok_or_else(|| CliError::Failed("the stored model has no stat".into()))?;
    say!(
        "stored the model sealed (XChaCha20-Poly1305, key wrapped to one age reader): \
         {id}, {} bytes, {copies} copies on {}",
        stored.size,
        on.iter().map(|n| short(n)).collect::<Vec<_>>().join(" ")
    );
    let victim = on
        .iter()
        .find_map(|h| {
            live.iter()
                .copied()
                .find(|&i| i != gateway && cluster.nodes[i].id == *h)
        })
        .ok_or_else(|| CliError::Failed("no holder to kill but the client's node".into()))?;
    let victim_id = cluster.nodes[victim].id.clone();
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    say!(
        "killed node {} ({}), a holder, with SIGKILL",
        victim + 1,
        short(&victim_id)
    );
    let want = usize::from(r);
    let ((_, now_on), _) = wait_until(
        "the model's copies to be repaired",
        Duration::from_secs(90),
        || holders(cluster).filter(|(min, on)| *min >= want && !on.contains(&victim_id)),
    )?;
    say!(
        "repaired back to {want} copies in {:.1} s: now on {}",
        killed.elapsed().as_secs_f64(),
        now_on
            .iter()
            .map(|n| short(n))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let back = dir.join("digits.back");
    let reader_node = live
        .iter()
        .copied()
        .rev()
        .find(|&i| cluster.nodes[i].alive())
        .unwrap_or(gateway);
    let reader = || fs::identity_or_new(&dir.join("reader.age"));
    fs::fetch(&cluster.nodes[reader_node].api, &id, &reader, Some(&back))?;
    let read = std::fs::read(&back).map_err(|e| CliError::Failed(e.to_string()))?;
    let same = plexus_ml::model::Weights::decode(&read)
        .map(|w| w.hash() == weights.hash())
        .unwrap_or(false);
    if read != bytes || !same {
        return Err(CliError::Failed(
            "the model read back from storage differs".into(),
        ));
    }
    say!(
        "read the model back through node {} and opened it: weights hash {}… matches",
        reader_node + 1,
        &plexus_ml::hex(&weights.hash())[..16]
    );
    Ok(())
}
