//! Issue 5's multi-process tests: real `plexus node` processes on 127.0.0.1.
//!
//! * `plexus demo`: migration under load and a SIGKILLed node, with every message
//!   accounted for (zero lost, none applied twice).
//! * Signed deploys run; forged and unsatisfiable ones are refused with a reason
//!   and leave nothing deployed; a request's trace crosses nodes and reaches an
//!   OTLP collector whole; SIGTERM drains a node's actors to the others.
//! * A node that joins takes actors over by live migration (rebalancing).

// Process-level tests: they wait on real processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use common::{Network, NodeProc, SIGTERM, otlp, plexus, poll};

#[test]
fn the_demo_migrates_and_survives_a_kill_without_losing_a_message() {
    let out = plexus()
        .args(["demo", "--messages", "900"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("migrated demo/count/0 live"), "{stdout}");
    assert!(stdout.contains("with SIGKILL"), "{stdout}");
    assert!(stdout.contains("restored every actor"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(last, "sent: 900 delivered: 900 lost: 0", "{stdout}");
}

const JOB: &str = r#"name = "wc"
durability = 3
[resources]
cpu = "500m"
[[stage]]
name = "ingest"
kind = "relay"
to = ["count"]
[[stage]]
name = "count"
kind = "word-count"
replicas = 2
"#;

fn client(args: &[&str], api: &str, key: &Path) -> (bool, i32, String, String) {
    let out = plexus()
        .args(args)
        .args(["--api", api, "--key", key.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.success(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn durable_actors(node: &NodeProc) -> Vec<String> {
    node.get("/v1/durable")["actors"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn signed_deploys_run_forged_and_unsatisfiable_ones_are_refused_and_sigterm_drains() {
    let net = Network::new("durable");
    let homes = admitted(&net, 3, &["region=eu"]);
    let key = net.submitter("client");
    let (forger_home, _) = net.new_key("forger");
    let forged = forger_home.join("node.key");
    // Every node exports its spans to one collector.
    let collector = otlp::Collector::start();
    let config = net.fast_config("fast");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[telemetry]\notlp_endpoint = \"{}\"\n",
        collector.url
    ));
    std::fs::write(&config, text).unwrap();
    let mut nodes = net.start_all(&homes, &config);
    nodes[0].wait_members(2, Duration::from_secs(30));
    let api = nodes[0].api.clone();
    let job = net.dir.0.join("wc.toml");
    std::fs::write(&job, JOB).unwrap();

    // A key that is not an allowlisted submitter: refused, with the reason.
    let (ok, code, _, err) = client(&["deploy", job.to_str().unwrap()], &api, &forged);
    assert!(!ok && code == 2, "{err}");
    assert!(err.contains("not an allowlisted submitter"), "{err}");
    // Unsatisfiable: more CPU than any node has. Refused whole.
    let big = net.dir.0.join("big.toml");
    std::fs::write(&big, JOB.replace("cpu = \"500m\"", "cpu = 64")).unwrap();
    let (ok, code, _, err) = client(&["deploy", big.to_str().unwrap()], &api, &key);
    assert!(!ok && code == 2, "{err}");
    assert!(
        err.to_lowercase().contains("cpu") || err.contains("fit"),
        "{err}"
    );
    let (ok, _, out, err) = client(&["jobs"], &api, &key);
    assert!(ok, "{err}");
    assert!(
        out.contains("no jobs"),
        "nothing was partially deployed: {out}"
    );
    // A malformed spec never leaves the client.
    let bad = net.dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[[stage]]\nname = \"a\"\nkind = \"relay\"\nreplicas = -1\n",
    )
    .unwrap();
    let (ok, code, _, err) = client(&["deploy", bad.to_str().unwrap()], &api, &key);
    assert!(!ok && code == 2, "{err}");
    assert!(err.contains("replicas"), "{err}");

    // Signed by the submitter: runs.
    let (ok, _, out, err) = client(&["deploy", job.to_str().unwrap()], &api, &key);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("3/3 actors active"), "{out}");
    let (ok, _, out, _) = client(&["jobs"], &api, &key);
    assert!(ok && out.contains("wc"), "{out}");

    // Traffic through a stage, exactly once, carrying a trace context from the
    // client through the API node, the ingest actor and the count actor (spread
    // placement: three actors on three nodes, so it crosses nodes).
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (ok, _, _, err) = client(
        &[
            "send",
            "wc/ingest/0",
            "a b",
            "b c",
            "c d",
            "--traceparent",
            tp,
        ],
        &api,
        &key,
    );
    assert!(ok, "{err}");
    let hosts: std::collections::BTreeSet<String> = nodes
        .iter()
        .filter(|n| durable_actors(n).iter().any(|k| k.starts_with("wc/")))
        .map(|n| n.id.clone())
        .collect();
    assert!(hosts.len() >= 2, "the job spans nodes: {hosts:?}");
    poll(Duration::from_secs(20), || {
        let seen = nodes.iter().any(|n| {
            n.get("/v1/durable")["actors"].as_object().is_some_and(|a| {
                a.iter().any(|(k, v)| {
                    k.starts_with("wc/count/")
                        && v["last_trace"]
                            .as_str()
                            .is_some_and(|t| t.starts_with(&format!("00-{trace_id}-")))
                })
            })
        });
        seen.then_some(())
            .ok_or("the trace context never reached the count stage".to_string())
    });
    // The collector gets one trace from several nodes, each hop the child of the
    // one before: the client's span -> `api.send` on the API node -> the ingest
    // stage's `durable.apply` -> a count stage's `durable.apply`.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (api_send, ingest, count) = poll(Duration::from_secs(30), || {
        let spans: Vec<otlp::SeenSpan> = collector
            .spans()
            .into_iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        let api_send = spans
            .iter()
            .find(|s| s.name == "api.send" && hex(&s.parent_span_id) == "00f067aa0ba902b7")
            .cloned();
        let ingest = api_send.as_ref().and_then(|a| {
            spans
                .iter()
                .find(|s| {
                    s.name == "durable.apply"
                        && s.attribute("key") == Some("wc/ingest/0")
                        && s.parent_span_id == a.span_id
                })
                .cloned()
        });
        let count = ingest.as_ref().and_then(|i| {
            spans
                .iter()
                .find(|s| {
                    s.attribute("key")
                        .is_some_and(|k| k.starts_with("wc/count/"))
                        && s.parent_span_id == i.span_id
                })
                .cloned()
        });
        match (api_send, ingest, count) {
            (Some(a), Some(i), Some(c)) => Ok((a, i, c)),
            _ => Err(format!(
                "the trace never reached the collector whole: {spans:#?}"
            )),
        }
    });
    assert_eq!(api_send.instance, nodes[0].id, "api.send is the API node's");
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    for span in [&ingest, &count] {
        assert!(ids.contains(&span.instance.as_str()), "{span:?}");
    }
    let on: std::collections::BTreeSet<&str> = [&api_send, &ingest, &count]
        .iter()
        .map(|s| s.instance.as_str())
        .collect();
    assert!(on.len() >= 2, "one trace across nodes: {on:?}");
    assert!(
        collector.bad.lock().unwrap().is_empty(),
        "{:?}",
        collector.bad
    );

    let bad_tp = client(
        &["send", "wc/ingest/0", "x", "--traceparent", "00-zz"],
        &api,
        &key,
    );
    assert!(
        !bad_tp.0 && bad_tp.1 == 2 && bad_tp.3.contains("traceparent"),
        "{bad_tp:?}"
    );

    // SIGTERM a node that hosts actors (not the API node): it drains them first.
    let victim = (1..3)
        .max_by_key(|&i| durable_actors(&nodes[i]).len())
        .unwrap();
    let had = durable_actors(&nodes[victim]);
    nodes[victim].signal(SIGTERM);
    let drained = nodes[victim].wait_event(Duration::from_secs(60), |v| v["event"] == "drained");
    assert_eq!(drained["actors_left"], 0, "{drained}; it hosted {had:?}");
    nodes[victim].wait_event(Duration::from_secs(30), |v| v["event"] == "stopped");
    poll(Duration::from_secs(30), || {
        let rows = active_rows(&api, &key, "wc/", 3)?;
        match rows.iter().find(|l| l.contains(&nodes[victim].id)) {
            Some(l) => Err(format!("still on the drained node: {l}")),
            None => Ok(()),
        }
    });
    // The messages' effects moved with the actors (they may still be in flight
    // between the stages: wait for them, within a bound).
    let survivors = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n);
    applied_exactly(survivors, "wc", 3);
}

/// The `plexus actors` rows of actors whose key starts with `prefix`, once there are
/// `n` of them and all are active.
fn active_rows(api: &str, key: &Path, prefix: &str, n: usize) -> Result<Vec<String>, String> {
    let (ok, _, out, err) = client(&["actors"], api, key);
    let rows: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect();
    if ok && rows.len() == n && rows.iter().all(|l| l.ends_with("active")) {
        Ok(rows)
    } else {
        Err(format!("{out}{err}"))
    }
}

/// `n` data dirs of node keys admitted with `tags`.
fn admitted(net: &Network, n: usize, tags: &[&str]) -> Vec<std::path::PathBuf> {
    (1..=n)
        .map(|i| {
            let (data, id) = net.new_key(&format!("n{i}"));
            net.admit(&id, tags);
            data
        })
        .collect()
}

/// Waits until the job's count stage, over `nodes`, has applied `n` messages, and
/// fails at once if it applied more (a message applied twice).
fn applied_exactly<'a>(nodes: impl Iterator<Item = &'a NodeProc> + Clone, job: &str, n: u64) {
    poll(Duration::from_secs(30), || {
        let got = counted(nodes.clone(), job);
        assert!(got <= n, "a message was applied twice: {got} of {n}");
        (got == n)
            .then_some(())
            .ok_or(format!("the count stage holds {got} of {n} messages"))
    });
}

/// Sums the `count` of a job's count stage over `nodes`.
fn counted<'a>(nodes: impl Iterator<Item = &'a NodeProc>, job: &str) -> u64 {
    nodes
        .map(|n| n.get("/v1/durable"))
        .flat_map(|s| {
            s["actors"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k.starts_with(&format!("{job}/count/")))
                .map(|(_, v)| v["count"].as_u64().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .sum()
}

#[test]
fn a_node_that_joins_takes_over_actors_by_live_migration() {
    let net = Network::new("rebalance");
    let homes = admitted(&net, 3, &[]);
    let key = net.submitter("client");
    let config = net.fast_config("fast");
    let mut nodes = net.start_all(&homes[..2], &config);
    nodes[0].wait_members(1, Duration::from_secs(30));
    let api = nodes[0].api.clone();

    // Four actors spread over two nodes: two each.
    let job = net.dir.0.join("rb.toml");
    std::fs::write(
        &job,
        JOB.replace("name = \"wc\"", "name = \"rb\"")
            .replace("durability = 3", "durability = 2")
            .replace("replicas = 2", "replicas = 3"),
    )
    .unwrap();
    let (ok, _, out, err) = client(&["deploy", job.to_str().unwrap()], &api, &key);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("4/4 actors active"), "{out}");
    for n in &nodes {
        assert_eq!(
            durable_actors(n)
                .iter()
                .filter(|k| k.starts_with("rb/"))
                .count(),
            2,
            "spread: {:?}",
            durable_actors(n)
        );
    }
    let (ok, _, _, err) = client(&["send", "rb/ingest/0", "a b", "c d"], &api, &key);
    assert!(ok, "{err}");

    // A third node joins: the scheduler moves an actor to it, live.
    let boot = nodes[0].listen.clone();
    nodes.push(net.start(2, &homes[2], &config, Some(&boot)));
    poll(Duration::from_secs(60), || {
        let rows = active_rows(&api, &key, "rb/", 4)?;
        if rows.iter().any(|l| l.contains(&nodes[2].id)) {
            Ok(())
        } else {
            Err(format!("no actor moved to the new node: {rows:?}"))
        }
    });
    assert!(
        durable_actors(&nodes[2])
            .iter()
            .any(|k| k.starts_with("rb/")),
        "the new node hosts an actor: {:?}",
        durable_actors(&nodes[2])
    );
    // It was a migration: the source node counts it, and nobody died.
    let migrations: u64 = nodes
        .iter()
        .map(|n| n.get("/v1/durable")["migrations"].as_u64().unwrap_or(0))
        .sum();
    assert!(migrations >= 1, "moved by migration, not a restart");
    let deaths: Vec<Value> = nodes
        .iter_mut()
        .flat_map(|n| n.drain().to_vec())
        .filter(|v| v["event"] == "member_died")
        .collect();
    assert!(deaths.is_empty(), "nothing died: {deaths:?}");

    // Traffic before and after the move is applied exactly once.
    let (ok, _, _, err) = client(&["send", "rb/ingest/0", "e f", "g h"], &api, &key);
    assert!(ok, "{err}");
    applied_exactly(nodes.iter(), "rb", 4);
}

/// With the registry sharded (`[registry] owners`), each durable actor's name is
/// held by its owners, not by every node: the scheduler places a job from its
/// hosts' reports, senders find the actors by asking the owners, and a SIGKILLed
/// host's actors are restored elsewhere, every message applied exactly once.
#[test]
fn a_sharded_registry_runs_a_job_and_restores_a_killed_hosts_actors() {
    let net = Network::new("sharded");
    let homes = admitted(&net, 4, &[]);
    let key = net.submitter("client");
    let config = net.fast_config("fast");
    common::append_config(&config, "[registry]\nowners = 2\nwatch_refresh = \"2s\"\n");
    let mut nodes = net.start_all(&homes, &config);
    nodes[0].wait_members(3, Duration::from_secs(30));
    let api = nodes[0].api.clone();
    let job = net.dir.0.join("wc.toml");
    std::fs::write(&job, JOB).unwrap();
    let (ok, _, out, err) = client(&["deploy", job.to_str().unwrap()], &api, &key);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("3/3 actors active"), "{out}");
    let (ok, _, _, err) = client(&["send", "wc/ingest/0", "a b", "c d"], &api, &key);
    assert!(ok, "{err}");
    applied_exactly(nodes.iter(), "wc", 2);

    // Kill a host of the job's actors (not the API node), hard.
    let victim = (1..4)
        .max_by_key(|&i| durable_actors(&nodes[i]).len())
        .unwrap();
    assert!(
        !durable_actors(&nodes[victim]).is_empty(),
        "the job runs on three of four nodes"
    );
    nodes[victim].kill();
    let gone = nodes[victim].id.clone();
    poll(Duration::from_secs(60), || {
        let rows = active_rows(&api, &key, "wc/", 3)?;
        match rows.iter().find(|l| l.contains(&gone)) {
            Some(l) => Err(format!("still on the killed node: {l}")),
            None => Ok(()),
        }
    });
    let (ok, _, _, err) = client(&["send", "wc/ingest/0", "e f", "g h"], &api, &key);
    assert!(ok, "{err}");
    let survivors = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n);
    applied_exactly(survivors, "wc", 4);
}
