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

/// The one exception, and how it is held to account.
///
/// The epochs core uses commonware-cryptography's audited DKG, which lives behind
/// its `std` feature. That feature brings three forbidden names into the tree:
/// `tokio` (with `macros` and `sync` only: commonware's `select!`; no runtime, no
/// IO, no timers), `rand` and `getrandom` (key-generation helpers of commonware
/// and its p256/ecdsa dependencies). The epochs core calls none of them: its
/// randomness comes in as seeds and `rand_core` generators, its time as `now`.
/// So for crates that contain it the check is: nothing else forbidden; tokio
/// without a single IO or runtime feature; tokio and rand entering only through
/// commonware; and no source file of the crate naming any of them (clippy's
/// disallowed-methods list then also resolves `rand::rng` and friends there).
/// Recorded in docs/dependencies.md.
const COMMONWARE_STD: &[&str] = &["tokio", "tokio-macros", "rand", "getrandom"];

fn assert_pure_but_commonware(package: &str, sources: &[&str]) {
    let deps = normal_deps(package, &[]);
    assert!(
        deps.iter().any(|d| d == package),
        "cargo tree listed {deps:?}"
    );
    let bad: Vec<&String> = forbidden(&deps)
        .into_iter()
        .filter(|d| !COMMONWARE_STD.contains(&d.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "{package} depends on {bad:?}; cores must stay sans-IO"
    );
    // tokio: no feature that could run or do IO.
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p} [{f}]",
            "-p",
            package,
        ])
        .current_dir(manifest_dir())
        .output()
        .expect("cargo tree runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines().filter(|l| l.starts_with("tokio v")) {
        for f in [
            "rt",
            "rt-multi-thread",
            "net",
            "time",
            "io-util",
            "io-std",
            "fs",
            "process",
            "signal",
        ] {
            assert!(
                !line.contains(&format!("[{f},"))
                    && !line.contains(&format!(",{f},"))
                    && !line.contains(&format!(",{f}]"))
                    && !line.contains(&format!("[{f}]")),
                "{package}: tokio has feature `{f}`: {line}"
            );
        }
    }
    // tokio and rand enter only through commonware.
    for c in ["tokio", "rand"] {
        let out = Command::new(env!("CARGO"))
            .args([
                "tree", "--edges", "normal", "--prefix", "none", "--format", "{p}", "-p", package,
                "-i", c,
            ])
            .current_dir(manifest_dir())
            .output()
            .expect("cargo tree runs");
        let via: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|p| p != c && !p.starts_with("commonware-") && !p.starts_with("plexus"))
            .collect();
        assert!(
            via.is_empty(),
            "{package}: `{c}` enters through {via:?}, not commonware"
        );
    }
    // And the crate's own code never names them.
    for dir in sources {
        for entry in walk(&manifest_dir().join(dir)) {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            for name in [
                "tokio::",
                "getrandom",
                "rand::",
                "OsRng",
                "SysRng",
                "thread_rng",
            ] {
                assert!(!text.contains(name), "{} names `{name}`", entry.display());
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_epochs_core_is_sans_io_but_for_commonware() {
    assert_pure_but_commonware("plexus-epochs", &["epochs/src"]);
}

#[test]
fn the_simulator_runs_only_cores() {
    assert_pure_but_commonware("plexus-sim", &["sim/src"]);
}

#[test]
fn the_durable_host_and_scheduler_cores_are_sans_io() {
    for core in [
        "plexus-vocab",
        "plexus-durable",
        "plexus-scheduler",
        "plexus-host",
        "plexus-poai",
        "plexus-storage",
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
    // The source scan finds what it looks for.
    let own = std::fs::read_to_string(manifest_dir().join("src/main.rs")).unwrap_or_default()
        + &std::fs::read_to_string(manifest_dir().join("src/lib.rs")).unwrap_or_default();
    assert!(walk(&manifest_dir().join("src")).len() > 1 && !own.is_empty());
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
