//! Actor kinds: factories registered by name, so a spec, a remote node or the
//! scheduler can say "start a `tokenize` here" without sharing Rust types.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::actor::Actor;
use super::errors::SpawnError;
use super::system::{ActorSystem, SpawnOptions};
use crate::ActorId;
use crate::migratable::Snapshot;
use crate::pipeline::StageWiring;

/// What a kind's factory gets besides the system and spawn options. Serializable, so
/// a spawn can be requested from another node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KindArgs {
    /// Kind-specific configuration. Carried as JSON text on the wire.
    #[serde(with = "json_text")]
    pub config: serde_json::Value,
    /// For pipeline stages: where the stage sends and who reports on it.
    pub wiring: Option<StageWiring>,
    /// State to restore instead of starting fresh (restart or migration).
    pub restore: Option<Snapshot>,
}

mod json_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// A kind's factory: spawns one actor and returns its id.
pub type KindFactory = Arc<
    dyn Fn(ActorSystem, KindArgs, SpawnOptions) -> BoxFuture<'static, Result<ActorId, SpawnError>>
        + Send
        + Sync,
>;

/// The kinds registered on one node.
#[derive(Default)]
pub struct Kinds {
    map: RwLock<BTreeMap<String, KindFactory>>,
}

impl Kinds {
    /// Registers a factory under `name`, replacing any earlier one.
    pub fn register<F, Fut>(&self, name: &str, factory: F)
    where
        F: Fn(ActorSystem, KindArgs, SpawnOptions) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorId, SpawnError>> + Send + 'static,
    {
        let factory: KindFactory =
            Arc::new(move |system, args, opts| Box::pin(factory(system, args, opts)));
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), factory);
    }

    /// Registers an actor type: `make` turns the args into the actor and its spawn
    /// arguments, or says why the config is unacceptable.
    pub fn register_actor<A, F>(&self, name: &str, make: F)
    where
        A: Actor,
        F: Fn(&KindArgs) -> Result<(A, A::Args), String> + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let kind = name.to_string();
        self.register(
            name,
            move |system: ActorSystem, args: KindArgs, opts: SpawnOptions| {
                let made = make(&args);
                let kind = kind.clone();
                async move {
                    let (actor, actor_args) =
                        made.map_err(|reason| SpawnError::InvalidConfig { kind, reason })?;
                    Ok(system.spawn_with(actor, actor_args, opts).await?.id())
                }
            },
        );
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<KindFactory> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}
