//! Runs one seed of a scenario and prints every node's final membership view: the
//! first thing to look at when a seed fails convergence.
//!
//! `cargo run --release -p plexus-sim --example debug_seed -- SCENARIO SEED [--report]`
//!
//! With `--report` it prints the run's report as JSON instead of the views: a way
//! to time or profile a scenario without building the `plexus` binary.

use plexus_sim::{RunOptions, Scenario, World};

fn main() {
    // Like `plexus sim`: a large run's heap on huge pages (returns only if it cannot).
    let _ = plexus_sim::heap::reexec_with_huge_pages();
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: debug_seed SCENARIO SEED");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    let scenario = match Scenario::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    if args.get(3).is_some_and(|a| a == "--report") {
        let report = World::new(&scenario, seed, RunOptions::default()).run();
        println!("{:#}", report.to_json());
        return;
    }
    let (report, dump) = World::new(&scenario, seed, RunOptions::default()).run_with_dump();
    for v in &report.violations {
        println!("violation at {} ms [{}]: {}", v.at_ms, v.check, v.detail);
    }
    print!("{dump}");
    println!("trace-hash: {}", report.trace_hash);
}
