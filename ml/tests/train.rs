//! Training the bundled digits model: accurate on held-out images, and
//! reproducible (the same seed gives the same weights hash).

use plexus_ml::digits::Digits;
use plexus_ml::hex;
use plexus_ml::train::{TrainConfig, TrainError, evaluate, train};

#[test]
fn training_reaches_95_percent_on_held_out_digits_and_is_reproducible() {
    let data = Digits::bundled().unwrap();
    let cfg = TrainConfig::default();
    let a = train(&cfg, &data).unwrap();
    assert_eq!(a.held_out, 360);
    assert!(
        a.accuracy() >= 0.95,
        "held-out accuracy {:.3}",
        a.accuracy()
    );
    // The weights say what they score, when evaluated afresh.
    assert_eq!(
        evaluate(&a.weights, &data).unwrap(),
        (a.correct, a.held_out)
    );
    let b = train(&cfg, &data).unwrap();
    assert_eq!(hex(&a.hash), hex(&b.hash), "same seed, same weights");
    let c = train(
        &TrainConfig {
            seed: 7,
            epochs: 2,
            ..cfg.clone()
        },
        &data,
    )
    .unwrap();
    assert_ne!(c.hash, a.hash);
    // Two epochs from another seed are worse than thirty: the figure is real.
    assert!(c.accuracy() < a.accuracy() || c.accuracy() < 0.97);
}

#[test]
fn bad_settings_are_refused() {
    let data = Digits::bundled().unwrap();
    for cfg in [
        TrainConfig {
            batch: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            epochs: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            learning_rate: f64::NAN,
            ..TrainConfig::default()
        },
    ] {
        assert!(matches!(train(&cfg, &data), Err(TrainError::Config(_))));
    }
}
