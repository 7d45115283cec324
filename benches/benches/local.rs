//! Local messaging: Plexus actors vs raw ractor vs a tokio mpsc task, in one run.
//!
//! * `tell_throughput/*`: send N messages, then one request whose reply proves all N
//!   were handled (FIFO). Plexus uses the awaiting `tell` (bounded mailbox,
//!   capacity 1024, backpressure included); ractor casts into its unbounded mailbox;
//!   tokio sends into a bounded channel of the same capacity.
//! * `ask_roundtrip/*`: one request-reply per iteration.
//! * `spawn_10k/*`: spawn 10,000 actors and stop them all.
//! * `codec/*`: encode and decode through the Plexus codec.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plexus_actors::codec;
use plexus_actors::runtime::{ActorSystem, SystemConfig};
use plexus_actors::{Datum, NodeId};
use plexus_benches::{Count, PlexusCounter, RCount, RactorCounter, TCount, spawn_tokio_counter};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

const N: u64 = 100_000;
const CAPACITY: usize = 1024;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn system() -> ActorSystem {
    ActorSystem::new(SystemConfig {
        mailbox_capacity: CAPACITY,
        ..SystemConfig::new(NodeId::synthetic(1))
    })
}

fn tell_throughput(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("tell_throughput");
    group.throughput(Throughput::Elements(N));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(6));

    let sys = system();
    let plexus = rt.block_on(sys.spawn(PlexusCounter, ())).expect("spawn");
    group.bench_function("plexus", |b| {
        b.to_async(&rt).iter(|| async {
            for _ in 0..N {
                let _ = plexus.tell(Count::Inc).await;
            }
            plexus.ask(Count::Get).await.expect("reply")
        })
    });

    let (ractor_ref, _h) = rt
        .block_on(ractor::Actor::spawn(None, RactorCounter, ()))
        .expect("spawn");
    group.bench_function("ractor", |b| {
        b.to_async(&rt).iter(|| async {
            for _ in 0..N {
                let _ = ractor_ref.cast(RCount::Inc);
            }
            ractor::call!(ractor_ref, RCount::Get).expect("reply")
        })
    });

    let (tx, _task) = rt.block_on(async { spawn_tokio_counter(CAPACITY) });
    group.bench_function("tokio_mpsc", |b| {
        b.to_async(&rt).iter(|| async {
            for _ in 0..N {
                let _ = tx.send(TCount::Inc).await;
            }
            let (rtx, rrx) = oneshot::channel();
            let _ = tx.send(TCount::Get(rtx)).await;
            rrx.await.expect("reply")
        })
    });
    group.finish();
    ractor_ref.stop(None);
    rt.block_on(sys.shutdown());
}

fn ask_roundtrip(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("ask_roundtrip");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    let sys = system();
    let plexus = rt.block_on(sys.spawn(PlexusCounter, ())).expect("spawn");
    group.bench_function("plexus", |b| {
        b.to_async(&rt)
            .iter(|| async { plexus.ask(Count::Get).await.expect("reply") })
    });
    let (ractor_ref, _h) = rt
        .block_on(ractor::Actor::spawn(None, RactorCounter, ()))
        .expect("spawn");
    group.bench_function("ractor", |b| {
        b.to_async(&rt)
            .iter(|| async { ractor::call!(ractor_ref, RCount::Get).expect("reply") })
    });
    let (tx, _task) = rt.block_on(async { spawn_tokio_counter(CAPACITY) });
    group.bench_function("tokio_oneshot", |b| {
        b.to_async(&rt).iter(|| async {
            let (rtx, rrx) = oneshot::channel();
            let _ = tx.send(TCount::Get(rtx)).await;
            rrx.await.expect("reply")
        })
    });
    group.finish();
    ractor_ref.stop(None);
    rt.block_on(sys.shutdown());
}

fn spawn_10k(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("spawn_10k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("plexus", |b| {
        b.to_async(&rt).iter(|| async {
            let sys = system();
            for _ in 0..10_000 {
                sys.spawn(PlexusCounter, ()).await.expect("spawn");
            }
            sys.shutdown().await;
        })
    });
    group.bench_function("ractor", |b| {
        b.to_async(&rt).iter(|| async {
            let mut refs = Vec::with_capacity(10_000);
            for _ in 0..10_000 {
                refs.push(
                    ractor::Actor::spawn(None, RactorCounter, ())
                        .await
                        .expect("spawn"),
                );
            }
            // Stop all, then wait for all, as Plexus's shutdown does.
            for (r, _) in &refs {
                r.stop(None);
            }
            for (_, h) in refs {
                let _ = h.await;
            }
        })
    });
    group.finish();
}

fn codec_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for size in [100usize, 10 * 1024] {
        let value = Datum::Map(
            [
                ("id".to_string(), Datum::Int(42)),
                ("payload".to_string(), Datum::Bytes(vec![7u8; size])),
            ]
            .into_iter()
            .collect(),
        );
        let frame = codec::encode(&value).expect("encode");
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", size), &value, |b, v| {
            b.iter(|| codec::encode(v).expect("encode"))
        });
        group.bench_with_input(BenchmarkId::new("decode", size), &frame, |b, f| {
            b.iter(|| codec::decode::<Datum>(f).expect("decode"))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    tell_throughput,
    ask_roundtrip,
    spawn_10k,
    codec_throughput
);
criterion_main!(benches);
