//! The ractor_cluster side of the remote-messaging benchmark (see
//! `benches/benches/remote.rs`, which runs it). Two processes:
//!
//! * `ractor-cluster-peer server PORT` hosts a counter actor in pg group "bench";
//! * `ractor-cluster-peer client PORT N100 N10K ASKS` connects, finds the counter
//!   through pg, and measures: N100 casts of 100 B then one call (so all were
//!   handled), the same with 10 KiB, and ASKS sequential calls. It prints one JSON line.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{NodeServer, NodeServerMessage, NodeSessionMessage, RactorClusterMessage};

#[derive(RactorClusterMessage)]
enum BenchMsg {
    Data(Vec<u8>),
    #[rpc]
    Count(RpcReplyPort<u64>),
}

struct Counter;

impl Actor for Counter {
    type Msg = BenchMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<BenchMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        ractor::pg::join("bench".to_string(), vec![myself.get_cell()]);
        Ok(0)
    }

    async fn handle(&self, _: ActorRef<BenchMsg>, msg: BenchMsg, n: &mut u64) -> Result<(), ActorProcessingErr> {
        match msg {
            BenchMsg::Data(_) => *n += 1,
            BenchMsg::Count(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

async fn node(port: u16, name: &str) -> ActorRef<NodeServerMessage> {
    let server = NodeServer::new(port, "bench-cookie".into(), name.into(), "localhost".into(), None, None);
    let (actor, _) = Actor::spawn(None, server, ()).await.expect("node server");
    actor
}

async fn wait_authenticated(server: &ActorRef<NodeServerMessage>) {
    loop {
        if let Ok(sessions) = ractor::call_t!(server, NodeServerMessage::GetSessions, 500)
            && let Some(s) = sessions.into_values().next()
            && let Ok(true) = ractor::call_t!(s.actor, NodeSessionMessage::GetAuthenticationState, 500)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pct(mut v: Vec<u64>, q: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i] as f64 / 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).expect("PORT");
    match args.get(1).map(String::as_str) {
        Some("server") => {
            let _server = node(port, "server").await;
            let (_counter, handle) = Actor::spawn(None, Counter, ()).await.expect("counter");
            println!("ready");
            let _ = handle.await;
        }
        Some("client") => {
            let n100: usize = args[3].parse().expect("N100");
            let n10k: usize = args[4].parse().expect("N10K");
            let asks: usize = args[5].parse().expect("ASKS");
            let server = node(port + 1, "client").await;
            ractor_cluster::client_connect(&server, format!("127.0.0.1:{port}")).await.expect("connect");
            wait_authenticated(&server).await;
            let counter = loop {
                let remote: Vec<_> = ractor::pg::get_members(&"bench".to_string())
                    .into_iter()
                    .filter(|a| !a.get_id().is_local())
                    .collect();
                if let Some(cell) = remote.into_iter().next() {
                    break ActorRef::<BenchMsg>::from(cell);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let mut results = serde_json::Map::new();
            let mut expected = 0u64;
            for (label, size, n) in [("tell_100b", 100usize, n100), ("tell_10kib", 10 * 1024, n10k)] {
                let payload = vec![7u8; size];
                let start = Instant::now();
                for _ in 0..n {
                    counter.cast(BenchMsg::Data(payload.clone())).expect("cast");
                }
                expected += n as u64;
                let got = ractor::call_t!(counter, BenchMsg::Count, 600_000).expect("count");
                let secs = start.elapsed().as_secs_f64();
                assert_eq!(got, expected, "every message was handled");
                results.insert(format!("{label}_msgs_per_sec"), serde_json::json!(n as f64 / secs));
            }
            let mut lat = Vec::with_capacity(asks);
            for _ in 0..asks / 10 {
                let _ = ractor::call_t!(counter, BenchMsg::Count, 5_000);
            }
            for _ in 0..asks {
                let t = Instant::now();
                ractor::call_t!(counter, BenchMsg::Count, 5_000).expect("ask");
                lat.push(t.elapsed().as_nanos() as u64);
            }
            results.insert("ask_p50_us".into(), serde_json::json!(pct(lat.clone(), 0.5)));
            results.insert("ask_p99_us".into(), serde_json::json!(pct(lat, 0.99)));
            println!("{}", serde_json::Value::Object(results));
        }
        _ => eprintln!("usage: ractor-cluster-peer server|client PORT [N100 N10K ASKS]"),
    }
}
