//! The layering rule, enforced: sans-IO cores do not depend on tokio, libp2p or
//! ractor. Each core crate is checked without its `runtime` feature, and the
//! simulator (which must run the cores and nothing else) is checked as it is built.

use std::process::Command;

const FORBIDDEN: &[&str] = &["tokio", "libp2p", "ractor", "mio", "async-std"];

fn normal_deps(package: &str, extra: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree", "--edges", "normal", "--prefix", "none", "--format", "{p}", "-p", package,
        ])
        .args(extra)
        .current_dir(manifest_dir())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn assert_pure(package: &str, extra: &[&str]) {
    let deps = normal_deps(package, extra);
    assert!(
        deps.iter().any(|d| d == package),
        "cargo tree listed {deps:?}"
    );
    let bad: Vec<&String> = deps
        .iter()
        .filter(|d| {
            FORBIDDEN
                .iter()
                .any(|f| d.as_str() == *f || d.starts_with(&format!("{f}-")))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{package} {extra:?} depends on {bad:?}; cores must stay sans-IO"
    );
}

#[test]
fn core_crates_without_runtime_are_sans_io() {
    for core in ["plexus-actors", "plexus-supervisor", "plexus-mesh"] {
        assert_pure(core, &["--no-default-features"]);
    }
}

#[test]
fn the_simulator_runs_only_cores() {
    assert_pure("plexus-sim", &[]);
}

#[test]
fn the_durable_host_and_scheduler_cores_are_sans_io() {
    for core in [
        "plexus-vocab",
        "plexus-durable",
        "plexus-scheduler",
        "plexus-host",
    ] {
        assert_pure(core, &[]);
    }
}

#[test]
fn the_check_can_fail() {
    // The root crate is a driver and does pull in tokio; if this found nothing, the
    // checks above would prove nothing.
    let deps = normal_deps("plexus", &[]);
    assert!(deps.iter().any(|d| d == "tokio"));
    assert!(deps.iter().any(|d| d == "ractor"));
}

/// This checkout's root: Cargo sets it at run time too, so a test binary built in a
/// checkout elsewhere (a shared target dir) still works on this one's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}
