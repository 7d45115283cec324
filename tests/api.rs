//! The HTTP API's trust boundary, tested on a real `plexus node` process: no token,
//! no access; a foreign Host is refused (DNS rebinding); slow or idle connections
//! are closed; connections and request rates are capped; a public bind needs TLS
//! or an explicit flag.

// Process-level tests: real sockets and real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Network, NodeProc, plexus};

/// Starts one node with `extra` config lines.
fn one_node(tag: &str, extra: &str) -> (Network, NodeProc) {
    let net = Network::new(tag);
    let (data, id) = net.new_key("n1");
    net.admit(&id, &[]);
    let config = net.dir.0.join("api.toml");
    std::fs::write(&config, extra).unwrap();
    let node = NodeProc::start("n1", &data, &net.allowlist(), &config, None);
    (net, node)
}

/// One raw HTTP/1.1 request; returns the status code.
fn status_of(api: &str, method: &str, path: &str, host: &str, token: Option<&str>) -> u16 {
    let addr = api.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = if method == "POST" { "{}" } else { "" };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// The node's `/metrics` text, with its token.
fn metrics_of(node: &NodeProc) -> Result<String, String> {
    ureq::get(&format!("{}/metrics", node.api))
        .header("authorization", format!("Bearer {}", node.token))
        .call()
        .map_err(|e| e.to_string())?
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())
}

/// Whether the server closes `s` (EOF or reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // An answer (e.g. 408) before the close is fine; keep reading.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true, // reset
        }
    }
}

#[test]
fn every_endpoint_but_the_public_ones_needs_the_token_and_a_local_host() {
    let (_net, node) = one_node("api-auth", "");
    let host = node.api.trim_start_matches("http://").to_string();
    let protected = [
        ("GET", "/v1/members"),
        ("GET", "/v1/names"),
        ("GET", "/v1/actors"),
        ("POST", "/v1/actors"),
        ("POST", "/v1/ask"),
        ("POST", "/v1/tell"),
        ("GET", "/v1/stats"),
        ("GET", "/v1/jobs"),
        ("POST", "/v1/send"),
        ("GET", "/v1/durable"),
        ("GET", "/metrics"),
    ];
    for (method, path) in protected {
        assert_eq!(
            status_of(&node.api, method, path, &host, None),
            401,
            "{method} {path} without a token"
        );
        assert_eq!(
            status_of(&node.api, method, path, &host, Some("not-the-token")),
            401,
            "{method} {path} with a wrong token"
        );
    }
    // The token opens them (a GET answers 200; a POST with an empty body is a bad
    // request, not an unauthorized one).
    assert_eq!(
        status_of(&node.api, "GET", "/v1/actors", &host, Some(&node.token)),
        200
    );
    assert_eq!(
        status_of(&node.api, "POST", "/v1/actors", &host, Some(&node.token)),
        422
    );
    // The public probe needs no token.
    assert_eq!(status_of(&node.api, "GET", "/v1/node", &host, None), 200);
    assert_eq!(
        status_of(&node.api, "GET", "/v1/node", "localhost:1", None),
        200
    );

    // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own
    // name as Host; refused even with the token.
    for bad in ["evil.example", "evil.example:7070", "127.0.0.1.nip.io"] {
        assert_eq!(
            status_of(&node.api, "GET", "/v1/node", bad, None),
            403,
            "{bad}"
        );
        assert_eq!(
            status_of(&node.api, "GET", "/v1/actors", bad, Some(&node.token)),
            403,
            "{bad} with the token"
        );
    }

    // The CLI finds the token by itself (the node published it for local users).
    let out = plexus()
        .args(["nodes", "--api", &node.api])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`plexus nodes` uses the token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = plexus()
        .args(["nodes", "--api", &node.api])
        .env("PLEXUS_API_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a wrong token is the caller's fault"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));

    // The token file is the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = node.seen[0]["api_token_file"].as_str().unwrap().to_string();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}");
    }
}

#[test]
fn slow_and_idle_connections_are_closed_and_connections_are_capped() {
    let (_net, node) = one_node(
        "api-limits",
        "api_header_timeout = \"1s\"\napi_connections_max = 4\n",
    );
    let addr = node.api.trim_start_matches("http://").to_string();

    // Slow loris: half a request, then nothing.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let began = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(15)),
        "a connection that never finishes its headers is closed"
    );
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );

    // Idle sockets are closed too.
    let mut idle = TcpStream::connect(&addr).unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(15)),
        "an idle connection is closed"
    );

    // The connection cap: four idle connections fill it; a fifth is closed at once
    // without an answer, and counted; once they go, requests are served again.
    // Each held connection is answered once (so the server has accepted it) and
    // kept open; the fifth then meets a full cap.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut first = [0u8; 12];
            s.read_exact(&mut first).unwrap();
            assert_eq!(&first, b"HTTP/1.1 200", "a held connection is served");
            s
        })
        .collect();
    let mut fifth = TcpStream::connect(&addr).unwrap();
    fifth
        .write_all(b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .ok();
    let mut answer = Vec::new();
    fifth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = fifth.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "over the cap, no answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    let metrics = common::poll(Duration::from_secs(15), || metrics_of(&node));
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("plexus_api_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the refusal counter");
    assert!(refused >= 1, "the refused connection is counted: {metrics}");
}

#[test]
fn requests_beyond_the_rate_are_refused_with_429() {
    let (_net, node) = one_node("api-rate", "api_rate_per_s = 2\n");
    let host = node.api.trim_start_matches("http://").to_string();
    // A burst of 4 (twice the rate) is allowed; within 20 quick requests, at
    // least one must be refused (they take far less than the 8 s that would
    // refill 16 more).
    let codes: Vec<u16> = (0..20)
        .map(|_| status_of(&node.api, "GET", "/v1/node", &host, None))
        .collect();
    assert!(
        codes.iter().take(4).all(|c| *c == 200),
        "the burst passes: {codes:?}"
    );
    assert!(codes.contains(&429), "the rate is enforced: {codes:?}");
    // The node's owner is not held to it: right after, while the address is
    // still over its rate, requests with the token are all answered (a bulk
    // transfer makes one request per chunk).
    let owner: Vec<u16> = (0..20)
        .map(|_| status_of(&node.api, "GET", "/v1/node", &host, Some(&node.token)))
        .collect();
    assert!(
        owner.iter().all(|c| *c == 200),
        "the token is not rate-limited: {owner:?}"
    );
    // And a wrong token is no way around it.
    let wrong: Vec<u16> = (0..20)
        .map(|_| status_of(&node.api, "GET", "/v1/node", &host, Some("not-the-token")))
        .collect();
    assert!(wrong.contains(&429), "a wrong token is limited: {wrong:?}");
}

#[test]
fn a_public_bind_needs_tls_or_insecure_http() {
    let net = Network::new("api-bind");
    let (data, id) = net.new_key("n1");
    net.admit(&id, &[]);
    let out = plexus()
        .args([
            "node",
            "--data-dir",
            data.to_str().unwrap(),
            "--allowlist",
            net.allowlist().to_str().unwrap(),
            "--api",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "refused as bad input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS") && err.contains("--insecure-http"),
        "{err}"
    );
}

/// A public bind with TLS: the node serves HTTPS only (a plain request gets no
/// HTTP answer), with the configured certificate, and a TLS client that trusts it
/// is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_bind_with_tls_serves_https_only() {
    use std::io::BufRead as _;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let net = Network::new("api-tls");
    let (data, id) = net.new_key("n1");
    net.admit(&id, &[]);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = net.dir.0.join("api.crt");
    let key_path = net.dir.0.join("api.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut child = plexus()
        .args([
            "node",
            "--data-dir",
            data.to_str().unwrap(),
            "--allowlist",
            net.allowlist().to_str().unwrap(),
            "--api",
            "0.0.0.0:0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let api = ready["api"].as_str().unwrap().to_string();
    assert!(api.starts_with("https://0.0.0.0:"), "{ready}");
    let port = api.rsplit(':').next().unwrap().to_string();
    let addr = format!("127.0.0.1:{port}");

    // Plain HTTP to the TLS port: no HTTP answer.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .write_all(b"GET /v1/node HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // A TLS client that trusts the certificate is answered.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /v1/node HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let _ = tls.read_to_string(&mut text).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&id), "the node answers with its id: {text}");

    // The CLI speaks TLS too: it trusts the certificate given in PLEXUS_API_CA and
    // finds the token the node published; without the CA it refuses the server.
    let https = format!("https://localhost:{port}");
    let out = plexus()
        .args(["nodes", "--api", &https])
        .env("PLEXUS_API_CA", &cert_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the CLI over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = plexus().args(["nodes", "--api", &https]).output().unwrap();
    assert!(!out.status.success(), "an unknown issuer is refused");
    let _ = child.kill();
    let _ = child.wait();
}

/// A node whose replica store has a damaged log comes up without serving durable
/// actors, and says so: an event on stdout, its API (`/v1/node`, 503 on
/// `/v1/durable`) and its metrics. (rocksdb's default recovery would have dropped
/// the damaged record and everything after it without a word.)
#[test]
fn a_damaged_store_is_reported_and_serves_no_replica() {
    let net = Network::new("api-corrupt");
    let (data, id) = net.new_key("n1");
    net.admit(&id, &[]);
    let config = net.dir.0.join("api.toml");
    std::fs::write(&config, "").unwrap();
    let mut node = NodeProc::start("n1", &data, &net.allowlist(), &config, None);
    // Let the scheduler activate and commit a few records (each status request
    // is an input it commits), then kill the node.
    let host = node.api.trim_start_matches("http://").to_string();
    common::poll(Duration::from_secs(60), || {
        status_of(&node.api, "GET", "/v1/jobs", &host, Some(&node.token));
        let commits = node.get("/v1/durable")["commits"].as_u64().unwrap_or(0);
        if commits >= 4 {
            Ok(())
        } else {
            Err(format!("{commits} commits"))
        }
    });
    node.kill();
    let log = std::fs::read_dir(data.join("durable"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a write-ahead log");
    let mut bytes = std::fs::read(&log).unwrap();
    assert!(
        bytes.len() > 64,
        "the log holds records: {} bytes",
        bytes.len()
    );
    // Inside an early record, well before the tail.
    let at = bytes.len() / 4;
    for b in &mut bytes[at..at + 8] {
        *b ^= 0xff;
    }
    std::fs::write(&log, &bytes).unwrap();

    let mut node = NodeProc::start("n1", &data, &net.allowlist(), &config, None);
    node.wait_event(Duration::from_secs(10), |e| e["event"] == "store_corrupt");
    let info = node.get("/v1/node");
    assert_eq!(info["store"]["state"], "corrupt", "{info}");
    let host = node.api.trim_start_matches("http://").to_string();
    assert_eq!(
        status_of(&node.api, "GET", "/v1/durable", &host, Some(&node.token)),
        503
    );
    let metrics = metrics_of(&node).unwrap();
    assert!(metrics.contains("plexus_store_corrupt 1"), "{metrics}");
}

/// A bad `api_operator_key` is refused before the node starts: a clear error, no
/// `ready` line, nothing served.
#[test]
fn a_missing_operator_key_is_refused_before_the_node_starts() {
    let net = Network::new("api-operator");
    let (data, id) = net.new_key("n1");
    net.admit(&id, &[]);
    let config = net.dir.0.join("api.toml");
    let missing = net.dir.0.join("no-such.key");
    std::fs::write(
        &config,
        format!("api_operator_key = \"{}\"\n", missing.display()),
    )
    .unwrap();
    let out = plexus()
        .args(["node", "--data-dir", data.to_str().unwrap()])
        .args(["--allowlist", net.allowlist().to_str().unwrap()])
        .args(["--config", config.to_str().unwrap(), "--api", "127.0.0.1:0"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("api_operator_key"), "{stderr}");
    assert!(!stdout.contains("\"ready\""), "{stdout}");
}
