//! Real meshes on 127.0.0.1 in one process: libp2p transport, real sockets, the
//! production driver. Waits are on mesh events, each bounded by a deadline.

// Driver-level tests: they run on tokio like the drivers they test.
#![cfg(feature = "runtime")]
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use plexus_actors::envelope::Failure;
use plexus_actors::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, AskError, Context, Message, SystemConfig, Wire,
};
use plexus_actors::{ActorId, NodeId};
use plexus_mesh::allowlist::{Allowlist, NodeEntry, SignedAllowlist};
use plexus_mesh::cluster::ClusterConfig;
use plexus_mesh::driver::{Mesh, MeshConfig, MeshEvent};
use plexus_mesh::membership::MemberState;
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::{Resources, Tags};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Echo(String);
impl Message for Echo {
    type Reply = (String, String);
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

struct Echoer;
impl Actor for Echoer {
    type Msg = Echo;
    type State = ();
    type Args = ();
    async fn started(&self, _: &Context<Echo>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(
        &self,
        ctx: &Context<Echo>,
        Echo(text): Echo,
        _: &mut (),
    ) -> Result<(String, String), ActorError> {
        Ok((ctx.system().node_id().to_string(), text))
    }
}

fn cluster_config() -> ClusterConfig {
    let mut c = ClusterConfig::default();
    c.membership.probe_interval = Duration::from_millis(200);
    c.membership.probe_timeout = Duration::from_millis(80);
    c.membership.sync_interval = Duration::from_secs(2);
    c
}

fn network(keys: &[NodeKey], gov: &NodeKey) -> SignedAllowlist {
    let mut list = Allowlist::new("test", gov.node_id());
    for k in keys {
        list.nodes.insert(
            k.node_id(),
            NodeEntry {
                operator: "t".into(),
                tags: Tags::new(),
                declared: Resources::default(),
            },
        );
    }
    SignedAllowlist::sign(list, gov).unwrap()
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn node(
    key: &NodeKey,
    allowlist: &SignedAllowlist,
    bootstrap: Vec<libp2p::Multiaddr>,
) -> (ActorSystem, Mesh) {
    node_with(key, allowlist, bootstrap, cluster_config()).await
}

async fn node_with(
    key: &NodeKey,
    allowlist: &SignedAllowlist,
    bootstrap: Vec<libp2p::Multiaddr>,
    cluster: ClusterConfig,
) -> (ActorSystem, Mesh) {
    node_tuned(key, allowlist, bootstrap, |config| config.cluster = cluster).await
}

async fn node_tuned(
    key: &NodeKey,
    allowlist: &SignedAllowlist,
    bootstrap: Vec<libp2p::Multiaddr>,
    tune: impl FnOnce(&mut MeshConfig),
) -> (ActorSystem, Mesh) {
    logs();
    let system = ActorSystem::new(SystemConfig::new(key.node_id()));
    let mut config = MeshConfig::new(key.clone(), allowlist.clone());
    config.bootstrap = bootstrap;
    config.cluster = cluster_config();
    tune(&mut config);
    let mesh = Mesh::start(config, system.clone()).await.unwrap();
    (system, mesh)
}

async fn wait_for(mesh: &Mesh, limit: Duration, mut check: impl FnMut(&Mesh) -> bool) {
    let mut events = mesh.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    while !check(mesh) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(_) => {}
            Err(_) => panic!(
                "condition not met within {limit:?}; stats {:?}; members {:?}",
                mesh.stats(),
                mesh.members()
            ),
        }
    }
}

/// Waits until `mesh` has `dead` declared dead and resolves `name` no more.
async fn dead_and_unnamed(mesh: &Mesh, dead: NodeId, name: &str, limit: Duration) {
    wait_for(mesh, limit, |m| {
        m.members()
            .iter()
            .any(|v| v.id == dead && v.state == MemberState::Dead)
            && m.lookup(name).is_none()
    })
    .await;
}

async fn first_addr(mesh: &Mesh) -> libp2p::Multiaddr {
    wait_for(mesh, Duration::from_secs(5), |m| {
        !m.listen_addrs().is_empty()
    })
    .await;
    mesh.listen_addrs()[0].clone()
}

fn alive(mesh: &Mesh) -> usize {
    mesh.members()
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_ask_across_and_resolve_names() {
    let gov = NodeKey::from_seed([100; 32]);
    let keys: Vec<NodeKey> = (1..=3).map(|i| NodeKey::from_seed([i; 32])).collect();
    let allowlist = network(&keys, &gov);
    let (s1, m1) = node(&keys[0], &allowlist, vec![]).await;
    let boot = first_addr(&m1).await;
    let (s2, m2) = node(&keys[1], &allowlist, vec![boot.clone()]).await;
    let (s3, m3) = node(&keys[2], &allowlist, vec![boot]).await;
    for m in [&m1, &m2, &m3] {
        wait_for(m, Duration::from_secs(10), |m| alive(m) == 2).await;
    }
    // A remote ask crosses nodes.
    let echo3 = s3.spawn(Echoer, ()).await.unwrap();
    let remote = s1.resolve::<Echo>(echo3.id());
    let (who, text) = remote.ask(Echo("hi".into())).await.unwrap();
    assert_eq!(who, s3.node_id().to_string());
    assert_eq!(text, "hi");
    // A registered name resolves from every node.
    m3.register("echo", echo3.id()).await.unwrap().unwrap();
    for (s, m) in [(&s1, &m1), (&s2, &m2), (&s3, &m3)] {
        wait_for(m, Duration::from_secs(10), |m| m.lookup("echo").is_some()).await;
        let r = s.resolve_name::<Echo>("echo").unwrap();
        assert_eq!(
            r.ask(Echo("x".into())).await.unwrap().0,
            s3.node_id().to_string()
        );
    }
    // Many tells in order, then an ask observes them all (FIFO per sender).
    let counter = s2.spawn(Echoer, ()).await.unwrap();
    let r = s1.resolve::<Echo>(counter.id());
    for i in 0..2000 {
        r.tell(Echo(i.to_string())).await.unwrap();
    }
    assert_eq!(r.ask(Echo("last".into())).await.unwrap().1, "last");
    // An unknown actor is a typed refusal.
    let ghost = s1.resolve::<Echo>(ActorId::new(s2.node_id(), 9999));
    assert!(matches!(
        ghost.ask(Echo("?".into())).await,
        Err(AskError::Rejected(Failure::NoSuchActor))
    ));
    for m in [&m1, &m2, &m3] {
        assert_eq!(m.stats().malformed_frames, 0);
    }
    // Node 3 crashes (its driver stops without leaving): the others declare it dead,
    // and its name disappears.
    let bound = m1.detection_bound();
    m3.shutdown_abruptly().await;
    for m in [&m1, &m2] {
        dead_and_unnamed(m, s3.node_id(), "echo", bound + Duration::from_secs(2)).await;
    }
    match remote.ask(Echo("gone".into())).await {
        Err(AskError::Unreachable) | Err(AskError::NotSent(_)) | Err(AskError::Timeout) => {}
        other => panic!("{other:?}"),
    }
    m1.shutdown().await;
    m2.shutdown().await;
}

/// With the registry sharded over 2 owners of 5 nodes, a name lives at its claimant
/// and its owners; every other node finds it through the production driver's
/// lookup (a miss asks the owners), resolves and asks the actor by name, and loses
/// the name when its node crashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_registry_resolves_names_by_asking_their_owners() {
    let gov = NodeKey::from_seed([100; 32]);
    let keys: Vec<NodeKey> = (1..=5).map(|i| NodeKey::from_seed([i + 20; 32])).collect();
    let allowlist = network(&keys, &gov);
    let mut config = cluster_config();
    config.registry.owners = 2;
    let (s1, m1) = node_with(&keys[0], &allowlist, vec![], config.clone()).await;
    let boot = first_addr(&m1).await;
    let mut nodes = vec![(s1, m1)];
    for k in &keys[1..] {
        nodes.push(node_with(k, &allowlist, vec![boot.clone()], config.clone()).await);
    }
    for (_, m) in &nodes {
        wait_for(m, Duration::from_secs(10), |m| alive(m) == 4).await;
    }
    let (s5, m5) = &nodes[4];
    let echo = s5.spawn(Echoer, ()).await.unwrap();
    m5.register("echo", echo.id()).await.unwrap().unwrap();
    for (s, m) in &nodes[..4] {
        wait_for(m, Duration::from_secs(10), |m| m.lookup("echo").is_some()).await;
        let r = s.resolve_name::<Echo>("echo").unwrap();
        assert_eq!(
            r.ask(Echo("x".into())).await.unwrap().0,
            s5.node_id().to_string()
        );
    }
    let bound = nodes[0].1.detection_bound();
    nodes[4].1.shutdown_abruptly().await;
    for (_, m) in &nodes[..4] {
        dead_and_unnamed(m, s5.node_id(), "echo", bound + Duration::from_secs(2)).await;
        assert_eq!(m.stats().malformed_frames, 0);
    }
    for (_, m) in &nodes[..4] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_not_on_the_allowlist_is_refused() {
    let gov = NodeKey::from_seed([100; 32]);
    let keys: Vec<NodeKey> = (1..=2).map(|i| NodeKey::from_seed([i; 32])).collect();
    let allowlist = network(&keys, &gov);
    let (_s1, m1) = node(&keys[0], &allowlist, vec![]).await;
    let boot = first_addr(&m1).await;
    let intruder = NodeKey::from_seed([66; 32]);
    let (si, mi) = node(&intruder, &allowlist, vec![boot]).await;
    wait_for(&m1, Duration::from_secs(10), |m| {
        m.stats().connections_refused >= 1
    })
    .await;
    assert_eq!(alive(&m1), 0, "the intruder never became a member");
    // Whatever it sends goes nowhere: node 1 runs an actor, the intruder knows its id.
    let echo = _s1.spawn(Echoer, ()).await.unwrap();
    let target = si.resolve_at::<Echo>(echo.id(), m1.node_id());
    let _ = target.try_tell(Echo("let me in".into()));
    assert!(
        target
            .ask_timeout(Echo("let me in".into()), Duration::from_millis(500))
            .await
            .is_err()
    );
    assert_eq!(m1.stats().delivered, 0);
    assert_eq!(
        _s1.actors()
            .iter()
            .find(|a| a.id == echo.id())
            .unwrap()
            .handled,
        0,
        "nothing reached the actor"
    );
    mi.shutdown().await;
    m1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_updates_spread_and_forgeries_are_refused() {
    let gov = NodeKey::from_seed([100; 32]);
    let keys: Vec<NodeKey> = (1..=3).map(|i| NodeKey::from_seed([i; 32])).collect();
    let v1 = network(&keys[..2], &gov);
    let (_s1, m1) = node(&keys[0], &v1, vec![]).await;
    let boot = first_addr(&m1).await;
    let (_s2, m2) = node(&keys[1], &v1, vec![boot.clone()]).await;
    wait_for(&m2, Duration::from_secs(10), |m| alive(m) == 1).await;
    // A forged update (signed by a key posing as governance) is refused.
    let rogue = NodeKey::from_seed([7; 32]);
    let mut forged = Allowlist::new("test", rogue.node_id());
    forged.version = 99;
    let forged = SignedAllowlist::sign(forged, &rogue).unwrap();
    assert!(m1.publish_allowlist(forged).await.unwrap().is_err());
    // A real v2 admits node 3; it spreads to node 2 by gossip.
    let mut v2 = v1.allowlist.clone();
    v2.version = 2;
    v2.nodes.insert(
        keys[2].node_id(),
        NodeEntry {
            operator: "t".into(),
            tags: Tags::new(),
            declared: Resources::default(),
        },
    );
    let v2 = SignedAllowlist::sign(v2, &gov).unwrap();
    m1.publish_allowlist(v2.clone()).await.unwrap().unwrap();
    wait_for(&m2, Duration::from_secs(15), |m| {
        m.allowlist().allowlist.version == 2
    })
    .await;
    let (_s3, m3) = node(&keys[2], &v2, vec![boot]).await;
    wait_for(&m2, Duration::from_secs(10), |m| alive(m) == 2).await;
    for m in [&m1, &m2, &m3] {
        m.shutdown().await;
    }
    let _ = MeshEvent::AllowlistUpdated { version: 2 };
    let _ = NodeId::synthetic(0);
}

/// The delivery core's user window is the only outbound flow control: `try_tell`
/// fails with `MailboxFull` at the core's bound, and an awaiting `tell` is woken when
/// the core releases room (here, when the peer finally connects and acknowledges).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_window_bounds_remote_tells_and_wakes_waiters() {
    use plexus_actors::runtime::SendError;
    let gov = NodeKey::from_seed([100; 32]);
    let keys: Vec<NodeKey> = (1..=2).map(|i| NodeKey::from_seed([i; 32])).collect();
    let allowlist = network(&keys, &gov);
    logs();
    let system = ActorSystem::new(SystemConfig::new(keys[0].node_id()));
    let mut config = MeshConfig::new(keys[0].clone(), allowlist.clone());
    config.cluster = cluster_config();
    config.cluster.delivery.window_frames = 4;
    let m1 = Mesh::start(config, system.clone()).await.unwrap();
    let boot = first_addr(&m1).await;
    // Node 2 is on the allowlist but not running: nothing can be acknowledged.
    let peer = keys[1].node_id();
    let target = system.resolve_at::<Echo>(ActorId::new(peer, 9999), peer);
    for i in 0..4 {
        target.try_tell(Echo(i.to_string())).unwrap();
    }
    match target.try_tell(Echo("one too many".into())) {
        Err(SendError::MailboxFull(Echo(text))) => assert_eq!(text, "one too many"),
        other => panic!("{other:?}"),
    }
    let mut waiting = Box::pin(target.tell(Echo("waits".into())));
    assert!(
        futures::poll!(waiting.as_mut()).is_pending(),
        "the window is full"
    );
    // Node 2 starts and connects; the frames are delivered (refused: no such actor),
    // acknowledged, and the core's release wakes the waiting tell.
    let (_s2, m2) = node(&keys[1], &allowlist, vec![boot]).await;
    tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the waiting tell was woken")
        .unwrap();
    assert!(
        m2.stats().refused >= 1,
        "acknowledged after node 2 refused them"
    );
    target.try_tell(Echo("room again".into())).unwrap();
    m1.shutdown().await;
    m2.shutdown().await;
}

#[derive(Debug, Serialize, Deserialize)]
enum Seq {
    Push(u64),
    Seen,
}
impl Message for Seq {
    type Reply = Vec<u64>;
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

/// Keeps what it is told, in order; its first message waits on a gate.
struct Gated;
impl Actor for Gated {
    type Msg = Seq;
    type State = (std::sync::Arc<tokio::sync::Semaphore>, Vec<u64>);
    type Args = std::sync::Arc<tokio::sync::Semaphore>;
    async fn started(&self, _: &Context<Seq>, gate: Self::Args) -> Result<Self::State, ActorError> {
        Ok((gate, Vec::new()))
    }
    async fn handle(
        &self,
        _: &Context<Seq>,
        msg: Seq,
        (gate, seen): &mut Self::State,
    ) -> Result<Vec<u64>, ActorError> {
        if let Seq::Push(i) = msg {
            if seen.is_empty() {
                let _ = gate.acquire().await;
            }
            seen.push(i);
        }
        Ok(seen.clone())
    }
}

/// Polls `check` every 2 ms (sleeping, so a loaded 2-core machine keeps its
/// cores for the drivers) until it holds, or panics with `what()` after `limit`.
async fn poll_until(limit: Duration, mut check: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Node 2 telling a [`Gated`] actor on node 1 whose mailbox holds `capacity`, with
/// node 1's `remote_enqueue_wait` at `wait`.
struct GatedPair {
    s1: ActorSystem,
    m1: Mesh,
    m2: Mesh,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
    local: ActorRef<Seq>,
    target: ActorRef<Seq>,
}

impl GatedPair {
    async fn start(wait: Duration, capacity: usize) -> Self {
        use plexus_actors::runtime::SpawnOptions;
        let gov = NodeKey::from_seed([100; 32]);
        let keys: Vec<NodeKey> = (1..=2).map(|i| NodeKey::from_seed([i; 32])).collect();
        let allowlist = network(&keys, &gov);
        let (s1, m1) = node_tuned(&keys[0], &allowlist, vec![], |config| {
            config.remote_enqueue_wait = wait
        })
        .await;
        let boot = first_addr(&m1).await;
        let (s2, m2) = node(&keys[1], &allowlist, vec![boot]).await;
        wait_for(&m2, Duration::from_secs(10), |m| alive(m) == 1).await;
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let local = s1
            .spawn_with(
                Gated,
                gate.clone(),
                SpawnOptions::default().capacity(capacity),
            )
            .await
            .unwrap();
        let target = s2.resolve_at::<Seq>(local.id(), keys[0].node_id());
        Self {
            s1,
            m1,
            m2,
            gate,
            local,
            target,
        }
    }

    /// The gated actor's mailbox depth, if it is running.
    fn depth(&self) -> Option<usize> {
        self.s1
            .actors()
            .into_iter()
            .find(|a| a.id == self.local.id())
            .map(|a| a.mailbox_depth)
    }

    async fn shutdown(self) {
        self.m1.shutdown().await;
        self.m2.shutdown().await;
    }
}

/// A peer's tells into a full mailbox: the driver holds the later ones behind the
/// one that waits for the mailbox to drain, then hands them all on, in order, none
/// lost (the mailbox fills and drains several times over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_holds_a_peers_later_tells_and_hands_all_on_in_order() {
    // The refusal after `remote_enqueue_wait` is a bound this test does not
    // exercise: a long wait keeps a loaded machine's scheduling from reaching it.
    let pair = GatedPair::start(Duration::from_secs(60), 8).await;
    let n = 200u64;
    for i in 0..n {
        pair.target.tell(Seq::Push(i)).await.unwrap();
    }
    // The first tell waits at the gate, the mailbox behind it fills, and node 1's
    // driver holds the next delivery and the frames behind it. (Whether the actor
    // takes the first message out before the mailbox fills is a race, so the
    // mailbox's depth then is `capacity` or one less: the hold is what to wait for.)
    poll_until(
        Duration::from_secs(10),
        || pair.m1.stats().peers_held == 1,
        || {
            format!(
                "node 1 never held a delivery: the mailbox is at {:?}",
                pair.depth()
            )
        },
    )
    .await;
    pair.gate.add_permits(1);
    let seen = pair.target.ask(Seq::Seen).await.unwrap();
    let stats = pair.m1.stats();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "{} refused",
        stats.refused
    );
    assert_eq!(stats.refused, 0);
    // The ask may itself have waited for the mailbox, and its reply can leave
    // before the driver notes the wait's end: the hold ends soon after.
    poll_until(
        Duration::from_secs(10),
        || pair.m1.stats().peers_held == 0,
        || "node 1 still holds a peer".into(),
    )
    .await;
    pair.shutdown().await;
}

/// The bound on that hold: a delivery whose mailbox does not drain within
/// `remote_enqueue_wait` is refused and counted, and the frames held behind it go
/// on (to wait in turn), so a stuck actor costs its peer one wait per frame, not
/// the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_outwaits_the_bound_is_refused_and_the_rest_go_on() {
    let capacity = 8u64;
    let pair = GatedPair::start(Duration::from_millis(100), capacity as usize).await;
    let n = capacity + 4;
    for i in 0..n {
        pair.target.tell(Seq::Push(i)).await.unwrap();
    }
    // The gate stays shut until two deliveries have outwaited the bound.
    poll_until(
        Duration::from_secs(20),
        || pair.m1.stats().refused >= 2,
        || format!("no delivery was refused: {:?}", pair.m1.stats()),
    )
    .await;
    pair.gate.add_permits(1);
    // Every tell delivered or refused, and the mailbox empty: the ask then goes
    // straight in, whatever the machine's load.
    poll_until(
        Duration::from_secs(20),
        || {
            let stats = pair.m1.stats();
            stats.delivered + stats.refused == n && pair.depth() == Some(0)
        },
        || {
            format!(
                "the tells were not all handled: {:?}, the mailbox at {:?}",
                pair.m1.stats(),
                pair.depth()
            )
        },
    )
    .await;
    let seen = pair.target.ask(Seq::Seen).await.unwrap();
    let stats = pair.m1.stats();
    // What was refused is gone; what was taken arrived in order, the first
    // mailbox-full among it.
    assert_eq!(seen.len() as u64 + stats.refused, n, "{seen:?} {stats:?}");
    assert_eq!(
        stats.delivered,
        seen.len() as u64 + 1,
        "the tells and the ask"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen[..capacity as usize], (0..capacity).collect::<Vec<_>>());
    assert_eq!(stats.peers_held, 0);
    pair.shutdown().await;
}
