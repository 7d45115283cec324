//! A cluster of three real `plexus node` processes on 127.0.0.1, with a client key
//! on its allowlist: what `plexus demo` runs, and the migration benchmark
//! (`benches/benches/migration.rs`). The code blocks: it waits by polling the
//! nodes' HTTP APIs. Nodes are killed when dropped.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_mesh::driver::{MemberView, load_or_create_node_key};
use plexus_mesh::membership::MemberState;
use plexus_scheduler::protocol::Request;
use plexus_vocab::identity::NodeKey;
use serde_json::Value;

use super::CliError;
use super::client::{ApiClient, CLIENT_KEY_FILE, client_key};
use super::keys;

/// Words the demo's and the benchmark's traffic is made of.
pub const WORDS: [&str; 16] = [
    "actor", "mesh", "ballot", "replica", "snapshot", "gossip", "quorum", "fence", "migrate",
    "epoch", "shard", "model", "tensor", "receipt", "proof", "node",
];

/// Runs `f` in a fresh directory under the system's temp dir (`plexus-TAG-PID`),
/// removed afterwards unless `keep` is set or `f` failed (then its path is
/// printed: it holds the nodes' data dirs and logs).
pub fn in_scratch_dir<T>(
    tag: &str,
    keep: bool,
    f: impl FnOnce(&Path) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let dir = std::env::temp_dir().join(format!("plexus-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| CliError::Failed(e.to_string()))?;
    let result = f(&dir);
    if keep || result.is_err() {
        eprintln!("{tag} files (data dirs, node logs): {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Polls `f` every 100 ms until it answers, for at most `limit`; returns the answer
/// and how long it took.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<(T, Duration), CliError> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok((v, start.elapsed()));
        }
        if start.elapsed() > limit {
            return Err(CliError::Failed(format!(
                "{what}: not within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `plexus node` process.
pub struct LocalNode {
    child: Option<Child>,
    /// Its node id.
    pub id: String,
    /// A client of its HTTP API.
    pub api: ApiClient,
    /// Its HTTP API's address.
    pub api_url: String,
    /// Its first listen address.
    pub listen: String,
}

impl LocalNode {
    /// Starts `plexus` (the program `command` runs) as `--log info node --config
    /// CONFIG`, logging to `log`, and waits for its ready line.
    fn start(mut command: Command, config: &Path, log: &Path) -> Result<LocalNode, CliError> {
        let log_file = std::fs::File::create(log)
            .map_err(|e| CliError::Failed(format!("{}: {e}", log.display())))?;
        let mut child = command
            .args(["--log", "info", "node", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| CliError::Failed(format!("cannot start a node: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| CliError::Failed("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready: Value = match lines.next() {
            Some(Ok(line)) => serde_json::from_str(&line)
                .map_err(|e| CliError::Failed(format!("the node printed `{line}`: {e}")))?,
            _ => {
                let _ = child.kill();
                return Err(CliError::Failed(format!(
                    "a node exited before it was ready; see {}",
                    log.display()
                )));
            }
        };
        // Keep draining its event lines so it never blocks on a full pipe.
        let events = log.with_extension("events");
        std::thread::spawn(move || {
            let mut out = std::fs::File::create(events).ok();
            for line in lines.map_while(Result::ok) {
                if let Some(f) = out.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let api_url = ready["api"].as_str().unwrap_or_default().to_string();
        Ok(LocalNode {
            child: Some(child),
            id: ready["node"].as_str().unwrap_or_default().to_string(),
            api: ApiClient::new(&api_url),
            api_url,
            listen: ready["listen"][0].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Its dashboard's URL, with the token.
    pub fn dashboard_url(&self) -> String {
        self.api.dashboard_url()
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has not been killed or stopped.
    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Its durable-actor service's status (`GET /v1/durable`), if it answers.
    pub fn durable(&self) -> Option<Value> {
        if !self.alive() {
            return None;
        }
        self.api.get("/v1/durable").ok()
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it with SIGTERM (it leaves the mesh cleanly), or SIGKILL after 10 s.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three nodes and the client key that may submit jobs to them.
pub struct LocalCluster {
    /// The nodes; the first takes client traffic.
    pub nodes: Vec<LocalNode>,
    /// The client's key (an allowlisted submitter).
    pub client: NodeKey,
    /// The epoch genesis (Unix ms), when epochs are enabled.
    pub genesis_unix_ms: Option<u64>,
}

/// What a cluster holds once traffic has stopped and settled.
#[derive(Clone, Copy, Debug)]
pub struct Settled {
    /// Messages the first node accepted from clients.
    pub sent: u64,
    /// Of which acknowledged.
    pub acked: u64,
    /// Messages the sink counted.
    pub delivered: u64,
    /// Messages the sink saw out of order.
    pub out_of_order: u64,
}

/// Epochs for a local cluster: every node is a validator.
#[derive(Clone, Debug)]
pub struct LocalEpochs {
    /// Epoch length.
    pub length: Duration,
    /// Genesis this long after the configs are written (the nodes must all be up
    /// for the DKG's first round).
    pub genesis_in: Duration,
    /// An EVM JSON-RPC URL and one funded secret key (hex) per node.
    pub chain: Option<(String, Vec<String>)>,
}

/// What a local cluster runs.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Nodes.
    pub nodes: usize,
    /// Epochs, if enabled.
    pub epochs: Option<LocalEpochs>,
    /// Extra admitted node keys that are not validators and are not started
    /// (`dir/o{i}/node.key`): for a test to run a node of its own.
    pub observers: usize,
    /// Nodes started after the others that are not validators (with epochs on,
    /// they follow the committee's checkpoints): `nodes[nodes..]`.
    pub workers: usize,
    /// The `[work]` section, if not the defaults.
    pub work: Option<LocalWork>,
    /// More TOML appended to every node's configuration (whole sections, e.g.
    /// `"[durable]\ndurability = \"each\"\n"`).
    pub extra_config: String,
}

/// The nodes' `[work]` settings.
#[derive(Clone, Debug)]
pub struct LocalWork {
    /// Share of receipts re-executed.
    pub sample_rate: f64,
    /// Verifiers per sampled receipt.
    pub verifiers: usize,
    /// A node (1-based) that signs wrong outputs for every forward pass.
    pub cheat: Option<usize>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            epochs: None,
            observers: 0,
            workers: 0,
            work: None,
            extra_config: String::new(),
        }
    }
}

impl LocalCluster {
    /// Creates a network under `dir` (three node keys with declared resources, a
    /// client key as submitter), starts the nodes (`plexus` gives the command
    /// that runs the `plexus` program) and waits until they see each other.
    pub fn start(dir: &Path, plexus: impl Fn() -> Command) -> Result<LocalCluster, CliError> {
        Self::start_with(dir, plexus, &LocalOptions::default())
    }

    /// [`start`](Self::start) with a node count and, optionally, epochs (every
    /// node tagged `role=validator`, one `[epochs]` section for all).
    pub fn start_with(
        dir: &Path,
        plexus: impl Fn() -> Command,
        options: &LocalOptions,
    ) -> Result<LocalCluster, CliError> {
        let validators = options.nodes.max(1);
        let count = validators + options.workers;
        let net = dir.join("net");
        keys::network_create(Some(net.clone()), "demo", true)?;
        let client = client_key(&dir.join(CLIENT_KEY_FILE))?;
        for i in 1..=count {
            let key = node_key(&dir.join(format!("n{i}")))?;
            let mut tags = vec![format!("zone=z{i}")];
            if options.epochs.is_some() && i <= validators {
                let (k, v) = crate::epochs::VALIDATOR_TAG;
                tags.push(format!("{k}={v}"));
            }
            admit_node(
                &net,
                &key,
                tags,
                format!("operator-{i}"),
                Some((4.0, "8GiB")),
            )?;
        }
        for i in 1..=options.observers {
            let key = node_key(&dir.join(format!("o{i}")))?;
            admit_node(&net, &key, vec![], format!("observer-{i}"), None)?;
        }
        admit_submitter(&net, &client, "demo client")?;
        // One genesis for every node.
        let genesis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| CliError::Failed(e.to_string()))?
            + options
                .epochs
                .as_ref()
                .map_or(Duration::ZERO, |e| e.genesis_in);
        let epochs_section = |i: usize| -> Result<String, CliError> {
            let Some(e) = &options.epochs else {
                return Ok(String::new());
            };
            let mut section = format!(
                "[epochs]\ngenesis_unix_ms = {}\nlength = \"{}ms\"\ndkg_round = \"{}ms\"\n",
                genesis.as_millis(),
                e.length.as_millis(),
                (e.length.as_millis() / 2).max(3_000),
            );
            if let Some((url, keys_hex)) = &e.chain
                && i <= validators
            {
                let key_file = dir.join(format!("n{i}")).join("chain.key");
                let key = keys_hex
                    .get(i - 1)
                    .ok_or_else(|| CliError::Failed("a chain key per node is needed".into()))?;
                keys::write_file(&key_file, key.as_bytes())?;
                section.push_str(&format!(
                    "chain = \"{url}\"\nchain_key_file = \"{}\"\nconfirmations = 2\n",
                    key_file.display()
                ));
            }
            Ok(section)
        };

        let mut nodes: Vec<LocalNode> = Vec::new();
        for i in 1..=count {
            let data = dir.join(format!("n{i}"));
            let bootstrap = nodes
                .first()
                .map(|n| format!("bootstrap = [\"{}\"]\n", n.listen))
                .unwrap_or_default();
            // The dashboard's actions are signed with the demo's client key.
            let config = format!(
                "data_dir = \"{}\"\nallowlist = \"{}\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n{bootstrap}api = \"127.0.0.1:0\"\n\
                 api_operator_key = \"{}\"\n\
                 [resources]\ncpu = 4\nmemory = \"8GiB\"\n\
                 [membership]\nprobe_interval = \"500ms\"\nprobe_timeout = \"250ms\"\n{}{}{}",
                data.display(),
                net.join(keys::ALLOWLIST_FILE).display(),
                dir.join(CLIENT_KEY_FILE).display(),
                epochs_section(i)?,
                options.work.as_ref().map_or(String::new(), |w| format!(
                    "[work]\nsample_rate = {:.6}\nverifiers = {}\n{}",
                    w.sample_rate,
                    w.verifiers,
                    if w.cheat == Some(i) {
                        "wrong_outputs = 1.0\n"
                    } else {
                        ""
                    }
                )),
                options.extra_config,
            );
            let path = data.join("node.toml");
            keys::write_file(&path, config.as_bytes())?;
            let node = LocalNode::start(plexus(), &path, &dir.join(format!("n{i}.log")))?;
            say!("node {i}: {} (api {})", node.id, node.api_url);
            nodes.push(node);
        }
        let (_, took) = wait_until(
            &format!("the {count} nodes to see each other"),
            Duration::from_secs(30),
            || {
                let members = nodes[0].api.get("/v1/members").ok()?;
                let members: Vec<MemberView> = serde_json::from_value(members).ok()?;
                let alive = members
                    .iter()
                    .filter(|m| m.state == MemberState::Alive)
                    .count();
                // A node does not list itself.
                (alive == count - 1).then_some(())
            },
        )?;
        say!("mesh formed in {:.1} s", took.as_secs_f64());
        Ok(LocalCluster {
            nodes,
            client,
            genesis_unix_ms: options
                .epochs
                .as_ref()
                .map(|_| u64::try_from(genesis.as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// The scheduler's status, from the first live node that answers.
    pub fn status(&self) -> Option<Value> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .find_map(|n| n.api.status().ok())
    }

    /// Signs `request` with the client key and sends it through the first node.
    pub fn ask(&self, request: Request) -> Result<Value, CliError> {
        self.nodes[0].api.scheduler(request, &self.client)
    }

    /// Deploys `spec`, asking again while the scheduler is still starting (for a
    /// minute at most); a refusal is final.
    pub fn deploy(&self, spec: &str) -> Result<Value, CliError> {
        let (answer, _) = wait_until(
            "the scheduler to accept the job",
            Duration::from_secs(60),
            || match self.ask(Request::Deploy { spec: spec.into() }) {
                Ok(v) => Some(Ok(v)),
                Err(CliError::Input(why)) => Some(Err(CliError::Input(why))),
                Err(_) => None,
            },
        )?;
        answer
    }

    /// The sink `key`'s count and its out-of-order count, from whichever node
    /// hosts it.
    pub fn tally(&self, key: &str) -> Option<(u64, u64)> {
        self.nodes
            .iter()
            .filter_map(LocalNode::durable)
            .find_map(|s| {
                let t = s["actors"].get(key)?;
                Some((t["count"].as_u64()?, t["out_of_order"].as_u64()?))
            })
    }

    /// Once client traffic has stopped: waits until every message the first node
    /// accepted is acknowledged (2 minutes at most), then until the sink `key`
    /// counted them all (1 minute at most, then what it counted so far).
    /// `sent_seen` is the clients' own count, used if the node does not say.
    pub fn settle(&self, sink: &str, sent_seen: u64) -> Result<Settled, CliError> {
        // The node's own count is authoritative (a request refused halfway, with
        // the session full, still sent its first part).
        let sent = self.nodes[0]
            .api
            .get("/v1/durable")?
            .get("sent")
            .and_then(Value::as_u64)
            .unwrap_or(sent_seen);
        let (acked, _) = wait_until(
            "every message to be acknowledged",
            Duration::from_secs(120),
            || {
                let acked = self.nodes[0].durable()?["acked"].as_u64()?;
                (acked >= sent).then_some(acked)
            },
        )?;
        let ((delivered, out_of_order), _) = wait_until(
            "the sink to count every message",
            Duration::from_secs(60),
            || self.tally(sink).filter(|t| t.0 >= sent),
        )
        .or_else(|_| {
            self.tally(sink)
                .map(|t| (t, Duration::ZERO))
                .ok_or_else(|| CliError::Failed(format!("the sink {sink} is not active anywhere")))
        })?;
        Ok(Settled {
            sent,
            acked,
            delivered,
            out_of_order,
        })
    }

    /// Stops every node with SIGTERM.
    pub fn stop(&mut self) {
        for n in &mut self.nodes {
            n.terminate();
        }
    }
}

/// The node key in `data`, created if missing.
pub(super) fn node_key(data: &Path) -> Result<NodeKey, CliError> {
    load_or_create_node_key(data, crate::node::fresh_seed)
        .map_err(|e| CliError::Failed(e.to_string()))
}

/// Adds a node key to the allowlist in `net`, with tags and declared resources.
pub(super) fn admit_node(
    net: &Path,
    key: &NodeKey,
    tags: Vec<String>,
    operator: String,
    declared: Option<(f64, &str)>,
) -> Result<(), CliError> {
    keys::allowlist_add(
        Some(net.to_path_buf()),
        &key.node_id().to_string(),
        keys::AddOptions {
            tags,
            operator: Some(operator),
            cpu: declared.map(|d| d.0),
            memory: declared.map(|d| d.1.to_string()),
            gpus: None,
            submitter: false,
            quiet: true,
        },
    )
}

/// Adds a client key to the allowlist in `net` as a job submitter.
pub(super) fn admit_submitter(net: &Path, key: &NodeKey, name: &str) -> Result<(), CliError> {
    keys::allowlist_add(
        Some(net.to_path_buf()),
        &key.node_id().to_string(),
        keys::AddOptions {
            tags: vec![],
            operator: Some(name.into()),
            cpu: None,
            memory: None,
            gpus: None,
            submitter: true,
            quiet: true,
        },
    )
}
