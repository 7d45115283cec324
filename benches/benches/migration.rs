//! Live migration and failover: the hand-off pause, p50 and p99, of a durable actor
//! carrying `--state-bytes` of state while it receives `--rate` messages a second,
//! over `--moves` live migrations between two nodes; then zero loss, checked at the
//! sink, and the time from a SIGKILL of the actor's host to the actor serving again
//! elsewhere.
//!
//! Three real `plexus node` processes on 127.0.0.1 (`plexus::cli::local`, the
//! cluster `plexus demo` runs). This binary is their program too: started with
//! `PLEXUS_BENCH_ROLE=node` it is the `plexus` command line, so the nodes run the
//! build being measured.
//!
//! `cargo bench -p plexus-benches --bench migration -- --state-bytes 1048576`
//! (defaults: `--state-bytes 1024 --rate 10000 --moves 40`; `--with-scheduler`
//! ends with the actor on the scheduler's host, so the SIGKILL takes both; `--keep`
//! leaves the node logs, whose `migrated` lines give each pause's drain part and
//! whether the handoff named the record by reference; `--whole` sends every
//! commit whole instead of as a patch of the previous record, the peer;
//! `--compare` runs patches, whole, patches, whole and prints both; `--cold`
//! turns warm standbys off, so the target restores during the pause, the peer
//! of `--compare-warm`, which runs warm, cold, warm, cold). Under `cargo test` it
//! runs as a smoke test: 3 moves at 200 msg/s of an actor with 10 MiB of state,
//! whose records cross the mesh in chunks (its frame bound is 8 MiB). No peer runs
//! here: Orleans and Akka publish no migration-pause figures, and no Rust actor
//! runtime migrates actors.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plexus::NodeId;
use plexus::cli::CliError;
use plexus::cli::client::ApiClient;
use plexus::cli::local::{LocalCluster, LocalOptions, Settled, WORDS, in_scratch_dir, wait_until};
use plexus_benches::flag;
use plexus_scheduler::{Rejection, Request};
use serde_json::Value;

struct Params {
    state_bytes: u64,
    rate: u64,
    moves: u32,
    /// End with the actor on the scheduler's host, so the kill takes both.
    with_scheduler: bool,
    /// Leave the nodes' data dirs and logs (their `migrated` lines break each
    /// pause down) and print where.
    keep: bool,
    /// Commits go whole (`[durable] patches = false`), the previous behaviour.
    whole: bool,
    /// Runs both ways, alternately, twice each.
    compare: bool,
    /// No warm standbys (`[durable] warm_handoffs = false`), the previous
    /// behaviour.
    cold: bool,
    /// Runs warm and cold, alternately, twice each.
    compare_warm: bool,
}

/// How a run's nodes commit and hand off.
#[derive(Clone, Copy)]
struct Mode {
    whole: bool,
    cold: bool,
}

impl Mode {
    fn name(self) -> &'static str {
        match (self.whole, self.cold) {
            (false, false) => "patches, warm",
            (true, false) => "whole, warm",
            (false, true) => "patches, cold",
            (true, true) => "whole, cold",
        }
    }
}

fn params(args: &[String]) -> Result<Params, String> {
    // `cargo bench` passes `--bench`; under `cargo test` the bench is a smoke test.
    let full = args.iter().any(|a| a == "--bench");
    // The smoke test carries 10 MiB, over the mesh's 8 MiB frame bound, so it also
    // checks that records cross in chunks between real processes.
    let (rate, moves, state_bytes) = if full {
        (10_000, 40, 1024)
    } else {
        (200, 3, 10 << 20)
    };
    Ok(Params {
        state_bytes: flag(args, "--state-bytes", state_bytes)?,
        rate: flag(args, "--rate", rate)?,
        moves: flag(args, "--moves", moves)?,
        with_scheduler: args.iter().any(|a| a == "--with-scheduler"),
        keep: args.iter().any(|a| a == "--keep"),
        whole: args.iter().any(|a| a == "--whole"),
        compare: args.iter().any(|a| a == "--compare"),
        cold: args.iter().any(|a| a == "--cold"),
        compare_warm: args.iter().any(|a| a == "--compare-warm"),
    })
}

fn main() -> ExitCode {
    if plexus_benches::is_node() {
        return plexus::cli::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let p = match params(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (whole, cold) = (p.whole, p.cold);
    let modes: Vec<Mode> = if p.compare {
        [false, true, false, true]
            .map(|whole| Mode { whole, cold })
            .to_vec()
    } else if p.compare_warm {
        [false, true, false, true]
            .map(|cold| Mode { whole, cold })
            .to_vec()
    } else {
        vec![Mode { whole, cold }]
    };
    let mut runs = Vec::new();
    for (i, mode) in modes.into_iter().enumerate() {
        match in_scratch_dir(&format!("bench{i}"), p.keep, |dir| bench(dir, &p, mode)) {
            Ok(pauses) => runs.push((mode, pauses)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if p.compare || p.compare_warm {
        println!("== p50/p99 hand-off pause, ms, in the order run");
        for (mode, (p50, p99)) in runs {
            println!("{:<14} {p50:.2} / {p99:.2}", mode.name());
        }
    }
    ExitCode::SUCCESS
}

/// The migration hand-off pauses recorded on `node`, µs.
fn pauses_on(cluster: &LocalCluster, node: usize) -> Vec<u64> {
    list_on(cluster, node, "migration_pauses_us")
}

/// A list of µs figures from `node`'s durable status.
fn list_on(cluster: &LocalCluster, node: usize, field: &str) -> Vec<u64> {
    cluster.nodes[node]
        .durable()
        .and_then(|s| s[field].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

const HOT: &str = "bench/hot/0";

/// Every live node that lists the actor active (two, briefly, during a hand-off).
fn hosts_of(cluster: &LocalCluster) -> Vec<usize> {
    (0..cluster.nodes.len())
        .filter(|&i| {
            cluster.nodes[i]
                .durable()
                .is_some_and(|s| s["actors"].get(HOT).is_some())
        })
        .collect()
}

/// One run; its p50 and p99 pause, ms.
fn bench(dir: &Path, p: &Params, mode: Mode) -> Result<(f64, f64), CliError> {
    let (state_bytes, rate, moves) = (p.state_bytes, p.rate, p.moves);
    let exe = std::env::current_exe().map_err(|e| CliError::Failed(e.to_string()))?;
    let options = LocalOptions {
        extra_config: format!(
            "[durable]\npatches = {}\nwarm_handoffs = {}\n",
            !mode.whole, !mode.cold
        ),
        ..LocalOptions::default()
    };
    let mut cluster =
        LocalCluster::start_with(dir, || plexus_benches::node_command(&exe), &options)?;
    cluster.deploy(&format!(
        r#"name = "bench"
durability = 3
[resources]
cpu = "100m"
[[stage]]
name = "hot"
kind = "word-count"
to = ["sink"]
config = {{ ballast_bytes = {state_bytes} }}
[[stage]]
name = "sink"
kind = "tally"
"#
    ))?;
    wait_until("the actors to start", Duration::from_secs(60), || {
        let s = cluster.status()?;
        let all = s["actors"].as_array()?;
        (all.iter()
            .filter(|a| a["job"] == "bench" && a["active"] == true)
            .count()
            == 2)
            .then_some(())
    })?;
    println!(
        "== migration bench: {state_bytes} B of state, {rate} msg/s, {moves} moves, 3 nodes on loopback, commits {}, {}",
        if mode.whole { "whole" } else { "as patches" },
        if mode.cold {
            "targets restore in the pause"
        } else {
            "warm standbys"
        }
    );
    // Traffic from a thread at `rate`, in batches every 20 ms, through node 1.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let api = ApiClient::new(&cluster.nodes[0].api_url);
        std::thread::spawn(move || {
            let per_batch = (rate / 50).max(1);
            let start = Instant::now();
            let mut batches = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let texts: Vec<String> = (0..per_batch)
                    .map(|i| WORDS[(i % 16) as usize].to_string())
                    .collect();
                if let Ok(v) = api.post(
                    "/v1/send",
                    &serde_json::json!({ "actor": HOT, "messages": texts }),
                ) {
                    sent.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                }
                batches += 1;
                let due = start + Duration::from_millis(20 * batches);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    // Pacing, not synchronisation: let traffic reach its rate before moving.
    std::thread::sleep(Duration::from_secs(2));
    // With `--with-scheduler`: the node (2 or 3) that runs the scheduler, where the
    // actor ends before the kill.
    let scheduler_host = if p.with_scheduler {
        let at = (0..cluster.nodes.len()).find(|&i| {
            cluster.nodes[i]
                .durable()
                .is_some_and(|s| s["actors"].get(plexus_scheduler::SCHEDULER_KEY).is_some())
        });
        match at {
            Some(i) if i != 0 => Some(i),
            Some(_) => {
                return Err(CliError::Failed(
                    "the scheduler runs on node 1, which carries the traffic: run again".into(),
                ));
            }
            None => return Err(CliError::Failed("no node lists the scheduler".into())),
        }
    } else {
        None
    };
    let mut pauses = Vec::new();
    // Per move: the wait for the target's standby, while the actor served.
    let mut prepares = Vec::new();
    loop {
        // Where it serves, as its host and the scheduler both see it (right after
        // a move the scheduler may not have heard the report yet).
        let (from, _) = wait_until("the actor to settle", Duration::from_secs(30), || {
            let host = *hosts_of(&cluster).first()?;
            let status = cluster.status()?;
            let placed = status["actors"]
                .as_array()?
                .iter()
                .find(|a| a["key"] == HOT)?["node"]
                .as_str()?
                .to_string();
            (placed == cluster.nodes[host].id).then_some(host)
        })?;
        // Between nodes 2 and 3, so node 1 only takes the client traffic; then,
        // if asked, to the scheduler's host.
        let to = if pauses.len() < moves as usize {
            if from == 1 { 2 } else { 1 }
        } else {
            match scheduler_host {
                Some(s) if s != from => s,
                _ => break,
            }
        };
        let to_id: NodeId = cluster.nodes[to]
            .id
            .parse()
            .map_err(|e| CliError::Failed(format!("{e}")))?;
        let before = pauses_on(&cluster, from).len();
        let already = Rejection::AlreadyThere {
            actor: HOT.into(),
            node: to_id,
        }
        .to_string();
        match cluster.ask(Request::Migrate {
            actor: HOT.into(),
            to: to_id,
        }) {
            Ok(_) => {}
            // The scheduler's placement is a report behind the hosts': ask again
            // shortly.
            Err(CliError::Input(why)) if why.ends_with(&already) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e),
        }
        let (pause, _) = wait_until("the migration", Duration::from_secs(30), || {
            let now = pauses_on(&cluster, from);
            (now.len() > before).then(|| now[now.len() - 1])
        })?;
        pauses.push(pause);
        prepares.extend(list_on(&cluster, from, "migration_prepares_us").last());
        // Pacing: traffic flows between moves.
        std::thread::sleep(Duration::from_millis(300));
    }
    let sent_during_moves = sent.load(Ordering::Relaxed);
    // Migrations whose target had a standby, and all of them (the scheduler may
    // have made one more than the bench asked for), before any node is killed.
    let count = |field: &str| -> u64 {
        (0..cluster.nodes.len())
            .filter_map(|i| cluster.nodes[i].durable()?[field].as_u64())
            .sum()
    };
    let (warm, migrations) = (count("migrations_warm"), count("migrations"));
    // Failover: kill the host, time until the actor serves on another node.
    // The victim is the actor's one host: wait until no other node (a source still
    // finishing a hand-off) lists it too, or the kill could miss the actor and
    // time nothing. Node 1 carries the traffic, so the actor must be elsewhere.
    let (victim, _) = wait_until(
        "the actor to have one host",
        Duration::from_secs(30),
        || match hosts_of(&cluster).as_slice() {
            [only] if *only != 0 => Some(*only),
            _ => None,
        },
    )?;
    // Whether the victim also hosted the scheduler (its failover then includes
    // the scheduler's own).
    let with_scheduler = cluster.nodes[victim]
        .durable()
        .is_some_and(|s| s["actors"].get(plexus_scheduler::SCHEDULER_KEY).is_some());
    cluster.nodes[victim].kill();
    let (_, failover) = wait_until("the actor to serve again", Duration::from_secs(60), || {
        hosts_of(&cluster).into_iter().find(|&h| h != victim)
    })?;
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    let Settled {
        sent: total,
        delivered,
        out_of_order,
        ..
    } = cluster.settle("bench/sink/0", sent.load(Ordering::Relaxed))?;
    pauses.sort_unstable();
    prepares.sort_unstable();
    let at = |v: &[u64], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    let pct = |q: f64| at(&pauses, q);
    println!(
        "hand-off pause: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} moves",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        pauses.len()
    );
    if !prepares.is_empty() {
        println!(
            "before it, the wait for the target's standby (the actor served on): p50 {:.2} ms, p99 {:.2} ms; {warm} of {migrations} migrations had one",
            at(&prepares, 0.5),
            at(&prepares, 0.99),
        );
    }
    println!(
        "failover after SIGKILL of the host: {:.2} s to serving again (includes failure detection; the host {} the scheduler)",
        failover.as_secs_f64(),
        if with_scheduler {
            "also ran"
        } else {
            "did not run"
        }
    );
    println!(
        "traffic: {total} messages ({sent_during_moves} during the moves), delivered {delivered}, lost {}",
        total.saturating_sub(delivered)
    );
    cluster.stop();
    if delivered != total || out_of_order > 0 {
        return Err(CliError::Failed(format!(
            "sent {total}, delivered {delivered}, {out_of_order} out of order"
        )));
    }
    Ok((pct(0.5), pct(0.99)))
}
