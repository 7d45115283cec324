//! The `plexus` binary, run as a user runs it.
// Driver-level tests: they run on tokio like the drivers they test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn plexus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .expect("the plexus binary runs")
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plexus-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn the_example_pipeline_runs_and_its_counts_add_up() {
    let out = plexus(&["pipeline", "run", "examples/pipeline.toml", "--json"]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let stage = |name: &str| {
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap()
            .clone()
    };
    let lines_out = stage("lines")["items_out"].as_u64().unwrap();
    assert_eq!(lines_out, 12 * 300, "12 lines, 300 passes");
    assert_eq!(stage("words")["items_in"], lines_out);
    let words = stage("words")["items_out"].as_u64().unwrap();
    assert!(words > lines_out);
    assert_eq!(
        stage("top-words")["items_in"],
        words,
        "fan-out delivers every word to both sinks"
    );
    assert_eq!(stage("lengths")["items_in"], words);
    // The histogram accounts for every word exactly once.
    let results = report["results"].as_array().unwrap();
    let hist = results
        .iter()
        .find_map(|r| r.get("word_lengths"))
        .expect("histogram result");
    let total: u64 = hist
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, words);
    let top = results
        .iter()
        .find_map(|r| r.get("top_words"))
        .expect("top words result");
    assert_eq!(top.as_array().unwrap().len(), 8);
}

#[test]
fn the_human_report_names_every_stage() {
    let out = plexus(&["pipeline", "run", "examples/pipeline.toml"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for stage in ["lines", "words", "top-words", "lengths"] {
        assert!(text.contains(stage), "{text}");
    }
}

fn assert_refused(args: &[&str], needle: &str) {
    let out = plexus(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should be refused as bad input; stderr: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: expected `{needle}` in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_specs_exit_non_zero_with_a_clear_message() {
    assert_refused(
        &["pipeline", "run", "/definitely/missing.toml"],
        "cannot read pipeline spec",
    );
    let empty = temp_file("empty.toml", "  \n");
    assert_refused(
        &["pipeline", "run", empty.to_str().unwrap()],
        "the pipeline spec is empty",
    );
    let malformed = temp_file("malformed.toml", "name = \"x\"\n[[stage]\n");
    assert_refused(&["pipeline", "run", malformed.to_str().unwrap()], "line 2");
    let unknown = temp_file(
        "unknown.toml",
        "name = \"x\"\n[[stage]]\nname = \"a\"\nkind = \"warp-drive\"\n",
    );
    assert_refused(
        &["pipeline", "run", unknown.to_str().unwrap()],
        "unknown kind `warp-drive`",
    );
    let bad_config = temp_file(
        "config.toml",
        "name = \"x\"\n[[stage]]\nname = \"a\"\nkind = \"tokenize\"\nconfig = { min_len = \"x\" }\n",
    );
    assert_refused(
        &["pipeline", "run", bad_config.to_str().unwrap()],
        "invalid config for kind `tokenize`",
    );
    let json = temp_file("bad.json", "{\"name\": \"x\", \"stages\": [");
    assert_refused(&["pipeline", "run", json.to_str().unwrap()], "invalid JSON");
    assert_refused(
        &[
            "pipeline",
            "run",
            "--timeout",
            "soon",
            "examples/pipeline.toml",
        ],
        "not a duration",
    );
}

#[test]
fn check_validates_without_running() {
    let out = plexus(&["pipeline", "check", "examples/pipeline.toml"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid (4 stages)"));
}

/// This checkout's root: Cargo sets it at run time too, so a test binary built in a
/// checkout elsewhere (a shared target dir) still works on this one's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// `plexus ... | head -1`: a reader that goes away must not make the command
/// panic. The pipe's read end is closed before the command starts, so its first
/// write meets a broken pipe; it must die quietly (SIGPIPE, as Unix tools do),
/// never with Rust's "failed printing to stdout" panic.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(format!("plexus-cli-pipe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["keys", "new", "--data-dir", dir.to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert_ne!(out.status.code(), Some(101), "not Rust's panic exit code");
    assert_eq!(
        out.status.signal(),
        Some(13),
        "SIGPIPE, quietly: {:?}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let out = plexus(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // `$PLEXUS_COMMIT` wins when the build had it; otherwise git's HEAD at build
    // time, which is this checkout's HEAD unless a commit came in between.
    let want = match std::env::var("PLEXUS_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(manifest_dir())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string()),
    };
    assert_eq!(
        text,
        format!("plexus {} ({want})", env!("CARGO_PKG_VERSION")),
        "--version"
    );
}
