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
                    .map(plexus_durable::wire::Bytes::from)
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

/// Decides when a node should (re)activate the scheduler: when this node is the
/// lowest live node and the registry has shown no scheduler either for `grace`
/// consecutive checks, or since the node it last showed the scheduler on was
/// declared dead (a death's registry cleanup, not a move still spreading: there
/// is nothing to wait for). Ballot fencing keeps two nodes that disagree on that
/// safe; this only keeps them from racing needlessly. A scheduler cut off from
/// its replicas steps down within its activation lease, shorter than the
/// failure detection that declares its host dead, so the takeover does not
/// overlap it.
#[derive(Clone, Debug, Default)]
pub struct Watchdog {
    missing: u32,
    /// The node the registry last showed the scheduler on.
    last_host: Option<plexus_actors::NodeId>,
}

impl Watchdog {
    /// Checks once. `located`: the node the registry resolves the scheduler to;
    /// `here`: this node hosts (or is restoring) it already; `dead`: the nodes
    /// the membership declared dead (or left).
    pub fn check(
        &mut self,
        me: plexus_actors::NodeId,
        live: &[plexus_actors::NodeId],
        dead: &[plexus_actors::NodeId],
        located: Option<plexus_actors::NodeId>,
        here: bool,
        grace: u32,
    ) -> bool {
        if here {
            self.missing = 0;
            self.last_host = Some(me);
            return false;
        }
        // A registration on a dead node is one its cleanup has not removed yet.
        if let Some(host) = located.filter(|h| !dead.contains(h)) {
            self.missing = 0;
            self.last_host = Some(host);
            return false;
        }
        if located.is_some() {
            self.last_host = located;
        }
        self.missing = self.missing.saturating_add(1);
        let lowest = live.iter().copied().chain(std::iter::once(me)).min();
        let host_dead = self.last_host.is_some_and(|h| dead.contains(&h));
        (self.missing >= grace || host_dead) && lowest == Some(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::NodeId;

    #[test]
    fn only_the_lowest_live_node_takes_over_after_the_grace() {
        let n = NodeId::synthetic;
        let live = [n(2), n(5)];
        let mut w = Watchdog::default();
        assert!(!w.check(n(1), &live, &[], None, false, 2));
        assert!(w.check(n(1), &live, &[], None, false, 2));
        assert!(
            !w.check(n(1), &live, &[], Some(n(2)), false, 2),
            "found again"
        );
        let mut other = Watchdog::default();
        for _ in 0..5 {
            assert!(!other.check(n(5), &live, &[], None, false, 2));
        }
        let nodes: Vec<NodeId> = (0..10).map(NodeId::synthetic).collect();
        assert_eq!(scheduler_set(&nodes).unwrap().len(), 3);
        assert_eq!(scheduler_set(&nodes), scheduler_set(&nodes));
    }

    #[test]
    fn the_lowest_live_node_takes_over_at_once_when_the_schedulers_host_was_declared_dead() {
        let n = NodeId::synthetic;
        let grace = 10;
        // The scheduler on node 3, then node 3 declared dead: the registry may
        // still show it there (cleanup pending), or show nothing.
        let mut w = Watchdog::default();
        assert!(!w.check(n(1), &[n(2), n(3)], &[], Some(n(3)), false, grace));
        assert!(w.check(n(1), &[n(2)], &[n(3)], Some(n(3)), false, grace));
        let mut w = Watchdog::default();
        assert!(!w.check(n(1), &[n(2), n(3)], &[], Some(n(3)), false, grace));
        assert!(w.check(n(1), &[n(2)], &[n(3)], None, false, grace));
        // Not the lowest live node: never, however long.
        let mut w = Watchdog::default();
        assert!(!w.check(n(2), &[n(1), n(3)], &[], Some(n(3)), false, grace));
        for _ in 0..2 * grace {
            assert!(!w.check(n(2), &[n(1)], &[n(3)], None, false, grace));
        }
        // The registry showing nothing while its last host lives (a move still
        // spreading): the grace holds.
        let mut w = Watchdog::default();
        assert!(!w.check(n(1), &[n(2), n(3)], &[], Some(n(3)), false, grace));
        for _ in 1..grace {
            assert!(!w.check(n(1), &[n(2), n(3)], &[], None, false, grace));
        }
        assert!(w.check(n(1), &[n(2), n(3)], &[], None, false, grace));
        // A suspect is not dead: the grace holds.
        let mut w = Watchdog::default();
        assert!(!w.check(n(1), &[n(2), n(3)], &[], Some(n(3)), false, grace));
        assert!(!w.check(n(1), &[n(2), n(3)], &[], None, false, grace));
        // Hosting it here resets everything.
        let mut w = Watchdog::default();
        assert!(!w.check(n(1), &[n(2)], &[], None, true, grace));
        assert!(
            !w.check(n(1), &[n(2)], &[], None, false, grace),
            "grace restarts"
        );
    }
}
