//! The layering rule, enforced: sans-IO cores do not depend on tokio, libp2p or
//! ractor, nor on anything that draws OS randomness. Each core crate is checked
//! without its `runtime` feature, and the simulator (which must run the cores and
//! nothing else) is checked as it is built.

use std::process::Command;

/// Crates no core may have in its dependency tree, nor any crate named after one
/// with a `-` suffix (`libp2p-core`, say). `rand` and `getrandom` draw OS
/// randomness (cores take a seeded generator instead). `rand_core` is allowed: at
/// 0.10 it is only the traits a generator implements, with no dependencies and no
/// OS source, and the cores' `DetRng` (`actors/src/rng.rs`, a `rand_xoshiro`
/// generator) implements them. Were a core to pull in an OS source through it,
/// `getrandom` would appear in its tree and fail this check.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "libp2p",
    "ractor",
    "mio",
    "async-std",
    "rand",
    "getrandom",
];

/// What in `deps` is forbidden.
fn forbidden(deps: &[String]) -> Vec<&String> {
    deps.iter()
        .filter(|d| {
            FORBIDDEN
                .iter()
                .any(|f| d.as_str() == *f || d.starts_with(&format!("{f}-")))
        })
        .collect()
}

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
    let bad = forbidden(&deps);
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
    assert_pure("plexus-vocab", &[]);
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
    // The root crate is a driver and does pull in what the cores may not; if the
    // check found none of it there, the checks above would prove nothing.
    let deps = normal_deps("plexus", &[]);
    let found = forbidden(&deps);
    for f in ["tokio", "libp2p", "ractor", "mio", "rand", "getrandom"] {
        assert!(
            found
                .iter()
                .any(|d| d.as_str() == f || d.starts_with(&format!("{f}-"))),
            "`{f}` is not caught in the driver's tree: {found:?}"
        );
    }
    // Names that only share a prefix are not caught.
    assert!(deps.iter().any(|d| d == "rand_core"));
    assert!(!found.iter().any(|d| d.as_str() == "rand_core"));
}

/// This checkout's root: Cargo sets it at run time too, so a test binary built in a
/// checkout elsewhere (a shared target dir) still works on this one's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}
