//! The dashboard every node serves, its live feed and its actions.
//!
//! * `GET /` (and `/dashboard.js`, `/dashboard.css`): the page, plain HTML, CSS and
//!   JavaScript compiled into the binary (`src/api/dashboard/`). No data is in
//!   them, so they are public; everything the page shows comes from the API with
//!   the node's token. `plexus up` and `plexus demo` print the page's URL with the
//!   token in its fragment (`/#token=...`), which browsers never send to a server;
//!   the page keeps it in the tab's session storage and removes it from the
//!   address bar.
//! * `GET /v1/events`: Server-Sent Events. A `snapshot` event carries the cluster
//!   as this node sees it ([`snapshot`]): at once, then whenever it changes (read
//!   every [`EVENTS_EVERY`]), with a keep-alive comment every 15 s. At most
//!   [`EVENT_STREAMS_MAX`] streams at once (then `503`): each costs a scheduler
//!   status request per tick. Streams end when the node shuts down.
//! * Actions, signed with the node's operator key (`api_operator_key` in the
//!   config; `plexus up` and `plexus demo` set it to their submitter key):
//!   `POST /v1/jobs` (body: a job spec, TOML) deploys, `POST /v1/jobs/{name}/stop`
//!   stops, `POST /v1/migrate` `{actor, to}` moves an actor live. They are the
//!   same scheduler requests `plexus deploy|stop|migrate` sign, and the scheduler
//!   checks the key's role in the allowlist as it checks theirs. A node without an
//!   operator key answers `403`: sign the request yourself and `POST /v1/scheduler`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use plexus_scheduler::protocol::Request;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, bad};

/// How often a live feed reads the cluster.
pub const EVENTS_EVERY: Duration = Duration::from_millis(250);
/// Live feeds open at once, at most.
pub const EVENT_STREAMS_MAX: usize = 16;
/// Files a snapshot lists (the first by id); the page asks for a file's copies
/// (`GET /v1/fs/files/{id}`) when a person opens it.
pub const FILES_SHOWN: usize = 50;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// The static files, public (see the module docs).
pub const STATIC_PATHS: [&str; 3] = ["/", "/dashboard.js", "/dashboard.css"];

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The page loads only its own files and talks only to this node.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The cluster as this node sees it: the node, its membership view, the
/// allowlist's entries, the scheduler's jobs and actors, and (where the node runs them) epochs, receipts,
/// storage, the first files and models. A part that cannot be read now is `null` with an `errors`
/// entry saying why; the rest is still sent.
pub async fn snapshot(api: &Arc<Api>) -> Value {
    let mut errors = serde_json::Map::new();
    let mut part = |name: &str, r: Result<Json<Value>, ApiError>| match r {
        Ok(Json(v)) => v,
        Err(ApiError(_, why)) => {
            errors.insert(name.to_string(), Value::String(why));
            Value::Null
        }
    };
    let state = || State(api.clone());
    let Json(node) = super::node_info(state()).await;
    let Json(members) = super::members(state()).await;
    let jobs = super::jobs(state()).await;
    let jobs = part("jobs", jobs);
    let epochs = if api.epochs.is_some() {
        let e = super::epochs_list(state()).await;
        part("epochs", e)
    } else {
        Value::Null
    };
    let receipts = if api.work.is_some() {
        let r = super::work::receipts(state()).await;
        part("receipts", r)
    } else {
        Value::Null
    };
    let (storage, files) = if api.storage.is_some() {
        let s = super::fs::status(state()).await;
        let f = super::fs::files_json(api, FILES_SHOWN).await;
        (part("storage", s), part("files", f))
    } else {
        (Value::Null, Value::Null)
    };
    let models = if api.models.is_some() {
        let m = super::work::models(state()).await;
        part("models", m)
    } else {
        Value::Null
    };
    // Who governance admitted, and the tags it gave each (placement's tags).
    let allowlist: serde_json::Map<String, Value> = api
        .node
        .mesh()
        .map(|m| m.allowlist().allowlist.nodes)
        .unwrap_or_default()
        .into_iter()
        .map(|(id, entry)| {
            (
                id.to_string(),
                json!({ "operator": entry.operator, "tags": entry.tags }),
            )
        })
        .collect();
    json!({
        "node": node,
        "members": members,
        "allowlist": allowlist,
        "jobs": jobs,
        "epochs": epochs,
        "receipts": receipts,
        "storage": storage,
        "files": files,
        "models": models,
        "operator": api.operator.as_ref().map(|k| k.node_id().to_string()),
        "errors": errors,
    })
}

/// `GET /v1/events`.
pub(super) async fn events(
    State(api): State<Arc<Api>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = api.event_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{EVENT_STREAMS_MAX} live feeds are open already; close one"),
        )
    })?;
    let closing = api.closing.clone();
    let state = (api, closing, permit, None::<String>, true);
    let stream = futures::stream::unfold(
        state,
        |(api, mut closing, permit, last, first)| async move {
            let mut first = first;
            loop {
                if *closing.borrow() {
                    return None;
                }
                if !first {
                    // A polling interval (the snapshot is read, not pushed), cut short
                    // by shutdown.
                    tokio::select! {
                        () = tokio::time::sleep(EVENTS_EVERY) => {}
                        _ = closing.changed() => return None,
                    }
                }
                first = false;
                let now = snapshot(&api).await.to_string();
                if last.as_deref() != Some(now.as_str()) {
                    let event = Event::default().event("snapshot").data(now.clone());
                    return Some((Ok(event), (api, closing, permit, Some(now), false)));
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn operator(api: &Api) -> Result<&plexus_vocab::identity::NodeKey, ApiError> {
    api.operator.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::FORBIDDEN,
            "this node signs no scheduler requests for its API clients (no `api_operator_key` \
             in its config): sign the request with your key (`plexus deploy|stop|migrate`) \
             and POST it to /v1/scheduler"
                .into(),
        )
    })
}

/// `request`, signed with the operator key, answered by the scheduler.
async fn signed_by_operator(api: &Api, request: Request) -> Result<Json<Value>, ApiError> {
    let key = operator(api)?;
    let signed = super::sign_now(api, request, key)
        .map_err(|e| bad(format!("the request does not encode: {e}")))?;
    super::response_json(super::ask_scheduler(api, signed).await?)
}

/// `POST /v1/jobs`: the body is a job spec (TOML).
pub(super) async fn deploy(
    State(api): State<Arc<Api>>,
    spec: String,
) -> Result<Json<Value>, ApiError> {
    if spec.trim().is_empty() {
        return Err(bad("the body must be a job spec (TOML)"));
    }
    signed_by_operator(&api, Request::Deploy { spec }).await
}

/// `POST /v1/jobs/{name}/stop`.
pub(super) async fn stop(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    signed_by_operator(&api, Request::Stop { job: name }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MigrateRequest {
    actor: String,
    to: String,
}

/// `POST /v1/migrate`.
pub(super) async fn migrate(
    State(api): State<Arc<Api>>,
    Json(req): Json<MigrateRequest>,
) -> Result<Json<Value>, ApiError> {
    let to = super::parse_node(&req.to)?;
    signed_by_operator(
        &api,
        Request::Migrate {
            actor: req.actor,
            to,
        },
    )
    .await
}
