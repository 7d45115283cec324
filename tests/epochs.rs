//! Epochs across real `plexus node` processes, anchored on a real chain: four
//! validators run the DKG over the mesh, sign and anchor epochs on anvil (the
//! contract verifies each threshold signature), keep signing with t of the rest
//! after one is killed with SIGKILL, and refuse votes from an admitted node that
//! is not on the committee; a fifth node, admitted but not a validator, follows
//! the signed checkpoints.

// Process-level tests: real sockets and real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use plexus::actors::ActorId;
use plexus::actors::codec;
use plexus::cli::anvil::Anvil;
use plexus::cli::demo::ANVIL_KEYS;
use plexus::cli::local::{LocalCluster, LocalEpochs, LocalOptions, wait_until};
use plexus::epochs::{EPOCH_LOCAL_ID, EpochMsg, EpochWire};
use plexus::epochs_core::agreement::EpochMessage;
use plexus::epochs_core::checkpoint::{SignedCheckpoint, Vote};
use plexus::mesh::driver::{MeshConfig, MeshEvent, read_key};
use plexus::{Node, NodeId};
use serde_json::Value;

const EPOCH: Duration = Duration::from_secs(8);
/// Validators; the node after them is a worker.
const VALIDATORS: usize = 4;

fn status(cluster: &LocalCluster, i: usize) -> Option<Value> {
    cluster.nodes[i].api.get("/v1/epochs").ok()
}

/// Epochs every live node reports final, with the hash each reports.
fn final_epochs(cluster: &LocalCluster) -> Vec<(u64, String)> {
    let mut per_node: Vec<Vec<(u64, String)>> = Vec::new();
    for (i, n) in cluster.nodes.iter().enumerate().take(VALIDATORS) {
        if !n.alive() {
            continue;
        }
        let Some(s) = status(cluster, i) else {
            return Vec::new();
        };
        per_node.push(
            s["epochs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|r| r["state"] == "final")
                .filter_map(|r| Some((r["epoch"].as_u64()?, r["hash"].as_str()?.to_string())))
                .collect(),
        );
    }
    let Some(first) = per_node.first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter(|e| per_node.iter().all(|p| p.contains(e)))
        .cloned()
        .collect()
}

fn checkpoint(cluster: &LocalCluster, i: usize, epoch: u64) -> SignedCheckpoint {
    let c = cluster.nodes[i]
        .api
        .get(&format!("/v1/epochs/{epoch}"))
        .unwrap();
    let bytes = plexus::cli::client::from_hex(c["export"].as_str().unwrap()).unwrap();
    SignedCheckpoint::decode(&bytes).unwrap()
}

#[test]
fn four_validators_sign_and_anchor_on_anvil_and_keep_signing_after_a_kill() {
    let anvil = Anvil::start().expect("anvil starts (scripts/install-chain-tools.sh)");
    let dir = common::TempDir::new("epochs");
    let options = LocalOptions {
        nodes: VALIDATORS,
        epochs: Some(LocalEpochs {
            length: EPOCH,
            genesis_in: Duration::from_secs(6),
            chain: Some((
                anvil.url.clone(),
                ANVIL_KEYS.iter().map(|k| k.to_string()).collect(),
            )),
        }),
        observers: 1,
        workers: 1,
        ..LocalOptions::default()
    };
    let mut cluster = LocalCluster::start_with(&dir.0, common::plexus, &options).unwrap();

    // The DKG: every node finishes with the same group key, threshold 3 of 4.
    let (keys, _) = wait_until("the DKG on every node", Duration::from_secs(60), || {
        let keys: Vec<String> = (0..4)
            .map(|i| status(&cluster, i).and_then(|s| s["group_key"].as_str().map(String::from)))
            .collect::<Option<_>>()?;
        Some(keys)
    })
    .unwrap();
    assert!(
        keys.iter().all(|k| *k == keys[0] && k.len() == 192),
        "{keys:?}"
    );
    let s0 = status(&cluster, 0).unwrap();
    assert_eq!(s0["threshold"], 3);
    assert_eq!(s0["committee"], 4);

    // Two epochs final on the chain, the same checkpoint everywhere.
    let (done, _) = wait_until("two epochs final on anvil", EPOCH * 6, || {
        let f = final_epochs(&cluster);
        (f.len() >= 2).then_some(f)
    })
    .unwrap();
    let ledger = s0["ledger"].as_str().map(String::from);
    let ledger = ledger
        .or_else(|| status(&cluster, 0)?["ledger"].as_str().map(String::from))
        .unwrap();
    assert!(ledger.starts_with("evm 0x"), "{ledger}");
    let address: [u8; 20] = plexus::cli::client::from_hex(ledger.trim_start_matches("evm "))
        .unwrap()
        .try_into()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (epoch, hash) in &done[..2] {
        let signed = checkpoint(&cluster, 1, *epoch);
        signed
            .verify(Some(&plexus::cli::client::from_hex(&keys[0]).unwrap()))
            .unwrap();
        assert_eq!(
            plexus::epochs_core::checkpoint::hex(&signed.hash().unwrap()),
            *hash
        );
        let on_chain = rt
            .block_on(plexus::ledger::deploy::anchored_hash(
                &anvil.url, address, *epoch,
            ))
            .unwrap();
        assert_eq!(
            on_chain,
            Some(signed.hash().unwrap()),
            "epoch {epoch} on chain"
        );
        assert!(signed.signers.len() >= 3);
    }
    // The CLI's offline check with `--chain`: the export verifies under the DKG's
    // key and is the checkpoint the contract holds for its epoch.
    let export = dir.0.join("export.bin");
    let out = common::plexus()
        .args([
            "checkpoint",
            "show",
            &done[0].0.to_string(),
            "--api",
            &cluster.nodes[2].api_url,
            "--export",
            export.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::plexus()
        .args([
            "checkpoint",
            "verify",
            export.to_str().unwrap(),
            "--group-key",
            &keys[0],
            "--chain",
            &anvil.url,
            "--contract",
            ledger.trim_start_matches("evm "),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("anchored: epoch"), "{stdout}");

    // The worker is not on the committee and follows: the same checkpoints, under
    // the same group key, once f + 1 = 2 members sent them.
    let worker = status(&cluster, VALIDATORS).unwrap();
    assert_eq!(worker["member"], false);
    let (followed, _) = wait_until("the worker to follow", EPOCH * 2, || {
        let w = status(&cluster, VALIDATORS)?;
        let rows = w["epochs"].as_array()?.clone();
        done[..2]
            .iter()
            .all(|(e, h)| {
                rows.iter().any(|r| {
                    r["epoch"].as_u64() == Some(*e)
                        && r["hash"].as_str() == Some(h)
                        && r["state"] == "signed"
                })
            })
            .then_some(w)
    })
    .unwrap();
    assert_eq!(followed["group_key"].as_str(), Some(keys[0].as_str()));
    assert_eq!(
        checkpoint(&cluster, VALIDATORS, done[0].0).hash().unwrap(),
        checkpoint(&cluster, 0, done[0].0).hash().unwrap()
    );

    // An admitted node that is not on the committee sends votes under a member's
    // share index: refused, counted, and never combined.
    let observer_key = read_key(&dir.0.join("o1").join("node.key")).unwrap();
    let observer_id = observer_key.node_id();
    let target: NodeId = cluster.nodes[0].id.parse().unwrap();
    let refused_before = status(&cluster, 0).unwrap()["refused"].as_u64().unwrap();
    let allowlist = plexus::cli::keys::load_allowlist(
        &dir.0.join("net").join(plexus::cli::keys::ALLOWLIST_FILE),
    )
    .unwrap();
    let (sent, observer) = rt.block_on(async {
        let mut config = MeshConfig::new(observer_key.clone(), allowlist);
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        config.bootstrap = vec![cluster.nodes[0].listen.parse().unwrap()];
        let node = Node::builder()
            .key(observer_key)
            .start_meshed(config)
            .await
            .unwrap();
        // Wait until the mesh admits it (its sends are refused before that).
        let mesh = node.mesh().unwrap().clone();
        let mut events = mesh.subscribe();
        let joined = async {
            while !mesh.members().iter().any(|m| m.id == target) {
                match events.recv().await {
                    Ok(MeshEvent::MemberJoined { node }) if node == target => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), joined)
            .await
            .expect("the observer joins the mesh within 20 s");
        let epoch = done[1].0 + 1;
        let mut sent = 0;
        for index in 0..4u32 {
            let wire = EpochWire::Epoch(EpochMessage::Vote {
                epoch,
                index,
                vote: Vote {
                    hash: [0x66; 32],
                    partial: vec![0xAB; 48],
                },
            });
            let bytes = codec::encode(&wire).unwrap();
            let to = node
                .system()
                .resolve::<EpochMsg>(ActorId::new(target, EPOCH_LOCAL_ID));
            if to
                .tell(EpochMsg::Wire {
                    from: observer_id,
                    bytes: bytes.into(),
                })
                .await
                .is_ok()
            {
                sent += 1;
            }
        }
        (sent, node)
    });
    assert_eq!(sent, 4);
    let (refused, _) = wait_until(
        "the forged votes to be refused",
        Duration::from_secs(10),
        || {
            let r = status(&cluster, 0)?["refused"].as_u64()?;
            (r >= refused_before + 4).then_some(r)
        },
    )
    .unwrap();
    assert!(refused >= refused_before + 4);
    rt.block_on(observer.shutdown());

    // Kill one validator: the epochs after it still sign, with the other three.
    let victim = 3;
    let victim_id: NodeId = cluster.nodes[victim].id.parse().unwrap();
    cluster.nodes[victim].kill();
    let killed_epoch = {
        let s = status(&cluster, 0).unwrap();
        s["current"].as_u64().unwrap()
    };
    let ((epoch, _), _) = wait_until("an epoch after the kill, final", EPOCH * 6, || {
        final_epochs(&cluster)
            .into_iter()
            .find(|(e, _)| *e > killed_epoch)
    })
    .unwrap();
    let signed = checkpoint(&cluster, 0, epoch);
    assert_eq!(signed.signers.len(), 3);
    assert!(!signed.signers.contains(&victim_id));
    assert!(!signed.signers.contains(&observer_id));
    let row = signed.checkpoint.row(&victim_id).unwrap();
    assert!(
        row.availability_ppm < 1_000_000,
        "the dead node looked available: {}",
        row.availability_ppm
    );
    let on_chain = rt
        .block_on(plexus::ledger::deploy::anchored_hash(
            &anvil.url, address, epoch,
        ))
        .unwrap();
    assert_eq!(on_chain, Some(signed.hash().unwrap()));
    cluster.stop();
}

/// `plexus up` runs a committee of one on the embedded ledger; the CLI lists its
/// epochs, exports a checkpoint, and verifies it offline against the group key
/// (and refuses it against another key, or when a byte changed).
#[test]
fn plexus_up_signs_and_anchors_with_a_committee_of_one_and_the_cli_verifies() {
    let dir = common::TempDir::new("up");
    let mut cmd = common::plexus();
    cmd.args([
        "up",
        "--data-dir",
        dir.0.to_str().unwrap(),
        "--api",
        "127.0.0.1:0",
        "--epoch-length",
        "3s",
    ]);
    let node = common::NodeProc::spawn("up", cmd);
    let row = common::poll(Duration::from_secs(60), || {
        let s = node.get("/v1/epochs");
        s["epochs"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["state"] == "final").cloned())
            .ok_or_else(|| format!("no final epoch yet: {s}"))
    });
    assert_eq!(row["signers"], 1);
    let status = node.get("/v1/epochs");
    assert_eq!(status["committee"], 1);
    assert_eq!(status["threshold"], 1);
    assert_eq!(status["ledger"], "embedded");
    let group_key = status["group_key"].as_str().unwrap().to_string();
    let epoch = row["epoch"].as_u64().unwrap().to_string();

    let cli = |args: &[&str]| {
        let out = common::plexus()
            .args(args)
            .env("PLEXUS_API_TOKEN", &node.token)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, listed, err) = cli(&["epochs", "--api", &node.api]);
    assert_eq!(code, Some(0), "{err}");
    assert!(listed.contains("(committee member)"), "{listed}");
    assert!(listed.contains("final"), "{listed}");
    let file = dir.0.join("checkpoint.bin");
    let (code, shown, err) = cli(&[
        "checkpoint",
        "show",
        &epoch,
        "--api",
        &node.api,
        "--export",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["epoch"].as_u64(), epoch.parse().ok());
    assert_eq!(shown["hash"], row["hash"]);
    let path = file.to_str().unwrap();
    let (code, verified, err) = cli(&["checkpoint", "verify", path, "--group-key", &group_key]);
    assert_eq!(code, Some(0), "{err}");
    assert!(verified.contains("(pinned)"), "{verified}");
    // Another key: refused.
    let mut other = group_key.clone().into_bytes();
    other[10] = if other[10] == b'a' { b'b' } else { b'a' };
    let other = String::from_utf8(other).unwrap();
    let (code, _, err) = cli(&["checkpoint", "verify", path, "--group-key", &other]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("INVALID"), "{err}");
    // A changed byte: refused, as a bad file or an invalid signature.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let (code, _, err) = cli(&["checkpoint", "verify", path, "--group-key", &group_key]);
    assert_ne!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
