//! What a run produced: metrics, violations, and the trace hash.

use serde::Serialize;

use crate::scenario::Scenario;

/// A checker's finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Simulated time, ms.
    pub at_ms: u64,
    /// Which checker.
    pub check: String,
    /// What it saw.
    pub detail: String,
}

/// The outcome of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Node count.
    pub nodes: usize,
    /// Simulated time, ms.
    pub sim_ms: u64,
    /// Wall time, ms (not part of the trace).
    pub wall_ms: u64,
    /// Events processed.
    pub events: u64,
    /// Hash of the ordered event log: equal for equal seeds and scenarios.
    pub trace_hash: String,
    /// Frames the cores sent (each copy counts once).
    pub frames_sent: u64,
    /// Frames lost to loss or partitions.
    pub frames_lost: u64,
    /// Outbound links dropped after a spell with nothing in flight, by the nodes
    /// running at the end (a crash forgets its node's count).
    pub links_dropped_idle: u64,
    /// Inbound delivery records forgotten after their senders closed the links, by
    /// the nodes running at the end.
    pub records_forgotten: u64,
    /// Names held in the registries of the nodes running at the end, summed: a full
    /// replica holds every name, a sharded node its own, its share and what it
    /// looks up.
    pub names_held: u64,
    /// Remote tells accepted by the delivery core.
    pub tells_sent: u64,
    /// Tells refused because a window was full.
    pub tells_refused: u64,
    /// Tells handed to actors.
    pub tells_delivered: u64,
    /// Tells failed because their receiver was declared dead.
    pub tells_unreachable: u64,
    /// Asks taken by the mesh core.
    pub asks_sent: u64,
    /// Asks the core refused at once (window full, too many pending, peer down).
    pub asks_refused: u64,
    /// Asks answered with a reply.
    pub asks_replied: u64,
    /// Asks answered with a timeout.
    pub asks_timed_out: u64,
    /// Asks answered with another failure (unreachable, refused by the peer).
    pub asks_failed: u64,
    /// Suspicions raised.
    pub suspicions: u64,
    /// Suspicions of nodes that had not crashed.
    pub false_suspicions: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Node restarts.
    pub restarts: u64,
    /// Partitions.
    pub partitions: u64,
    /// Pauses.
    pub pauses: u64,
    /// Supervised child restarts.
    pub child_restarts: u64,
    /// Supervisor escalations.
    pub escalations: u64,
    /// For each crash detected: ms from the crash until every live node saw it dead.
    pub detections_ms: Vec<u64>,
    /// For each crash detected: ms from the crash until the first live node
    /// declared it dead (what a failover waits for: the scheduler acts on its own
    /// node's verdict).
    pub first_detections_ms: Vec<u64>,
    /// Deaths declared, by any node, of a node whose process was running. A
    /// partition, a long pause or a quick restart (the death of its previous
    /// life, declared late) makes such a death right; with none of them in the
    /// scenario every one is a false positive.
    pub running_declared_dead: u64,
    /// The configured detection bound, ms.
    pub detection_bound_ms: u64,
    /// When the last fault ended, ms.
    pub quiet_at_ms: u64,
    /// Time from the last fault's end until views agreed, ms.
    pub converge_ms: Option<u64>,
    /// Durable layer: client messages sent.
    pub durable_sent: u64,
    /// Durable layer: client messages acknowledged.
    pub durable_acked: u64,
    /// Durable layer: activations (restores, handoffs, the scheduler's too).
    pub durable_activations: u64,
    /// Durable layer: the scheduler's activations.
    pub scheduler_activations: u64,
    /// Durable layer: commits.
    pub durable_commits: u64,
    /// Durable layer: live migrations completed.
    pub migrations: u64,
    /// Durable layer: the longest migration pause, ms.
    pub migration_pause_max_ms: u64,
    /// Durable layer: deactivations by reason.
    pub deactivations: std::collections::BTreeMap<String, u64>,
    /// Epochs (`[epochs]`): checkpoints signed.
    pub epochs_signed: u64,
    /// Epochs: epochs no honest member signed.
    pub epochs_failed: u64,
    /// Epochs: equivocations proved.
    pub epoch_equivocations: u64,
    /// Epochs: partial signatures dropped as invalid.
    pub epoch_bad_partials: u64,
    /// What the checkers found.
    pub violations: Vec<Violation>,
}

impl Report {
    pub(crate) fn new(scenario: &Scenario, seed: u64) -> Self {
        Report {
            seed,
            nodes: scenario.nodes,
            ..Report::default()
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Simulated seconds per wall second.
    pub fn speedup(&self) -> f64 {
        if self.wall_ms == 0 {
            f64::INFINITY
        } else {
            self.sim_ms as f64 / self.wall_ms as f64
        }
    }

    /// Frames per node per simulated second.
    pub fn msgs_per_node_per_sec(&self) -> f64 {
        let secs = self.sim_ms as f64 / 1e3;
        if secs == 0.0 || self.nodes == 0 {
            0.0
        } else {
            self.frames_sent as f64 / self.nodes as f64 / secs
        }
    }

    /// Mean and max detection time, ms.
    pub fn detection(&self) -> (Option<f64>, Option<u64>) {
        if self.detections_ms.is_empty() {
            return (None, None);
        }
        let mean = self.detections_ms.iter().sum::<u64>() as f64 / self.detections_ms.len() as f64;
        (Some(mean), self.detections_ms.iter().max().copied())
    }

    /// Mean and max time to the first declaration of each crash, ms.
    pub fn first_detection(&self) -> (Option<f64>, Option<u64>) {
        let d = &self.first_detections_ms;
        if d.is_empty() {
            return (None, None);
        }
        let mean = d.iter().sum::<u64>() as f64 / d.len() as f64;
        (Some(mean), d.iter().max().copied())
    }

    /// The report as JSON, with derived figures added.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let (mean, max) = self.detection();
        let (first_mean, first_max) = self.first_detection();
        if let Some(map) = v.as_object_mut() {
            map.insert("speedup".into(), serde_json::json!(self.speedup()));
            map.insert(
                "msgs_per_node_per_sec".into(),
                serde_json::json!(self.msgs_per_node_per_sec()),
            );
            map.insert("detect_ms_mean".into(), serde_json::json!(mean));
            map.insert("detect_ms_max".into(), serde_json::json!(max));
            map.insert("first_detect_ms_mean".into(), serde_json::json!(first_mean));
            map.insert("first_detect_ms_max".into(), serde_json::json!(first_max));
            map.insert("passed".into(), serde_json::json!(self.passed()));
        }
        v
    }

    /// The CSV header matching [`Report::csv_row`].
    pub fn csv_header() -> &'static str {
        "seed,nodes,sim_ms,wall_ms,speedup,events,msgs_per_node_per_sec,frames_lost,tells_sent,tells_delivered,tells_unreachable,suspicions,false_suspicions,crashes,restarts,partitions,pauses,detect_ms_mean,detect_ms_max,first_detect_ms_mean,first_detect_ms_max,running_declared_dead,converge_ms,child_restarts,escalations,violations,trace_hash"
    }

    /// One CSV row.
    pub fn csv_row(&self) -> String {
        let (mean, max) = self.detection();
        let (first_mean, first_max) = self.first_detection();
        let opt = |x: Option<String>| x.unwrap_or_default();
        format!(
            "{},{},{},{},{:.1},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.seed,
            self.nodes,
            self.sim_ms,
            self.wall_ms,
            self.speedup(),
            self.events,
            self.msgs_per_node_per_sec(),
            self.frames_lost,
            self.tells_sent,
            self.tells_delivered,
            self.tells_unreachable,
            self.suspicions,
            self.false_suspicions,
            self.crashes,
            self.restarts,
            self.partitions,
            self.pauses,
            opt(mean.map(|m| format!("{m:.0}"))),
            opt(max.map(|m| m.to_string())),
            opt(first_mean.map(|m| format!("{m:.0}"))),
            opt(first_max.map(|m| m.to_string())),
            self.running_declared_dead,
            opt(self.converge_ms.map(|m| m.to_string())),
            self.child_restarts,
            self.escalations,
            self.violations.len(),
            self.trace_hash
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_match_their_header_and_carry_the_detection_figures() {
        let report = Report {
            seed: 3,
            detections_ms: vec![7_000, 9_000],
            first_detections_ms: vec![1_000, 4_000],
            running_declared_dead: 2,
            ..Report::default()
        };
        let header: Vec<&str> = Report::csv_header().split(',').collect();
        let row = report.csv_row();
        let row: Vec<&str> = row.split(',').collect();
        assert_eq!(header.len(), row.len());
        let col = |name: &str| {
            let i = header.iter().position(|h| *h == name);
            i.map(|i| row[i])
        };
        assert_eq!(col("seed"), Some("3"));
        assert_eq!(col("detect_ms_mean"), Some("8000"));
        assert_eq!(col("detect_ms_max"), Some("9000"));
        assert_eq!(col("first_detect_ms_mean"), Some("2500"));
        assert_eq!(col("first_detect_ms_max"), Some("4000"));
        assert_eq!(col("running_declared_dead"), Some("2"));
    }
}
