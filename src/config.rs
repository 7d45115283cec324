//! The node daemon's configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! data_dir = "/var/lib/plexus"            # keys and state; default: the XDG data dir
//! listen = ["/ip4/0.0.0.0/tcp/7000"]     # multiaddrs
//! bootstrap = ["/ip4/10.0.0.1/tcp/7000/p2p/12D3KooW..."]
//! allowlist = "/etc/plexus/allowlist.bin" # default: <data_dir>/network/allowlist.bin
//! api = "127.0.0.1:7070"                 # the local HTTP API (loopback by default)
//! api_hosts = ["plexus.internal"]        # Host names the API answers besides loopback
//! api_tls_cert = "/etc/plexus/api.crt"   # PEM; a non-loopback `api` needs TLS,
//! api_tls_key = "/etc/plexus/api.key"    #   or api_insecure_http = true (warned)
//! api_connections_max = 256
//! api_rate_per_s = 100                   # requests without the token, per second per client IP
//! api_header_timeout = "10s"             # slower clients are disconnected
//! api_operator_key = "/etc/plexus/operator.key" # signs the dashboard's and API clients'
//!                                        #   deploy/stop/migrate (off when absent)
//! mailbox_capacity = 1024
//!
//! [resources]                            # what this node offers
//! cpu = 4.0                              # cores
//! memory = "8GiB"
//! gpus = 0
//!
//! [tags]                                 # added to the allowlist entry's tags
//! zone = "a"
//!
//! [membership]                           # failure detection tuning
//! probe_interval = "1s"
//! probe_timeout = "400ms"
//! suspicion_mult = 4                     # longest suspicion: mult × log10(n) periods
//! suspicion_confirmations = 3            # others' suspicions that cut it to the shortest
//! suspicion_min_mult = 2                 # shortest suspicion, in periods
//! health_max = 8                         # a sick node probes up to 8× slower (1: off)
//! sync_interval = "30s"
//!
//! [registry]                             # the cluster's name registry
//! owners = 3                             # each name held by its 3 owners, found by
//!                                        #   asking them (default 0: every node
//!                                        #   holds every name); the same on every node
//! watch_refresh = "30s"                  # how often a node asks the owners again
//!                                        #   about names it uses, and re-sends its own
//!
//! [work]                                 # model executors and the audit of their work
//! sample_rate = 0.05                     # share of receipts re-executed (network-wide)
//! verifiers = 2                          # re-executions per sampled receipt (network-wide)
//! models_dir = "/var/lib/plexus/models"  # weights by hash; default: <data_dir>/models
//! backend = "flex"                       # executors' backend: "flex" (CPU) or "wgpu"
//!                                        #   (a GPU; a build with `--features wgpu`)
//!
//! [durable]                              # the replica store of durable actors
//! durability = "group"                   # "group": writes synced in groups, off the
//!                                        #   async workers; "each": every write synced
//!                                        #   on its own (slower under load)
//! patches = true                         # commits go to replicas holding the previous
//!                                        #   record as patches of it; false: whole
//!
//! [storage]                              # this node's storage shard
//! quota = "100GiB"                       # chunks held at most (default: no quota)
//! replicas = 3                           # default replication factor of puts here
//! spread = "region"                      # a tag replicas spread over (default: none)
//! gc_grace = "1h"                        # unpinned files are removed after this
//! scan_every = "30s"                     # every chunk held is offered to its placement (1s..=1h)
//! ```
//!
//! Every error names the field (and, for syntax, the line); nothing is written until
//! the whole configuration is valid.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use plexus_mesh::membership::MembershipConfig;
use plexus_mesh::registry::RegistryConfig;
use plexus_vocab::resources::Resources;
use serde::Deserialize;

/// Default loopback address of the local HTTP API.
pub const API_DEFAULT: &str = "127.0.0.1:7070";
/// Default listen address.
pub const LISTEN_DEFAULT: &str = "/ip4/127.0.0.1/tcp/0";

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Keys and state.
    pub data_dir: Option<PathBuf>,
    /// Listen multiaddrs.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Bootstrap multiaddrs.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// The signed allowlist file.
    pub allowlist: Option<PathBuf>,
    /// The HTTP API address.
    pub api: Option<String>,
    /// Host names the API answers besides the loopback names.
    #[serde(default)]
    pub api_hosts: Vec<String>,
    /// The API's TLS certificate chain (PEM).
    pub api_tls_cert: Option<PathBuf>,
    /// The API's TLS private key (PEM).
    pub api_tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address anyway.
    #[serde(default)]
    pub api_insecure_http: bool,
    /// Open API connections at most.
    pub api_connections_max: Option<usize>,
    /// API requests per second per client IP.
    pub api_rate_per_s: Option<u32>,
    /// Time a client has to send a request's headers, e.g. `"10s"`.
    pub api_header_timeout: Option<String>,
    /// A client key (a submitter's) the API signs its clients' scheduler requests
    /// with: the dashboard's actions. Anyone with the API token then acts with
    /// that key's rights.
    pub api_operator_key: Option<PathBuf>,
    /// Default mailbox capacity.
    pub mailbox_capacity: Option<usize>,
    /// Offered resources.
    #[serde(default)]
    pub resources: ResourcesFile,
    /// Extra tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Membership tuning.
    #[serde(default)]
    pub membership: MembershipFile,
    /// The name registry.
    #[serde(default)]
    pub registry: RegistryFile,
    /// Tracing export.
    #[serde(default)]
    pub telemetry: TelemetryFile,
    /// Epochs and checkpoints (off when absent).
    pub epochs: Option<EpochsFile>,
    /// Model execution and its audit.
    #[serde(default)]
    pub work: WorkFile,
    /// This node's storage shard.
    #[serde(default)]
    pub storage: StorageFile,
    /// The durable actors' replica store.
    #[serde(default)]
    pub durable: DurableFile,
}

/// `[durable]`: the durable actors' replica store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableFile {
    /// `"group"` (the default) or `"each"`.
    #[serde(default)]
    pub durability: crate::hosting::store::Durability,
    /// Commits as patches of the previous record (default `true`; `false` sends
    /// every commit whole, the migration bench's peer).
    #[serde(default = "yes")]
    pub patches: bool,
    /// Before a live migration's pause, the target restores the actor from its
    /// own replica (a warm standby; default `true`; `false` restores during the
    /// pause, the migration bench's peer).
    #[serde(default = "yes")]
    pub warm_handoffs: bool,
}

fn yes() -> bool {
    true
}

impl Default for DurableFile {
    fn default() -> Self {
        Self {
            durability: Default::default(),
            patches: yes(),
            warm_handoffs: yes(),
        }
    }
}

/// `[storage]`: this node's storage shard.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// The most chunk bytes this node holds for the network, e.g. `"100GiB"`
    /// (default: no quota; the disk is the bound).
    pub quota: Option<String>,
    /// The replication factor of puts through this node that name none, `1..=16`
    /// (default 3).
    pub replicas: Option<u8>,
    /// A tag whose values replicas spread over, e.g. `"region"` (default: none;
    /// every node of a network should use the same).
    pub spread: Option<String>,
    /// How long a chunk no pinned file names is kept, e.g. `"1h"` (the default).
    pub gc_grace: Option<String>,
    /// How often every chunk held is offered to its placement, and strays
    /// handed off (default `"30s"`, `1s..=1h`; every node of a network should
    /// use the same).
    pub scan_every: Option<String>,
}

/// Settled `[storage]`.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// Chunk bytes held at most (`None`: no quota).
    pub quota_bytes: Option<u64>,
    /// Default replication factor.
    pub replicas: u8,
    /// The spread tag.
    pub spread: Option<String>,
    /// How long a chunk no pinned file names is kept.
    pub gc_grace: Duration,
    /// The repair's full scan interval.
    pub scan_every: Duration,
}

/// `[work]`: the model executor and the audit of its work (every node of a network
/// should use the same `sample_rate` and `verifiers`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkFile {
    /// Share of receipts re-executed, `0 < r <= 1` (default 0.05).
    pub sample_rate: Option<f64>,
    /// Verifiers per sampled receipt, `1..=16` (default 2).
    pub verifiers: Option<usize>,
    /// Where the node keeps model weights (default: `data_dir/models`).
    pub models_dir: Option<PathBuf>,
    /// Fault injection for demos and tests of the audit: sign wrong outputs for
    /// this share of forward passes (default 0: never).
    pub wrong_outputs: Option<f64>,
    /// The backend executors serve on: `"flex"` (the CPU, the default) or
    /// `"wgpu"` (a GPU; needs a build with `--features wgpu`).
    pub backend: Option<String>,
}

/// Settled `[work]`.
#[derive(Clone, Debug)]
pub struct WorkSettings {
    /// Sample rate, parts per million.
    pub rate_ppm: u32,
    /// Verifiers per sampled receipt.
    pub verifiers: usize,
    /// The model directory.
    pub models_dir: PathBuf,
    /// Injected wrong outputs, parts per million of passes (0: none).
    pub wrong_outputs_ppm: u32,
    /// The backend executors serve on (built into this binary; opened at start).
    pub backend: plexus_ml::engine::BackendKind,
}

/// `[epochs]`: the network's epoch schedule (every node of a network must use the
/// same values) and where this node anchors checkpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochsFile {
    /// Genesis, Unix milliseconds: epoch 0 and the DKG's first round start here.
    pub genesis_unix_ms: u64,
    /// Epoch length, e.g. `"60s"` (the default) or `"1h"`.
    pub length: Option<String>,
    /// How long a proposer has before the next takes over (default: length / 6).
    pub view_timeout: Option<String>,
    /// How long a DKG round may take before the next starts (default 20 s).
    pub dkg_round: Option<String>,
    /// An EVM JSON-RPC URL: anchor there instead of the embedded ledger.
    pub chain: Option<String>,
    /// File holding the hex private key that pays for anchors (with `chain`).
    pub chain_key_file: Option<PathBuf>,
    /// Confirmations before an anchored epoch is final (with `chain`; default 2).
    pub confirmations: Option<u64>,
}

/// Settled `[epochs]`.
#[derive(Clone, Debug)]
pub struct EpochsSettings {
    /// Genesis, Unix ms.
    pub genesis_unix_ms: u64,
    /// Epoch length.
    pub length: Duration,
    /// View timeout.
    pub view_timeout: Duration,
    /// DKG round length.
    pub dkg_round: Duration,
    /// EVM ledger, if any: URL, key file, confirmations.
    pub chain: Option<(String, PathBuf, u64)>,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryFile {
    /// An OTLP/HTTP collector: a base URL (`http://127.0.0.1:4318`) or a full
    /// traces URL. Unset: the `OTEL_EXPORTER_OTLP_*` variables decide.
    pub otlp_endpoint: Option<String>,
}

/// `[resources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesFile {
    /// Cores (fractions allowed).
    pub cpu: Option<f64>,
    /// Memory, e.g. `"8GiB"`.
    pub memory: Option<String>,
    /// GPUs.
    pub gpus: Option<u32>,
}

/// `[membership]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipFile {
    /// e.g. `"1s"`.
    pub probe_interval: Option<String>,
    /// e.g. `"400ms"`.
    pub probe_timeout: Option<String>,
    /// Suspicion multiplier.
    pub suspicion_mult: Option<u32>,
    /// Others' suspicions that bring one down to its shortest (0: off).
    pub suspicion_confirmations: Option<u32>,
    /// The shortest suspicion, in probe periods (at least 1).
    pub suspicion_min_mult: Option<u32>,
    /// Local health: the most a sick node's probing slows (1 or 0: off).
    pub health_max: Option<u32>,
    /// e.g. `"30s"`.
    pub sync_interval: Option<String>,
}

/// `[registry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// Owners per name (0: a full replica on every node).
    pub owners: Option<u32>,
    /// e.g. `"30s"`.
    pub watch_refresh: Option<String>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Keys and state.
    pub data_dir: PathBuf,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
    /// Allowlist file.
    pub allowlist: PathBuf,
    /// API address.
    pub api: SocketAddr,
    /// How the API is exposed.
    pub api_access: ApiAccess,
    /// Default mailbox capacity.
    pub mailbox_capacity: Option<usize>,
    /// Offered resources.
    pub resources: Resources,
    /// Extra tags.
    pub tags: BTreeMap<String, String>,
    /// Membership tuning.
    pub membership: MembershipConfig,
    /// The name registry: full, or sharded over `owners` per name.
    pub registry: RegistryConfig,
    /// The OTLP/HTTP traces URL, if one is configured (checked, completed).
    pub otlp_endpoint: Option<String>,
    /// Epochs, if enabled.
    pub epochs: Option<EpochsSettings>,
    /// Model execution and its audit.
    pub work: WorkSettings,
    /// The storage shard.
    pub storage: StorageSettings,
    /// How the replica store's writes become durable.
    pub durability: crate::hosting::store::Durability,
    /// Whether commits go as patches (`[durable] patches`).
    pub commit_patches: bool,
    /// Whether migration targets prepare warm standbys (`[durable] warm_handoffs`).
    pub warm_handoffs: bool,
}

impl NodeSettings {
    /// The durable host's settings: the defaults, with what the file tunes.
    pub fn host_config(&self) -> plexus_host::HostConfig {
        let mut config =
            plexus_host::HostConfig::default().fit_lease(self.membership.detection_min());
        config.node.activation.patches = self.commit_patches;
        config.node.activation.warm_handoffs = self.warm_handoffs;
        config
    }
}

/// How the API is exposed: to whom, over what, within which limits.
#[derive(Clone, Debug)]
pub struct ApiAccess {
    /// Host names it answers besides the loopback names.
    pub hosts: Vec<String>,
    /// TLS certificate chain and key files (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP on a non-loopback address, as the operator insisted.
    pub insecure_http: bool,
    /// The key file the API signs its clients' scheduler requests with.
    pub operator_key: Option<PathBuf>,
    /// The server's bounds.
    pub limits: crate::api::serve::Limits,
}

/// Why a configuration was refused. Always the operator's fault; names the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse, or has an unknown key (the message gives the line).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A field has an impossible value.
    #[error("invalid `{field}`: {reason}")]
    Field {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

fn field(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The default data directory: `$XDG_DATA_HOME/plexus` (or the platform's equivalent).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("plexus")
}

/// Reads a config file.
pub fn read_file(path: &Path) -> Result<NodeFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

pub use plexus_vocab::resources::parse_size;

fn duration(
    name: &str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = humantime::parse_duration(v).map_err(|e| field(name, format!("`{v}`: {e}")))?;
            if d.is_zero() {
                return Err(field(name, "must be greater than zero"));
            }
            Ok(d)
        }
    }
}

impl NodeFile {
    /// Validates and fills defaults.
    pub fn settle(self) -> Result<NodeSettings, ConfigError> {
        let data_dir = self.data_dir.unwrap_or_else(default_data_dir);
        let parse_addrs = |name: &str, list: &[String]| -> Result<Vec<Multiaddr>, ConfigError> {
            list.iter()
                .map(|a| {
                    a.parse::<Multiaddr>()
                        .map_err(|e| field(name, format!("`{a}`: {e}")))
                })
                .collect()
        };
        let mut listen = parse_addrs("listen", &self.listen)?;
        if listen.is_empty() {
            listen.push(
                LISTEN_DEFAULT
                    .parse()
                    .map_err(|e| field("listen", format!("{e}")))?,
            );
        }
        let bootstrap = parse_addrs("bootstrap", &self.bootstrap)?;
        let api_text = self.api.unwrap_or_else(|| API_DEFAULT.to_string());
        let api: SocketAddr = api_text
            .parse()
            .map_err(|e| field("api", format!("`{api_text}`: {e}")))?;
        let tls = match (self.api_tls_cert, self.api_tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(field("api_tls_key", "api_tls_cert needs a key")),
            (None, Some(_)) => {
                return Err(field("api_tls_cert", "api_tls_key needs a certificate"));
            }
        };
        if !api.ip().is_loopback() && tls.is_none() && !self.api_insecure_http {
            return Err(field(
                "api",
                format!(
                    "`{api}` is not a loopback address: serve it over TLS (api_tls_cert, \
                     api_tls_key) or pass --insecure-http (api_insecure_http = true)"
                ),
            ));
        }
        for host in &self.api_hosts {
            if host.is_empty() || host.contains([':', '/', ' ']) && !host.starts_with('[') {
                return Err(field("api_hosts", format!("`{host}` is not a host name")));
            }
        }
        let mut limits = crate::api::serve::Limits::default();
        match self.api_connections_max {
            Some(0) => return Err(field("api_connections_max", "must be at least 1")),
            Some(n) => limits.connections_max = n,
            None => {}
        }
        match self.api_rate_per_s {
            Some(0) => return Err(field("api_rate_per_s", "must be at least 1")),
            Some(n) => {
                limits.rate_per_s = n;
                limits.burst = n.saturating_mul(2);
            }
            None => {}
        }
        limits.header_timeout = duration(
            "api_header_timeout",
            &self.api_header_timeout,
            limits.header_timeout,
        )?;
        let api_access = ApiAccess {
            hosts: self.api_hosts,
            tls,
            insecure_http: self.api_insecure_http,
            operator_key: self.api_operator_key,
            limits,
        };
        if let Some(0) = self.mailbox_capacity {
            return Err(field("mailbox_capacity", "must be at least 1"));
        }
        let cpu = self.resources.cpu.unwrap_or(0.0);
        if !cpu.is_finite() || cpu < 0.0 {
            return Err(field(
                "resources.cpu",
                format!("{cpu} is not a number of cores"),
            ));
        }
        let memory_bytes = match &self.resources.memory {
            Some(m) => parse_size(m).map_err(|e| field("resources.memory", e))?,
            None => 0,
        };
        let resources = Resources {
            cpu_millis: (cpu * 1000.0) as u64,
            memory_bytes,
            gpus: self.resources.gpus.unwrap_or(0),
        };
        for key in self.tags.keys() {
            plexus_vocab::resources::parse_tag(key).map_err(|e| field("tags", e))?;
        }
        let defaults = MembershipConfig::default();
        let membership = MembershipConfig {
            probe_interval: duration(
                "membership.probe_interval",
                &self.membership.probe_interval,
                defaults.probe_interval,
            )?,
            probe_timeout: duration(
                "membership.probe_timeout",
                &self.membership.probe_timeout,
                defaults.probe_timeout,
            )?,
            sync_interval: duration(
                "membership.sync_interval",
                &self.membership.sync_interval,
                defaults.sync_interval,
            )?,
            suspicion_mult: match self.membership.suspicion_mult {
                Some(0) => return Err(field("membership.suspicion_mult", "must be at least 1")),
                Some(m) => m,
                None => defaults.suspicion_mult,
            },
            suspicion_confirmations: self
                .membership
                .suspicion_confirmations
                .unwrap_or(defaults.suspicion_confirmations),
            suspicion_min_mult: match self.membership.suspicion_min_mult {
                Some(0) => {
                    return Err(field("membership.suspicion_min_mult", "must be at least 1"));
                }
                Some(m) => m,
                None => defaults.suspicion_min_mult,
            },
            health_max: self.membership.health_max.unwrap_or(defaults.health_max),
            ..defaults
        };
        if membership.probe_timeout >= membership.probe_interval {
            return Err(field(
                "membership.probe_timeout",
                "must be shorter than membership.probe_interval",
            ));
        }
        let registry_defaults = RegistryConfig::default();
        let registry = RegistryConfig {
            owners: match self.registry.owners {
                Some(r) if r as usize > plexus_mesh::owners::OWNERS_MAX => {
                    return Err(field(
                        "registry.owners",
                        format!(
                            "at most {} owners per name",
                            plexus_mesh::owners::OWNERS_MAX
                        ),
                    ));
                }
                Some(r) => r,
                None => registry_defaults.owners,
            },
            watch_refresh: duration(
                "registry.watch_refresh",
                &self.registry.watch_refresh,
                registry_defaults.watch_refresh,
            )?,
            ..registry_defaults
        };
        if registry.watch_refresh >= registry.watch_idle {
            return Err(field(
                "registry.watch_refresh",
                format!(
                    "must be shorter than the {:?} after which an unused name is no longer asked about",
                    registry.watch_idle
                ),
            ));
        }
        let otlp_endpoint = match &self.telemetry.otlp_endpoint {
            Some(e) => Some(
                crate::telemetry::traces_url(e)
                    .map_err(|e| field("telemetry.otlp_endpoint", e.to_string()))?,
            ),
            None => None,
        };
        let epochs = match self.epochs {
            None => None,
            Some(e) => {
                let length = duration("epochs.length", &e.length, Duration::from_secs(60))?;
                if length < Duration::from_secs(1) {
                    return Err(field("epochs.length", "must be at least 1s"));
                }
                let view_timeout = duration(
                    "epochs.view_timeout",
                    &e.view_timeout,
                    (length / 6).max(Duration::from_secs(1)),
                )?;
                let dkg_round =
                    duration("epochs.dkg_round", &e.dkg_round, Duration::from_secs(20))?;
                if dkg_round < Duration::from_secs(3) {
                    return Err(field("epochs.dkg_round", "must be at least 3s"));
                }
                let chain = match (e.chain, e.chain_key_file) {
                    (None, None) => None,
                    (Some(url), Some(key)) => {
                        if !(url.starts_with("http://") || url.starts_with("https://")) {
                            return Err(field(
                                "epochs.chain",
                                format!("`{url}` is not an http(s) URL"),
                            ));
                        }
                        let confirmations = e.confirmations.unwrap_or(2);
                        if confirmations == 0 {
                            return Err(field("epochs.confirmations", "must be at least 1"));
                        }
                        Some((url, key, confirmations))
                    }
                    (Some(_), None) => {
                        return Err(field(
                            "epochs.chain_key_file",
                            "a chain needs a key file that pays for anchors",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(field("epochs.chain", "a key file needs a chain URL"));
                    }
                };
                Some(EpochsSettings {
                    genesis_unix_ms: e.genesis_unix_ms,
                    length,
                    view_timeout,
                    dkg_round,
                    chain,
                })
            }
        };
        let share = |name: &str, v: Option<f64>, default: f64, zero_ok: bool| {
            let v = v.unwrap_or(default);
            if !(v.is_finite() && (if zero_ok { v >= 0.0 } else { v > 0.0 }) && v <= 1.0) {
                return Err(field(
                    name,
                    if zero_ok {
                        "must be in 0..=1"
                    } else {
                        "must be in (0, 1]"
                    },
                ));
            }
            Ok((v * 1e6).round() as u32)
        };
        let verifiers = self.work.verifiers.unwrap_or(2);
        if !(1..=16).contains(&verifiers) {
            return Err(field("work.verifiers", "must be 1..=16"));
        }
        let work = WorkSettings {
            rate_ppm: share("work.sample_rate", self.work.sample_rate, 0.05, false)?,
            verifiers,
            models_dir: self
                .work
                .models_dir
                .unwrap_or_else(|| data_dir.join("models")),
            wrong_outputs_ppm: share("work.wrong_outputs", self.work.wrong_outputs, 0.0, true)?,
            backend: match self.work.backend.as_deref() {
                None => plexus_ml::engine::BackendKind::Flex,
                Some(name) => {
                    let kind: plexus_ml::engine::BackendKind = name
                        .parse()
                        .map_err(|e| field("work.backend", format!("{e}")))?;
                    if !kind.built() {
                        return Err(field(
                            "work.backend",
                            plexus_ml::engine::EngineError::NotBuilt(kind.name()).to_string(),
                        ));
                    }
                    kind
                }
            },
        };
        let replicas = self.storage.replicas.unwrap_or(3);
        if !(1..=16).contains(&replicas) {
            return Err(field("storage.replicas", "must be 1..=16"));
        }
        let storage = StorageSettings {
            quota_bytes: match &self.storage.quota {
                None => None,
                Some(q) => Some(parse_size(q).map_err(|e| field("storage.quota", e))?),
            },
            replicas,
            spread: match self.storage.spread {
                Some(t) if t.trim().is_empty() => {
                    return Err(field("storage.spread", "must name a tag"));
                }
                other => other,
            },
            gc_grace: match &self.storage.gc_grace {
                None => Duration::from_secs(3600),
                Some(g) => humantime::parse_duration(g)
                    .map_err(|e| field("storage.gc_grace", e.to_string()))?,
            },
            scan_every: match &self.storage.scan_every {
                None => Duration::from_secs(30),
                Some(g) => {
                    let d = humantime::parse_duration(g)
                        .map_err(|e| field("storage.scan_every", e.to_string()))?;
                    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
                        return Err(field("storage.scan_every", "must be 1s..=1h"));
                    }
                    d
                }
            },
        };
        let allowlist = self
            .allowlist
            .unwrap_or_else(|| data_dir.join("network").join("allowlist.bin"));
        Ok(NodeSettings {
            data_dir,
            listen,
            bootstrap,
            allowlist,
            api,
            api_access,
            mailbox_capacity: self.mailbox_capacity,
            resources,
            tags: self.tags,
            membership,
            registry,
            otlp_endpoint,
            epochs,
            work,
            storage,
            durability: self.durable.durability,
            commit_patches: self.durable.patches,
            warm_handoffs: self.durable.warm_handoffs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(text: &str) -> Result<NodeSettings, ConfigError> {
        toml::from_str::<NodeFile>(text)
            .map_err(|e| ConfigError::Syntax {
                path: "t.toml".into(),
                message: e.to_string(),
            })?
            .settle()
    }

    #[test]
    fn the_example_production_config_settles() {
        let s = settle(include_str!("../deploy/node.toml")).unwrap();
        assert_eq!(s.storage.replicas, 3);
        assert_eq!(s.storage.quota_bytes, Some(500 << 30));
        assert_eq!(s.storage.spread.as_deref(), Some("region"));
    }

    #[test]
    fn storage_settings_settle_and_bad_ones_name_their_field() {
        let s = settle(
            "[storage]\nquota = \"2GiB\"\nreplicas = 2\nspread = \"region\"\ngc_grace = \"10m\"\nscan_every = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(s.storage.scan_every, Duration::from_secs(5));
        assert_eq!(s.storage.quota_bytes, Some(2 << 30));
        assert_eq!(s.storage.replicas, 2);
        assert_eq!(s.storage.spread.as_deref(), Some("region"));
        assert_eq!(s.storage.gc_grace, Duration::from_secs(600));
        let d = settle("").unwrap();
        assert_eq!((d.storage.replicas, d.storage.quota_bytes), (3, None));
        assert_eq!(d.storage.scan_every, Duration::from_secs(30));
        for (text, field) in [
            ("[storage]\nreplicas = 0\n", "storage.replicas"),
            ("[storage]\nquota = \"lots\"\n", "storage.quota"),
            ("[storage]\ngc_grace = \"soon\"\n", "storage.gc_grace"),
            ("[storage]\nspread = \" \"\n", "storage.spread"),
            ("[storage]\nscan_every = \"0s\"\n", "storage.scan_every"),
            ("[storage]\nscan_every = \"often\"\n", "storage.scan_every"),
        ] {
            let e = settle(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn the_registry_is_a_full_replica_unless_sharded_and_bad_settings_name_their_field() {
        let d = settle("").unwrap();
        assert_eq!(d.registry.owners, 0);
        assert!(!d.registry.sharded());
        let s = settle("[registry]\nowners = 3\nwatch_refresh = \"10s\"\n").unwrap();
        assert_eq!(s.registry.owners, 3);
        assert_eq!(s.registry.watch_refresh, Duration::from_secs(10));
        for (text, field) in [
            ("[registry]\nowners = 8\n", "registry.owners"),
            (
                "[registry]\nwatch_refresh = \"never\"\n",
                "registry.watch_refresh",
            ),
            (
                "[registry]\nwatch_refresh = \"1h\"\n",
                "registry.watch_refresh",
            ),
        ] {
            let e = settle(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = settle("[registry]\nowner = 3\n").unwrap_err().to_string();
        assert!(e.contains("owner"), "{e}");
    }

    #[test]
    fn durability_defaults_to_group_commit_and_a_bad_one_is_named() {
        use crate::hosting::store::Durability;
        assert_eq!(settle("").unwrap().durability, Durability::Group);
        let each = settle("[durable]\ndurability = \"each\"\n").unwrap();
        assert_eq!(each.durability, Durability::Each);
        // Patches are on unless the file turns them off.
        assert!(settle("").unwrap().host_config().node.activation.patches);
        assert!(each.host_config().node.activation.patches);
        let whole = settle("[durable]\npatches = false\n").unwrap();
        assert!(!whole.host_config().node.activation.patches);
        // So are warm standbys.
        assert!(
            settle("")
                .unwrap()
                .host_config()
                .node
                .activation
                .warm_handoffs
        );
        let cold = settle("[durable]\nwarm_handoffs = false\n").unwrap();
        assert!(!cold.host_config().node.activation.warm_handoffs);
        assert!(cold.host_config().node.activation.patches);
        let e = settle("[durable]\ndurability = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("durability") && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn the_activation_lease_is_four_fifths_of_the_fastest_failure_detection() {
        // 1 s probes, and a suspicion confirmed by others lasts 2 periods: a
        // silent node is dead after 3 s at the earliest; the lease is 2.4 s,
        // checked every quarter of it.
        let default = settle("").unwrap().host_config().node.activation;
        assert_eq!(default.lease, Duration::from_millis(2_400));
        assert_eq!(default.lease_check, Duration::from_millis(600));
        // The local cluster's tuning: 500 ms probes, the shortest suspicion 1 s.
        let fast = settle(
            "[membership]\nprobe_interval = \"500ms\"\nprobe_timeout = \"250ms\"\nsuspicion_mult = 4\n",
        )
        .unwrap();
        let detection = fast.membership.detection_min();
        assert_eq!(detection, Duration::from_millis(1_500));
        let lease = fast.host_config().node.activation.lease;
        assert_eq!(lease, Duration::from_millis(1_200));
        assert!(lease < detection && fast.host_config().node.activation.lease_check < lease);
        // Without confirmations the shortest suspicion is the full one of a
        // small cluster (4 periods), as before.
        let off = settle(
            "[membership]\nprobe_interval = \"500ms\"\nprobe_timeout = \"250ms\"\nsuspicion_confirmations = 0\n",
        )
        .unwrap();
        assert_eq!(off.membership.detection_min(), Duration::from_millis(2_500));
        let e = settle("[membership]\nsuspicion_min_mult = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("membership.suspicion_min_mult"), "{e}");
        // Local health: on by default, and off with 1.
        assert_eq!(settle("").unwrap().membership.health_max, 8);
        let off = settle("[membership]\nhealth_max = 1\n").unwrap();
        assert_eq!(off.membership.health_max, 1);
    }

    #[test]
    fn the_executor_backend_defaults_to_flex_and_an_unknown_or_unbuilt_one_is_named() {
        use plexus_ml::engine::BackendKind;
        assert_eq!(settle("").unwrap().work.backend, BackendKind::Flex);
        let flex = settle("[work]\nbackend = \"flex\"\n").unwrap();
        assert_eq!(flex.work.backend, BackendKind::Flex);
        let e = settle("[work]\nbackend = \"tpu\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("work.backend") && e.contains("tpu"), "{e}");
        let wgpu = settle("[work]\nbackend = \"wgpu\"\n");
        if cfg!(feature = "wgpu") {
            assert_eq!(wgpu.unwrap().work.backend, BackendKind::Wgpu);
        } else {
            let e = wgpu.unwrap_err().to_string();
            assert!(
                e.contains("work.backend") && e.contains("--features wgpu"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_full_file_settles() {
        let s = settle(
            r#"
data_dir = "/tmp/x"
listen = ["/ip4/127.0.0.1/tcp/7000"]
api = "127.0.0.1:9000"
[resources]
cpu = 2.5
memory = "4GiB"
gpus = 1
[tags]
zone = "a"
[membership]
probe_interval = "200ms"
probe_timeout = "80ms"
[telemetry]
otlp_endpoint = "http://127.0.0.1:4318"
"#,
        )
        .unwrap();
        assert_eq!(
            s.resources,
            Resources {
                cpu_millis: 2500,
                memory_bytes: 4 << 30,
                gpus: 1
            }
        );
        assert_eq!(s.membership.probe_interval, Duration::from_millis(200));
        assert_eq!(s.allowlist, PathBuf::from("/tmp/x/network/allowlist.bin"));
        assert_eq!(
            s.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
    }

    #[test]
    fn a_public_api_needs_tls_or_an_explicit_insecure_flag() {
        let public = "api = \"0.0.0.0:7070\"";
        assert!(settle(public).is_err(), "plain HTTP on 0.0.0.0 is refused");
        let insecure = settle(&format!("{public}\napi_insecure_http = true")).unwrap();
        assert!(insecure.api_access.insecure_http && insecure.api_access.tls.is_none());
        let tls = settle(&format!(
            "{public}\napi_tls_cert = \"c.pem\"\napi_tls_key = \"k.pem\""
        ))
        .unwrap();
        assert!(tls.api_access.tls.is_some());
        let loopback = settle("api = \"127.0.0.1:7070\"").unwrap();
        assert!(!loopback.api_access.insecure_http && loopback.api_access.tls.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("listen = [\"nope\"]", "listen"),
            ("api = \"localhost\"", "api"),
            ("[resources]\ncpu = -1.0", "resources.cpu"),
            ("[resources]\nmemory = \"8 parsecs\"", "resources.memory"),
            (
                "[membership]\nprobe_interval = \"1s\"\nprobe_timeout = \"2s\"",
                "membership.probe_timeout",
            ),
            (
                "[membership]\nprobe_interval = \"soon\"",
                "membership.probe_interval",
            ),
            ("mailbox_capacity = 0", "mailbox_capacity"),
            ("api = \"0.0.0.0:7070\"", "not a loopback address"),
            ("api_tls_cert = \"c.pem\"", "api_tls_key"),
            ("api_connections_max = 0", "api_connections_max"),
            ("api_rate_per_s = 0", "api_rate_per_s"),
            ("api_hosts = [\"evil.example/x\"]", "api_hosts"),
            (
                "[telemetry]\notlp_endpoint = \"collector:4318\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "[epochs]\ngenesis_unix_ms = 1\nlength = \"500ms\"",
                "epochs.length",
            ),
            (
                "[epochs]\ngenesis_unix_ms = 1\ndkg_round = \"1s\"",
                "epochs.dkg_round",
            ),
            (
                "[epochs]\ngenesis_unix_ms = 1\nchain = \"http://x\"",
                "epochs.chain_key_file",
            ),
            (
                "[epochs]\ngenesis_unix_ms = 1\nchain = \"ws://x\"\nchain_key_file = \"k\"",
                "epochs.chain",
            ),
            ("[epochs]\nlength = \"60s\"", "genesis_unix_ms"),
        ];
        for (text, name) in cases {
            let err = settle(text).unwrap_err().to_string();
            assert!(err.contains(name), "{text}: {err}");
        }
        let err = settle("bogus = 1").unwrap_err().to_string();
        assert!(err.contains("bogus") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert!(parse_size("-1GiB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
