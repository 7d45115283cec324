//! The supervision workload: children crash at random; each node's production
//! `Supervisor` core decides restarts, and the engine checks it stays consistent.

use crate::world::*;

impl World {
    // ----- supervision -----

    pub(in crate::world) fn child_crash(&mut self, i: usize) {
        let rate = self.scenario.workload.child_crash_rate / 60.0;
        let at = self.now + self.exp(i, rate);
        self.push(at, Ev::ChildCrash(i));
        if self.nodes[i].core.is_none() {
            return;
        }
        let running: Vec<usize> = self.nodes[i]
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| c.running.is_some())
            .map(|(k, _)| k)
            .collect();
        if running.is_empty() {
            return;
        }
        let k = running[self.nodes[i].rng.index(running.len())];
        let Some(incarnation) = self.nodes[i].children[k].running else {
            return;
        };
        self.nodes[i].children[k].running = None;
        self.record(i, 6, k as u64, incarnation);
        let now = self.local(i, self.now);
        let actions = self.nodes[i].supervisor.handle_exit(
            now,
            &format!("c{k}"),
            incarnation,
            ExitReason::Failed("injected crash".into()),
        );
        self.apply_actions(i, actions);
    }

    pub(in crate::world) fn apply_actions(&mut self, i: usize, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let now = self.local(i, self.now);
            match action {
                Action::Start { child, incarnation } => {
                    if let Some(k) = child
                        .strip_prefix('c')
                        .and_then(|k| k.parse::<usize>().ok())
                    {
                        self.nodes[i].children[k].running = Some(incarnation);
                        self.report.child_restarts += 1;
                    }
                }
                Action::Stop { child, incarnation } => {
                    if let Some(k) = child
                        .strip_prefix('c')
                        .and_then(|k| k.parse::<usize>().ok())
                    {
                        self.nodes[i].children[k].running = None;
                    }
                    queue.extend(self.nodes[i].supervisor.handle_exit(
                        now,
                        &child,
                        incarnation,
                        ExitReason::Normal,
                    ));
                }
                Action::Escalate { .. } => {
                    // The node's root supervisor gave up: its parent (the node) starts
                    // a fresh one, as a supervision tree's root would be restarted.
                    self.report.escalations += 1;
                    let strategy = self.scenario.workload.strategy;
                    let mut sup = Supervisor::new(
                        strategy,
                        Intensity {
                            max_restarts: 5,
                            period: Duration::from_secs(10),
                        },
                    );
                    for k in 0..self.nodes[i].children.len() {
                        let started = sup
                            .add_child(ChildSpec::new(format!("c{k}"), Restart::Permanent))
                            .unwrap_or_default();
                        self.nodes[i].children[k].running = started.iter().find_map(|a| match a {
                            Action::Start { incarnation, .. } => Some(*incarnation),
                            _ => None,
                        });
                    }
                    self.nodes[i].supervisor = sup;
                    return;
                }
            }
        }
        if let Err(e) = self.nodes[i].supervisor.check_invariants() {
            self.violate("supervisor-invariant", format!("node {i}: {e}"));
        }
        for (k, child) in self.nodes[i].children.iter().enumerate() {
            let status = self.nodes[i]
                .supervisor
                .children()
                .find(|(s, _)| s.id == format!("c{k}"))
                .map(|(_, st)| st);
            let consistent = match (child.running, status) {
                (Some(inc), Some(ChildStatus::Running(j))) => inc == j,
                (None, Some(ChildStatus::Stopped)) | (None, None) => true,
                _ => false,
            };
            if !consistent {
                let detail = format!(
                    "node {i} child c{k}: engine {:?} vs core {status:?}",
                    child.running
                );
                self.violate("supervisor-consistency", detail);
                return;
            }
        }
    }
}
