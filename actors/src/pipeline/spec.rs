//! The declarative pipeline spec (TOML or JSON) and its validation. Pure: no actors
//! are touched here, so the scheduler and the simulator can validate specs too.
//!
//! ```toml
//! name = "wordcount"
//!
//! [[stage]]
//! name = "lines"
//! kind = "text-source"          # a registered actor kind
//! to = ["tokens"]               # downstream stages
//! config = { repeat = 10 }      # handed to the kind's factory
//!
//! [[stage]]
//! name = "tokens"
//! kind = "tokenize"
//! ```
//!
//! A valid spec is a non-empty DAG: stage names are unique and non-empty, every
//! `to` names a stage, there is no cycle, and there is at least one source (a stage
//! nothing feeds) and one sink (a stage that feeds nothing). Whether each `kind` is
//! registered is checked against a kind registry by [`PipelineSpec::check_kinds`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Mailbox capacity bounds a spec may ask for.
pub const STAGE_CAPACITY_MAX: usize = 1 << 20;

/// A pipeline: stages wired into a DAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name, for logs and reports.
    pub name: String,
    /// The stages, in any order.
    #[serde(rename = "stage", alias = "stages", default)]
    pub stages: Vec<StageSpec>,
}

/// One stage: an actor of a registered kind, with its config and downstream edges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Unique within the pipeline.
    pub name: String,
    /// The registered actor kind that implements the stage.
    pub kind: String,
    /// Names of the stages this one feeds.
    #[serde(default)]
    pub to: Vec<String>,
    /// Kind-specific configuration, handed to the kind's factory.
    #[serde(default = "empty_config")]
    pub config: serde_json::Value,
    /// Mailbox capacity for this stage; the node default if absent.
    #[serde(default)]
    pub capacity: Option<usize>,
}

fn empty_config() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Why a spec was refused. Every variant is the spec author's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The text is empty or only whitespace.
    #[error("the pipeline spec is empty")]
    Empty,
    /// The text does not parse; the message names the line and column.
    #[error("invalid {format} in pipeline spec: {message}")]
    Syntax {
        /// "TOML" or "JSON".
        format: &'static str,
        /// The parser's message, with the position.
        message: String,
    },
    /// The spec has no stages.
    #[error("pipeline `{0}` has no stages")]
    NoStages(String),
    /// A stage has an empty name or kind.
    #[error("stage #{index} has an empty `{field}`")]
    EmptyField {
        /// Position in the stage list, from 0.
        index: usize,
        /// "name" or "kind".
        field: &'static str,
    },
    /// Two stages share a name.
    #[error("two stages are named `{0}`")]
    DuplicateStage(String),
    /// A `to` names no stage.
    #[error("stage `{stage}` sends to `{target}`, which is not a stage")]
    UnknownTarget {
        /// The stage with the bad edge.
        stage: String,
        /// The missing target.
        target: String,
    },
    /// A stage lists itself or another stage twice in `to`.
    #[error("stage `{stage}` lists `{target}` twice (or itself) in `to`")]
    BadEdge {
        /// The stage with the bad edge.
        stage: String,
        /// The repeated or self target.
        target: String,
    },
    /// The edges form a cycle.
    #[error("the stages {0:?} form a cycle")]
    Cycle(Vec<String>),
    /// A stage's capacity is zero or above [`STAGE_CAPACITY_MAX`].
    #[error("stage `{stage}` asks for capacity {capacity}; it must be 1..={max}")]
    Capacity {
        /// The stage.
        stage: String,
        /// What it asked for.
        capacity: usize,
        /// The maximum.
        max: usize,
    },
    /// A stage names a kind that is not registered.
    #[error("stage `{stage}` uses unknown kind `{kind}` (known kinds: {known})")]
    UnknownKind {
        /// The stage.
        stage: String,
        /// The unknown kind.
        kind: String,
        /// The registered kinds, comma separated.
        known: String,
    },
}

impl PipelineSpec {
    /// Parses TOML text and validates the result.
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        if text.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let spec: PipelineSpec = toml::from_str(text).map_err(|e| SpecError::Syntax {
            format: "TOML",
            message: e.to_string().trim_end().to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses JSON text and validates the result.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        if text.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let spec: PipelineSpec = serde_json::from_str(text).map_err(|e| SpecError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses JSON if the text starts with `{`, TOML otherwise.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        if text.trim_start().starts_with('{') {
            Self::from_json(text)
        } else {
            Self::from_toml(text)
        }
    }

    /// Checks the structural rules listed in the module docs.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.stages.is_empty() {
            return Err(SpecError::NoStages(self.name.clone()));
        }
        let mut names = BTreeSet::new();
        for (index, stage) in self.stages.iter().enumerate() {
            if stage.name.trim().is_empty() {
                return Err(SpecError::EmptyField {
                    index,
                    field: "name",
                });
            }
            if stage.kind.trim().is_empty() {
                return Err(SpecError::EmptyField {
                    index,
                    field: "kind",
                });
            }
            if !names.insert(stage.name.as_str()) {
                return Err(SpecError::DuplicateStage(stage.name.clone()));
            }
            if let Some(capacity) = stage.capacity
                && !(1..=STAGE_CAPACITY_MAX).contains(&capacity)
            {
                return Err(SpecError::Capacity {
                    stage: stage.name.clone(),
                    capacity,
                    max: STAGE_CAPACITY_MAX,
                });
            }
        }
        for stage in &self.stages {
            let mut seen = BTreeSet::new();
            for target in &stage.to {
                if !names.contains(target.as_str()) {
                    return Err(SpecError::UnknownTarget {
                        stage: stage.name.clone(),
                        target: target.clone(),
                    });
                }
                if target == &stage.name || !seen.insert(target) {
                    return Err(SpecError::BadEdge {
                        stage: stage.name.clone(),
                        target: target.clone(),
                    });
                }
            }
        }
        self.topological_order().map(|_| ())
    }

    /// Stage indices in an order where every stage comes after all that feed it
    /// (Kahn's algorithm, ties broken by position so the order is deterministic).
    pub fn topological_order(&self) -> Result<Vec<usize>, SpecError> {
        let index: BTreeMap<&str, usize> = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut indegree = vec![0usize; self.stages.len()];
        for stage in &self.stages {
            for target in &stage.to {
                if let Some(&t) = index.get(target.as_str()) {
                    indegree[t] += 1;
                }
            }
        }
        let mut ready: BTreeSet<usize> = (0..self.stages.len())
            .filter(|&i| indegree[i] == 0)
            .collect();
        let mut order = Vec::with_capacity(self.stages.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for target in &self.stages[i].to {
                if let Some(&t) = index.get(target.as_str()) {
                    indegree[t] -= 1;
                    if indegree[t] == 0 {
                        ready.insert(t);
                    }
                }
            }
        }
        if order.len() != self.stages.len() {
            let stuck = (0..self.stages.len())
                .filter(|i| indegree[*i] > 0)
                .map(|i| self.stages[i].name.clone())
                .collect();
            return Err(SpecError::Cycle(stuck));
        }
        Ok(order)
    }

    /// How many stages feed each stage, by index.
    pub fn input_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.stages.len()];
        for stage in &self.stages {
            for target in &stage.to {
                if let Some(i) = self.stages.iter().position(|s| &s.name == target) {
                    counts[i] += 1;
                }
            }
        }
        counts
    }

    /// Checks every stage's kind against `known` (the registered kind names).
    pub fn check_kinds<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), SpecError> {
        for stage in &self.stages {
            if !known.clone().into_iter().any(|k| k == stage.kind) {
                let list: Vec<&str> = known.into_iter().collect();
                return Err(SpecError::UnknownKind {
                    stage: stage.name.clone(),
                    kind: stage.kind.clone(),
                    known: list.join(", "),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "p"
[[stage]]
name = "a"
kind = "src"
to = ["b", "c"]
[[stage]]
name = "b"
kind = "map"
to = ["d"]
config = { factor = 2 }
[[stage]]
name = "c"
kind = "map"
to = ["d"]
[[stage]]
name = "d"
kind = "sink"
"#;

    #[test]
    fn a_diamond_parses_and_orders() {
        let spec = PipelineSpec::from_toml(GOOD).unwrap();
        assert_eq!(spec.stages.len(), 4);
        assert_eq!(spec.stages[1].config["factor"], 2);
        assert_eq!(spec.topological_order().unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(spec.input_counts(), vec![0, 1, 1, 2]);
        spec.check_kinds(["src", "map", "sink"]).unwrap();
        assert!(matches!(
            spec.check_kinds(["src", "map"]),
            Err(SpecError::UnknownKind { ref stage, ref kind, .. }) if stage == "d" && kind == "sink"
        ));
    }

    #[test]
    fn json_is_accepted_too() {
        let spec =
            PipelineSpec::parse(r#"{"name":"j","stages":[{"name":"a","kind":"k"}]}"#).unwrap();
        assert_eq!(spec.stages[0].name, "a");
    }

    #[test]
    fn bad_specs_get_precise_errors() {
        assert_eq!(PipelineSpec::parse("  \n"), Err(SpecError::Empty));
        let err = PipelineSpec::from_toml("name = \"p\"\n[[stage]\n").unwrap_err();
        assert!(
            matches!(err, SpecError::Syntax { format: "TOML", ref message } if message.contains("line 2")),
            "{err}"
        );
        let err = PipelineSpec::from_toml("name = \"p\"\nbogus = 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        assert_eq!(
            PipelineSpec::from_toml("name = \"p\""),
            Err(SpecError::NoStages("p".into()))
        );
        let dup =
            "name=\"p\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\n";
        assert_eq!(
            PipelineSpec::from_toml(dup),
            Err(SpecError::DuplicateStage("a".into()))
        );
        let missing = "name=\"p\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\nto=[\"zz\"]\n";
        assert!(matches!(
            PipelineSpec::from_toml(missing),
            Err(SpecError::UnknownTarget { .. })
        ));
        let cyc = "name=\"p\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\nto=[\"b\"]\n[[stage]]\nname=\"b\"\nkind=\"k\"\nto=[\"a\"]\n";
        assert!(matches!(
            PipelineSpec::from_toml(cyc),
            Err(SpecError::Cycle(_))
        ));
        let selfie = "name=\"p\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\nto=[\"a\"]\n";
        assert!(matches!(
            PipelineSpec::from_toml(selfie),
            Err(SpecError::BadEdge { .. })
        ));
        let empty_kind = "name=\"p\"\n[[stage]]\nname=\"a\"\nkind=\"\"\n";
        assert_eq!(
            PipelineSpec::from_toml(empty_kind),
            Err(SpecError::EmptyField {
                index: 0,
                field: "kind"
            })
        );
        let cap = "name=\"p\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\ncapacity=0\n";
        assert!(matches!(
            PipelineSpec::from_toml(cap),
            Err(SpecError::Capacity { .. })
        ));
        let neg = "name=\"p\"\n[[stage]]\nname=\"a\"\nkind=\"k\"\ncapacity=-5\n";
        assert!(matches!(
            PipelineSpec::from_toml(neg),
            Err(SpecError::Syntax { .. })
        ));
    }
}
