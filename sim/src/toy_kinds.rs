//! The toy durable kinds the simulated job runs (user code, registered with the
//! shared host core like any embedder's kinds; the hosting itself is
//! `plexus-host`, driven by `world/workload/durable.rs`).
//!
//! The job is two stages: `relay` actors take client messages and forward each to
//! one `sink` actor (chosen by hashing the message). Both check, as they apply
//! inputs, that each sender's sequence numbers arrive exactly once and in order,
//! and write what they find to an [`OrderLog`] the engine turns into violations.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_durable::activation::{Applied, Input, Output};
use plexus_durable::types::DurableKey;
use plexus_host::{CodeError, DurableCode, DurableKind, Kinds};
use plexus_scheduler::protocol::ActorSpec;
use serde::{Deserialize, Serialize};

/// The job's name.
pub const JOB: &str = "sim";
/// Its stages' kinds.
pub const RELAY: &str = "sim-relay";
/// See [`RELAY`].
pub const SINK: &str = "sim-sink";

/// The job spec the operator deploys.
pub fn job_spec(replicas: u32, durability: usize) -> String {
    format!(
        r#"name = "{JOB}"
durability = {durability}
[resources]
cpu = "100m"
[[stage]]
name = "relay"
kind = "{RELAY}"
to = ["sink"]
replicas = {replicas}
[[stage]]
name = "sink"
kind = "{SINK}"
replicas = {replicas}
"#
    )
}

/// A toy actor's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toy {
    /// Per sender: the last sequence number applied.
    pub last: BTreeMap<String, u64>,
    /// Inputs applied.
    pub count: u64,
}

/// Where toy actors write the order breaks they see (a number applied out of
/// order or twice). One simulation is one thread; the lock only satisfies
/// `DurableCode: Send`.
pub type OrderLog = Arc<Mutex<Vec<String>>>;

/// The kinds the simulated job runs, writing to `log`.
pub fn kinds(log: &OrderLog) -> Kinds {
    let mut kinds = Kinds::new();
    for name in [RELAY, SINK] {
        // Two valid, distinct names.
        let _ = kinds.register(ToyKind {
            name,
            log: log.clone(),
        });
    }
    kinds
}

struct ToyKind {
    name: &'static str,
    log: OrderLog,
}

impl DurableKind for ToyKind {
    fn name(&self) -> &str {
        self.name
    }

    fn build(
        &self,
        key: &DurableKey,
        spec: &ActorSpec,
        state: &Snapshot,
    ) -> Result<Box<dyn DurableCode>, CodeError> {
        let state = if state.bytes.is_empty() {
            Toy::default()
        } else {
            codec::decode_body(&state.bytes, codec::FRAME_BYTES_MAX).map_err(CodeError::State)?
        };
        Ok(Box::new(ToyCode {
            key: key.clone(),
            state,
            sinks: spec.output_keys(),
            log: self.log.clone(),
        }))
    }
}

struct ToyCode {
    key: DurableKey,
    state: Toy,
    /// Sinks to forward to (relays only).
    sinks: Vec<DurableKey>,
    log: OrderLog,
}

impl DurableCode for ToyCode {
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodeError> {
        let mut out = Applied::default();
        for input in inputs {
            let sender = input.from.map(|s| s.to_string()).unwrap_or_default();
            let last = self.state.last.entry(sender.clone()).or_insert(0);
            if input.seq != *last + 1
                && let Ok(mut log) = self.log.lock()
            {
                log.push(format!(
                    "{} applied seq {} from {sender} after {last}",
                    self.key, input.seq
                ));
            }
            *last = input.seq;
            self.state.count += 1;
            out.replies.push(None);
            if !self.sinks.is_empty() {
                let h = blake3::hash(&input.payload);
                let i = (h.as_bytes()[0] as usize) % self.sinks.len();
                out.outputs.push(Output::Send {
                    to: self.sinks[i].clone(),
                    payload: input.payload,
                    trace: None,
                });
            }
        }
        if snapshot {
            out.snapshot = Some(plexus_host::code::snapshot_of(&self.state, 1)?);
        }
        Ok(out)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "count": self.state.count })
    }
}
