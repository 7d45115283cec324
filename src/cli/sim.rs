//! `plexus sim run|sweep`: the deterministic simulator from the command line.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use plexus_sim::{Report, RunOptions, Scenario, repro_command};

use super::CliError;

fn load(path: &Path) -> Result<Scenario, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read scenario {}: {e}", path.display())))?;
    Scenario::parse(&text).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

/// Parses `A..B` (B excluded) or `A..=B`.
pub fn parse_seeds(text: &str) -> Result<std::ops::Range<u64>, String> {
    let bad = || format!("`{text}` is not a seed range like 1..101 or 1..=100");
    let (a, b, inclusive) = if let Some((a, b)) = text.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = text.split_once("..") {
        (a, b, false)
    } else {
        return Err(bad());
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if inclusive {
        b.checked_add(1).ok_or_else(bad)?
    } else {
        b
    };
    if end <= a {
        return Err(format!("`{text}` is an empty range"));
    }
    Ok(a..end)
}

fn print_report(path: &Path, report: &Report) {
    let (mean, max) = report.detection();
    println!(
        "scenario:        {} ({} nodes, seed {})",
        path.display(),
        report.nodes,
        report.seed
    );
    println!(
        "simulated:       {:.1} s in {:.2} s wall ({:.0}x real time), {} events",
        report.sim_ms as f64 / 1e3,
        report.wall_ms as f64 / 1e3,
        report.speedup(),
        report.events
    );
    println!("heap:            {}", plexus_sim::heap::pages());
    println!(
        "messages:        {:.2} per node per second, {} lost",
        report.msgs_per_node_per_sec(),
        report.frames_lost
    );
    println!(
        "tells:           {} sent, {} delivered, {} refused (window full), {} failed (receiver declared dead)",
        report.tells_sent, report.tells_delivered, report.tells_refused, report.tells_unreachable
    );
    println!(
        "links:           {} dropped after idling, {} inbound records forgotten after their close (nodes up at the end)",
        report.links_dropped_idle, report.records_forgotten
    );
    println!(
        "names:           {} held over the nodes up at the end",
        report.names_held
    );
    println!(
        "faults:          {} crashes, {} restarts, {} partitions, {} pauses",
        report.crashes, report.restarts, report.partitions, report.pauses
    );
    println!(
        "suspicions:      {} ({} of nodes that were up)",
        report.suspicions, report.false_suspicions
    );
    match mean {
        Some(mean) => println!(
            "detection:       mean {mean:.0} ms, max {} ms (bound {} ms)",
            max.unwrap_or(0),
            report.detection_bound_ms
        ),
        None => println!("detection:       no crash to detect"),
    }
    if let (Some(mean), Some(max)) = report.first_detection() {
        println!(
            "first detection: mean {mean:.0} ms, max {max} ms (until any node declared a crash dead); {} deaths declared of running nodes",
            report.running_declared_dead
        );
    }
    match report.converge_ms {
        Some(ms) => println!(
            "convergence:     {ms} ms after the last fault ended (at {} ms)",
            report.quiet_at_ms
        ),
        None => println!("convergence:     not reached before the end of the run"),
    }
    println!(
        "supervision:     {} child restarts, {} escalations",
        report.child_restarts, report.escalations
    );
    if report.durable_activations > 0 || report.durable_sent > 0 {
        let reasons: Vec<String> = report
            .deactivations
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        println!(
            "durable:         {} sent, {} acked, {} commits, {} activations ({} of the scheduler), {} migrations (longest pause {} ms), deactivations: {}",
            report.durable_sent,
            report.durable_acked,
            report.durable_commits,
            report.durable_activations,
            report.scheduler_activations,
            report.migrations,
            report.migration_pause_max_ms,
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons.join(", ")
            }
        );
    }
}

fn print_epochs(scenario: &Scenario, report: &Report) {
    if let Some(e) = &scenario.epochs {
        println!(
            "epochs:          {} checkpoints signed, {} epochs failed, {} equivocations proved, {} bad partials dropped ({} members, {} lying)",
            report.epochs_signed,
            report.epochs_failed,
            report.epoch_equivocations,
            report.epoch_bad_partials,
            e.members,
            e.byzantine.len()
        );
    }
}

pub(crate) fn run(path: &Path, seed: u64, json: bool, csv: Option<&Path>) -> Result<(), CliError> {
    let scenario = load(path)?;
    let report = plexus_sim::run(&scenario, seed, RunOptions::default());
    if json {
        println!("{}", report.to_json());
    } else {
        print_report(path, &report);
        print_epochs(&scenario, &report);
    }
    if let Some(csv) = csv {
        let text = format!("{}\n{}\n", Report::csv_header(), report.csv_row());
        std::fs::write(csv, text)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", csv.display())))?;
    }
    for v in &report.violations {
        eprintln!("violation at {} ms [{}]: {}", v.at_ms, v.check, v.detail);
    }
    println!("trace-hash: {}", report.trace_hash);
    if report.passed() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} violation(s) with seed {seed}; reproduce with: {}",
            report.violations.len(),
            repro_command(&path.display().to_string(), seed)
        )))
    }
}

pub(crate) fn sweep(
    path: &Path,
    seeds: std::ops::Range<u64>,
    jobs: Option<usize>,
    csv: Option<&Path>,
) -> Result<(), CliError> {
    let scenario = load(path)?;
    let seeds: Vec<u64> = seeds.collect();
    let jobs = jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .clamp(1, seeds.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Report>> = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(k) else { break };
                    let report = plexus_sim::run(&scenario, seed, RunOptions::default());
                    println!(
                        "seed {seed:>6}  {}  {} events  {:.0}x  trace-hash {}",
                        if report.passed() { "ok  " } else { "FAIL" },
                        report.events,
                        report.speedup(),
                        &report.trace_hash[..16]
                    );
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(report);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|r| r.seed);
    if let Some(csv) = csv {
        let mut text = String::from(Report::csv_header());
        text.push('\n');
        for r in &results {
            text.push_str(&r.csv_row());
            text.push('\n');
        }
        std::fs::write(csv, text)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", csv.display())))?;
    }
    let failed: Vec<&Report> = results.iter().filter(|r| !r.passed()).collect();
    println!(
        "{} seeds, {} passed, {} failed, {jobs} jobs",
        results.len(),
        results.len() - failed.len(),
        failed.len()
    );
    for r in &failed {
        let first = &r.violations[0];
        println!(
            "seed {} failed at {} ms [{}]: {}",
            r.seed, first.at_ms, first.check, first.detail
        );
        println!(
            "  reproduce: {}",
            repro_command(&path.display().to_string(), r.seed)
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} of {} seeds failed",
            failed.len(),
            results.len()
        )))
    }
}
