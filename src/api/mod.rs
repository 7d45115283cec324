//! The node's local HTTP API (JSON, loopback by default).
//!
//! | method | path            | does |
//! |--------|-----------------|------|
//! | GET    | `/v1/node`      | this node: id, version and commit, addresses, allowlist version, detection bound |
//! | GET    | `/v1/members`   | the membership view |
//! | GET    | `/v1/names`     | the cluster registry |
//! | GET    | `/v1/actors`    | actors running on this node |
//! | POST   | `/v1/actors`    | spawn `{kind, config?, name?, node?}` here or on `node` |
//! | POST   | `/v1/ask`       | ask an `echo` actor `{name \| actor+node, text}` |
//! | POST   | `/v1/tell`      | tell an `echo` actor `{actor, node, text}` |
//! | GET    | `/v1/stats`     | mesh counters |
//! | POST   | `/v1/scheduler` | a signed scheduler request `{signed: hex}` (deploy, stop, migrate, drain, status); answers the scheduler's response |
//! | GET    | `/v1/jobs`      | the scheduler's status (jobs, actors, where they run) |
//! | POST   | `/v1/jobs`      | deploy a job spec (TOML body), signed with the node's operator key ([`dashboard`]) |
//! | POST   | `/v1/jobs/{name}/stop` | stop a job (operator key) |
//! | POST   | `/v1/migrate`   | move an actor live `{actor, to}` (operator key) |
//! | GET    | `/v1/events`    | Server-Sent Events: a `snapshot` of the cluster whenever it changes ([`dashboard`]) |
//! | GET    | `/`             | the dashboard (public static files; data from the API with the token) |
//! | POST   | `/v1/send`      | client messages `{actor, messages: [text]}` to a durable actor, exactly once |
//! | GET    | `/v1/durable`   | durable actors active here, client traffic sent and acknowledged, migrations |
//! | GET    | `/metrics`      | Prometheus metrics: OpenMetrics when asked for, else the text format ([`crate::metrics`]) |
//! | …      | `/v1/fs/…`, `/v1/kv…`, `/v1/watch/kv` | storage and the key-value store ([`fs`]) |
//!
//! Every route but `GET /v1/node`, `POST /v1/scheduler` (whose body is a signed
//! request) and the dashboard's static files needs the node's bearer token, and every request a loopback or
//! configured `Host` ([`auth`]); the server's bounds are in [`serve`].
//!
//! Bad requests get `400` with `{"error": ...}`; unknown names `404`; failures of
//! other nodes `502`; a missing token `401`; a wrong Host `403`; too many requests
//! `429`. Request bodies are limited to 1 MiB (chunk and manifest uploads to
//! [`CHUNK_BODY_BYTES_MAX`]).

pub mod auth;
pub mod dashboard;
pub mod fs;
pub mod serve;
mod work;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plexus_actors::runtime::KindArgs;
use plexus_actors::{ActorId, NodeId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Node;
use crate::hosting::{AskError, Local, ServiceMsg};
use crate::kinds::EchoMsg;
use plexus_durable::types::DurableKey;
use plexus_scheduler::protocol::{
    Fault, Rejection, Request, Response as SchedulerResponse, Signed,
};

/// Largest request body accepted.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// Largest body of a chunk or manifest upload.
pub const CHUNK_BODY_BYTES_MAX: usize = plexus_storage::manifest::MANIFEST_BYTES_MAX;

/// Shared by every handler.
pub struct Api {
    /// The node served.
    pub node: Arc<Node>,
    /// The address the API listens on.
    pub addr: std::net::SocketAddr,
    /// The durable-actor service, on daemons.
    pub durable: Option<plexus_actors::runtime::ActorRef<ServiceMsg>>,
    /// This node's key (it signs the status requests it makes for clients).
    pub key: Option<plexus_vocab::identity::NodeKey>,
    /// Why the durable-actor service is not running, when its store is corrupt.
    pub store_error: Option<String>,
    /// The server's refusal counters.
    pub serve_stats: Arc<serve::ServeStats>,
    /// The epoch service's id, when epochs are enabled (resolved per request: a
    /// restarted service keeps the id).
    pub epochs: Option<plexus_actors::ActorId>,
    /// The work service (receipts and their audit), on daemons.
    pub work: Option<plexus_actors::runtime::ActorRef<crate::work::WorkMsg>>,
    /// The node's model directory, on daemons.
    pub models: Option<Arc<plexus_ml::executor::ModelStore>>,
    /// The backend its executors serve on, on daemons.
    pub engine: Option<plexus_ml::engine::Engine>,
    /// The storage service, on daemons.
    pub storage: Option<plexus_actors::runtime::ActorRef<crate::storage::StorageMsg>>,
    /// The replication factor of puts that name none.
    pub replicas_default: u8,
    /// The node's age recipient: files shared with it open on this node.
    pub recipient: Option<String>,
    /// The key the node signs its API clients' scheduler requests with
    /// (`api_operator_key`; see [`dashboard`]). `None`: clients sign their own.
    pub operator: Option<plexus_vocab::identity::NodeKey>,
    /// Live feeds open ([`dashboard::EVENT_STREAMS_MAX`] permits).
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Turns `true` when the node shuts down (live feeds end).
    pub closing: tokio::sync::watch::Receiver<bool>,
}

/// An API error: a status and a message.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn parse_node(text: &str) -> Result<NodeId, ApiError> {
    text.parse().map_err(|e| bad(format!("`node`: {e}")))
}

fn parse_actor(text: &str) -> Result<ActorId, ApiError> {
    text.parse().map_err(|e| bad(format!("`actor`: {e}")))
}

/// The router, behind `guard` (Host, then token).
pub fn router(api: Arc<Api>, guard: Arc<auth::Guard>) -> Router {
    Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/members", get(members))
        .route("/v1/names", get(names))
        .route("/v1/actors", get(actors).post(spawn))
        .route("/v1/ask", post(ask))
        .route("/v1/tell", post(tell))
        .route("/v1/stats", get(stats))
        .route("/v1/scheduler", post(scheduler))
        .route("/v1/send", post(send))
        .route("/v1/durable", get(durable_status))
        .route("/v1/epochs", get(epochs_list))
        .route("/v1/epochs/{epoch}", get(epoch_get))
        .route("/v1/infer", post(work::infer))
        .route("/v1/models", get(work::models).post(work::models_add))
        .route("/v1/receipts", get(work::receipts))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard::index))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/v1/events", get(dashboard::events))
        .route("/v1/jobs", get(jobs).post(dashboard::deploy))
        .route("/v1/jobs/{name}/stop", post(dashboard::stop))
        .route("/v1/migrate", post(dashboard::migrate))
        .route(
            "/v1/fs/chunks",
            post(fs::put_chunk).layer(DefaultBodyLimit::max(CHUNK_BODY_BYTES_MAX)),
        )
        .route("/v1/fs/chunks/{id}", get(fs::get_chunk))
        .route(
            "/v1/fs/files",
            get(fs::list_files)
                .post(fs::put_file)
                .layer(DefaultBodyLimit::max(CHUNK_BODY_BYTES_MAX)),
        )
        .route("/v1/fs/files/{id}", get(fs::stat_file))
        .route("/v1/fs/files/{id}/content", get(fs::file_content))
        .route("/v1/fs/files/{id}/stored", get(fs::file_stored))
        .route("/v1/fs/files/{id}/pin", post(fs::pin).delete(fs::unpin))
        .route("/v1/fs/keys/{id}", get(fs::keys).put(fs::add_key))
        .route("/v1/fs/status", get(fs::status))
        .route("/v1/kv", get(fs::kv_list))
        .route(
            "/v1/kv/{*key}",
            get(fs::kv_get).put(fs::kv_put).delete(fs::kv_delete),
        )
        .route("/v1/watch/kv", get(fs::kv_watch))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(guard, auth::guard))
        .with_state(api)
}

async fn node_info(State(api): State<Arc<Api>>) -> Json<Value> {
    let node = &api.node;
    let mesh = node.mesh();
    Json(json!({
        "id": node.id().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "commit": crate::COMMIT,
        "api": format!("http://{}", api.addr),
        "listen": mesh.map(|m| m.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
        "allowlist_version": mesh.map(|m| m.allowlist().allowlist.version),
        "network": mesh.map(|m| m.allowlist().allowlist.network),
        "detection_bound_ms": mesh.map(|m| m.detection_bound().as_millis() as u64),
        "actors": node.system().actor_count(),
        "recipient": api.recipient,
        "store": match &api.store_error {
            None if api.durable.is_some() => json!({ "state": "ok" }),
            None => json!({ "state": "none" }),
            Some(why) => json!({ "state": "corrupt", "error": why }),
        },
    }))
}

async fn members(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(json!(
        api.node.mesh().map(|m| m.members()).unwrap_or_default()
    ))
}

async fn names(State(api): State<Arc<Api>>) -> Json<Value> {
    let names: serde_json::Map<String, Value> = api
        .node
        .mesh()
        .map(|m| m.names())
        .unwrap_or_default()
        .into_iter()
        .map(|(n, l)| {
            (
                n,
                json!({ "node": l.node.to_string(), "actor": l.actor.to_string() }),
            )
        })
        .collect();
    Json(Value::Object(names))
}

async fn actors(State(api): State<Arc<Api>>) -> Json<Value> {
    let list: Vec<Value> = api
        .node
        .system()
        .actors()
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id.to_string(),
                "name": a.name,
                "kind": a.kind,
                "message_type": a.message_type,
                "mailbox_depth": a.mailbox_depth,
                "mailbox_capacity": a.mailbox_capacity,
                "handled": a.handled,
            })
        })
        .collect();
    Json(json!(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnRequest {
    kind: String,
    #[serde(default)]
    config: Value,
    name: Option<String>,
    node: Option<String>,
}

async fn spawn(
    State(api): State<Arc<Api>>,
    Json(req): Json<SpawnRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = match &req.node {
        Some(n) => parse_node(n)?,
        None => api.node.id(),
    };
    if let Some(reserved) = [Some(req.kind.as_str()), req.name.as_deref()]
        .into_iter()
        .flatten()
        .find(|n| plexus_vocab::names::is_reserved(n))
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("`{reserved}` is a reserved system name"),
        ));
    }
    let args = KindArgs::config(if req.config.is_null() {
        json!({})
    } else {
        req.config
    });
    let id = api
        .node
        .spawn_on(target, &req.kind, args, req.name.as_deref())
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(Json(
        json!({ "actor": id.to_string(), "node": target.to_string() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    name: Option<String>,
    actor: Option<String>,
    node: Option<String>,
    text: String,
}

fn echo_ref(api: &Api, req: &MessageRequest) -> Result<plexus_actors::ActorRef<EchoMsg>, ApiError> {
    if let Some(name) = &req.name {
        return api.node.resolve_name::<EchoMsg>(name).ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no actor is registered as `{name}`"),
            )
        });
    }
    let actor = parse_actor(
        req.actor
            .as_deref()
            .ok_or_else(|| bad("give `name`, or `actor` and `node`"))?,
    )?;
    let node = match &req.node {
        Some(n) => parse_node(n)?,
        None => actor.origin,
    };
    Ok(api.node.resolve_at(actor, node))
}

async fn ask(
    State(api): State<Arc<Api>>,
    Json(req): Json<MessageRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = echo_ref(&api, &req)?;
    let started = std::time::Instant::now();
    let reply = target.ask(EchoMsg { text: req.text }).await;
    api.node
        .metrics()
        .ask(crate::metrics::AskKind::Echo, started.elapsed());
    let reply = reply.map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(Json(json!(reply)))
}

async fn tell(
    State(api): State<Arc<Api>>,
    Json(req): Json<MessageRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = echo_ref(&api, &req)?;
    target
        .try_tell(EchoMsg { text: req.text })
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({ "queued": true })))
}

async fn stats(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(json!(api.node.mesh().map(|m| m.stats())))
}

fn epoch_service(
    api: &Api,
) -> Result<plexus_actors::runtime::ActorRef<crate::epochs::EpochMsg>, ApiError> {
    let id = api.epochs.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "epochs are not enabled on this node ([epochs] in its config)".into(),
        )
    })?;
    Ok(api.node.system().resolve(id))
}

async fn epoch_status(api: &Api) -> Result<crate::epochs::EpochStatus, ApiError> {
    let service = epoch_service(api)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    service
        .tell(crate::epochs::EpochMsg::List(tx))
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    rx.await.map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the epoch service stopped".into(),
        )
    })
}

/// `GET /v1/epochs`: the DKG's state, the group key, and each epoch's state,
/// signers, availability and rewards.
async fn epochs_list(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(epoch_status(&api).await?)))
}

/// `GET /v1/epochs/{epoch}`: one signed checkpoint, as JSON and as its exported
/// encoding (hex), which `plexus checkpoint verify` checks offline.
async fn epoch_get(
    State(api): State<Arc<Api>>,
    axum::extract::Path(epoch): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let epoch: u64 = epoch.parse().map_err(|e| bad(format!("`epoch`: {e}")))?;
    let service = epoch_service(&api)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    service
        .tell(crate::epochs::EpochMsg::Get(epoch, tx))
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let signed = rx
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the epoch service stopped".into(),
            )
        })?
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no signed checkpoint for epoch {epoch}"),
            )
        })?;
    Ok(Json(crate::epochs::checkpoint_json(&signed)))
}

async fn metrics(State(api): State<Arc<Api>>, headers: axum::http::HeaderMap) -> Response {
    use plexus_actors::runtime::ActorInfo;
    let mut s = api.node.metrics().scrape();
    let system = api.node.system();
    let actors = system.actors();
    // Per kind, not per actor: kinds are the ones registered in code.
    let mut by_kind = std::collections::BTreeMap::<String, (i64, i64)>::new();
    for a in &actors {
        let e = by_kind
            .entry(a.kind.clone().unwrap_or_else(|| "none".into()))
            .or_default();
        e.0 += 1;
        e.1 += a.mailbox_depth as i64;
    }
    s.gauge_by(
        "actors",
        "Actors running on this node, by kind",
        "kind",
        by_kind.iter().map(|(k, v)| (k.clone(), v.0)),
    );
    s.gauge_by(
        "mailbox_messages",
        "Messages waiting in the mailboxes of this node's actors, by kind",
        "kind",
        by_kind.iter().map(|(k, v)| (k.clone(), v.1)),
    );
    s.gauge(
        "mailbox_depth_max",
        "The deepest mailbox of any actor on this node",
        actors
            .iter()
            .map(|a: &ActorInfo| a.mailbox_depth as i64)
            .max()
            .unwrap_or(0),
    );
    s.gauge(
        "actor_messages_handled",
        "Messages handled by the actors running on this node now (falls when an actor stops)",
        actors
            .iter()
            .map(|a| i64::try_from(a.handled).unwrap_or(i64::MAX))
            .fold(0i64, i64::saturating_add),
    );
    if let Some(mesh) = api.node.mesh() {
        let m = mesh.stats();
        for (name, help, value) in [
            (
                "mesh_frames_in",
                "Frames received from peers and decoded",
                m.frames_in,
            ),
            ("mesh_frames_out", "Frames sent to peers", m.frames_out),
            (
                "mesh_malformed_frames",
                "Frames from peers that did not decode (dropped)",
                m.malformed_frames,
            ),
            (
                "mesh_unadmitted_dropped",
                "Frames or streams from peers not on the allowlist (dropped unread)",
                m.unadmitted_dropped,
            ),
            (
                "mesh_connections_refused",
                "Connections refused by admission",
                m.connections_refused,
            ),
            (
                "mesh_remote_delivered",
                "Messages from other nodes delivered to actors here",
                m.delivered,
            ),
            (
                "mesh_remote_refused",
                "Messages from other nodes refused (no such actor, wrong type, mailbox full)",
                m.refused,
            ),
            (
                "mesh_retransmitted",
                "Data frames retransmitted",
                m.retransmitted,
            ),
            (
                "mesh_gossip_refused",
                "Membership statements and registry claims refused from peers",
                m.gossip_refused,
            ),
            (
                "mesh_allowlist_rejected",
                "Allowlist updates refused",
                m.allowlist_rejected,
            ),
            (
                "mesh_suspicions",
                "Times this node suspected a member",
                m.suspicions,
            ),
            (
                "mesh_deaths",
                "Times this node declared a member dead",
                m.deaths,
            ),
        ] {
            s.counter(name, help, value);
        }
        let mut by_state: std::collections::BTreeMap<&str, i64> = [
            plexus_mesh::membership::MemberState::Alive,
            plexus_mesh::membership::MemberState::Suspect,
            plexus_mesh::membership::MemberState::Dead,
            plexus_mesh::membership::MemberState::Left,
        ]
        .into_iter()
        .map(|state| (state.as_str(), 0))
        .collect();
        for member in mesh.members() {
            *by_state.entry(member.state.as_str()).or_default() += 1;
        }
        s.gauge(
            "mesh_local_health",
            "Local health score (0: healthy; this node probes score + 1 times slower, having missed acks no helper explained)",
            i64::try_from(m.local_health).unwrap_or(i64::MAX),
        );
        s.gauge(
            "mesh_peers_held",
            "Peers whose delivery waits for a full local mailbox to drain, their later frames held",
            i64::try_from(m.peers_held).unwrap_or(i64::MAX),
        );
        s.gauge_by(
            "mesh_members",
            "Other nodes in this node's membership view, by state",
            "state",
            by_state.into_iter().map(|(k, v)| (k.to_string(), v)),
        );
    }
    if let Ok(status) = epoch_status(&api).await {
        crate::epochs::metrics(&mut s, &status);
    }
    s.gauge(
        "store_corrupt",
        "1 when the durable-actor store is corrupt and the service is not running",
        i64::from(api.store_error.is_some()),
    );
    for (name, help, value) in [
        (
            "api_connections_refused",
            "API connections closed at once because the connection cap was reached",
            &api.serve_stats.connections_refused,
        ),
        (
            "api_tls_failed",
            "API connections whose TLS handshake failed or timed out",
            &api.serve_stats.tls_failed,
        ),
    ] {
        s.counter(name, help, value.load(std::sync::atomic::Ordering::Relaxed));
    }
    if let Some(service) = &api.durable {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if service
            .tell(ServiceMsg::Local(Local::Status { reply: tx }))
            .await
            .is_ok()
            && let Ok(d) = rx.await
        {
            s.gauge(
                "durable_actors",
                "Durable actors active or restoring here",
                d.actors.len() as i64,
            );
            for (name, help, value) in [
                (
                    "durable_activations",
                    "Durable actor activations here",
                    d.activations,
                ),
                (
                    "durable_commits",
                    "Durable log records committed by actors here",
                    d.commits,
                ),
                (
                    "durable_migrations",
                    "Live migrations from this node",
                    d.migrations,
                ),
                (
                    "durable_failovers",
                    "Actors that took over here from a host seen down",
                    d.failovers,
                ),
                (
                    "client_messages_sent",
                    "Client messages this node sent to durable actors",
                    d.sent,
                ),
                (
                    "client_messages_acked",
                    "Client messages of this node acknowledged by their actors",
                    d.acked,
                ),
                (
                    "durable_refused",
                    "Durable messages refused because their sender may not say them",
                    d.refused,
                ),
            ] {
                s.counter(name, help, value);
            }
            s.gauge(
                "scheduler_here",
                "1 when the scheduler is active on this node",
                i64::from(d.scheduler_here),
            );
        }
    }
    if api.storage.is_some()
        && let Ok(st) = fs::call(&api, crate::storage::StorageMsg::Status).await
    {
        crate::storage::metrics(&mut s, &st);
    }
    let openmetrics = crate::metrics::wants_openmetrics(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let content_type = if openmetrics {
        crate::metrics::OPENMETRICS_CONTENT_TYPE
    } else {
        crate::metrics::TEXT_CONTENT_TYPE
    };
    (
        [(axum::http::header::CONTENT_TYPE, content_type)],
        s.encode(openmetrics),
    )
        .into_response()
}

fn service(api: &Api) -> Result<&plexus_actors::runtime::ActorRef<ServiceMsg>, ApiError> {
    api.durable.as_ref().ok_or_else(|| match &api.store_error {
        Some(why) => ApiError(StatusCode::SERVICE_UNAVAILABLE, why.clone()),
        None => ApiError(
            StatusCode::NOT_FOUND,
            "this node runs no durable-actor service".into(),
        ),
    })
}

/// How long the API waits for the scheduler to answer.
const SCHEDULER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn ask_scheduler(api: &Api, signed: Signed) -> Result<SchedulerResponse, ApiError> {
    let deadline = tokio::time::Instant::now() + SCHEDULER_WAIT;
    crate::hosting::ask_scheduler(service(api)?, &signed, deadline)
        .await
        .map_err(|e| {
            let status = match e {
                AskError::Answer(_) => StatusCode::BAD_GATEWAY,
                AskError::Submit(plexus_host::SubmitError::Encode(_)) => StatusCode::BAD_REQUEST,
                AskError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError(status, e.to_string())
        })
}

fn response_json(response: SchedulerResponse) -> Result<Json<Value>, ApiError> {
    match response {
        SchedulerResponse::Rejected(why) => {
            let status = match why.fault() {
                Fault::Request => StatusCode::BAD_REQUEST,
                // Asked again unchanged, it may succeed: retry now, or later.
                Fault::Cluster if why == Rejection::Starting => StatusCode::SERVICE_UNAVAILABLE,
                Fault::Cluster => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError(status, why.to_string()))
        }
        other => Ok(Json(json!(other))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerRequest {
    /// The codec encoding of a `Signed` request, in hex.
    signed: String,
}

fn unhex(text: &str) -> Result<Vec<u8>, ApiError> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return Err(bad("`signed`: odd number of hex digits"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| bad("`signed`: not hex"))
        })
        .collect()
}

async fn scheduler(
    State(api): State<Arc<Api>>,
    Json(req): Json<SchedulerRequest>,
) -> Result<Json<Value>, ApiError> {
    let bytes = unhex(&req.signed)?;
    let signed = Signed::decode(&bytes).map_err(|e| bad(format!("`signed`: {e}")))?;
    response_json(ask_scheduler(&api, signed).await?)
}

async fn jobs(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    response_json(ask_scheduler(&api, status_request(&api)?).await?)
}

/// A signed `Status` request to the scheduler, from this node.
fn status_request(api: &Api) -> Result<Signed, ApiError> {
    let key = api
        .key
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no node key".into()))?;
    sign_now(api, Request::Status, key)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `request` signed with `key` now, for the network this node serves.
fn sign_now(
    api: &Api,
    request: Request,
    key: &plexus_vocab::identity::NodeKey,
) -> Result<Signed, plexus_actors::codec::CodecError> {
    let network = api
        .node
        .mesh()
        .map(|m| m.allowlist().allowlist.network)
        .unwrap_or_default();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Signed::sign_at(request, &network, since_epoch, key)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    actor: String,
    messages: Vec<String>,
    /// A W3C traceparent the messages (and what they cause) carry along.
    #[serde(default)]
    traceparent: Option<String>,
}

async fn send(
    State(api): State<Arc<Api>>,
    Json(req): Json<SendRequest>,
) -> Result<Json<Value>, ApiError> {
    let to = DurableKey::new(&req.actor).map_err(|e| bad(format!("`actor`: {e}")))?;
    let trace = req
        .traceparent
        .as_deref()
        .map(crate::telemetry::parse_traceparent)
        .transpose()
        .map_err(|e| bad(format!("`traceparent`: {e}")))?;
    // The API's own span joins the caller's trace; the messages carry it on.
    let span = tracing::info_span!("api.send", actor = %to, messages = req.messages.len());
    if let Some(t) = &trace {
        crate::telemetry::adopt(&span, t);
    }
    let trace = crate::telemetry::pass_on(&span, trace);
    let service = service(&api)?;
    let mut accepted = 0u64;
    for text in req.messages {
        let (tx, rx) = tokio::sync::oneshot::channel();
        service
            .tell(ServiceMsg::Local(Local::Send {
                to: to.clone(),
                payload: text.into_bytes(),
                trace,
                reply: tx,
            }))
            .await
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        match rx.await {
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(why)) => {
                return Err(ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{why} ({accepted} accepted before)"),
                ));
            }
            Err(_) => {
                return Err(ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the durable service stopped".into(),
                ));
            }
        }
    }
    Ok(Json(json!({ "accepted": accepted })))
}

async fn durable_status(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let service = service(&api)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    service
        .tell(ServiceMsg::Local(Local::Status { reply: tx }))
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let status = rx.await.map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the durable service stopped".into(),
        )
    })?;
    Ok(Json(json!(status)))
}
