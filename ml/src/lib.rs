//! # plexus-ml: models on Burn
//!
//! The model side of Plexus's AI work: a bundled data set and model, reproducible
//! training, and weights named by their content hash, on Burn's `flex` CPU backend
//! (`wgpu` behind the `wgpu` feature).
//!
//! | module | what |
//! |---|---|
//! | [`digits`] | the bundled handwritten-digits data set and its fixed held-out split |
//! | [`model`] | the digits classifier (an MLP), its weights file, and the weights' content hash |
//! | [`train`] | reproducible training: same seed, same weights hash |
//! | [`engine`] | the backend passes run on (flex, or wgpu behind the feature) and the name receipts give it |
//! | [`executor`] | serving: a model directory by hash with a bounded cache, the request and output bytes, one batch plan run exactly |
//!
//! The daemon's `infer` stage kind serves models with these (its activation does
//! the dynamic batching), and signs a receipt per batch that `plexus-poai` checks.
//!
//! Determinism: weights are initialised and data shuffled from our own seeded
//! generator ([`plexus_actors::rng::DetRng`]), never from Burn's process-global
//! seed, so two trainings in one process, or in two, agree (`tests/` checks it).

pub mod digits;
pub mod engine;
pub mod executor;
pub mod model;
pub mod train;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
