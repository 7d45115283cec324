//! The model and work routes: `POST /v1/infer`, `GET|POST /v1/models`,
//! `GET /v1/receipts`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use plexus_durable::types::DurableKey;
use plexus_ml::executor;
use plexus_scheduler::protocol::{ActorStatus, Response as SchedulerResponse};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ask_scheduler, bad, service, status_request};
use crate::hosting::{Local, ServiceMsg};
use crate::metrics::AskKind;

/// Most requests in one `/v1/infer` call.
pub const INFER_INPUTS_MAX: usize = 1_024;
/// How long `/v1/infer` waits for each reply.
const INFER_WAIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InferRequest {
    /// A model hash (an executor serving it is found) or an executor's key.
    target: String,
    /// Images: 64 pixel values each, 0..=16.
    inputs: Vec<Vec<u8>>,
}

/// The scheduler's actors.
async fn actors(api: &Api) -> Result<Vec<ActorStatus>, ApiError> {
    match ask_scheduler(api, status_request(api)?).await? {
        SchedulerResponse::Status(s) => Ok(s.actors),
        other => Err(ApiError(
            StatusCode::BAD_GATEWAY,
            format!("the scheduler answered {other:?}"),
        )),
    }
}

/// The model an `infer` actor's config names.
fn model_of(actor: &ActorStatus) -> Option<String> {
    let v: Value = serde_json::from_str(&actor.config).ok()?;
    v.get("model")?.as_str().map(str::to_lowercase)
}

pub(super) async fn infer(
    State(api): State<Arc<Api>>,
    Json(req): Json<InferRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.inputs.is_empty() || req.inputs.len() > INFER_INPUTS_MAX {
        return Err(bad(format!(
            "`inputs`: 1..={INFER_INPUTS_MAX} images, not {}",
            req.inputs.len()
        )));
    }
    for (i, input) in req.inputs.iter().enumerate() {
        executor::decode_input(input).map_err(|e| bad(format!("`inputs[{i}]`: {e}")))?;
    }
    let service = service(&api)?.clone();
    let key = if let Some(hash) = executor::parse_hash(&req.target.to_lowercase()) {
        let hex = plexus_ml::hex(&hash);
        let me = api.node.id();
        let mut serving: Vec<ActorStatus> = actors(&api)
            .await?
            .into_iter()
            .filter(|a| a.kind == crate::hosting::infer::KIND)
            .filter(|a| model_of(a).as_deref() == Some(hex.as_str()))
            .collect();
        // Prefer an active executor (one being moved still takes requests: they
        // wait for it), then one on this node.
        serving.sort_by_key(|a| (!a.active, a.node != me));
        let first = serving.into_iter().next().ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no executor serves model {hex}: deploy a job with an `infer` stage"),
            )
        })?;
        first.key
    } else {
        req.target.clone()
    };
    let to = DurableKey::new(&key).map_err(|e| bad(format!("`target`: {e}")))?;
    // Every request at once: the executor batches what arrives together.
    let asks = req.inputs.into_iter().map(|payload| {
        let service = service.clone();
        let to = to.clone();
        let metrics = api.node.metrics().clone();
        async move {
            let started = std::time::Instant::now();
            let (tx, rx) = tokio::sync::oneshot::channel();
            service
                .tell(ServiceMsg::Local(Local::Ask {
                    to,
                    payload,
                    trace: None,
                    reply: tx,
                }))
                .await
                .map_err(|e| e.to_string())?;
            let answer = tokio::time::timeout(INFER_WAIT, rx).await;
            metrics.ask(AskKind::Infer, started.elapsed());
            match answer {
                Ok(Ok(Ok(Ok(bytes)))) => executor::decode_output(&bytes)
                    .map(|logits| {
                        json!({ "class": plexus_ml::model::class(&logits), "logits": logits })
                    })
                    .map_err(|e| format!("the executor answered: {e}")),
                Ok(Ok(Ok(Err(why)))) => Err(why),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(_)) => Err("the durable service stopped".to_string()),
                Err(_) => Err(format!("no reply within {INFER_WAIT:?}")),
            }
        }
    });
    let outputs: Vec<Value> = futures::future::join_all(asks)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|why| json!({ "error": why })))
        .collect();
    Ok(Json(json!({ "executor": key, "outputs": outputs })))
}

pub(super) async fn models(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let store = api
        .models
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this node keeps no models".into()))?;
    let cached = store.cached();
    let local: Vec<Value> = store
        .list()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .map(|(hash, bytes)| {
            json!({
                "hash": plexus_ml::hex(&hash),
                "bytes": bytes,
                "loaded": cached.contains(&hash),
            })
        })
        .collect();
    // Executors in the cluster, by the scheduler; unknown if it cannot answer.
    let executors: Option<Vec<Value>> = match actors(&api).await {
        Ok(list) => Some(
            list.into_iter()
                .filter(|a| a.kind == crate::hosting::infer::KIND)
                .map(|a| {
                    json!({
                        "key": a.key,
                        "model": model_of(&a),
                        "node": a.node.to_string(),
                        "active": a.active,
                        "moving_to": a.moving_to.map(|n| n.to_string()),
                    })
                })
                .collect(),
        ),
        Err(_) => None,
    };
    let backend = api
        .engine
        .as_ref()
        .map(|e| format!("{} ({})", e.name(), e.version()));
    Ok(Json(json!({
        "node": api.node.id().to_string(),
        "backend": backend,
        "dir": store.dir(),
        "models": local,
        "executors": executors,
    })))
}

pub(super) async fn models_add(
    State(api): State<Arc<Api>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = api
        .models
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this node keeps no models".into()))?;
    let hash = store.add(&body).map_err(|e| match e {
        executor::StoreError::Refused { .. } => bad(e.to_string()),
        _ => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })?;
    Ok(Json(json!({ "hash": plexus_ml::hex(&hash) })))
}

pub(super) async fn receipts(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let work = api.work.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "this node runs no work service".into(),
        )
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    work.tell(crate::work::WorkMsg::Status(tx))
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let status = rx.await.map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the work service stopped".into(),
        )
    })?;
    Ok(Json(work_json(&status)))
}

/// `/v1/receipts`: per epoch, per worker: receipts (done), sampled, verified,
/// unverified, and whether proven wrong; the evidence this node holds.
pub fn work_json(s: &crate::work::WorkStatus) -> Value {
    let epochs: Vec<Value> = s
        .epochs
        .iter()
        .map(|e| {
            json!({
                "epoch": e.epoch,
                "beacon": e.beacon,
                "root": plexus_ml::hex(&e.root),
                "refused": e.refused,
                "workers": e.workers.iter().map(|(node, row)| json!({
                    "node": node.to_string(),
                    "receipts": row.receipts,
                    "items": row.items,
                    "sampled": row.sampled,
                    "verified": row.verified,
                    "unverified": row.unverified,
                    "proven_wrong": row.proven_wrong,
                    "work_units": row.work_units,
                })).collect::<Vec<_>>(),
                "disputes": e.evidence.len(),
            })
        })
        .collect();
    let evidence: Vec<Value> = s
        .evidence
        .iter()
        .map(|e| {
            let kind = match e {
                plexus_poai::Evidence::WrongOutputs { .. } => "wrong_outputs",
                plexus_poai::Evidence::FalseVerification { .. } => "false_verification",
                plexus_poai::Evidence::Equivocation { .. } => "equivocation",
            };
            json!({ "epoch": e.epoch(), "against": e.against().to_string(), "kind": kind })
        })
        .collect();
    json!({
        "node": s.node.to_string(),
        "current": s.current,
        "sample_rate_ppm": s.rate_ppm,
        "verifiers": s.verifiers,
        "signed": s.signed,
        "reexecuted": s.reexecuted,
        "inputs_missing": s.inputs_missing,
        "refused": s.refused,
        "epochs": epochs,
        "evidence": evidence,
    })
}
