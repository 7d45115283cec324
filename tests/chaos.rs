//! A chaos run anyone can repeat, in the shape of Jepsen: five `plexus node`
//! processes, each in a network namespace of its own (veth pairs on a bridge that
//! exist only during the run), a seeded nemesis, a client workload whose whole
//! history is recorded, and a checker run over that history afterwards.
//!
//! * **Nemesis** (seeded, printed as a timeline): SIGKILL and restart, SIGSTOP and
//!   SIGCONT, a partition (one node cut off from the others by blackhole routes in
//!   every namespace; the clients still reach it), packet loss and delay on one
//!   node's link (`tc netem`), and a full disk on the node whose data dir is a
//!   small tmpfs. At most two faults at once; every fault is healed at the end.
//! * **Workload**: five clients, one per node, each sending numbered messages to a
//!   durable `tally` actor (durability 3) through its node's API. Each send is
//!   recorded with its outcome: `ok` (the node's host accepted it into its client
//!   session), `fail` (refused: not accepted), or `info` (a timeout: unknown). A
//!   poller records each node's session and how far it was acknowledged.
//! * **Checker**, after healing and waiting for every live session to be
//!   acknowledged: the actor applied each session's messages in order with no
//!   gap or duplicate (`out_of_order` = 0: per-sender FIFO and exactly once);
//!   nothing acknowledged is lost (applied ≥ the highest acknowledgement seen);
//!   nothing is applied that was not sent (applied ≤ accepted + unknown); the live
//!   sessions were all acknowledged in the end; and at most one activation: never
//!   two nodes report the actor active in two polls in a row (a poll round takes
//!   a few ms; a hand-off's overlap is shorter than one round apart), and exactly
//!   one at the end.
//!
//! The run prints the nemesis timeline and the verdict, and writes the history to
//! `$CARGO_TARGET_DIR/chaos/history-<seed>.json`. `CHAOS_SECONDS` (default 40: the
//! short run in `make test`) and `CHAOS_SEED` (default: from the clock, printed)
//! set it; `make chaos` runs 300 s. Needs root (namespaces, tmpfs) and iproute2.

// Process-level tests: real sockets and real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Network, NodeProc};
use serde_json::{Value, json};

const NODES: usize = 5;
const ACTOR: &str = "chaos/tally/0";
const JOB: &str = r#"name = "chaos"
durability = 3
[resources]
cpu = "100m"
memory = "16MiB"

[[stage]]
name = "tally"
kind = "tally"
"#;
/// The node whose data dir is a tmpfs the nemesis fills.
const DISK_NODE: usize = 4;
const TMPFS_BYTES: u64 = 384 << 20;

/// A small seeded generator (xorshift64*): the schedule depends on the seed only.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The run's network: a bridge, and per node a namespace with a veth pair.
struct Net {
    id: u32,
    mounted: Option<PathBuf>,
}

impl Net {
    fn ns(&self, i: usize) -> String {
        format!("pxns{}n{i}", self.id)
    }
    fn bridge(&self) -> String {
        format!("pxbr{}", self.id)
    }
    fn ip(i: usize) -> String {
        format!("10.99.0.{}", 10 + i)
    }

    /// Removes what a killed run left behind (its `Drop` never ran): the bridge,
    /// veth ends and namespaces of every run whose process is gone. Its bridge
    /// holds this run's subnet too, so the new nodes could not reach one another.
    fn sweep_stale(id: u32) {
        let stale = |run: &str| {
            run.bytes().all(|b| b.is_ascii_digit())
                && run.parse::<u32>().is_ok_and(|r| r != id)
                && !std::path::Path::new(&format!("/proc/{run}")).exists()
        };
        let listed = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        // `84: pxv2707h0@if83: <...>`, `12: pxbr2707: <...>`
        for line in listed(&["-o", "link", "show"]).lines() {
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            let run = name
                .strip_prefix("pxbr")
                .or_else(|| name.strip_prefix("pxv").and_then(|r| r.split('h').next()));
            if run.is_some_and(stale) {
                let _ = sh(&["ip", "link", "del", name]);
            }
        }
        // `pxns2707n4 (id: 4)`
        for line in listed(&["netns", "list"]).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let run = name.strip_prefix("pxns").and_then(|r| r.split('n').next());
            if run.is_some_and(stale) {
                let _ = sh(&["ip", "netns", "del", name]);
            }
        }
    }

    fn create(id: u32) -> Result<Net, String> {
        Net::sweep_stale(id);
        let net = Net { id, mounted: None };
        let br = net.bridge();
        sh(&["ip", "link", "add", &br, "type", "bridge"])?;
        sh(&["ip", "addr", "add", "10.99.0.1/24", "dev", &br])?;
        sh(&["ip", "link", "set", &br, "up"])?;
        for i in 0..NODES {
            let ns = net.ns(i);
            let (host_side, inside) = (format!("pxv{id}h{i}"), format!("pxv{id}n{i}"));
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &host_side, "type", "veth", "peer", "name", &inside,
            ])?;
            sh(&["ip", "link", "set", &inside, "netns", &ns])?;
            sh(&["ip", "link", "set", &host_side, "master", &br])?;
            sh(&["ip", "link", "set", &host_side, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", &inside, "name", "eth0"])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Net::ip(i)),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// Cuts node `i` off from the other nodes (both ways); clients still reach it.
    fn partition(&self, i: usize, on: bool) {
        for j in (0..NODES).filter(|j| *j != i) {
            let verb = if on { "add" } else { "del" };
            let _ = sh(&[
                "ip",
                "-n",
                &self.ns(i),
                "route",
                verb,
                "blackhole",
                &format!("{}/32", Net::ip(j)),
            ]);
            let _ = sh(&[
                "ip",
                "-n",
                &self.ns(j),
                "route",
                verb,
                "blackhole",
                &format!("{}/32", Net::ip(i)),
            ]);
        }
    }

    fn netem(&self, i: usize, on: bool) {
        let ns = self.ns(i);
        if on {
            let _ = sh(&[
                "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                "loss", "20%", "delay", "40ms", "20ms",
            ]);
        } else {
            let _ = sh(&[
                "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root",
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..NODES {
            // The pair goes with either end; deleted from both sides in case a
            // process still holds the namespace open.
            let _ = sh(&["ip", "link", "del", &format!("pxv{}h{i}", self.id)]);
            let _ = sh(&["ip", "netns", "del", &self.ns(i)]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge()]);
        if let Some(m) = &self.mounted {
            let _ = sh(&["umount", "-l", m.to_str().unwrap_or_default()]);
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
struct Op {
    /// Milliseconds since the run started.
    at_ms: u64,
    client: usize,
    /// The node process life (0 = first start) the client talked to.
    life: u32,
    /// The message's number at this client.
    n: u64,
    /// `ok`, `fail` or `info`.
    outcome: &'static str,
    error: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
struct Poll {
    at_ms: u64,
    node: usize,
    life: u32,
    session: String,
    sent: u64,
    acked: u64,
    active: bool,
    round: u64,
}

/// What every thread shares.
struct Shared {
    start: Instant,
    /// Per node: (API URL, token, process life), while it runs.
    apis: Mutex<Vec<Option<(String, String, u32)>>>,
    ops: Mutex<Vec<Op>>,
    polls: Mutex<Vec<Poll>>,
    timeline: Mutex<Vec<(u64, String)>>,
    stop: AtomicBool,
}

impl Shared {
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn note(&self, what: String) {
        let at = self.ms();
        eprintln!("[{:>7.3} s] nemesis: {what}", at as f64 / 1000.0);
        self.timeline.lock().unwrap().push((at, what));
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn client(shared: Arc<Shared>, k: usize) {
    let agent = agent(Duration::from_secs(3));
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some((url, token, life)) = shared.apis.lock().unwrap()[k].clone() else {
            std::thread::sleep(Duration::from_millis(100)); // the node is down: wait for its restart
            continue;
        };
        n += 1;
        let result = agent
            .post(&format!("{url}/v1/send"))
            .header("authorization", format!("Bearer {token}"))
            .send_json(json!({ "actor": ACTOR, "messages": [format!("c{k} m{n}")] }));
        let (outcome, error) = match result {
            Ok(mut r) if r.status().is_success() => {
                let v: Value = r.body_mut().read_json().unwrap_or_default();
                if v["accepted"] == 1 {
                    ("ok", None)
                } else {
                    ("info", Some(format!("{v}")))
                }
            }
            // The server answered: not accepted.
            Ok(mut r) => (
                "fail",
                Some(r.body_mut().read_to_string().unwrap_or_default()),
            ),
            // No answer: it may or may not have been accepted.
            Err(e) => ("info", Some(e.to_string())),
        };
        shared.ops.lock().unwrap().push(Op {
            at_ms: shared.ms(),
            client: k,
            life,
            n,
            outcome,
            error,
        });
        if outcome != "ok" {
            std::thread::sleep(Duration::from_millis(50)); // back off a refused client
        }
    }
}

/// One poll round over every running node.
fn poll_round(shared: &Shared, agent: &ureq::Agent, round: u64) {
    let apis = shared.apis.lock().unwrap().clone();
    for (i, api) in apis.iter().enumerate() {
        let Some((url, token, life)) = api else {
            continue;
        };
        let Ok(mut r) = agent
            .get(&format!("{url}/v1/durable"))
            .header("authorization", format!("Bearer {token}"))
            .call()
        else {
            continue;
        };
        let Ok(v) = r.body_mut().read_json::<Value>() else {
            continue;
        };
        shared.polls.lock().unwrap().push(Poll {
            at_ms: shared.ms(),
            node: i,
            life: *life,
            session: v["session"].as_str().unwrap_or_default().to_string(),
            sent: v["sent"].as_u64().unwrap_or(0),
            acked: v["acked"].as_u64().unwrap_or(0),
            // `/v1/durable` lists the actors active on the node.
            active: v["actors"].get(ACTOR).is_some_and(|a| !a.is_null()),
            round,
        });
    }
}

fn node_command(
    net: &Net,
    i: usize,
    data: &Path,
    allowlist: &Path,
    config: &Path,
    boot: Option<&str>,
) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.ns(i)])
        .arg(env!("CARGO_BIN_EXE_plexus"))
        .args(["node", "--data-dir"])
        .arg(data)
        .arg("--allowlist")
        .arg(allowlist)
        .arg("--config")
        .arg(config)
        .args(["--listen", &format!("/ip4/{}/tcp/7000", Net::ip(i))])
        .args(["--api", &format!("{}:7070", Net::ip(i)), "--insecure-http"]);
    if let Some(b) = boot {
        cmd.args(["--bootstrap", b]);
    }
    cmd
}

#[test]
fn five_nodes_under_a_seeded_nemesis_lose_nothing_acknowledged() {
    let seconds: u64 = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64
        });
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} repeats the schedule), {seconds} s of faults");
    let mut net = Net::create(std::process::id() % 100_000)
        .expect("network namespaces (run as root, with iproute2)");

    let cluster = Network::new("chaos");
    let mut homes = Vec::new();
    for i in 0..NODES {
        if i == DISK_NODE {
            let dir = cluster.dir.0.join(format!("n{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            sh(&[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &format!("size={TMPFS_BYTES}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .expect("a tmpfs");
            net.mounted = Some(dir);
        }
        let (data, id) = cluster.new_key(&format!("n{}", i + 1));
        cluster.admit(&id, &[]);
        homes.push(data);
    }
    let operator = cluster.submitter("operator");
    let config = cluster.dir.0.join("chaos.toml");
    std::fs::write(
        &config,
        format!(
            "api_operator_key = \"{}\"\n[membership]\nprobe_interval = \"200ms\"\nprobe_timeout = \"150ms\"\nsync_interval = \"2s\"\n[resources]\ncpu = 4.0\nmemory = \"8GiB\"\n",
            operator.display()
        ),
    )
    .unwrap();
    let allowlist = cluster.allowlist();
    let mut procs: Vec<Option<NodeProc>> = Vec::new();
    let mut lives = vec![0u32; NODES];
    let mut listen: Vec<String> = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let boot = listen.first().cloned();
        let p = NodeProc::spawn(
            &format!("n{}", i + 1),
            node_command(&net, i, home, &allowlist, &config, boot.as_deref()),
        );
        listen.push(p.listen.clone());
        procs.push(Some(p));
    }
    for p in procs.iter_mut().flatten() {
        p.wait_members(NODES - 1, Duration::from_secs(30));
    }
    // Deployed through the API, signed with the operator key (retried while the
    // scheduler starts).
    let first = procs[0].as_ref().unwrap();
    let deployed = common::poll(Duration::from_secs(60), || {
        let mut r = agent(Duration::from_secs(10))
            .post(&format!("{}/v1/jobs", first.api))
            .header("authorization", format!("Bearer {}", first.token))
            .send(JOB)
            .map_err(|e| e.to_string())?;
        let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(text)
        } else {
            Err(text)
        }
    });
    eprintln!("chaos: deployed {deployed}");
    common::poll(Duration::from_secs(60), || {
        let jobs = procs[1].as_ref().unwrap().get("/v1/jobs");
        let active = jobs["Status"]["actors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["key"] == ACTOR && a["active"] == true);
        if active {
            Ok(())
        } else {
            Err(format!("{jobs}"))
        }
    });

    let shared = Arc::new(Shared {
        start: Instant::now(),
        apis: Mutex::new(
            procs
                .iter()
                .map(|p| p.as_ref().map(|p| (p.api.clone(), p.token.clone(), 0)))
                .collect(),
        ),
        ops: Mutex::new(Vec::new()),
        polls: Mutex::new(Vec::new()),
        timeline: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..NODES)
        .map(|k| {
            let s = shared.clone();
            std::thread::spawn(move || client(s, k))
        })
        .collect();
    let poller = {
        let s = shared.clone();
        std::thread::spawn(move || {
            let agent = agent(Duration::from_secs(1));
            let mut round = 0;
            while !s.stop.load(Ordering::Relaxed) {
                round += 1;
                poll_round(&s, &agent, round);
                std::thread::sleep(Duration::from_millis(250)); // the polling period
            }
            round
        })
    };

    // The nemesis: a fault every 2-5 s, each lasting 2-6 s, at most two at once.
    let mut rng = Rng(seed | 1);
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        Kill,
        Pause,
        Partition,
        Netem,
        DiskFull,
    }
    let mut active: Vec<(Fault, usize, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut next_fault = Instant::now() + Duration::from_secs(2);
    let filler = net.mounted.as_ref().map(|d| d.join("ballast"));
    let heal = |fault: Fault,
                i: usize,
                procs: &mut Vec<Option<NodeProc>>,
                lives: &mut Vec<u32>,
                shared: &Shared| {
        match fault {
            Fault::Kill => {
                lives[i] += 1;
                let boot = (0..NODES)
                    .find(|j| *j != i && procs[*j].is_some())
                    .map(|j| listen[j].clone());
                let p = NodeProc::spawn(
                    &format!("n{}", i + 1),
                    node_command(&net, i, &homes[i], &allowlist, &config, boot.as_deref()),
                );
                shared.apis.lock().unwrap()[i] = Some((p.api.clone(), p.token.clone(), lives[i]));
                procs[i] = Some(p);
                shared.note(format!("restart n{} (life {})", i + 1, lives[i]));
            }
            Fault::Pause => {
                if let Some(p) = &procs[i] {
                    p.signal(18)
                } // SIGCONT
                shared.note(format!("SIGCONT n{}", i + 1));
            }
            Fault::Partition => {
                net.partition(i, false);
                shared.note(format!("heal the partition of n{}", i + 1));
            }
            Fault::Netem => {
                net.netem(i, false);
                shared.note(format!("clear loss and delay on n{}", i + 1));
            }
            Fault::DiskFull => {
                if let Some(f) = &filler {
                    let _ = std::fs::remove_file(f);
                }
                shared.note(format!("free the disk of n{}", i + 1));
            }
        }
    };
    while Instant::now() < deadline {
        let now = Instant::now();
        let mut i = 0;
        while i < active.len() {
            if active[i].2 <= now {
                let (f, n, _) = active.remove(i);
                heal(f, n, &mut procs, &mut lives, &shared);
            } else {
                i += 1;
            }
        }
        if now >= next_fault && active.len() < 2 {
            let fault = match rng.below(5) {
                0 => Fault::Kill,
                1 => Fault::Pause,
                2 => Fault::Partition,
                3 => Fault::Netem,
                _ => Fault::DiskFull,
            };
            let node = if matches!(fault, Fault::DiskFull) {
                DISK_NODE
            } else {
                rng.below(NODES as u64) as usize
            };
            let lasts = Duration::from_millis(2_000 + rng.below(4_000));
            if active.iter().all(|(_, n, _)| *n != node) {
                match fault {
                    Fault::Kill => {
                        shared.apis.lock().unwrap()[node] = None;
                        if let Some(mut p) = procs[node].take() {
                            p.kill();
                        }
                        shared.note(format!("SIGKILL n{}", node + 1));
                    }
                    Fault::Pause => {
                        if let Some(p) = &procs[node] {
                            p.signal(19)
                        } // SIGSTOP
                        shared.note(format!("SIGSTOP n{}", node + 1));
                    }
                    Fault::Partition => {
                        net.partition(node, true);
                        shared.note(format!("partition n{} from the other nodes", node + 1));
                    }
                    Fault::Netem => {
                        net.netem(node, true);
                        shared.note(format!("20% loss, 40±20 ms delay on n{}", node + 1));
                    }
                    Fault::DiskFull => {
                        if let Some(f) = &filler {
                            // Written until the tmpfs has no room left (the write fails then).
                            let _ = sh(&[
                                "sh",
                                "-c",
                                &format!("head -c {TMPFS_BYTES} /dev/zero >> {}", f.display()),
                            ]);
                        }
                        shared.note(format!("fill the disk of n{}", node + 1));
                    }
                }
                active.push((fault, node, now + lasts));
            }
            next_fault = now + Duration::from_millis(2_000 + rng.below(3_000));
        }
        std::thread::sleep(Duration::from_millis(50)); // the nemesis's clock tick
    }
    for (f, n, _) in std::mem::take(&mut active) {
        heal(f, n, &mut procs, &mut lives, &shared);
    }
    // Processes that died by themselves (a full disk may stop a node) start again.
    for i in 0..NODES {
        let exited = procs[i]
            .as_mut()
            .is_none_or(|p| p.child.try_wait().ok().flatten().is_some());
        if exited {
            shared.apis.lock().unwrap()[i] = None;
            procs[i] = None;
            heal(Fault::Kill, i, &mut procs, &mut lives, &shared);
        }
    }
    shared.note("all healed; the clients stop".into());
    shared.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let rounds = poller.join().unwrap();

    // Quiescence: every live session acknowledged, within a bound.
    let poll_agent = agent(Duration::from_secs(2));
    let mut round = rounds + 1;
    let quiet = (0..240).any(|_| {
        round += 1;
        let before = shared.polls.lock().unwrap().len();
        poll_round(&shared, &poll_agent, round);
        let polls = shared.polls.lock().unwrap();
        let fresh = &polls[before..];
        let done = fresh.len() == NODES && fresh.iter().all(|p| p.sent == p.acked);
        drop(polls);
        if !done {
            std::thread::sleep(Duration::from_millis(250));
        } // waiting for the acks to land
        done
    });

    // The actor's state, from the node where it is active.
    let mut tally = Value::Null;
    let mut active_at = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let Some(p) = p else { continue };
        let d = p.get("/v1/durable");
        if d["actors"].get(ACTOR).is_some_and(|a| !a.is_null()) {
            active_at.push(i);
            tally = d["actors"][ACTOR].clone();
        }
    }

    // ----- the checker -----
    let ops = shared.ops.lock().unwrap().clone();
    let polls = shared.polls.lock().unwrap().clone();
    let timeline = shared.timeline.lock().unwrap().clone();
    let mut problems: Vec<String> = Vec::new();
    if !quiet {
        problems.push("not every live session was acknowledged within 60 s of healing".into());
    }
    if active_at.len() != 1 {
        problems.push(format!(
            "the actor is active on {} nodes at the end",
            active_at.len()
        ));
    }
    let out_of_order = tally["out_of_order"].as_u64().unwrap_or(u64::MAX);
    if out_of_order != 0 {
        problems.push(format!(
            "{out_of_order} messages applied out of order or twice (per-sender FIFO, exactly once)"
        ));
    }
    // Sessions by node life, from the polls.
    let mut session_of: BTreeMap<(usize, u32), String> = BTreeMap::new();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    for p in &polls {
        if p.session.is_empty() {
            continue;
        }
        session_of.insert((p.node, p.life), p.session.clone());
        let a = acked.entry(p.session.clone()).or_default();
        *a = (*a).max(p.acked);
    }
    let applied = |s: &str| tally["senders"][s].as_u64().unwrap_or(0);
    let mut per_life: BTreeMap<(usize, u32), (u64, u64)> = BTreeMap::new(); // (ok, info)
    for op in &ops {
        let e = per_life.entry((op.client, op.life)).or_default();
        match op.outcome {
            "ok" => e.0 += 1,
            "info" => e.1 += 1,
            _ => {}
        }
    }
    let mut sessions = Vec::new();
    for ((node, life), (ok, info)) in &per_life {
        let Some(session) = session_of.get(&(*node, *life)) else {
            sessions.push(json!({ "node": node + 1, "life": life, "session": null, "accepted": ok, "unknown": info }));
            continue;
        };
        let (got, ack) = (applied(session), acked.get(session).copied().unwrap_or(0));
        if got < ack {
            problems.push(format!(
                "n{} life {life}: {ack} acknowledged but {got} applied: {} lost",
                node + 1,
                ack - got
            ));
        }
        if got > ok + info {
            problems.push(format!(
                "n{} life {life}: {got} applied but only {} sent",
                node + 1,
                ok + info
            ));
        }
        sessions.push(json!({ "node": node + 1, "life": life, "session": session, "accepted": ok, "unknown": info, "acknowledged": ack, "applied": got }));
    }
    // At most one activation: two nodes active in two consecutive poll rounds.
    let mut by_round: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for p in polls.iter().filter(|p| p.active) {
        by_round.entry(p.round).or_default().insert(p.node);
    }
    let doubled: Vec<u64> = by_round
        .iter()
        .filter(|(_, n)| n.len() > 1)
        .map(|(r, _)| *r)
        .collect();
    for pair in doubled.windows(2) {
        if pair[1] == pair[0] + 1 {
            problems.push(format!(
                "two nodes active in poll rounds {} and {}: {:?}",
                pair[0], pair[1], by_round[&pair[0]]
            ));
        }
    }
    let total_ok = ops.iter().filter(|o| o.outcome == "ok").count();
    let total_applied = tally["count"].as_u64().unwrap_or(0);
    let verdict = if problems.is_empty() {
        "valid"
    } else {
        "INVALID"
    };

    eprintln!("\n== nemesis timeline (seed {seed})");
    for (at, what) in &timeline {
        eprintln!("  {:>8.3} s  {what}", *at as f64 / 1000.0);
    }
    eprintln!(
        "== history: {} sends ({} accepted, {} refused, {} unknown), {} polls; the actor applied {}",
        ops.len(),
        total_ok,
        ops.iter().filter(|o| o.outcome == "fail").count(),
        ops.iter().filter(|o| o.outcome == "info").count(),
        polls.len(),
        total_applied
    );
    for s in &sessions {
        eprintln!("  {s}");
    }
    eprintln!("== verdict: {verdict}");
    for p in &problems {
        eprintln!("  - {p}");
    }

    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("chaos");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("history-{seed}.json"));
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({
            "seed": seed, "seconds": seconds, "verdict": verdict, "problems": problems,
            "timeline": timeline, "ops": ops, "polls": polls, "sessions": sessions, "tally": tally,
        }))
        .unwrap(),
    )
    .unwrap();
    eprintln!("== history written to {}", file.display());

    drop(procs);
    drop(net);
    assert!(problems.is_empty(), "chaos run {seed}: {problems:?}");
    // The run did something: traffic flowed and faults happened.
    assert!(total_ok > 100, "only {total_ok} messages accepted");
    assert!(total_applied >= 100, "the actor applied {total_applied}");
    assert!(timeline.len() >= 4, "{timeline:?}");
}
