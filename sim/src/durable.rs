//! The durable-actor layer of a simulated node: the production durable service
//! (`plexus-durable`) and scheduler (`plexus-scheduler`) cores, plus the toy user
//! code the simulated job runs.
//!
//! The job is two stages: `relay` actors take client messages and forward each to
//! one `sink` actor (chosen by hashing the message). Both check, as they apply
//! inputs, that each sender's sequence numbers arrive exactly once and in order;
//! the engine checks the durability promises around them (see `world.rs`).

use std::collections::BTreeMap;

use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_durable::activation::{Applied, Input, Output};
use plexus_durable::types::DurableKey;
use plexus_scheduler::app::SchedulerApp;
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

/// User code hosted for one actor.
pub enum Hosted {
    /// A relay or sink.
    Toy {
        /// Its state.
        state: Toy,
        /// Sinks to forward to (relays only).
        sinks: Vec<DurableKey>,
    },
    /// The scheduler.
    Scheduler(Box<SchedulerApp>),
}

impl Hosted {
    /// Builds the user code for `key` from its spec and snapshot.
    pub fn restore(key: &DurableKey, spec: &[u8], user: &Snapshot) -> Result<Hosted, String> {
        if key.as_str() == plexus_scheduler::SCHEDULER_KEY {
            return SchedulerApp::restore(user)
                .map(|a| Hosted::Scheduler(Box::new(a)))
                .map_err(|e| e.to_string());
        }
        let spec = ActorSpec::decode(spec).map_err(|e| e.to_string())?;
        let state = if user.bytes.is_empty() {
            Toy::default()
        } else {
            codec::decode_body(&user.bytes, codec::FRAME_BYTES_MAX).map_err(|e| e.to_string())?
        };
        let sinks = spec.output_keys();
        Ok(Hosted::Toy { state, sinks })
    }

    /// Applies a batch; `violations` collects order breaks the toy code sees.
    pub fn apply(
        &mut self,
        key: &DurableKey,
        inputs: Vec<Input>,
        snapshot: bool,
        violations: &mut Vec<String>,
    ) -> Result<Applied, String> {
        match self {
            Hosted::Scheduler(app) => app.apply(inputs, snapshot).map_err(|e| e.to_string()),
            Hosted::Toy { state, sinks } => {
                let mut out = Applied::default();
                for input in inputs {
                    let sender = input.from.map(|s| s.to_string()).unwrap_or_default();
                    let last = state.last.entry(sender.clone()).or_insert(0);
                    if input.seq != *last + 1 {
                        violations.push(format!(
                            "{key} applied seq {} from {sender} after {last}",
                            input.seq
                        ));
                    }
                    *last = input.seq;
                    state.count += 1;
                    out.replies.push(None);
                    if !sinks.is_empty() {
                        let h = blake3::hash(&input.payload);
                        let i = (h.as_bytes()[0] as usize) % sinks.len();
                        out.outputs.push(Output::Send {
                            to: sinks[i].clone(),
                            payload: input.payload,
                            trace: None,
                        });
                    }
                }
                if snapshot {
                    out.snapshot = Some(Snapshot {
                        schema_version: 1,
                        bytes: codec::encode_body(&*state).map_err(|e| e.to_string())?,
                    });
                }
                Ok(out)
            }
        }
    }
}
