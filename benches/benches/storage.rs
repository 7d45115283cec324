//! Storage throughput and repair, beside the disk's own figures in the same run.
//!
//! Peers first, on the same disk: raw rocksdb writes of the same bytes in 1 MiB
//! values, each synced (what a storage shard does, with nothing else), a plain
//! file copy (`std::fs::copy`, then fsync), and a plain file read. Then three real
//! `plexus node` processes on 127.0.0.1 (`plexus::cli::local`): `--bytes` put with
//! r = 3 through one node and got back through another, sealed (XChaCha20-Poly1305
//! on the client) and public; every get is checked against the original. Then a
//! fourth node: a holder is killed with SIGKILL and the time until every chunk is
//! back to three copies is the repair time, over the bytes of copies lost.
//!
//! This binary is the nodes' program too (`PLEXUS_BENCH_ROLE=node`), so they run
//! the build being measured.
//!
//! `cargo bench -p plexus-benches --bench storage` (default `--bytes 1073741824`).
//! Under `cargo test` it is a smoke test of 8 MiB.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use plexus::cli::CliError;
use plexus::cli::fs;
use plexus::cli::local::{LocalCluster, LocalOptions, in_scratch_dir, wait_until};
use plexus_benches::flag;

/// Set to `node` in the environment of the node processes.
const ROLE: &str = "PLEXUS_BENCH_ROLE";
const MIB: f64 = 1024.0 * 1024.0;

fn main() -> ExitCode {
    if std::env::var_os(ROLE).is_some_and(|r| r == "node") {
        return plexus::cli::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let bytes = match flag(&args, "--bytes", if full { 1u64 << 30 } else { 8 << 20 }) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match in_scratch_dir("bench-storage", false, |dir| bench(dir, bytes)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// A file of `len` pseudo-random bytes (incompressible, so no layer gains from
/// compressing), written in 1 MiB pieces.
fn make_file(path: &Path, len: u64) -> Result<(), CliError> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(failed)?);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let w = x.to_le_bytes();
            b.copy_from_slice(&w[..b.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).map_err(failed)?;
        left -= n as u64;
    }
    f.into_inner()
        .map_err(|e| failed(e.error()))?
        .sync_all()
        .map_err(failed)
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB / took.as_secs_f64().max(1e-9)
}

/// Raw rocksdb: the file's bytes as 1 MiB values, each write synced.
fn raw_rocksdb(dir: &Path, file: &Path) -> Result<Duration, CliError> {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = rocksdb::DB::open(&opts, dir.join("raw-rocksdb")).map_err(failed)?;
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let mut src = std::fs::File::open(file).map_err(failed)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        db.put_opt(i.to_be_bytes(), &buf[..n], &sync)
            .map_err(failed)?;
        i += 1;
    }
    Ok(start.elapsed())
}

fn read_full(src: &mut std::fs::File, buf: &mut [u8]) -> Result<usize, CliError> {
    let mut got = 0;
    while got < buf.len() {
        let n = src.read(&mut buf[got..]).map_err(failed)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

fn same_file(a: &Path, b: &Path) -> Result<bool, CliError> {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).map_err(failed)?,
        std::fs::File::open(b).map_err(failed)?,
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let (na, nb) = (read_full(&mut fa, &mut ba)?, read_full(&mut fb, &mut bb)?);
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn cluster(dir: &Path, nodes: usize) -> Result<LocalCluster, CliError> {
    let exe = std::env::current_exe().map_err(failed)?;
    LocalCluster::start_with(
        dir,
        || {
            let mut c = Command::new(&exe);
            c.env(ROLE, "node");
            c
        },
        &LocalOptions {
            nodes,
            ..LocalOptions::default()
        },
    )
}

fn copies(cluster: &LocalCluster, via: usize, id: &str) -> Option<(u64, u64)> {
    let s = cluster.nodes[via]
        .api
        .get(&format!("/v1/fs/files/{id}"))
        .ok()?;
    Some((s["copies_min"].as_u64()?, s["copies_max"].as_u64()?))
}

fn bench(dir: &Path, bytes: u64) -> Result<(), CliError> {
    println!(
        "== storage bench: {:.0} MiB, r = 3, 3 nodes on 127.0.0.1, one disk",
        bytes as f64 / MIB
    );
    let file = dir.join("data.bin");
    make_file(&file, bytes)?;

    // The peers: the disk under the same bytes.
    let raw = raw_rocksdb(dir, &file)?;
    let copy_start = Instant::now();
    std::fs::copy(&file, dir.join("copy.bin")).map_err(failed)?;
    std::fs::File::open(dir.join("copy.bin"))
        .and_then(|f| f.sync_all())
        .map_err(failed)?;
    let copy = copy_start.elapsed();
    let _ = std::fs::remove_file(dir.join("copy.bin"));
    let read_start = Instant::now();
    let mut src = std::fs::File::open(&file).map_err(failed)?;
    let mut sink = vec![0u8; 1 << 20];
    while read_full(&mut src, &mut sink)? > 0 {}
    let read = read_start.elapsed();
    let _ = std::fs::remove_dir_all(dir.join("raw-rocksdb"));
    println!(
        "peer: raw rocksdb synced 1 MiB puts {:.1} MiB/s, file copy + fsync {:.1} MiB/s, file read {:.1} MiB/s (page cache warm)",
        rate(bytes, raw),
        rate(bytes, copy),
        rate(bytes, read)
    );

    let mut c = cluster(&dir.join("three"), 3)?;
    let identity = fs::identity_or_new(&dir.join("reader.age"))?;
    for sealed in [true, false] {
        let readers = if sealed {
            vec![identity.to_public()]
        } else {
            vec![]
        };
        let start = Instant::now();
        let stored = fs::store(&c.nodes[0].api, &file, &readers, !sealed, Some(3), None)?;
        let put = start.elapsed();
        let back = dir.join("back.bin");
        let start = Instant::now();
        let reader = || fs::identity_or_new(&dir.join("reader.age"));
        fs::fetch(&c.nodes[1].api, &stored.id, &reader, Some(&back))?;
        let get = start.elapsed();
        if !same_file(&file, &back)? {
            return Err(failed("a file came back different"));
        }
        let _ = std::fs::remove_file(&back);
        println!(
            "plexus {}: put {:.1} MiB/s ({:.2}× raw rocksdb), get {:.1} MiB/s ({:.2}× file read, {:.2}× file copy)",
            if sealed { "sealed" } else { "public" },
            rate(bytes, put),
            raw.as_secs_f64() / put.as_secs_f64(),
            rate(bytes, get),
            read.as_secs_f64() / get.as_secs_f64(),
            copy.as_secs_f64() / get.as_secs_f64(),
        );
    }
    c.stop();
    drop(c);
    let _ = std::fs::remove_dir_all(dir.join("three"));

    // Repair: four nodes, a holder killed.
    let mut c = cluster(&dir.join("four"), 4)?;
    let stored = fs::store(&c.nodes[0].api, &file, &[], true, Some(3), None)?;
    let id = stored.id.to_string();
    let victim = 3;
    let lost = c.nodes[victim]
        .api
        .get("/v1/fs/status")
        .ok()
        .and_then(|s| s["bytes"].as_u64())
        .unwrap_or(0);
    c.nodes[victim].kill();
    let start = Instant::now();
    wait_until(
        "every chunk back to 3 copies",
        Duration::from_secs(1800),
        || copies(&c, 0, &id).filter(|(min, _)| *min >= 3),
    )?;
    let repair = start.elapsed();
    println!(
        "repair after a SIGKILL: {:.0} MiB of copies lost, every chunk back to 3 copies in {:.1} s ({:.1} MiB/s, death detection included)",
        lost as f64 / MIB,
        repair.as_secs_f64(),
        rate(lost, repair)
    );
    c.stop();
    Ok(())
}
