//! `plexus fs ...` and `plexus kv ...`: the storage client.
//!
//! The client does the cryptography, so nothing readable leaves it: `put` draws
//! a fresh file key and nonce prefix from the OS generator, cuts the file into
//! chunks of 1 MiB, seals each (XChaCha20-Poly1305), uploads the ciphertext chunk
//! by chunk (a few in flight, so memory stays bounded whatever the file's size),
//! then the manifest, then the key wrapped to each reader (age X25519). `get`
//! reads the manifest, unwraps the key with the reader's identity, and fetches,
//! verifies (the hash, then the tag) and writes chunk by chunk; the output file
//! appears only once all of it checked out. `--public` stores plaintext, and is
//! the only way to.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use data_encoding::BASE64;
use indicatif::{ProgressBar, ProgressStyle};
use plexus_storage::access::{self, Identity};
use plexus_storage::manifest::CHUNK_BYTES_DEFAULT;
use plexus_storage::seal::{FileKey, Sealer, TAG_BYTES};
use plexus_storage::{ChunkId, Manifest, Sealing};
use serde_json::{Value, json};

use super::CliError;
use super::client::{ApiClient, ClientArgs};

/// The reader identity's file name in a data dir.
pub const IDENTITY_FILE: &str = "identity.age";
/// Chunk uploads or downloads in flight (24 uploads keep enough writes waiting
/// at each node for its chunk writer to share flushes among them).
const IN_FLIGHT: usize = 24;

/// `plexus fs ...`
#[derive(Debug, clap::Subcommand)]
pub enum FsCommand {
    /// Store a file, sealed for its readers (you, and each `--to`), unless
    /// `--public`. Prints the file's id.
    Put {
        /// The file.
        file: PathBuf,
        /// A reader's age recipient (`age1…`); repeatable. You are always one.
        #[arg(long = "to")]
        to: Vec<String>,
        /// Store plaintext: every storing node can read it.
        #[arg(long)]
        public: bool,
        /// Copies to keep (default: the node's `storage.replicas`, 3).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
        replicas: Option<u8>,
        /// Copies that must be synced before a chunk counts as stored (default:
        /// all of them).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
        quorum: Option<u8>,
        /// Your reader identity (default: <data dir>/identity.age, created on
        /// first use).
        #[arg(long)]
        identity: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fetch a file; every chunk is checked against its hash (and, sealed,
    /// opened with your identity).
    Get {
        /// The file's id.
        id: String,
        /// Where to write it (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Your reader identity.
        #[arg(long)]
        identity: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The files stored.
    Ls {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A file's size, chunks, and where each chunk's copies are.
    Stat {
        /// The file's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pin a file (files are pinned when stored).
    Pin {
        /// The file's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Unpin a file.
    Unpin {
        /// The file's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let more readers open a sealed file (its data is not re-encrypted).
    Share {
        /// The file's id.
        id: String,
        /// A reader's age recipient; repeatable.
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Your reader identity (one of the file's readers).
        #[arg(long)]
        identity: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a reader identity (or show the recipient of an existing one).
    Keygen {
        /// Where to keep it (default: <data dir>/identity.age).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// `plexus kv ...`
#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Set a key.
    Put {
        /// The key.
        #[arg(value_name = "KEY")]
        name: String,
        /// The value.
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a key's value.
    Get {
        /// The key.
        #[arg(value_name = "KEY")]
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a key.
    Del {
        /// The key.
        #[arg(value_name = "KEY")]
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List keys and values under a prefix.
    Ls {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print every change under a prefix as it happens (JSON lines), until
    /// interrupted.
    Watch {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn identity_path(given: Option<&Path>) -> PathBuf {
    given.map_or_else(
        || crate::config::default_data_dir().join(IDENTITY_FILE),
        Path::to_path_buf,
    )
}

fn read_identity(path: &Path) -> Result<Identity, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Input(format!(
            "cannot read the reader identity {}: {e} (`plexus fs keygen` makes one)",
            path.display()
        ))
    })?;
    access::identity(&text).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

/// The identity at `path`, created (readable by its owner only) if missing.
pub fn identity_or_new(path: &Path) -> Result<Identity, CliError> {
    if path.exists() {
        return read_identity(path);
    }
    if let Some(dir) = path.parent() {
        plexus_mesh::driver::create_private_dir(dir).map_err(|e| CliError::Input(e.to_string()))?;
    }
    let id = access::generate();
    let text = format!(
        "# a Plexus reader identity (age X25519); keep it secret\n# recipient: {}\n{}\n",
        id.to_public(),
        access::identity_text(&id)
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => f
            .write_all(text.as_bytes())
            .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read_identity(path),
        Err(e) => return Err(CliError::Input(format!("{}: {e}", path.display()))),
    }
    eprintln!(
        "created your reader identity at {} (recipient {})",
        path.display(),
        id.to_public()
    );
    Ok(id)
}

fn random<const N: usize>() -> Result<[u8; N], CliError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CliError::Failed(format!("no OS randomness: {e}")))?;
    Ok(b)
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

fn query(replicas: Option<u8>, quorum: Option<u8>) -> String {
    let mut q = Vec::new();
    if let Some(r) = replicas {
        q.push(format!("replicas={r}"));
    }
    if let Some(w) = quorum {
        q.push(format!("quorum={w}"));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Runs `jobs` (index, input) through `IN_FLIGHT` worker threads running `work`,
/// handing each result to `done` in completion order; stops at the first error.
/// At most `2 × IN_FLIGHT` inputs are alive at once.
fn pipeline<I: Send, O: Send>(
    jobs: impl Iterator<Item = Result<(usize, I), CliError>>,
    work: impl Fn(usize, I) -> Result<O, CliError> + Sync,
    mut done: impl FnMut(usize, O) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, I)>(IN_FLIGHT);
    let job_rx = std::sync::Mutex::new(job_rx);
    let (out_tx, out_rx) = mpsc::sync_channel::<(usize, Result<O, CliError>)>(IN_FLIGHT);
    let job_rx = &job_rx;
    let work = &work;
    std::thread::scope(move |scope| {
        for _ in 0..IN_FLIGHT {
            let out_tx = out_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = job_rx.lock().ok().and_then(|rx| rx.recv().ok());
                    let Some((i, input)) = next else { break };
                    if out_tx.send((i, work(i, input))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(out_tx);
        let mut first_error = None;
        let mut outstanding = 0usize;
        let mut collect =
            |outstanding: &mut usize, block: bool, first_error: &mut Option<CliError>| {
                let got = if block {
                    out_rx.recv().ok()
                } else {
                    out_rx.try_recv().ok()
                };
                if let Some((i, r)) = got {
                    *outstanding -= 1;
                    if first_error.is_none()
                        && let Err(e) = r.and_then(|o| done(i, o))
                    {
                        *first_error = Some(e);
                    }
                    true
                } else {
                    false
                }
            };
        for job in jobs {
            if first_error.is_some() {
                break;
            }
            let job = match job {
                Ok(j) => j,
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            };
            while outstanding >= 2 * IN_FLIGHT {
                collect(&mut outstanding, true, &mut first_error);
            }
            if job_tx.send(job).is_err() {
                break;
            }
            outstanding += 1;
            while collect(&mut outstanding, false, &mut first_error) {}
        }
        drop(job_tx);
        while outstanding > 0 && collect(&mut outstanding, true, &mut first_error) {}
        first_error.map_or(Ok(()), Err)
    })
}

/// What a put stored.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The file's id.
    pub id: ChunkId,
    /// Plaintext bytes.
    pub size: u64,
    /// Chunks.
    pub chunks: u64,
    /// Copies wanted, as the node settled it.
    pub replicas: Value,
}

/// `plexus fs put`.
#[allow(clippy::too_many_arguments)]
pub fn put(
    args: &ClientArgs,
    file: &Path,
    to: &[String],
    public: bool,
    replicas: Option<u8>,
    quorum: Option<u8>,
    identity: Option<&Path>,
) -> Result<(), CliError> {
    if public && !to.is_empty() {
        return Err(CliError::Input(
            "`--public` stores plaintext; it cannot also be sealed `--to` readers".into(),
        ));
    }
    if let (Some(r), Some(q)) = (replicas, quorum)
        && q > r
    {
        return Err(CliError::Input(format!(
            "`--quorum {q}` is more than `--replicas {r}`"
        )));
    }
    // Readers first: a bad recipient fails before any byte is sent.
    let mut readers = Vec::new();
    for r in to {
        readers.push(access::recipient(r).map_err(|e| CliError::Input(e.to_string()))?);
    }
    if !public {
        readers.push(identity_or_new(&identity_path(identity))?.to_public());
    }
    let api = ApiClient::new(&args.api);
    let stored = store(&api, file, &readers, public, replicas, quorum)?;
    eprintln!(
        "stored {} ({} bytes, {} chunks, {}, {} copies each)",
        file.display(),
        stored.size,
        stored.chunks,
        if public {
            "public".to_string()
        } else {
            format!("sealed for {} reader(s)", readers.len())
        },
        stored.replicas
    );
    println!("{}", stored.id);
    Ok(())
}

/// Stores `file` through the node `api` serves: sealed for `readers` (or
/// `public`), `replicas` copies acknowledged at `quorum`.
pub fn store(
    api: &ApiClient,
    file: &Path,
    readers: &[access::Recipient],
    public: bool,
    replicas: Option<u8>,
    quorum: Option<u8>,
) -> Result<Stored, CliError> {
    if !public && readers.is_empty() {
        return Err(CliError::Input(
            "a sealed file needs at least one reader".into(),
        ));
    }
    let mut source = std::fs::File::open(file)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
    let size = source
        .metadata()
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?
        .len();
    let chunk_bytes = CHUNK_BYTES_DEFAULT;
    let count = Manifest::chunks_for(size, chunk_bytes);
    if count as usize > plexus_storage::manifest::CHUNKS_MAX {
        return Err(CliError::Input(format!(
            "{} is {size} bytes: over the largest file ({} chunks of {chunk_bytes})",
            file.display(),
            plexus_storage::manifest::CHUNKS_MAX
        )));
    }
    let (sealing, key) = if public {
        (Sealing::Public, None)
    } else {
        let prefix = random::<16>()?;
        (
            Sealing::XChaCha20Poly1305 {
                nonce_prefix: prefix,
            },
            Some(FileKey::from_bytes(random::<32>()?)),
        )
    };
    let sealer = match (&sealing, &key) {
        (Sealing::XChaCha20Poly1305 { nonce_prefix }, Some(k)) => {
            Some(Sealer::new(k, *nonce_prefix, count))
        }
        _ => None,
    };
    let q = query(replicas, quorum);
    let pb = bar(size, "put");
    let mut ids = vec![None; count as usize];
    let mut left = size;
    let jobs = (0..count as usize).map(|i| {
        let len = left.min(u64::from(chunk_bytes));
        left -= len;
        // Room for the seal's tag too, so the chunk is sealed where it was read;
        // read without zeroing the buffer first.
        let mut plain = Vec::with_capacity(len as usize + TAG_BYTES);
        let read = (&mut source)
            .take(len)
            .read_to_end(&mut plain)
            .map_err(|e| CliError::Failed(format!("{}: {e}", file.display())))?;
        if read as u64 != len {
            return Err(CliError::Failed(format!(
                "{}: the file ended early (it changed while being read)",
                file.display()
            )));
        }
        Ok((i, plain))
    });
    pipeline(
        jobs,
        |i, plain: Vec<u8>| {
            let len = plain.len() as u64;
            let mut stored = plain;
            if let Some(s) = &sealer {
                s.seal_in_place(i as u64, &mut stored)
                    .map_err(|e| CliError::Failed(e.to_string()))?;
            }
            let expected = ChunkId::of(&stored);
            let answer = api.post_bytes(&format!("/v1/fs/chunks{q}"), &stored)?;
            let id = answer
                .get("id")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<ChunkId>().ok())
                .ok_or_else(|| CliError::Failed(format!("the node answered {answer}")))?;
            if id != expected {
                return Err(CliError::Failed(format!(
                    "the node named chunk {i} {id}, but its hash is {expected}"
                )));
            }
            Ok((id, len))
        },
        |i, (id, len)| {
            ids[i] = Some(id);
            pb.inc(len);
            Ok(())
        },
    )?;
    pb.finish_and_clear();
    let ids: Vec<ChunkId> = ids.into_iter().flatten().collect();
    let manifest = Manifest::new(size, chunk_bytes, sealing, ids)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let bytes = manifest
        .encode()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let answer = api.post_bytes(&format!("/v1/fs/files{q}"), &bytes)?;
    let id = manifest.id().map_err(|e| CliError::Failed(e.to_string()))?;
    if answer.get("id").and_then(Value::as_str) != Some(id.to_string().as_str()) {
        return Err(CliError::Failed(format!(
            "the node named the file {answer}, expected {id}"
        )));
    }
    if let Some(key) = &key {
        share_key(api, &id, key, readers)?;
    }
    Ok(Stored {
        id,
        size,
        chunks: count,
        replicas: answer.get("replicas").cloned().unwrap_or(json!("?")),
    })
}

fn share_key(
    api: &ApiClient,
    id: &ChunkId,
    key: &FileKey,
    readers: &[access::Recipient],
) -> Result<(), CliError> {
    for r in readers {
        let envelope = access::wrap(key, r).map_err(|e| CliError::Failed(e.to_string()))?;
        api.put_json(
            &format!("/v1/fs/keys/{id}"),
            &json!({ "recipient": r.to_string(), "envelope": BASE64.encode(&envelope) }),
        )?;
    }
    Ok(())
}

fn parse_id(text: &str) -> Result<ChunkId, CliError> {
    text.parse()
        .map_err(|e| CliError::Input(format!("`{text}`: {e}")))
}

fn manifest(api: &ApiClient, id: &ChunkId) -> Result<Manifest, CliError> {
    let bytes = api.get_bytes(&format!("/v1/fs/chunks/{id}"))?;
    if !id.matches(&bytes) {
        return Err(CliError::Failed(format!(
            "the node sent bytes for {id} that do not hash to it"
        )));
    }
    Manifest::decode(&bytes).map_err(|e| CliError::Input(format!("{id}: {e}")))
}

/// How long a get waits for a file's key envelopes to reach the node it asks
/// (the key-value store is eventually consistent; a write is usually everywhere
/// within a hop).
const ENVELOPE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn file_key(api: &ApiClient, id: &ChunkId, me: &Identity) -> Result<FileKey, CliError> {
    let deadline = std::time::Instant::now() + ENVELOPE_WAIT;
    let envelopes = loop {
        let found = api.get(&format!("/v1/fs/keys/{id}"))?;
        let envelopes: Vec<Vec<u8>> = found
            .get("envelopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("envelope").and_then(Value::as_str))
            .filter_map(|b| BASE64.decode(b.as_bytes()).ok())
            .collect();
        if !envelopes.is_empty() || std::time::Instant::now() >= deadline {
            break envelopes;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    access::unwrap(me, envelopes.iter().map(Vec::as_slice)).map_err(|e| {
        CliError::Input(format!(
            "{id}: {e} (recipient {}; the file has {} envelope(s))",
            me.to_public(),
            envelopes.len()
        ))
    })
}

/// `plexus fs get`.
pub fn get(
    args: &ClientArgs,
    id: &str,
    output: Option<&Path>,
    identity: Option<&Path>,
) -> Result<(), CliError> {
    let id = parse_id(id)?;
    let api = ApiClient::new(&args.api);
    let path = identity_path(identity);
    let reader = || read_identity(&path);
    fetch(&api, &id, &reader, output)
}

/// Fetches file `id` through the node `api` serves into `output` (stdout if
/// `None`), opening it with the identity `reader` gives if it is sealed.
pub fn fetch(
    api: &ApiClient,
    id: &ChunkId,
    reader: &dyn Fn() -> Result<Identity, CliError>,
    output: Option<&Path>,
) -> Result<(), CliError> {
    // Written to a temporary file beside the output, renamed once whole.
    let (mut sink, tmp): (Box<dyn Write>, Option<PathBuf>) = match output {
        Some(path) => {
            let tmp = path.with_extension(format!(
                "{}partial",
                path.extension()
                    .map(|e| format!("{}.", e.to_string_lossy()))
                    .unwrap_or_default()
            ));
            let f = std::fs::File::create(&tmp)
                .map_err(|e| CliError::Input(format!("{}: {e}", tmp.display())))?;
            (Box::new(std::io::BufWriter::new(f)), Some(tmp))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let flushed = fetch_into(api, id, reader, &mut sink).and_then(|()| {
        sink.flush()
            .map_err(|e| CliError::Failed(format!("writing the output: {e}")))
    });
    drop(sink);
    match (flushed, tmp, output) {
        (Ok(()), Some(tmp), Some(out)) => std::fs::rename(&tmp, out)
            .map_err(|e| CliError::Failed(format!("{}: {e}", out.display()))),
        (Ok(()), _, _) => Ok(()),
        (Err(e), tmp, _) => {
            if let Some(tmp) = tmp {
                let _ = std::fs::remove_file(tmp);
            }
            Err(e)
        }
    }
}

/// Fetches file `id` through the node `api` serves into `sink`, in order,
/// opening it with the identity `reader` gives if it is sealed. On an error
/// `sink` may hold a prefix of the file.
pub fn fetch_into(
    api: &ApiClient,
    id: &ChunkId,
    reader: &dyn Fn() -> Result<Identity, CliError>,
    sink: &mut dyn Write,
) -> Result<(), CliError> {
    let manifest = manifest(api, id)?;
    let sealer = match manifest.sealing {
        Sealing::XChaCha20Poly1305 { nonce_prefix } => {
            let key = file_key(api, id, &reader()?)?;
            Some(Sealer::new(
                &key,
                nonce_prefix,
                manifest.chunks.len() as u64,
            ))
        }
        _ => None,
    };
    let pb = bar(manifest.size, "get");
    let result = fetch_all(api, id, &manifest, sealer.as_ref(), sink, &pb);
    pb.finish_and_clear();
    result
}

/// Times a cut stream is resumed before a get gives up.
const STREAM_RESUMES: usize = 3;

fn fetch_all(
    api: &ApiClient,
    id: &ChunkId,
    manifest: &Manifest,
    sealer: Option<&Sealer>,
    sink: &mut dyn Write,
    pb: &ProgressBar,
) -> Result<(), CliError> {
    // One stream of stored chunks, split by the manifest's lengths; each chunk is
    // checked and opened by the pipeline's workers and written in order
    // (out-of-order chunks wait, at most 2 × IN_FLIGHT of them). A stream cut
    // short is resumed from the first chunk not yet written.
    let count = manifest.chunks.len();
    let mut ready: std::collections::BTreeMap<usize, Vec<u8>> = std::collections::BTreeMap::new();
    // Buffers written out come back to be read into again: a fresh megabyte
    // each chunk cost a page fault per page (and zeroing) on every get.
    let spare: std::cell::RefCell<Vec<Vec<u8>>> = std::cell::RefCell::new(Vec::new());
    let mut next = 0usize;
    let mut resumes = 0usize;
    while next < count {
        let mut body = api.stream(&format!("/v1/fs/files/{id}/stored?from={next}"))?;
        let mut cut: Option<std::io::Error> = None;
        let jobs = manifest
            .chunks
            .iter()
            .enumerate()
            .skip(next)
            .map_while(|(i, c)| {
                if cut.is_some() {
                    return None;
                }
                let mut bytes = spare.borrow_mut().pop().unwrap_or_default();
                bytes.resize(manifest.stored_len(i), 0);
                match body.read_exact(&mut bytes) {
                    Ok(()) => Some(Ok((i, (*c, bytes)))),
                    Err(e) => {
                        cut = Some(e);
                        None
                    }
                }
            });
        pipeline(
            jobs,
            |i, (c, bytes): (ChunkId, Vec<u8>)| {
                if !c.matches(&bytes) {
                    return Err(CliError::Failed(format!(
                        "chunk {i} ({c}) came back altered; the node's copy is corrupt"
                    )));
                }
                let mut bytes = bytes;
                if let Some(s) = sealer {
                    s.open_in_place(i as u64, &mut bytes)
                        .map_err(|e| CliError::Failed(e.to_string()))?;
                }
                Ok(bytes)
            },
            |i, plain| {
                ready.insert(i, plain);
                while let Some(p) = ready.remove(&next) {
                    sink.write_all(&p)
                        .map_err(|e| CliError::Failed(format!("writing the output: {e}")))?;
                    pb.inc(p.len() as u64);
                    next += 1;
                    spare.borrow_mut().push(p);
                }
                Ok(())
            },
        )?;
        if next < count {
            resumes += 1;
            if resumes > STREAM_RESUMES {
                let why = cut.map_or_else(|| "the stream ended".to_string(), |e| e.to_string());
                return Err(CliError::Failed(format!(
                    "only {next} of {count} chunks arrived: {why}"
                )));
            }
        }
    }
    Ok(())
}

/// `plexus fs share`.
pub fn share(
    args: &ClientArgs,
    id: &str,
    to: &[String],
    identity: Option<&Path>,
) -> Result<(), CliError> {
    let id = parse_id(id)?;
    let mut readers = Vec::new();
    for r in to {
        readers.push(access::recipient(r).map_err(|e| CliError::Input(e.to_string()))?);
    }
    let api = ApiClient::new(&args.api);
    let manifest = manifest(&api, &id)?;
    if !manifest.sealed() {
        return Err(CliError::Input(format!(
            "{id} is public: every node can read it already"
        )));
    }
    let key = file_key(&api, &id, &read_identity(&identity_path(identity))?)?;
    share_key(&api, &id, &key, &readers)?;
    for r in &readers {
        println!("{id} shared with {r}");
    }
    Ok(())
}

/// `plexus fs keygen`.
pub fn keygen(output: Option<&Path>) -> Result<(), CliError> {
    let path = identity_path(output);
    let id = identity_or_new(&path)?;
    println!("{}", id.to_public());
    Ok(())
}

/// `plexus fs ls|stat|pin|unpin` and `plexus kv ...`: one call each.
pub fn simple(api: &ClientArgs, what: Simple<'_>) -> Result<(), CliError> {
    let client = ApiClient::new(&api.api);
    let out = match what {
        Simple::Ls => client.get("/v1/fs/files")?,
        Simple::Stat(id) => client.get(&format!("/v1/fs/files/{}", parse_id(id)?))?,
        Simple::Pin(id) => {
            client.post(&format!("/v1/fs/files/{}/pin", parse_id(id)?), &json!({}))?
        }
        Simple::Unpin(id) => client.delete(&format!("/v1/fs/files/{}/pin", parse_id(id)?))?,
        Simple::KvPut(k, v) => {
            client.put_bytes(&format!("/v1/kv/{}", key_path(k)?), v.as_bytes())?
        }
        Simple::KvGet(k) => {
            let v = client.get_bytes(&format!("/v1/kv/{}", key_path(k)?))?;
            std::io::stdout()
                .write_all(&v)
                .and_then(|()| std::io::stdout().write_all(b"\n"))
                .map_err(|e| CliError::Failed(e.to_string()))?;
            return Ok(());
        }
        Simple::KvDel(k) => client.delete(&format!("/v1/kv/{}", key_path(k)?))?,
        Simple::KvLs(prefix) => client.get(&format!("/v1/kv?prefix={}", encode_query(prefix)))?,
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

/// One-call commands.
pub enum Simple<'a> {
    /// `fs ls`
    Ls,
    /// `fs stat`
    Stat(&'a str),
    /// `fs pin`
    Pin(&'a str),
    /// `fs unpin`
    Unpin(&'a str),
    /// `kv put`
    KvPut(&'a str, &'a str),
    /// `kv get`
    KvGet(&'a str),
    /// `kv del`
    KvDel(&'a str),
    /// `kv ls`
    KvLs(&'a str),
}

fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A key as a URL path (each segment percent-encoded, slashes kept).
fn key_path(key: &str) -> Result<String, CliError> {
    if key.is_empty() || key.len() > plexus_storage::kv::KEY_BYTES_MAX {
        return Err(CliError::Input(format!(
            "a key is 1..={} bytes",
            plexus_storage::kv::KEY_BYTES_MAX
        )));
    }
    Ok(encode_query(key))
}

/// `plexus kv watch`.
pub fn watch(args: &ClientArgs, prefix: &str) -> Result<(), CliError> {
    let client = ApiClient::new(&args.api);
    let mut body = client.stream(&format!("/v1/watch/kv?prefix={}", encode_query(prefix)))?;
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(&mut body);
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line)
            .map_err(|e| CliError::Failed(format!("the watch ended: {e}")))?;
        if n == 0 {
            return Err(CliError::Failed("the node ended the watch".into()));
        }
        if line.trim() == "{}" {
            continue; // keep-alive
        }
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
}
