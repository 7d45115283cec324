//! Which receipts are re-executed, and by whom: drawn from a beacon.
//!
//! The beacon for epoch `e` is randomness nobody knew while epoch `e`'s work ran:
//! the threshold signature over epoch `e`'s checkpoint, which exists only once a
//! threshold of the committee signed after the epoch ended (a unique signature: no
//! one can grind it). A receipt is sampled when `SHA-256(domain ‖ beacon ‖
//! receipt hash)`, read as a fraction, is below the sample rate; its verifiers are
//! the `k` eligible nodes other than its worker with the smallest `SHA-256(domain
//! ‖ beacon ‖ receipt hash ‖ node)` (rendezvous hashing). Anyone with the beacon
//! and the receipt recomputes both.
//!
//! # Detection bound
//!
//! A worker that returns wrong outputs in `m` of its receipts in an epoch is
//! caught in that epoch unless none of them is sampled with an honest verifier.
//! With sample rate `p` and, among the `n − 1` eligible verifiers, `b` colluding
//! with it, each wrong receipt is checked by an honest node with probability
//! `q = p · (1 − C(b, k) / C(n − 1, k))`, so it escapes with probability
//! `(1 − q)^m` ([`escape_probability`]).

use plexus_actors::NodeId;
use sha2::{Digest as _, Sha256};

use crate::receipt::Digest;

const SAMPLE_DOMAIN: &[u8] = b"plexus-poai-sample-v1";
const VERIFIER_DOMAIN: &[u8] = b"plexus-poai-verifier-v1";

/// Parts per million.
pub const PPM: u32 = 1_000_000;

fn draw(domain: &[u8], beacon: &[u8], receipt: &Digest, node: Option<&NodeId>) -> Digest {
    let mut h = Sha256::new();
    h.update(domain);
    h.update((beacon.len() as u64).to_be_bytes());
    h.update(beacon);
    h.update(receipt);
    if let Some(n) = node {
        h.update(n.to_bytes());
    }
    h.finalize().into()
}

/// Whether the receipt named `receipt` is re-executed, at `rate_ppm` parts per
/// million (≥ [`PPM`]: all of them).
pub fn sampled(beacon: &[u8], receipt: &Digest, rate_ppm: u32) -> bool {
    let d = draw(SAMPLE_DOMAIN, beacon, receipt, None);
    let x = u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
    // x / 2^32 < rate / 10^6, in integers.
    x * u64::from(PPM) < u64::from(rate_ppm.min(PPM)) << 32 || rate_ppm >= PPM
}

/// The `k` verifiers of a receipt: the eligible nodes other than `worker` with
/// the smallest draws, in draw order.
pub fn verifiers(
    beacon: &[u8],
    receipt: &Digest,
    worker: &NodeId,
    eligible: &[NodeId],
    k: usize,
) -> Vec<NodeId> {
    let mut ranked: Vec<(Digest, NodeId)> = eligible
        .iter()
        .filter(|n| *n != worker)
        .map(|n| (draw(VERIFIER_DOMAIN, beacon, receipt, Some(n)), *n))
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(k).map(|(_, n)| n).collect()
}

/// The probability that a worker cheating in `m` receipts of an epoch escapes
/// detection in it, at sample rate `rate_ppm`, with `k` verifiers per sampled
/// receipt drawn from `eligible` nodes (its own excluded) of which `colluders`
/// lie for it.
pub fn escape_probability(
    rate_ppm: u32,
    m: u64,
    k: usize,
    eligible: usize,
    colluders: usize,
) -> f64 {
    let p = f64::from(rate_ppm.min(PPM)) / f64::from(PPM);
    let all_colluding = if k == 0 || colluders < k {
        if k == 0 { 1.0 } else { 0.0 }
    } else {
        // C(b, k) / C(n, k) as a product.
        (0..k).fold(1.0, |acc, i| {
            acc * (colluders - i) as f64 / (eligible.saturating_sub(i)).max(1) as f64
        })
    };
    let q = p * (1.0 - all_colluding);
    (1.0 - q).powf(m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::tests::key;

    #[test]
    fn the_sample_rate_is_what_it_says() {
        let beacon = [7u8; 48];
        let hits = (0u32..20_000)
            .filter(|i| {
                let mut r = [0u8; 32];
                r[..4].copy_from_slice(&i.to_be_bytes());
                sampled(&beacon, &r, 100_000)
            })
            .count();
        // 10% of 20,000 = 2,000; a binomial's 5σ is about 212.
        assert!((1_790..=2_210).contains(&hits), "{hits}");
        assert!(sampled(&beacon, &[0; 32], PPM));
        assert!(!sampled(&beacon, &[0; 32], 0));
    }

    #[test]
    fn another_beacon_draws_another_sample() {
        let r = |i: u32| {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d
        };
        let a: Vec<bool> = (0..200).map(|i| sampled(b"one", &r(i), 300_000)).collect();
        let b: Vec<bool> = (0..200).map(|i| sampled(b"two", &r(i), 300_000)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn verifiers_exclude_the_worker_and_are_the_same_for_everyone() {
        let nodes: Vec<NodeId> = (1..=7).map(|i| key(i).node_id()).collect();
        let worker = nodes[2];
        let v = verifiers(b"beacon", &[5; 32], &worker, &nodes, 3);
        assert_eq!(v.len(), 3);
        assert!(!v.contains(&worker));
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        assert_eq!(verifiers(b"beacon", &[5; 32], &worker, &shuffled, 3), v);
        assert_ne!(verifiers(b"other", &[5; 32], &worker, &nodes, 3), v);
        assert_eq!(verifiers(b"beacon", &[5; 32], &worker, &nodes, 99).len(), 6);
    }

    #[test]
    fn the_escape_probability_follows_the_formula() {
        // Everyone honest, every receipt sampled: no escape.
        assert_eq!(escape_probability(PPM, 1, 2, 10, 0), 0.0);
        // 5% sampling, 20 wrong receipts, honest verifiers: 0.95^20.
        let e = escape_probability(50_000, 20, 2, 10, 0);
        assert!((e - 0.95f64.powi(20)).abs() < 1e-12);
        // Two colluders among ten, k = 2: 1/45 of samples are theirs.
        let e = escape_probability(PPM, 1, 2, 10, 2);
        assert!((e - 1.0 / 45.0).abs() < 1e-12, "{e}");
        // Fewer colluders than k can never cover a sample alone.
        assert_eq!(escape_probability(PPM, 1, 3, 10, 2), 0.0);
    }
}
