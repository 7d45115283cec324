//! A harness for tests that run real `plexus` processes on 127.0.0.1: a temporary
//! network directory, node processes whose stdout events are read line by line, and
//! a small HTTP client for their APIs. Every wait is on an event with a deadline.
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod otlp;

/// Asks `probe` until it answers `Ok`, at most `limit` long, and panics with its
/// last `Err` after that. For state only a real process can tell (through its HTTP
/// API): there is no in-process event to wait on, so this polls, with a bound.
pub fn poll<T>(limit: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) => {
                assert!(Instant::now() < deadline, "not within {limit:?}: {why}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

pub fn plexus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
}

/// Runs a plexus command to completion, panicking with its stderr on failure.
pub fn run_ok(args: &[&str]) -> String {
    let out = plexus().args(args).output().expect("plexus runs");
    assert!(
        out.status.success(),
        "plexus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "plexus-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// A network: governance key and allowlist in `dir/network`.
pub struct Network {
    pub dir: TempDir,
}

impl Network {
    pub fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        run_ok(&[
            "network",
            "init",
            "--network-dir",
            dir.0.join("network").to_str().unwrap(),
            "--name",
            "test",
        ]);
        Network { dir }
    }

    pub fn net_dir(&self) -> PathBuf {
        self.dir.0.join("network")
    }

    pub fn allowlist(&self) -> PathBuf {
        self.net_dir().join("allowlist.bin")
    }

    /// Creates a node key; returns (data dir, PeerId).
    pub fn new_key(&self, name: &str) -> (PathBuf, String) {
        let data = self.dir.0.join(name);
        let id = run_ok(&["keys", "new", "--data-dir", data.to_str().unwrap()])
            .trim()
            .to_string();
        (data, id)
    }

    pub fn admit(&self, id: &str, tags: &[&str]) {
        let mut args = vec![
            "allowlist",
            "add",
            id,
            "--network-dir",
            self.net_dir().to_str().unwrap().to_owned().leak(),
        ];
        for t in tags {
            args.push("--tag");
            args.push(t);
        }
        run_ok(&args);
    }

    /// A key allowlisted as a job submitter; returns its key file.
    pub fn submitter(&self, name: &str) -> PathBuf {
        let (home, id) = self.new_key(name);
        run_ok(&[
            "allowlist",
            "add",
            &id,
            "--submitter",
            "--network-dir",
            self.net_dir().to_str().unwrap(),
        ]);
        home.join("node.key")
    }

    /// Starts node `n{index + 1}` from its data dir; every node but the first
    /// bootstraps from `boot` (the first node's listen address).
    pub fn start(&self, index: usize, home: &Path, config: &Path, boot: Option<&str>) -> NodeProc {
        NodeProc::start(
            &format!("n{}", index + 1),
            home,
            &self.allowlist(),
            config,
            boot,
        )
    }

    /// Starts a node from each data dir, the first as the others' bootstrap.
    pub fn start_all(&self, homes: &[PathBuf], config: &Path) -> Vec<NodeProc> {
        let mut nodes: Vec<NodeProc> = Vec::new();
        for (i, home) in homes.iter().enumerate() {
            let boot = nodes.first().map(|n| n.listen.clone());
            nodes.push(self.start(i, home, config, boot.as_deref()));
        }
        nodes
    }

    /// Keys for `count` nodes (`n1`, `n2`, …), each admitted with no tags; their
    /// data dirs.
    pub fn admitted(&self, count: usize) -> Vec<PathBuf> {
        (1..=count)
            .map(|i| {
                let (data, id) = self.new_key(&format!("n{i}"));
                self.admit(&id, &[]);
                data
            })
            .collect()
    }

    /// A config file with fast failure detection.
    pub fn fast_config(&self, name: &str) -> PathBuf {
        let path = self.dir.0.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            "[membership]\nprobe_interval = \"200ms\"\nprobe_timeout = \"80ms\"\nsync_interval = \"2s\"\n[resources]\ncpu = 4.0\nmemory = \"8GiB\"\n",
        )
        .unwrap();
        path
    }
}

/// Adds `lines` (TOML) at the end of the config file at `path`.
pub fn append_config(path: &Path, lines: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(lines);
    std::fs::write(path, text).unwrap();
}

/// A running `plexus node` process.
pub struct NodeProc {
    pub name: String,
    pub child: Child,
    pub id: String,
    pub api: String,
    /// The API token the node wrote into its data dir.
    pub token: String,
    pub listen: String,
    pub detection_bound: Duration,
    events: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl NodeProc {
    pub fn start(
        name: &str,
        data_dir: &Path,
        allowlist: &Path,
        config: &Path,
        bootstrap: Option<&str>,
    ) -> NodeProc {
        let mut cmd = plexus();
        cmd.args([
            "node",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--allowlist",
            allowlist.to_str().unwrap(),
        ])
        .args(["--config", config.to_str().unwrap(), "--api", "127.0.0.1:0"]);
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        Self::spawn(name, cmd)
    }

    /// Starts `cmd` (a `plexus` command that runs a node: `node`, `up`) and waits
    /// for its ready line.
    pub fn spawn(name: &str, mut cmd: Command) -> NodeProc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start plexus node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(v) if v["event"] == "ready" => v,
            other => {
                // Never leave the process behind (it would hold the test's pipes).
                let _ = child.kill();
                let _ = child.wait();
                panic!("the node did not report ready first: {other:?}");
            }
        };
        NodeProc {
            name: name.to_string(),
            child,
            id: ready["node"].as_str().unwrap().to_string(),
            api: ready["api"].as_str().unwrap().to_string(),
            token: std::fs::read_to_string(ready["api_token_file"].as_str().unwrap())
                .expect("the node wrote its API token")
                .trim()
                .to_string(),
            listen: ready["listen"][0].as_str().unwrap().to_string(),
            detection_bound: Duration::from_millis(ready["detection_bound_ms"].as_u64().unwrap()),
            events: rx,
            seen: vec![ready],
        }
    }

    /// Waits for an event satisfying `pred` (including ones already seen).
    pub fn wait_event(&mut self, limit: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "{}: no matching event within {limit:?}; saw {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Takes every event printed so far into `seen`, without waiting.
    pub fn drain(&mut self) -> &[Value] {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
        &self.seen
    }

    /// Waits until `count` distinct members have joined.
    pub fn wait_members(&mut self, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let joined: std::collections::BTreeSet<String> = self
                .seen
                .iter()
                .filter(|v| v["event"] == "member_joined")
                .filter_map(|v| v["node"].as_str().map(String::from))
                .collect();
            if joined.len() >= count {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "{}: only {} members joined within {limit:?}: {:?}\n\
                     its members view: {}\nits mesh stats: {}\nits node: {}",
                    self.name,
                    joined.len(),
                    self.seen,
                    self.try_get("/v1/members"),
                    self.try_get("/v1/stats"),
                    self.try_get("/v1/node"),
                ),
            }
        }
    }

    pub fn get(&self, path: &str) -> Value {
        let mut resp = ureq::get(&format!("{}{path}", self.api))
            .header("authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.body_mut().read_json().unwrap()
    }

    /// Like [`NodeProc::get`], for diagnostics: the error as text instead of a panic.
    pub fn try_get(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.api))
            .header("authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| e.to_string())
            .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()))
            .unwrap_or_else(|e| format!("(GET {path} failed: {e})"))
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .post(&format!("{}{path}", self.api))
            .header("authorization", format!("Bearer {}", self.token))
            .send_json(&body)
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let value: Value = resp.body_mut().read_json().map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{status}: {value}"))
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc_kill(self.child.id() as i32, sig);
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
