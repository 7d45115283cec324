//! Threshold-BLS checkpoint cost per node, and the committee's DKG.
//! `cargo bench -p plexus-epochs --bench checkpoint` (it lives beside the core, not
//! in `benches/`, so its release build does not compile rocksdb).
//!
//! - `checkpoint/plexus/(n,t)`: what one node does to finish an epoch: decode `t`
//!   partials from their wire bytes, verify them in one randomized batch, combine,
//!   and verify the combined signature against the group key
//!   (`plexus_epochs::threshold`, as the agreement core calls it).
//! - `checkpoint/commonware/(n,t)`: the same steps straight on commonware's
//!   primitives (the peer: the library's own cost, no Plexus code).
//! - `checkpoint/decode/(n,t)`: only decoding the `t` partials, the step the
//!   commonware figure leaves out.
//! - `checkpoint/blsttc/(n,t)`: the same with blsttc (verify each share, combine,
//!   verify), the alternative the issue named.
//! - `dkg/(n,t)`: the whole committee's DKG in one process through
//!   `plexus_epochs::dkg` (dealing, acks, logs, selection, finalize, confirmations),
//!   reported per member.

// A benchmark reads the clock and seeds blsttc from the OS: it is not a core.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use commonware_cryptography::bls12381::dkg::feldman_desmedt::deal_anonymous;
use commonware_cryptography::bls12381::primitives::ops::{self, threshold as cw};
use commonware_cryptography::bls12381::primitives::sharing::Mode;
use commonware_cryptography::bls12381::primitives::variant::MinSig;
use commonware_parallel::Sequential;
use commonware_utils::N3f1;
use commonware_utils::iter::NonEmpty;
use criterion::{BenchmarkId, Criterion, criterion_group};
use plexus_actors::{NodeId, Time};
use plexus_epochs::dkg::{DkgOutput, DkgRecipient, DkgRound, DkgTimings};
use plexus_epochs::threshold;
use plexus_vocab::identity::NodeKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SIZES: [(u32, usize); 2] = [(22, 15), (100, 67)];

fn checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (n, t) in SIZES {
        let mut rng = ChaCha20Rng::seed_from_u64(n as u64);
        let (sharing, shares) = deal_anonymous::<MinSig, N3f1>(
            &mut rng,
            Mode::NonZeroCounter,
            std::num::NonZeroU32::new(n).unwrap(),
        );
        assert_eq!(sharing.required() as usize, t);
        sharing.precompute_partial_publics();
        let msg = threshold::signing_message(&[1; 32], 42, &[2; 32]);
        let wire: Vec<(u32, Vec<u8>)> = shares[..t]
            .iter()
            .map(|s| threshold::sign_partial(s, &msg))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("plexus", format!("{n},{t}")),
            &wire,
            |b, wire| {
                b.iter(|| {
                    let partials: Vec<_> = wire
                        .iter()
                        .map(|(i, p)| threshold::partial(*i, p).unwrap())
                        .collect();
                    threshold::verify_partials(&mut rng, &sharing, &msg, &partials).unwrap();
                    black_box(threshold::combine(&sharing, &msg, &partials).unwrap())
                })
            },
        );
        // The part of the Plexus figure the commonware one does not include:
        // decoding the partials from their wire bytes (G1 decompression and
        // subgroup checks).
        group.bench_with_input(
            BenchmarkId::new("decode", format!("{n},{t}")),
            &wire,
            |b, wire| {
                b.iter(|| {
                    black_box(
                        wire.iter()
                            .map(|(i, p)| threshold::partial(*i, p).unwrap())
                            .collect::<Vec<_>>(),
                    )
                })
            },
        );
        let partials: Vec<_> = shares[..t]
            .iter()
            .map(|s| cw::sign_message::<MinSig>(s, threshold::NAMESPACE, &msg))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("commonware", format!("{n},{t}")),
            &partials,
            |b, partials| {
                b.iter(|| {
                    cw::batch_verify_same_message::<_, MinSig, _>(
                        &mut rng,
                        &sharing,
                        threshold::NAMESPACE,
                        &msg,
                        NonEmpty::try_new(partials.iter()).unwrap(),
                        &Sequential,
                    )
                    .unwrap();
                    let sig =
                        cw::recover::<MinSig, _>(&sharing, partials.iter(), &Sequential).unwrap();
                    ops::verify_message::<MinSig>(
                        sharing.public(),
                        threshold::NAMESPACE,
                        &msg,
                        &sig,
                    )
                    .unwrap();
                    black_box(sig)
                })
            },
        );
        // blsttc: a (t−1)-degree polynomial, t shares.
        let sk_set = blsttc::SecretKeySet::random(t - 1, &mut blsttc::rand::thread_rng());
        let pk_set = sk_set.public_keys();
        let shares_b: Vec<(usize, blsttc::SignatureShare)> = (0..t)
            .map(|i| (i, sk_set.secret_key_share(i).sign(msg)))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("blsttc", format!("{n},{t}")),
            &shares_b,
            |b, shares_b| {
                b.iter(|| {
                    for (i, s) in shares_b {
                        assert!(pk_set.public_key_share(*i).verify(s, msg));
                    }
                    let sig = pk_set
                        .combine_signatures(shares_b.iter().map(|(i, s)| (*i, s)))
                        .unwrap();
                    assert!(pk_set.public_key().verify(&sig, msg));
                    black_box(sig)
                })
            },
        );
    }
    group.finish();
}

/// The whole committee's DKG, in-process, instant delivery.
fn dkg_once(n: u8) -> Duration {
    let keys: Vec<NodeKey> = (0..n)
        .map(|i| NodeKey::from_seed([i.wrapping_add(1); 32]))
        .collect();
    let committee: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
    let started = Instant::now();
    let mut rounds: Vec<DkgRound> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            DkgRound::start(
                b"bench",
                0,
                k.clone(),
                &committee,
                DkgTimings::default(),
                Time::ZERO,
                [i as u8; 32],
            )
            .unwrap()
        })
        .collect();
    let index: std::collections::BTreeMap<NodeId, usize> =
        committee.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let mut done = 0;
    let mut now = Time::ZERO;
    while done < n as usize {
        let mut queue = Vec::new();
        for (i, r) in rounds.iter_mut().enumerate() {
            while let Some(o) = r.poll_output() {
                match o {
                    DkgOutput::Send { to, message } => queue.push((i, to, message)),
                    DkgOutput::Done(_) => done += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        if queue.is_empty() {
            let Some(next) = rounds.iter().filter_map(DkgRound::poll_timeout).min() else {
                break;
            };
            now = now.max(next);
            rounds.iter_mut().for_each(|r| r.handle_timeout(now));
            continue;
        }
        for (i, to, m) in queue {
            let targets: Vec<usize> = match to {
                DkgRecipient::Node(x) => vec![index[&x]],
                _ => (0..n as usize).filter(|j| *j != i).collect(),
            };
            for j in targets {
                rounds[j]
                    .handle_message(now, committee[i], m.clone())
                    .unwrap();
            }
        }
    }
    assert_eq!(done, n as usize);
    started.elapsed()
}

fn dkg(c: &mut Criterion) {
    let mut group = c.benchmark_group("dkg");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("22,15", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| dkg_once(22)).sum())
    });
    group.finish();
    // (100, 67) takes long enough that one run is the measurement; under `cargo
    // test` (no `--bench`) it is skipped.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let whole = dkg_once(100);
    println!(
        "dkg/100,67: whole committee {:.2} s in one process, {:.1} ms CPU per member",
        whole.as_secs_f64(),
        whole.as_secs_f64() * 1000.0 / 100.0
    );
}

criterion_group!(benches, checkpoint, dkg);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
