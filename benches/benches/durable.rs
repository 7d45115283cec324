//! Durable actors under load, with the replica store's two ways of syncing, in
//! the same run (issue 14, item 4):
//!
//! * `each`: every replica write synced in place, inside the durable service's
//!   turn on an async worker (the previous behaviour);
//! * `group` (the default): writes synced in groups on the blocking pool, the
//!   service's output held back until its writes are durable.
//!
//! Three `plexus node` processes on 127.0.0.1 (this binary is their program, as in
//! the other node benches). A job of `--actors` model executors (`infer`, batches
//! of one, durability 3: every request is committed to a majority of three synced
//! replica stores before its answer), and `--clients` concurrent clients sending
//! one image per `/v1/infer` call through node 1, round robin over the actors, for
//! `--seconds`. Reported: calls a second and the call latency p50/p99/max, and the
//! latency of a bystander request on the same node that touches no disk
//! (`GET /v1/node`, every 5 ms): an fsync holding an async worker delays it. The
//! two modes alternate, `--rounds` times each.
//!
//! `cargo bench -p plexus-benches --bench durable`. Under `cargo test` it runs as a
//! smoke test (one short round of each).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use plexus::cli::CliError;
use plexus::cli::digits;
use plexus::cli::local::{LocalCluster, LocalOptions, in_scratch_dir, wait_until};
use plexus::ml::model::Weights;
use plexus_benches::flag;

const JOB: &str = "durable-bench";

struct Params {
    actors: usize,
    clients: usize,
    seconds: u64,
    rounds: usize,
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

fn main() -> ExitCode {
    if plexus_benches::is_node() {
        return plexus::cli::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let params = (|| -> Result<Params, String> {
        Ok(Params {
            actors: flag(&args, "--actors", 6)?.max(1),
            clients: flag(&args, "--clients", 16)?.max(1),
            seconds: flag(&args, "--seconds", if full { 15 } else { 2 })?.max(1),
            rounds: flag(&args, "--rounds", if full { 2 } else { 1 })?.max(1),
        })
    })();
    let p = match params {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match in_scratch_dir("bench-durable", false, |dir| bench(dir, &p)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One mode's figures.
struct Figures {
    calls: u64,
    took: Duration,
    call: Histogram<u64>,
    bystander: Histogram<u64>,
}

fn bench(dir: &Path, p: &Params) -> Result<(), CliError> {
    println!(
        "durable bench: {} infer actors (durability 3) on 3 nodes, {} clients, {} s per round, {} rounds per mode",
        p.actors, p.clients, p.seconds, p.rounds
    );
    let weights = Weights::init(7);
    let mut results: Vec<(&str, Vec<Figures>)> = vec![("each", Vec::new()), ("group", Vec::new())];
    for round in 0..p.rounds {
        for (mode, figures) in &mut results {
            let f = run(&dir.join(format!("{mode}-{round}")), mode, &weights, p)?;
            println!(
                "  round {round} {mode:<5} {:>7.0} calls/s   call p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms   bystander p50 {:>5.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
                f.calls as f64 / f.took.as_secs_f64(),
                ms(f.call.value_at_quantile(0.5)),
                ms(f.call.value_at_quantile(0.99)),
                ms(f.call.max()),
                ms(f.bystander.value_at_quantile(0.5)),
                ms(f.bystander.value_at_quantile(0.99)),
                ms(f.bystander.max()),
            );
            figures.push(f);
        }
    }
    for (mode, figures) in &results {
        let mut call = Histogram::<u64>::new(3).map_err(failed)?;
        let mut bystander = Histogram::<u64>::new(3).map_err(failed)?;
        let (mut calls, mut took) = (0u64, Duration::ZERO);
        for f in figures {
            call.add(&f.call).map_err(failed)?;
            bystander.add(&f.bystander).map_err(failed)?;
            calls += f.calls;
            took += f.took;
        }
        println!(
            "{mode:<5} all rounds: {:>7.0} calls/s   call p50 {:.2} ms  p99 {:.2} ms   bystander p99 {:.2} ms",
            calls as f64 / took.as_secs_f64(),
            ms(call.value_at_quantile(0.5)),
            ms(call.value_at_quantile(0.99)),
            ms(bystander.value_at_quantile(0.99)),
        );
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

fn run(dir: &Path, mode: &str, weights: &Weights, p: &Params) -> Result<Figures, CliError> {
    std::fs::create_dir_all(dir).map_err(failed)?;
    let exe = std::env::current_exe().map_err(failed)?;
    let options = LocalOptions {
        extra_config: format!("[durable]\ndurability = \"{mode}\"\n"),
        ..LocalOptions::default()
    };
    let mut cluster =
        LocalCluster::start_with(dir, || plexus_benches::node_command(&exe), &options)?;
    let model = digits::add_model(&cluster, weights)?;
    cluster.deploy(&format!(
        "name = \"{JOB}\"\ndurability = 3\n[resources]\ncpu = \"100m\"\nmemory = \"16MiB\"\n\n\
         [[stage]]\nname = \"classify\"\nkind = \"infer\"\nreplicas = {}\n\
         config = {{ model = \"{model}\", max_batch = 1, max_wait_ms = 0 }}\n",
        p.actors
    ))?;
    let cases = digits::cases(weights)?;
    let api = cluster.nodes[0].api.clone();
    let keys: Vec<String> = (0..p.actors)
        .map(|i| format!("{JOB}/classify/{i}"))
        .collect();
    let body = |k: usize, case: &digits::Case| serde_json::json!({ "target": keys[k % keys.len()], "inputs": [case.input] });
    // Every actor answers before the clock starts.
    for (k, key) in keys.iter().enumerate() {
        wait_until(&format!("{key} to answer"), Duration::from_secs(60), || {
            api.post("/v1/infer", &body(k, &cases[0])).ok()
        })?;
    }
    let stop = AtomicBool::new(false);
    let calls: Mutex<Histogram<u64>> = Mutex::new(Histogram::new(3).map_err(failed)?);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut bystander = Histogram::<u64>::new(3).map_err(failed)?;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..p.clients {
            let (api, stop, calls, errors, cases, body) =
                (api.clone(), &stop, &calls, &errors, &cases, &body);
            scope.spawn(move || {
                let mut h = Histogram::<u64>::new(3).expect("a histogram");
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match api.post("/v1/infer", &body(n, &cases[n % cases.len()])) {
                        Ok(_) => {
                            let _ = h.record(t.elapsed().as_micros() as u64);
                        }
                        Err(e) => {
                            if let Ok(mut v) = errors.lock() {
                                v.push(e.to_string());
                            }
                            return;
                        }
                    }
                    n += p.clients;
                }
                if let Ok(mut all) = calls.lock() {
                    let _ = all.add(&h);
                }
            });
        }
        let deadline = start + Duration::from_secs(p.seconds);
        while Instant::now() < deadline {
            let t = Instant::now();
            if api.get("/v1/node").is_ok() {
                let _ = bystander.record(t.elapsed().as_micros() as u64);
            }
            // Pacing, not synchronisation: the bystander asks every 5 ms.
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let took = start.elapsed();
    cluster.stop();
    let errors = errors.into_inner().map_err(failed)?;
    if let Some(e) = errors.first() {
        return Err(failed(format!(
            "{} calls failed, the first: {e}",
            errors.len()
        )));
    }
    let call = calls.into_inner().map_err(failed)?;
    Ok(Figures {
        calls: call.len(),
        took,
        call,
        bystander,
    })
}
