//! The standard durable stage kinds every daemon runs (the scheduler is built into
//! `plexus-host`); embedders add their own through `plexus_host::Kinds`.
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
use plexus_actors::envelope::TraceContext;
use plexus_actors::migratable::Snapshot;
use plexus_durable::activation::{Applied, Input, Output};
use plexus_durable::types::DurableKey;
use plexus_host::{CodeError, DurableCode, DurableKind, Kinds};
use plexus_scheduler::protocol::ActorSpec;
use serde::{Deserialize, Serialize};

use crate::telemetry::traceparent;

/// The stage kinds every daemon runs.
pub const KINDS: [&str; 3] = ["relay", "word-count", "tally"];

/// Most distinct words a `word-count` actor keeps; past it new words are counted
/// only in the total (the state, and so each snapshot, stays bounded).
pub const WORDS_MAX: usize = 100_000;

/// Most ballast an actor may carry: 32 MiB, under the durable state bound
/// ([`plexus_durable::STATE_BYTES_MAX`]) with room for the rest of its state.
pub const BALLAST_MAX: u64 = 32 << 20;

/// The kinds a daemon runs unless its embedder adds others: [`KINDS`].
pub fn standard() -> Kinds {
    let mut kinds = Kinds::new();
    for name in KINDS {
        // The names are valid, unreserved and distinct (tested below).
        let _ = kinds.register(StageKind(name));
    }
    kinds
}

/// One of the standard stage kinds.
struct StageKind(&'static str);

impl DurableKind for StageKind {
    fn name(&self) -> &str {
        self.0
    }

    fn build(
        &self,
        _key: &DurableKey,
        spec: &ActorSpec,
        user: &Snapshot,
    ) -> Result<Box<dyn DurableCode>, CodeError> {
        let state = if user.bytes.is_empty() {
            // A fresh actor: `{"ballast_bytes": N}` in its config gives it N bytes of
            // state to carry (for migration benchmarks), at most `BALLAST_MAX`.
            let config: serde_json::Value = serde_json::from_str(&spec.config).unwrap_or_default();
            let ballast = config
                .get("ballast_bytes")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if ballast > BALLAST_MAX {
                return Err(CodeError::Config(format!(
                    "ballast_bytes {ballast} is over {BALLAST_MAX}"
                )));
            }
            StageState {
                ballast: vec![0x5a; ballast as usize],
                ..StageState::default()
            }
        } else {
            codec::decode_body(&user.bytes, plexus_durable::STATE_BYTES_MAX)
                .map_err(CodeError::State)?
        };
        Ok(Box::new(Stage {
            kind: self.0,
            state,
            outputs: spec.output_keys(),
        }))
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
    kind: &'static str,
    state: StageState,
    outputs: Vec<DurableKey>,
}

impl DurableCode for Stage {
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodeError> {
        let mut out = Applied::default();
        for input in inputs {
            let st = &mut self.state;
            st.count += 1;
            if input.trace.is_some() {
                st.last_trace = input.trace;
            }
            match self.kind {
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
            out.snapshot = Some(plexus_host::code::snapshot_of(&self.state, 1)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_kinds_all_register() {
        assert_eq!(standard().names().collect::<Vec<_>>(), {
            let mut k = KINDS.to_vec();
            k.sort_unstable();
            k
        });
    }
}
