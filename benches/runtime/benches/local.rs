//! Local messaging: Plexus actors vs raw ractor vs a tokio mpsc task, interleaved
//! in one run so that a noisy machine moves all of them alike.
//!
//! * `tell`: send N messages, then one request whose reply proves all N were
//!   handled (FIFO). Plexus uses the awaiting `tell` (bounded mailbox, capacity
//!   1024, backpressure included); ractor casts into its unbounded mailbox; tokio
//!   sends into a bounded channel of the same capacity.
//! * `ask`: request-reply round trips, one at a time.
//! * `spawn_10k`: spawn 10,000 actors and stop them all (Plexus: a system's
//!   shutdown; ractor: stop each, then wait for each).
//! * `codec`: encode and decode a map with a 100 B and a 10 KiB payload (no peer).
//!
//! Each round runs every contender once, in an order that rotates from round to
//! round; a ratio is taken within each round (so a slow minute slows both sides),
//! and the report gives the median ratio with the lowest and highest round's.
//!
//! `cargo bench -p plexus-runtime-benches --bench local` (`--rounds N`, default
//! 15; `--only tell|ask|spawn|codec` for one part). Under `cargo test` it runs as
//! a smoke test with small sizes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use plexus_actors::codec;
use plexus_actors::runtime::{ActorRef, ActorSystem, SystemConfig};
use plexus_actors::{Datum, NodeId};
use plexus_benches::{
    Count, PlexusCounter, RCount, RactorCounter, TCount, flag, spawn_tokio_counter,
};
use tokio::sync::oneshot;

const CAPACITY: usize = 1024;

struct Sizes {
    rounds: usize,
    tells: u64,
    asks: u64,
    spawns: usize,
    codec: usize,
}

fn system() -> ActorSystem {
    ActorSystem::new(SystemConfig {
        mailbox_capacity: CAPACITY,
        ..SystemConfig::new(NodeId::synthetic(1))
    })
}

/// Median, lowest and highest.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mid = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let lo = v.first().copied().unwrap_or(f64::NAN);
    let hi = v.last().copied().unwrap_or(f64::NAN);
    (mid, lo, hi)
}

/// Per contender, the rate of each round (operations a second).
struct Table {
    names: Vec<&'static str>,
    rates: Vec<Vec<f64>>,
}

impl Table {
    fn new(names: &[&'static str]) -> Self {
        Self {
            names: names.to_vec(),
            rates: vec![Vec::new(); names.len()],
        }
    }

    fn print(&self, what: &str, unit: &str, scale: f64) {
        println!("{what}");
        for (name, rates) in self.names.iter().zip(&self.rates) {
            let (mid, lo, hi) = spread(rates.clone());
            println!(
                "  {name:<8} median {:>10.2} {unit}   (rounds {:.2} .. {:.2})",
                mid / scale,
                lo / scale,
                hi / scale
            );
        }
        for (i, name) in self.names.iter().enumerate().skip(1) {
            let ratios: Vec<f64> = self.rates[0]
                .iter()
                .zip(&self.rates[i])
                .map(|(p, o)| p / o)
                .collect();
            let (mid, lo, hi) = spread(ratios);
            println!(
                "  {}/{name}: {mid:.2}x   (rounds {lo:.2}x .. {hi:.2}x; higher is better)",
                self.names[0]
            );
        }
    }
}

fn rate(ops: f64, took: Duration) -> f64 {
    ops / took.as_secs_f64().max(1e-9)
}

/// The same counter in each system.
struct Counters {
    sys: ActorSystem,
    plexus: ActorRef<Count>,
    ractor: ractor::ActorRef<RCount>,
    ractor_task: tokio::task::JoinHandle<()>,
    tokio: tokio::sync::mpsc::Sender<TCount>,
}

impl Counters {
    async fn start() -> Self {
        let sys = system();
        let plexus = sys.spawn(PlexusCounter, ()).await.expect("spawn");
        let (ractor, ractor_task) = ractor::Actor::spawn(None, RactorCounter, ())
            .await
            .expect("spawn");
        let (tokio, _task) = spawn_tokio_counter(CAPACITY);
        Self {
            sys,
            plexus,
            ractor,
            ractor_task,
            tokio,
        }
    }

    async fn stop(self) {
        self.ractor.stop(None);
        let _ = self.ractor_task.await;
        self.sys.shutdown().await;
    }
}

/// Runs every contender once per round, in an order that rotates from round to
/// round, `ops` operations each; the first round warms up and is not counted.
async fn interleaved(
    names: &[&'static str],
    rounds: usize,
    ops: f64,
    mut run: impl AsyncFnMut(usize),
) -> Table {
    let mut t = Table::new(names);
    let n = names.len();
    for round in 0..rounds + 1 {
        let mut took = vec![Duration::ZERO; n];
        for k in 0..n {
            let which = (round + k) % n;
            let start = Instant::now();
            run(which).await;
            took[which] = start.elapsed();
        }
        if round > 0 {
            for (i, d) in took.iter().enumerate() {
                t.rates[i].push(rate(ops, *d));
            }
        }
    }
    t
}

async fn tell(s: &Sizes) -> Table {
    let c = Counters::start().await;
    let (plexus, ractor_ref, tx) = (&c.plexus, &c.ractor, &c.tokio);
    let names = ["plexus", "ractor", "tokio"];
    let t = interleaved(
        &names,
        s.rounds,
        s.tells as f64,
        async |which| match which {
            0 => {
                for _ in 0..s.tells {
                    let _ = plexus.tell(Count::Inc).await;
                }
                plexus.ask(Count::Get).await.expect("reply");
            }
            1 => {
                for _ in 0..s.tells {
                    let _ = ractor_ref.cast(RCount::Inc);
                }
                ractor::call!(ractor_ref, RCount::Get).expect("reply");
            }
            _ => {
                for _ in 0..s.tells {
                    let _ = tx.send(TCount::Inc).await;
                }
                let (rtx, rrx) = oneshot::channel();
                let _ = tx.send(TCount::Get(rtx)).await;
                rrx.await.expect("reply");
            }
        },
    )
    .await;
    c.stop().await;
    t
}

async fn ask(s: &Sizes) -> Table {
    let c = Counters::start().await;
    let (plexus, ractor_ref, tx) = (&c.plexus, &c.ractor, &c.tokio);
    let names = ["plexus", "ractor", "ractor_t", "tokio"];
    let t = interleaved(&names, s.rounds, s.asks as f64, async |which| {
        for _ in 0..s.asks {
            match which {
                0 => {
                    plexus.ask(Count::Get).await.expect("reply");
                }
                1 => {
                    ractor::call!(ractor_ref, RCount::Get).expect("reply");
                }
                2 => {
                    ractor::call_t!(ractor_ref, RCount::Get, 5000).expect("reply");
                }
                _ => {
                    let (rtx, rrx) = oneshot::channel();
                    let _ = tx.send(TCount::Get(rtx)).await;
                    rrx.await.expect("reply");
                }
            }
        }
    })
    .await;
    c.stop().await;
    t
}

async fn spawn(s: &Sizes) -> Table {
    interleaved(
        &["plexus", "ractor"],
        s.rounds,
        s.spawns as f64,
        async |which| {
            if which == 0 {
                let sys = system();
                for _ in 0..s.spawns {
                    sys.spawn(PlexusCounter, ()).await.expect("spawn");
                }
                sys.shutdown().await;
            } else {
                let mut refs = Vec::with_capacity(s.spawns);
                for _ in 0..s.spawns {
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
            }
        },
    )
    .await
}

fn codec_figures(s: &Sizes) {
    println!("codec (Plexus's frame codec; no peer)");
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
        let start = Instant::now();
        for _ in 0..s.codec {
            std::hint::black_box(codec::encode(std::hint::black_box(&value)).expect("encode"));
        }
        let enc = start.elapsed();
        let start = Instant::now();
        for _ in 0..s.codec {
            std::hint::black_box(
                codec::decode::<Datum>(std::hint::black_box(&frame)).expect("decode"),
            );
        }
        let dec = start.elapsed();
        let per = |d: Duration| d.as_nanos() as f64 / s.codec as f64;
        let gib = |d: Duration| rate((frame.len() * s.codec) as f64, d) / (1u64 << 30) as f64;
        println!(
            "  {size:>6} B payload: encode {:.0} ns ({:.2} GiB/s), decode {:.0} ns ({:.2} GiB/s)",
            per(enc),
            gib(enc),
            per(dec),
            gib(dec)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; under `cargo test` this is a smoke test.
    let full = args.iter().any(|a| a == "--bench");
    let rounds = match flag(&args, "--rounds", if full { 15 } else { 2 }) {
        Ok(n) if n >= 1 => n,
        Ok(_) => {
            eprintln!("error: --rounds must be at least 1");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let s = if full {
        Sizes {
            rounds,
            tells: 200_000,
            asks: 20_000,
            spawns: 10_000,
            codec: 200_000,
        }
    } else {
        Sizes {
            rounds,
            tells: 2_000,
            asks: 200,
            spawns: 200,
            codec: 1_000,
        }
    };
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "local messaging, 2 worker threads, {} rounds after one warm-up, contenders interleaved",
        s.rounds
    );
    if part("tell") {
        let t = rt.block_on(tell(&s));
        t.print(
            &format!("tell: {} messages then one ask", s.tells),
            "M msg/s",
            1e6,
        );
    }
    if part("ask") {
        let t = rt.block_on(ask(&s));
        t.print(
            &format!(
                "ask: {} round trips (ractor_t: with a 5 s timeout, as every Plexus ask has)",
                s.asks
            ),
            "k asks/s",
            1e3,
        );
    }
    if part("spawn") {
        let t = rt.block_on(spawn(&s));
        t.print(
            &format!("spawn and stop {} actors", s.spawns),
            "k actors/s",
            1e3,
        );
    }
    if part("codec") {
        codec_figures(&s);
    }
}
