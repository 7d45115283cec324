//! Storage across real `plexus node` processes: a sealed file put with r = 3 on
//! four nodes survives two holders killed in turn (SIGKILL), comes back intact,
//! and is repaired back to three copies each time; nodes hold only ciphertext;
//! only readers open it; sharing adds a reader; bad input gets clear errors; the
//! key-value store converges across nodes, deletes included.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{Network, NodeProc, TempDir, plexus, poll};
use serde_json::Value;

/// Runs `plexus ARGS` against `node`'s API.
fn cli(node: &NodeProc, args: &[&str]) -> Output {
    plexus()
        .args(args)
        .args(["--api", &node.api])
        .env("PLEXUS_API_TOKEN", &node.token)
        .output()
        .expect("plexus runs")
}

fn ok(node: &NodeProc, args: &[&str]) -> String {
    let out = cli(node, args);
    assert!(
        out.status.success(),
        "plexus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stat(node: &NodeProc, id: &str) -> Value {
    serde_json::from_str(&ok(node, &["fs", "stat", id])).expect("stat prints JSON")
}

/// A deterministic, incompressible-looking file of `len` bytes.
fn write_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn holders(stat: &Value) -> Vec<String> {
    let mut all: Vec<String> = stat["manifest_holders"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            stat["chunk_holders"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["holders"].as_array().into_iter().flatten()),
        )
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    all.sort();
    all.dedup();
    all
}

#[test]
fn a_sealed_file_survives_two_holders_killed_in_turn_and_is_repaired_to_r() {
    let net = Network::new("storage");
    let homes = net.admitted(4);
    let config = net.fast_config("fast");
    // Scans (and so hand-offs) every 2 s rather than 30.
    common::append_config(&config, "[storage]\nscan_every = \"2s\"\n");
    let mut nodes = net.start_all(&homes, &config);
    for node in nodes.iter_mut() {
        node.wait_members(3, Duration::from_secs(20));
    }
    let work = TempDir::new("storage-files");
    let alice = work.0.join("alice.age");
    let bob = work.0.join("bob.age");
    let bob_recipient = common::run_ok(&["fs", "keygen", "-o", bob.to_str().unwrap()]);
    let bob_recipient = bob_recipient.trim();
    assert!(bob_recipient.starts_with("age1"), "{bob_recipient}");

    // 3.5 MiB: four chunks, the last short.
    let file = work.0.join("model.bin");
    let plain = write_file(&file, (7 << 20) / 2, 7);
    let id = ok(
        &nodes[0],
        &[
            "fs",
            "put",
            file.to_str().unwrap(),
            "--replicas",
            "3",
            "--identity",
            alice.to_str().unwrap(),
        ],
    );
    let id = id.trim().to_string();
    assert!(id.starts_with("bafkr4i"), "{id}");
    let s = stat(&nodes[1], &id);
    assert_eq!(s["chunks"], 4);
    assert_eq!(s["sealed"], true);
    assert_eq!(
        (s["copies_min"].as_u64(), s["copies_max"].as_u64()),
        (Some(3), Some(3)),
        "{s}"
    );

    // Storing nodes hold ciphertext only: no 64-byte run of the file is in any
    // chunk a node serves.
    let sample: Vec<&[u8]> = plain.chunks(1 << 20).map(|c| &c[1000..1064]).collect();
    for c in s["chunk_holders"].as_array().unwrap() {
        let raw = ureq_get_bytes(
            &nodes[2],
            &format!("/v1/fs/chunks/{}", c["id"].as_str().unwrap()),
        );
        assert!(raw.len() > 1 << 19);
        for s in &sample {
            assert!(
                !raw.windows(64).any(|w| w == *s),
                "plaintext in a stored chunk"
            );
        }
    }

    // Only readers open it; sharing adds one without touching the chunks.
    let out = work.0.join("out.bin");
    let denied = cli(
        &nodes[1],
        &[
            "fs",
            "get",
            &id,
            "-o",
            out.to_str().unwrap(),
            "--identity",
            bob.to_str().unwrap(),
        ],
    );
    assert_eq!(denied.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("not a reader"));
    assert!(!out.exists(), "a failed get leaves no output");
    ok(
        &nodes[0],
        &[
            "fs",
            "share",
            &id,
            "--to",
            bob_recipient,
            "--identity",
            alice.to_str().unwrap(),
        ],
    );
    let chunks_before: Vec<String> = s["chunk_holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();

    // Kill two holders in turn (never the node the client uses); each time the
    // copies come back to three on the survivors, and the file reads back intact.
    let gateway = nodes[0].id.clone();
    let mut killed = Vec::new();
    for round in 0..2 {
        let s = stat(&nodes[0], &id);
        let victim = holders(&s)
            .into_iter()
            .find(|h| *h != gateway && nodes.iter().any(|n| n.id == *h))
            .expect("a holder to kill");
        let index = nodes.iter().position(|n| n.id == victim).unwrap();
        let mut dead = nodes.remove(index);
        dead.kill();
        killed.push(dead.name.clone());
        let live = nodes.len();
        let want = 3.min(live);
        poll(Duration::from_secs(60), || {
            let s = stat(&nodes[0], &id);
            let held = holders(&s);
            if held.contains(&victim) {
                return Err(format!("round {round}: the dead node still counted: {s}"));
            }
            match s["copies_min"].as_u64() {
                Some(m) if m as usize >= want => Ok(()),
                _ => Err(format!("round {round}: not repaired to {want}: {s}")),
            }
        });
        if round == 0 {
            // The first death needs a copy made somewhere (the second may not,
            // when the two survivors already hold everything).
            let status: Vec<Value> = nodes.iter().map(|n| n.get("/v1/fs/status")).collect();
            let repaired: u64 = status.iter().map(|s| s["repaired"].as_u64().unwrap()).sum();
            assert!(repaired >= 1, "{status:?}");
        }
        let reader = if round == 0 { &alice } else { &bob };
        get_back(
            &nodes[nodes.len() - 1],
            &id,
            &out,
            reader,
            &plain,
            &format!("round {round}"),
        );
    }
    let s = stat(&nodes[0], &id);
    let chunks_after: Vec<String> = s["chunk_holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        chunks_before, chunks_after,
        "sharing or repair re-encrypted the data"
    );

    // The dead come back with the copies they held: some chunks have four, until
    // the copies the repair made elsewhere are handed off, back to exactly three.
    for name in &killed {
        let i: usize = name.trim_start_matches('n').parse::<usize>().unwrap() - 1;
        let mut node = net.start(i, &homes[i], &config, Some(&nodes[0].listen));
        node.wait_members(nodes.len(), Duration::from_secs(20));
        nodes.push(node);
    }
    poll(Duration::from_secs(90), || {
        let s = stat(&nodes[0], &id);
        match (s["copies_min"].as_u64(), s["copies_max"].as_u64()) {
            (Some(3), Some(3)) => Ok(()),
            _ => Err(format!("not back to exactly 3 copies: {s}")),
        }
    });
    let handed_off: u64 = nodes
        .iter()
        .map(|n| n.get("/v1/fs/status")["handed_off"].as_u64().unwrap())
        .sum();
    assert!(handed_off >= 1, "no stray copy was handed off");
    get_back(&nodes[0], &id, &out, &alice, &plain, "after the hand-off");

    // Bad input: clear errors, exit code 2 for the client's fault.
    let unknown = format!("b{}", "a".repeat(58));
    for (args, says) in [
        (vec!["fs", "get", "bafkr4iaaaa"], "cut short"),
        (vec!["fs", "stat", "QmNotOurs"], "not a content id"),
        (vec!["fs", "stat", unknown.as_str()], "not a CIDv1"),
    ] {
        let out = cli(&nodes[0], &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let nobody = "0".repeat(64);
    let out = cli(&nodes[0], &["fs", "stat", &nobody]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no live node holds"));
    // A data chunk is not a manifest.
    let out = cli(&nodes[0], &["fs", "stat", &chunks_before[0]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a manifest"));
}

/// `plexus fs get ID` through `node` as `reader` into `out`, which must then
/// hold exactly `plain`.
fn get_back(
    node: &NodeProc,
    id: &str,
    out: &std::path::Path,
    reader: &std::path::Path,
    plain: &[u8],
    when: &str,
) {
    let _ = std::fs::remove_file(out);
    ok(
        node,
        &[
            "fs",
            "get",
            id,
            "-o",
            out.to_str().unwrap(),
            "--identity",
            reader.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(out).unwrap() == plain,
        "{when}: the file differs"
    );
}

fn ureq_get_bytes(node: &NodeProc, path: &str) -> Vec<u8> {
    let mut r = ureq::get(&format!("{}{path}", node.api))
        .header("authorization", format!("Bearer {}", node.token))
        .call()
        .unwrap();
    r.body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()
        .unwrap()
}

#[test]
fn the_key_value_store_converges_and_unpinned_files_are_collected() {
    let net = Network::new("kv");
    let homes = net.admitted(3);
    let config = net.fast_config("fast");
    common::append_config(&config, "[storage]\ngc_grace = \"2s\"\n");
    let mut nodes = net.start_all(&homes, &config);
    for node in nodes.iter_mut() {
        node.wait_members(2, Duration::from_secs(20));
    }
    ok(&nodes[0], &["kv", "put", "models/digits", "v1"]);
    ok(&nodes[1], &["kv", "put", "models/other", "x"]);
    for node in &nodes {
        poll(Duration::from_secs(20), || {
            let out = cli(node, &["kv", "get", "models/digits"]);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && text == "v1" {
                Ok(())
            } else {
                Err(format!("{}: {text:?}", node.name))
            }
        });
    }
    ok(&nodes[2], &["kv", "del", "models/digits"]);
    for node in &nodes {
        poll(Duration::from_secs(20), || {
            let out = cli(node, &["kv", "get", "models/digits"]);
            if out.status.code() == Some(2) {
                Ok(())
            } else {
                Err(format!("{}: still there", node.name))
            }
        });
        let listed = ok(node, &["kv", "ls", "models/"]);
        assert!(
            listed.contains("models/other") && !listed.contains("models/digits"),
            "{listed}"
        );
    }
    let roots: Vec<Value> = nodes
        .iter()
        .map(|n| n.get("/v1/fs/status")["kv_root"].clone())
        .collect();
    poll(Duration::from_secs(10), || {
        let roots: Vec<Value> = nodes
            .iter()
            .map(|n| n.get("/v1/fs/status")["kv_root"].clone())
            .collect();
        if roots.windows(2).all(|w| w[0] == w[1]) {
            Ok(())
        } else {
            Err(format!("{roots:?}"))
        }
    });
    assert_eq!(roots.len(), 3);
    // A bad key is the client's fault.
    let out = cli(&nodes[0], &["kv", "put", "", "v"]);
    assert_eq!(out.status.code(), Some(2));

    // Garbage collection: of two public files, the unpinned one is removed once
    // its grace is over; the pinned one stays.
    let work = TempDir::new("gc-files");
    let (keep, drop) = (work.0.join("keep.bin"), work.0.join("drop.bin"));
    write_file(&keep, 300_000, 1);
    write_file(&drop, 300_000, 2);
    let put = |f: &Path| {
        ok(
            &nodes[0],
            &[
                "fs",
                "put",
                f.to_str().unwrap(),
                "--public",
                "--replicas",
                "2",
            ],
        )
        .trim()
        .to_string()
    };
    let (keep_id, drop_id) = (put(&keep), put(&drop));
    ok(&nodes[1], &["fs", "unpin", &drop_id]);
    poll(Duration::from_secs(60), || {
        let out = cli(&nodes[2], &["fs", "stat", &drop_id]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() && err.contains("no live node holds") {
            Ok(())
        } else {
            Err(format!("the unpinned file is still there: {err}"))
        }
    });
    let s = stat(&nodes[2], &keep_id);
    assert_eq!(s["copies_min"], 2, "{s}");
    assert_eq!(s["pinned"], true);
    let collected: u64 = nodes
        .iter()
        .map(|n| n.get("/v1/fs/status")["collected"].as_u64().unwrap())
        .sum();
    assert!(collected >= 2, "{collected} chunks collected");
}

/// Peak resident memory of a process, from /proc (Linux), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs `plexus ARGS` against `node` to success, sampling its peak resident
/// memory until it exits: (stdout, peak bytes).
fn run_measured(node: &NodeProc, args: &[&str]) -> (String, u64) {
    let mut child = plexus()
        .args(args)
        .args(["--api", &node.api])
        .env("PLEXUS_API_TOKEN", &node.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("plexus runs");
    let pid = child.id();
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss(pid));
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "plexus {args:?} failed");
    (String::from_utf8_lossy(&out.stdout).into_owned(), peak)
}

#[test]
fn a_gigabyte_file_moves_through_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    let net = Network::new("gib");
    let homes = net.admitted(3);
    let config = net.fast_config("fast");
    let mut nodes = net.start_all(&homes, &config);
    for node in nodes.iter_mut() {
        node.wait_members(2, Duration::from_secs(20));
    }
    let work = TempDir::new("gib-files");
    let file = work.0.join("big.bin");
    // Written in 1 MiB pieces, hashed as it goes: never whole in memory.
    let mut hasher = blake3::Hasher::new();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut piece = vec![0u8; MIB as usize];
        for _ in 0..(GIB / MIB) {
            for b in piece.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            hasher.update(&piece);
            f.write_all(&piece).unwrap();
        }
    }
    let want = hasher.finalize();
    let me = work.0.join("me.age");
    let (out, client_put) = run_measured(
        &nodes[0],
        &[
            "fs",
            "put",
            file.to_str().unwrap(),
            "--replicas",
            "2",
            "--identity",
            me.to_str().unwrap(),
        ],
    );
    let id = out.trim().to_string();
    std::fs::remove_file(&file).unwrap();
    let back = work.0.join("back.bin");
    let (_, client_get) = run_measured(
        &nodes[2],
        &[
            "fs",
            "get",
            &id,
            "-o",
            back.to_str().unwrap(),
            "--identity",
            me.to_str().unwrap(),
        ],
    );
    let mut got = blake3::Hasher::new();
    {
        use std::io::Read;
        let mut f = std::fs::File::open(&back).unwrap();
        let mut piece = vec![0u8; MIB as usize];
        loop {
            let n = f.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            got.update(&piece[..n]);
        }
    }
    assert_eq!(got.finalize(), want, "the file came back different");
    // Memory stayed bounded: the client and every node peaked far below the
    // file's size.
    for (what, peak) in [("put", client_put), ("get", client_get)] {
        assert!(peak > 0, "no /proc figure for the client's {what}");
        assert!(
            peak < 256 * MIB,
            "the client's {what} peaked at {} MiB",
            peak / MIB
        );
    }
    for n in &nodes {
        let rss = peak_rss(n.child.id());
        assert!(rss > 0, "no /proc figure for {}", n.name);
        assert!(rss < 512 * MIB, "{} peaked at {} MiB", n.name, rss / MIB);
    }
}

#[test]
fn an_executor_loads_its_weights_from_storage_sealed_to_the_nodes() {
    use plexus::cli::digits;
    use plexus::cli::fs;
    use plexus::cli::local::{LocalCluster, LocalOptions};
    use plexus_ml::digits::Digits;
    use plexus_ml::train::{TrainConfig, train};
    let dir = TempDir::new("weights-from-storage");
    let cluster = LocalCluster::start_with(&dir.0, plexus, &LocalOptions::default()).unwrap();
    let data = Digits::bundled().unwrap();
    let trained = train(
        &TrainConfig {
            epochs: 2,
            ..TrainConfig::default()
        },
        &data,
    )
    .unwrap();
    let file = dir.0.join("digits.weights");
    std::fs::write(&file, trained.weights.encode().unwrap()).unwrap();
    // Sealed for the nodes only: each node's recipient from its API.
    let readers: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| {
            let v = n.api.get("/v1/node").unwrap();
            plexus_storage::access::recipient(v["recipient"].as_str().unwrap()).unwrap()
        })
        .collect();
    let stored = fs::store(&cluster.nodes[0].api, &file, &readers, false, Some(2), None).unwrap();
    let model = plexus_ml::hex(&trained.weights.hash());
    // No node holds the weights: the job names them by storage id.
    for n in &cluster.nodes {
        let held = n.api.get("/v1/models").unwrap().to_string();
        assert!(!held.contains(&model), "{held}");
    }
    let job = digits::job(&model).replace(
        "max_wait_ms = 2 }",
        &format!("max_wait_ms = 2, weights = \"{}\" }}", stored.id),
    );
    assert!(job.contains("weights = "), "{job}");
    let at = digits::deploy_job(&cluster, &job).unwrap();
    let host = cluster.nodes.iter().find(|n| n.id == at).unwrap();
    let held = host.api.get("/v1/models").unwrap().to_string();
    assert!(
        held.contains(&model),
        "the executor's node did not fetch the model: {held}"
    );
    let cases = digits::cases(&trained.weights).unwrap();
    let t = digits::classify(&cluster, &model, &cases[..40], 2, 4, &[]).unwrap();
    assert_eq!((t.answered, t.wrong), (40, 0), "{t:?}");
}
