//! User code: what a durable actor runs, and the registry of kinds a node can run.
//!
//! A job spec names each stage's *kind*. When the durable core restores an actor
//! here, the host looks its kind up in [`Kinds`] and builds its [`DurableCode`] from
//! the actor's spec and restored snapshot; every batch of inputs then goes through
//! [`DurableCode::apply`]. The scheduler is built in: the actor at
//! [`SCHEDULER_KEY`] always runs it, whatever kinds are registered.
//!
//! Embedders add kinds of their own with [`Kinds::register`] (see
//! `examples/durable_kind.rs` in the workspace root).

use std::collections::BTreeMap;
use std::sync::Arc;

use plexus_actors::codec::CodecError;
use plexus_actors::migratable::Snapshot;
use plexus_durable::activation::{Applied, Input};
use plexus_durable::types::DurableKey;
use plexus_scheduler::SCHEDULER_KEY;
use plexus_scheduler::app::SchedulerApp;
use plexus_scheduler::protocol::ActorSpec;

/// Kind names that start with this prefix are reserved for Plexus itself.
pub const RESERVED_PREFIX: &str = "plexus";

/// One durable actor's user code.
///
/// Contract: `apply` applies `inputs` in order and returns one reply slot per input
/// (see [`Applied`]); with `snapshot` set it also returns the state after the batch.
/// It must be deterministic in its inputs and state: a restored activation replays
/// nothing, but its state must mean the same on every node.
pub trait DurableCode: Send {
    /// Applies a batch in order; returns a snapshot if asked.
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodeError>;
    /// How this actor wants its inputs batched (a model executor's `max_batch` and
    /// `max_wait`); asked once, after it is built. `None`: as they come.
    fn batching(&self) -> Option<plexus_durable::activation::Batching> {
        None
    }
    /// A summary of the state, for the API (`null` if there is nothing to show).
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Checks what the state promises; the simulator calls it in its invariant
    /// rotation. The default promises nothing.
    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A kind of durable actor: builds its user code.
pub trait DurableKind: Send + Sync {
    /// The name job specs use (`kind = "..."`).
    fn name(&self) -> &str;
    /// Builds the code for the actor `key` from its spec and restored state (an
    /// empty snapshot for a fresh actor).
    fn build(
        &self,
        key: &DurableKey,
        spec: &ActorSpec,
        state: &Snapshot,
    ) -> Result<Box<dyn DurableCode>, CodeError>;
}

/// Why user code could not be built or failed to apply a batch. The durable core
/// counts failures and, past its limit, deactivates the actor and reports it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    // --- the deployer's fault: the spec names something this node cannot run ---
    /// The actor's spec does not decode.
    #[error("bad actor spec: {0}")]
    Spec(CodecError),
    /// No kind of that name is registered here.
    #[error("unknown durable kind `{0}`")]
    UnknownKind(String),
    /// The stage's configuration is not acceptable to its kind.
    #[error("bad config: {0}")]
    Config(String),
    // --- the state's fault: it was written by other code, or damaged ---
    /// The restored state does not decode.
    #[error("the state does not decode: {0}")]
    State(CodecError),
    // --- the user code's fault ---
    /// The code failed on a batch.
    #[error("{0}")]
    Failed(String),
    // --- the host's fault ---
    /// A batch arrived for an actor whose code was never built (a bug).
    #[error("no user code")]
    Missing,
}

/// Why a kind could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KindError {
    /// A kind of that name is registered already.
    #[error("durable kind `{0}` is registered already")]
    Duplicate(String),
    /// The name is reserved for Plexus.
    #[error("durable kind names starting with `{RESERVED_PREFIX}` are reserved: `{0}`")]
    Reserved(String),
    /// The name is empty or has characters job specs cannot name.
    #[error("`{0}` is not a valid kind name (use letters, digits, `-`, `_`, `.`)")]
    Invalid(String),
}

/// Encodes `state` as a snapshot of `schema_version`, the way user code answers a
/// batch that asks for one.
pub fn snapshot_of<T: serde::Serialize>(
    state: &T,
    schema_version: u32,
) -> Result<Snapshot, CodeError> {
    let bytes =
        plexus_actors::codec::encode_body(state).map_err(|e| CodeError::Failed(e.to_string()))?;
    Ok(Snapshot {
        schema_version,
        bytes,
    })
}

/// The kinds a node can run.
#[derive(Clone, Default)]
pub struct Kinds {
    kinds: BTreeMap<String, Arc<dyn DurableKind>>,
}

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Kinds {
    /// No kinds (the scheduler is built in regardless).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind.
    pub fn register(&mut self, kind: impl DurableKind + 'static) -> Result<(), KindError> {
        let name = kind.name().to_string();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(KindError::Invalid(name));
        }
        if name.starts_with(RESERVED_PREFIX) {
            return Err(KindError::Reserved(name));
        }
        if self.kinds.contains_key(&name) {
            return Err(KindError::Duplicate(name));
        }
        self.kinds.insert(name, Arc::new(kind));
        Ok(())
    }

    /// The registered names, in order (the scheduler refuses jobs naming others).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Builds the code for `key`: the scheduler for [`SCHEDULER_KEY`], otherwise
    /// the kind its spec names.
    pub fn build(
        &self,
        key: &DurableKey,
        spec: &[u8],
        state: &Snapshot,
    ) -> Result<Box<dyn DurableCode>, CodeError> {
        if key.as_str() == SCHEDULER_KEY {
            let app = SchedulerApp::restore(state)
                .map_err(|e| CodeError::State(CodecError::Malformed(e.to_string())))?;
            return Ok(Box::new(SchedulerCode(app)));
        }
        let spec = ActorSpec::decode(spec).map_err(CodeError::Spec)?;
        let kind = self
            .kinds
            .get(&spec.kind)
            .ok_or_else(|| CodeError::UnknownKind(spec.kind.clone()))?;
        kind.build(key, &spec, state)
    }
}

/// The scheduler as user code.
struct SchedulerCode(SchedulerApp);

impl DurableCode for SchedulerCode {
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodeError> {
        self.0
            .apply(inputs, snapshot)
            .map_err(|e| CodeError::Failed(e.to_string()))
    }

    fn describe(&self) -> serde_json::Value {
        let s = self.0.scheduler().state();
        serde_json::json!({ "jobs": s.jobs.len(), "actors": s.actors.len(), "tick": s.tick })
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.0.scheduler().check_invariants()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);
    impl DurableKind for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn build(
            &self,
            _: &DurableKey,
            _: &ActorSpec,
            _: &Snapshot,
        ) -> Result<Box<dyn DurableCode>, CodeError> {
            Err(CodeError::Config("test kind".into()))
        }
    }

    #[test]
    fn registration_refuses_duplicates_reserved_and_invalid_names() {
        let mut kinds = Kinds::new();
        assert_eq!(kinds.register(Named("relay")), Ok(()));
        assert_eq!(
            kinds.register(Named("relay")),
            Err(KindError::Duplicate("relay".into()))
        );
        assert_eq!(
            kinds.register(Named("plexus.scheduler")),
            Err(KindError::Reserved("plexus.scheduler".into()))
        );
        assert_eq!(
            kinds.register(Named("a b")),
            Err(KindError::Invalid("a b".into()))
        );
        assert_eq!(kinds.names().collect::<Vec<_>>(), ["relay"]);
    }

    #[test]
    fn unknown_kinds_and_bad_specs_are_typed_errors() {
        let kinds = Kinds::new();
        let key = DurableKey::new("job/stage/0").unwrap();
        let spec = ActorSpec {
            job: "job".into(),
            stage: "stage".into(),
            index: 0,
            kind: "nope".into(),
            config: String::new(),
            outputs: Vec::new(),
        };
        let err = kinds
            .build(
                &key,
                &spec.encode().unwrap(),
                &Snapshot {
                    schema_version: 0,
                    bytes: Vec::new(),
                },
            )
            .err();
        assert_eq!(err, Some(CodeError::UnknownKind("nope".into())));
        let err = kinds
            .build(
                &key,
                b"\xff\xff",
                &Snapshot {
                    schema_version: 0,
                    bytes: Vec::new(),
                },
            )
            .err();
        assert!(matches!(err, Some(CodeError::Spec(_))), "{err:?}");
        // The scheduler needs no registration.
        let sched = DurableKey::new(SCHEDULER_KEY).unwrap();
        assert!(
            kinds
                .build(
                    &sched,
                    &[],
                    &Snapshot {
                        schema_version: 0,
                        bytes: Vec::new()
                    }
                )
                .is_ok()
        );
    }
}
