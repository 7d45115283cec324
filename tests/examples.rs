//! The examples run and do what they say: each is started as the built binary it
//! is (cargo builds examples before it runs tests).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The built example `NAME` in `target/<profile>/examples/`, beside this test's own
/// `deps/`: `NAME` when cargo copied it there, else `NAME-<hash>` as `cargo test`
/// leaves it.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps")
        .join("examples");
    let plain = dir.join(name);
    if plain.exists() {
        return plain;
    }
    let prefix = format!("{name}-");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_none()
                && p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(&prefix))
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or(plain)
}

#[test]
fn an_embedded_node_runs_a_durable_kind_of_its_own_exactly_once() {
    let path = example("durable_kind");
    assert!(path.exists(), "{} is not built", path.display());
    let child = Command::new(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the example starts");
    let pid = child.id();
    // Bounded: the example gives itself 60 s; a hung one is killed after 120 s.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(Duration::from_secs(120)) else {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("the example did not finish in 120 s");
    };
    let _ = waiter.join();
    let out = out.expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("histogram: "))
        .unwrap_or_else(|| panic!("no histogram printed: {stdout}"));
    let summary: serde_json::Value = serde_json::from_str(line).expect("JSON");
    // The 16 numbers the example sends, in buckets of 10, each counted once.
    let expected = serde_json::json!({
        "buckets": {
            "0-9": 1, "10-19": 2, "20-29": 1, "30-39": 5, "40-49": 2,
            "60-69": 1, "70-79": 2, "80-89": 1, "90-99": 1
        },
        "rejected": 0
    });
    assert_eq!(summary, expected);
}
