//! The model executor across real processes.
//!
//! * Determinism across processes and thread counts: two `plexus infer --local`
//!   processes, one running its passes on 1 thread and one on 2, print the same
//!   input and output digests for every pass of the same batch plan.
//! * A 3-node cluster of `plexus node` processes serves the digits classifier as
//!   an `infer` stage: every request is answered with its own output (checked
//!   against the model run here) while the executor migrates live under load,
//!   with none lost; then the executor moves to a node that signs wrong outputs,
//!   and the honest nodes' re-executions catch it, with no honest node accused;
//!   two epochs later the signed checkpoints credit the honest work and pay the
//!   cheater nothing for the epochs it cheated in.

mod common;

use std::time::Duration;

use plexus::cli::digits;
use plexus::cli::local::{LocalCluster, LocalEpochs, LocalOptions, LocalWork};
use plexus::ml::digits::Digits;
use plexus::ml::executor;
use plexus::ml::train::{TrainConfig, train};

fn digests(weights: &std::path::Path, input: &std::path::Path, threads: &str) -> Vec<String> {
    let out = common::run_ok(&[
        "infer",
        "--local",
        weights.to_str().unwrap(),
        input.to_str().unwrap(),
        "--batch",
        "16",
        "--threads",
        threads,
    ]);
    out.lines()
        .filter(|l| l.starts_with("pass "))
        .map(String::from)
        .collect()
}

#[test]
fn two_processes_with_different_thread_counts_compute_the_same_bytes() {
    let dir = common::TempDir::new("infer-det");
    let data = Digits::bundled().unwrap();
    let weights = plexus::ml::model::Weights::init(11);
    let wfile = dir.0.join("m.weights");
    std::fs::write(&wfile, weights.encode().unwrap()).unwrap();
    let images: Vec<Vec<u8>> = data.images[..100]
        .iter()
        .map(|im| executor::encode_input(im).to_vec())
        .collect();
    let input = dir.0.join("images.json");
    std::fs::write(&input, serde_json::to_vec(&images).unwrap()).unwrap();
    let one = digests(&wfile, &input, "1");
    let two = digests(&wfile, &input, "2");
    assert_eq!(one.len(), 7, "{one:?}");
    assert_eq!(one, two, "thread count changed the output bytes");
    // And the digests are the outputs': other weights give other digests.
    let other = dir.0.join("o.weights");
    std::fs::write(
        &other,
        plexus::ml::model::Weights::init(12).encode().unwrap(),
    )
    .unwrap();
    let three = digests(&other, &input, "2");
    assert_ne!(one, three);
}

#[test]
fn a_three_node_classifier_migrates_under_load_and_a_cheater_is_caught() {
    let dir = common::TempDir::new("infer-cluster");
    // Node 3 signs wrong outputs for every pass it runs; every receipt is
    // re-executed by both other nodes.
    let cheater = 2;
    let options = LocalOptions {
        nodes: 3,
        epochs: Some(LocalEpochs {
            length: Duration::from_secs(6),
            genesis_in: Duration::from_secs(5),
            chain: None,
        }),
        work: Some(LocalWork {
            sample_rate: 1.0,
            verifiers: 2,
            cheat: Some(cheater + 1),
        }),
        ..LocalOptions::default()
    };
    let cluster = LocalCluster::start_with(&dir.0, common::plexus, &options).unwrap();
    // A briefly trained model: accuracy is not the point here, exact answers are.
    let data = Digits::bundled().unwrap();
    let trained = train(
        &TrainConfig {
            epochs: 3,
            ..TrainConfig::default()
        },
        &data,
    )
    .unwrap();
    let model = digits::add_model(&cluster, &trained.weights).unwrap();
    let at = digits::deploy(&cluster, &model).unwrap();
    let index_of = |id: &str| cluster.nodes.iter().position(|n| n.id == id).unwrap();
    // Start on an honest node.
    let mut host = index_of(&at);
    if host == cheater {
        digits::migrate(&cluster, 0).unwrap();
        host = 0;
    }
    let honest_other = (0..3).find(|&i| i != host && i != cheater).unwrap();
    let cases = digits::cases(&trained.weights).unwrap();
    let (first, second) = cases.split_at(cases.len() / 2);

    // Live migration between honest nodes under load: every request answered,
    // each with its own output.
    let t = digits::classify(&cluster, &model, first, 4, 3, &[honest_other]).unwrap();
    assert_eq!(t.sent, first.len() as u64);
    assert_eq!(t.answered, t.sent, "requests lost across the migration");
    assert_eq!(t.wrong, 0, "an answer differs from the model's own output");
    assert_eq!(t.moves.len(), 1);
    assert_eq!(
        t.moves[0].1, cluster.nodes[honest_other].id,
        "it did not move"
    );
    assert_ne!(t.moves[0].0, t.moves[0].1);

    // Then onto the cheater, still under load.
    let t = digits::classify(&cluster, &model, second, 4, 3, &[cheater]).unwrap();
    assert_eq!(t.answered, t.sent, "requests lost across the migration");
    assert!(t.wrong > 0, "the cheater's answers were not wrong");
    let cheater_id = cluster.nodes[cheater].id.clone();

    // Both honest nodes catch it; nobody else is accused; honest work verifies.
    for judge in (0..3).filter(|&i| i != cheater) {
        let a = digits::audit(&cluster, judge, Some(&cheater_id), Duration::from_secs(90)).unwrap();
        assert!(
            a.evidence
                .iter()
                .any(|(n, _, kind)| *n == cheater_id && kind == "wrong_outputs"),
            "node {judge} holds no evidence against the cheater: {a:?}"
        );
        assert!(
            a.evidence.iter().all(|(n, _, _)| *n == cheater_id),
            "an honest node was accused: {a:?}"
        );
        assert!(a.verified > 0, "no honest receipt verified: {a:?}");
        assert_eq!(
            a.sampled, a.receipts,
            "sample rate 1 samples every receipt: {a:?}"
        );
    }

    // Two epochs after the work, the checkpoints credit it: every honest worker's
    // units as its tallies count them, and the cheater nothing in the epochs it
    // was proven wrong.
    let credits = digits::credits(&cluster, honest_other, Duration::from_secs(90)).unwrap();
    assert!(
        credits.iter().any(|c| c.node == cheater_id)
            && credits.iter().any(|c| c.node != cheater_id),
        "{credits:?}"
    );
    for c in &credits {
        if c.node == cheater_id {
            assert_eq!(c.credited, 0, "the cheater was paid: {c:?}");
        } else {
            // The lower median of three tallies, each holding the gossiped
            // receipts (the bound itself: epochs/src/work.rs, sim/tests/epochs.rs).
            assert!(c.credited > 0 && c.tallied > 0, "{c:?}");
            assert_ne!(c.work_root, "0".repeat(64), "{c:?}");
        }
    }
    drop(cluster);
}
