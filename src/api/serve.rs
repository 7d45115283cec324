//! The API's server: an accept loop over hyper, with every bound the open internet
//! would test.
//!
//! | bound | default | at the bound |
//! |---|---|---|
//! | open connections | 256 (`api_connections_max`) | a new connection is closed at once, and counted |
//! | TLS handshake | 10 s | the connection is closed |
//! | request headers | 10 s from the connection (or the previous response) | the connection is closed: this is what ends slow-loris and idle sockets |
//! | request body | 1 MiB, read within 10 s | `413` / `408` |
//! | whole request | 60 s (the scheduler may take 30 s to answer) | `408` |
//! | requests without the API token, per client IP | bursts of 200, then 100 per second (`api_rate_per_s`) | `429` with `retry-after` (enforced by the [`auth`](super::auth) guard, which knows who has the token) |
//!
//! The limits are tower layers (`tower-http`'s timeouts and body limit) and the
//! header timeout is hyper's own; the only hand-made part is the connection count,
//! which no request layer can see. Every
//! connection task belongs to the loop's `JoinSet`, so none outlives the server.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // driver code

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt as _;

/// The server's bounds (see the module docs).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most.
    pub connections_max: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
    /// Time for a whole request, answer included.
    pub request_timeout: Duration,
    /// Time for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Requests without the token per second per client IP, sustained.
    pub rate_per_s: u32,
    /// Requests without the token per client IP in a burst.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            rate_per_s: 100,
            burst: 200,
        }
    }
}

/// Why the server could not be set up. The operator's config is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The TLS certificate or key could not be read.
    #[error("TLS: {path}: {why}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS: {0}")]
    Tls(String),
    /// A limit is zero.
    #[error("API limits: {0} must be at least 1")]
    Limit(&'static str),
}

/// A TLS acceptor from PEM files: a certificate chain and its private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::TlsFile {
            path: cert.to_path_buf(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ServeError::TlsFile {
            path: cert.to_path_buf(),
            why: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::TlsFile {
        path: key.to_path_buf(),
        why: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Counters of the server's refusals.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Connections closed at once because `connections_max` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed because the TLS handshake failed or took too long.
    pub tls_failed: AtomicU64,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting,
/// and waits for open connections for at most `request_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    stats: Arc<ServeStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    if limits.connections_max == 0 {
        return Err(ServeError::Limit("api_connections_max"));
    }
    if limits.rate_per_s == 0 || limits.burst == 0 {
        return Err(ServeError::Limit("api_rate_per_s"));
    }
    let router = router
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, most likely: back off a little
                        // rather than spin.
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                    drop(tcp);
                    continue;
                };
                let router = router.clone();
                let tls = tls.clone();
                let limits = limits.clone();
                let stats = stats.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    connection(tcp, peer, router, tls, &limits, &stats).await;
                });
            }
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.request_timeout, drain)
        .await
        .is_err()
    {
        connections.shutdown().await;
    }
    Ok(())
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: &Limits,
    stats: &ServeStats,
) {
    let _ = tcp.set_nodelay(true);
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                Ok::<_, Infallible>(match response {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    match tls {
        None => {
            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
        }
        Some(acceptor) => {
            match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Ok(Err(_)) | Err(_) => {
                    stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
