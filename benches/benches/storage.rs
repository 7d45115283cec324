//! Storage throughput and repair, beside the disk's own figures in the same run.
//!
//! Peers first, on the same disk: raw rocksdb writes of the same bytes in 1 MiB
//! values made durable (what a storage shard does, with nothing else): each
//! write synced with rocksdb's defaults, each synced with blob files, and with
//! blob files written without the log and flushed every 8 MiB as the shard's
//! chunk writer does (the fastest of the three is the put's peer, measured again
//! just before each put); a plain file copy (`std::fs::copy`, then fsync); a
//! plain file read from the disk (its pages dropped from the cache first: the
//! peer of a get into memory) and from the page cache; the file read from the
//! disk and written to another through a buffer, without a sync (the peer of a
//! get into a file); and the chunk sealer's rate beside RustCrypto's
//! XChaCha20-Poly1305 on 1 MiB chunks. Then three real
//! `plexus node` processes on 127.0.0.1 (`plexus::cli::local`): `--bytes` put
//! with r = 3 through one node and got back through another, sealed
//! (XChaCha20-Poly1305 on the client) and public. Each file is got `--gets`
//! times (3 by default; the median is reported) into memory, hashed as it
//! arrives and compared with the original's hash, and as often into a file,
//! compared byte for byte (`--get-into memory|file|both`). Each get is paired
//! with its peer measured just before it (the ratio reported is the median of
//! the pairs'), and before every get the nodes' files are dropped from the page
//! cache, so each get reads its chunks from the disk as the read peer does. Then a fourth node: a holder is killed
//! with SIGKILL and the time until every chunk is back to three copies is the
//! repair time, over the bytes of copies lost.
//!
//! This binary is the nodes' program too (`PLEXUS_BENCH_ROLE=node`), so they run
//! the build being measured.
//!
//! `cargo bench -p plexus-benches --bench storage` (default `--bytes 1073741824`).
//! Under `cargo test` it is a smoke test of 8 MiB.
//!
//! `--scale --bytes N [--replicas R]` is the bounded-memory run instead: a sparse
//! file of N bytes (zeros on a disk too small for N random bytes; sealed, so
//! every stored chunk still differs) put with r = R through one of three nodes
//! and got back through another into a hasher, then the peak resident memory of
//! the client and of each node.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use plexus::cli::CliError;
use plexus::cli::fs;
use plexus::cli::local::{LocalCluster, LocalOptions, in_scratch_dir, wait_until};
use plexus_benches::flag;

const MIB: f64 = 1024.0 * 1024.0;
/// Gets per file (the median is reported), unless `--gets N` says otherwise.
const GETS: usize = 3;

fn main() -> ExitCode {
    if plexus_benches::is_node() {
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
    let scale = args.iter().any(|a| a == "--scale");
    let replicas = match flag(&args, "--replicas", 3u8) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let gets = match flag(&args, "--gets", GETS) {
        Ok(0) => {
            eprintln!("error: --gets: at least one");
            return ExitCode::from(2);
        }
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let into = match flag(&args, "--get-into", "both".to_string()).as_deref() {
        Ok("both") => GetInto::Both,
        Ok("memory") => GetInto::Memory,
        Ok("file") => GetInto::File,
        Ok(other) => {
            eprintln!("error: --get-into: `{other}` is not memory, file or both");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let run = |dir: &Path| {
        if scale {
            scale_run(dir, bytes, replicas)
        } else {
            bench(dir, bytes, gets, into)
        }
    };
    match in_scratch_dir("bench-storage", false, run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the bench's gets write (`--get-into`; both by default, alternating).
#[derive(Clone, Copy, PartialEq, Eq)]
enum GetInto {
    Memory,
    File,
    Both,
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

/// How the raw rocksdb peer writes.
#[derive(Clone, Copy)]
enum Raw {
    /// rocksdb's defaults, each write synced through the write-ahead log.
    Default,
    /// Values in blob files as a storage shard keeps them, each write synced
    /// through the write-ahead log.
    Blobs,
    /// Values in blob files, no write-ahead log: the writes of each 8 MiB are
    /// made durable by one flush, as a storage shard's chunk writer does.
    Flushed,
}

/// Raw rocksdb: the file's bytes as 1 MiB values, durable as `mode` says.
fn raw_rocksdb(dir: &Path, file: &Path, mode: Raw) -> Result<Duration, CliError> {
    let _ = std::fs::remove_dir_all(dir.join("raw-rocksdb"));
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    if matches!(mode, Raw::Blobs | Raw::Flushed) {
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(4 << 10);
        opts.set_blob_file_size(256 << 20);
    }
    let db = rocksdb::DB::open(&opts, dir.join("raw-rocksdb")).map_err(failed)?;
    let mut write = rocksdb::WriteOptions::default();
    match mode {
        Raw::Default | Raw::Blobs => write.set_sync(true),
        Raw::Flushed => write.disable_wal(true),
    }
    let mut src = std::fs::File::open(file).map_err(failed)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        db.put_opt(i.to_be_bytes(), &buf[..n], &write)
            .map_err(failed)?;
        i += 1;
        if matches!(mode, Raw::Flushed) && i.is_multiple_of(8) {
            db.flush().map_err(failed)?;
        }
    }
    if matches!(mode, Raw::Flushed) {
        db.flush().map_err(failed)?;
    }
    Ok(start.elapsed())
}

/// Drops `file`'s pages from the page cache, so the next read comes from the
/// disk.
fn drop_cached(file: &std::fs::File) -> Result<(), CliError> {
    use std::os::fd::AsRawFd as _;
    file.sync_all().map_err(failed)?;
    // SAFETY: a valid open descriptor; the call only advises the kernel.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(failed(format!("posix_fadvise: error {rc}")));
    }
    Ok(())
}

/// Drops the pages of every file under `dir` (the nodes' stores) from the page
/// cache, so a get reads its chunks from the disk as the read peer does.
fn drop_cached_under(dir: &Path) -> Result<(), CliError> {
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let kind = entry.file_type().map_err(failed)?;
        if kind.is_dir() {
            drop_cached_under(&entry.path())?;
        } else if kind.is_file()
            && let Ok(f) = std::fs::File::open(entry.path())
        {
            drop_cached(&f)?;
        }
    }
    Ok(())
}

/// Reads `file` with its pages dropped from the page cache first, so the bytes
/// come from the disk.
fn cold_read(file: &Path) -> Result<Duration, CliError> {
    let mut src = std::fs::File::open(file).map_err(failed)?;
    drop_cached(&src)?;
    let mut sink = vec![0u8; 1 << 20];
    let start = Instant::now();
    while read_full(&mut src, &mut sink)? > 0 {}
    Ok(start.elapsed())
}

/// Reads `file` from the disk (its pages dropped first) and writes it to `to`
/// through a 1 MiB buffer, without a sync: what a get into a file does with
/// the bytes once it has them.
fn cold_copy(file: &Path, to: &Path) -> Result<Duration, CliError> {
    let mut src = std::fs::File::open(file).map_err(failed)?;
    drop_cached(&src)?;
    let mut dst = std::fs::File::create(to).map_err(failed)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    loop {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).map_err(failed)?;
    }
    drop(dst);
    let took = start.elapsed();
    let _ = std::fs::remove_file(to);
    Ok(took)
}

/// The BLAKE3 hash of `file`.
fn hash_file(file: &Path) -> Result<blake3::Hash, CliError> {
    let mut src = std::fs::File::open(file).map_err(failed)?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut src, &mut h).map_err(failed)?;
    Ok(h.finalize())
}

/// Gets, each with its peer measured just before it.
#[derive(Default)]
struct Rounds(Vec<(Duration, Duration)>);

impl Rounds {
    fn push(&mut self, peer: Duration, get: Duration) {
        self.0.push((peer, get));
    }

    /// The median get and the median of the per-round ratios (get rate over
    /// the peer's), with every round's figures in order.
    fn summary(&self, bytes: u64) -> String {
        if self.0.is_empty() {
            return "not run".into();
        }
        let mut gets: Vec<Duration> = self.0.iter().map(|r| r.1).collect();
        gets.sort();
        let mut ratios: Vec<f64> = self
            .0
            .iter()
            .map(|(peer, get)| peer.as_secs_f64() / get.as_secs_f64().max(1e-9))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let rounds = self
            .0
            .iter()
            .map(|(peer, get)| format!("{:.0}/{:.0}", rate(bytes, *get), rate(bytes, *peer)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{:.1} MiB/s median, {:.2}× median ratio (rounds, get/peer MiB/s: {rounds})",
            rate(bytes, gets[gets.len() / 2]),
            ratios[ratios.len() / 2]
        )
    }
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
        || plexus_benches::node_command(&exe),
        &LocalOptions {
            nodes,
            ..LocalOptions::default()
        },
    )
}

/// Seals and opens `chunks` chunks of 1 MiB with the chunk sealer (HChaCha20, then
/// ring's ChaCha20-Poly1305) and with RustCrypto's `XChaCha20Poly1305`, in
/// alternating rounds, checking that both give the same bytes; prints each
/// one's median rate.
fn sealing_rates(chunks: u64) -> Result<(), CliError> {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use plexus_storage::seal::{FileKey, Sealer};
    let (key, prefix) = ([7u8; 32], [9u8; 16]);
    let ours = Sealer::new(&FileKey::from_bytes(key), prefix, chunks);
    let theirs = XChaCha20Poly1305::new(&key.into());
    let aad = |i: u64| {
        let mut a = b"plexus/fs/chunk/v1".to_vec();
        a.extend_from_slice(&i.to_be_bytes());
        a.extend_from_slice(&chunks.to_be_bytes());
        a
    };
    let plain = vec![0x5au8; 1 << 20];
    let (mut ring_times, mut rust_times) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..chunks {
            let mut buf = plain.clone();
            ours.seal_in_place(i, &mut buf).map_err(failed)?;
            ours.open_in_place(i, &mut buf).map_err(failed)?;
        }
        ring_times.push(start.elapsed());
        let start = Instant::now();
        for i in 0..chunks {
            let mut buf = plain.clone();
            let nonce = Sealer::nonce(&prefix, i);
            theirs
                .encrypt_in_place(XNonce::from_slice(&nonce), &aad(i), &mut buf)
                .map_err(|_| failed("RustCrypto refused to seal"))?;
            theirs
                .decrypt_in_place(XNonce::from_slice(&nonce), &aad(i), &mut buf)
                .map_err(|_| failed("RustCrypto refused to open"))?;
        }
        rust_times.push(start.elapsed());
    }
    let mut check = plain.clone();
    ours.seal_in_place(1, &mut check).map_err(failed)?;
    let mut reference = plain.clone();
    let nonce = Sealer::nonce(&prefix, 1);
    theirs
        .encrypt_in_place(XNonce::from_slice(&nonce), &aad(1), &mut reference)
        .map_err(|_| failed("RustCrypto refused to seal"))?;
    if check != reference {
        return Err(failed("the sealer and RustCrypto disagree"));
    }
    ring_times.sort();
    rust_times.sort();
    // Each chunk is sealed and opened: twice its bytes.
    let moved = 2 * chunks * (1 << 20);
    println!(
        "sealing 1 MiB chunks (seal + open, median of 5): the sealer (ring) {:.0} MiB/s, RustCrypto's XChaCha20-Poly1305 {:.0} MiB/s",
        rate(moved, ring_times[2]),
        rate(moved, rust_times[2])
    );
    Ok(())
}

/// A process's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The bounded-memory run (see the module docs).
fn scale_run(dir: &Path, bytes: u64, replicas: u8) -> Result<(), CliError> {
    println!(
        "== storage scale run: {:.1} GiB sealed, r = {replicas}, 3 nodes on 127.0.0.1",
        bytes as f64 / (1024.0 * MIB)
    );
    let file = dir.join("zeros.bin");
    std::fs::File::create(&file)
        .and_then(|f| f.set_len(bytes))
        .map_err(failed)?;
    let c = cluster(&dir.join("three"), 3)?;
    let identity = fs::identity_or_new(&dir.join("reader.age"))?;
    let start = Instant::now();
    let stored = fs::store(
        &c.nodes[0].api,
        &file,
        &[identity.to_public()],
        false,
        Some(replicas),
        None,
    )?;
    let put = start.elapsed();
    let reader = || fs::identity_or_new(&dir.join("reader.age"));
    let mut got = blake3::Hasher::new();
    let start = Instant::now();
    fs::fetch_into(&c.nodes[1].api, &stored.id, &reader, &mut got)?;
    let get = start.elapsed();
    let mut want = blake3::Hasher::new();
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        want.update(&zeros[..n]);
        left -= n as u64;
    }
    if got.finalize() != want.finalize() {
        return Err(failed("the file came back different"));
    }
    println!(
        "put {:.1} MiB/s, get {:.1} MiB/s (checked whole)",
        rate(bytes, put),
        rate(bytes, get)
    );
    let client = peak_rss("self").unwrap_or(0);
    let nodes: Vec<u64> = c
        .nodes
        .iter()
        .filter_map(|n| n.pid().and_then(|p| peak_rss(&p.to_string())))
        .collect();
    println!(
        "peak resident memory: client {:.0} MiB, nodes {}",
        client as f64 / MIB,
        nodes
            .iter()
            .map(|b| format!("{:.0} MiB", *b as f64 / MIB))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn copies(cluster: &LocalCluster, via: usize, id: &str) -> Option<(u64, u64)> {
    let s = cluster.nodes[via]
        .api
        .get(&format!("/v1/fs/files/{id}"))
        .ok()?;
    Some((s["copies_min"].as_u64()?, s["copies_max"].as_u64()?))
}

fn bench(dir: &Path, bytes: u64, gets_per_file: usize, into: GetInto) -> Result<(), CliError> {
    println!(
        "== storage bench: {:.0} MiB, r = 3, 3 nodes on 127.0.0.1, one disk",
        bytes as f64 / MIB
    );
    let file = dir.join("data.bin");
    make_file(&file, bytes)?;

    // The peers: the disk under the same bytes.
    let raw_default = raw_rocksdb(dir, &file, Raw::Default)?;
    let raw_blobs = raw_rocksdb(dir, &file, Raw::Blobs)?;
    let raw_flushed = raw_rocksdb(dir, &file, Raw::Flushed)?;
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
    let cold = cold_read(&file)?;
    let copied_cold = cold_copy(&file, &dir.join("copy.bin"))?;
    let want = hash_file(&file)?;
    let _ = std::fs::remove_dir_all(dir.join("raw-rocksdb"));
    println!(
        "peer: raw rocksdb synced 1 MiB puts {:.1} MiB/s (blob files: {:.1}; no log, a flush per 8 MiB: {:.1}), file copy + fsync {:.1} MiB/s, file read {:.1} MiB/s from the disk, {:.1} MiB/s from the page cache, read from the disk and written to a file (no fsync) {:.1} MiB/s",
        rate(bytes, raw_default),
        rate(bytes, raw_blobs),
        rate(bytes, raw_flushed),
        rate(bytes, copy),
        rate(bytes, cold),
        rate(bytes, read),
        rate(bytes, copied_cold)
    );

    // A chunk per MiB of the file, at most 256 (the 8 MiB smoke test under
    // `cargo test` runs RustCrypto's side unoptimized).
    sealing_rates((bytes >> 20).clamp(1, 256))?;
    let mut c = cluster(&dir.join("three"), 3)?;
    let identity = fs::identity_or_new(&dir.join("reader.age"))?;
    for sealed in [true, false] {
        let readers = if sealed {
            vec![identity.to_public()]
        } else {
            vec![]
        };
        // The put's peer again, just before it (the disk's speed moves within
        // minutes on this VM): the fastest raw form of this round.
        let raw = raw_rocksdb(dir, &file, Raw::Default)?
            .min(raw_rocksdb(dir, &file, Raw::Blobs)?)
            .min(raw_rocksdb(dir, &file, Raw::Flushed)?);
        let _ = std::fs::remove_dir_all(dir.join("raw-rocksdb"));
        let start = Instant::now();
        let stored = fs::store(&c.nodes[0].api, &file, &readers, !sealed, Some(3), None)?;
        let put = start.elapsed();
        let back = dir.join("back.bin");
        let reader = || fs::identity_or_new(&dir.join("reader.age"));
        // Each get is checked whole and paired with its peer measured just
        // before it (this VM's disk reads move by 3× within minutes; the ratio
        // is taken per pair). Into memory (hashed as the bytes arrive, compared
        // with the original's hash) is the file read's like; into a file
        // (`plexus fs get -o`, compared byte for byte) is the read-and-write's.
        // Before each, the nodes' files leave the page cache, as the peer's file
        // does: every get reads its chunks from the disk.
        println!("stored; getting it {gets_per_file} times each way");
        let (mut to_memory, mut to_file) = (Rounds::default(), Rounds::default());
        for _ in 0..gets_per_file {
            if into != GetInto::File {
                let peer = cold_read(&file)?;
                drop_cached_under(&dir.join("three"))?;
                let mut got = blake3::Hasher::new();
                let start = Instant::now();
                fs::fetch_into(&c.nodes[1].api, &stored.id, &reader, &mut got)?;
                to_memory.push(peer, start.elapsed());
                if got.finalize() != want {
                    return Err(failed("a file came back different"));
                }
            }
            if into == GetInto::Memory {
                continue;
            }
            let peer = cold_copy(&file, &dir.join("copy.bin"))?;
            drop_cached_under(&dir.join("three"))?;
            let start = Instant::now();
            fs::fetch(&c.nodes[1].api, &stored.id, &reader, Some(&back))?;
            to_file.push(peer, start.elapsed());
            if !same_file(&file, &back)? {
                return Err(failed("a file came back different"));
            }
            let _ = std::fs::remove_file(&back);
        }
        let mut line = format!(
            "plexus {}: put {:.1} MiB/s ({:.2}× raw rocksdb, {:.1} MiB/s just before it)",
            if sealed { "sealed" } else { "public" },
            rate(bytes, put),
            raw.as_secs_f64() / put.as_secs_f64(),
            rate(bytes, raw),
        );
        if into != GetInto::File {
            line += &format!(
                "; get into memory {} against a file read from the disk",
                to_memory.summary(bytes)
            );
        }
        if into != GetInto::Memory {
            line += &format!(
                "; get into a file {} against a file read from the disk and written",
                to_file.summary(bytes)
            );
        }
        println!("{line}");
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
