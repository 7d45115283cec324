//! The user code durable actors run: the scheduler, and the stage kinds a job spec
//! can name.
//!
//! | kind | does | state |
//! |------|------|-------|
//! | `relay` | forwards each message to one downstream actor (by hash of the message) | a count |
//! | `word-count` | counts the words of each message (UTF-8 text), then forwards it like `relay` | a count per word |
//! | `tally` | a sink: counts messages per sender and checks each sender's numbers arrive once, in order | counts, last number per sender |
//!
//! Every kind's state is its snapshot, so it moves with the actor and survives its
//! node: that is the point of durable actors.

use std::collections::BTreeMap;

use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_actors::envelope::TraceContext;
use plexus_durable::activation::{Applied, Input, Output};
use plexus_durable::types::DurableKey;
use plexus_scheduler::SCHEDULER_KEY;
use plexus_scheduler::app::SchedulerApp;
use plexus_scheduler::protocol::ActorSpec;
use serde::{Deserialize, Serialize};

/// The stage kinds durable actors can run.
pub const KINDS: [&str; 3] = ["relay", "word-count", "tally"];

/// Most distinct words a `word-count` actor keeps; past it new words are counted
/// only in the total (the state, and so each snapshot, stays bounded).
pub const WORDS_MAX: usize = 100_000;

/// Most ballast an actor may carry (its snapshot must fit a frame).
pub const BALLAST_MAX: u64 = 8 << 20;

/// One actor's user code.
pub trait DurableCode: Send {
    /// Applies a batch in order; returns a snapshot if asked.
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, String>;
    /// A summary of the state, for the API.
    fn describe(&self) -> serde_json::Value;
}

/// Builds the user code for `key` from its spec and restored state.
pub fn build(
    key: &DurableKey,
    spec: &[u8],
    user: &Snapshot,
) -> Result<Box<dyn DurableCode>, String> {
    if key.as_str() == SCHEDULER_KEY {
        return SchedulerApp::restore(user)
            .map(|a| Box::new(Sched(a)) as Box<dyn DurableCode>)
            .map_err(|e| e.to_string());
    }
    let spec = ActorSpec::decode(spec).map_err(|e| format!("bad actor spec: {e}"))?;
    if !KINDS.contains(&spec.kind.as_str()) {
        return Err(format!("unknown durable kind `{}`", spec.kind));
    }
    let state = if user.bytes.is_empty() {
        // A fresh actor: `{"ballast_bytes": N}` in its config gives it N bytes of
        // state to carry (for migration benchmarks), at most `BALLAST_MAX`.
        let config: serde_json::Value = serde_json::from_str(&spec.config).unwrap_or_default();
        let ballast = config
            .get("ballast_bytes")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if ballast > BALLAST_MAX {
            return Err(format!("ballast_bytes {ballast} is over {BALLAST_MAX}"));
        }
        StageState {
            ballast: vec![0x5a; ballast as usize],
            ..StageState::default()
        }
    } else {
        codec::decode_body(&user.bytes, codec::FRAME_BYTES_MAX)
            .map_err(|e| format!("the state does not decode: {e}"))?
    };
    let outputs = spec.output_keys();
    Ok(Box::new(Stage {
        kind: spec.kind,
        state,
        outputs,
    }))
}

struct Sched(SchedulerApp);

impl DurableCode for Sched {
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, String> {
        self.0.apply(inputs, snapshot).map_err(|e| e.to_string())
    }

    fn describe(&self) -> serde_json::Value {
        let s = self.0.scheduler().state();
        serde_json::json!({ "jobs": s.jobs.len(), "actors": s.actors.len(), "tick": s.tick })
    }
}

/// The state of a stage actor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageState {
    /// Messages applied.
    pub count: u64,
    /// Per sender: the last number applied (`tally`).
    pub last: BTreeMap<String, u64>,
    /// Per sender: messages applied (`tally`).
    pub per_sender: BTreeMap<String, u64>,
    /// Numbers that arrived out of order or twice (`tally`); must stay 0.
    pub out_of_order: u64,
    /// Word counts (`word-count`).
    pub words: BTreeMap<String, u64>,
    /// Words not kept because `WORDS_MAX` was reached.
    pub words_dropped: u64,
    /// Extra state carried along (config `ballast_bytes`).
    #[serde(with = "serde_bytes")]
    pub ballast: Vec<u8>,
    /// The trace context of the last input that carried one: shows a request's
    /// trace crossing stages and nodes.
    pub last_trace: Option<TraceContext>,
}

struct Stage {
    kind: String,
    state: StageState,
    outputs: Vec<DurableKey>,
}

impl DurableCode for Stage {
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, String> {
        let mut out = Applied::default();
        for input in inputs {
            let st = &mut self.state;
            st.count += 1;
            if input.trace.is_some() {
                st.last_trace = input.trace;
            }
            match self.kind.as_str() {
                "tally" => {
                    if let Some(from) = &input.from {
                        let from = from.to_string();
                        let last = st.last.entry(from.clone()).or_insert(0);
                        if input.seq != *last + 1 {
                            st.out_of_order += 1;
                        }
                        *last = input.seq;
                        *st.per_sender.entry(from).or_insert(0) += 1;
                    }
                }
                "word-count" => {
                    let text = String::from_utf8_lossy(&input.payload);
                    for w in text.split_whitespace() {
                        let w = w.to_lowercase();
                        if let Some(n) = st.words.get_mut(&w) {
                            *n += 1;
                        } else if st.words.len() < WORDS_MAX {
                            st.words.insert(w, 1);
                        } else {
                            st.words_dropped += 1;
                        }
                    }
                }
                _ => {}
            }
            out.replies.push(None);
            if !self.outputs.is_empty() {
                let h = blake3::hash(&input.payload);
                let i = (h.as_bytes()[0] as usize) % self.outputs.len();
                out.outputs.push(Output::Send {
                    to: self.outputs[i].clone(),
                    payload: input.payload,
                    trace: input.trace,
                });
            }
        }
        if snapshot {
            out.snapshot = Some(Snapshot {
                schema_version: 1,
                bytes: codec::encode_body(&self.state).map_err(|e| e.to_string())?,
            });
        }
        Ok(out)
    }

    fn describe(&self) -> serde_json::Value {
        let st = &self.state;
        let mut top: Vec<(&String, &u64)> = st.words.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        top.truncate(5);
        serde_json::json!({
            "kind": self.kind,
            "count": st.count,
            "senders": st.per_sender,
            "out_of_order": st.out_of_order,
            "distinct_words": st.words.len(),
            "state_bytes": st.ballast.len(),
            "last_trace": st.last_trace.map(|t| traceparent(&t)),
            "top_words": top,
        })
    }
}

/// The W3C `traceparent` text of a trace context.
pub fn traceparent(t: &TraceContext) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "00-{}-{}-{:02x}",
        hex(&t.trace_id),
        hex(&t.span_id),
        t.flags
    )
}

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn parse_traceparent(text: &str) -> Result<TraceContext, String> {
    let parts: Vec<&str> = text.trim().split('-').collect();
    let bad = || format!("`{text}` is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
    if parts.len() != 4
        || parts[0] != "00"
        || parts[1].len() != 32
        || parts[2].len() != 16
        || parts[3].len() != 2
    {
        return Err(bad());
    }
    let bytes = |h: &str| -> Result<Vec<u8>, String> {
        (0..h.len())
            .step_by(2)
            .map(|i| {
                h.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
                    .ok_or_else(bad)
            })
            .collect()
    };
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(&bytes(parts[1])?);
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&bytes(parts[2])?);
    if trace_id == [0; 16] || span_id == [0; 8] {
        return Err(bad());
    }
    Ok(TraceContext {
        trace_id,
        span_id,
        flags: bytes(parts[3])?[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_refused() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = parse_traceparent(text).unwrap();
        assert_eq!(t.flags, 1);
        assert_eq!(traceparent(&t), text);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_err(), "{bad}");
        }
    }
}
