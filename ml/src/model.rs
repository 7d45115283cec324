//! The digits classifier, its weights file, and the weights' content hash.
//!
//! An MLP: 64 pixels → 128 (ReLU) → 10 logits. Its weights travel as a
//! [`Weights`] file (a codec frame of named f32 tensors) and are named by
//! [`Weights::hash`], computed over the tensors themselves (names, shapes and
//! little-endian f32 values in a fixed order), not over any file's bytes, so two
//! files holding the same weights have the same name. Loading by hash refuses
//! weights whose hash differs.

use burn::module::{Module, Param};
use burn::nn::{Linear, Relu};
use burn::prelude::*;
use plexus_actors::codec;
use plexus_actors::rng::DetRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Digest;
use crate::digits::{CLASSES, Image, PIXELS};

/// The architecture's name, part of the weights' hash.
pub const ARCH: &str = "digits-mlp-64-128-10";
/// Hidden units.
pub const HIDDEN: usize = 128;
/// The weights file format.
pub const WEIGHTS_FORMAT: u16 = 1;
/// Largest weights file accepted.
pub const WEIGHTS_BYTES_MAX: usize = 64 << 20;

/// The tensors of [`ARCH`], in hash order: (name, shape).
const TENSORS: [(&str, &[usize]); 4] = [
    ("l1.weight", &[PIXELS, HIDDEN]),
    ("l1.bias", &[HIDDEN]),
    ("l2.weight", &[HIDDEN, CLASSES]),
    ("l2.bias", &[CLASSES]),
];

/// The classifier.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    act: Relu,
}

/// One named tensor of a weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    /// Its name (`l1.weight`).
    pub name: String,
    /// Its shape.
    pub shape: Vec<u32>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// A weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// [`WEIGHTS_FORMAT`].
    pub format: u16,
    /// [`ARCH`].
    pub arch: String,
    /// The tensors, in [`TENSORS`] order.
    pub tensors: Vec<NamedTensor>,
}

/// Why weights were refused. The file's fault, or the caller's (a wrong hash).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Not a weights file (or over [`WEIGHTS_BYTES_MAX`]).
    #[error("not a weights file: {0}")]
    Decode(String),
    /// Another format or architecture.
    #[error(
        "weights for `{arch}` format {format}; this build reads `{ARCH}` format {WEIGHTS_FORMAT}"
    )]
    Arch {
        /// The file's architecture.
        arch: String,
        /// Its format.
        format: u16,
    },
    /// A tensor missing, extra, misnamed or misshapen, or holding a NaN or infinity.
    #[error("tensor {index}: {why}")]
    Tensor {
        /// Its position.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// The weights are not the ones asked for.
    #[error("weights hash {got}, expected {expected}")]
    Hash {
        /// What was asked for.
        expected: String,
        /// What the file holds.
        got: String,
    },
}

impl Weights {
    /// The weights' content hash: SHA-256 over a domain, the architecture, and
    /// each tensor's name, shape and little-endian f32 values, in order.
    pub fn hash(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(b"plexus-weights-v1");
        let field = |h: &mut Sha256, bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(&mut h, self.arch.as_bytes());
        for t in &self.tensors {
            field(&mut h, t.name.as_bytes());
            h.update((t.shape.len() as u64).to_be_bytes());
            for d in &t.shape {
                h.update(u64::from(*d).to_be_bytes());
            }
            h.update((t.values.len() as u64).to_be_bytes());
            for v in &t.values {
                h.update(v.to_le_bytes());
            }
        }
        h.finalize().into()
    }

    /// Checks the architecture and every tensor.
    pub fn check(&self) -> Result<(), ModelError> {
        if self.format != WEIGHTS_FORMAT || self.arch != ARCH {
            return Err(ModelError::Arch {
                arch: self.arch.chars().take(64).collect(),
                format: self.format,
            });
        }
        if self.tensors.len() != TENSORS.len() {
            return Err(ModelError::Tensor {
                index: self.tensors.len().min(TENSORS.len()),
                why: format!("{} tensors, not {}", self.tensors.len(), TENSORS.len()),
            });
        }
        for (index, (t, (name, shape))) in self.tensors.iter().zip(TENSORS).enumerate() {
            let bad = |why: String| ModelError::Tensor { index, why };
            if t.name != name {
                return Err(bad(format!("named `{}`, expected `{name}`", t.name)));
            }
            let want: Vec<u32> = shape.iter().map(|d| *d as u32).collect();
            if t.shape != want {
                return Err(bad(format!("shape {:?}, expected {want:?}", t.shape)));
            }
            if t.values.len() != shape.iter().product::<usize>() {
                return Err(bad(format!("{} values for shape {want:?}", t.values.len())));
            }
            if t.values.iter().any(|v| !v.is_finite()) {
                return Err(bad("holds a NaN or an infinity".into()));
            }
        }
        Ok(())
    }

    /// Encodes as a file.
    pub fn encode(&self) -> Result<Vec<u8>, ModelError> {
        codec::encode(self).map_err(|e| ModelError::Decode(e.to_string()))
    }

    /// Decodes and checks a file.
    pub fn decode(bytes: &[u8]) -> Result<Weights, ModelError> {
        let w: Weights = codec::decode_with_limit(bytes, WEIGHTS_BYTES_MAX)
            .map_err(|e| ModelError::Decode(e.to_string()))?;
        w.check()?;
        Ok(w)
    }

    /// Decodes a file and checks it holds the weights named `expected`.
    pub fn decode_expecting(bytes: &[u8], expected: &Digest) -> Result<Weights, ModelError> {
        let w = Self::decode(bytes)?;
        let got = w.hash();
        if got != *expected {
            return Err(ModelError::Hash {
                expected: crate::hex(expected),
                got: crate::hex(&got),
            });
        }
        Ok(w)
    }

    /// Fresh weights for [`ARCH`]: uniform in ±1/√fan_in, drawn from `seed`.
    pub fn init(seed: u64) -> Weights {
        let mut rng = DetRng::split(seed, 0x3A7);
        let tensors = TENSORS
            .iter()
            .map(|(name, shape)| {
                let fan_in = shape[0];
                let k = (1.0 / fan_in as f64).sqrt();
                let n: usize = shape.iter().product();
                NamedTensor {
                    name: (*name).to_string(),
                    shape: shape.iter().map(|d| *d as u32).collect(),
                    values: (0..n)
                        .map(|_| ((rng.unit() * 2.0 - 1.0) * k) as f32)
                        .collect(),
                }
            })
            .collect();
        Weights {
            format: WEIGHTS_FORMAT,
            arch: ARCH.into(),
            tensors,
        }
    }
}

fn tensor<const D: usize>(t: &NamedTensor, device: &Device) -> Tensor<D> {
    let shape: Vec<usize> = t.shape.iter().map(|d| *d as usize).collect();
    Tensor::<D>::from_data(TensorData::new(t.values.clone(), shape), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

impl Mlp {
    /// The model holding `weights` (checked) on `device`.
    pub fn from_weights(weights: &Weights, device: &Device) -> Result<Mlp, ModelError> {
        weights.check()?;
        let t = &weights.tensors;
        let linear = |w: &NamedTensor, b: &NamedTensor| Linear {
            weight: Param::from_tensor(tensor::<2>(w, device)),
            bias: Some(Param::from_tensor(tensor::<1>(b, device))),
        };
        Ok(Mlp {
            l1: linear(&t[0], &t[1]),
            l2: linear(&t[2], &t[3]),
            act: Relu::new(),
        })
    }

    /// Its weights.
    pub fn weights(&self) -> Weights {
        let named = |name: &str, shape: &[usize], values: Vec<f32>| NamedTensor {
            name: name.into(),
            shape: shape.iter().map(|d| *d as u32).collect(),
            values,
        };
        let bias = |l: &Linear| l.bias.as_ref().map(|b| values(b.val())).unwrap_or_default();
        Weights {
            format: WEIGHTS_FORMAT,
            arch: ARCH.into(),
            tensors: vec![
                named(TENSORS[0].0, TENSORS[0].1, values(self.l1.weight.val())),
                named(TENSORS[1].0, TENSORS[1].1, bias(&self.l1)),
                named(TENSORS[2].0, TENSORS[2].1, values(self.l2.weight.val())),
                named(TENSORS[3].0, TENSORS[3].1, bias(&self.l2)),
            ],
        }
    }

    /// Logits for a batch of images, as a tensor (training uses this).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.l2.forward(self.act.forward(self.l1.forward(x)))
    }

    /// Logits for each image of a batch, in order.
    pub fn infer(&self, batch: &[Image], device: &Device) -> Vec<[f32; CLASSES]> {
        if batch.is_empty() {
            return Vec::new();
        }
        let flat: Vec<f32> = batch.iter().flatten().copied().collect();
        self.infer_rows(flat, device)
            .chunks_exact(CLASSES)
            .map(|c| {
                let mut row = [0f32; CLASSES];
                row.copy_from_slice(c);
                row
            })
            .collect()
    }

    /// Logits for a batch given as its input matrix (`rows × PIXELS` values, row
    /// by row; a trailing partial row is ignored), `rows × CLASSES` values row by
    /// row: [`Mlp::infer`] without the images in between.
    pub fn infer_rows(&self, mut pixels: Vec<f32>, device: &Device) -> Vec<f32> {
        let rows = pixels.len() / PIXELS;
        if rows == 0 {
            return Vec::new();
        }
        pixels.truncate(rows * PIXELS);
        let x = Tensor::<2>::from_data(TensorData::new(pixels, [rows, PIXELS]), device);
        values(self.forward(x))
    }
}

/// The class a row of logits picks (the first of equal maxima).
pub fn class(logits: &[f32; CLASSES]) -> u8 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_and_are_named_by_their_tensors() {
        let w = Weights::init(7);
        assert_eq!(w.check(), Ok(()));
        let bytes = w.encode().unwrap();
        let back = Weights::decode(&bytes).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.hash(), w.hash());
        assert_eq!(Weights::decode_expecting(&bytes, &w.hash()).unwrap(), w);
        assert_ne!(Weights::init(8).hash(), w.hash());
        // The model holds exactly the weights it was given.
        let device = Device::flex();
        let m = Mlp::from_weights(&w, &device).unwrap();
        assert_eq!(m.weights(), w);
    }

    #[test]
    fn wrong_or_corrupt_weights_are_refused_with_the_reason() {
        let w = Weights::init(1);
        let bytes = w.encode().unwrap();
        assert!(matches!(
            Weights::decode_expecting(&bytes, &[0; 32]),
            Err(ModelError::Hash { .. })
        ));
        assert!(matches!(
            Weights::decode(&bytes[..bytes.len() / 2]),
            Err(ModelError::Decode(_))
        ));
        assert!(matches!(
            Weights::decode(b"garbage"),
            Err(ModelError::Decode(_))
        ));
        let mut nan = w.clone();
        nan.tensors[1].values[3] = f32::NAN;
        assert!(matches!(
            nan.check(),
            Err(ModelError::Tensor { index: 1, .. })
        ));
        let mut short = w.clone();
        short.tensors[2].values.pop();
        assert!(matches!(
            short.check(),
            Err(ModelError::Tensor { index: 2, .. })
        ));
        let mut shape = w.clone();
        shape.tensors[0].shape = vec![128, 64];
        assert!(matches!(
            shape.check(),
            Err(ModelError::Tensor { index: 0, .. })
        ));
        let mut arch = w.clone();
        arch.arch = "resnet".into();
        assert!(matches!(arch.check(), Err(ModelError::Arch { .. })));
        let mut missing = w;
        missing.tensors.pop();
        assert!(matches!(missing.check(), Err(ModelError::Tensor { .. })));
    }

    #[test]
    fn inference_returns_one_row_per_image_in_order() {
        let device = Device::flex();
        let m = Mlp::from_weights(&Weights::init(3), &device).unwrap();
        let a = [0.5f32; PIXELS];
        let mut b = [0f32; PIXELS];
        b[10] = 1.0;
        let both = m.infer(&[a, b], &device);
        assert_eq!(both.len(), 2);
        assert_eq!(m.infer(&[a], &device)[0], both[0]);
        assert_eq!(m.infer(&[b], &device)[0], both[1]);
        assert!(m.infer(&[], &device).is_empty());
        assert_eq!(
            class(&[0.0, 3.0, 1.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            1
        );
    }
}
