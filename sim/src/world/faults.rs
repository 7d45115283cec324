//! Faults: crashes, restarts, partitions and pauses, scheduled or drawn by chaos.

use super::*;

impl World {
    pub(in crate::world) fn split(
        &self,
        rng: &mut DetRng,
        fraction: f64,
        chosen: &[usize],
    ) -> Vec<bool> {
        let n = self.scenario.nodes;
        let mut side = vec![false; n];
        if !chosen.is_empty() {
            for &i in chosen {
                side[i] = true;
            }
        } else {
            let mut all: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut all);
            let k = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
            for &i in all.iter().take(k) {
                side[i] = true;
            }
        }
        side
    }

    pub(in crate::world) fn crash(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.take() else {
            return;
        };
        let node = &mut self.nodes[i];
        node.incarnation = node.incarnation.max(core.membership().incarnation());
        node.paused = false;
        node.deferred.clear();
        node.timer_gen += 1;
        node.timer_at = u64::MAX;
        node.crashed_at = Some(self.now);
        if let Some(host) = node.host.take() {
            node.disk = host.into_store();
            if self.options.bug == Some(Bug::DurableWipeDisks) {
                node.disk = MemStore::default();
            }
        }
        let incarnation = node.incarnation;
        self.report.crashes += 1;
        self.record(i, 3, incarnation, 0);
        self.detecting.insert(i, self.now);
        self.first_detected.remove(&i);
        let at = self.now + self.dead_names_within;
        self.push(
            at,
            Ev::DeadNames {
                node: i,
                incarnation,
            },
        );
    }

    pub(in crate::world) fn restart(&mut self, i: usize) {
        if self.nodes[i].core.is_none() {
            self.report.restarts += 1;
            self.detecting.remove(&i);
            self.first_detected.remove(&i);
            self.start(i);
        }
    }

    pub(in crate::world) fn down_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.core.is_none() || n.paused)
            .count()
    }

    pub(in crate::world) fn chaos(&mut self) {
        let chaos = self.scenario.chaos.clone();
        let Some(until) = chaos.until.map(us) else {
            return;
        };
        if self.now >= until {
            return;
        }
        let n = self.scenario.nodes;
        let total_rate = (chaos.crash_rate + chaos.partition_rate + chaos.pause_rate) / 60.0;
        if total_rate <= 0.0 {
            return;
        }
        let max_down = ((n as f64) * chaos.max_down_fraction).floor() as usize;
        let pick = self.chaos_rng.unit() * total_rate * 60.0;
        let victim = self.chaos_rng.index(n);
        if pick < chaos.crash_rate {
            if self.nodes[victim].core.is_some() && self.down_count() < max_down {
                self.crash(victim);
                if let Some(after) = chaos.restart_after {
                    let at = self.now + us(after);
                    self.push(at, Ev::Restart(vec![victim]));
                }
            }
        } else if pick < chaos.crash_rate + chaos.partition_rate {
            if self.partition.is_none() {
                let mut rng = self.chaos_rng.clone();
                let fraction = 0.1 + 0.4 * rng.unit();
                let side = self.split(&mut rng, fraction, &[]);
                self.chaos_rng = rng;
                let one_way = self.chaos_rng.chance(chaos.one_way_fraction);
                let until = Some(self.now + us(chaos.partition_length));
                self.push(
                    self.now,
                    Ev::Partition {
                        side,
                        one_way,
                        until,
                    },
                );
            }
        } else if self.nodes[victim].core.is_some()
            && !self.nodes[victim].paused
            && self.down_count() < max_down
        {
            self.push(self.now, Ev::Pause(vec![victim]));
            let at = self.now + us(chaos.pause_length);
            self.push(at, Ev::Resume(vec![victim]));
        }
        let u = self.chaos_rng.unit();
        let next = self.now + ((-(1.0 - u).ln() / total_rate) * 1e6) as u64 + 1;
        self.push(next, Ev::Chaos);
    }
}
