//! Embedding Plexus: build a node, run the declarative example pipeline, then build
//! one in code with a custom stage and run that too.
//!
//! `cargo run --example pipeline`

use std::error::Error;

use plexus::Node;
use plexus::actors::Datum;
use plexus::actors::pipeline::spec::PipelineSpec;
use plexus::actors::pipeline::{Outbox, Pipeline, Stage, StageError};

/// A custom stage: keeps only words that read the same backwards.
struct Palindromes;

impl Stage for Palindromes {
    fn process(&mut self, item: Datum, out: &mut Outbox) -> Result<(), StageError> {
        let word = item.as_text().ok_or("expected text")?;
        if word.len() > 2 && word.chars().eq(word.chars().rev()) {
            out.emit(word.to_string());
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let node = Node::builder().build();

    // 1. From the spec file.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pipeline.toml");
    let spec = PipelineSpec::from_toml(&std::fs::read_to_string(path)?)?;
    let report = node.run_pipeline(spec).await?;
    println!("{}: {:?}", report.name, report.stages);
    for result in &report.results {
        println!("  {}", result.to_json());
    }

    // 2. In code, mixing registered kinds and a custom stage.
    let text = "anna saw a racecar at noon by the level kayak";
    let pipeline = Pipeline::builder("palindromes")
        .kind(
            "text",
            "text-source",
            serde_json::json!({ "lines": [text], "repeat": 3 }),
            &["words"],
        )
        .kind("words", "tokenize", serde_json::json!({}), &["keep"])
        .custom("keep", Palindromes, &["count"])
        .kind("count", "word-count", serde_json::json!({ "top": 5 }), &[])
        .build(node.kinds())?;
    let report = pipeline.run(node.system()).await?;
    println!("{}: {}", report.name, report.results[0].to_json());

    node.shutdown().await;
    Ok(())
}
