//! Client commands: they sign requests with the client key and talk to a node's
//! HTTP API (default: the local node `plexus up` starts).
//!
//! Every command exits non-zero with a clear message when the node is down, the
//! request is invalid or the scheduler rejects it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plexus_mesh::driver::{read_key, write_new_key};
use plexus_scheduler::protocol::{Request, Signed};
use plexus_vocab::identity::NodeKey;
use serde_json::{Value, json};

use super::CliError;

/// The client key's file name in a data dir.
pub const CLIENT_KEY_FILE: &str = "client.key";
/// How many times a call the node rate-limits (429) is made before giving up.
pub const PACED_TRIES: u32 = 50;
/// The API a client talks to by default.
pub const DEFAULT_API: &str = "http://127.0.0.1:7070";

/// Where a client command goes and who signs it.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The node's API.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: String,
    /// The client key (default: <data dir>/client.key, created on first use).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

/// The client key at `path`, created if missing.
pub fn client_key(path: &Path) -> Result<NodeKey, CliError> {
    if path.exists() {
        return read_key(path).map_err(|e| CliError::Input(e.to_string()));
    }
    if let Some(dir) = path.parent() {
        plexus_mesh::driver::create_private_dir(dir).map_err(|e| CliError::Input(e.to_string()))?;
    }
    let key = crate::node::ephemeral_key().map_err(|e| CliError::Failed(e.to_string()))?;
    match write_new_key(path, &key) {
        Ok(()) => Ok(key),
        // Another command created it meanwhile: use that one.
        Err(plexus_mesh::driver::KeyStoreError::Exists(_)) => {
            read_key(path).map_err(|e| CliError::Input(e.to_string()))
        }
        Err(e) => Err(CliError::Input(e.to_string())),
    }
}

fn key_of(args: &ClientArgs) -> Result<NodeKey, CliError> {
    let path = args
        .key
        .clone()
        .unwrap_or_else(|| crate::config::default_data_dir().join(CLIENT_KEY_FILE));
    client_key(&path)
}

/// The environment variable naming a PEM file of CA certificates the client trusts
/// for a node's API over TLS.
pub const API_CA_ENV: &str = "PLEXUS_API_CA";

/// The roots in `$PLEXUS_API_CA`, if set. An unreadable file or one without a
/// certificate is reported on stderr and ignored (the handshake then fails with a
/// certificate error, naming the server).
fn api_ca_roots() -> Option<ureq::tls::RootCerts> {
    let path = std::env::var_os(API_CA_ENV)?;
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("warning: {API_CA_ENV}={}: {e}", path.to_string_lossy());
            return None;
        }
    };
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        eprintln!(
            "warning: {API_CA_ENV}={}: no certificate in the file",
            path.to_string_lossy()
        );
        return None;
    }
    Some(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// A tiny JSON-over-HTTP client for the node API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    agent: ureq::Agent,
    /// The node's API token: `$PLEXUS_API_TOKEN`, else the one the node at `base`
    /// published for local clients (see [`crate::api::auth`]).
    token: Option<String>,
}

impl ApiClient {
    /// A client for the API at `base` (`http://host:port`), with the token the
    /// node there published, if any.
    pub fn new(base: &str) -> Self {
        let token = crate::api::auth::token_for(base);
        Self::with_token(base, token)
    }

    /// A client for the API at `base` presenting `token`. Over `https`, the
    /// server's certificate is checked against the CA certificates in the PEM
    /// file `$PLEXUS_API_CA` if set (a node's self-signed certificate), else
    /// against the public web roots.
    pub fn with_token(base: &str, token: Option<String>) -> Self {
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false);
        if let Some(roots) = api_ca_roots() {
            config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
        }
        let agent = config.build().into();
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent,
            token,
        }
    }

    fn bearer(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// The dashboard's URL, carrying the token in its fragment (which browsers
    /// never send to a server; the page keeps it in the tab).
    pub fn dashboard_url(&self) -> String {
        match &self.token {
            Some(t) => format!("{}/#token={t}", self.base),
            None => format!("{}/", self.base),
        }
    }

    fn check(
        &self,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, CliError> {
        let mut response = result.map_err(|e| {
            CliError::Failed(format!(
                "cannot reach the node at {} ({e}); is it running? (`plexus up` starts one)",
                self.base
            ))
        })?;
        let status = response.status();
        let body: Value = response
            .body_mut()
            .read_json()
            .unwrap_or_else(|e| json!({ "error": format!("unreadable answer: {e}") }));
        if status.is_success() {
            return Ok(body);
        }
        let why = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        if status == ureq::http::StatusCode::UNAUTHORIZED {
            Err(CliError::Input(format!(
                "{path}: {why} (no token found for {}: set {} or run the client as the \
                 node's user)",
                self.base,
                crate::api::auth::TOKEN_ENV
            )))
        } else if status.is_client_error() {
            Err(CliError::Input(format!("{path}: {why}")))
        } else {
            Err(CliError::Failed(format!("{path}: {why}")))
        }
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(b) = self.bearer() {
            request = request.header("authorization", b);
        }
        self.check(path, request.call())
    }

    /// POST `body` to `path`.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url);
        if let Some(b) = self.bearer() {
            request = request.header("authorization", b);
        }
        self.check(path, request.send_json(body))
    }

    /// POSTs raw bytes; returns the JSON body.
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let result = self.paced(|| {
            let mut request = self
                .agent
                .post(&url)
                .header("content-type", "application/octet-stream");
            if let Some(b) = self.bearer() {
                request = request.header("authorization", b);
            }
            request.send(body)
        });
        self.check(path, result)
    }

    /// Calls `send` again while the node answers 429 (its per-client rate
    /// limit), waiting as its `retry-after` (or `x-ratelimit-after`) header says,
    /// else 100 ms doubling to 2 s; at most [`PACED_TRIES`] times.
    fn paced(
        &self,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut wait = Duration::from_millis(100);
        let mut tries = 1;
        loop {
            let result = send();
            let limited =
                matches!(&result, Ok(r) if r.status() == ureq::http::StatusCode::TOO_MANY_REQUESTS);
            if !limited || tries >= PACED_TRIES {
                return result;
            }
            let told = result.as_ref().ok().and_then(|r| {
                ["retry-after", "x-ratelimit-after"].iter().find_map(|h| {
                    r.headers()
                        .get(*h)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
            });
            std::thread::sleep(
                told.map_or(wait, |s| Duration::from_secs(s.min(10)))
                    .max(Duration::from_millis(10)),
            );
            wait = (wait * 2).min(Duration::from_secs(2));
            tries += 1;
        }
    }

    /// PUTs `body` (JSON) to `path`.
    pub fn put_json(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.put(&url);
        if let Some(b) = self.bearer() {
            request = request.header("authorization", b);
        }
        self.check(path, request.send_json(body))
    }

    /// PUTs raw bytes to `path`.
    pub fn put_bytes(&self, path: &str, body: &[u8]) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .agent
            .put(&url)
            .header("content-type", "application/octet-stream");
        if let Some(b) = self.bearer() {
            request = request.header("authorization", b);
        }
        self.check(path, request.send(body))
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.delete(&url);
        if let Some(b) = self.bearer() {
            request = request.header("authorization", b);
        }
        self.check(path, request.call())
    }

    /// GETs raw bytes (at most [`crate::api::CHUNK_BODY_BYTES_MAX`]); an error
    /// answer is read as JSON.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, CliError> {
        let url = format!("{}{path}", self.base);
        let result = self.paced(|| {
            let mut request = self.agent.get(&url);
            if let Some(b) = self.bearer() {
                request = request.header("authorization", b);
            }
            request.call()
        });
        match result {
            Ok(mut r) if r.status().is_success() => r
                .body_mut()
                .with_config()
                .limit(crate::api::CHUNK_BODY_BYTES_MAX as u64)
                .read_to_vec()
                .map_err(|e| CliError::Failed(format!("{path}: {e}"))),
            other => self.check(path, other).map(|v| v.to_string().into_bytes()),
        }
    }

    /// GETs a streamed answer (no overall timeout): its body as a reader.
    pub fn stream(&self, path: &str) -> Result<impl std::io::Read + use<>, CliError> {
        let url = format!("{}{path}", self.base);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(None)
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.get(&url);
        if let Some(b) = self.bearer() {
            request = request.header("authorization", b);
        }
        match request.call() {
            Ok(r) if r.status().is_success() => Ok(r.into_body().into_reader()),
            other => Err(self
                .check(path, other)
                .err()
                .unwrap_or_else(|| CliError::Failed(format!("{path}: no stream")))),
        }
    }

    /// Signs `request` with `key` for the network the node serves (its
    /// `/v1/node` says which), as the key's next request (the clock's
    /// microseconds), valid for [`plexus_scheduler::protocol::VALIDITY_DEFAULT_MS`], and sends it to the
    /// scheduler.
    pub fn scheduler(&self, request: Request, key: &NodeKey) -> Result<Value, CliError> {
        let node = self.get("/v1/node")?;
        let network = node
            .get("network")
            .and_then(Value::as_str)
            .ok_or_else(|| CliError::Failed("the node names no network".into()))?
            .to_string();
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let signed = Signed::sign_at(request, &network, since_epoch, key)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let bytes = signed
            .encode()
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.post("/v1/scheduler", &json!({ "signed": hex }))
    }

    /// The scheduler's status.
    pub fn status(&self) -> Result<Value, CliError> {
        let v = self.get("/v1/jobs")?;
        Ok(v.get("Status").cloned().unwrap_or(v))
    }
}

/// `plexus deploy JOB.toml`: signs and submits, then shows the actors starting.
pub fn deploy(args: &ClientArgs, file: &Path, wait: Duration) -> Result<(), CliError> {
    let spec = std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
    // Check locally first, for an error that names the field before any network.
    let job = plexus_scheduler::job::JobSpec::from_toml(&spec)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    let key = key_of(args)?;
    let api = ApiClient::new(&args.api);
    let answer = api.scheduler(Request::Deploy { spec }, &key)?;
    let placed = answer
        .pointer("/Deployed/actors")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    println!("deployed `{}`: {placed} actors placed", job.name);
    wait_for_job(&api, &job.name, placed, wait)
}

fn wait_for_job(api: &ApiClient, job: &str, want: usize, wait: Duration) -> Result<(), CliError> {
    let started = Instant::now();
    let mut last = usize::MAX;
    loop {
        let status = api.status()?;
        let active = status
            .get("actors")
            .and_then(Value::as_array)
            .map_or(0, |a| {
                a.iter()
                    .filter(|x| x.get("job").and_then(Value::as_str) == Some(job))
                    .filter(|x| x.get("active").and_then(Value::as_bool) == Some(true))
                    .count()
            });
        if active != last {
            println!(
                "  {active}/{want} actors active ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            last = active;
        }
        if active >= want {
            return Ok(());
        }
        if started.elapsed() > wait {
            return Err(CliError::Failed(format!(
                "only {active} of {want} actors of `{job}` became active within {} s",
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `plexus jobs`.
pub fn jobs(args: &ClientArgs) -> Result<(), CliError> {
    let status = ApiClient::new(&args.api).status()?;
    let jobs = status
        .get("jobs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if jobs.is_empty() {
        println!("no jobs");
    }
    for j in jobs {
        println!(
            "{:<20} {:>3}/{:<3} actors  priority {:<3} {}",
            j["name"].as_str().unwrap_or("?"),
            j["running"],
            j["actors"],
            j["priority"],
            j["state"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `plexus actors`.
pub fn actors(args: &ClientArgs) -> Result<(), CliError> {
    let status = ApiClient::new(&args.api).status()?;
    let actors = status
        .get("actors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if actors.is_empty() {
        println!("no durable actors");
    }
    for a in actors {
        println!(
            "{:<32} {:<12} {:<54} {}{}",
            a["key"].as_str().unwrap_or("?"),
            a["kind"].as_str().unwrap_or("?"),
            a["node"].as_str().unwrap_or("?"),
            if a["active"].as_bool() == Some(true) {
                "active"
            } else {
                "starting"
            },
            a["move_failed"]
                .as_str()
                .map(|why| format!(" (last move failed: {why})"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// `plexus nodes`.
pub fn nodes(args: &ClientArgs) -> Result<(), CliError> {
    let members = ApiClient::new(&args.api).get("/v1/members")?;
    for m in members.as_array().cloned().unwrap_or_default() {
        println!(
            "{:<54} {:<8} tags {}",
            m["id"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            m["tags"]
        );
    }
    Ok(())
}

/// `plexus migrate ACTOR --to NODE`: asks, then shows the move complete.
pub fn migrate(args: &ClientArgs, actor: &str, to: &str, wait: Duration) -> Result<(), CliError> {
    let to_node = to
        .parse()
        .map_err(|e| CliError::Input(format!("--to: {e}")))?;
    let key = key_of(args)?;
    let api = ApiClient::new(&args.api);
    let started = Instant::now();
    api.scheduler(
        Request::Migrate {
            actor: actor.to_string(),
            to: to_node,
        },
        &key,
    )?;
    println!("migrating {actor} to {to}...");
    let mut told: Option<String> = None;
    loop {
        let status = api.status()?;
        let entry = status
            .get("actors")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x["key"].as_str() == Some(actor)));
        let there = entry
            .is_some_and(|x| x["node"].as_str() == Some(to) && x["active"].as_bool() == Some(true));
        if there {
            println!(
                "{actor} serves on {to} ({:.2} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        // The host reported a failed try: said once while the scheduler tries
        // again, and an error once it gave the move up.
        if let Some(entry) = entry
            && let Some(why) = entry["move_failed"].as_str()
        {
            if entry["moving_to"].is_null() {
                return Err(CliError::Failed(format!("the move failed: {why}")));
            }
            if told.as_deref() != Some(why) {
                println!("a try failed ({why}); the scheduler tries again");
                told = Some(why.to_string());
            }
        }
        if started.elapsed() > wait {
            return Err(CliError::Failed(format!(
                "{actor} was not serving on {to} within {} s",
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `plexus stop JOB`.
pub fn stop(args: &ClientArgs, job: &str) -> Result<(), CliError> {
    let key = key_of(args)?;
    let answer = ApiClient::new(&args.api).scheduler(
        Request::Stop {
            job: job.to_string(),
        },
        &key,
    )?;
    println!(
        "stopped `{job}` ({} actors)",
        answer
            .pointer("/Stopped/actors")
            .cloned()
            .unwrap_or(Value::Null)
    );
    Ok(())
}

/// `plexus send ACTOR TEXT...`: client messages, exactly once.
pub fn send(
    args: &ClientArgs,
    actor: &str,
    texts: Vec<String>,
    traceparent: Option<String>,
) -> Result<(), CliError> {
    let mut body = json!({ "actor": actor, "messages": texts });
    if let Some(t) = traceparent {
        body["traceparent"] = json!(t);
    }
    let answer = ApiClient::new(&args.api).post("/v1/send", &body)?;
    println!("accepted {}", answer["accepted"]);
    Ok(())
}

/// `plexus epochs`.
pub fn epochs(args: &ClientArgs) -> Result<(), CliError> {
    let status = ApiClient::new(&args.api).get("/v1/epochs")?;
    println!(
        "node {} {}; dkg {}; committee {} threshold {}; epoch now {}",
        status["node"].as_str().unwrap_or("?"),
        if status["member"].as_bool() == Some(true) {
            "(committee member)"
        } else {
            "(not on the committee)"
        },
        status["dkg"].as_str().unwrap_or("?"),
        status["committee"],
        status["threshold"],
        status["current"],
    );
    if let Some(key) = status["group_key"].as_str() {
        println!("group key {key}");
    }
    for row in status["epochs"].as_array().cloned().unwrap_or_default() {
        println!(
            "epoch {:>6}  {:<10} signers {:>3}  {}{}",
            row["epoch"],
            row["state"].as_str().unwrap_or("?"),
            row["signers"],
            row["hash"]
                .as_str()
                .map(|h| format!("hash {}", h.get(..16).unwrap_or(h)))
                .unwrap_or_default(),
            row["anchor"]
                .as_str()
                .map(|a| format!("  anchor {a}"))
                .unwrap_or_default(),
        );
        for m in row["members"].as_array().cloned().unwrap_or_default() {
            let (node, ppm, reward) = (&m[0], &m[1], &m[2]);
            println!(
                "    {:<54} availability {:>6.2}%  reward {}",
                node.as_str().unwrap_or("?"),
                ppm.as_u64().unwrap_or(0) as f64 / 10_000.0,
                reward
            );
        }
    }
    Ok(())
}

/// `plexus checkpoint show EPOCH [--export FILE]`.
pub fn checkpoint_show(
    args: &ClientArgs,
    epoch: u64,
    export: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let c = ApiClient::new(&args.api).get(&format!("/v1/epochs/{epoch}"))?;
    if let Some(path) = export {
        let hex = c["export"].as_str().unwrap_or_default();
        let bytes =
            from_hex(hex).ok_or_else(|| CliError::Failed("the node sent a bad export".into()))?;
        std::fs::write(path, bytes)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    let mut shown = c.clone();
    if let Some(obj) = shown.as_object_mut() {
        obj.remove("export");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    );
    Ok(())
}

/// Bytes from hex (`0x` optional).
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_start_matches("0x");
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// `plexus checkpoint verify FILE [--group-key HEX] [--chain URL --contract ADDR]`.
pub async fn checkpoint_verify(
    file: &std::path::Path,
    group_key: Option<&str>,
    chain: Option<&str>,
    contract: Option<&str>,
) -> Result<(), CliError> {
    use plexus_epochs::checkpoint::{SignedCheckpoint, hex};
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
    let signed = SignedCheckpoint::decode(&bytes)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    let pinned = match group_key {
        Some(k) => Some(from_hex(k).ok_or_else(|| CliError::Input("--group-key: not hex".into()))?),
        None => None,
    };
    signed
        .verify(pinned.as_deref())
        .map_err(|e| CliError::Failed(format!("INVALID: {e}")))?;
    let hash = signed.hash().map_err(|e| CliError::Failed(e.to_string()))?;
    let epoch = signed.checkpoint.epoch;
    println!(
        "valid: epoch {epoch}, hash {}, {} signers, group key {}{}",
        hex(&hash),
        signed.signers.len(),
        hex(&signed.checkpoint.group_key),
        if pinned.is_some() {
            " (pinned)"
        } else {
            " (as named by the checkpoint: pass --group-key to pin it)"
        }
    );
    if let (Some(url), Some(contract)) = (chain, contract) {
        let address = from_hex(contract)
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .ok_or_else(|| CliError::Input("--contract: not a 20-byte hex address".into()))?;
        let anchored = plexus_ledger_bridge::deploy::anchored_hash(url, address, epoch)
            .await
            .map_err(|e| CliError::Failed(format!("chain: {e}")))?;
        match anchored {
            Some(h) if h == hash => {
                println!("anchored: epoch {epoch} on {url} at 0x{}", hex(&address))
            }
            Some(h) => {
                return Err(CliError::Failed(format!(
                    "NOT ANCHORED: the chain holds {} for epoch {epoch}",
                    hex(&h)
                )));
            }
            None => {
                return Err(CliError::Failed(format!(
                    "NOT ANCHORED: the chain holds nothing for epoch {epoch}"
                )));
            }
        }
    }
    Ok(())
}

/// Reads images for `plexus infer`: a JSON image (64 values 0..=16) or list of
/// them, or a PGM (P2 or P5) of any size, dark ink on a light ground, scaled to
/// 8×8 by area and to 0..=16 ink.
pub fn read_images(path: &std::path::Path) -> Result<Vec<Vec<u8>>, CliError> {
    let bytes =
        std::fs::read(path).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let bad = |why: String| CliError::Input(format!("{}: {why}", path.display()));
    if bytes.starts_with(b"P2") || bytes.starts_with(b"P5") {
        return pgm_to_digit(&bytes).map(|im| vec![im]).map_err(bad);
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("neither a PGM image nor JSON: {e}")))?;
    let list: Vec<Value> = match v.as_array() {
        Some(a) if a.first().is_some_and(Value::is_array) => a.clone(),
        Some(_) => vec![v.clone()],
        None => {
            return Err(bad(
                "expected a list of 64 values, or a list of such lists".into()
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, im)| {
            let px: Option<Vec<u8>> = im
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_u64().and_then(|x| u8::try_from(x).ok()))
                        .collect()
                })
                .unwrap_or(None);
            let px = px.ok_or_else(|| bad(format!("image {i}: not a list of integers 0..=16")))?;
            plexus_ml::executor::decode_input(&px).map_err(|e| bad(format!("image {i}: {e}")))?;
            Ok(px)
        })
        .collect()
}

/// A PGM image as an 8×8 digit: area-averaged, inverted (ink high), 0..=16.
fn pgm_to_digit(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let binary = bytes.starts_with(b"P5");
    // Header: magic, width, height, maxval, separated by whitespace and comments.
    let mut fields = Vec::new();
    let mut i = 2;
    while fields.len() < 3 {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'#') {
            if bytes[i] == b'#' {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let n: u32 = std::str::from_utf8(&bytes[start..i])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or("a bad PGM header")?;
        fields.push(n);
    }
    let (w, h, max) = (fields[0] as usize, fields[1] as usize, fields[2]);
    if w == 0 || h == 0 || w > 4096 || h > 4096 || max == 0 || max > 255 {
        return Err(format!("a {w}x{h} PGM with maxval {max} is not supported"));
    }
    let pixels: Vec<u32> = if binary {
        let data = bytes.get(i + 1..).ok_or("truncated PGM")?;
        data.iter().take(w * h).map(|b| u32::from(*b)).collect()
    } else {
        std::str::from_utf8(&bytes[i..])
            .map_err(|_| "a bad PGM body")?
            .split_ascii_whitespace()
            .take(w * h)
            .map(|t| t.parse::<u32>().map_err(|_| "a bad PGM value"))
            .collect::<Result<_, _>>()?
    };
    if pixels.len() != w * h {
        return Err(format!("{} pixels for {w}x{h}", pixels.len()));
    }
    let mut out = vec![0u8; 64];
    for (cell, o) in out.iter_mut().enumerate() {
        let (cy, cx) = (cell / 8, cell % 8);
        let (y0, y1) = (cy * h / 8, ((cy + 1) * h / 8).max(cy * h / 8 + 1));
        let (x0, x1) = (cx * w / 8, ((cx + 1) * w / 8).max(cx * w / 8 + 1));
        let mut sum = 0u64;
        let mut n = 0u64;
        for y in y0..y1.min(h) {
            for x in x0..x1.min(w) {
                sum += u64::from(max - pixels[y * w + x].min(max));
                n += 1;
            }
        }
        let ink = sum as f64 / (n.max(1) as f64 * f64::from(max));
        *o = (ink * 16.0).round() as u8;
    }
    Ok(out)
}

/// `plexus infer`.
pub fn infer(args: &ClientArgs, target: &str, input: &std::path::Path) -> Result<(), CliError> {
    let images = read_images(input)?;
    let answer = ApiClient::new(&args.api).post(
        "/v1/infer",
        &serde_json::json!({ "target": target, "inputs": images }),
    )?;
    println!("executor {}", answer["executor"].as_str().unwrap_or("?"));
    for (i, out) in answer["outputs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match out.get("class") {
            Some(c) => println!("image {i}: class {c}"),
            None => println!("image {i}: error {}", out["error"]),
        }
    }
    Ok(())
}

/// `plexus infer --local`: runs a weights file here, in passes of `batch` spread
/// over `threads` threads; prints each pass's digests, then each image's class.
pub fn infer_local(
    weights: &str,
    input: &std::path::Path,
    batch: u32,
    threads: u32,
) -> Result<(), CliError> {
    use plexus_ml::executor;
    use plexus_poai::receipt::items_digest;
    let bytes = std::fs::read(weights).map_err(|e| CliError::Input(format!("{weights}: {e}")))?;
    let weights = plexus_ml::model::Weights::decode(&bytes)
        .map_err(|e| CliError::Input(format!("{weights}: {e}")))?;
    let requests = read_images(input)?;
    let passes: Vec<&[Vec<u8>]> = requests.chunks(batch as usize).collect();
    // Pass i runs on thread i % threads; each thread has its own model.
    /// Each pass's index and logits, as one thread computed them.
    type Passes = Vec<(usize, Vec<[f32; 10]>)>;
    let results: Vec<Passes> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads as usize)
            .map(|t| {
                let (passes, weights) = (&passes, &weights);
                scope.spawn(move || -> Result<Passes, String> {
                    let device = plexus_ml::engine::Engine::flex().device().clone();
                    let model = plexus_ml::model::Mlp::from_weights(weights, &device)
                        .map_err(|e| e.to_string())?;
                    let mut out = Vec::new();
                    for (i, pass) in passes.iter().enumerate().skip(t).step_by(threads as usize) {
                        let images: Vec<_> = pass
                            .iter()
                            .map(|b| executor::decode_input(b))
                            .collect::<Result<_, _>>()
                            .map_err(|e| e.to_string())?;
                        out.push((i, executor::run(&model, &images, &device)));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a thread panicked".to_string())
                    .and_then(|r| r)
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .map_err(CliError::Failed)?;
    let mut by_pass: Vec<(usize, Vec<[f32; 10]>)> = results.into_iter().flatten().collect();
    by_pass.sort_by_key(|(i, _)| *i);
    println!(
        "model {} on {} ({}), {} images in passes of {batch} over {threads} threads",
        plexus_ml::hex(&weights.hash()),
        plexus_ml::engine::BackendKind::Flex.name(),
        plexus_ml::engine::FLEX_SOFTWARE,
        requests.len()
    );
    let mut classes = Vec::new();
    for (i, logits) in &by_pass {
        let encoded: Vec<[u8; executor::OUTPUT_BYTES]> =
            logits.iter().map(executor::encode_output).collect();
        println!(
            "pass {i}: {} images, inputs {}, outputs {}",
            logits.len(),
            plexus_ml::hex(&items_digest(passes[*i])),
            plexus_ml::hex(&items_digest(&encoded))
        );
        classes.extend(logits.iter().map(plexus_ml::model::class));
    }
    for (i, c) in classes.iter().enumerate() {
        println!("image {i}: class {c}");
    }
    Ok(())
}

/// `plexus models`.
pub fn models(args: &ClientArgs, add: Option<&std::path::Path>) -> Result<(), CliError> {
    let client = ApiClient::new(&args.api);
    if let Some(file) = add {
        let bytes =
            std::fs::read(file).map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
        let answer = client.post_bytes("/v1/models", &bytes)?;
        println!("added model {}", answer["hash"].as_str().unwrap_or("?"));
        return Ok(());
    }
    let v = client.get("/v1/models")?;
    println!(
        "node {} ({}), models in {}",
        v["node"].as_str().unwrap_or("?"),
        v["backend"].as_str().unwrap_or("?"),
        v["dir"].as_str().unwrap_or("?")
    );
    for m in v["models"].as_array().cloned().unwrap_or_default() {
        println!(
            "  {}  {:>8} bytes{}",
            m["hash"].as_str().unwrap_or("?"),
            m["bytes"],
            if m["loaded"] == true { "  loaded" } else { "" }
        );
    }
    match v["executors"].as_array() {
        None => println!("executors: unknown (the scheduler did not answer)"),
        Some(list) if list.is_empty() => println!("executors: none"),
        Some(list) => {
            println!("executors:");
            for e in list {
                println!(
                    "  {:<28} model {}  on {}{}{}",
                    e["key"].as_str().unwrap_or("?"),
                    e["model"]
                        .as_str()
                        .map(|h| h.get(..16).unwrap_or(h))
                        .unwrap_or("?"),
                    e["node"].as_str().unwrap_or("?"),
                    if e["active"] == true {
                        ""
                    } else {
                        " (starting)"
                    },
                    e["moving_to"]
                        .as_str()
                        .map(|n| format!(" -> {n}"))
                        .unwrap_or_default(),
                );
            }
        }
    }
    Ok(())
}

/// `plexus receipts`.
pub fn receipts(args: &ClientArgs) -> Result<(), CliError> {
    let v = ApiClient::new(&args.api).get("/v1/receipts")?;
    println!(
        "node {}; epoch now {}; sample rate {:.2}%, {} verifiers; signed {}, re-executed {}",
        v["node"].as_str().unwrap_or("?"),
        v["current"],
        v["sample_rate_ppm"].as_f64().unwrap_or(0.0) / 1e4,
        v["verifiers"],
        v["signed"],
        v["reexecuted"],
    );
    for e in v["epochs"].as_array().cloned().unwrap_or_default() {
        println!(
            "epoch {:>6}  beacon {}  disputes {}",
            e["epoch"],
            if e["beacon"] == true {
                "yes"
            } else {
                "not yet"
            },
            e["disputes"]
        );
        for w in e["workers"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {}  done {:>5}  items {:>6}  sampled {:>4}  verified {:>4}  unverified {:>3}{}",
                w["node"].as_str().unwrap_or("?"),
                w["receipts"],
                w["items"],
                w["sampled"],
                w["verified"],
                w["unverified"],
                if w["proven_wrong"] == true {
                    "  PROVEN WRONG"
                } else {
                    ""
                },
            );
        }
    }
    for e in v["evidence"].as_array().cloned().unwrap_or_default() {
        println!(
            "evidence: {} against {} in epoch {}",
            e["kind"].as_str().unwrap_or("?"),
            e["against"].as_str().unwrap_or("?"),
            e["epoch"]
        );
    }
    Ok(())
}

#[cfg(test)]
mod image_tests {
    use super::*;

    #[test]
    fn images_are_read_from_json_and_pgm_and_bad_ones_refused() {
        let dir = std::env::temp_dir().join(format!("plexus-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = dir.join("one.json");
        std::fs::write(&one, serde_json::to_vec(&vec![3u8; 64]).unwrap()).unwrap();
        assert_eq!(read_images(&one).unwrap(), vec![vec![3u8; 64]]);
        let two = dir.join("two.json");
        std::fs::write(
            &two,
            serde_json::to_vec(&vec![vec![0u8; 64], vec![16u8; 64]]).unwrap(),
        )
        .unwrap();
        assert_eq!(read_images(&two).unwrap().len(), 2);
        let bad = dir.join("bad.json");
        std::fs::write(&bad, serde_json::to_vec(&vec![17u8; 64]).unwrap()).unwrap();
        assert!(matches!(read_images(&bad), Err(CliError::Input(m)) if m.contains("pixel 0")));
        // A 16×16 PGM: black (ink) left half, white right half.
        let mut pgm = b"P2\n# a test\n16 16\n255\n".to_vec();
        for _ in 0..16 {
            for x in 0..16 {
                pgm.extend_from_slice(if x < 8 { b"0 " } else { b"255 " });
            }
        }
        let img = dir.join("img.pgm");
        std::fs::write(&img, &pgm).unwrap();
        let px = &read_images(&img).unwrap()[0];
        assert_eq!(px[0], 16);
        assert_eq!(px[7], 0);
        let trunc = dir.join("t.pgm");
        std::fs::write(&trunc, b"P5 8 8 255\n\x00\x00").unwrap();
        assert!(read_images(&trunc).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
