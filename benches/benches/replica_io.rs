//! A replica's write of a commit to a large state, on the daemon's rocksdb store:
//! the record whole (the peer: every commit before patches) against the same
//! record as a patch of the one stored (`plexus_durable::patch`), through the same
//! replica rules. Each commit changes 64 bytes at one point of a `--state-bytes`
//! body (default 1 MiB); `--commits` of each kind (default 500; 50 under `cargo
//! test`), interleaved in rounds of 50 so both see the same machine.
//!
//! `cargo bench -p plexus-benches --bench replica_io`
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use plexus::NodeId;
use plexus::hosting::store::RocksStore;
use plexus_benches::flag;
use plexus_durable::patch::{RecordPatch, diff};
use plexus_durable::replica::Replica;
use plexus_durable::wire::{ReplicaOp, ReplicaReply};
use plexus_durable::{Ballot, DurableKey, Record, ReplicaSet};

const ROUND: u64 = 50;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size: usize = flag(&args, "--state-bytes", 1 << 20)?;
    // `cargo bench` passes `--bench`; under `cargo test` it is a smoke test.
    let full = args.iter().any(|a| a == "--bench");
    let commits: u64 = flag(&args, "--commits", if full { 500 } else { 50 })?;
    let dir = std::env::temp_dir().join(format!("plexus-replica-io-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = RocksStore::open(&dir).map_err(|e| e.to_string())?;
    let mut replica = Replica::new(store);
    let node = NodeId::synthetic(1);
    let ballot = Ballot { round: 1, node };
    let set = ReplicaSet::single(node);
    let (whole_key, patch_key) = (
        DurableKey::new("bench/whole").map_err(|e| e.to_string())?,
        DurableKey::new("bench/patch").map_err(|e| e.to_string())?,
    );
    let mut body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let first = Record {
        ballot,
        version: 1,
        set: set.clone(),
        body: body.clone().into(),
    };
    for key in [&whole_key, &patch_key] {
        let op = ReplicaOp::Write {
            record: first.clone(),
        };
        replica.handle(key, &op);
    }
    let (mut whole, mut patched) = (Duration::ZERO, Duration::ZERO);
    let mut version = 1;
    while version <= commits {
        for _ in 0..ROUND {
            let prev = body.clone();
            version += 1;
            let at = (version as usize * 7_919) % (size - 64);
            body[at..at + 64]
                .iter_mut()
                .for_each(|b| *b = b.wrapping_add(1));
            let record = Record {
                ballot,
                version,
                set: set.clone(),
                body: body.clone().into(),
            };
            // The whole record, as every commit was sent before patches.
            let start = Instant::now();
            let reply = replica.handle(&whole_key, &ReplicaOp::Write { record });
            whole += start.elapsed();
            check(reply)?;
            // The patch: made by the committing node, applied by the replica.
            let start = Instant::now();
            let patch = RecordPatch {
                ballot,
                version,
                set: set.clone(),
                base: (ballot, version - 1),
                patch: diff(&prev, &body),
                digest: *blake3::hash(&body).as_bytes(),
            };
            let reply = replica.handle(&patch_key, &ReplicaOp::Patch { patch });
            patched += start.elapsed();
            check(reply)?;
        }
    }
    let n = (version - 1) as u32;
    let (w, p) = (whole / n, patched / n);
    println!(
        "== replica write of a {size} B state changed by 64 B, {n} commits each, rocksdb (unsynced: group commit)"
    );
    println!("whole record: {:>8.1} us per commit", w.as_secs_f64() * 1e6);
    println!(
        "as a patch:   {:>8.1} us per commit (diff and digest included)",
        p.as_secs_f64() * 1e6
    );
    println!(
        "ratio: patch takes {:.3}x the whole write's time",
        p.as_secs_f64() / w.as_secs_f64()
    );
    drop(replica);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn check(reply: ReplicaReply) -> Result<(), String> {
    match reply {
        ReplicaReply::Written { .. } => Ok(()),
        other => Err(format!("the replica answered {other:?}")),
    }
}
