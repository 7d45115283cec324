//! The node's metrics, in the Prometheus exposition formats, through
//! `prometheus-client`.
//!
//! Two kinds of metric:
//! * **Histograms a node keeps** ([`Metrics`], one per [`crate::Node`], never
//!   process-global): ask latency by kind, the durable log's commit latency, the
//!   migration pause and the failover time. They are observed where the event
//!   happens (the API, the durable-actor service).
//! * **Values read at scrape time** (actors, mesh counters, membership by state,
//!   epochs, storage, the durable host's counters): each scrape builds a fresh
//!   [`Scrape`] from the services' status, so a value has one source of truth and
//!   nothing is mirrored.
//!
//! # Rules
//! Every metric has HELP text and base units (seconds, bytes); counters end in
//! `_total`. Label sets are bounded: a label takes values from a fixed set
//! (membership states, epoch states, ask kinds) or from the actor kinds this node
//! registered, never per actor, per peer or per request.
//!
//! # Formats
//! `prometheus-client` writes OpenMetrics 1.0, which a Prometheus server asks for
//! (its `Accept` header lists `application/openmetrics-text`). Any other client
//! (`promtool check metrics`, `curl`) gets the Prometheus text format 0.0.4,
//! derived from the same output by [`to_text_format`]: the two differ only in how
//! a counter's family is named, the `# UNIT` line and the `# EOF` marker.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What an ask asked (the `kind` label: `echo`, `infer`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum AskKind {
    /// An `echo` actor's reply (`POST /v1/ask`), local or remote.
    Echo,
    /// A model executor's output for one input (`POST /v1/infer`): through the
    /// executor's durable log and its batching.
    Infer,
}

impl AskKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AskKind::Echo => "echo",
            AskKind::Infer => "infer",
        }
    }
}

impl EncodeLabelValue for AskKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AskLabels {
    kind: AskKind,
}

fn ask_histogram() -> Histogram {
    // 100 µs .. 13 s.
    Histogram::new(exponential_buckets(1e-4, 2.0, 18))
}

/// The histograms one node keeps. Cheap to observe (atomics behind a lock per
/// histogram); shared by the API and the services through the node.
#[derive(Debug)]
pub struct Metrics {
    asks: Family<AskLabels, Histogram, fn() -> Histogram>,
    commit: Histogram,
    migration_pause: Histogram,
    failover: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let asks =
            Family::<AskLabels, Histogram, fn() -> Histogram>::new_with_constructor(ask_histogram);
        // Every kind's series exists from the start (a rate over a missing series
        // is no data, not zero).
        for kind in [AskKind::Echo, AskKind::Infer] {
            drop(asks.get_or_create(&AskLabels { kind }));
        }
        Metrics {
            asks,
            // 50 µs .. 1.6 s.
            commit: Histogram::new(exponential_buckets(5e-5, 2.0, 16)),
            // 100 µs .. 3.3 s.
            migration_pause: Histogram::new(exponential_buckets(1e-4, 2.0, 16)),
            // 10 ms .. 41 s.
            failover: Histogram::new(exponential_buckets(0.01, 2.0, 13)),
        }
    }
}

impl Metrics {
    /// An ask of `kind` took `took` (answered or failed).
    pub fn ask(&self, kind: AskKind, took: Duration) {
        self.asks
            .get_or_create(&AskLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// A durable actor's record reached its majority after `took`.
    pub fn commit(&self, took: Duration) {
        self.commit.observe(took.as_secs_f64());
    }

    /// A live migration from this node paused its actor for `pause`.
    pub fn migration_pause(&self, pause: Duration) {
        self.migration_pause.observe(pause.as_secs_f64());
    }

    /// An actor served here again `after` its previous host was seen down.
    pub fn failover(&self, after: Duration) {
        self.failover.observe(after.as_secs_f64());
    }

    /// A scrape holding this node's histograms, to which the caller adds the
    /// values read now.
    pub fn scrape(&self) -> Scrape {
        let mut s = Scrape {
            registry: Registry::with_prefix("plexus"),
        };
        s.registry.register_with_unit(
            "ask_duration",
            "Time from an API ask to its answer, by what was asked (echo: an actor's reply; infer: one model output)",
            Unit::Seconds,
            self.asks.clone(),
        );
        s.registry.register_with_unit(
            "durable_commit_duration",
            "Time from a durable actor's log write to its majority, for actors active here",
            Unit::Seconds,
            self.commit.clone(),
        );
        s.registry.register_with_unit(
            "durable_migration_pause",
            "How long a live migration from this node applied nothing (quiesce to the target's confirmation)",
            Unit::Seconds,
            self.migration_pause.clone(),
        );
        s.registry.register_with_unit(
            "durable_failover",
            "Time from this node first seeing an actor's host suspected or dead to the actor serving here (seen at scheduler ticks, 500 ms apart by default)",
            Unit::Seconds,
            self.failover.clone(),
        );
        s
    }
}

/// One scrape: the node's histograms and the values read for it.
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A value that goes up and down. `name` after `plexus_`, in base units.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.registry.register(name, help, ConstGauge::new(value));
    }

    /// A gauge in `unit` (appended to the name).
    pub fn gauge_in(&mut self, name: &str, help: &str, unit: Unit, value: i64) {
        self.registry
            .register_with_unit(name, help, unit, ConstGauge::new(value));
    }

    /// A count since the process started; `name` without `_total` (added).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.registry.register(name, help, ConstCounter::new(value));
    }

    /// A gauge with one label, one series per `(label value, value)`. The caller
    /// keeps the label's values bounded.
    pub fn gauge_by(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (String, i64)>,
    ) {
        let family = Family::<Vec<(String, String)>, Gauge>::default();
        for (value_of_label, value) in values {
            family
                .get_or_create(&vec![(label.to_string(), value_of_label)])
                .set(value);
        }
        self.registry.register(name, help, family);
    }

    /// The exposition: OpenMetrics when `openmetrics`, else the Prometheus text
    /// format.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        // Writing to a String fails only if an encoder does; ours do not.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# EOF");
        }
        if openmetrics {
            out
        } else {
            to_text_format(&out)
        }
    }
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family `x`
/// (samples `x_total`) is declared as `x_total`; `# UNIT` lines and the `# EOF`
/// marker are dropped. Everything else is the same in both formats.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                let _ = writeln!(out, "{prefix}{name}_total {tail}");
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn histograms_count_what_was_observed_in_seconds() {
        let m = Metrics::default();
        m.ask(AskKind::Echo, Duration::from_millis(3));
        m.ask(AskKind::Echo, Duration::from_millis(5));
        m.ask(AskKind::Infer, Duration::from_micros(50));
        m.commit(Duration::from_micros(700));
        m.failover(Duration::from_millis(1_200));
        let text = m.scrape().encode(false);
        assert_eq!(
            sample(&text, "plexus_ask_duration_seconds_count{kind=\"echo\"}"),
            Some(2.0)
        );
        let sum = sample(&text, "plexus_ask_duration_seconds_sum{kind=\"echo\"}").unwrap();
        assert!((sum - 0.008).abs() < 1e-9, "{sum}");
        // 50 µs falls in the first bucket (≤ 100 µs); 3 ms and 5 ms do not.
        assert_eq!(
            sample(
                &text,
                "plexus_ask_duration_seconds_bucket{le=\"0.0001\",kind=\"infer\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "plexus_ask_duration_seconds_bucket{le=\"0.0001\",kind=\"echo\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "plexus_durable_commit_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "plexus_durable_failover_seconds_sum"),
            Some(1.2)
        );
        assert_eq!(
            sample(&text, "plexus_durable_migration_pause_seconds_count"),
            Some(0.0)
        );
    }

    #[test]
    fn counters_are_declared_under_their_total_name_in_the_text_format() {
        let mut s = Metrics::default().scrape();
        s.counter("mesh_frames_in", "Frames received", 7);
        s.gauge("actors", "Actors running here", 3);
        s.gauge_by(
            "mesh_members",
            "Members by state",
            "state",
            [("alive".to_string(), 2), ("dead".to_string(), 1)],
        );
        let open = s.encode(true);
        assert!(
            open.contains("# TYPE plexus_mesh_frames_in counter\n"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(
            open.contains("# UNIT plexus_ask_duration_seconds seconds\n"),
            "{open}"
        );
        let text = s.encode(false);
        assert!(
            text.contains("# HELP plexus_mesh_frames_in_total Frames received.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE plexus_mesh_frames_in_total counter\n"),
            "{text}"
        );
        assert_eq!(sample(&text, "plexus_mesh_frames_in_total"), Some(7.0));
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        assert!(text.contains("# TYPE plexus_actors gauge\n"));
        assert_eq!(
            sample(&text, "plexus_mesh_members{state=\"dead\"}"),
            Some(1.0)
        );
        // Only the counters' declarations changed.
        let declared = |t: &str| t.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(declared(&open), declared(&text));
    }

    #[test]
    fn only_an_openmetrics_accept_header_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
