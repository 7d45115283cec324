//! Checkers that look across nodes: core invariants in rotation, detection times,
//! convergence after the last fault, names of dead nodes, durable commits.

use plexus_durable::types::{DurableKey, SenderId};
use plexus_durable::{DurableState, Record};

use plexus_mesh::owners::{NamePoint, OwnerSet};

use super::*;

impl World {
    // ----- checkers -----

    pub(in crate::world) fn up(&self, i: usize) -> bool {
        self.nodes[i].core.is_some() && !self.nodes[i].paused
    }

    /// Full-state checks, every `deep_interval` (or every step).
    pub(in crate::world) fn deep_check(&mut self) {
        // Links with nothing in flight no longer constrain arrivals.
        let now = self.now;
        self.link_clock.retain(|_, at| *at > now);
        // The cores' full-state invariants cost O(state) each, so they rotate over the
        // nodes (all of them with `every_step`); the per-event checks (delivery order
        // and duplicates, supervisor invariants) run on every event regardless.
        let n = self.nodes.len();
        let k = if self.scenario.check.every_step {
            n
        } else {
            self.scenario.check.deep_nodes.unwrap_or(16).clamp(1, n)
        };
        let mut failures = Vec::new();
        for _ in 0..k {
            let i = self.deep_cursor % n;
            self.deep_cursor = self.deep_cursor.wrapping_add(1);
            if let Some(core) = &self.nodes[i].core
                && let Err(e) = core.check_invariants()
            {
                failures.push(format!("node {i}: {e}"));
            }
            if let Err(e) = self.durable_invariants(i) {
                failures.push(format!("node {i}: durable host: {e}"));
            }
        }
        for f in failures {
            self.violate("core-invariant", f);
        }
        self.check_asks();
        self.check_byzantine();
        // Detection times of crashed nodes.
        let pending: Vec<(usize, u64)> = self.detecting.iter().map(|(k, v)| (*k, *v)).collect();
        for (dead, since) in pending {
            let id = self.nodes[dead].id;
            let all = (0..self.nodes.len())
                .filter(|&i| i != dead && self.up(i))
                .all(|i| {
                    self.nodes[i].core.as_ref().is_some_and(|c| {
                        c.membership()
                            .state_of(&id)
                            .is_none_or(MemberState::is_down)
                    })
                });
            if all {
                self.detecting.remove(&dead);
                self.first_detected.remove(&dead);
                self.report.detections_ms.push((self.now - since) / 1_000);
            }
        }
        // Liveness after the last fault.
        if self.now >= self.quiet_at && self.converged_at.is_none() {
            match self.convergence_gap() {
                None => {
                    self.converged_at = Some(self.now);
                    self.report.converge_ms = Some((self.now - self.quiet_at) / 1_000);
                }
                Some(gap) if self.now >= self.converge_deadline => {
                    let within = (self.converge_deadline - self.quiet_at) / 1_000;
                    self.violate(
                        "convergence",
                        format!("views still disagree {within} ms after the last fault: {gap}"),
                    );
                    self.converged_at = Some(u64::MAX);
                }
                Some(_) => {}
            }
        }
    }

    /// `None` if every live node agrees on membership and names; else one disagreement.
    ///
    /// Incremental: a node's row (how it sees every node) is compared with the
    /// truth only when its views or the truth changed since the row last matched.
    /// Each node's view and registry digests (cached by the cores until their
    /// state changes) and a digest of the truth (who is up, and the names each up
    /// node holds) tell which rows are still known right, so a check costs O(n)
    /// plus O(n) per node whose views moved, instead of O(n²). Until views
    /// converge this runs at every deep check, so the pair that disagreed last time
    /// is checked first: while it still disagrees the answer costs O(1).
    pub(in crate::world) fn convergence_gap(&mut self) -> Option<String> {
        let n = self.nodes.len();
        let up: Vec<bool> = (0..n).map(|i| self.up(i)).collect();
        let truth = self.truth_digest(&up);
        self.verified_views.resize(n, None);
        if self.cluster_config.registry.sharded()
            && self.name_owners.as_ref().is_none_or(|(t, _)| *t != truth)
        {
            self.name_owners = Some((truth, self.truth_owners(&up)));
        }
        let up_count = up.iter().filter(|u| **u).count();
        // A cheap necessary condition first: every live node counts the live nodes right.
        for i in (0..n).filter(|&i| up[i]) {
            let live = self.nodes[i]
                .core
                .as_ref()
                .map_or(0, |c| c.membership().live_count());
            if live != up_count {
                return Some(format!(
                    "node {i} counts {live} live nodes, {up_count} are up"
                ));
            }
        }
        if let Some((i, j)) = self.gap_hint
            && i < n
            && j < n
            && up[i]
            && let Some(gap) = self.pair_gap(i, j, &up)
        {
            return Some(gap);
        }
        for i in (0..n).filter(|&i| up[i]) {
            let Some((view, names)) = self.nodes[i].core.as_mut().map(|c| c.state_digests()) else {
                continue;
            };
            let now = [view, names, truth];
            if self.verified_views[i] == Some(now) {
                continue;
            }
            if let Some((j, gap)) = self.row_gap(i, &up, up_count) {
                self.gap_hint = Some((i, j));
                return Some(gap);
            }
            self.verified_views[i] = Some(now);
        }
        self.gap_hint = None;
        None
    }

    /// A digest of what every view must show: which nodes are up, and for each up
    /// node the names it holds and the actors they resolve to.
    fn truth_digest(&self, up: &[bool]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for (j, is_up) in up.iter().enumerate() {
            h.update(&[u8::from(*is_up)]);
            if *is_up {
                for (name, actor) in self.names.get(j).into_iter().flatten() {
                    h.update(&(name.len() as u64).to_le_bytes());
                    h.update(name.as_bytes());
                    h.update(&actor.origin.to_bytes());
                    h.update(&actor.local.to_le_bytes());
                }
                h.update(&[0xff]);
            }
        }
        h.finalize().into()
    }

    /// A sharded registry's owners of every name of an up node, over the up nodes.
    fn truth_owners(&self, up: &[bool]) -> NameOwners {
        let r = self.cluster_config.registry.owners as usize;
        let live: Vec<NodeId> = (0..up.len())
            .filter(|&k| up[k])
            .map(|k| self.nodes[k].id)
            .collect();
        let mut truth = NameOwners {
            owned: vec![Vec::new(); up.len()],
            ..NameOwners::default()
        };
        for (j, names) in self.names.iter().enumerate() {
            if !up[j] {
                continue;
            }
            for (k, (name, _)) in names.iter().enumerate() {
                truth.by_name.insert(name.clone(), (j, k));
                let set = OwnerSet::compute(&NamePoint::of(name), live.iter().copied(), r);
                for id in set.nodes() {
                    if let Some(&at) = self.index.get(&id) {
                        truth.owned[at].push((j, k));
                    }
                }
            }
        }
        truth
    }

    /// Whether live node `i` sees node `j` as it is (state, and names if up). With a
    /// sharded registry, `i` must resolve the names it owns (by the truth) and any it
    /// holds; the others it finds by asking, which the cluster tests check.
    pub(in crate::world) fn pair_gap(&self, i: usize, j: usize, up: &[bool]) -> Option<String> {
        let core = self.nodes[i].core.as_ref()?;
        let state = core.membership().state_of(&self.nodes[j].id);
        let ok = if up[j] {
            state == Some(MemberState::Alive)
        } else {
            state.is_none_or(MemberState::is_down)
        };
        if !ok {
            return Some(format!("node {i} sees node {j} as {state:?}"));
        }
        if up[j] {
            let owned = self.name_owners.as_ref().map(|(_, o)| &o.owned[i]);
            for (k, (name, want)) in self.names[j].iter().enumerate() {
                // The replica read as it is (a cluster lookup would make a sharded
                // node ask).
                let resolved = core.registry().lookup(name);
                if let Some(owned) = owned
                    && !owned.contains(&(j, k))
                    && !core.registry().holds(name)
                {
                    continue;
                }
                if resolved.map(|l| l.actor) != Some(*want) {
                    return Some(format!("node {i} resolves `{name}` to {resolved:?}"));
                }
            }
        }
        None
    }

    /// The first pair `(i, j)` for which [`World::pair_gap`] finds a gap, over every
    /// `j`, found in one walk over `i`'s view in its order instead of a lookup per
    /// node (which misses the cache at every step in a large world), and with a
    /// sharded registry by the names `i` owns or holds instead of every name.
    fn row_gap(&self, i: usize, up: &[bool], up_count: usize) -> Option<(usize, String)> {
        let core = self.nodes[i].core.as_ref()?;
        let mut alive = 0;
        for m in core.membership().members() {
            let j = self.index_of(&m.id());
            let Some(&is_up) = up.get(j) else {
                continue;
            };
            let ok = if is_up {
                m.state == MemberState::Alive
            } else {
                m.state.is_down()
            };
            if !ok {
                return Some((j, format!("node {i} sees node {j} as {:?}", Some(m.state))));
            }
            alive += usize::from(is_up);
        }
        // Every up node but `i` is held alive, or one is missing: find it.
        if alive + usize::from(up[i]) < up_count
            && let Some(gap) = (0..up.len())
                .filter(|&j| j != i && up[j])
                .find_map(|j| self.pair_gap(i, j, up).map(|gap| (j, gap)))
        {
            return Some(gap);
        }
        let registry = core.registry();
        let wrong = |j: usize, k: usize| {
            let (name, want) = &self.names[j][k];
            let resolved = registry.lookup(name);
            (resolved.map(|l| l.actor) != Some(*want))
                .then(|| (j, format!("node {i} resolves `{name}` to {resolved:?}")))
        };
        let Some(truth) = self.name_owners.as_ref().map(|(_, o)| o) else {
            // A full replica resolves every up node's names.
            return (0..up.len())
                .filter(|&j| j != i && up[j])
                .flat_map(|j| (0..self.names[j].len()).map(move |k| (j, k)))
                .find_map(|(j, k)| wrong(j, k));
        };
        let held = registry
            .names()
            .filter_map(|name| truth.by_name.get(&**name));
        truth.owned[i]
            .iter()
            .chain(held)
            .filter(|&&(j, _)| j != i && up[j])
            .find_map(|&(j, k)| wrong(j, k))
    }

    pub(in crate::world) fn check_dead_names(&mut self, dead: usize, incarnation: u64) {
        if self.nodes[dead].core.is_some() || self.nodes[dead].incarnation != incarnation {
            return; // restarted meanwhile
        }
        let id = self.nodes[dead].id;
        for i in 0..self.nodes.len() {
            if i == dead || !self.up(i) {
                continue;
            }
            let names = self.nodes[i]
                .core
                .as_ref()
                .map(|c| c.registry().names_on(&id))
                .unwrap_or_default();
            if let Some(name) = names.first() {
                let within = self.dead_names_within / 1_000;
                self.violate("dead-names", format!("node {i} still resolves `{name}` to crashed node {dead} {within} ms after the crash"));
                return;
            }
        }
    }

    /// Commits of one actor must form one history. A commit newer than every earlier
    /// one must hold every message acknowledged so far. A commit that completes late
    /// (an older activation's record reaching a majority after a newer activation
    /// took over) is safe only if every newer activation restored it or something
    /// newer: otherwise two activations were both committing.
    pub(in crate::world) fn check_commit(&mut self, key: &DurableKey, record: &Record) {
        let order = (record.ballot, record.version);
        if self
            .durable
            .last_commit
            .get(key)
            .is_some_and(|prev| *prev >= order)
        {
            let missed: Vec<String> = self
                .durable
                .restores
                .range((key.clone(), record.ballot)..)
                .filter(|((k, b), restored)| k == key && *b > record.ballot && restored.is_none_or(|r| r < order))
                .map(|((_, b), restored)| format!("{key}: {order:?} committed late, but activation {b} restored only {restored:?}"))
                .collect();
            for m in missed {
                self.violate("durable-single-active", m);
            }
            return;
        }
        self.durable.last_commit.insert(key.clone(), order);
        let Ok(state) = DurableState::decode(&record.body) else {
            self.violate(
                "durable-record",
                format!("{key}: a committed record does not decode"),
            );
            return;
        };
        let lost: Vec<String> = self
            .durable
            .acked
            .range((key.clone(), 0)..=(key.clone(), u64::MAX))
            .filter_map(|((_, session), acked)| {
                let have = state.inbound.get(&SenderId::Client(*session)).map_or(0, |i| i.last);
                (have < *acked).then(|| format!("{key}: session {session:x} acked up to {acked}, committed state holds {have}"))
            })
            .collect();
        for l in lost {
            self.violate("durable-lost", l);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{RunOptions, Scenario, World};
    use plexus_actors::{ActorId, Time};

    fn converged_world() -> World {
        let scenario = Scenario::parse(
            "nodes = 6\nduration = \"40s\"\nstart_spread = \"2s\"\n\
             [workload]\ntell_rate = 0.0\nnames_per_node = 1\n",
        )
        .unwrap();
        let mut world = World::new(&scenario, 3, RunOptions::default());
        world.advance();
        assert_eq!(world.convergence_gap(), None, "a quiet world converges");
        assert!(
            world.verified_views.iter().all(Option::is_some),
            "every row is known right"
        );
        // Asking again changes nothing: no view and no truth moved.
        let before = world.verified_views.clone();
        assert_eq!(world.convergence_gap(), None);
        assert_eq!(world.verified_views, before);
        world
    }

    #[test]
    fn rows_known_right_are_checked_again_when_the_views_change() {
        let mut world = converged_world();
        // Node 2 withdraws its name (the truth still says it holds it) and the
        // withdrawal spreads: the other nodes' registries change, so their rows,
        // known right a moment ago, must be compared again and found wrong.
        let (name, _) = world.names[2][0].clone();
        let now = Time::from_micros(world.now);
        let withdrawn = world.nodes[2]
            .core
            .as_mut()
            .is_some_and(|core| core.unregister(now, &name));
        assert!(withdrawn);
        world.scenario.duration = Duration::from_secs(70);
        world.advance();
        let gap = world
            .convergence_gap()
            .expect("the withdrawn name is a gap");
        assert!(gap.contains(&name), "{gap}");
    }

    #[test]
    fn rows_known_right_are_checked_again_when_the_truth_changes() {
        let mut world = converged_world();
        // No view moves, but what they must show does: every row is compared again.
        let (name, actor) = world.names[4][0].clone();
        world.names[4][0].1 = ActorId::new(actor.origin, actor.local + 1_000);
        let gap = world.convergence_gap().expect("a changed truth is a gap");
        assert!(gap.contains(&name), "{gap}");
    }
}
