//! `plexus sim` as CI runs it: 100-seed sweeps of the faulty and durable scenarios
//! with zero violations, the same trace hash from two separate processes, and clear errors.

mod common;

use common::{TempDir, plexus};

fn trace_hash(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace-hash: "))
        .expect("a trace-hash line")
        .to_string()
}

#[test]
fn two_processes_with_the_same_seed_print_the_same_trace_hash() {
    let run = |seed: &str| {
        let out = plexus()
            .args(["sim", "run", "sim/scenarios/faulty.toml", "--seed", seed])
            .current_dir(manifest_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        trace_hash(&String::from_utf8_lossy(&out.stdout))
    };
    let first = run("42");
    assert_eq!(first.len(), 64);
    assert_eq!(run("42"), first, "the same seed replays exactly");
    assert_ne!(run("43"), first);
}

/// `plexus sim` runs its heap on huge pages (it executes itself once with glibc's
/// tunable), and a run computes the same with ordinary pages: the same trace hash.
#[test]
fn huge_pages_are_asked_for_and_change_nothing_a_run_computes() {
    let run = |opt_out: bool| {
        let mut command = plexus();
        command
            .args(["sim", "run", "sim/scenarios/faulty.toml", "--seed", "7"])
            .current_dir(manifest_dir())
            .env_remove("GLIBC_TUNABLES");
        if opt_out {
            command.env("PLEXUS_SIM_HUGE_PAGES", "0");
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let heap = stdout
            .lines()
            .find_map(|l| l.strip_prefix("heap:"))
            .expect("a heap line")
            .trim()
            .to_string();
        (heap, trace_hash(&stdout))
    };
    let (huge, with) = run(false);
    let (ordinary, without) = run(true);
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert_eq!(huge, "transparent huge pages (glibc.malloc.hugetlb=1)");
    }
    assert_eq!(ordinary, "ordinary pages");
    assert_eq!(with, without, "the pages never reach the simulation");
}

/// Sweeps seeds 1 to 100 of `scenario` through the binary; every one must pass.
fn sweep_of_100_is_clean(scenario: &str) {
    let out = plexus()
        .args(["sim", "sweep", scenario, "--seeds", "1..101"])
        .current_dir(manifest_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("100 seeds, 100 passed, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn a_sweep_of_100_faulty_seeds_has_no_violations() {
    sweep_of_100_is_clean("sim/scenarios/faulty.toml");
}

#[test]
fn a_sweep_of_100_faulty_seeds_with_a_sharded_registry_has_no_violations() {
    // The same faults with each name held by its 3 owners instead of every node:
    // owners must hold every live node's names after each crash, restart and
    // partition, and no node may resolve a dead node's name.
    sweep_of_100_is_clean("sim/scenarios/faulty-sharded.toml");
}

#[test]
fn a_sweep_of_100_faulty_seeds_with_links_closing_has_no_violations() {
    // The same faults with quiet links: every link closes within a second of its
    // last ack and reopens on its next tell, and receivers forget closed links'
    // records two seconds later. Tells must still arrive in order and at most once.
    sweep_of_100_is_clean("sim/scenarios/faulty-links.toml");
}

#[test]
fn a_sweep_of_100_durable_seeds_has_no_violations() {
    // Durable actors deployed by the scheduler, client traffic and live
    // migrations while nodes crash, restart, pause and partition: no acked
    // message lost, none applied twice, one active copy of each actor after.
    sweep_of_100_is_clean("sim/scenarios/durable.toml");
}

#[test]
fn a_sweep_of_100_durable_seeds_with_a_sharded_registry_has_no_violations() {
    // The same with each name held by its 3 owners: the scheduler's node holds few
    // of the actors' names and places them from its hosts' repeated reports.
    sweep_of_100_is_clean("sim/scenarios/durable-sharded.toml");
}

#[test]
fn a_failing_seed_is_reported_with_the_command_that_reproduces_it() {
    let dir = TempDir::new("sim-fail");
    let path = dir.0.join("impossible.toml");
    // Converging within a millisecond of a partition healing is impossible.
    std::fs::write(
        &path,
        "nodes = 6\nduration = \"2m\"\n[[fault]]\nat = \"30s\"\nkind = \"partition\"\nduration = \"20s\"\n[check]\nconverge_within = \"1ms\"\ndeep_interval = \"1ms\"\n",
    )
    .unwrap();
    let out = plexus()
        .args(["sim", "run", path.to_str().unwrap(), "--seed", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[convergence]"), "{stderr}");
    assert!(
        stderr.contains(&format!("plexus sim run {} --seed 5", path.display())),
        "{stderr}"
    );
    let sweep = plexus()
        .args(["sim", "sweep", path.to_str().unwrap(), "--seeds", "1..=3"])
        .output()
        .unwrap();
    assert_eq!(sweep.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&sweep.stdout).contains("reproduce: plexus sim run"));
}

#[test]
fn the_epochs_scenario_signs_with_liars_and_replays_exactly() {
    let run = |seed: &str| {
        let out = plexus()
            .args(["sim", "run", "sim/scenarios/epochs.toml", "--seed", seed])
            .current_dir(manifest_dir())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = run("7");
    let line = first
        .lines()
        .find(|l| l.starts_with("epochs:"))
        .expect("an epochs line");
    let signed: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("signed count");
    assert!(signed >= 4, "most epochs sign despite 3 liars: {line}");
    assert!(!line.contains(" 0 equivocations"), "{line}");
    assert_eq!(trace_hash(&run("7")), trace_hash(&first));
}

#[test]
fn malformed_scenarios_name_the_field_and_line() {
    let dir = TempDir::new("sim-bad");
    let cases = [
        ("zero.toml", "nodes = 0\nduration = \"1m\"\n", "line 1"),
        (
            "loss.toml",
            "nodes = 3\nduration = \"1m\"\n[network]\nloss = -0.5\n",
            "line 4",
        ),
        (
            "key.toml",
            "nodes = 3\nduration = \"1m\"\nspeed = 11\n",
            "speed",
        ),
        ("syntax.toml", "nodes = 3\nduration = \"1m\n", "line 2"),
        (
            "liar.toml",
            "nodes = 3\nduration = \"1m\"\n[epochs]\nmembers = 4\n[[epochs.byzantine]]\nmember = 4\nbehaviour = \"garbage\"\n",
            "epochs.byzantine.member",
        ),
        (
            "shards.toml",
            "nodes = 3\nduration = \"1m\"\n[registry]\nowners = 9\n",
            "registry.owners",
        ),
        (
            "lie.toml",
            "nodes = 3\nduration = \"1m\"\n[epochs]\nmembers = 4\n[[epochs.byzantine]]\nmember = 1\nbehaviour = \"bribe\"\n",
            "bribe",
        ),
    ];
    for (name, text, needle) in cases {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        let out = plexus()
            .args(["sim", "run", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    let out = plexus()
        .args([
            "sim",
            "sweep",
            "sim/scenarios/smoke.toml",
            "--seeds",
            "9..3",
        ])
        .current_dir(manifest_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// This checkout's root: Cargo sets it at run time too, so a test binary built in a
/// checkout elsewhere (a shared target dir) still works on this one's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}
