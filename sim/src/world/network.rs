//! The network model: latency, loss, duplication, reordering, partitions, FIFO links.

use super::*;
use plexus_durable::SERVICE_LOCAL_ID;

impl World {
    // ----- network -----

    pub(in crate::world) fn blocked(&self, from: usize, to: usize) -> bool {
        match &self.partition {
            None => false,
            Some((side, one_way)) => {
                if *one_way {
                    side[from] && !side[to]
                } else {
                    side[from] != side[to]
                }
            }
        }
    }

    /// A one-way latency, and whether this frame is one the network reorders.
    pub(in crate::world) fn latency(&mut self) -> (u64, bool) {
        let net = &self.scenario.network;
        let (min, max) = (us(net.latency_min), us(net.latency_max));
        let base = match net.latency {
            LatencyDist::Uniform => min + self.net_rng.below(max - min + 1),
            LatencyDist::Exponential => {
                let mean = ((max - min) / 4).max(1) as f64;
                let u = self.net_rng.unit();
                (min + (-(1.0 - u).ln() * mean) as u64).min(max)
            }
        };
        if self.net_rng.chance(net.reorder) {
            (base + self.net_rng.below(4 * max + 1), true)
        } else {
            (base, false)
        }
    }

    /// When a frame sent now from `from` reaches `to`. Links are FIFO, as the
    /// production transport's streams are: a frame never overtakes an earlier one on
    /// the same link unless the network reorders it (`reorder`), and a reordered
    /// frame does not hold back later ones.
    pub(in crate::world) fn arrival(&mut self, from: usize, to: usize) -> u64 {
        let (latency, reordered) = self.latency();
        let at = self.now + latency;
        if reordered {
            return at;
        }
        if self.link_clock.len() >= self.link_prune_at {
            // Only links with a frame still in flight constrain anything: forget
            // the rest, so the map stays near the size of the traffic in flight
            // (amortised O(1) per frame: the next sweep waits for the map to double).
            let now = self.now;
            self.link_clock.retain(|_, t| *t > now);
            self.link_prune_at = (self.link_clock.len() * 2).max(4096);
        }
        let last = self.link_clock.entry((from, to)).or_insert(0);
        let at = at.max(*last);
        *last = at;
        at
    }

    pub(in crate::world) fn send(&mut self, from: usize, to: usize, frame: Frame) {
        self.report.frames_sent += 1;
        if self.net_rng.chance(self.scenario.network.loss) {
            self.report.frames_lost += 1;
            return;
        }
        if self.net_rng.chance(self.scenario.network.duplicate) {
            let at = self.arrival(from, to);
            self.push(
                at,
                Ev::Deliver {
                    from,
                    to,
                    frame: frame.clone(),
                },
            );
        }
        let at = self.arrival(from, to);
        self.push(at, Ev::Deliver { from, to, frame });
    }

    pub(in crate::world) fn deliver(&mut self, from: usize, to: usize, frame: Frame) {
        if self.blocked(from, to) {
            self.report.frames_lost += 1;
            return;
        }
        if self.nodes[to].core.is_none() {
            return;
        }
        let tag = match &frame {
            Frame::Control(_) => 10,
            Frame::Data(d) => 11 + (d.seq << 8),
            Frame::Ack(a) => 12 + (a.up_to << 8),
            Frame::Close(c) => 13 + (c.up_to << 8),
        };
        self.record(to, 4, from as u64, tag);
        let now = self.local(to, self.now);
        let from_id = self.nodes[from].id;
        let Some(core) = self.nodes[to].core.as_mut() else {
            return;
        };
        let mut frame = frame;
        if self.options.bug == Some(Bug::DropSyncClaims)
            && let Frame::Control(packet) = &mut frame
            && matches!(
                packet.probe,
                plexus_mesh::membership::Probe::Sync { .. }
                    | plexus_mesh::membership::Probe::SyncReply { .. }
            )
        {
            packet.claims.clear();
        }
        if self.options.bug == Some(Bug::DropHandoffs)
            && let Frame::Control(packet) = &mut frame
            && let plexus_mesh::membership::Probe::Names { resolved } = &packet.probe
            && resolved.is_empty()
        {
            // Pushes between nodes (handoffs and re-sends); answers to resolves
            // still arrive.
            packet.claims.clear();
        }
        if let Some((seq, body)) = core.handle_frame(now, from_id, frame) {
            if let DataBody::Tell {
                target, payload, ..
            } = &*body
                && target.local == SERVICE_LOCAL_ID
            {
                self.on_durable(to, from_id, payload);
            } else if let DataBody::Ask { corr, payload, .. } = &*body {
                self.on_ask(to, from, *corr, payload);
            } else {
                self.on_data(to, from, seq, &body);
            }
            if let Some(core) = self.nodes[to].core.as_mut() {
                core.complete(now, from_id, seq, Ok(()));
            }
        }
        self.pump(to);
    }
}
