//! Issue 3's multi-process test: real `plexus node` processes on 127.0.0.1 with
//! ephemeral ports form a cluster; a remote ask crosses nodes; a registered name
//! resolves from every node; a SIGKILLed node is declared dead within the configured
//! bound; a node not on the allowlist is refused and nothing it sends reaches an actor.

// Process-level tests: they read clocks to measure real detection times.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use common::{Network, NodeProc, SIGTERM};
use serde_json::json;

#[test]
fn four_processes_form_a_cluster_detect_a_kill_and_refuse_an_intruder() {
    let net = Network::new("cluster");
    let mut homes = Vec::new();
    for i in 1..=4 {
        let (data, id) = net.new_key(&format!("n{i}"));
        net.admit(&id, &["region=eu", "kyc"]);
        homes.push((data, id));
    }
    let (intruder_home, _intruder_id) = net.new_key("intruder");
    let config = net.fast_config("fast");

    let data: Vec<std::path::PathBuf> = homes.iter().map(|(d, _)| d.clone()).collect();
    let mut nodes = net.start_all(&data, &config);
    let boot = nodes[0].listen.clone();
    for node in nodes.iter_mut() {
        node.wait_members(3, Duration::from_secs(20));
    }

    // A remote ask crosses nodes, and a registered name resolves from every node.
    let spawned = nodes[1]
        .post("/v1/actors", json!({ "kind": "echo", "name": "echo-2" }))
        .unwrap();
    assert_eq!(spawned["node"], nodes[1].id);
    for node in nodes.iter_mut() {
        node.wait_event(Duration::from_secs(10), |v| {
            v["event"] == "name_bound" && v["name"] == "echo-2"
        });
        let reply = node
            .post(
                "/v1/ask",
                json!({ "name": "echo-2", "text": format!("from {}", node.name) }),
            )
            .unwrap();
        assert_eq!(
            reply["node"],
            nodes_id(1, &homes),
            "answered by node 2 for {}",
            node.name
        );
        assert_eq!(reply["text"], format!("from {}", node.name));
    }
    // Remote spawn: node 1 starts an echo on node 3; node 4 reaches it by name.
    let on3 = nodes[0]
        .post(
            "/v1/actors",
            json!({ "kind": "echo", "name": "echo-3", "node": nodes[2].id }),
        )
        .unwrap();
    assert_eq!(on3["node"], nodes[2].id);
    nodes[3].wait_event(Duration::from_secs(10), |v| {
        v["event"] == "name_bound" && v["name"] == "echo-3"
    });
    let reply = nodes[3]
        .post("/v1/ask", json!({ "name": "echo-3", "text": "hi" }))
        .unwrap();
    assert_eq!(reply["node"], nodes[2].id);
    // Bad requests are typed errors, not crashes.
    assert!(
        nodes[0]
            .post("/v1/ask", json!({ "name": "nobody", "text": "?" }))
            .unwrap_err()
            .contains("404")
    );
    assert!(
        nodes[0]
            .post("/v1/actors", json!({ "kind": "warp-drive" }))
            .unwrap_err()
            .contains("unknown actor kind")
    );

    // SIGKILL node 4: the others declare it dead within the configured bound.
    let bound = nodes[0].detection_bound;
    let victim = nodes[3].id.clone();
    let killed_at = Instant::now();
    nodes[3].kill();
    for node in nodes.iter_mut().take(3) {
        node.wait_event(bound + Duration::from_secs(5), |v| {
            v["event"] == "member_died" && v["node"] == victim
        });
        let took = killed_at.elapsed();
        println!(
            "{} declared the SIGKILLed node dead after {took:?} (configured bound {bound:?})",
            node.name
        );
        assert!(
            took <= bound,
            "{}: {took:?} exceeds the bound {bound:?}",
            node.name
        );
    }

    // An intruder with a valid key that is not on the allowlist is refused, and
    // nothing it sends reaches an actor.
    let before = handled(&nodes[1], "echo-2");
    let mut intruder = NodeProc::start(
        "intruder",
        &intruder_home,
        &net.allowlist(),
        &config,
        Some(&boot),
    );
    nodes[0].wait_event(Duration::from_secs(10), |v| {
        v["event"] == "connection_refused"
    });
    let echo2 = spawned["actor"].as_str().unwrap();
    for _ in 0..10 {
        let _ = intruder.post(
            "/v1/tell",
            json!({ "actor": echo2, "node": nodes[1].id, "text": "let me in" }),
        );
    }
    let ask = intruder.post(
        "/v1/ask",
        json!({ "actor": echo2, "node": nodes[1].id, "text": "hello?" }),
    );
    assert!(ask.is_err(), "the intruder got an answer: {ask:?}");
    assert_eq!(
        handled(&nodes[1], "echo-2"),
        before,
        "nothing from the intruder reached the actor"
    );
    for node in nodes.iter().take(3) {
        let members = node.get("/v1/members");
        assert!(
            !members
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == intruder.id),
            "the intruder is not a member"
        );
    }
    let stats = nodes[0].get("/v1/stats");
    assert!(
        stats["connections_refused"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    intruder.kill();

    // SIGTERM stops a node cleanly; the others see it leave, not die.
    let leaving = nodes[2].id.clone();
    nodes[2].signal(SIGTERM);
    nodes[2].wait_event(Duration::from_secs(15), |v| v["event"] == "stopped");
    let status = nodes[2].child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    nodes[0].wait_event(Duration::from_secs(10), |v| {
        v["event"] == "member_left" && v["node"] == leaving
    });
}

fn nodes_id(i: usize, homes: &[(std::path::PathBuf, String)]) -> String {
    homes[i].1.clone()
}

fn handled(node: &NodeProc, name: &str) -> u64 {
    let actors = node.get("/v1/actors");
    let names = node.get("/v1/names");
    let id = names[name]["actor"].as_str().unwrap().to_string();
    actors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .map(|a| a["handled"].as_u64().unwrap())
        .unwrap_or(0)
}
