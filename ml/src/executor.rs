//! Serving a model: weights by content hash from a model directory (with a small
//! cache), the request format, and the batch runner whose outputs a receipt names.
//!
//! The queueing and batching decisions (a bounded queue, `max_batch`, `max_wait`,
//! backpressure) are not here: they are the durable actor's (the `infer` stage
//! kind asks its activation for them), so one copy of them serves every actor
//! kind, in the daemon and in the simulator alike. This module runs one batch
//! plan exactly: a batch of `n` requests is one forward pass over `n` rows, in
//! request order, which is what a verifier re-executes.
//!
//! # Requests and outputs on the wire
//!
//! A request is one 8×8 image as [`INPUT_BYTES`] bytes, one per pixel, each
//! `0..=16` (the data set's own scale), row by row; the model sees `pixel / 16`.
//! An output is the 10 logits as little-endian f32, [`OUTPUT_BYTES`] bytes: a
//! receipt's output digest is over exactly these bytes, so two nodes agree on it
//! only if their logits agree bit for bit.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use burn::prelude::Device;

use crate::Digest;
use crate::digits::{CLASSES, Image, PIXELS};
use crate::model::{Mlp, ModelError, Weights};

/// Bytes of one request.
pub const INPUT_BYTES: usize = PIXELS;
/// Bytes of one output.
pub const OUTPUT_BYTES: usize = CLASSES * 4;
/// Largest pixel value.
pub const PIXEL_MAX: u8 = 16;
/// Decoded weights a store keeps in memory; the least recently used go first.
pub const CACHE_MAX: usize = 8;
/// Most rows in one forward pass.
pub const BATCH_MAX: usize = 1_024;
/// The weights files' extension in a model directory.
pub const WEIGHTS_EXT: &str = "weights";

/// Why a request was refused: the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Not [`INPUT_BYTES`] bytes.
    #[error("an image is {INPUT_BYTES} bytes (8×8 pixels), not {0}")]
    Length(usize),
    /// A pixel over [`PIXEL_MAX`].
    #[error("pixel {index} is {value}; pixels are 0..={PIXEL_MAX}")]
    Pixel {
        /// Its position.
        index: usize,
        /// Its value.
        value: u8,
    },
}

/// Decodes one request.
pub fn decode_input(bytes: &[u8]) -> Result<Image, InputError> {
    let bytes = check_input(bytes)?;
    let mut image = [0f32; PIXELS];
    for (px, b) in image.iter_mut().zip(bytes) {
        *px = pixel(*b);
    }
    Ok(image)
}

/// Checks a request without decoding it: its [`INPUT_BYTES`] bytes, or why not.
/// [`check_input`] then [`push_input`] gives the values [`decode_input`] gives,
/// in the form a pass's input matrix is built in.
pub fn check_input(bytes: &[u8]) -> Result<&[u8; INPUT_BYTES], InputError> {
    let bytes: &[u8; INPUT_BYTES] = bytes
        .try_into()
        .map_err(|_| InputError::Length(bytes.len()))?;
    // Eight bytes at a time ("has a byte more than n", Bit Twiddling Hacks): for a
    // byte under 128, adding 127 - PIXEL_MAX sets its top bit exactly when it is
    // over PIXEL_MAX; a byte of 128 or more has it set already (its carry into
    // the next byte can only add a true to a true). Where it failed is looked for
    // only when it did.
    const ONES: u64 = u64::MAX / 255;
    const TOPS: u64 = ONES * 0x80;
    let (words, _) = bytes.as_chunks::<8>();
    let over = words.iter().fold(0u64, |acc, w| {
        let x = u64::from_le_bytes(*w);
        acc | ((x.wrapping_add(ONES * u64::from(127 - PIXEL_MAX)) | x) & TOPS)
    });
    if over != 0 {
        return Err(pixel_over(bytes));
    }
    Ok(bytes)
}

/// Which pixel is over [`PIXEL_MAX`] (apart, so the check's fast path stays small).
#[cold]
#[inline(never)]
fn pixel_over(bytes: &[u8; INPUT_BYTES]) -> InputError {
    let (index, value) = bytes
        .iter()
        .copied()
        .enumerate()
        .find(|(_, b)| *b > PIXEL_MAX)
        .unwrap_or((0, PIXEL_MAX));
    InputError::Pixel { index, value }
}

/// Appends a checked request's pixels to `pixels`, a pass's input matrix row by
/// row (the values [`decode_input`] gives).
pub fn push_input(bytes: &[u8; INPUT_BYTES], pixels: &mut Vec<f32>) {
    pixels.extend(bytes.iter().map(|b| pixel(*b)));
}

/// A pixel as the model sees it. Dividing by 16 is exact, so this is the same
/// value however it is computed.
fn pixel(b: u8) -> f32 {
    f32::from(b) / f32::from(PIXEL_MAX)
}

/// Encodes an image (values in 0..=1, as the data set holds them) as a request.
pub fn encode_input(image: &Image) -> [u8; INPUT_BYTES] {
    let mut out = [0u8; INPUT_BYTES];
    for (o, px) in out.iter_mut().zip(image) {
        *o = (px.clamp(0.0, 1.0) * f32::from(PIXEL_MAX)).round() as u8;
    }
    out
}

/// Encodes one output row.
pub fn encode_output(logits: &[f32; CLASSES]) -> [u8; OUTPUT_BYTES] {
    let mut out = [0u8; OUTPUT_BYTES];
    write_values(logits, &mut out);
    out
}

/// The outputs of logits given row by row (`rows × CLASSES` values, as
/// [`run_rows`] gives them): each row's [`encode_output`], one after another.
pub fn encode_outputs(logits: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; logits.len() * 4];
    write_values(logits, &mut out);
    out
}

fn write_values(values: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(values) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

/// Why output bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// Not [`OUTPUT_BYTES`] bytes.
    #[error("an output is {OUTPUT_BYTES} bytes (10 little-endian f32), not {0}")]
    Length(usize),
}

/// Decodes one output row ([`encode_output`]'s bytes).
pub fn decode_output(bytes: &[u8]) -> Result<[f32; CLASSES], OutputError> {
    if bytes.len() != OUTPUT_BYTES {
        return Err(OutputError::Length(bytes.len()));
    }
    let mut out = [0f32; CLASSES];
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(out)
}

/// Runs one batch plan: one forward pass over `inputs`, in order.
///
/// `inputs` longer than [`BATCH_MAX`] run in passes of [`BATCH_MAX`] (callers
/// that sign receipts keep batches within it, so a receipt is one pass).
pub fn run(model: &Mlp, inputs: &[Image], device: &Device) -> Vec<[f32; CLASSES]> {
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(BATCH_MAX) {
        out.extend(model.infer(chunk, device));
    }
    out
}

/// [`run`] over a pass's input matrix (`rows × PIXELS` values, row by row, as
/// [`push_input`] builds it): the logits, `rows × CLASSES` values row by row,
/// bit for bit [`run`]'s. A trailing partial row is ignored.
pub fn run_rows(model: &Mlp, pixels: Vec<f32>, device: &Device) -> Vec<f32> {
    let rows = pixels.len() / PIXELS;
    if rows <= BATCH_MAX {
        return model.infer_rows(pixels, device);
    }
    let mut out = Vec::with_capacity(rows * CLASSES);
    for chunk in pixels.chunks_exact(BATCH_MAX * PIXELS) {
        out.extend(model.infer_rows(chunk.to_vec(), device));
    }
    let rest = pixels.chunks_exact(BATCH_MAX * PIXELS).remainder();
    out.extend(model.infer_rows(rest.to_vec(), device));
    out
}

/// Why a model could not be had from a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No weights of that hash in the directory.
    #[error("no model {0} here (add it with `plexus models add FILE`)")]
    Missing(String),
    /// The file is not weights, or not the weights its name says: refused.
    #[error("model {name}: {why}")]
    Refused {
        /// The hash asked for (or the file's name).
        name: String,
        /// Why.
        why: ModelError,
    },
    /// The directory could not be read or written.
    #[error("model store {path}: {why}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What failed.
        why: String,
    },
}

/// A directory of weights files, each named by its weights' hash
/// (`<hex>.weights`), and the decoded weights most recently used.
///
/// Loading by hash decodes the file and recomputes the hash from the tensors: a
/// file whose weights are not the ones its name says is refused, so a damaged or
/// substituted file is never served.
#[derive(Debug)]
pub struct ModelStore {
    dir: PathBuf,
    cache: Mutex<VecDeque<(Digest, Arc<Weights>)>>,
}

impl ModelStore {
    /// Opens (creating) a model directory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.to_path_buf(),
            why: e.to_string(),
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cache: Mutex::new(VecDeque::new()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, hash: &Digest) -> PathBuf {
        self.dir.join(format!("{}.{WEIGHTS_EXT}", crate::hex(hash)))
    }

    /// Adds a weights file's contents; returns their hash. Refused unless the bytes
    /// decode as weights of this build's architecture.
    pub fn add(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let weights = Weights::decode(bytes).map_err(|why| StoreError::Refused {
            name: "the file".into(),
            why,
        })?;
        self.add_weights(&weights)
    }

    /// Adds weights; returns their hash.
    pub fn add_weights(&self, weights: &Weights) -> Result<Digest, StoreError> {
        let hash = weights.hash();
        let path = self.path_of(&hash);
        let io = |e: std::io::Error| StoreError::Io {
            path: path.clone(),
            why: e.to_string(),
        };
        let bytes = weights.encode().map_err(|why| StoreError::Refused {
            name: crate::hex(&hash),
            why,
        })?;
        // Write then rename: a crash leaves the old file or the new one, never half.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(hash)
    }

    /// The weights named `hash`, checked against it.
    pub fn get(&self, hash: &Digest) -> Result<Arc<Weights>, StoreError> {
        if let Ok(mut cache) = self.cache.lock()
            && let Some(i) = cache.iter().position(|(h, _)| h == hash)
            && let Some(hit) = cache.remove(i)
        {
            let weights = hit.1.clone();
            cache.push_front(hit);
            return Ok(weights);
        }
        let path = self.path_of(hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(crate::hex(hash)));
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path,
                    why: e.to_string(),
                });
            }
        };
        let weights = Arc::new(Weights::decode_expecting(&bytes, hash).map_err(|why| {
            StoreError::Refused {
                name: crate::hex(hash),
                why,
            }
        })?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.push_front((*hash, weights.clone()));
            cache.truncate(CACHE_MAX);
        }
        Ok(weights)
    }

    /// A model ready to run.
    pub fn model(&self, hash: &Digest, device: &Device) -> Result<Mlp, StoreError> {
        let weights = self.get(hash)?;
        Mlp::from_weights(&weights, device).map_err(|why| StoreError::Refused {
            name: crate::hex(hash),
            why,
        })
    }

    /// The hashes of the weights files in the directory, sorted, with their sizes.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let io = |e: std::io::Error| StoreError::Io {
            path: self.dir.clone(),
            why: e.to_string(),
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(stem) = name
                .to_str()
                .and_then(|n| n.strip_suffix(&format!(".{WEIGHTS_EXT}")))
            else {
                continue;
            };
            if let Some(hash) = parse_hash(stem) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((hash, len));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The hashes held decoded in memory, most recent first.
    pub fn cached(&self) -> Vec<Digest> {
        self.cache
            .lock()
            .map(|c| c.iter().map(|(h, _)| *h).collect())
            .unwrap_or_default()
    }
}

/// Parses a 64-digit hex hash.
pub fn parse_hash(text: &str) -> Option<Digest> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_backend_names_the_locked_versions() {
        // Where cargo runs the test from; the compiled-in path is stale if the
        // checkout moved while the build cache stayed.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let lock = std::fs::read_to_string(format!("{dir}/../Cargo.lock")).unwrap();
        let version = |name: &str| {
            let key = format!("name = \"{name}\"\nversion = \"");
            let rest = &lock[lock.find(&key).unwrap() + key.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        };
        let flex = format!(
            "burn {}, burn-flex {}",
            version("burn"),
            version("burn-flex")
        );
        assert_eq!(
            crate::engine::FLEX_SOFTWARE,
            flex,
            "update FLEX_SOFTWARE with the dependency"
        );
        let wgpu = format!(
            "burn {}, burn-wgpu {}, cubecl-wgpu {}",
            version("burn"),
            version("burn-wgpu"),
            version("cubecl-wgpu")
        );
        assert_eq!(
            crate::engine::WGPU_SOFTWARE,
            wgpu,
            "update WGPU_SOFTWARE with the dependency"
        );
    }

    use super::*;
    use crate::digits::Digits;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("plexus-ml-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let digits = Digits::bundled().unwrap();
        for image in digits.images.iter().take(50) {
            let bytes = encode_input(image);
            assert_eq!(decode_input(&bytes).unwrap(), *image);
        }
        assert_eq!(decode_input(&[0; 63]), Err(InputError::Length(63)));
        let mut bad = [0u8; 64];
        bad[5] = 17;
        assert_eq!(
            decode_input(&bad),
            Err(InputError::Pixel {
                index: 5,
                value: 17
            })
        );
        // Every value at every position: the word-wise check is the byte-wise one.
        for index in 0..INPUT_BYTES {
            for value in 0..=u8::MAX {
                let mut bytes = [PIXEL_MAX; INPUT_BYTES];
                bytes[index] = value;
                let got = check_input(&bytes).map(|_| ());
                if value > PIXEL_MAX {
                    assert_eq!(got, Err(InputError::Pixel { index, value }));
                } else {
                    assert_eq!(got, Ok(()));
                }
            }
        }
        let mut over = [0u8; INPUT_BYTES];
        over[63] = 255;
        over[7] = 200;
        assert_eq!(
            check_input(&over),
            Err(InputError::Pixel {
                index: 7,
                value: 200
            })
        );
        // Checked then pushed is decoded.
        let mut pixels = Vec::new();
        for image in digits.images.iter().take(5) {
            push_input(check_input(&encode_input(image)).unwrap(), &mut pixels);
        }
        let decoded: Vec<f32> = digits.images[..5].iter().flatten().copied().collect();
        assert_eq!(pixels, decoded);
        let logits = [1.5f32, -0.0, f32::MAX, 3e-8, 0.0, -7.25, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(decode_output(&encode_output(&logits)), Ok(logits));
        // Rows one after another are each row's output.
        let mut second = logits;
        second.rotate_left(3);
        let rows: Vec<f32> = logits.iter().chain(&second).copied().collect();
        assert_eq!(
            encode_outputs(&rows),
            [encode_output(&logits), encode_output(&second)].concat()
        );
        assert_eq!(decode_output(&[0; 39]), Err(OutputError::Length(39)));
    }

    #[test]
    fn a_store_serves_weights_by_hash_and_refuses_the_wrong_ones() {
        let dir = tmp("store");
        let store = ModelStore::open(&dir).unwrap();
        let a = Weights::init(1);
        let b = Weights::init(2);
        let ha = store.add(&a.encode().unwrap()).unwrap();
        let hb = store.add_weights(&b).unwrap();
        assert_eq!(ha, a.hash());
        assert_eq!(*store.get(&ha).unwrap(), a);
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.cached(), vec![ha]);
        // Not there.
        let missing = Weights::init(3).hash();
        assert!(matches!(store.get(&missing), Err(StoreError::Missing(_))));
        // A file holding other weights than its name says: refused, with both hashes.
        let fresh = ModelStore::open(&dir).unwrap();
        std::fs::copy(fresh.path_of(&hb), fresh.path_of(&ha)).unwrap();
        match fresh.get(&ha) {
            Err(StoreError::Refused {
                why: ModelError::Hash { expected, got },
                ..
            }) => {
                assert_eq!(expected, crate::hex(&ha));
                assert_eq!(got, crate::hex(&hb));
            }
            other => panic!("expected a hash refusal, got {other:?}"),
        }
        // A corrupt file: a clear error, not a panic.
        std::fs::write(fresh.path_of(&hb), b"not weights at all").unwrap();
        assert!(matches!(
            fresh.get(&hb),
            Err(StoreError::Refused {
                why: ModelError::Decode(_),
                ..
            })
        ));
        assert!(matches!(
            store.add(b"junk"),
            Err(StoreError::Refused { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = tmp("cache");
        let store = ModelStore::open(&dir).unwrap();
        let hashes: Vec<Digest> = (0..CACHE_MAX as u64 + 3)
            .map(|s| store.add_weights(&Weights::init(s)).unwrap())
            .collect();
        for h in &hashes {
            store.get(h).unwrap();
        }
        let cached = store.cached();
        assert_eq!(cached.len(), CACHE_MAX);
        assert_eq!(cached[0], *hashes.last().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The determinism condition the verifier relies on, for this model: a row's
    /// output bytes do not depend on the batch it ran in, nor its position.
    #[test]
    fn a_rows_output_does_not_depend_on_its_batch() {
        let device = Device::flex();
        let model = Mlp::from_weights(&Weights::init(9), &device).unwrap();
        let digits = Digits::bundled().unwrap();
        let images: Vec<Image> = digits.images[..64].to_vec();
        let together = run(&model, &images, &device);
        for (i, image) in images.iter().enumerate().step_by(7) {
            let alone = run(&model, std::slice::from_ref(image), &device);
            assert_eq!(encode_output(&alone[0]), encode_output(&together[i]));
        }
        let mut reversed = images.clone();
        reversed.reverse();
        let back = run(&model, &reversed, &device);
        for i in 0..images.len() {
            assert_eq!(
                encode_output(&back[images.len() - 1 - i]),
                encode_output(&together[i])
            );
        }
    }
    #[test]
    fn an_input_matrix_gives_the_images_logits_bit_for_bit() {
        let device = Device::flex();
        let model = Mlp::from_weights(&Weights::init(9), &device).unwrap();
        let digits = Digits::bundled().unwrap();
        // More rows than one pass takes, so the matrix is split as `run` splits.
        let images: Vec<Image> = (0..BATCH_MAX + 37)
            .map(|i| digits.images[i % digits.images.len()])
            .collect();
        let mut pixels = Vec::new();
        for image in &images {
            push_input(check_input(&encode_input(image)).unwrap(), &mut pixels);
        }
        let want: Vec<u32> = run(&model, &images, &device)
            .iter()
            .flatten()
            .map(|v| v.to_bits())
            .collect();
        let got: Vec<u32> = run_rows(&model, pixels.clone(), &device)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(got.len(), images.len() * CLASSES);
        assert_eq!(got, want);
        // A trailing partial row is ignored; nothing gives nothing.
        pixels.truncate(3 * PIXELS + 5);
        assert_eq!(run_rows(&model, pixels, &device).len(), 3 * CLASSES);
        assert!(run_rows(&model, Vec::new(), &device).is_empty());
    }
}
