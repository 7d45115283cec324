//! The scheduler as a durable actor's user code: decodes inputs, runs the state
//! machine, encodes replies, and hands commands to the durable core (which sends
//! them once the state that decided them is committed).

use plexus_actors::codec::{self, CodecError};
use plexus_actors::migratable::{Migratable, RestoreError, Snapshot};
use plexus_durable::activation::{Applied, Input, Output};

use crate::core::{Scheduler, State};
use crate::protocol::{Input as SchedulerInput, Response, Signed, View};

/// Encodes a request for the scheduler's inbox.
pub fn encode_request(signed: &Signed) -> Result<Vec<u8>, CodecError> {
    codec::encode_body(&SchedulerInput::Signed(signed.clone()))
}

/// Encodes a tick (a local input of the scheduler's host).
pub fn encode_tick(view: &View) -> Result<Vec<u8>, CodecError> {
    codec::encode_body(&SchedulerInput::Tick(view.clone()))
}

/// Decodes the scheduler's reply.
pub fn decode_response(bytes: &[u8]) -> Result<Response, CodecError> {
    codec::decode_body(bytes, codec::FRAME_BYTES_MAX)
}

/// The scheduler, hosted.
#[derive(Default)]
pub struct SchedulerApp {
    scheduler: Scheduler,
}

impl SchedulerApp {
    /// Restores from a snapshot (empty: a fresh scheduler).
    pub fn restore(snapshot: &Snapshot) -> Result<Self, RestoreError> {
        if snapshot.bytes.is_empty() && snapshot.schema_version == 0 {
            return Ok(Self::default());
        }
        Ok(Self {
            scheduler: Scheduler::new(State::restore(snapshot)?),
        })
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Applies a batch.
    pub fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodecError> {
        let mut out = Applied::default();
        for input in inputs {
            let decoded: Result<SchedulerInput, CodecError> =
                codec::decode_body(&input.payload, codec::FRAME_BYTES_MAX);
            let outcome = match decoded {
                Ok(SchedulerInput::Signed(s)) => Some(self.scheduler.request(&s)),
                Ok(SchedulerInput::Tick(view)) if input.from.is_none() => {
                    Some(self.scheduler.tick(view))
                }
                Ok(SchedulerInput::Tick(_)) => {
                    out.replies.push(Some(Err("ticks are local to the scheduler's host".into())));
                    continue;
                }
                Err(e) => {
                    out.replies.push(Some(Err(format!("not a scheduler request: {e}"))));
                    continue;
                }
            };
            let Some(outcome) = outcome else { continue };
            out.changed |= outcome.changed;
            out.outputs.extend(
                outcome
                    .commands
                    .into_iter()
                    .map(|(to, command)| Output::Command { to, command }),
            );
            let reply = match outcome.response {
                Some(r) => Some(
                    codec::encode_body(&r)
                        .map(serde_bytes::ByteBuf::from)
                        .map_err(|e| e.to_string()),
                ),
                None => None,
            };
            out.replies.push(reply);
        }
        if snapshot {
            out.snapshot = Some(self.scheduler.state().snapshot()?);
        }
        Ok(out)
    }
}
