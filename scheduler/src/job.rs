//! Job specs: a pipeline plus what it needs to run on the mesh.
//!
//! ```toml
//! name = "wordcount"
//! priority = 10                  # 0..=1000; higher is placed (and re-placed) first
//! replicas = 1                   # per stage, unless the stage says otherwise
//! placement = "spread"           # or "pack"
//! constraints = "region in [eu, us] && kyc && !country:fr"
//! durability = 3                 # snapshot replicas per actor (a majority commits)
//!
//! [resources]                    # per replica, unless the stage says otherwise
//! cpu = 0.5                      # cores, or "500m"
//! memory = "256MiB"
//! gpu = 0
//!
//! [[stage]]
//! name = "parse"
//! kind = "tokenize"              # a registered actor kind
//! to = ["count"]
//! replicas = 2
//!
//! [[stage]]
//! name = "count"
//! kind = "word-count"
//! config = { top = 5 }
//! constraints = "ssd"            # ANDed with the job's
//! resources = { cpu = 1, memory = "1GiB" }
//! ```
//!
//! Parsing is strict: unknown fields, bad values and invalid pipelines are refused
//! with a [`JobError`] naming the field or stage.

use std::collections::BTreeSet;

use plexus_actors::pipeline::spec::{PipelineSpec, StageSpec};
use plexus_vocab::resources::{Resources, parse_cpu, parse_size};
use serde::{Deserialize, Serialize};

use crate::tags::Expr;

/// Most replicas one stage may ask for.
pub const STAGE_REPLICAS_MAX: u32 = 64;
/// Most stages in a job.
pub const STAGES_MAX: usize = 64;
/// Highest priority.
pub const PRIORITY_MAX: u32 = 1000;
/// Longest job spec accepted, in bytes.
pub const SPEC_BYTES_MAX: usize = 256 * 1024;

/// Where replicas go when several nodes qualify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The least loaded node: replicas spread out.
    #[default]
    Spread,
    /// The most loaded node that still fits: replicas packed together.
    Pack,
}

/// A validated job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Unique in the cluster; names its actors `name/stage/index`.
    pub name: String,
    /// 0..=1000.
    pub priority: u32,
    /// Spread or pack.
    pub placement: Strategy,
    /// Snapshot replicas per actor.
    pub durability: usize,
    /// The stages, in the order written.
    pub stages: Vec<StageJob>,
}

/// One stage, with defaults applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageJob {
    /// Unique in the job.
    pub name: String,
    /// A registered kind.
    pub kind: String,
    /// Stages this one feeds.
    pub to: Vec<String>,
    /// The kind's configuration, as JSON text.
    pub config: String,
    /// How many actors run this stage.
    pub replicas: u32,
    /// Per replica.
    pub resources: Resources,
    /// The job's constraints ANDed with the stage's.
    pub constraints: Expr,
}

/// Why a job spec was refused. The submitter is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Empty text.
    #[error("the job spec is empty")]
    Empty,
    /// Longer than [`SPEC_BYTES_MAX`].
    #[error("the job spec is {0} bytes; the limit is {SPEC_BYTES_MAX}")]
    TooLong(usize),
    /// Not TOML, or an unknown or mistyped field (the message has the line).
    #[error("invalid job spec: {0}")]
    Syntax(String),
    /// A field has an impossible value.
    #[error("invalid `{field}`: {reason}")]
    Field {
        /// Which (`stage.count.replicas`, say).
        field: String,
        /// Why.
        reason: String,
    },
    /// The stages do not form a valid pipeline.
    #[error("invalid pipeline: {0}")]
    Pipeline(String),
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> JobError {
    JobError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: String,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    placement: Option<Strategy>,
    #[serde(default)]
    constraints: Option<String>,
    #[serde(default)]
    durability: Option<usize>,
    #[serde(default)]
    resources: Option<ResourcesFile>,
    #[serde(rename = "stage", alias = "stages", default)]
    stages: Vec<StageFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    name: String,
    kind: String,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    config: Option<toml::Value>,
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    resources: Option<ResourcesFile>,
    #[serde(default)]
    constraints: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ResourcesFile {
    #[serde(default)]
    cpu: Option<toml::Value>,
    #[serde(default)]
    memory: Option<String>,
    #[serde(default, alias = "gpus")]
    gpu: Option<u32>,
}

fn resources(file: &ResourcesFile, at: &str) -> Result<Resources, JobError> {
    let cpu_millis = match &file.cpu {
        None => 0,
        Some(toml::Value::Integer(i)) if *i >= 0 => (*i as u64).saturating_mul(1000),
        Some(toml::Value::Float(f)) => {
            parse_cpu(&f.to_string()).map_err(|e| field(format!("{at}.cpu"), e))?
        }
        Some(toml::Value::String(s)) => parse_cpu(s).map_err(|e| field(format!("{at}.cpu"), e))?,
        Some(other) => {
            return Err(field(
                format!("{at}.cpu"),
                format!("`{other}` is not a CPU amount"),
            ));
        }
    };
    let memory_bytes = match &file.memory {
        None => 0,
        Some(m) => parse_size(m).map_err(|e| field(format!("{at}.memory"), e))?,
    };
    Ok(Resources {
        cpu_millis,
        memory_bytes,
        gpus: file.gpu.unwrap_or(0),
    })
}

/// Whether `name` may name a job or a stage: 1..=64 of `a-z 0-9 - _ .`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

impl JobSpec {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<JobSpec, JobError> {
        if text.len() > SPEC_BYTES_MAX {
            return Err(JobError::TooLong(text.len()));
        }
        if text.trim().is_empty() {
            return Err(JobError::Empty);
        }
        let file: JobFile = toml::from_str(text)
            .map_err(|e| JobError::Syntax(e.to_string().trim_end().to_string()))?;
        if !valid_name(&file.name) {
            return Err(field(
                "name",
                format!("`{}` must be 1-64 of a-z 0-9 - _ .", file.name),
            ));
        }
        // Every actor key starts with the job's name, so a job outside the reserved
        // prefixes names no reserved actor.
        if plexus_vocab::names::is_reserved(&file.name) {
            return Err(field(
                "name",
                format!(
                    "`{}` is reserved for the system (see plexus_vocab::names)",
                    file.name
                ),
            ));
        }
        let priority = file.priority.unwrap_or(0);
        if priority > PRIORITY_MAX {
            return Err(field(
                "priority",
                format!("{priority} is above {PRIORITY_MAX}"),
            ));
        }
        let durability = file.durability.unwrap_or(3);
        if durability == 0 || durability > plexus_durable::types::REPLICAS_MAX {
            return Err(field(
                "durability",
                format!(
                    "{durability} must be 1..={}",
                    plexus_durable::types::REPLICAS_MAX
                ),
            ));
        }
        let job_replicas = file.replicas.unwrap_or(1);
        let job_resources = resources(&file.resources.clone().unwrap_or_default(), "resources")?;
        let job_constraints = match &file.constraints {
            Some(c) => Expr::parse(c).map_err(|e| field("constraints", e.to_string()))?,
            None => Expr::True,
        };
        if file.stages.len() > STAGES_MAX {
            return Err(field(
                "stage",
                format!("{} stages; the limit is {STAGES_MAX}", file.stages.len()),
            ));
        }
        let mut stages = Vec::new();
        for s in &file.stages {
            let at = format!("stage.{}", s.name);
            if !valid_name(&s.name) {
                return Err(field(format!("{at}.name"), "must be 1-64 of a-z 0-9 - _ ."));
            }
            let replicas = s.replicas.unwrap_or(job_replicas);
            if replicas == 0 || replicas > STAGE_REPLICAS_MAX {
                return Err(field(
                    format!("{at}.replicas"),
                    format!("{replicas} must be 1..={STAGE_REPLICAS_MAX}"),
                ));
            }
            let res = match &s.resources {
                Some(r) => resources(r, &format!("{at}.resources"))?,
                None => job_resources,
            };
            let constraints = match &s.constraints {
                Some(c) => job_constraints.clone().and(
                    Expr::parse(c)
                        .map_err(|e| field(format!("{at}.constraints"), e.to_string()))?,
                ),
                None => job_constraints.clone(),
            };
            let config = match &s.config {
                Some(v) => serde_json::to_string(v)
                    .map_err(|e| field(format!("{at}.config"), e.to_string()))?,
                None => "{}".to_string(),
            };
            stages.push(StageJob {
                name: s.name.clone(),
                kind: s.kind.clone(),
                to: s.to.clone(),
                config,
                replicas,
                resources: res,
                constraints,
            });
        }
        let job = JobSpec {
            name: file.name,
            priority,
            placement: file.placement.unwrap_or_default(),
            durability,
            stages,
        };
        job.pipeline()
            .validate()
            .map_err(|e| JobError::Pipeline(e.to_string()))?;
        Ok(job)
    }

    /// The stages as a pipeline spec (for validation and kind checks).
    pub fn pipeline(&self) -> PipelineSpec {
        PipelineSpec {
            name: self.name.clone(),
            stages: self
                .stages
                .iter()
                .map(|s| StageSpec {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    to: s.to.clone(),
                    config: serde_json::from_str(&s.config).unwrap_or(serde_json::Value::Null),
                    capacity: None,
                })
                .collect(),
        }
    }

    /// Checks every kind against the kinds a node knows.
    pub fn check_kinds(&self, known: &BTreeSet<String>) -> Result<(), JobError> {
        for s in &self.stages {
            if !known.contains(&s.kind) {
                let list: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(field(
                    format!("stage.{}.kind", s.name),
                    format!("unknown kind `{}` (known: {})", s.kind, list.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// Stages nothing feeds: where client traffic enters.
    pub fn entry_stages(&self) -> Vec<&StageJob> {
        let fed: BTreeSet<&str> = self
            .stages
            .iter()
            .flat_map(|s| s.to.iter().map(String::as_str))
            .collect();
        self.stages
            .iter()
            .filter(|s| !fed.contains(s.name.as_str()))
            .collect()
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageJob> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Every actor the job runs: `(stage, index)`.
    pub fn actors(&self) -> Vec<(&StageJob, u32)> {
        self.stages
            .iter()
            .flat_map(|s| (0..s.replicas).map(move |i| (s, i)))
            .collect()
    }
}

/// The durable key of replica `index` of `stage` in `job`.
pub fn actor_key(job: &str, stage: &str, index: u32) -> String {
    format!("{job}/{stage}/{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_may_not_take_reserved_names() {
        for name in ["plexus", "plexus-demo", "plexus.x"] {
            let text = format!("name = \"{name}\"\n[[stage]]\nname = \"a\"\nkind = \"relay\"\n");
            match JobSpec::from_toml(&text) {
                Err(JobError::Field { field, .. }) => assert_eq!(field, "name"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let ok = "name = \"demo\"\n[[stage]]\nname = \"a\"\nkind = \"relay\"\n";
        JobSpec::from_toml(ok).unwrap();
        for (stage, i) in JobSpec::from_toml(ok).unwrap().actors() {
            assert!(!plexus_vocab::names::is_reserved(&actor_key(
                "demo",
                &stage.name,
                i
            )));
        }
    }

    const SPEC: &str = r#"
name = "wordcount"
priority = 10
placement = "pack"
constraints = "region in [eu, us] && kyc"

[resources]
cpu = 0.5
memory = "256MiB"

[[stage]]
name = "parse"
kind = "tokenize"
to = ["count"]
replicas = 2

[[stage]]
name = "count"
kind = "word-count"
config = { top = 5 }
constraints = "ssd"
resources = { cpu = "2", memory = "1GiB", gpu = 1 }
"#;

    #[test]
    fn a_full_spec_parses_with_defaults_applied() {
        let job = JobSpec::from_toml(SPEC).unwrap();
        assert_eq!(job.name, "wordcount");
        assert_eq!(job.priority, 10);
        assert_eq!(job.placement, Strategy::Pack);
        assert_eq!(job.durability, 3);
        let parse = job.stage("parse").unwrap();
        assert_eq!(parse.replicas, 2);
        assert_eq!(parse.resources.cpu_millis, 500);
        assert_eq!(parse.resources.memory_bytes, 256 << 20);
        let count = job.stage("count").unwrap();
        assert_eq!(count.replicas, 1);
        assert_eq!(count.resources.gpus, 1);
        assert_eq!(count.resources.cpu_millis, 2000);
        assert_eq!(
            count.constraints.to_string(),
            "region in [eu, us] && kyc && ssd"
        );
        assert_eq!(count.config, r#"{"top":5}"#);
        assert_eq!(job.actors().len(), 3);
        assert_eq!(job.entry_stages()[0].name, "parse");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases = [
            ("", "empty"),
            (
                "name = \"Bad Name\"\n[[stage]]\nname=\"a\"\nkind=\"k\"",
                "`name`",
            ),
            (
                "name = \"j\"\npriority = 5000\n[[stage]]\nname=\"a\"\nkind=\"k\"",
                "`priority`",
            ),
            (
                "name = \"j\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\nreplicas = 0",
                "`stage.a.replicas`",
            ),
            (
                "name = \"j\"\nconstraints = \"a &&\"\n[[stage]]\nname=\"a\"\nkind=\"k\"",
                "`constraints`",
            ),
            (
                "name = \"j\"\n[resources]\nmemory = \"lots\"\n[[stage]]\nname=\"a\"\nkind=\"k\"",
                "`resources.memory`",
            ),
            (
                "name = \"j\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\nto=[\"b\"]",
                "pipeline",
            ),
            ("name = \"j\"\nbogus = 1", "bogus"),
            ("name = \"j\"", "no stages"),
        ];
        for (text, want) in cases {
            let err = JobSpec::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn kinds_are_checked() {
        let job = JobSpec::from_toml(SPEC).unwrap();
        let known: BTreeSet<String> = ["tokenize".to_string()].into();
        let err = job.check_kinds(&known).unwrap_err().to_string();
        assert!(err.contains("word-count"), "{err}");
    }
}
