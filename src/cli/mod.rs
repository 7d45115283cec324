//! The `plexus` command line: argument parsing, and one function per command.
//!
//! Exit codes: 0 success; 1 the operation failed at run time; 2 the input (an
//! argument, a file, a spec) was refused. Errors print as `error: ...` on stderr,
//! never as a panic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod pipeline;

/// Plexus: a decentralized actor runtime for AI workloads.
#[derive(Debug, Parser)]
#[command(name = "plexus", version, about, propagate_version = true)]
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
    let _telemetry = crate::telemetry::init(&cli.log);
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
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Pipeline(PipelineCommand::Run {
            spec,
            timeout,
            json,
        }) => pipeline::run(&spec, timeout, json).await,
        Command::Pipeline(PipelineCommand::Check { spec }) => pipeline::check(&spec),
        Command::Kinds => {
            let node = crate::Node::builder().build();
            for kind in node.kinds().names() {
                println!("{kind}");
            }
            Ok(())
        }
    }
}
