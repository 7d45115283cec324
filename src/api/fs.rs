//! The storage and key-value routes.
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `/v1/fs/chunks?replicas=&quorum=` | store one chunk (the body, at most 4 MiB + 16); answers `{id, holders}` once `quorum` (default `replicas`) nodes hold it synced |
//! | GET | `/v1/fs/chunks/{id}` | a chunk's bytes, verified against its id |
//! | POST | `/v1/fs/files?replicas=&quorum=` | store a manifest (the body) and record the file; answers `{id, ...}` |
//! | GET | `/v1/fs/files` | the files recorded (from the key-value store) |
//! | GET | `/v1/fs/files/{id}` | a file's manifest summary and where each chunk's copies are |
//! | GET | `/v1/fs/files/{id}/content` | a public file's bytes, streamed (a sealed file is opened by its client) |
//! | GET | `/v1/fs/files/{id}/stored?from=` | the file's chunks as stored (ciphertext if sealed), from chunk `from`, concatenated and streamed |
//! | POST, DELETE | `/v1/fs/files/{id}/pin` | pin, unpin |
//! | GET, PUT | `/v1/fs/keys/{id}` | a sealed file's key envelopes; add one `{recipient, envelope}` |
//! | GET | `/v1/fs/status` | this node's shard |
//! | GET | `/v1/kv?prefix=&limit=` | keys and values |
//! | GET, PUT, DELETE | `/v1/kv/{key}` | one key (values are raw bytes) |
//! | GET | `/v1/watch/kv?prefix=` | every later change, streamed as JSON lines |
//!
//! Ids are CIDv1 text (or 64 hex digits); a bad id is a `400` naming what is
//! wrong, an id nobody holds a `404`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use data_encoding::BASE64;
use plexus_actors::NodeId;
use plexus_storage::kv::{Change, KvError};
use plexus_storage::{ChunkId, Manifest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{Api, ApiError, bad};
use crate::storage::{FsError, KvRequest, StorageMsg};

/// The key-value prefix of file records.
pub const FILE_PREFIX: &str = "fs/file/";
/// The key-value prefix of pins.
pub const PIN_PREFIX: &str = "fs/pin/";
/// The key-value prefix of key envelopes.
pub const KEY_PREFIX: &str = "fs/key/";
/// Most keys listed at once.
pub const LIST_MAX: usize = 10_000;
/// Chunks whose holders `stat` lists one by one (the rest are counted).
const STAT_DETAIL_MAX: usize = 64;

fn storage(api: &Api) -> Result<&plexus_actors::runtime::ActorRef<StorageMsg>, ApiError> {
    api.storage.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "this node runs no storage service".into(),
        )
    })
}

fn fs_error(e: FsError) -> ApiError {
    let status = match &e {
        FsError::Invalid(_) => StatusCode::BAD_REQUEST,
        FsError::NotFound(_) => StatusCode::NOT_FOUND,
        FsError::Busy => StatusCode::TOO_MANY_REQUESTS,
        FsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

fn kv_error(e: KvError) -> ApiError {
    match e {
        KvError::Full(_) => ApiError(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        other => bad(other.to_string()),
    }
}

fn parse_id(text: &str) -> Result<ChunkId, ApiError> {
    text.parse().map_err(|e| bad(format!("`{text}`: {e}")))
}

pub(super) async fn call<T>(
    api: &Api,
    make: impl FnOnce(oneshot::Sender<T>) -> StorageMsg,
) -> Result<T, ApiError> {
    let service = storage(api)?;
    let (tx, rx) = oneshot::channel();
    service
        .tell(make(tx))
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    rx.await.map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the storage service stopped".into(),
        )
    })
}

async fn kv_call<T>(
    api: &Api,
    make: impl FnOnce(oneshot::Sender<T>) -> KvRequest,
) -> Result<T, ApiError> {
    call(api, |tx| StorageMsg::Kv(make(tx))).await
}

/// Replication asked for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Replication {
    replicas: Option<u8>,
    quorum: Option<u8>,
}

impl Replication {
    fn settle(&self, default: u8) -> Result<(u8, u8), ApiError> {
        let r = self.replicas.unwrap_or(default);
        if !(1..=16).contains(&r) {
            return Err(bad(format!("`replicas`: 1..=16, not {r}")));
        }
        let q = self.quorum.unwrap_or(r);
        if !(1..=r).contains(&q) {
            return Err(bad(format!("`quorum`: 1..=replicas ({r}), not {q}")));
        }
        Ok((r, q))
    }
}

async fn put(api: &Api, bytes: Bytes, r: u8, q: u8) -> Result<(ChunkId, Vec<NodeId>), ApiError> {
    call(api, |reply| StorageMsg::Put {
        bytes,
        replicas: r,
        quorum: q,
        reply,
    })
    .await?
    .map_err(fs_error)
}

async fn get(api: &Api, chunk: ChunkId) -> Result<Bytes, ApiError> {
    call(api, |reply| StorageMsg::Get { chunk, reply })
        .await?
        .map_err(fs_error)
}

fn holders_json(nodes: &[NodeId]) -> Vec<String> {
    nodes.iter().map(ToString::to_string).collect()
}

pub(super) async fn put_chunk(
    State(api): State<Arc<Api>>,
    Query(rep): Query<Replication>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (r, q) = rep.settle(api.replicas_default)?;
    let (id, holders) = put(&api, body, r, q).await?;
    Ok(Json(
        json!({ "id": id.to_string(), "holders": holders_json(&holders) }),
    ))
}

pub(super) async fn get_chunk(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let bytes = get(&api, parse_id(&id)?).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// What the key-value store records of a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's id.
    pub id: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Chunks.
    pub chunks: usize,
    /// Whether the chunks are sealed.
    pub sealed: bool,
    /// Copies wanted.
    pub replicas: u8,
    /// When it was stored (Unix ms).
    pub stored_unix_ms: u64,
}

fn unix_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) async fn put_file(
    State(api): State<Arc<Api>>,
    Query(rep): Query<Replication>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (r, q) = rep.settle(api.replicas_default)?;
    let manifest = Manifest::decode(&body).map_err(|e| bad(format!("the body: {e}")))?;
    let (id, holders) = put(&api, body, r, q).await?;
    let record = FileRecord {
        id: id.to_string(),
        size: manifest.size,
        chunks: manifest.chunks.len(),
        sealed: manifest.sealed(),
        replicas: r,
        stored_unix_ms: unix_ms(),
    };
    let value = serde_json::to_vec(&record).map_err(|e| bad(e.to_string()))?;
    let key = format!("{FILE_PREFIX}{id}");
    kv_call(&api, |reply| KvRequest::Put { key, value, reply })
        .await?
        .map_err(kv_error)?;
    let key = format!("{PIN_PREFIX}{id}");
    kv_call(&api, |reply| KvRequest::Put {
        key,
        value: b"1".to_vec(),
        reply,
    })
    .await?
    .map_err(kv_error)?;
    Ok(Json(json!({
        "id": id.to_string(),
        "size": record.size,
        "chunks": record.chunks,
        "sealed": record.sealed,
        "replicas": r,
        "holders": holders_json(&holders),
    })))
}

pub(super) async fn list_files(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    files_json(&api, LIST_MAX).await
}

/// The first `limit` files (by id) and whether each is pinned.
pub(super) async fn files_json(api: &Api, limit: usize) -> Result<Json<Value>, ApiError> {
    let files = kv_call(api, |reply| KvRequest::List {
        prefix: FILE_PREFIX.into(),
        limit,
        reply,
    })
    .await?;
    let pins = kv_call(api, |reply| KvRequest::List {
        prefix: PIN_PREFIX.into(),
        limit: LIST_MAX,
        reply,
    })
    .await?;
    let pinned: std::collections::BTreeSet<String> = pins
        .into_iter()
        .map(|(k, _)| k.trim_start_matches(PIN_PREFIX).to_string())
        .collect();
    let out: Vec<Value> = files
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<FileRecord>(&v).ok())
        .map(|f| {
            let pin = pinned.contains(&f.id);
            let mut v = serde_json::to_value(&f).unwrap_or_default();
            v["pinned"] = json!(pin);
            v
        })
        .collect();
    Ok(Json(json!({ "files": out })))
}

async fn manifest_of(api: &Api, id: ChunkId) -> Result<Manifest, ApiError> {
    let bytes = get(api, id).await?;
    Manifest::decode(&bytes).map_err(|e| bad(format!("{id}: {e}")))
}

pub(super) async fn stat_file(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let manifest = manifest_of(&api, id).await?;
    let mut all = vec![id];
    all.extend(manifest.chunks.iter().copied());
    let located = call(&api, |reply| StorageMsg::Locate {
        chunks: all.clone(),
        reply,
    })
    .await?
    .map_err(fs_error)?;
    let copies = |c: &ChunkId| located.get(c).map_or(0, Vec::len);
    let data_copies: Vec<usize> = manifest.chunks.iter().map(copies).collect();
    let record = kv_call(&api, |reply| KvRequest::Get {
        key: format!("{FILE_PREFIX}{id}"),
        reply,
    })
    .await?
    .and_then(|v| serde_json::from_slice::<FileRecord>(&v).ok());
    let pinned = kv_call(&api, |reply| KvRequest::Get {
        key: format!("{PIN_PREFIX}{id}"),
        reply,
    })
    .await?
    .is_some();
    let detail: Vec<Value> = manifest
        .chunks
        .iter()
        .take(STAT_DETAIL_MAX)
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i,
                "id": c.to_string(),
                "holders": holders_json(located.get(c).map_or(&[][..], Vec::as_slice)),
            })
        })
        .collect();
    Ok(Json(json!({
        "id": id.to_string(),
        "size": manifest.size,
        "chunk_bytes": manifest.chunk_bytes,
        "chunks": manifest.chunks.len(),
        "sealed": manifest.sealed(),
        "replicas": record.as_ref().map(|r| r.replicas),
        "pinned": pinned,
        "manifest_holders": holders_json(located.get(&id).map_or(&[][..], Vec::as_slice)),
        "copies_min": data_copies.iter().copied().min().unwrap_or(copies(&id)).min(copies(&id)),
        "copies_max": data_copies.iter().copied().max().unwrap_or(copies(&id)).max(copies(&id)),
        "chunk_holders": detail,
    })))
}

pub(super) async fn file_content(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let manifest = manifest_of(&api, id).await?;
    if manifest.sealed() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{id} is sealed: nodes hold only ciphertext; fetch it with `plexus fs get`, \
                 which opens it with a reader's identity"
            ),
        ));
    }
    Ok(chunk_stream(api, &manifest, 0))
}

/// Where a stored stream starts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamFrom {
    from: Option<usize>,
}

/// `GET /v1/fs/files/{id}/stored?from=`: the file's chunks as stored (ciphertext
/// for a sealed file), from chunk `from` on, concatenated in order. The client
/// splits them by the manifest's lengths, checks each against its id and opens
/// it; a stream cut short is resumed with `from`.
pub(super) async fn file_stored(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(at): Query<StreamFrom>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let manifest = manifest_of(&api, id).await?;
    let from = at.from.unwrap_or(0);
    if from > manifest.chunks.len() {
        return Err(bad(format!(
            "`from`: {from}, but {id} has {} chunks",
            manifest.chunks.len()
        )));
    }
    Ok(chunk_stream(api, &manifest, from))
}

/// Chunks a stream reads ahead: fetched from their holders at once, sent in
/// order (so at most this many chunks are buffered per stream).
const STREAM_AHEAD: usize = 8;

/// The stored bytes of `manifest`'s chunks from `from` on, each verified by the
/// service, fetched [`STREAM_AHEAD`] at a time. A chunk no holder can give ends
/// the stream with an error (the client sees it cut short).
fn chunk_stream(api: Arc<Api>, manifest: &Manifest, from: usize) -> Response {
    use futures::StreamExt as _;
    let length: u64 = (from..manifest.chunks.len())
        .map(|i| manifest.stored_len(i) as u64)
        .sum();
    let chunks: Vec<ChunkId> = manifest.chunks.get(from..).unwrap_or_default().to_vec();
    let stream = futures::stream::iter(chunks)
        .map(move |c| {
            let api = api.clone();
            async move { get(&api, c).await.map_err(|e| std::io::Error::other(e.1)) }
        })
        .buffered(STREAM_AHEAD);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

pub(super) async fn pin(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    manifest_of(&api, id).await?;
    kv_call(&api, |reply| KvRequest::Put {
        key: format!("{PIN_PREFIX}{id}"),
        value: b"1".to_vec(),
        reply,
    })
    .await?
    .map_err(kv_error)?;
    Ok(Json(json!({ "id": id.to_string(), "pinned": true })))
}

pub(super) async fn unpin(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    kv_call(&api, |reply| KvRequest::Delete {
        key: format!("{PIN_PREFIX}{id}"),
        reply,
    })
    .await?
    .map_err(kv_error)?;
    Ok(Json(json!({ "id": id.to_string(), "pinned": false })))
}

/// A key envelope.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvelopeRequest {
    /// The reader's age recipient.
    recipient: String,
    /// The age file wrapping the key, base64.
    envelope: String,
}

pub(super) async fn keys(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let prefix = format!("{KEY_PREFIX}{id}/");
    let found = kv_call(&api, |reply| KvRequest::List {
        prefix: prefix.clone(),
        limit: LIST_MAX,
        reply,
    })
    .await?;
    let envelopes: Vec<Value> = found
        .into_iter()
        .map(|(k, v)| {
            json!({
                "recipient": k.trim_start_matches(prefix.as_str()),
                "envelope": BASE64.encode(&v),
            })
        })
        .collect();
    Ok(Json(
        json!({ "id": id.to_string(), "envelopes": envelopes }),
    ))
}

pub(super) async fn add_key(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Json(req): Json<EnvelopeRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let recipient = plexus_storage::access::recipient(&req.recipient)
        .map_err(|e| bad(format!("`recipient`: {e}")))?;
    let envelope = BASE64
        .decode(req.envelope.as_bytes())
        .map_err(|e| bad(format!("`envelope`: not base64: {e}")))?;
    kv_call(&api, |reply| KvRequest::Put {
        key: format!("{KEY_PREFIX}{id}/{recipient}"),
        value: envelope,
        reply,
    })
    .await?
    .map_err(kv_error)?;
    Ok(Json(
        json!({ "id": id.to_string(), "recipient": recipient.to_string() }),
    ))
}

pub(super) async fn status(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let s = call(&api, StorageMsg::Status).await?;
    Ok(Json(serde_json::to_value(&s).unwrap_or_default()))
}

/// A listing's bounds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
}

fn value_json(v: &[u8]) -> Value {
    match std::str::from_utf8(v) {
        Ok(s) => json!({ "value": s }),
        Err(_) => json!({ "value_base64": BASE64.encode(v) }),
    }
}

pub(super) async fn kv_list(
    State(api): State<Arc<Api>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(1_000).min(LIST_MAX);
    let items = kv_call(&api, |reply| KvRequest::List {
        prefix: q.prefix,
        limit,
        reply,
    })
    .await?;
    let out: Vec<Value> = items
        .into_iter()
        .map(|(k, v)| {
            let mut j = value_json(&v);
            j["key"] = json!(k);
            j
        })
        .collect();
    Ok(Json(json!({ "items": out })))
}

pub(super) async fn kv_get(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let found = kv_call(&api, |reply| KvRequest::Get {
        key: key.clone(),
        reply,
    })
    .await?;
    match found {
        Some(v) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no key `{key}`"))),
    }
}

pub(super) async fn kv_put(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    kv_call(&api, |reply| KvRequest::Put {
        key: key.clone(),
        value: body.to_vec(),
        reply,
    })
    .await?
    .map_err(kv_error)?;
    Ok(Json(json!({ "key": key })))
}

pub(super) async fn kv_delete(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    kv_call(&api, |reply| KvRequest::Delete {
        key: key.clone(),
        reply,
    })
    .await?
    .map_err(kv_error)?;
    Ok(Json(json!({ "key": key, "deleted": true })))
}

/// What a watch streams: one JSON object per line.
fn change_line(c: &Change) -> Bytes {
    let mut v = match &c.value {
        Some(b) => value_json(b),
        None => json!({ "deleted": true }),
    };
    v["key"] = json!(c.key);
    v["time_us"] = json!(c.time_us);
    v["node"] = json!(c.node.to_string());
    let mut line = v.to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A keep-alive line's interval on an idle watch.
const WATCH_KEEPALIVE: Duration = Duration::from_secs(15);

pub(super) async fn kv_watch(
    State(api): State<Arc<Api>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel(crate::storage::service::WATCH_QUEUE);
    let prefix = q.prefix;
    kv_call(&api, |reply| KvRequest::Watch { prefix, tx, reply })
        .await?
        .map_err(fs_error)?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(WATCH_KEEPALIVE, rx.recv()).await {
            Ok(Some(change)) => Some((Ok::<_, std::io::Error>(change_line(&change)), rx)),
            Ok(None) => None,
            Err(_) => Some((Ok(Bytes::from_static(b"{}\n")), rx)),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
