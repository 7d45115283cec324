//! Who may call the API: the Host header check (against DNS rebinding) and the
//! bearer token.
//!
//! A daemon makes a fresh random token at every start and writes it, mode 0600, to
//! `<data dir>/api.token` and to a per-user index of running nodes,
//! `<user data dir>/plexus/api-tokens/<ip>-<port>` (directory 0700), so the `plexus`
//! client commands find the token of the node they talk to without a flag. Anyone
//! who can read the file is the node's local owner; nobody else can call the API.
//!
//! Every route needs the token except:
//! - `GET /v1/node`: the node's id and addresses, a liveness probe;
//! - `POST /v1/scheduler`: its body is a scheduler request signed by a client key,
//!   and the scheduler checks that key's role in the governance allowlist before
//!   anything is stored (the signature is the credential);
//! - the dashboard's static files (`GET /`, `/dashboard.js`, `/dashboard.css`): no
//!   data is in them; the page calls the API with the token.
//!
//! Requests without the token (the public routes, and refusals) are rate-limited
//! per client IP (`api_rate_per_s`, bursts of twice that; `429` with
//! `retry-after` beyond it): a signed scheduler request costs a signature check,
//! and nobody without the token should be able to make the node spend more. A
//! request with the token is the node's owner: it is bounded by the server's
//! connection cap and by each service's own bounded queues (which answer `429`
//! or `503` when full), not by a per-IP rate that would cap a bulk transfer at
//! `api_rate_per_s` chunks a second.
//!
//! A request whose `Host` is not an allowed name is refused before anything else
//! (403): a web page that rebinds its own domain to 127.0.0.1 still sends its own
//! domain as `Host`. Allowed by default: `localhost`, `127.0.0.1`, `[::1]`, plus the
//! address the API is bound to and the names the config adds (`api_hosts`).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // driver code

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plexus_mesh::driver::{KeyStoreError, create_private_dir, write_atomic};
use serde_json::json;

/// The token's file name in a node's data dir.
pub const TOKEN_FILE: &str = "api.token";
/// The environment variable a client may set to give the token directly.
pub const TOKEN_ENV: &str = "PLEXUS_API_TOKEN";
/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 32;

/// A bearer token (hex).
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A fresh token from OS randomness; fails closed.
    pub fn generate() -> Result<Token, KeyStoreError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| KeyStoreError::Randomness(e.to_string()))?;
        Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The token's text, as sent in `Authorization: Bearer <text>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    fn matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

/// Where the index of running nodes' tokens lives for the API at `addr`.
pub fn index_path(addr: &SocketAddr) -> PathBuf {
    crate::config::default_data_dir()
        .join("api-tokens")
        .join(format!("{}-{}", addr.ip(), addr.port()))
}

/// A token written where clients find it; the index entry is removed on drop
/// (the data-dir copy stays, and is replaced at the next start).
pub struct Published {
    token: Token,
    index: PathBuf,
}

impl Published {
    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        // Only remove the index entry if it is still ours (a newer node may have
        // taken the port since).
        if std::fs::read_to_string(&self.index).is_ok_and(|t| self.token.matches(t.trim())) {
            let _ = std::fs::remove_file(&self.index);
        }
    }
}

/// Makes a fresh token and writes it (0600) to `<data_dir>/api.token` and to the
/// index entry for `addr`.
pub fn publish(data_dir: &Path, addr: &SocketAddr) -> Result<Published, KeyStoreError> {
    let token = Token::generate()?;
    write_atomic(&data_dir.join(TOKEN_FILE), token.as_str().as_bytes(), 0o600)?;
    let index = index_path(addr);
    if let Some(dir) = index.parent() {
        create_private_dir(dir)?;
    }
    write_atomic(&index, token.as_str().as_bytes(), 0o600)?;
    // This node holds the port now: an entry for the same port on the loopback or
    // the unspecified address was left by a node that was killed (a bind to one
    // of them excludes the other), and would hand clients its dead token.
    for stale in same_port_aliases(addr) {
        let _ = std::fs::remove_file(index_path(&stale));
    }
    Ok(Published { token, index })
}

/// For a node bound to the loopback or the unspecified address, the other of the
/// two for its port and family (the keys [`token_for`] tries): no live node can
/// hold it. A node bound to another address may share its port with a live
/// loopback node, so it has none.
fn same_port_aliases(addr: &SocketAddr) -> Vec<SocketAddr> {
    if !(addr.ip().is_loopback() || addr.ip().is_unspecified()) {
        return Vec::new();
    }
    let port = addr.port();
    let candidates = if addr.is_ipv4() {
        [
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from(([0, 0, 0, 0], port)),
        ]
    } else {
        [
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        ]
    };
    candidates.into_iter().filter(|a| a != addr).collect()
}

/// The token a client should present to the API at `base` (`http://host:port`):
/// `$PLEXUS_API_TOKEN`, else the index entry of that address, else none.
pub fn token_for(base: &str) -> Option<String> {
    if let Ok(t) = std::env::var(TOKEN_ENV)
        && !t.trim().is_empty()
    {
        return Some(t.trim().to_string());
    }
    let authority = base
        .split_once("://")
        .map_or(base, |(_, rest)| rest)
        .split('/')
        .next()?;
    let addr: SocketAddr = match authority.parse() {
        Ok(a) => a,
        // `localhost:7070`: the index is keyed by the bound address.
        Err(_) => {
            let port = authority.rsplit_once(':')?.1.parse().ok()?;
            SocketAddr::from(([127, 0, 0, 1], port))
        }
    };
    // A node bound to every interface is indexed under the unspecified address.
    read_token_file(&index_path(&addr)).or_else(|| {
        let any = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], addr.port()))
        } else {
            SocketAddr::from(([0u16; 8], addr.port()))
        };
        read_token_file(&index_path(&any))
    })
}

/// Reads a token file; `None` if missing or empty.
pub fn read_token_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Requests the rate limiter checks between sweeps of its idle clients.
const RATE_SWEEP_EVERY: u64 = 4_096;

/// What the guard lets through.
pub struct Guard {
    token: Token,
    hosts: BTreeSet<String>,
    rate: Option<RateLimit>,
}

struct RateLimit {
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
    clock: governor::clock::DefaultClock,
    /// Requests checked since the last sweep of idle clients.
    since_sweep: AtomicU64,
}

impl RateLimit {
    /// `Err(wait)` if `ip` is over its rate.
    fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        use governor::clock::Clock as _;
        // Idle clients are forgotten every so many requests, so the limiter
        // holds at most the clients still inside their rate window plus the
        // new ones since the last sweep.
        if self.since_sweep.fetch_add(1, Ordering::Relaxed) >= RATE_SWEEP_EVERY {
            self.since_sweep.store(0, Ordering::Relaxed);
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

impl Guard {
    /// A guard for an API bound to `bound`, accepting `token` and the host names
    /// `extra` besides the loopback names.
    pub fn new(token: Token, bound: &SocketAddr, extra: &[String]) -> Guard {
        let mut hosts: BTreeSet<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(str::to_string)
            .collect();
        hosts.insert(match bound.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
        hosts.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
        Guard {
            token,
            hosts,
            rate: None,
        }
    }

    /// Limits requests without the token to `per_s` a second per client IP,
    /// in bursts of `burst`. `None` if either is zero.
    pub fn with_rate(mut self, per_s: u32, burst: u32) -> Option<Guard> {
        let quota = governor::Quota::per_second(NonZeroU32::new(per_s)?)
            .allow_burst(NonZeroU32::new(burst)?);
        let clock = governor::clock::DefaultClock::default();
        self.rate = Some(RateLimit {
            limiter: governor::RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            since_sweep: AtomicU64::new(0),
        });
        Some(self)
    }

    /// Whether the `Host` header names an allowed host (any port).
    pub fn host_allowed(&self, host: Option<&HeaderValue>) -> bool {
        let Some(host) = host.and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        let name = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((ip, _port)) => format!("[{ip}]"),
                None => return false,
            }
        } else {
            host.split(':').next().unwrap_or_default().to_string()
        };
        self.hosts.contains(&name)
    }

    /// Whether the request carries the token.
    pub fn authorized(&self, value: Option<&HeaderValue>) -> bool {
        value
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.token.matches(t.trim()))
    }
}

/// Routes anyone may call (see the module docs for why).
fn public(method: &Method, path: &str) -> bool {
    (method == Method::GET
        && (path == "/v1/node" || super::dashboard::STATIC_PATHS.contains(&path)))
        || (method == Method::POST && path == "/v1/scheduler")
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut response = (status, axum::Json(json!({ "error": why }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The middleware: Host first, then the token; requests without it are
/// rate-limited per client IP.
pub async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if !guard.host_allowed(request.headers().get(header::HOST)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this Host is not allowed (add it to `api_hosts` in the node's config)",
        );
    }
    let authorized = guard.authorized(request.headers().get(header::AUTHORIZATION));
    if !authorized
        && let Some(rate) = &guard.rate
        && let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
        && let Err(wait) = rate.check(peer.ip())
    {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests without the API token from this address; retry later",
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    if !public(request.method(), request.uri().path()) && !authorized {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the node's API token (`Authorization: Bearer <token>`; \
             it is in <data dir>/api.token)",
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_or_wildcard_bind_clears_the_other_for_its_port() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            same_port_aliases(&a("127.0.0.1:7070")),
            vec![a("0.0.0.0:7070")]
        );
        assert_eq!(
            same_port_aliases(&a("0.0.0.0:7070")),
            vec![a("127.0.0.1:7070")]
        );
        assert_eq!(same_port_aliases(&a("[::1]:7070")), vec![a("[::]:7070")]);
        // Another address can share the port with a live loopback node.
        assert!(same_port_aliases(&a("10.0.0.5:7070")).is_empty());
    }

    fn guard() -> Guard {
        Guard::new(
            Token("ab".repeat(32)),
            &"127.0.0.1:7070".parse().unwrap(),
            &["plexus.internal".into()],
        )
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn loopback_names_and_configured_hosts_pass_others_do_not() {
        let g = guard();
        for ok in [
            "localhost",
            "localhost:7070",
            "127.0.0.1:7070",
            "[::1]:7070",
            "[::1]",
            "PLEXUS.internal:80",
        ] {
            assert!(g.host_allowed(Some(&hv(ok))), "{ok} is allowed");
        }
        for bad in [
            "evil.example",
            "evil.example:7070",
            "127.0.0.1.evil.example",
            "localhost.evil.example:7070",
            "[::1",
            "",
        ] {
            assert!(!g.host_allowed(Some(&hv(bad))), "{bad} is refused");
        }
        assert!(!g.host_allowed(None), "a missing Host is refused");
    }

    #[test]
    fn only_the_exact_bearer_token_authorizes() {
        let g = guard();
        assert!(g.authorized(Some(&hv(&format!("Bearer {}", "ab".repeat(32))))));
        assert!(!g.authorized(Some(&hv(&format!("Bearer {}", "ab".repeat(31))))));
        assert!(!g.authorized(Some(&hv(&format!("Bearer {}x", "ab".repeat(32))))));
        assert!(!g.authorized(Some(&hv(&format!("Basic {}", "ab".repeat(32))))));
        assert!(!g.authorized(None));
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.as_str().len(), 2 * TOKEN_BYTES);
        assert_ne!(a.as_str(), b.as_str());
    }
}
