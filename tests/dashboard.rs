//! The dashboard in a real browser against a real 3-node cluster: Debian's
//! chromium driven by Playwright (`tests/browser/dashboard.mjs`). The page lists
//! the cluster's nodes, deploys a job through its form, and shows a migration
//! made elsewhere (through the API) live, without a reload. Screenshots go to
//! `$CARGO_TARGET_DIR/dashboard-screenshots/` (CI keeps them; docs/img has copies).
//!
//! Also, without a browser: the static files are public and carry no data, the
//! live feed and the actions need the token, and a node without an operator key
//! refuses actions with a clear error.
//!
//! Needs `chromium` (Debian) and `npm ci` in tests/browser, which `make test`
//! does (scripts/ensure-deps.sh).

// Process-level tests: real sockets and real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Network, NodeProc};
use serde_json::{Value, json};

const SPEC: &str = r#"name = "dash"
durability = 3
[resources]
cpu = "100m"
memory = "16MiB"

[[stage]]
name = "count"
kind = "word-count"
"#;
const ACTOR: &str = "dash/count/0";

fn browser_dir() -> PathBuf {
    // Where cargo runs the test from; the compiled-in path is stale if the
    // checkout moved while the build cache stayed.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/browser")
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("dashboard-screenshots")
}

/// Three nodes whose APIs sign actions with a submitter key.
fn cluster(tag: &str, operator: bool) -> (Network, Vec<NodeProc>) {
    let net = Network::new(tag);
    let homes = net.admitted(3);
    let config = net.fast_config("fast");
    if operator {
        // A top-level key: before the config's first table.
        let key = net.submitter("operator");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = format!("api_operator_key = \"{}\"\n{text}", key.display());
        std::fs::write(&config, text).unwrap();
    }
    let mut nodes = net.start_all(&homes, &config);
    for node in nodes.iter_mut() {
        node.wait_members(2, Duration::from_secs(20));
    }
    (net, nodes)
}

/// A raw GET: (status, content type, body).
fn get(node: &NodeProc, path: &str, token: bool) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&format!("{}{path}", node.api));
    if token {
        req = req.header("authorization", format!("Bearer {}", node.token));
    }
    let mut resp = req.call().unwrap();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = resp.status().as_u16();
    (
        status,
        content_type,
        resp.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn the_dashboard_shows_the_cluster_and_a_migration_live_in_a_real_browser() {
    let playwright = browser_dir().join("node_modules/playwright-core");
    assert!(
        playwright.exists(),
        "{} is missing: run `npm ci --prefix tests/browser` (make test does)",
        playwright.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: install Debian's `chromium` (make test does)"
    );
    let (_net, nodes) = cluster("dashboard", true);
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let shots = screenshots();
    let _ = std::fs::remove_dir_all(&shots);

    let mut browser = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .current_dir(browser_dir())
        .env(
            "DASHBOARD_URL",
            format!("{}/#token={}", nodes[0].api, nodes[0].token),
        )
        .env("NODE_IDS", ids.join(","))
        .env("SPEC", SPEC)
        .env("ACTOR", ACTOR)
        .env("SCREENSHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node (Node.js)");
    let mut stdin = browser.stdin.take().unwrap();
    let mut steps = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next = || -> Value {
        let line = steps
            .next()
            .expect("the browser script ended early")
            .unwrap();
        eprintln!("browser: {line}");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_ne!(v["step"], "failed", "the browser test failed: {v:#}");
        v
    };

    let step = next();
    assert_eq!(step["step"], "nodes");
    let rows = step["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Every node's software, this one's from its API and the others' from gossip.
    for row in rows {
        let row = row.as_str().unwrap();
        assert!(row.contains(env!("CARGO_PKG_VERSION")), "{row}");
    }

    let step = next();
    assert_eq!(step["step"], "deployed");
    let host = step["node"].as_str().unwrap().to_string();
    assert!(ids.contains(&host), "the page placed {ACTOR} on {host}");
    // The scheduler agrees with the page about where it runs.
    let jobs = nodes[1].get("/v1/jobs");
    let placed = jobs["Status"]["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == ACTOR)
        .cloned()
        .unwrap_or_else(|| panic!("the scheduler does not list {ACTOR}: {jobs}"));
    assert_eq!(placed["node"], host.as_str());

    // Migrate through another node's API; the open page must show it.
    let target = ids.iter().find(|id| **id != host).unwrap().clone();
    let answer = nodes[2]
        .post("/v1/migrate", json!({ "actor": ACTOR, "to": target }))
        .unwrap();
    assert!(answer.get("Migrating").is_some(), "{answer}");
    writeln!(stdin, "{target}").unwrap();
    let step = next();
    assert_eq!(step["step"], "migrated");
    let logged = step["log"].as_str().unwrap();
    assert!(
        logged.contains(&format!(
            "{} → {}",
            &host[host.len() - 6..],
            &target[target.len() - 6..]
        )),
        "{logged}"
    );

    let step = next();
    assert_eq!(step["step"], "pages");
    assert_eq!(step["failures"], json!([]), "errors in the page");
    let pages = &step["pages"];
    assert!(pages["jobs"].as_str().unwrap().contains("dash"), "{pages}");
    assert!(
        pages["storage"].as_str().unwrap().contains("chunks held"),
        "{pages}"
    );
    let status = browser.wait().unwrap();
    assert!(status.success(), "the browser script exited with {status}");
    for shot in [
        "cluster.png",
        "cluster-migrated.png",
        "jobs.png",
        "storage.png",
    ] {
        let bytes = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(bytes > 10_000, "{shot}: {bytes} bytes");
    }
}

#[test]
fn static_files_are_public_and_data_and_actions_need_the_token() {
    let (_net, nodes) = cluster("dashboard-auth", false);
    let node = &nodes[0];
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ] {
        let (status, content_type, body) = get(node, path, false);
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        // No data in the static files: not even the node's id.
        assert!(!body.contains(&node.id), "{path} carries the node id");
    }
    let (status, _, _) = get(node, "/v1/events", false);
    assert_eq!(status, 401);

    // With the token: a first snapshot at once, naming every node.
    let mut resp = ureq::get(&format!("{}/v1/events", node.api))
        .header("authorization", format!("Bearer {}", node.token))
        .call()
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut reader = BufReader::new(resp.body_mut().as_reader());
    let mut event = String::new();
    let mut data = String::new();
    while data.is_empty() {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the feed ended");
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = d.trim().to_string();
        }
    }
    assert_eq!(event, "snapshot");
    let snap: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(snap["node"]["id"], node.id.as_str());
    let mut seen: Vec<&str> = snap["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    seen.push(snap["node"]["id"].as_str().unwrap());
    seen.sort_unstable();
    let mut ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(seen, ids);
    assert_eq!(snap["allowlist"].as_object().unwrap().len(), 3);
    assert!(snap["files"]["files"].is_array(), "{}", snap["files"]);
    assert!(snap["storage"]["chunks"].is_u64(), "{}", snap["storage"]);
    assert_eq!(snap["operator"], Value::Null);
    drop(reader);

    // No operator key: actions are refused with a clear, typed answer.
    let refused = node.post("/v1/migrate", json!({ "actor": ACTOR, "to": nodes[1].id }));
    let why = refused.unwrap_err();
    assert!(
        why.starts_with("403") && why.contains("api_operator_key"),
        "{why}"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&format!("{}/v1/jobs", node.api))
        .send(SPEC)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "no token, no deploy");
    let mut body = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .unwrap();
    assert!(body.contains("token"), "{body}");
}
