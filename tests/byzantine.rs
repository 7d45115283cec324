//! Issue 9's multi-process Byzantine tests: real `plexus node` processes, and in
//! this test process an admitted node that lies (the mesh's test-only `evil`
//! feature lets it put any frame on the wire). Whatever it says, the honest nodes
//! keep their actors, see each other alive, and place constrained work only where
//! governance allowed it.

// Process-level tests: real sockets and real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use common::{Network, NodeProc};
use plexus::actors::ActorId;
use plexus::mesh::allowlist::SignedAllowlist;
use plexus::mesh::driver::{MeshConfig, read_key};
use plexus::{Node, NodeId};
use serde_json::{Value, json};

/// Three honest nodes and the evil one's key (admitted like any operator).
struct Cluster {
    net: Network,
    nodes: Vec<NodeProc>,
    evil_key: plexus::vocab::identity::NodeKey,
}

fn cluster(tag: &str) -> Cluster {
    let net = Network::new(tag);
    let mut homes = Vec::new();
    for i in 1..=3 {
        let (data, id) = net.new_key(&format!("n{i}"));
        net.admit(&id, &["kyc"]);
        homes.push(data);
    }
    let (evil_home, evil_id) = net.new_key("evil");
    net.admit(&evil_id, &[]);
    let evil_key = read_key(&evil_home.join("node.key")).unwrap();
    let config = net.fast_config("fast");
    let mut nodes = net.start_all(&homes, &config);
    for node in nodes.iter_mut() {
        node.wait_members(2, Duration::from_secs(20));
    }
    Cluster {
        net,
        nodes,
        evil_key,
    }
}

/// The evil node, embedded here, joined to the cluster through `boot`.
async fn evil_node(c: &Cluster) -> Node {
    let bytes = std::fs::read(c.net.allowlist()).unwrap();
    let allowlist = SignedAllowlist::decode(&bytes).unwrap();
    let mut config = MeshConfig::new(c.evil_key.clone(), allowlist);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.bootstrap = vec![c.nodes[0].listen.parse().unwrap()];
    let node = Node::builder()
        .key(c.evil_key.clone())
        .start_meshed(config)
        .await
        .unwrap();
    let mesh = node.mesh().unwrap().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while mesh
        .members()
        .iter()
        .filter(|m| m.state.to_string() == "alive")
        .count()
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the evil node joins"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node
}

fn actor_ids(node: &NodeProc) -> Vec<String> {
    node.get("/v1/actors")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_node_cannot_stop_actors_it_did_not_spawn() {
    let c = cluster("byz-stop");
    let evil = evil_node(&c).await;
    let victim: NodeId = c.nodes[1].id.parse().unwrap();

    // n1 has an echo actor spawned on n2; n1 owns it.
    let spawned: Value = c.nodes[0]
        .post(
            "/v1/actors",
            json!({ "kind": "echo", "node": c.nodes[1].id }),
        )
        .unwrap();
    let actor: ActorId = spawned["actor"].as_str().unwrap().parse().unwrap();
    assert!(actor_ids(&c.nodes[1]).contains(&actor.to_string()));

    // The evil node asks n2's agent to stop it, and to stop n2's system actors.
    let refused = evil.stop_on(victim, actor).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("may not stop")),
        "a stranger's stop is refused: {refused:?}"
    );
    for system in [0u64, 1, 2] {
        let refused = evil.stop_on(victim, ActorId::new(victim, system)).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("system actor")),
            "system actor {system}: {refused:?}"
        );
    }
    let still = actor_ids(&c.nodes[1]);
    assert!(
        still.contains(&actor.to_string()),
        "the actor still runs: {still:?}"
    );
    assert!(
        still.contains(&ActorId::new(victim, 0).to_string()),
        "the agent still runs: {still:?}"
    );

    // What the evil node spawned itself, it may stop: the rule is ownership, not
    // a blanket refusal.
    let own = evil
        .spawn_on(victim, "echo", Default::default(), None)
        .await
        .unwrap();
    assert_eq!(evil.stop_on(victim, own).await.unwrap(), true);
    evil.shutdown().await;
}
