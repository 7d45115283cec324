//! Supervision across nodes, with real meshes on 127.0.0.1 in one process: a watcher
//! learns of a remote actor's end whether it stopped, crashed or its node died, and a
//! supervisor restarts a remote child elsewhere when its node dies.

// Driver-level tests: they run on tokio like the drivers they test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use plexus::Node;
use plexus::actors::runtime::{Actor, ActorError, Context, Exit, KindArgs, Message, Wire};
use plexus::mesh::allowlist::{Allowlist, NodeEntry, SignedAllowlist};
use plexus::mesh::cluster::ClusterConfig;
use plexus::mesh::driver::MeshConfig;
use plexus::mesh::membership::MemberState;
use plexus::supervision::{Placement, remote_child};
use plexus::supervisor::driver::SupervisorSpec;
use plexus::supervisor::{Intensity, Restart, Strategy};
use plexus::vocab::identity::NodeKey;
use plexus::vocab::resources::{Resources, Tags};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
enum Flaky {
    WhereAreYou,
    Crash,
}
impl Message for Flaky {
    type Reply = String;
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}
struct FlakyActor;
impl Actor for FlakyActor {
    type Msg = Flaky;
    type State = ();
    type Args = ();
    async fn started(&self, _: &Context<Flaky>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(
        &self,
        ctx: &Context<Flaky>,
        msg: Flaky,
        _: &mut (),
    ) -> Result<String, ActorError> {
        match msg {
            Flaky::WhereAreYou => Ok(ctx.system().node_id().to_string()),
            Flaky::Crash => Err("told to crash".into()),
        }
    }
}

async fn cluster(n: u8) -> Vec<Node> {
    let gov = NodeKey::from_seed([200; 32]);
    let keys: Vec<NodeKey> = (1..=n).map(|i| NodeKey::from_seed([i + 30; 32])).collect();
    let mut list = Allowlist::new("sup", gov.node_id());
    for k in &keys {
        list.nodes.insert(
            k.node_id(),
            NodeEntry {
                operator: "t".into(),
                tags: Tags::new(),
                declared: Resources::default(),
            },
        );
    }
    let allowlist = SignedAllowlist::sign(list, &gov).unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    for key in keys {
        let mut config = MeshConfig::new(key, allowlist.clone());
        config.cluster = ClusterConfig::default();
        config.cluster.membership.probe_interval = Duration::from_millis(200);
        config.cluster.membership.probe_timeout = Duration::from_millis(80);
        if let Some(first) = nodes.first() {
            let mesh = first.mesh().unwrap();
            let mut events = mesh.subscribe();
            while mesh.listen_addrs().is_empty() {
                let _ = events.recv().await;
            }
            config.bootstrap = vec![mesh.listen_addrs()[0].clone()];
        }
        let node = Node::builder().start_meshed(config).await.unwrap();
        node.kinds()
            .register_actor("flaky", |_| Ok((FlakyActor, ())));
        nodes.push(node);
    }
    for node in &nodes {
        wait(node, |node| {
            node.mesh()
                .unwrap()
                .members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == n as usize - 1
        })
        .await;
    }
    nodes
}

async fn wait(node: &Node, mut cond: impl FnMut(&Node) -> bool) {
    let mesh = node.mesh().unwrap().clone();
    let mut events = mesh.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond(node) {
        if tokio::time::timeout_at(deadline, events.recv())
            .await
            .is_err()
        {
            panic!("condition not met in 15 s; members {:?}", mesh.members());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_see_stops_crashes_and_node_deaths() {
    let nodes = cluster(3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // A normal stop.
    let id = a
        .spawn_on(b.id(), "flaky", KindArgs::default(), None)
        .await
        .unwrap();
    let exit = a.watch(id, b.id()).await.unwrap();
    assert!(a.stop_on(b.id(), id).await.unwrap());
    assert_eq!(exit.await, Exit::Normal);
    // A crash.
    let id = a
        .spawn_on(b.id(), "flaky", KindArgs::default(), None)
        .await
        .unwrap();
    let exit = a.watch(id, b.id()).await.unwrap();
    let _ = a.resolve_at::<Flaky>(id, b.id()).ask(Flaky::Crash).await;
    assert!(matches!(exit.await, Exit::Failed(why) if why.contains("told to crash")));
    // The node dies.
    let id = a
        .spawn_on(c.id(), "flaky", KindArgs::default(), None)
        .await
        .unwrap();
    let exit = a.watch(id, c.id()).await.unwrap();
    c.mesh().unwrap().shutdown_abruptly().await;
    let exit = tokio::time::timeout(Duration::from_secs(15), exit)
        .await
        .expect("node death noticed");
    assert!(
        matches!(&exit, Exit::Failed(why) if why.contains("died")),
        "{exit:?}"
    );
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_child_is_restarted_after_a_crash_and_elsewhere_after_its_node_dies() {
    let nodes = cluster(3).await;
    let a = &nodes[0];
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        Intensity {
            max_restarts: 5,
            period: Duration::from_secs(60),
        },
    )
    .child(remote_child(
        a,
        "worker",
        Restart::Permanent,
        "flaky",
        KindArgs::default(),
        Some("worker"),
        Placement::AnyOther,
    ));
    let _sup = a.supervise(spec).await.unwrap();
    wait(a, |n| n.mesh().unwrap().lookup("worker").is_some()).await;
    let first_home = a
        .resolve_name::<Flaky>("worker")
        .unwrap()
        .ask(Flaky::WhereAreYou)
        .await
        .unwrap();
    assert_ne!(first_home, a.id().to_string(), "placed on another node");
    let first_actor = a.mesh().unwrap().lookup("worker").unwrap().actor;

    // It crashes: the supervisor restarts it (a new incarnation takes the name).
    let _ = a
        .resolve_name::<Flaky>("worker")
        .unwrap()
        .ask(Flaky::Crash)
        .await;
    wait(a, |n| {
        n.mesh()
            .unwrap()
            .lookup("worker")
            .is_some_and(|l| l.actor != first_actor)
    })
    .await;

    // Its node dies: the supervisor restarts it on the remaining node.
    let host = nodes
        .iter()
        .find(|n| n.id().to_string() == first_home)
        .unwrap();
    let other = nodes
        .iter()
        .find(|n| n.id() != a.id() && n.id() != host.id())
        .unwrap();
    host.mesh().unwrap().shutdown_abruptly().await;
    wait(a, |n| {
        n.mesh()
            .unwrap()
            .lookup("worker")
            .is_some_and(|l| l.node == other.id())
    })
    .await;
    let home = a
        .resolve_name::<Flaky>("worker")
        .unwrap()
        .ask(Flaky::WhereAreYou)
        .await
        .unwrap();
    assert_eq!(home, other.id().to_string());
    for n in &nodes {
        n.shutdown().await;
    }
}
