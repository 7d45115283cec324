//! Ask round-trip latency percentiles (p50, p99, p99.9), Plexus vs raw ractor (with
//! and without a call timeout) vs a tokio mpsc/oneshot pair, measured in the same run with the same actor.
//! Criterion reports means; tails need a histogram, so this is a plain harness.
//!
//! `cargo bench -p plexus-runtime-benches --bench latency`
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Instant;

use hdrhistogram::Histogram;
use plexus_actors::NodeId;
use plexus_actors::runtime::{ActorSystem, SystemConfig};
use plexus_benches::{Count, PlexusCounter, RCount, RactorCounter, TCount, spawn_tokio_counter};
use tokio::sync::oneshot;

/// `cargo bench` passes `--bench`; under `cargo test` the harness runs as a smoke test.
fn sizes() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (20_000, 200_000)
    } else {
        (100, 1_000)
    }
}

fn report(name: &str, h: &Histogram<u64>) -> (u64, u64) {
    let (p50, p99, p999) = (
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    );
    println!(
        "{name:<14} p50 {:>7.2} µs   p99 {:>7.2} µs   p99.9 {:>7.2} µs",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        p999 as f64 / 1e3
    );
    (p50, p99)
}

fn main() {
    let (warmup, samples) = sizes();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt.block_on(async {
        let mut out = Vec::new();

        let sys = ActorSystem::new(SystemConfig::new(NodeId::synthetic(1)));
        let plexus = sys.spawn(PlexusCounter, ()).await.expect("spawn");
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..warmup + samples {
            let t = Instant::now();
            plexus.ask(Count::Get).await.expect("reply");
            if i >= warmup {
                let _ = h.record(t.elapsed().as_nanos() as u64);
            }
        }
        out.push(("plexus", h));
        sys.shutdown().await;

        let (r, _j) = ractor::Actor::spawn(None, RactorCounter, ())
            .await
            .expect("spawn");
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..warmup + samples {
            let t = Instant::now();
            ractor::call!(r, RCount::Get).expect("reply");
            if i >= warmup {
                let _ = h.record(t.elapsed().as_nanos() as u64);
            }
        }
        out.push(("ractor", h));

        // ractor with a timeout, like every Plexus ask (default 5 s).
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..warmup + samples {
            let t = Instant::now();
            ractor::call_t!(r, RCount::Get, 5000).expect("reply");
            if i >= warmup {
                let _ = h.record(t.elapsed().as_nanos() as u64);
            }
        }
        out.push(("ractor_timeout", h));
        r.stop(None);

        let (tx, _task) = spawn_tokio_counter(1024);
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..warmup + samples {
            let t = Instant::now();
            let (rtx, rrx) = oneshot::channel();
            let _ = tx.send(TCount::Get(rtx)).await;
            rrx.await.expect("reply");
            if i >= warmup {
                let _ = h.record(t.elapsed().as_nanos() as u64);
            }
        }
        out.push(("tokio_oneshot", h));
        out
    });
    println!("ask round trip, {samples} samples each after {warmup} warm-up, 2 worker threads");
    let mut figures = Vec::new();
    for (name, h) in &results {
        figures.push((*name, report(name, h)));
    }
    let plexus = figures[0].1;
    for (name, peer) in &figures[1..] {
        println!(
            "ratio plexus/{name}: p50 {:.2}x, p99 {:.2}x (lower is better)",
            plexus.0 as f64 / peer.0 as f64,
            plexus.1 as f64 / peer.1 as f64
        );
    }
}
