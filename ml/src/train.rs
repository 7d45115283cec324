//! Reproducible training of the digits classifier.
//!
//! Adam with cross-entropy over minibatches, on `flex` with autodiff. The
//! weights start from [`Weights::init`] and the minibatches are shuffled each
//! epoch, both from [`TrainConfig::seed`] through our own generator, so the same
//! configuration gives the same weights hash.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use plexus_actors::rng::DetRng;

use crate::Digest;
use crate::digits::{Digits, PIXELS};
use crate::model::{Mlp, ModelError, Weights, class};

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Seeds the initial weights and the shuffles.
    pub seed: u64,
    /// Passes over the training images.
    pub epochs: u32,
    /// Images per step.
    pub batch: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            epochs: 30,
            batch: 32,
            learning_rate: 1e-3,
        }
    }
}

/// Why training could not run. The caller's fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A setting out of range.
    #[error("{0}")]
    Config(&'static str),
    /// The model refused its own weights (a bug).
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What training produced.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The weights.
    pub weights: Weights,
    /// Their content hash.
    pub hash: Digest,
    /// Correct held-out images.
    pub correct: usize,
    /// Held-out images.
    pub held_out: usize,
}

impl Trained {
    /// Held-out accuracy, 0 to 1.
    pub fn accuracy(&self) -> f64 {
        if self.held_out == 0 {
            0.0
        } else {
            self.correct as f64 / self.held_out as f64
        }
    }
}

/// Held-out accuracy of `weights`: (correct, total).
pub fn evaluate(weights: &Weights, data: &Digits) -> Result<(usize, usize), ModelError> {
    let device = Device::flex();
    let model = Mlp::from_weights(weights, &device)?;
    let test = data.test_indices();
    let images: Vec<_> = test.iter().map(|i| data.images[*i]).collect();
    let logits = model.infer(&images, &device);
    let correct = logits
        .iter()
        .zip(&test)
        .filter(|(l, i)| class(l) == data.labels[**i])
        .count();
    Ok((correct, test.len()))
}

/// Trains on the training split of `data` and evaluates on the held-out split.
pub fn train(cfg: &TrainConfig, data: &Digits) -> Result<Trained, TrainError> {
    if cfg.batch == 0 || cfg.batch > 4_096 {
        return Err(TrainError::Config("batch must be 1..=4096"));
    }
    if cfg.epochs == 0 || cfg.epochs > 10_000 {
        return Err(TrainError::Config("epochs must be 1..=10000"));
    }
    if !(cfg.learning_rate.is_finite() && cfg.learning_rate > 0.0) {
        return Err(TrainError::Config(
            "the learning rate must be a positive number",
        ));
    }
    let device = Device::flex().autodiff();
    let mut model = Mlp::from_weights(&Weights::init(cfg.seed), &device)?;
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut order = data.train_indices();
    let mut rng = DetRng::split(cfg.seed, 0x5EED);
    for _ in 0..cfg.epochs {
        rng.shuffle(&mut order);
        for chunk in order.chunks(cfg.batch) {
            let x: Vec<f32> = chunk.iter().flat_map(|i| data.images[*i]).collect();
            let y: Vec<i64> = chunk.iter().map(|i| i64::from(data.labels[*i])).collect();
            let n = chunk.len();
            let x = Tensor::<2>::from_data(TensorData::new(x, [n, PIXELS]), &device);
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), &device);
            let loss = loss_fn.forward(model.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.learning_rate, model, grads);
        }
    }
    let weights = model.weights();
    weights.check()?;
    let (correct, held_out) = evaluate(&weights, data)?;
    Ok(Trained {
        hash: weights.hash(),
        weights,
        correct,
        held_out,
    })
}
