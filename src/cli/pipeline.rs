//! `plexus pipeline run|check`.

use std::path::Path;
use std::time::Duration;

use plexus_actors::pipeline::spec::PipelineSpec;
use plexus_actors::pipeline::{PipelineError, PipelineReport};
use plexus_actors::runtime::SpawnError;

use super::CliError;
use crate::Node;

/// Reads and parses a spec file; every failure is an input error naming the file.
pub(crate) fn load(path: &Path) -> Result<PipelineSpec, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Input(format!("cannot read pipeline spec {}: {e}", path.display()))
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if is_json {
        PipelineSpec::from_json(&text)
    } else {
        PipelineSpec::parse(&text)
    };
    parsed.map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

pub(crate) fn check(path: &Path) -> Result<(), CliError> {
    let spec = load(path)?;
    let node = Node::builder().build();
    node.pipeline(spec.clone())
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    println!(
        "{}: pipeline `{}` is valid ({} stages)",
        path.display(),
        spec.name,
        spec.stages.len()
    );
    Ok(())
}

pub(crate) async fn run(
    path: &Path,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), CliError> {
    let spec = load(path)?;
    let node = Node::builder().build();
    let kinds: Vec<(String, String)> = spec
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.kind.clone()))
        .collect();
    let pipeline = node
        .pipeline(spec)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let result = match timeout {
        Some(t) => pipeline.run_timeout(node.system(), t).await,
        None => pipeline.run(node.system()).await,
    };
    node.shutdown().await;
    let report = result.map_err(|e| match e {
        // The spec's fault: a kind refused its config, or the spec itself is invalid.
        PipelineError::Spec(_)
        | PipelineError::Spawn {
            source: SpawnError::InvalidConfig { .. } | SpawnError::UnknownKind { .. },
            ..
        } => CliError::Input(format!("{}: {e}", path.display())),
        other => CliError::Failed(other.to_string()),
    })?;
    if json {
        let value = serde_json::json!({
            "name": report.name,
            "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
            "stages": report.stages,
            "results": report.results.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "results_dropped": report.results_dropped,
        });
        println!("{value}");
    } else {
        print_report(&report, &kinds);
    }
    Ok(())
}

fn print_report(report: &PipelineReport, kinds: &[(String, String)]) {
    println!(
        "pipeline `{}`: {} stages, finished in {:.1} ms",
        report.name,
        report.stages.len(),
        report.elapsed.as_secs_f64() * 1e3
    );
    println!(
        "  {:<18} {:<18} {:>10} {:>10}",
        "stage", "kind", "in", "out"
    );
    for stage in &report.stages {
        let kind = kinds
            .iter()
            .find(|(n, _)| n == &stage.stage)
            .map(|(_, k)| k.as_str())
            .unwrap_or("");
        println!(
            "  {:<18} {:<18} {:>10} {:>10}",
            stage.stage, kind, stage.items_in, stage.items_out
        );
    }
    println!("results:");
    for item in &report.results {
        println!("  {}", item.to_json());
    }
    if report.results_dropped > 0 {
        println!("  ... and {} more not kept", report.results_dropped);
    }
}
