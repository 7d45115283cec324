//! The ractor_cluster side of the remote-messaging benchmark (see
//! `benches/benches/remote.rs`, which runs it). Two processes:
//!
//! * `ractor-cluster-peer server PORT [tls CERT]` hosts a counter actor in pg group
//!   "bench";
//! * `ractor-cluster-peer client PORT N100 N10K ASKS [tls CERT]` connects, finds the
//!   counter through pg, and measures: N100 casts of 100 B then one call (so all
//!   were handled), the same with 10 KiB, and ASKS sequential calls. It prints one
//!   JSON line.
//!
//! With `tls CERT` the two talk TLS 1.3 (ractor_cluster's `Tls` encryption mode):
//! the server makes a self-signed certificate for `localhost` and writes it (DER) to
//! CERT, and the client trusts only that certificate. Without it they talk
//! ractor_cluster's default, plaintext TCP with a shared cookie.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{
    IncomingEncryptionMode, NodeServer, NodeServerMessage, NodeSessionMessage, RactorClusterMessage,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

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

async fn node(port: u16, name: &str, tls: Option<IncomingEncryptionMode>) -> ActorRef<NodeServerMessage> {
    let server = NodeServer::new(port, "bench-cookie".into(), name.into(), "localhost".into(), tls, None);
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

const USAGE: &str = "usage: ractor-cluster-peer server|client PORT [N100 N10K ASKS] [tls CERT]";

/// The `tls CERT` arguments, if given.
fn tls_cert(args: &[String]) -> Result<Option<String>, String> {
    let Some(i) = args.iter().position(|a| a == "tls") else {
        return Ok(None);
    };
    args.get(i + 1).cloned().map(Some).ok_or_else(|| format!("`tls` needs a CERT path; {USAGE}"))
}

/// Argument `i`, parsed; `what` names it in the error.
fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{what} missing or not a number; {USAGE}"))
}

/// A self-signed certificate for `localhost`, written to `path`; the acceptor.
fn tls_acceptor(path: &str) -> Result<IncomingEncryptionMode, String> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| format!("making a certificate: {e}"))?;
    let cert: CertificateDer<'static> = made.cert.der().clone();
    std::fs::write(path, cert.as_ref()).map_err(|e| format!("writing {path}: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| format!("TLS server config: {e}"))?;
    Ok(IncomingEncryptionMode::Tls(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))))
}

/// A connector that trusts only the certificate at `path`.
fn tls_connector(path: &str) -> Result<tokio_rustls::TlsConnector, String> {
    let der = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der))
        .map_err(|e| format!("{path} is not a certificate: {e}"))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Err(why) = run(&args).await {
        eprintln!("ractor-cluster-peer: {why}");
        std::process::exit(2);
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let port: u16 = arg(args, 2, "PORT")?;
    let tls = tls_cert(args)?;
    match args.get(1).map(String::as_str) {
        Some("server") => {
            let acceptor = tls.as_deref().map(tls_acceptor).transpose()?;
            let _server = node(port, "server", acceptor).await;
            let (_counter, handle) = Actor::spawn(None, Counter, ()).await.expect("counter");
            println!("ready");
            let _ = handle.await;
        }
        Some("client") => {
            let n100: usize = arg(args, 3, "N100")?;
            let n10k: usize = arg(args, 4, "N10K")?;
            let asks: usize = arg(args, 5, "ASKS")?;
            let server = node(port + 1, "client", None).await;
            let addr = format!("127.0.0.1:{port}");
            match &tls {
                Some(cert) => {
                    let name = ServerName::try_from("localhost").map_err(|e| format!("server name: {e}"))?;
                    ractor_cluster::client_connect_enc(&server, addr, tls_connector(cert)?, name)
                        .await
                        .map_err(|e| format!("connecting over TLS: {e}"))?
                }
                None => ractor_cluster::client_connect(&server, addr)
                    .await
                    .map_err(|e| format!("connecting: {e}"))?,
            }
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
        _ => return Err(USAGE.to_string()),
    }
    Ok(())
}
