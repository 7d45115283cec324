//! `plexus train` as a user runs it: two separate processes train the bundled
//! digits model to the same weights hash, at a held-out accuracy of at least
//! 95%, and write a weights file that loads under that hash.

mod common;

use plexus::ml::model::Weights;

fn run(out: &std::path::Path) -> (f64, String) {
    let output = common::plexus()
        .args(["train", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let accuracy: f64 = stdout
        .split("held-out accuracy ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {stdout}"));
    let hash = stdout
        .lines()
        .find_map(|l| l.strip_prefix("weights "))
        .unwrap_or_else(|| panic!("no hash in {stdout}"))
        .to_string();
    (accuracy, hash)
}

#[test]
fn two_processes_train_the_same_weights_at_95_percent() {
    let dir = common::TempDir::new("train");
    let (acc_a, hash_a) = run(&dir.0.join("a.weights"));
    let (acc_b, hash_b) = run(&dir.0.join("b.weights"));
    assert!(acc_a >= 95.0, "held-out accuracy {acc_a}%");
    assert_eq!(acc_a, acc_b);
    assert_eq!(hash_a, hash_b, "the same seed gives the same weights");
    let bytes = std::fs::read(dir.0.join("a.weights")).unwrap();
    let expected: [u8; 32] = plexus::cli::client::from_hex(&hash_a)
        .unwrap()
        .try_into()
        .unwrap();
    Weights::decode_expecting(&bytes, &expected).unwrap();
    // A bad setting is the user's error (exit 2), not a panic.
    let out = common::plexus()
        .args(["train", "--batch", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
