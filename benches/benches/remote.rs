//! Remote messaging between two nodes on loopback: Plexus vs ractor_cluster, in the
//! same run.
//!
//! Each system runs as two OS processes (ractor's process groups are process-global,
//! so ractor_cluster cannot host two nodes in one process; Plexus runs the same way
//! for a like-for-like comparison). The client measures:
//!
//! * tell throughput with 100 B and 10 KiB payloads: N tells, then one request whose
//!   answer proves all N were handled (the clock stops there, so a sender that merely
//!   outruns the receiver gains nothing);
//! * ask round trips, p50 and p99.
//!
//! `cargo bench -p plexus-benches --bench remote` runs Plexus, then ractor_cluster
//! in its default mode (plaintext TCP, a shared cookie) and in its TLS mode (TLS 1.3
//! over rustls, a self-signed certificate), and prints Plexus's ratio to each (Plexus
//! always encrypts). Under `cargo test` it runs only a small Plexus smoke pass.
//! Built with `--features quic`, it also runs Plexus over QUIC (TLS 1.3 with
//! AES-GCM over UDP) and prints that run's ratios too.
//!
//! The ractor_cluster peer lives in `benches/peers/ractor-cluster`, a separate
//! workspace: enabling ractor's `cluster` feature anywhere in the Plexus workspace
//! would, by feature unification, remove ractor's blanket `Message` impl (breaking
//! the build) and slow all local messaging.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus::Node;
use plexus::actors::codec::Bytes;
use plexus::actors::runtime::{Actor, ActorError, Context, Message, SpawnOptions, Wire};
use plexus::mesh::allowlist::{Allowlist, NodeEntry, SignedAllowlist};
use plexus::mesh::cluster::ClusterConfig;
use plexus::mesh::driver::MeshConfig;
use plexus::vocab::identity::NodeKey;
use plexus::vocab::resources::{Resources, Tags};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The payload is `Bytes` marked `codec::shared_bytes`, the SDK's form for byte
/// payloads: one string on the wire (as ractor_cluster's `BytesConvertable`),
/// and on the receiving node a slice of the frame it arrived in, not a copy.
#[derive(Serialize, Deserialize)]
enum BenchMsg {
    Data(#[serde(with = "plexus::actors::codec::shared_bytes")] Bytes),
    Count,
}

impl Message for BenchMsg {
    type Reply = u64;
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

struct Counter;

impl Actor for Counter {
    type Msg = BenchMsg;
    type State = u64;
    type Args = ();

    async fn started(&self, _: &Context<BenchMsg>, _: ()) -> Result<u64, ActorError> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: &Context<BenchMsg>,
        msg: BenchMsg,
        n: &mut u64,
    ) -> Result<u64, ActorError> {
        if let BenchMsg::Data(_) = msg {
            *n += 1;
        }
        Ok(*n)
    }
}

struct Sizes {
    n100: usize,
    n10k: usize,
    asks: usize,
}

fn keys() -> (NodeKey, NodeKey, NodeKey) {
    (
        NodeKey::from_seed([1; 32]),
        NodeKey::from_seed([2; 32]),
        NodeKey::from_seed([3; 32]),
    )
}

fn allowlist() -> SignedAllowlist {
    let (gov, a, b) = keys();
    let mut list = Allowlist::new("bench", gov.node_id());
    for k in [&a, &b] {
        list.nodes.insert(
            k.node_id(),
            NodeEntry {
                operator: "bench".into(),
                tags: Tags::new(),
                declared: Resources::default(),
            },
        );
    }
    SignedAllowlist::sign(list, &gov).expect("sign")
}

/// A number from the environment variable `name`, if it is set and is one.
fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

/// The transport a Plexus process listens on: `PLEXUS_BENCH_TRANSPORT=quic` for
/// QUIC (built with `--features quic`), TCP + Noise + Yamux otherwise. A node dials
/// its bootstrap address over the transport that address names.
fn listen_addrs() -> Vec<libp2p::Multiaddr> {
    let addr = match std::env::var("PLEXUS_BENCH_TRANSPORT").as_deref() {
        Ok("quic") => "/ip4/127.0.0.1/udp/0/quic-v1",
        _ => "/ip4/127.0.0.1/tcp/0",
    };
    vec![addr.parse().expect("multiaddr")]
}

async fn start(key: NodeKey, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    let mut config = MeshConfig::new(key, allowlist());
    config.listen = listen_addrs();
    config.bootstrap = bootstrap;
    config.cluster = ClusterConfig::default();
    Node::builder()
        .start_meshed(config)
        .await
        .expect("node starts")
}

async fn server() {
    let (_, a, _) = keys();
    let node = start(a, vec![]).await;
    // `PLEXUS_BENCH_CAPACITY=N`: the counter's mailbox capacity (for experiments;
    // the default is the runtime's).
    let counter = match env_number("PLEXUS_BENCH_CAPACITY") {
        Some(cap) => node
            .spawn_with(Counter, (), SpawnOptions::default().capacity(cap))
            .await
            .expect("spawn"),
        None => node.spawn(Counter, ()).await.expect("spawn"),
    };
    node.register("bench-counter", counter.id())
        .await
        .expect("register");
    let mesh = node.mesh().expect("meshed");
    let mut events = mesh.subscribe();
    while mesh.listen_addrs().is_empty() {
        let _ = events.recv().await;
    }
    println!("ready {}", mesh.listen_addrs()[0]);
    // Serve until the parent kills us.
    std::future::pending::<()>().await;
}

async fn client(boot: &str, sizes: Sizes) {
    let (_, _, b) = keys();
    let node = start(b, vec![boot.parse().expect("multiaddr")]).await;
    let mesh = node.mesh().expect("meshed").clone();
    let mut events = mesh.subscribe();
    let counter = loop {
        if let Some(r) = node.resolve_name::<BenchMsg>("bench-counter") {
            break r;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    };
    let mut out = serde_json::Map::new();
    let mut expected = 0;
    for (label, size, n) in [
        ("tell_100b", 100usize, sizes.n100),
        ("tell_10kib", 10 * 1024, sizes.n10k),
    ] {
        let payload = vec![7u8; size];
        let start = Instant::now();
        for _ in 0..n {
            // A fresh buffer per message, as the ractor_cluster peer's `Vec` clone.
            counter
                .tell(BenchMsg::Data(Bytes::copy_from_slice(&payload)))
                .await
                .expect("tell");
        }
        expected += n as u64;
        let got = counter
            .ask_timeout(BenchMsg::Count, Duration::from_secs(600))
            .await
            .expect("count");
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got, expected, "every message was handled");
        out.insert(format!("{label}_msgs_per_sec"), json!(n as f64 / secs));
    }
    for _ in 0..sizes.asks / 10 {
        let _ = counter.ask(BenchMsg::Count).await;
    }
    let mut lat = Vec::with_capacity(sizes.asks);
    for _ in 0..sizes.asks {
        let t = Instant::now();
        counter.ask(BenchMsg::Count).await.expect("ask");
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize] as f64 / 1e3;
    out.insert("ask_p50_us".into(), json!(pct(0.5)));
    out.insert("ask_p99_us".into(), json!(pct(0.99)));
    println!("{}", Value::Object(out));
}

/// Runs a server and a client process; returns the client's JSON line and the peak
/// RSS of the server (KiB) read from /proc before it is killed.
fn run_pair(server: &mut Command, client: impl FnOnce(&str) -> Command) -> (Value, u64) {
    let mut srv: Child = server
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let mut lines = BufReader::new(srv.stdout.take().expect("stdout")).lines();
    let ready = lines.next().expect("server says ready").expect("line");
    let addr = ready
        .strip_prefix("ready")
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    let out = client(&addr)
        .stderr(Stdio::inherit())
        .output()
        .expect("client runs");
    let rss = std::fs::read_to_string(format!("/proc/{}/status", srv.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("client prints JSON");
    (json, rss)
}

fn peer_binary(root: &Path) -> Option<PathBuf> {
    let manifest = root.join("benches/peers/ractor-cluster/Cargo.toml");
    let target = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/plexus/peer-target");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .ok()?;
    status
        .success()
        .then(|| target.join("release/ractor-cluster-peer"))
}

fn main() {
    let role = std::env::var("PLEXUS_BENCH_ROLE").unwrap_or_default();
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let sizes = if full || role == "client-full" {
        Sizes {
            n100: 200_000,
            n10k: 20_000,
            asks: 20_000,
        }
    } else {
        Sizes {
            n100: 2_000,
            n10k: 200,
            asks: 200,
        }
    };
    // `PLEXUS_BENCH_N100=N` overrides the count of 100 B tells, for a phase long
    // enough to profile (the processes a run starts inherit it; recorded figures
    // come from runs without it).
    let sizes = Sizes {
        n100: env_number("PLEXUS_BENCH_N100").unwrap_or(sizes.n100),
        ..sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match role.as_str() {
        "server" => return rt.block_on(server()),
        "client" | "client-full" => {
            let boot = std::env::var("PLEXUS_BENCH_BOOT").expect("boot address");
            return rt.block_on(client(&boot, sizes));
        }
        _ => {}
    }
    drop(rt);
    let exe = std::env::current_exe().expect("own path");
    let client_role = if full { "client-full" } else { "client" };
    // Plexus over TCP + Noise + Yamux, and, in a build with QUIC, over QUIC too.
    let transports: &[(&str, &str)] = if cfg!(feature = "quic") {
        &[("plexus", "tcp"), ("plexus/QUIC", "quic")]
    } else {
        &[("plexus", "tcp")]
    };
    let mut ours = Vec::new();
    for &(label, transport) in transports {
        let (plexus, plexus_rss) = run_pair(
            Command::new(&exe)
                .env("PLEXUS_BENCH_ROLE", "server")
                .env("PLEXUS_BENCH_TRANSPORT", transport),
            |addr| {
                let mut c = Command::new(&exe);
                c.env("PLEXUS_BENCH_ROLE", client_role)
                    .env("PLEXUS_BENCH_TRANSPORT", transport)
                    .env("PLEXUS_BENCH_BOOT", addr);
                c
            },
        );
        println!(
            "{label:<18} {plexus}  (server peak RSS {} MiB)",
            plexus_rss / 1024
        );
        ours.push((label, plexus));
    }
    if !full {
        println!(
            "smoke run only; `cargo bench -p plexus-benches --bench remote` measures against ractor_cluster"
        );
        return;
    }
    // Where cargo runs it from; the compiled-in path is stale if the checkout moved.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..");
    let Some(peer) = peer_binary(&root) else {
        eprintln!("could not build the ractor_cluster peer; no ratio this run");
        std::process::exit(1);
    };
    let port = 24_000 + (std::process::id() % 1000) as u16 * 4;
    // ractor_cluster twice: its default (plaintext TCP, a shared cookie), then its
    // TLS mode (TLS 1.3 over rustls, a self-signed certificate), since Plexus always
    // authenticates and encrypts (Noise over TCP).
    let cert = std::env::temp_dir().join(format!("plexus-bench-{}.der", std::process::id()));
    let cert = cert.to_string_lossy().into_owned();
    let mut peers = Vec::new();
    for (label, port, tls) in [
        ("ractor_cluster", port, false),
        ("ractor_cluster+TLS", port + 2, true),
    ] {
        let extra: Vec<String> = if tls {
            vec!["tls".into(), cert.clone()]
        } else {
            Vec::new()
        };
        let (ractor, ractor_rss) = run_pair(
            Command::new(&peer)
                .args(["server", &port.to_string()])
                .args(&extra),
            |_| {
                let mut c = Command::new(&peer);
                c.args([
                    "client",
                    &port.to_string(),
                    &sizes.n100.to_string(),
                    &sizes.n10k.to_string(),
                    &sizes.asks.to_string(),
                ])
                .args(&extra);
                c
            },
        );
        println!(
            "{label:<18} {ractor}  (server peak RSS {} MiB)",
            ractor_rss / 1024
        );
        peers.push((label, ractor));
    }
    let _ = std::fs::remove_file(&cert);
    for ((ours, plexus), (label, ractor)) in
        ours.iter().flat_map(|o| peers.iter().map(move |p| (o, p)))
    {
        let ratio =
            |k: &str| plexus[k].as_f64().unwrap_or(0.0) / ractor[k].as_f64().unwrap_or(f64::NAN);
        println!("{ours} / {label}:");
        println!(
            "  tell 100 B   throughput: {:.2}x (target >= 2x)",
            ratio("tell_100b_msgs_per_sec")
        );
        println!(
            "  tell 10 KiB  throughput: {:.2}x (target >= 1.0x)",
            ratio("tell_10kib_msgs_per_sec")
        );
        println!("  ask p50: {:.2}x (lower is better)", ratio("ask_p50_us"));
        println!("  ask p99: {:.2}x (target <= 1.0x)", ratio("ask_p99_us"));
    }
}
