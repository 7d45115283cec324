//! The scheduler as a durable actor's user code: decodes inputs, runs the state
//! machine, encodes replies, and hands commands to the durable core (which sends
//! them once the state that decided them is committed).

use plexus_actors::codec::{self, CodecError};
use plexus_actors::migratable::{Migratable, RestoreError, Snapshot};
use plexus_durable::activation::{Applied, Input, Output};

use crate::core::{Scheduler, State};
use crate::protocol::{Input as SchedulerInput, Response, Signed, View};

/// Encodes a request for the scheduler's inbox, stamped with the submitting
/// host's clock `now_ms` (milliseconds since the Unix epoch): the time its expiry
/// is judged at (see [`crate::protocol::admit`]).
pub fn encode_request(signed: &Signed, now_ms: u64) -> Result<Vec<u8>, CodecError> {
    codec::encode_body(&SchedulerInput::Signed {
        signed: signed.clone(),
        now_ms,
    })
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
                Ok(SchedulerInput::Signed { signed, now_ms }) => {
                    Some(self.scheduler.request(&signed, now_ms))
                }
                Ok(SchedulerInput::Tick(view)) if input.from.is_none() => {
                    Some(self.scheduler.tick(view))
                }
                Ok(SchedulerInput::Tick(_)) => {
                    out.replies
                        .push(Some(Err("ticks are local to the scheduler's host".into())));
                    continue;
                }
                Err(e) => {
                    out.replies
                        .push(Some(Err(format!("not a scheduler request: {e}"))));
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
            let reply = outcome.response.map(|r| {
                codec::encode_body(&r)
                    .map(serde_bytes::ByteBuf::from)
                    .map_err(|e| e.to_string())
            });
            out.replies.push(reply);
        }
        if snapshot {
            out.snapshot = Some(self.scheduler.state().snapshot()?);
        }
        Ok(out)
    }
}

/// Scheduler ticks the registry must show no scheduler before the lowest live
/// node restores it: long enough for a migrated scheduler's new registration to
/// spread by gossip (a dead host is noticed only after failure detection anyway).
pub const WATCHDOG_GRACE_TICKS: u32 = 10;

/// How many nodes keep the scheduler's snapshots.
pub const SCHEDULER_REPLICAS: usize = 3;

/// The scheduler's replica set: chosen by rendezvous hashing from the allowlisted
/// nodes, so every node computes the same set without asking anyone.
pub fn scheduler_set(allowlisted: &[plexus_actors::NodeId]) -> Option<plexus_durable::ReplicaSet> {
    let chosen = plexus_durable::rendezvous(crate::SCHEDULER_KEY, allowlisted, SCHEDULER_REPLICAS);
    plexus_durable::ReplicaSet::new(chosen)
}

/// Decides when a node should (re)activate the scheduler: when the registry has
/// shown no scheduler for `grace` consecutive checks and this node is the lowest
/// live node. Ballot fencing keeps two nodes that disagree on that safe; this only
/// keeps them from racing needlessly.
#[derive(Clone, Debug, Default)]
pub struct Watchdog {
    missing: u32,
}

impl Watchdog {
    /// Checks once. `located`: the registry resolves the scheduler; `here`: this
    /// node hosts (or is restoring) it already.
    pub fn check(
        &mut self,
        me: plexus_actors::NodeId,
        live: &[plexus_actors::NodeId],
        located: bool,
        here: bool,
        grace: u32,
    ) -> bool {
        if located || here {
            self.missing = 0;
            return false;
        }
        self.missing = self.missing.saturating_add(1);
        let lowest = live.iter().copied().chain(std::iter::once(me)).min();
        self.missing >= grace && lowest == Some(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::NodeId;

    #[test]
    fn only_the_lowest_live_node_takes_over_after_the_grace() {
        let live = [NodeId::synthetic(2), NodeId::synthetic(5)];
        let mut w = Watchdog::default();
        assert!(!w.check(NodeId::synthetic(1), &live, false, false, 2));
        assert!(w.check(NodeId::synthetic(1), &live, false, false, 2));
        assert!(
            !w.check(NodeId::synthetic(1), &live, true, false, 2),
            "found again"
        );
        let mut other = Watchdog::default();
        for _ in 0..5 {
            assert!(!other.check(NodeId::synthetic(5), &live, false, false, 2));
        }
        let nodes: Vec<NodeId> = (0..10).map(NodeId::synthetic).collect();
        assert_eq!(scheduler_set(&nodes).unwrap().len(), 3);
        assert_eq!(scheduler_set(&nodes), scheduler_set(&nodes));
    }
}
