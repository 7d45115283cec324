//! `plexus node`: run one node of a cluster until SIGINT or SIGTERM.
//!
//! It prints one JSON object per line on stdout: first `{"event":"ready",...}` with
//! the node id, listen addresses and API address, then mesh events as they happen
//! (`member_joined`, `member_died`, `name_bound`, `connection_refused`...). Logs go
//! to stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use plexus_mesh::cluster::ClusterConfig;
use plexus_mesh::driver::{MeshConfig, load_or_create_node_key};
use plexus_mesh::membership::MemberState;

use super::CliError;
use crate::api::{Api, router};
use crate::config::{NodeFile, NodeSettings, read_file};

/// Flags of `plexus node`; each overrides the config file.
#[derive(Debug, Default, clap::Args)]
pub struct NodeArgs {
    /// A TOML config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keys and state (default: the XDG data dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Listen multiaddr (repeatable).
    #[arg(long)]
    pub listen: Vec<String>,
    /// Bootstrap peer multiaddr (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// The signed allowlist file.
    #[arg(long)]
    pub allowlist: Option<PathBuf>,
    /// The local HTTP API address (default 127.0.0.1:7070; port 0 picks one).
    #[arg(long)]
    pub api: Option<String>,
    /// Export spans to this OTLP/HTTP collector (`http://host:4318`).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
}

fn settle(args: NodeArgs) -> Result<NodeSettings, CliError> {
    let mut file = match &args.config {
        Some(path) => read_file(path).map_err(|e| CliError::Input(e.to_string()))?,
        None => NodeFile::default(),
    };
    if args.data_dir.is_some() {
        file.data_dir = args.data_dir;
    }
    if !args.listen.is_empty() {
        file.listen = args.listen;
    }
    if !args.bootstrap.is_empty() {
        file.bootstrap = args.bootstrap;
    }
    if args.allowlist.is_some() {
        file.allowlist = args.allowlist;
    }
    if args.api.is_some() {
        file.api = args.api;
    }
    if args.otlp_endpoint.is_some() {
        file.telemetry.otlp_endpoint = args.otlp_endpoint;
    }
    file.settle().map_err(|e| CliError::Input(e.to_string()))
}

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Runs a node. Tracing is set up here, not in `main`, once the config (which may
/// name a collector) and the node's id (which tags its spans) are known; `log` is
/// the filter when `RUST_LOG` is unset.
pub(crate) async fn run(args: NodeArgs, log: &str) -> Result<(), CliError> {
    let settings = settle(args)?;
    // Validate everything before writing anything (the key is the only write).
    let allowlist = super::keys::load_allowlist(&settings.allowlist)?;
    let key = load_or_create_node_key(&settings.data_dir, || crate::node::ephemeral_key().seed())
        .map_err(|e| CliError::Input(e.to_string()))?;
    let _telemetry = crate::telemetry::init_with(&crate::telemetry::TelemetryConfig {
        filter: log.to_string(),
        otlp_endpoint: settings.otlp_endpoint.clone(),
        instance: Some(key.node_id().to_string()),
    })
    .map_err(|e| CliError::Input(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(settings.api)
        .await
        .map_err(|e| CliError::Input(format!("cannot bind the API on {}: {e}", settings.api)))?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;

    let service_key = plexus_vocab::identity::NodeKey::from_seed(key.seed());
    let drain_key = plexus_vocab::identity::NodeKey::from_seed(key.seed());
    let api_key = plexus_vocab::identity::NodeKey::from_seed(key.seed());
    let mut mesh_config = MeshConfig::new(key, allowlist);
    mesh_config.listen = settings.listen.clone();
    mesh_config.bootstrap = settings.bootstrap.clone();
    mesh_config.resources = settings.resources;
    mesh_config.tags = settings.tags.clone();
    mesh_config.cluster = ClusterConfig {
        membership: settings.membership.clone(),
        ..ClusterConfig::default()
    };
    let mut builder = crate::Node::builder();
    if let Some(capacity) = settings.mailbox_capacity {
        builder = builder.mailbox_capacity(capacity);
    }
    let node = Arc::new(
        builder
            .start_meshed(mesh_config)
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?,
    );
    let Some(mesh) = node.mesh().cloned() else {
        return Err(CliError::Failed("no mesh".into()));
    };
    let mut events = mesh.subscribe();
    let durable = crate::hosting::DurableService::start(
        node.system(),
        mesh.clone(),
        service_key,
        &settings.data_dir,
        settings.resources,
        settings.tags.clone(),
        crate::hosting::kinds::standard(),
    )
    .await
    .map_err(|e| CliError::Failed(format!("the durable-actor service did not start: {e}")))?;

    // Wait for the transport to report its addresses, so `ready` carries them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mesh.listen_addrs().is_empty() {
        if tokio::time::timeout_at(deadline, events.recv())
            .await
            .is_err()
        {
            return Err(CliError::Failed(
                "the transport reported no listen address within 10 s".into(),
            ));
        }
    }
    let listen: Vec<String> = mesh
        .listen_addrs()
        .iter()
        .map(Multiaddr::to_string)
        .collect();
    emit(serde_json::json!({
        "event": "ready",
        "node": node.id().to_string(),
        "listen": listen,
        "api": format!("http://{api_addr}"),
        "data_dir": settings.data_dir,
        "detection_bound_ms": mesh.detection_bound().as_millis() as u64,
    }));

    let api = Arc::new(Api {
        node: node.clone(),
        addr: api_addr,
        durable: Some(durable.clone()),
        key: Some(api_key),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router(api))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await;
    });
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => emit(serde_json::to_value(&event).unwrap_or_default()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    emit(serde_json::json!({ "event": "events_dropped", "count": n }));
                }
                Err(_) => break,
            }
        }
    });

    let signal = wait_for_signal().await;
    tracing::info!(%signal, "shutting down");
    // Draining needs somewhere to go: a lone node just stops.
    let others = mesh.members().iter().any(|m| m.state == MemberState::Alive);
    if signal == "SIGTERM" && others {
        emit(serde_json::json!({ "event": "draining" }));
        let network = mesh.allowlist().allowlist.network;
        let moved = drain(&durable, &drain_key, &network, DRAIN_WAIT).await;
        emit(serde_json::json!({ "event": "drained", "actors_left": moved }));
    }
    node.shutdown().await;
    let _ = stop_tx.send(());
    let _ = server.await;
    printer.abort();
    emit(serde_json::json!({ "event": "stopped", "signal": signal }));
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// How long a SIGTERM waits for this node's durable actors to move away.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// Asks the scheduler to move every durable actor off this node, then waits until
/// none is active here (or `limit` passes). Returns how many were left.
async fn drain(
    durable: &plexus_actors::runtime::ActorRef<crate::hosting::ServiceMsg>,
    key: &plexus_vocab::identity::NodeKey,
    network: &str,
    limit: Duration,
) -> usize {
    use crate::hosting::{Local, ServiceMsg};
    use plexus_scheduler::protocol::{Request, Signed, VALIDITY_DEFAULT_MS};
    let deadline = tokio::time::Instant::now() + limit;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // The sequence: the clock's microseconds (higher than any earlier request's).
    let seq = u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX);
    let expires_ms = u64::try_from(since_epoch.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(VALIDITY_DEFAULT_MS);
    if let Ok(signed) = Signed::sign(
        Request::Drain {
            node: key.node_id(),
        },
        network,
        seq,
        expires_ms,
        key,
    ) {
        match crate::hosting::ask_scheduler(durable, &signed, deadline).await {
            Ok(answer) => tracing::info!(?answer, "drain requested"),
            Err(e) => tracing::warn!(error = %e, "the scheduler did not take the drain"),
        }
    }
    loop {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if durable
            .tell(ServiceMsg::Local(Local::Status { reply: tx }))
            .await
            .is_err()
        {
            return 0;
        }
        let left = match rx.await {
            Ok(status) => status.actors.len(),
            Err(_) => return 0,
        };
        if left == 0 || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
