//! The `plexus` command line: argument parsing, and one function per command.
//!
//! Exit codes: 0 success; 1 the operation failed at run time; 2 the input (an
//! argument, a file, a spec) was refused. Errors print as `error: ...` on stderr,
//! never as a panic.

/// `println!` for commands that keep running with SIGPIPE ignored: output to a
/// closed pipe is dropped instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub mod anvil;
pub mod client;
mod daemon;
pub mod demo;
pub mod digits;
pub mod fs;
pub mod keys;
pub mod local;
mod pipeline;
mod sim;

/// Plexus: a decentralized actor runtime for AI workloads.
#[derive(Debug, Parser)]
#[command(name = "plexus", version = crate::VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Log filter when RUST_LOG is unset (e.g. `info`, `plexus=debug`).
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run or check pipeline specs.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// List the actor kinds a node registers by default.
    Kinds,
    /// Manage this node's identity key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create a network (governance key and an empty signed allowlist).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage the network's signed allowlist.
    #[command(subcommand)]
    Allowlist(AllowlistCommand),
    /// Run a node until SIGINT or SIGTERM.
    Node(daemon::NodeArgs),
    /// The deterministic simulator.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Train the bundled digits classifier reproducibly (same seed, same weights
    /// hash) and report its held-out accuracy.
    Train {
        /// Seeds the initial weights and the shuffles.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Passes over the training images.
        #[arg(long, default_value_t = 30)]
        epochs: u32,
        /// Images per step.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Write the weights file here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Start a single-node dev cluster on embedded defaults (keys, network and
    /// data in the default data dir; API on 127.0.0.1:7070); runs until stopped.
    Up {
        /// Data directory (default: the XDG data dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// API address.
        #[arg(long, default_value = "127.0.0.1:7070")]
        api: String,
        /// Epoch length of the dev committee (used when `up` first writes its
        /// config, `up.toml` in the data dir; edit that file afterwards).
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        epoch_length: Duration,
    },
    /// Sign and submit a job spec (TOML), then show its actors starting.
    Deploy {
        /// The job spec.
        file: PathBuf,
        #[command(flatten)]
        client: client::ClientArgs,
        /// Give up waiting for the actors after this long.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        wait: Duration,
    },
    /// List the jobs.
    Jobs {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// List the durable actors and where they run.
    Actors {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// List the nodes of the mesh.
    Nodes {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Move a durable actor to another node, live.
    Migrate {
        /// The actor (`job/stage/index`).
        actor: String,
        /// The target node (PeerId).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        client: client::ClientArgs,
        /// Give up waiting after this long.
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        wait: Duration,
    },
    /// Stop a job and forget its actors' state.
    Stop {
        /// The job.
        job: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Send text messages to a durable actor, exactly once.
    Send {
        /// The actor (`job/stage/index`).
        actor: String,
        /// The messages.
        #[arg(required = true)]
        texts: Vec<String>,
        /// A W3C traceparent they (and what they cause) carry along.
        #[arg(long)]
        traceparent: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// List epochs: state (collecting, signed, anchored, final, failed), signers,
    /// availability and rewards per node.
    Epochs {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Show or verify epoch checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Classify images with a model the cluster serves: by its weights hash (an
    /// executor serving it is found) or by an executor's key (`job/stage/0`).
    ///
    /// With `--local`, TARGET is a weights file run here, without a node, in
    /// passes of `--batch` images spread over `--threads` threads; it prints each
    /// pass's input and output digests, as a receipt names them (to check a
    /// receipt, or a piece of evidence, by re-executing it).
    Infer {
        /// A model hash or an executor's key (with `--local`: a weights file).
        target: String,
        /// A JSON file of one image (64 values 0..=16) or a list of them, or a PGM
        /// image (any size, dark ink on a light ground; scaled to 8×8).
        input: PathBuf,
        /// Run here, without a node.
        #[arg(long)]
        local: bool,
        /// With `--local`: images per pass.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
        batch: u32,
        /// With `--local`: threads running passes.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// List the models a node holds and the executors serving models in the
    /// cluster; `--add FILE` adds a weights file to the node.
    Models {
        /// A weights file to add (`plexus train --out` writes one).
        #[arg(long)]
        add: Option<PathBuf>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Per epoch, per worker: receipts signed, sampled, verified, disputed; the
    /// evidence of wrong work this node holds.
    Receipts {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Files in the cluster's storage: content-addressed, sealed on this machine
    /// for their readers, replicated and repaired.
    #[command(subcommand)]
    Fs(fs::FsCommand),
    /// The cluster's replicated key-value store.
    #[command(subcommand)]
    Kv(fs::KvCommand),
    /// Run the demo: a 4-node cluster of real processes on loopback, a pipeline
    /// deployed to it, traffic, a live migration, a node killed with SIGKILL, a
    /// signed epoch checkpoint, and a digits classifier served and audited.
    Demo {
        /// Client messages to send.
        #[arg(long, default_value_t = 3000)]
        messages: u64,
        /// Keep the cluster up at the end (open the dashboard; Ctrl-C stops it),
        /// and keep the demo's directory (data dirs and logs).
        #[arg(long)]
        keep: bool,
        /// Anchor checkpoints on a local anvil chain (installed by
        /// scripts/install-chain-tools.sh) instead of the embedded ledger.
        #[arg(long)]
        chain: bool,
        /// Make node 4 sign wrong outputs for the classifier, and show it caught.
        #[arg(long)]
        cheat: bool,
    },
}

/// `plexus checkpoint ...`
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Print one signed checkpoint from a node.
    Show {
        /// The epoch.
        epoch: u64,
        /// Also write its export (the signed checkpoint's bytes) to this file.
        #[arg(long)]
        export: Option<std::path::PathBuf>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Verify an exported checkpoint offline against a group key; with `--chain`,
    /// also that the chain anchored exactly this checkpoint for its epoch.
    Verify {
        /// The exported file (from `plexus checkpoint show --export`).
        file: std::path::PathBuf,
        /// The group key to trust (hex, 96 bytes compressed G2). Without it the
        /// key the checkpoint names is used, which only shows self-consistency.
        #[arg(long)]
        group_key: Option<String>,
        /// An EVM JSON-RPC URL where the checkpoint should be anchored.
        #[arg(long, requires = "contract")]
        chain: Option<String>,
        /// The CheckpointAnchor contract's address (with `--chain`).
        #[arg(long)]
        contract: Option<String>,
    },
}

/// `plexus sim ...`
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run one scenario with one seed; print metrics and the trace hash.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the metrics as CSV.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Run many seeds in parallel; fail if any seed fails.
    Sweep {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Seeds, e.g. `1..101` or `1..=100`.
        #[arg(long, value_parser = sim::parse_seeds)]
        seeds: std::ops::Range<u64>,
        /// Parallel runs (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write every seed's metrics as CSV.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
}

/// `plexus keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create this node's key (refuses to overwrite one) and print its PeerId.
    New {
        /// Data directory (default: the XDG data dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print this node's PeerId.
    Show {
        /// Data directory (default: the XDG data dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `plexus network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a governance key and an empty signed allowlist (version 1).
    Init {
        /// Where to put them (default: <data dir>/network).
        #[arg(long)]
        network_dir: Option<PathBuf>,
        /// The network's name.
        #[arg(long, default_value = "plexus")]
        name: String,
    },
}

/// `plexus allowlist ...`
#[derive(Debug, Subcommand)]
pub enum AllowlistCommand {
    /// Admit a node (or, with --submitter, a job-submission key); bumps the version.
    Add {
        /// The PeerId.
        peer: String,
        /// A tag, `key=value` or a flag such as `kyc` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Who runs it.
        #[arg(long)]
        operator: Option<String>,
        /// Declared cores.
        #[arg(long)]
        cpu: Option<f64>,
        /// Declared memory, e.g. 8GiB.
        #[arg(long)]
        memory: Option<String>,
        /// Declared GPUs.
        #[arg(long)]
        gpus: Option<u32>,
        /// Admit the key as a job submitter instead of a node.
        #[arg(long)]
        submitter: bool,
        /// The network directory (default: <data dir>/network).
        #[arg(long)]
        network_dir: Option<PathBuf>,
    },
    /// Remove a node or submitter; bumps the version.
    Remove {
        /// The PeerId.
        peer: String,
        /// The network directory.
        #[arg(long)]
        network_dir: Option<PathBuf>,
    },
    /// List the entries.
    Show {
        /// The network directory.
        #[arg(long)]
        network_dir: Option<PathBuf>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `plexus pipeline ...`
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run a pipeline spec (TOML or JSON) on a local node and print its report.
    Run {
        /// The spec file.
        spec: PathBuf,
        /// Give up after this long (e.g. `30s`, `5m`).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a spec without running it.
    Check {
        /// The spec file.
        spec: PathBuf,
    },
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); try 30s, 5m or 1h"))
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The user's input was refused (exit code 2).
    #[error("{0}")]
    Input(String),
    /// The operation failed while running (exit code 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Input(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sim(_) = cli.command {
        // A large run's heap on transparent huge pages: the process executes itself
        // once more with glibc's tunable set, before any thread starts. When it
        // cannot, the run goes on with ordinary pages (`plexus_sim::heap`).
        if let err @ plexus_sim::heap::HugePages::Exec(_) =
            plexus_sim::heap::reexec_with_huge_pages()
        {
            eprintln!("note: {err}; running with ordinary pages");
        }
    }
    // One-shot commands die quietly of SIGPIPE when their reader goes away
    // (`plexus status | head -1`), as Unix tools do; Rust ignores SIGPIPE, so a
    // `println!` into a closed pipe would panic instead. Commands that own sockets
    // or child processes keep ignoring it (a peer's closed socket must not kill a
    // node) and write their output with `say!`, which drops it on a broken pipe.
    if !matches!(
        cli.command,
        Command::Node(_) | Command::Up { .. } | Command::Demo { .. }
    ) {
        restore_default_sigpipe();
    }
    // A node sets tracing up itself, once its config and id are known.
    let _telemetry = match cli.command {
        Command::Node(_) | Command::Up { .. } => None,
        _ => crate::telemetry::init(&cli.log),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command, &cli.log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

#[cfg(unix)]
fn restore_default_sigpipe() {
    // SAFETY: called once at start-up, before any other thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}

fn run_fs(command: fs::FsCommand) -> Result<(), CliError> {
    use fs::{FsCommand, Simple};
    match command {
        FsCommand::Put {
            file,
            to,
            public,
            replicas,
            quorum,
            identity,
            client,
        } => fs::put(
            &client,
            &file,
            &to,
            public,
            replicas,
            quorum,
            identity.as_deref(),
        ),
        FsCommand::Get {
            id,
            output,
            identity,
            client,
        } => fs::get(&client, &id, output.as_deref(), identity.as_deref()),
        FsCommand::Ls { client } => fs::simple(&client, Simple::Ls),
        FsCommand::Stat { id, client } => fs::simple(&client, Simple::Stat(&id)),
        FsCommand::Pin { id, client } => fs::simple(&client, Simple::Pin(&id)),
        FsCommand::Unpin { id, client } => fs::simple(&client, Simple::Unpin(&id)),
        FsCommand::Share {
            id,
            to,
            identity,
            client,
        } => fs::share(&client, &id, &to, identity.as_deref()),
        FsCommand::Keygen { output } => fs::keygen(output.as_deref()),
    }
}

fn run_kv(command: fs::KvCommand) -> Result<(), CliError> {
    use fs::{KvCommand, Simple};
    match command {
        KvCommand::Put {
            name,
            value,
            client,
        } => fs::simple(&client, Simple::KvPut(&name, &value)),
        KvCommand::Get { name, client } => fs::simple(&client, Simple::KvGet(&name)),
        KvCommand::Del { name, client } => fs::simple(&client, Simple::KvDel(&name)),
        KvCommand::Ls { prefix, client } => fs::simple(&client, Simple::KvLs(&prefix)),
        KvCommand::Watch { prefix, client } => fs::watch(&client, &prefix),
    }
}

async fn run(command: Command, log: &str) -> Result<(), CliError> {
    match command {
        Command::Pipeline(PipelineCommand::Run {
            spec,
            timeout,
            json,
        }) => pipeline::run(&spec, timeout, json).await,
        Command::Pipeline(PipelineCommand::Check { spec }) => pipeline::check(&spec),
        Command::Keys(KeysCommand::New { data_dir }) => keys::keys_new(data_dir),
        Command::Keys(KeysCommand::Show { data_dir }) => keys::keys_show(data_dir),
        Command::Network(NetworkCommand::Init { network_dir, name }) => {
            keys::network_init(network_dir, &name)
        }
        Command::Allowlist(AllowlistCommand::Add {
            peer,
            tags,
            operator,
            cpu,
            memory,
            gpus,
            submitter,
            network_dir,
        }) => keys::allowlist_add(
            network_dir,
            &peer,
            keys::AddOptions {
                tags,
                operator,
                cpu,
                memory,
                gpus,
                submitter,
                quiet: false,
            },
        ),
        Command::Allowlist(AllowlistCommand::Remove { peer, network_dir }) => {
            keys::allowlist_remove(network_dir, &peer)
        }
        Command::Allowlist(AllowlistCommand::Show { network_dir, json }) => {
            keys::allowlist_show(network_dir, json)
        }
        Command::Node(args) => daemon::run(args, log).await,
        Command::Train {
            seed,
            epochs,
            batch,
            out,
        } => blocking(move || train(seed, epochs, batch, out.as_deref())).await,
        Command::Sim(SimCommand::Run {
            scenario,
            seed,
            json,
            csv,
        }) => sim::run(&scenario, seed, json, csv.as_deref()),
        Command::Sim(SimCommand::Sweep {
            scenario,
            seeds,
            jobs,
            csv,
        }) => sim::sweep(&scenario, seeds, jobs, csv.as_deref()),
        Command::Up {
            data_dir,
            api,
            epoch_length,
        } => demo::up(data_dir, api, epoch_length, log).await,
        Command::Deploy { file, client, wait } => {
            blocking(move || client::deploy(&client, &file, wait)).await
        }
        Command::Jobs { client } => blocking(move || client::jobs(&client)).await,
        Command::Actors { client } => blocking(move || client::actors(&client)).await,
        Command::Nodes { client } => blocking(move || client::nodes(&client)).await,
        Command::Migrate {
            actor,
            to,
            client,
            wait,
        } => blocking(move || client::migrate(&client, &actor, &to, wait)).await,
        Command::Stop { job, client } => blocking(move || client::stop(&client, &job)).await,
        Command::Send {
            actor,
            texts,
            traceparent,
            client,
        } => blocking(move || client::send(&client, &actor, texts, traceparent)).await,
        Command::Epochs { client } => blocking(move || client::epochs(&client)).await,
        Command::Infer {
            target,
            input,
            local: true,
            batch,
            threads,
            ..
        } => blocking(move || client::infer_local(&target, &input, batch, threads)).await,
        Command::Infer {
            target,
            input,
            client,
            ..
        } => blocking(move || client::infer(&client, &target, &input)).await,
        Command::Models { add, client } => {
            blocking(move || client::models(&client, add.as_deref())).await
        }
        Command::Receipts { client } => blocking(move || client::receipts(&client)).await,
        Command::Fs(command) => blocking(move || run_fs(command)).await,
        Command::Kv(command) => blocking(move || run_kv(command)).await,
        Command::Checkpoint(CheckpointCommand::Show {
            epoch,
            export,
            client,
        }) => blocking(move || client::checkpoint_show(&client, epoch, export.as_deref())).await,
        Command::Checkpoint(CheckpointCommand::Verify {
            file,
            group_key,
            chain,
            contract,
        }) => {
            client::checkpoint_verify(
                &file,
                group_key.as_deref(),
                chain.as_deref(),
                contract.as_deref(),
            )
            .await
        }
        Command::Demo {
            messages,
            keep,
            chain,
            cheat,
        } => blocking(move || demo::run(messages, keep, chain, cheat)).await,
        Command::Kinds => {
            let node = crate::Node::builder().build();
            for kind in node.kinds().names() {
                println!("{kind}");
            }
            Ok(())
        }
    }
}

/// Runs blocking client code off the async workers.
/// `plexus train`.
fn train(seed: u64, epochs: u32, batch: usize, out: Option<&Path>) -> Result<(), CliError> {
    let data = plexus_ml::digits::Digits::bundled().map_err(|e| CliError::Failed(e.to_string()))?;
    let cfg = plexus_ml::train::TrainConfig {
        seed,
        epochs,
        batch,
        ..plexus_ml::train::TrainConfig::default()
    };
    let started = std::time::Instant::now();
    let trained = plexus_ml::train::train(&cfg, &data).map_err(|e| match e {
        plexus_ml::train::TrainError::Config(why) => CliError::Input(why.into()),
        other => CliError::Failed(other.to_string()),
    })?;
    println!(
        "trained {} in {:.1} s (seed {seed}, {epochs} epochs, batch {batch}): held-out accuracy {:.1}% ({}/{})",
        plexus_ml::model::ARCH,
        started.elapsed().as_secs_f64(),
        trained.accuracy() * 100.0,
        trained.correct,
        trained.held_out
    );
    println!("weights {}", plexus_ml::hex(&trained.hash));
    if let Some(path) = out {
        let bytes = trained
            .weights
            .encode()
            .map_err(|e| CliError::Failed(e.to_string()))?;
        std::fs::write(path, bytes)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
        println!("written to {}", path.display());
    }
    Ok(())
}

async fn blocking(
    f: impl FnOnce() -> Result<(), CliError> + Send + 'static,
) -> Result<(), CliError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CliError::Failed(format!("the command panicked: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_well_formed() {
        // clap checks names, flags and groups only when a command is parsed;
        // this checks every subcommand at once.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
