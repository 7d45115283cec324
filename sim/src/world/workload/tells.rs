//! The tell workload: workload actors tell each other numbered messages; the
//! receiver checks per-link FIFO and at-most-once delivery.

use crate::world::*;

impl World {
    /// A workload actor receives a tell: check FIFO and at-most-once delivery.
    pub(in crate::world) fn on_data(&mut self, to: usize, from: usize, _seq: u64, body: &DataBody) {
        let DataBody::Tell {
            target, payload, ..
        } = body
        else {
            return;
        };
        if payload.len() != 16 || target.origin != self.nodes[to].id {
            self.violate("misrouted", format!("node {to} got a tell for {target:?}"));
            return;
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&payload[..8]);
        let mut session_bytes = [0u8; 8];
        session_bytes.copy_from_slice(&payload[8..]);
        let (tell_seq, session) = (
            u64::from_le_bytes(seq_bytes),
            u64::from_le_bytes(session_bytes),
        );
        let incarnation = self.nodes[to].incarnation;
        let times = if self.options.bug == Some(Bug::RedeliverTells) {
            self.redeliver_counter += 1;
            if self.redeliver_counter.is_multiple_of(50) {
                2
            } else {
                1
            }
        } else {
            1
        };
        for _ in 0..times {
            self.report.tells_delivered += 1;
            // One probe of the (large) map: the entry is read and, if the tell is
            // in order, written.
            let last = self.last_seen.entry(from, session, to, incarnation);
            if tell_seq > *last {
                *last = tell_seq;
            } else {
                let last = *last;
                if tell_seq == last {
                    self.violate("delivered-twice", format!("node {to} got tell {tell_seq} from node {from} (session {session}) twice"));
                } else {
                    self.violate(
                        "fifo",
                        format!("node {to} got tell {tell_seq} from node {from} after {last}"),
                    );
                }
            }
        }
    }

    pub(in crate::world) fn tell(&mut self, i: usize) {
        let n = self.scenario.nodes;
        if n > 1 && self.nodes[i].core.is_some() {
            let mut to = self.nodes[i].rng.index(n - 1);
            if to >= i {
                to += 1;
            }
            let actor = self.nodes[i]
                .rng
                .below(self.scenario.workload.actors_per_node as u64);
            self.nodes[i].next_seq += 1;
            let seq = self.nodes[i].next_seq;
            let session = self.nodes[i].incarnation;
            let mut payload = seq.to_le_bytes().to_vec();
            payload.extend_from_slice(&session.to_le_bytes());
            let body = Arc::new(DataBody::Tell {
                target: ActorId::new(self.nodes[to].id, ACTOR_BASE + actor),
                message_type: String::new(),
                payload: payload.into(),
                trace: None,
            });
            let now = self.local(i, self.now);
            let target = self.nodes[to].id;
            if let Some(core) = self.nodes[i].core.as_mut() {
                match core.send(now, target, body) {
                    Ok(_) => self.report.tells_sent += 1,
                    Err(_) => self.report.tells_refused += 1,
                }
            }
            self.record(i, 5, to as u64, seq);
            self.pump(i);
        }
        let at = self.now + self.exp(i, self.scenario.workload.tell_rate);
        self.push(at, Ev::Tell(i));
    }
}
