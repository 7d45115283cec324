//! Shared fixtures for the benchmarks in `benches/benches/`: the same counter actor
//! written for Plexus, for raw ractor and as a tokio task, so every figure is a
//! like-for-like ratio measured in the same run.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use plexus_actors::runtime::{Actor, ActorError, Context, Message};
use ractor::RpcReplyPort;
use tokio::sync::{mpsc, oneshot};

/// Plexus counter messages.
pub enum Count {
    /// Add one.
    Inc,
    /// Read the count (the reply).
    Get,
}

impl Message for Count {
    type Reply = u64;
}

/// The Plexus counter.
pub struct PlexusCounter;

impl Actor for PlexusCounter {
    type Msg = Count;
    type State = u64;
    type Args = ();

    async fn started(&self, _: &Context<Count>, _: ()) -> Result<u64, ActorError> {
        Ok(0)
    }

    async fn handle(&self, _: &Context<Count>, msg: Count, n: &mut u64) -> Result<u64, ActorError> {
        if let Count::Inc = msg {
            *n += 1;
        }
        Ok(*n)
    }
}

/// Raw ractor counter messages.
pub enum RCount {
    /// Add one.
    Inc,
    /// Read the count.
    Get(RpcReplyPort<u64>),
}

/// The raw ractor counter.
pub struct RactorCounter;

impl ractor::Actor for RactorCounter {
    type Msg = RCount;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ractor::ActorRef<RCount>,
        _: (),
    ) -> Result<u64, ractor::ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<RCount>,
        msg: RCount,
        n: &mut u64,
    ) -> Result<(), ractor::ActorProcessingErr> {
        match msg {
            RCount::Inc => *n += 1,
            RCount::Get(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

/// Tokio task counter messages.
pub enum TCount {
    /// Add one.
    Inc,
    /// Read the count.
    Get(oneshot::Sender<u64>),
}

/// Spawns the tokio-task counter behind a bounded mpsc channel.
pub fn spawn_tokio_counter(capacity: usize) -> (mpsc::Sender<TCount>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(capacity);
    let handle = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(msg) = rx.recv().await {
            match msg {
                TCount::Inc => n += 1,
                TCount::Get(reply) => {
                    let _ = reply.send(n);
                }
            }
        }
    });
    (tx, handle)
}

/// The value after `--name` (or in `--name=N`); other arguments are cargo's or
/// libtest's and are ignored.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    let inline = format!("{name}=");
    let value = args.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            Some(args.get(i + 1).cloned().unwrap_or_default())
        } else {
            a.strip_prefix(&inline).map(str::to_string)
        }
    });
    match value {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name}: `{v}` is not a number")),
    }
}

/// The environment variable that makes a node bench's binary run as one of its
/// nodes (`node`): its `main` then runs the `plexus` command line, so the nodes
/// run the build being measured.
pub const ROLE: &str = "PLEXUS_BENCH_ROLE";

/// Whether this process was started as one of a bench's nodes.
pub fn is_node() -> bool {
    std::env::var_os(ROLE).is_some_and(|r| r == "node")
}

/// The command that starts the bench binary `exe` as a `plexus` node.
pub fn node_command(exe: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(exe);
    c.env(ROLE, "node");
    c
}
