//! Scenario files: what to simulate. See `docs/simulator.md` for the format.
//!
//! Parsing refuses unknown keys, impossible values (zero nodes, a probability above
//! one, a negative rate, a node index out of range) and bad syntax, each with an error
//! that names the field and the line.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A parsed, validated scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// How many nodes.
    #[serde(deserialize_with = "node_count")]
    pub nodes: usize,
    /// How long to simulate, e.g. `"1h"`.
    #[serde(deserialize_with = "positive_duration")]
    pub duration: Duration,
    /// Nodes start spread over this window (default: 1 ms per node).
    #[serde(default, deserialize_with = "opt_duration")]
    pub start_spread: Option<Duration>,
    /// How many seed nodes each node contacts at start (default 3).
    #[serde(default = "three")]
    pub bootstrap: usize,
    /// Membership tuning.
    #[serde(default)]
    pub membership: MembershipSection,
    /// The name registry: a full replica per node, or sharded.
    #[serde(default)]
    pub registry: RegistrySection,
    /// Delivery tuning.
    #[serde(default)]
    pub delivery: DeliverySection,
    /// The network model.
    #[serde(default)]
    pub network: NetworkSection,
    /// Traffic and local failures.
    #[serde(default)]
    pub workload: WorkloadSection,
    /// Random faults at seeded rates.
    #[serde(default)]
    pub chaos: ChaosSection,
    /// Faults at fixed times.
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    /// What the checkers demand.
    #[serde(default)]
    pub check: CheckSection,
    /// Durable actors, the scheduler and live migration (absent: not simulated).
    #[serde(default)]
    pub durable: Option<DurableSection>,
    /// Byzantine nodes and their lies (see `world::byzantine`).
    #[serde(default, rename = "byzantine")]
    pub byzantine: Vec<crate::world::byzantine::ByzantineSpec>,
    /// An epoch committee: DKG, checkpoints, Byzantine members (absent: not
    /// simulated). See [`crate::epochs`].
    #[serde(default)]
    pub epochs: Option<EpochsSection>,
}

/// `[epochs]`: a checkpoint committee running the real `plexus-epochs` cores in
/// the same run, on its own seeded virtual network (its members are not the
/// world's mesh nodes; their availability comes from the committee's own view).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochsSection {
    /// Committee size `n` (1 to 100).
    pub members: usize,
    /// Admitted nodes outside the committee.
    #[serde(default = "three")]
    pub workers: usize,
    /// Epochs to run.
    #[serde(default = "six_u64")]
    pub epochs: u64,
    /// Epoch length.
    #[serde(default = "s10", deserialize_with = "positive_duration")]
    pub epoch_length: Duration,
    /// Probability a committee message is lost (default: `network.loss`).
    #[serde(default, deserialize_with = "opt_probability")]
    pub loss: Option<f64>,
    /// Longest one-way delay (default: `network.latency_max`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub latency_max: Option<Duration>,
    /// A member that crashes and restarts (its vote log survives).
    #[serde(default)]
    pub crash: Option<EpochCrash>,
    /// Lying members.
    #[serde(default)]
    pub byzantine: Vec<EpochByzantine>,
}

/// `[epochs.crash]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochCrash {
    /// The member, by committee position.
    pub member: usize,
    /// When, after genesis.
    #[serde(deserialize_with = "duration")]
    pub at: Duration,
    /// For how long.
    #[serde(deserialize_with = "positive_duration")]
    pub down: Duration,
}

/// `[[epochs.byzantine]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochByzantine {
    /// The member, by committee position.
    pub member: usize,
    /// Its lie.
    pub behaviour: crate::epochs::Behaviour,
}

fn six_u64() -> u64 {
    6
}

fn s10() -> Duration {
    Duration::from_secs(10)
}

impl EpochsSection {
    /// The harness parameters, network defaults taken from `[network]`.
    pub fn run_params(&self, network: &NetworkSection) -> crate::epochs::EpochRun {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        crate::epochs::EpochRun {
            members: self.members,
            workers: self.workers,
            epochs: self.epochs,
            epoch_ms: ms(self.epoch_length),
            byzantine: self
                .byzantine
                .iter()
                .map(|b| (b.member, b.behaviour))
                .collect(),
            drop_ppm: (self.loss.unwrap_or(network.loss) * 1e6).round() as u32,
            delay_ms_max: ms(self.latency_max.unwrap_or(network.latency_max)).max(1),
            crash: self
                .crash
                .as_ref()
                .map(|c| (c.member, ms(c.at), ms(c.down))),
        }
    }
}

/// `[durable]`: a job of durable actors deployed through the scheduler, client
/// traffic into it, and live migrations, under whatever faults the rest asks for.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableSection {
    /// When the operator deploys the job.
    #[serde(default = "s5", deserialize_with = "duration")]
    pub deploy_at: Duration,
    /// Actors per stage (the job is `relay` feeding `sink`).
    #[serde(default = "three_u32")]
    pub replicas: u32,
    /// Snapshot replicas per actor.
    #[serde(default = "three")]
    pub durability: usize,
    /// Client messages per second, cluster-wide.
    #[serde(default = "ten", deserialize_with = "rate")]
    pub send_rate: f64,
    /// Live migrations the operator requests per minute.
    #[serde(default = "six", deserialize_with = "rate")]
    pub migrate_rate: f64,
    /// The scheduler's tick.
    #[serde(default = "ms500", deserialize_with = "duration")]
    pub tick: Duration,
    /// After the last fault ends, within this every client message must be
    /// acknowledged and every actor active on exactly one node.
    #[serde(default = "s90", deserialize_with = "duration")]
    pub settle: Duration,
}

fn three_u32() -> u32 {
    3
}

fn ten() -> f64 {
    10.0
}

fn six() -> f64 {
    6.0
}

fn ms500() -> Duration {
    Duration::from_millis(500)
}

fn s90() -> Duration {
    Duration::from_secs(90)
}

fn three() -> usize {
    3
}

/// `[membership]`: overrides of the production defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSection {
    /// Probe period.
    #[serde(default, deserialize_with = "opt_duration")]
    pub probe_interval: Option<Duration>,
    /// Direct-ack wait.
    #[serde(default, deserialize_with = "opt_duration")]
    pub probe_timeout: Option<Duration>,
    /// Suspicion multiplier.
    pub suspicion_mult: Option<u32>,
    /// Others' suspicions that bring one down to its shortest (0: off).
    pub suspicion_confirmations: Option<u32>,
    /// The shortest suspicion, in probe periods.
    pub suspicion_min_mult: Option<u32>,
    /// Local health: the most a sick node's probing slows (1: off).
    pub health_max: Option<u32>,
    /// Gossip retransmission multiplier.
    pub retransmit_mult: Option<u32>,
    /// Push-pull sync period.
    #[serde(default, deserialize_with = "opt_duration")]
    pub sync_interval: Option<Duration>,
}

/// `[registry]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// Owners per name: 0 or absent keeps a full replica on every node; `r` shards
    /// the registry (`plexus_mesh::registry::RegistryConfig::owners`).
    pub owners: Option<u32>,
    /// How often a node asks the owners again about the names it looks up.
    #[serde(default, deserialize_with = "opt_duration")]
    pub watch_refresh: Option<Duration>,
    /// A name not looked up for this long is no longer asked about.
    #[serde(default, deserialize_with = "opt_duration")]
    pub watch_idle: Option<Duration>,
}

/// `[delivery]`: overrides of the production defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    /// An outbound link with nothing in flight this long is closed.
    #[serde(default, deserialize_with = "opt_duration")]
    pub idle_link_after: Option<Duration>,
    /// Idle links are closed and a receiver forgets a closed link's record this
    /// long after the close (absent: the production default, neither).
    #[serde(default, deserialize_with = "opt_duration")]
    pub forget_after: Option<Duration>,
}

/// Latency distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyDist {
    /// Uniform between min and max.
    #[default]
    Uniform,
    /// min plus an exponential with mean (max - min) / 4, capped at max.
    Exponential,
}

/// `[network]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Shortest one-way latency.
    #[serde(default = "ms1", deserialize_with = "duration")]
    pub latency_min: Duration,
    /// Longest one-way latency (before reordering delay).
    #[serde(default = "ms10", deserialize_with = "duration")]
    pub latency_max: Duration,
    /// The distribution between them.
    #[serde(default)]
    pub latency: LatencyDist,
    /// Probability a message is lost.
    #[serde(default, deserialize_with = "probability")]
    pub loss: f64,
    /// Probability a message is delivered twice.
    #[serde(default, deserialize_with = "probability")]
    pub duplicate: f64,
    /// Probability a message is held back (up to 4× max latency), reordering it.
    #[serde(default, deserialize_with = "probability")]
    pub reorder: f64,
}

fn ms1() -> Duration {
    Duration::from_millis(1)
}

fn ms10() -> Duration {
    Duration::from_millis(10)
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            latency_min: ms1(),
            latency_max: ms10(),
            latency: LatencyDist::Uniform,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
        }
    }
}

/// `[workload]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// Actors per node that receive remote tells.
    #[serde(default = "four")]
    pub actors_per_node: usize,
    /// Remote tells each node sends per second (Poisson).
    #[serde(default = "one", deserialize_with = "rate")]
    pub tell_rate: f64,
    /// Remote asks each node sends per second (Poisson; default none).
    #[serde(default, deserialize_with = "rate")]
    pub ask_rate: f64,
    /// How long an asker waits for its answer (default 1 s).
    #[serde(default = "s1", deserialize_with = "positive_duration")]
    pub ask_timeout: Duration,
    /// Names each node registers in the cluster registry.
    #[serde(default = "one_usize")]
    pub names_per_node: usize,
    /// Supervised children per node.
    #[serde(default = "three")]
    pub children_per_node: usize,
    /// Child crashes per node per minute (Poisson).
    #[serde(default, deserialize_with = "rate")]
    pub child_crash_rate: f64,
    /// The supervisors' strategy.
    #[serde(default = "one_for_one")]
    pub strategy: plexus_supervisor::Strategy,
}

fn four() -> usize {
    4
}

fn s1() -> Duration {
    Duration::from_secs(1)
}

fn one() -> f64 {
    1.0
}

fn one_usize() -> usize {
    1
}

fn one_for_one() -> plexus_supervisor::Strategy {
    plexus_supervisor::Strategy::OneForOne
}

impl Default for WorkloadSection {
    fn default() -> Self {
        Self {
            actors_per_node: 4,
            tell_rate: 1.0,
            ask_rate: 0.0,
            ask_timeout: s1(),
            names_per_node: 1,
            children_per_node: 3,
            child_crash_rate: 0.0,
            strategy: plexus_supervisor::Strategy::OneForOne,
        }
    }
}

/// `[chaos]`: random faults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSection {
    /// No new chaos after this point (default: no chaos at all).
    #[serde(default, deserialize_with = "opt_duration")]
    pub until: Option<Duration>,
    /// Node crashes per minute, cluster-wide.
    #[serde(default, deserialize_with = "rate")]
    pub crash_rate: f64,
    /// A crashed node restarts after this (absent: it stays down).
    #[serde(default, deserialize_with = "opt_duration")]
    pub restart_after: Option<Duration>,
    /// Partitions per minute.
    #[serde(default, deserialize_with = "rate")]
    pub partition_rate: f64,
    /// How long a partition lasts.
    #[serde(default = "s20", deserialize_with = "duration")]
    pub partition_length: Duration,
    /// Fraction of partitions that are one-way.
    #[serde(default, deserialize_with = "probability")]
    pub one_way_fraction: f64,
    /// Pauses (SIGSTOP) per minute.
    #[serde(default, deserialize_with = "rate")]
    pub pause_rate: f64,
    /// How long a pause lasts.
    #[serde(default = "s5", deserialize_with = "duration")]
    pub pause_length: Duration,
    /// Largest clock offset of a node.
    #[serde(default, deserialize_with = "opt_duration")]
    pub clock_skew_max: Option<Duration>,
    /// Largest clock drift, in parts per million.
    #[serde(default)]
    pub clock_drift_ppm_max: u32,
    /// Never more than this fraction of nodes crashed or paused at once.
    #[serde(default = "third", deserialize_with = "probability")]
    pub max_down_fraction: f64,
}

fn s20() -> Duration {
    Duration::from_secs(20)
}

fn s5() -> Duration {
    Duration::from_secs(5)
}

fn third() -> f64 {
    1.0 / 3.0
}

/// A scheduled fault.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When.
    #[serde(deserialize_with = "duration")]
    pub at: Duration,
    /// What.
    pub kind: FaultKind,
    /// Which nodes, by index.
    #[serde(default)]
    pub nodes: Vec<usize>,
    /// Or this many random nodes.
    pub count: Option<usize>,
    /// Partitions: the fraction of nodes on one side (default 0.5).
    #[serde(default, deserialize_with = "opt_probability")]
    pub fraction: Option<f64>,
    /// Partitions: traffic from the smaller side to the rest is lost, not both ways.
    #[serde(default)]
    pub one_way: bool,
    /// Undo after this long (restart, heal, resume).
    #[serde(default, deserialize_with = "opt_duration")]
    pub duration: Option<Duration>,
}

/// Kinds of scheduled fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Crash (volatile state lost, durable kept).
    Crash,
    /// Restart crashed nodes.
    Restart,
    /// Split the network.
    Partition,
    /// End the partition.
    Heal,
    /// Stop nodes as SIGSTOP would.
    Pause,
    /// Continue paused nodes.
    Resume,
}

/// `[check]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// After the last fault ends, all views must agree within this (default: four
    /// sync intervals plus the detection bound).
    #[serde(default, deserialize_with = "opt_duration")]
    pub converge_within: Option<Duration>,
    /// Names of a crashed node must be gone everywhere within this (default: the
    /// detection bound plus one sync interval).
    #[serde(default, deserialize_with = "opt_duration")]
    pub dead_names_within: Option<Duration>,
    /// Run the full-state invariants after every event, not only every
    /// `deep_interval` (slow; for small scenarios).
    #[serde(default)]
    pub every_step: bool,
    /// Period of the full-state invariants (default 1 s of simulated time).
    #[serde(default, deserialize_with = "opt_duration")]
    pub deep_interval: Option<Duration>,
    /// How many nodes get the full-state invariants each period, in rotation
    /// (default 16; every node with `every_step`).
    pub deep_nodes: Option<usize>,
}

/// Why a scenario was refused. The author's fault; names field and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Bad syntax, an unknown key, or a field with an impossible value.
    #[error("{0}")]
    Parse(String),
    /// A field that is fine on its own but not with the rest.
    #[error("invalid `{field}` (line {line}): {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Its line, 1-based (0 if unknown).
        line: usize,
        /// Why.
        reason: String,
    },
    /// The file is empty.
    #[error("the scenario is empty")]
    Empty,
}

impl Scenario {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        if text.trim().is_empty() {
            return Err(ScenarioError::Empty);
        }
        let scenario: Scenario = toml::from_str(text)
            .map_err(|e| ScenarioError::Parse(e.to_string().trim_end().to_string()))?;
        scenario.validate(text)?;
        Ok(scenario)
    }

    fn validate(&self, text: &str) -> Result<(), ScenarioError> {
        let line_of = |key: &str| {
            text.lines()
                .position(|l| {
                    let t = l.trim_start();
                    t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
                })
                .map_or(0, |i| i + 1)
        };
        let invalid = |field: &str, key: &str, reason: String| ScenarioError::Invalid {
            field: field.into(),
            line: line_of(key),
            reason,
        };
        if self.network.latency_min > self.network.latency_max {
            return Err(invalid(
                "network.latency_min",
                "latency_min",
                "must not exceed network.latency_max".into(),
            ));
        }
        for b in &self.byzantine {
            if b.node >= self.nodes {
                return Err(invalid(
                    "byzantine.node",
                    "node",
                    format!("node {} is out of range (nodes = {})", b.node, self.nodes),
                ));
            }
            if !(b.rate.is_finite() && b.rate >= 0.0) {
                return Err(invalid(
                    "byzantine.rate",
                    "rate",
                    "must be a non-negative number".into(),
                ));
            }
        }
        if let Some(r) = self.registry.owners {
            let max = plexus_mesh::owners::OWNERS_MAX as u32;
            if r > max {
                return Err(invalid(
                    "registry.owners",
                    "owners",
                    format!("at most {max} owners per name"),
                ));
            }
        }
        if self.workload.actors_per_node == 0 {
            return Err(invalid(
                "workload.actors_per_node",
                "actors_per_node",
                "must be at least 1".into(),
            ));
        }
        if self.bootstrap == 0 && self.nodes > 1 {
            return Err(invalid(
                "bootstrap",
                "bootstrap",
                "must be at least 1 when there is more than one node".into(),
            ));
        }
        let m = &self.membership;
        if let (Some(t), Some(i)) = (
            m.probe_timeout,
            m.probe_interval.or(Some(Duration::from_secs(1))),
        ) && t >= i
        {
            return Err(invalid(
                "membership.probe_timeout",
                "probe_timeout",
                "must be shorter than membership.probe_interval".into(),
            ));
        }
        if m.suspicion_mult == Some(0) {
            return Err(invalid(
                "membership.suspicion_mult",
                "suspicion_mult",
                "must be at least 1".into(),
            ));
        }
        if m.suspicion_min_mult == Some(0) {
            return Err(invalid(
                "membership.suspicion_min_mult",
                "suspicion_min_mult",
                "must be at least 1".into(),
            ));
        }
        if let Some(d) = &self.durable {
            if d.replicas == 0 || d.replicas > 64 {
                return Err(invalid(
                    "durable.replicas",
                    "replicas",
                    "must be 1..=64".into(),
                ));
            }
            if d.durability == 0 || d.durability > 7 {
                return Err(invalid(
                    "durable.durability",
                    "durability",
                    "must be 1..=7".into(),
                ));
            }
            if d.tick.is_zero() {
                return Err(invalid(
                    "durable.tick",
                    "tick",
                    "must be longer than zero".into(),
                ));
            }
        }
        if let Some(e) = &self.epochs {
            if !(1..=100).contains(&e.members) {
                return Err(invalid(
                    "epochs.members",
                    "members",
                    "must be 1..=100".into(),
                ));
            }
            if e.epochs == 0 || e.epochs > 10_000 {
                return Err(invalid(
                    "epochs.epochs",
                    "epochs",
                    "must be 1..=10000".into(),
                ));
            }
            if e.workers > 10_000 {
                return Err(invalid(
                    "epochs.workers",
                    "workers",
                    "must be at most 10000".into(),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for b in &e.byzantine {
                if b.member >= e.members || !seen.insert(b.member) {
                    return Err(invalid(
                        "epochs.byzantine.member",
                        "member",
                        format!(
                            "member {} is out of range (members = {}) or listed twice",
                            b.member, e.members
                        ),
                    ));
                }
            }
            if let Some(c) = &e.crash
                && c.member >= e.members
            {
                return Err(invalid(
                    "epochs.crash.member",
                    "member",
                    format!(
                        "member {} is out of range (members = {})",
                        c.member, e.members
                    ),
                ));
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            if let Some(bad) = fault.nodes.iter().find(|n| **n >= self.nodes) {
                return Err(ScenarioError::Invalid {
                    field: format!("fault[{i}].nodes"),
                    line: nth_line(text, "[[fault]]", i),
                    reason: format!("node {bad} does not exist (nodes are 0..{})", self.nodes),
                });
            }
            if fault.at > self.duration {
                return Err(ScenarioError::Invalid {
                    field: format!("fault[{i}].at"),
                    line: nth_line(text, "[[fault]]", i),
                    reason: "is after the end of the run".into(),
                });
            }
            if fault.count.is_some_and(|c| c > self.nodes) {
                return Err(ScenarioError::Invalid {
                    field: format!("fault[{i}].count"),
                    line: nth_line(text, "[[fault]]", i),
                    reason: format!("more than the {} nodes there are", self.nodes),
                });
            }
        }
        Ok(())
    }
}

fn nth_line(text: &str, marker: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == marker)
        .nth(n)
        .map_or(0, |(i, _)| i + 1)
}

fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|e| {
        E::custom(format!(
            "`{text}` is not a duration like 30s, 5m or 1h ({e})"
        ))
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?)
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value.is_zero() {
        return Err(serde::de::Error::custom("must be longer than zero"));
    }
    Ok(value)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(Some(duration(d)?))
}

fn node_count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    if !(1..=100_000).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "{n} nodes: must be between 1 and 100000"
        )));
    }
    Ok(n as usize)
}

fn probability<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let p = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "{p} is not a probability (0 to 1)"
        )));
    }
    Ok(p)
}

fn opt_probability<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Some(probability(d)?))
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let r = f64::deserialize(d)?;
    if !r.is_finite() || r < 0.0 {
        return Err(serde::de::Error::custom(format!(
            "{r} is not a rate (a number of events, zero or more)"
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scenario_parses() {
        let s = Scenario::parse(
            r#"
nodes = 50
duration = "10m"
[network]
loss = 0.01
latency_min = "2ms"
latency_max = "20ms"
latency = "exponential"
[workload]
tell_rate = 5.0
strategy = "rest_for_one"
[chaos]
until = "8m"
crash_rate = 0.5
restart_after = "30s"
partition_rate = 0.2
[[fault]]
at = "1m"
kind = "partition"
fraction = 0.3
one_way = true
duration = "20s"
[[fault]]
at = "2m"
kind = "crash"
nodes = [3, 4]
"#,
        )
        .unwrap();
        assert_eq!(s.nodes, 50);
        assert_eq!(s.duration, Duration::from_secs(600));
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.faults[0].kind, FaultKind::Partition);
        assert_eq!(s.network.latency, LatencyDist::Exponential);
    }

    fn err(text: &str) -> String {
        Scenario::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let e = err("nodes = 0\nduration = \"1m\"");
        assert!(e.contains("line 1") && e.contains("nodes"), "{e}");
        let e = err("nodes = 3\nduration = \"1m\"\n[network]\nloss = 1.5\n");
        assert!(e.contains("line 4") && e.contains("probability"), "{e}");
        let e = err("nodes = 3\nduration = \"1m\"\n[chaos]\ncrash_rate = -1.0\n");
        assert!(e.contains("line 4") && e.contains("rate"), "{e}");
        let e = err("nodes = 3\nduration = \"1m\"\ncolour = \"red\"\n");
        assert!(e.contains("line 3") && e.contains("colour"), "{e}");
        let e = err("nodes = 3\nduration = \"soon\"\n");
        assert!(e.contains("line 2") && e.contains("duration"), "{e}");
        let e = err("nodes = 3\nduration = \"1m\"\n[network\n");
        assert!(e.contains("line 3"), "{e}");
        let e = err(
            "nodes = 3\nduration = \"1m\"\n\n[[fault]]\nat = \"10s\"\nkind = \"crash\"\nnodes = [7]\n",
        );
        assert!(e.contains("fault[0].nodes") && e.contains("line 4"), "{e}");
        let e = err(
            "nodes = 3\nduration = \"1m\"\n[network]\nlatency_min = \"50ms\"\nlatency_max = \"10ms\"\n",
        );
        assert!(
            e.contains("network.latency_min") && e.contains("line 4"),
            "{e}"
        );
        assert!(matches!(Scenario::parse("  "), Err(ScenarioError::Empty)));
        let e = err("duration = \"1m\"\n");
        assert!(e.contains("nodes"), "{e}");
    }
}
