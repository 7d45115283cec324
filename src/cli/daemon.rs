//! `plexus node`: run one node of a cluster until SIGINT or SIGTERM.
//!
//! It prints one JSON object per line on stdout: first `{"event":"ready",...}` with
//! the node id, listen addresses and API address, then mesh events as they happen
//! (`member_joined`, `member_died`, `name_bound`, `connection_refused`...). Logs go
//! to stderr. Every live member gets one `member_joined`, those that joined before
//! the printer started included (see [`Joins`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use plexus_mesh::cluster::ClusterConfig;
use plexus_mesh::driver::{MemberView, MeshConfig, MeshEvent, load_or_create_node_key};
use plexus_mesh::membership::MemberState;

use super::CliError;
use crate::api::auth::{Guard, TOKEN_FILE, publish};
use crate::api::serve::{ServeStats, serve};
use crate::api::{Api, router};
use crate::config::{NodeFile, NodeSettings, read_file};
use crate::hosting::store::{OpenError, RocksStore, store_dir};

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
    /// Serve the API over TLS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback `--api` address (prints a warning).
    #[arg(long)]
    pub insecure_http: bool,
    /// Print the dashboard's URL with the API token to stderr once ready (`plexus
    /// up`: a person's dev node; a daemon's log should not carry its token).
    #[arg(skip)]
    pub print_dashboard: bool,
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
    if args.tls_cert.is_some() {
        file.api_tls_cert = args.tls_cert;
        file.api_tls_key = args.tls_key;
    }
    if args.insecure_http {
        file.api_insecure_http = true;
    }
    file.settle().map_err(|e| CliError::Input(e.to_string()))
}

/// Where a node keeps the newest allowlist it accepted, in its data dir.
pub const ACCEPTED_ALLOWLIST_FILE: &str = "allowlist.accepted.bin";

/// Makes the printed `member_joined` events say each live member once.
///
/// The mesh starts, and members may join, before the printer subscribes; their
/// `MemberJoined` events are gone. So the printer subscribes, then reads the
/// members' snapshot, and prints a join for each live member in it. A member that
/// joined in between is in the snapshot and has its event still queued: the
/// second is skipped. A member that dies or leaves is forgotten, so its return is
/// printed. Holds at most one id per admitted member.
#[derive(Debug, Default)]
struct Joins {
    announced: std::collections::BTreeSet<plexus_actors::NodeId>,
}

impl Joins {
    /// The joins to print for the members known at start (alive or suspect).
    fn start(&mut self, members: &[MemberView]) -> Vec<MeshEvent> {
        members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .filter(|m| self.announced.insert(m.id))
            .map(|m| MeshEvent::MemberJoined { node: m.id })
            .collect()
    }

    /// Whether to print `event`: all but a join already printed.
    fn pass(&mut self, event: &MeshEvent) -> bool {
        match event {
            MeshEvent::MemberJoined { node } => self.announced.insert(*node),
            MeshEvent::MemberDied { node } | MeshEvent::MemberLeft { node } => {
                self.announced.remove(node);
                true
            }
            _ => true,
        }
    }
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
    let print_dashboard = args.print_dashboard;
    let settings = settle(args)?;
    // Validate everything before writing anything (the key is the only write).
    let allowlist = super::keys::load_allowlist(&settings.allowlist)?;
    let operator =
        match &settings.api_access.operator_key {
            Some(path) => Some(plexus_mesh::driver::read_key(path).map_err(|e| {
                CliError::Input(format!("`api_operator_key` {}: {e}", path.display()))
            })?),
            None => None,
        };
    let tls = match &settings.api_access.tls {
        Some((cert, key)) => Some(
            crate::api::serve::tls_acceptor(cert, key)
                .map_err(|e| CliError::Input(e.to_string()))?,
        ),
        None => None,
    };
    let key = load_or_create_node_key(&settings.data_dir, crate::node::fresh_seed)
        .map_err(|e| CliError::Input(e.to_string()))?;
    let _telemetry = crate::telemetry::init_with(&crate::telemetry::TelemetryConfig {
        filter: log.to_string(),
        otlp_endpoint: settings.otlp_endpoint.clone(),
        instance: Some(key.node_id().to_string()),
    })
    .map_err(|e| CliError::Input(e.to_string()))?;
    if !settings.api.ip().is_loopback() && tls.is_none() {
        tracing::warn!(
            api = %settings.api,
            "the API is served over plain HTTP on a non-loopback address (--insecure-http): \
             its token crosses the network in the clear"
        );
    }
    let listener = tokio::net::TcpListener::bind(settings.api)
        .await
        .map_err(|e| CliError::Input(format!("cannot bind the API on {}: {e}", settings.api)))?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;

    // The replica store opens before the node joins the mesh, so a node never
    // offers itself to peers with a store it cannot serve. A corrupt store leaves
    // the node up (it still runs actors and answers its API) but it serves no
    // durable actors, and says so in its log, its API and its metrics.
    let store = match RocksStore::open_with(&store_dir(&settings.data_dir), settings.durability) {
        Ok(store) => Ok(store),
        Err(e @ OpenError::Corrupt { .. }) => {
            tracing::error!(error = %e, "the replica store is corrupt");
            Err(e.to_string())
        }
        Err(e) => return Err(CliError::Failed(e.to_string())),
    };

    // The backend executors serve on, opened before the node joins: a node that
    // cannot run the configured backend does not start.
    let engine = plexus_ml::engine::Engine::open(settings.work.backend)
        .map_err(|e| CliError::Failed(format!("[work] backend: {e}")))?;
    tracing::info!(
        backend = engine.name(),
        version = engine.version(),
        "executors serve on this backend"
    );
    // Verifiers are drawn among nodes of a receipt's backend: say which is ours.
    let mut tags = settings.tags.clone();
    tags.insert(
        crate::work::BACKEND_TAG.into(),
        plexus_poai::receipt::class_text(&crate::hosting::infer::backend_of(&engine).class()),
    );

    let service_seed = key.seed();
    let service_key = plexus_vocab::identity::NodeKey::from_seed(key.seed());
    let drain_key = plexus_vocab::identity::NodeKey::from_seed(key.seed());
    let api_key = plexus_vocab::identity::NodeKey::from_seed(key.seed());
    let mut mesh_config = MeshConfig::new(key, allowlist);
    mesh_config.listen = settings.listen.clone();
    mesh_config.bootstrap = settings.bootstrap.clone();
    mesh_config.resources = settings.resources;
    mesh_config.tags = tags.clone();
    mesh_config.software = format!("{} ({})", env!("CARGO_PKG_VERSION"), crate::COMMIT);
    mesh_config.allowlist_store = Some(settings.data_dir.join(ACCEPTED_ALLOWLIST_FILE));
    mesh_config.cluster = ClusterConfig {
        membership: settings.membership.clone(),
        registry: settings.registry.clone(),
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
    // Models by hash, and the channel executors hand their work to.
    let models = Arc::new(
        plexus_ml::executor::ModelStore::open(&settings.work.models_dir)
            .map_err(|e| CliError::Input(e.to_string()))?,
    );
    let (sink, work_rx) = crate::hosting::infer::WorkSink::new(crate::work::WORK_QUEUE);
    let fault =
        (settings.work.wrong_outputs_ppm > 0).then_some(crate::hosting::infer::WrongOutputs {
            ppm: settings.work.wrong_outputs_ppm,
        });
    if fault.is_some() {
        tracing::warn!(
            ppm = settings.work.wrong_outputs_ppm,
            "fault injection: this node signs wrong outputs for some of its work"
        );
    }
    // The node's reader identity: files shared with its recipient (weights an
    // `infer` stage names by storage id) open here.
    let reader = super::fs::identity_or_new(&settings.data_dir.join(super::fs::IDENTITY_FILE))?;
    let recipient = reader.to_public().to_string();
    let weights = Arc::new(crate::storage::reader::StorageWeights::new(reader));
    let mut kinds = crate::hosting::kinds::standard();
    kinds
        .register(
            crate::hosting::infer::InferKind::new(models.clone(), Some(sink), fault)
                .with_weights(weights.clone())
                .with_engine(engine.clone()),
        )
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let (durable, store_error) = match store {
        Ok(store) => {
            let service = crate::hosting::DurableService::start(
                &node,
                mesh.clone(),
                service_key,
                store,
                (settings.resources, tags.clone()),
                kinds,
                settings.host_config(),
            )
            .await
            .map_err(|e| {
                CliError::Failed(format!("the durable-actor service did not start: {e}"))
            })?;
            (Some(service), None)
        }
        Err(why) => (None, Some(why)),
    };

    // The epoch service, when the config enables epochs.
    let epochs = match &settings.epochs {
        None => None,
        Some(e) => {
            let store = crate::epochs::store::EpochStore::open(&crate::epochs::store::epochs_dir(
                &settings.data_dir,
            ))
            .map_err(|e| CliError::Failed(e.to_string()))?;
            let ledger = match &e.chain {
                None => crate::epochs::LedgerChoice::Embedded(settings.data_dir.join("ledger")),
                Some((url, key_file, confirmations)) => crate::epochs::LedgerChoice::Evm {
                    url: url.clone(),
                    key: read_chain_key(key_file)?,
                    confirmations: *confirmations,
                },
            };
            let mut epoch_settings = crate::epochs::EpochSettings::dev(
                e.genesis_unix_ms,
                u64::try_from(e.length.as_millis()).unwrap_or(u64::MAX),
            );
            epoch_settings.view_timeout_ms =
                u64::try_from(e.view_timeout.as_millis()).unwrap_or(u64::MAX);
            epoch_settings.dkg.round_ms =
                u64::try_from(e.dkg_round.as_millis()).unwrap_or(u64::MAX);
            epoch_settings.dkg.deal_ms = epoch_settings.dkg.round_ms / 5;
            epoch_settings.dkg.log_ms = epoch_settings.dkg.round_ms / 10;
            let service = crate::epochs::EpochService::start(
                &node,
                mesh.clone(),
                plexus_vocab::identity::NodeKey::from_seed(service_seed),
                epoch_settings,
                store,
                ledger,
            )
            .await
            .map_err(|e| CliError::Failed(format!("the epoch service did not start: {e}")))?;
            Some(service)
        }
    };

    // The work service: receipts for this node's executors, and the audit.
    let work = {
        let store = crate::work::WorkStore::open(&crate::work::work_dir(&settings.data_dir))
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let mut audit = plexus_poai::AuditConfig::new(crate::epochs::network_id(&mesh));
        audit.rate_ppm = settings.work.rate_ppm;
        audit.verifiers = settings.work.verifiers;
        let schedule = settings.epochs.as_ref().map(|e| {
            (
                e.genesis_unix_ms,
                u64::try_from(e.length.as_millis()).unwrap_or(u64::MAX),
            )
        });
        crate::work::WorkService::start(
            node.system(),
            mesh.clone(),
            plexus_vocab::identity::NodeKey::from_seed(service_seed),
            crate::work::WorkSettings {
                audit,
                schedule,
                epochs,
                engine: engine.clone(),
            },
            store,
            models.clone(),
            work_rx,
        )
        .await
        .map_err(|e| CliError::Failed(format!("the work service did not start: {e}")))?
    };

    // The storage service: this node's shard, gateway puts and gets, repair, and
    // the key-value store.
    let storage = {
        let store =
            crate::storage::ChunkStore::open(&crate::storage::storage_dir(&settings.data_dir))
                .map_err(|e| CliError::Failed(e.to_string()))?;
        crate::storage::StorageService::start(
            node.system(),
            mesh.clone(),
            plexus_vocab::identity::NodeKey::from_seed(service_seed),
            crate::storage::StorageSettings {
                quota_bytes: settings.storage.quota_bytes,
                spread: settings.storage.spread.clone(),
                gc_grace: settings.storage.gc_grace,
                // Looked for four times per grace period, at most once a minute.
                gc_every: (settings.storage.gc_grace / 4)
                    .clamp(Duration::from_secs(1), Duration::from_secs(60)),
                repair: plexus_storage::repair::RepairConfig {
                    scan_every: settings.storage.scan_every,
                    // A promise outlasts two full scans (the hand-off's rule).
                    promise_for: settings.storage.scan_every * 2,
                    ..plexus_storage::repair::RepairConfig::default()
                },
                ..crate::storage::StorageSettings::default()
            },
            store,
        )
        .await
        .map_err(|e| CliError::Failed(format!("the storage service did not start: {e}")))?
    };
    weights.bind(storage.clone());

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
    // A fresh API token for this process life, where local clients find it.
    let published = publish(&settings.data_dir, &api_addr)
        .map_err(|e| CliError::Failed(format!("cannot write the API token: {e}")))?;
    emit(serde_json::json!({
        "event": "ready",
        "node": node.id().to_string(),
        "listen": listen,
        "api": format!("{}://{api_addr}", if tls.is_some() { "https" } else { "http" }),
        "data_dir": settings.data_dir,
        "api_token_file": settings.data_dir.join(TOKEN_FILE),
        "detection_bound_ms": mesh.detection_bound().as_millis() as u64,
    }));
    if print_dashboard {
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "dashboard: {scheme}://{api_addr}/#token={}",
            published.token().as_str()
        );
    }

    // Stdout's first line is always `ready`; a corrupt store is reported next.
    if let Some(why) = &store_error {
        emit(serde_json::json!({ "event": "store_corrupt", "error": why }));
    }
    let serve_stats = Arc::new(ServeStats::default());
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let api = Arc::new(Api {
        node: node.clone(),
        addr: api_addr,
        durable: durable.clone(),
        key: Some(api_key),
        store_error,
        serve_stats: serve_stats.clone(),
        epochs,
        work: Some(work),
        models: Some(models),
        engine: Some(engine.clone()),
        storage: Some(storage),
        replicas_default: settings.storage.replicas,
        recipient: Some(recipient),
        operator,
        event_streams: Arc::new(tokio::sync::Semaphore::new(
            crate::api::dashboard::EVENT_STREAMS_MAX,
        )),
        closing,
    });
    let limits = &settings.api_access.limits;
    let Some(guard) = Guard::new(
        published.token().clone(),
        &api_addr,
        &settings.api_access.hosts,
    )
    .with_rate(limits.rate_per_s, limits.burst) else {
        return Err(CliError::Input(
            "`api_rate_per_s` must be at least 1".into(),
        ));
    };
    let guard = Arc::new(guard);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = settings.api_access.limits.clone();
    let server = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.await;
        };
        if let Err(e) = serve(
            listener,
            router(api, guard),
            limits,
            tls,
            serve_stats,
            stopped,
        )
        .await
        {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    let known = mesh.clone();
    let printer = tokio::spawn(async move {
        // Subscribed above, before this snapshot: a member is in it, or its join is
        // still to come on `events`, or both (then `joins` prints it once).
        let mut joins = Joins::default();
        for event in joins.start(&known.members()) {
            emit(serde_json::to_value(&event).unwrap_or_default());
        }
        drop(known);
        loop {
            match events.recv().await {
                Ok(event) => {
                    if joins.pass(&event) {
                        emit(serde_json::to_value(&event).unwrap_or_default());
                    }
                }
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
    if let Some(durable) = durable.as_ref().filter(|_| signal == "SIGTERM" && others) {
        emit(serde_json::json!({ "event": "draining" }));
        let network = mesh.allowlist().allowlist.network;
        let moved = drain(durable, &drain_key, &network, DRAIN_WAIT).await;
        emit(serde_json::json!({ "event": "drained", "actors_left": moved }));
    }
    node.shutdown().await;
    let _ = closing_tx.send(true);
    let _ = stop_tx.send(());
    let _ = server.await;
    printer.abort();
    drop(published);
    emit(serde_json::json!({ "event": "stopped", "signal": signal }));
    Ok(())
}

/// Reads the hex secret key that pays for anchors (`0x` optional, whitespace ignored).
fn read_chain_key(path: &std::path::Path) -> Result<[u8; 32], CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("epochs.chain_key_file {}: {e}", path.display())))?;
    let hex = text.trim().trim_start_matches("0x");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| {
            CliError::Input(format!("epochs.chain_key_file {}: not hex", path.display()))
        })?;
    bytes.try_into().map_err(|_| {
        CliError::Input(format!(
            "epochs.chain_key_file {}: a secret key is 32 bytes",
            path.display()
        ))
    })
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
    use plexus_scheduler::protocol::{Request, Signed};
    let deadline = tokio::time::Instant::now() + limit;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if let Ok(signed) = Signed::sign_at(
        Request::Drain {
            node: key.node_id(),
        },
        network,
        since_epoch,
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

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_vocab::identity::NodeKey;

    fn member(seed: u8, state: MemberState) -> MemberView {
        MemberView {
            id: NodeKey::from_seed([seed; 32]).node_id(),
            state,
            incarnation: 1,
            addrs: Vec::new(),
            total: Default::default(),
            free: Default::default(),
            tags: Default::default(),
            software: String::new(),
        }
    }

    #[test]
    fn each_live_member_is_announced_once_whether_it_joined_before_or_after_the_printer() {
        let (a, b, gone) = (
            member(1, MemberState::Alive),
            member(2, MemberState::Suspect),
            member(3, MemberState::Dead),
        );
        let mut joins = Joins::default();
        let first = joins.start(&[a.clone(), b.clone(), gone.clone()]);
        assert_eq!(
            first,
            vec![
                MeshEvent::MemberJoined { node: a.id },
                MeshEvent::MemberJoined { node: b.id }
            ],
            "the dead member is not announced"
        );
        // `a` joined between subscribing and the snapshot: its queued event is
        // skipped. The dead one's return is printed.
        assert!(!joins.pass(&MeshEvent::MemberJoined { node: a.id }));
        assert!(joins.pass(&MeshEvent::MemberJoined { node: gone.id }));
        assert!(!joins.pass(&MeshEvent::MemberJoined { node: gone.id }));
        // A member that dies and comes back is announced again.
        assert!(joins.pass(&MeshEvent::MemberDied { node: b.id }));
        assert!(joins.pass(&MeshEvent::MemberJoined { node: b.id }));
        assert!(joins.pass(&MeshEvent::MemberLeft { node: a.id }));
        assert!(joins.pass(&MeshEvent::MemberJoined { node: a.id }));
        assert!(joins.pass(&MeshEvent::MemberSuspected { node: a.id }));
    }
}
