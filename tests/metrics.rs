//! Metrics as an operator's tools see them, on real `plexus node` processes:
//! `promtool check metrics` accepts a live node's exposition, a real Prometheus
//! scrapes a 3-node cluster and answers queries, and the shipped alert rules and
//! Grafana dashboard check out and name only metrics the nodes export.
//!
//! Needs Debian's `prometheus` package (`promtool`, `prometheus`), which
//! `make test` installs (scripts/ensure-deps.sh).

// Process-level tests: real sockets and real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Network, NodeProc};
use serde_json::{Value, json};

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn deploy() -> PathBuf {
    // Where cargo runs the test from; the compiled-in path is stale if the
    // checkout moved while the build cache stayed.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("deploy")
}

/// A tool from Debian's `prometheus` package; a clear failure if it is missing.
fn tool(name: &str) -> Command {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install Debian's `prometheus` package (make test does: scripts/ensure-deps.sh)",
        path.display()
    );
    Command::new(path)
}

/// A node's `/metrics`: (content type, body).
fn scrape(node: &NodeProc, accept: Option<&str>) -> (String, String) {
    let mut req = ureq::get(&format!("{}/metrics", node.api))
        .header("authorization", format!("Bearer {}", node.token));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let mut resp = req.call().expect("GET /metrics");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (content_type, resp.body_mut().read_to_string().unwrap())
}

/// `promtool check metrics` on `text`: its verdict and what it printed.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every `plexus_...` name in `expr`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("plexus_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expr[start..end].to_string());
        i = end;
    }
    names
}

/// Whether the exposition has a sample of `name` (a histogram's `_bucket`,
/// `_sum` and `_count` series included).
fn exposes(text: &str, name: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
    })
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: common::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// A Prometheus scraping each node every second, with its token.
    fn start(nodes: &[NodeProc]) -> Prometheus {
        let dir = common::TempDir::new("prometheus");
        let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
        for node in nodes {
            let token = dir.0.join(format!("{}.token", node.name));
            std::fs::write(&token, &node.token).unwrap();
            config.push_str(&format!(
                "  - job_name: plexus-{name}\n    authorization:\n      type: Bearer\n      credentials_file: {token}\n    static_configs:\n      - targets: [\"{target}\"]\n",
                name = node.name,
                token = token.display(),
                target = node.api.trim_start_matches("http://"),
            ));
        }
        let config_file = dir.0.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        // A free port: bound, read, released (Prometheus cannot report a port 0).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let child = tool("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The result vector of an instant query, or why there is none yet.
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let mut resp = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", promql)
            .call()
            .map_err(|e| e.to_string())?;
        let v: Value = resp.body_mut().read_json().map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(format!("{v}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The single value of a query that yields one series.
    fn value(&self, promql: &str) -> Result<f64, String> {
        let result = self.query(promql)?;
        let [one] = result.as_slice() else {
            return Err(format!("{promql}: {} series", result.len()));
        };
        one["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{promql}: {one}"))
    }
}

#[test]
fn a_live_cluster_passes_promtool_and_a_real_prometheus_scrapes_it() {
    let net = Network::new("metrics");
    let homes = net.admitted(3);
    // Epochs on (without a chain), so their metrics are there to check.
    let config = net.fast_config("fast");
    let genesis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    common::append_config(
        &config,
        &format!("[epochs]\ngenesis_unix_ms = {genesis}\nlength = \"10s\"\n"),
    );
    let mut nodes = net.start_all(&homes, &config);
    for node in nodes.iter_mut() {
        node.wait_members(2, Duration::from_secs(20));
    }
    // Traffic for the ask histogram: asks from every node to an echo on node 2.
    nodes[1]
        .post("/v1/actors", json!({ "kind": "echo", "name": "echo" }))
        .unwrap();
    for node in nodes.iter_mut() {
        node.wait_event(Duration::from_secs(10), |v| {
            v["event"] == "name_bound" && v["name"] == "echo"
        });
    }
    const ASKS: usize = 5;
    for node in &nodes {
        for k in 0..ASKS {
            node.post("/v1/ask", json!({ "name": "echo", "text": format!("{k}") }))
                .unwrap();
        }
    }

    // What promtool checks: every node's exposition, in the text format.
    let mut texts = Vec::new();
    for node in &nodes {
        let (content_type, text) = common::poll(Duration::from_secs(15), || {
            let (ct, text) = scrape(node, None);
            // Every member alive in this node's view before judging the output,
            // and the node healthy again: a probe of a member still starting may
            // have failed, and each acked probe since lowers the score by one.
            match (
                sample(&text, "plexus_mesh_members{state=\"alive\"}"),
                sample(&text, "plexus_mesh_local_health"),
            ) {
                (Some(2.0), Some(0.0)) => Ok((ct, text)),
                other => Err(format!("{}: alive members, health {other:?}", node.name)),
            }
        });
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let (ok, said) = promtool_check(&text);
        assert!(
            ok && said.trim().is_empty(),
            "promtool on {}: {said}\n{text}",
            node.name
        );
        assert_eq!(
            sample(&text, "plexus_ask_duration_seconds_count{kind=\"echo\"}"),
            Some(ASKS as f64),
            "{}'s asks were timed",
            node.name
        );
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            assert!(!line.contains("_ms "), "base units only: {line}");
        }
        // Nothing is held back now: the asks all went straight in.
        assert_eq!(sample(&text, "plexus_mesh_peers_held"), Some(0.0), "{text}");
        // No per-actor label: an actor id never appears in a label value.
        assert!(!text.contains("actor=\""), "{text}");
        texts.push(text);
    }
    // A broken exposition fails the same check (the check can fail).
    let broken = texts[0].replace(
        "# HELP plexus_mesh_frames_in_total",
        "# HELP plexus_mesh_frames_in",
    );
    assert!(
        !promtool_check(&broken).0,
        "promtool accepted a counter without HELP"
    );

    // What a Prometheus server asks for: OpenMetrics.
    let (content_type, open) = scrape(&nodes[0], Some(PROMETHEUS_ACCEPT));
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");

    // A real Prometheus scrapes all three and answers queries over them.
    let prometheus = Prometheus::start(&nodes);
    let up = common::poll(Duration::from_secs(60), || {
        match prometheus.value("count(up == 1)") {
            Ok(3.0) => Ok(3.0),
            other => Err(format!("up: {other:?}")),
        }
    });
    assert_eq!(up, 3.0);
    let alive = common::poll(Duration::from_secs(30), || {
        match prometheus.value("sum(plexus_mesh_members{state=\"alive\"})") {
            Ok(6.0) => Ok(6.0),
            other => Err(format!("alive members: {other:?}")),
        }
    });
    assert_eq!(alive, 6.0, "each of 3 nodes sees 2 others alive");
    let asks = prometheus
        .value("sum(plexus_ask_duration_seconds_count{kind=\"echo\"})")
        .unwrap();
    assert_eq!(asks, (ASKS * nodes.len()) as f64);
    // The histogram answers a quantile query (the dashboard's and alerts' shape).
    let p99 = prometheus
        .value("histogram_quantile(0.99, sum by (le) (plexus_ask_duration_seconds_bucket{kind=\"echo\"}))")
        .unwrap();
    assert!(p99 > 0.0 && p99 < 13.0, "p99 ask latency {p99} s");

    // The shipped alert rules and dashboard name only metrics the nodes export.
    let rules = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/plexus.json")).unwrap(),
    )
    .expect("the Grafana dashboard is JSON");
    let mut named = metric_names(&rules);
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            named.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    let all = texts.join("\n");
    let missing: Vec<&String> = named.iter().filter(|n| !exposes(&all, n)).collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");
    assert!(named.len() >= 15, "{named:?}");
    // And the checker above can fail.
    assert!(!exposes(&all, "plexus_no_such_metric"));
}

#[test]
fn the_shipped_alert_rules_check_and_pass_their_unit_tests() {
    let dir = deploy().join("prometheus");
    let check = tool("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = tool("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // Every alert the issue names has a rule.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    for alert in [
        "PlexusNodeDown",
        "PlexusSuspicionStorm",
        "PlexusMigrationPauseHigh",
        "PlexusDiskErrors",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
}
