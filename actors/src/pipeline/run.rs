//! Running pipelines on actors.
//!
//! Each stage is an actor taking [`StageMsg`]. Items flow downstream with
//! backpressure: a stage awaits mailbox space in the next stage before it takes its
//! next message, so a fast source cannot flood a slow sink, and memory stays bounded
//! by the sum of mailbox capacities. A DAG has no cycles, so the waits cannot deadlock.
//!
//! End of stream: a source sends `End` to its outputs when it has produced
//! everything; any other stage sends `End` once it has received one from each input,
//! after flushing [`Stage::finish`]. Each stage then reports its counters to the
//! run's collector and stops. The run completes when the collector has every report
//! and every sink's `End`. If any stage fails, the run fails with its name and reason.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::spec::{PipelineSpec, SpecError, StageSpec};
use super::{StageReport, StageWiring};
use crate::ActorId;
use crate::datum::Datum;
use crate::runtime::{
    Actor, ActorError, ActorRef, ActorSystem, Context, Exit, KindArgs, Kinds, Message, SpawnError,
    SpawnOptions, Wire,
};

/// Most sink items a run keeps for its report; later ones are counted, not kept.
pub const RESULTS_MAX: usize = 10_000;

/// What a stage's code returns when it cannot go on.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What stages exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StageMsg {
    /// Sources: produce the next batch.
    Produce,
    /// One item.
    Item(Datum),
    /// One input has ended.
    End,
    /// To the collector: a stage ended with these counters.
    Report(StageReport),
}

impl Message for StageMsg {
    type Reply = ();
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

/// Whether a source has more to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Produce {
    /// Call `produce` again.
    More,
    /// The source is exhausted.
    Done,
}

/// Where a stage puts what it emits; the runtime forwards it downstream.
#[derive(Debug, Default)]
pub struct Outbox {
    items: Vec<Datum>,
}

impl Outbox {
    /// Emits one item to every output.
    pub fn emit(&mut self, item: impl Into<Datum>) {
        self.items.push(item.into());
    }
}

/// A pipeline stage's logic. Implement `process` for transforms and sinks, `produce`
/// for sources, `finish` to flush at end of stream.
pub trait Stage: Send + 'static {
    /// Sources: emit a batch and say whether more follows. Keep batches small (a few
    /// hundred items) so the stage stays responsive. The default produces nothing.
    fn produce(&mut self, out: &mut Outbox) -> Result<Produce, StageError> {
        let _ = out;
        Ok(Produce::Done)
    }

    /// Handles one item.
    fn process(&mut self, item: Datum, out: &mut Outbox) -> Result<(), StageError>;

    /// Called once every input has ended (sources: once exhausted).
    fn finish(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        let _ = out;
        Ok(())
    }
}

/// Registers a stage kind: `make` builds the stage from its config.
pub fn register_stage<F>(kinds: &Kinds, name: &str, make: F)
where
    F: Fn(&serde_json::Value) -> Result<Box<dyn Stage>, String> + Send + Sync + 'static,
{
    kinds.register_actor(name, move |args: &KindArgs| {
        let wiring = args
            .wiring
            .clone()
            .ok_or_else(|| "a stage kind needs pipeline wiring".to_string())?;
        let stage = make(&args.config)?;
        Ok((StageActor, (stage, wiring)))
    });
}

struct StageActor;

struct StageState {
    stage: Box<dyn Stage>,
    name: String,
    outputs: Vec<ActorRef<StageMsg>>,
    collector: ActorRef<StageMsg>,
    inputs: u32,
    ends: u32,
    items_in: u64,
    items_out: u64,
    out: Outbox,
}

impl StageState {
    async fn forward(&mut self) -> Result<(), ActorError> {
        let items = std::mem::take(&mut self.out.items);
        self.items_out += items.len() as u64;
        for item in items {
            if let Some((last, rest)) = self.outputs.split_last() {
                for output in rest {
                    output
                        .tell(StageMsg::Item(item.clone()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                last.tell(StageMsg::Item(item))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    async fn end(&mut self, ctx: &Context<StageMsg>) -> Result<(), ActorError> {
        self.stage.finish(&mut self.out)?;
        self.forward().await?;
        for output in &self.outputs {
            output
                .tell(StageMsg::End)
                .await
                .map_err(|e| e.to_string())?;
        }
        let report = StageReport {
            stage: self.name.clone(),
            items_in: self.items_in,
            items_out: self.items_out,
        };
        self.collector
            .tell(StageMsg::Report(report))
            .await
            .map_err(|e| e.to_string())?;
        ctx.stop();
        Ok(())
    }
}

impl Actor for StageActor {
    type Msg = StageMsg;
    type State = StageState;
    type Args = (Box<dyn Stage>, StageWiring);

    async fn started(
        &self,
        ctx: &Context<StageMsg>,
        (stage, wiring): Self::Args,
    ) -> Result<StageState, ActorError> {
        let system = ctx.system();
        let resolve = |id: ActorId| system.lookup::<StageMsg>(id).map_err(|e| e.to_string());
        let outputs = wiring
            .outputs
            .iter()
            .map(|id| resolve(*id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StageState {
            stage,
            name: wiring.stage,
            outputs,
            collector: resolve(wiring.collector)?,
            inputs: wiring.inputs,
            ends: 0,
            items_in: 0,
            items_out: 0,
            out: Outbox::default(),
        })
    }

    async fn handle(
        &self,
        ctx: &Context<StageMsg>,
        msg: StageMsg,
        st: &mut StageState,
    ) -> Result<(), ActorError> {
        match msg {
            StageMsg::Produce => {
                let more = st.stage.produce(&mut st.out)?;
                st.forward().await?;
                match more {
                    Produce::More => ctx
                        .myself()
                        .try_tell(StageMsg::Produce)
                        .map_err(|e| e.to_string())?,
                    Produce::Done => st.end(ctx).await?,
                }
            }
            StageMsg::Item(item) => {
                st.items_in += 1;
                st.stage.process(item, &mut st.out)?;
                st.forward().await?;
            }
            StageMsg::End => {
                st.ends += 1;
                if st.ends == st.inputs {
                    st.end(ctx).await?;
                }
            }
            StageMsg::Report(_) => {
                return Err("a stage got a report meant for the collector".into());
            }
        }
        Ok(())
    }
}

/// What a pipeline run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// The pipeline's name.
    pub name: String,
    /// Items the sinks emitted, in arrival order (at most [`RESULTS_MAX`]).
    pub results: Vec<Datum>,
    /// Sink items beyond [`RESULTS_MAX`], counted but not kept.
    pub results_dropped: u64,
    /// Each stage's counters, in spec order.
    pub stages: Vec<StageReport>,
    /// Wall time from the first `Produce` to the last report.
    pub elapsed: Duration,
}

/// Why a pipeline did not run to completion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The spec is invalid (author's fault).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A stage could not be spawned.
    #[error("stage `{stage}` could not start: {source}")]
    Spawn {
        /// The stage.
        stage: String,
        /// Why.
        source: SpawnError,
    },
    /// A stage failed while running.
    #[error("stage `{stage}` failed: {reason}")]
    StageFailed {
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The run did not finish within the timeout given to `run_timeout`.
    #[error("the pipeline did not finish within {0:?}")]
    Timeout(Duration),
}

enum StageSource {
    Kind,
    Custom(Box<dyn Stage>),
}

/// Builds a pipeline in code.
pub struct PipelineBuilder {
    spec: PipelineSpec,
    custom: BTreeMap<String, Box<dyn Stage>>,
}

impl PipelineBuilder {
    /// Adds a stage of a registered kind.
    pub fn kind(mut self, name: &str, kind: &str, config: serde_json::Value, to: &[&str]) -> Self {
        self.spec.stages.push(StageSpec {
            name: name.to_string(),
            kind: kind.to_string(),
            to: to.iter().map(|s| s.to_string()).collect(),
            config,
            capacity: None,
        });
        self
    }

    /// Adds a stage from an instance (no kind registration needed).
    pub fn custom(mut self, name: &str, stage: impl Stage, to: &[&str]) -> Self {
        self.spec.stages.push(StageSpec {
            name: name.to_string(),
            kind: format!("custom:{name}"),
            to: to.iter().map(|s| s.to_string()).collect(),
            config: serde_json::Value::Null,
            capacity: None,
        });
        self.custom.insert(name.to_string(), Box::new(stage));
        self
    }

    /// Validates the DAG and the kinds against `kinds`.
    pub fn build(self, kinds: &Kinds) -> Result<Pipeline, PipelineError> {
        self.spec.validate()?;
        let names = kinds.names();
        for stage in &self.spec.stages {
            if !self.custom.contains_key(&stage.name) && !kinds.contains(&stage.kind) {
                return Err(SpecError::UnknownKind {
                    stage: stage.name.clone(),
                    kind: stage.kind.clone(),
                    known: names.join(", "),
                }
                .into());
            }
        }
        let mut custom = self.custom;
        let sources = self
            .spec
            .stages
            .iter()
            .map(|s| {
                custom
                    .remove(&s.name)
                    .map(StageSource::Custom)
                    .unwrap_or(StageSource::Kind)
            })
            .collect();
        Ok(Pipeline {
            spec: self.spec,
            sources,
        })
    }
}

/// A validated pipeline, ready to run.
pub struct Pipeline {
    spec: PipelineSpec,
    sources: Vec<StageSource>,
}

impl Pipeline {
    /// Starts a builder.
    pub fn builder(name: &str) -> PipelineBuilder {
        PipelineBuilder {
            spec: PipelineSpec {
                name: name.to_string(),
                stages: Vec::new(),
            },
            custom: BTreeMap::new(),
        }
    }

    /// A pipeline from a parsed spec; every kind must be registered in `kinds`.
    pub fn from_spec(spec: PipelineSpec, kinds: &Kinds) -> Result<Pipeline, PipelineError> {
        PipelineBuilder {
            spec,
            custom: BTreeMap::new(),
        }
        .build(kinds)
    }

    /// The spec it runs.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// Runs to completion with no time limit.
    pub async fn run(self, system: &ActorSystem) -> Result<PipelineReport, PipelineError> {
        self.run_inner(system).await
    }

    /// Runs to completion or fails after `timeout`, stopping every stage.
    pub async fn run_timeout(
        self,
        system: &ActorSystem,
        timeout: Duration,
    ) -> Result<PipelineReport, PipelineError> {
        // Dropping the run on timeout drops its guard, which stops every stage.
        match tokio::time::timeout(timeout, self.run_inner(system)).await {
            Ok(result) => result,
            Err(_) => Err(PipelineError::Timeout(timeout)),
        }
    }

    async fn run_inner(self, system: &ActorSystem) -> Result<PipelineReport, PipelineError> {
        let Pipeline { spec, sources } = self;
        let order = spec.topological_order()?;
        let inputs = spec.input_counts();
        let ids: Vec<ActorId> = spec.stages.iter().map(|_| system.mint_id()).collect();
        let index: BTreeMap<&str, usize> = spec
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let sinks = spec.stages.iter().filter(|s| s.to.is_empty()).count();

        let (done_tx, done_rx) = oneshot::channel();
        let collector = system
            .spawn_with(
                Collector,
                CollectorArgs {
                    reports_expected: spec.stages.len(),
                    sink_ends_expected: sinks,
                    done: Some(done_tx),
                },
                SpawnOptions {
                    kind: Some("pipeline-collector".into()),
                    ..SpawnOptions::default()
                },
            )
            .await
            .map_err(|source| PipelineError::Spawn {
                stage: "<collector>".into(),
                source,
            })?;

        let mut guard = RunGuard {
            system: system.clone(),
            ids: vec![collector.id()],
        };
        let mut refs: Vec<Option<ActorRef<StageMsg>>> =
            (0..spec.stages.len()).map(|_| None).collect();
        let mut sources: Vec<Option<StageSource>> = sources.into_iter().map(Some).collect();
        // Downstream first, so every stage's outputs exist when it starts.
        for &i in order.iter().rev() {
            let stage = &spec.stages[i];
            let wiring = StageWiring {
                pipeline: spec.name.clone(),
                stage: stage.name.clone(),
                outputs: if stage.to.is_empty() {
                    vec![collector.id()]
                } else {
                    stage
                        .to
                        .iter()
                        .filter_map(|t| index.get(t.as_str()).map(|&j| ids[j]))
                        .collect()
                },
                inputs: inputs[i] as u32,
                collector: collector.id(),
            };
            let opts = SpawnOptions {
                id: Some(ids[i]),
                capacity: stage.capacity,
                ..SpawnOptions::default()
            };
            let spawned = match sources[i].take() {
                Some(StageSource::Custom(instance)) => system
                    .spawn_with(
                        StageActor,
                        (instance, wiring),
                        SpawnOptions {
                            kind: Some(stage.kind.clone()),
                            ..opts
                        },
                    )
                    .await
                    .map(|r| r.id()),
                _ => {
                    system
                        .spawn_kind(
                            &stage.kind,
                            KindArgs {
                                config: stage.config.clone(),
                                wiring: Some(wiring),
                                restore: None,
                            },
                            opts,
                        )
                        .await
                }
            };
            let id = spawned.map_err(|source| PipelineError::Spawn {
                stage: stage.name.clone(),
                source,
            })?;
            guard.ids.push(id);
            refs[i] = Some(
                system
                    .lookup::<StageMsg>(id)
                    .map_err(|e| PipelineError::Spawn {
                        stage: stage.name.clone(),
                        source: SpawnError::StartFailed(e.to_string()),
                    })?,
            );
        }

        let started = std::time::Instant::now();
        let mut failures = FuturesUnordered::new();
        for (i, r) in refs.iter().enumerate() {
            if let Some(r) = r.clone() {
                let name = spec.stages[i].name.clone();
                failures.push(async move { (name, r.wait_exit().await) });
            }
        }
        for (i, r) in refs.iter().enumerate() {
            if inputs[i] == 0
                && let Some(r) = r
            {
                r.tell(StageMsg::Produce)
                    .await
                    .map_err(|e| PipelineError::StageFailed {
                        stage: spec.stages[i].name.clone(),
                        reason: e.to_string(),
                    })?;
            }
        }

        let watch_failures = async {
            while let Some((stage, exit)) = failures.next().await {
                if let Exit::Failed(reason) = exit {
                    return PipelineError::StageFailed { stage, reason };
                }
            }
            std::future::pending().await
        };
        let outcome = tokio::select! {
            done = done_rx => done.map_err(|_| PipelineError::StageFailed { stage: "<collector>".into(), reason: "collector stopped".into() }),
            err = watch_failures => Err(err),
        };
        let collected = outcome?;
        guard.ids.clear();
        let stages: Vec<StageReport> = spec
            .stages
            .iter()
            .map(|s| {
                collected
                    .reports
                    .get(&s.name)
                    .cloned()
                    .unwrap_or_else(|| StageReport {
                        stage: s.name.clone(),
                        ..StageReport::default()
                    })
            })
            .collect();
        Ok(PipelineReport {
            name: spec.name,
            results: collected.results,
            results_dropped: collected.dropped,
            stages,
            elapsed: started.elapsed(),
        })
    }
}

/// Stops a failed or abandoned run's actors.
struct RunGuard {
    system: ActorSystem,
    ids: Vec<ActorId>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            if let Ok(r) = self.system.lookup::<StageMsg>(id) {
                r.stop();
            }
        }
    }
}

struct Collector;

struct CollectorArgs {
    reports_expected: usize,
    sink_ends_expected: usize,
    done: Option<oneshot::Sender<Collected>>,
}

struct Collected {
    results: Vec<Datum>,
    dropped: u64,
    reports: BTreeMap<String, StageReport>,
}

struct CollectorState {
    args: CollectorArgs,
    sink_ends: usize,
    collected: Collected,
}

impl Actor for Collector {
    type Msg = StageMsg;
    type State = CollectorState;
    type Args = CollectorArgs;

    async fn started(
        &self,
        _ctx: &Context<StageMsg>,
        args: CollectorArgs,
    ) -> Result<CollectorState, ActorError> {
        Ok(CollectorState {
            args,
            sink_ends: 0,
            collected: Collected {
                results: Vec::new(),
                dropped: 0,
                reports: BTreeMap::new(),
            },
        })
    }

    async fn handle(
        &self,
        ctx: &Context<StageMsg>,
        msg: StageMsg,
        st: &mut CollectorState,
    ) -> Result<(), ActorError> {
        match msg {
            StageMsg::Item(item) => {
                if st.collected.results.len() < RESULTS_MAX {
                    st.collected.results.push(item);
                } else {
                    st.collected.dropped += 1;
                }
            }
            StageMsg::End => st.sink_ends += 1,
            StageMsg::Report(report) => {
                st.collected.reports.insert(report.stage.clone(), report);
            }
            StageMsg::Produce => {}
        }
        if st.sink_ends >= st.args.sink_ends_expected
            && st.collected.reports.len() >= st.args.reports_expected
        {
            if let Some(done) = st.args.done.take() {
                let collected = std::mem::replace(
                    &mut st.collected,
                    Collected {
                        results: Vec::new(),
                        dropped: 0,
                        reports: BTreeMap::new(),
                    },
                );
                let _ = done.send(collected);
            }
            ctx.stop();
        }
        Ok(())
    }
}
