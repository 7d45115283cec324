//! A pipeline spec (TOML or JSON) from a user: parsing never panics; a valid spec has
//! a topological order, and its JSON form parses back to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::pipeline::spec::PipelineSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = PipelineSpec::parse(text) {
        assert!(
            spec.topological_order().is_ok(),
            "a valid spec is not a DAG"
        );
        let _ = spec.input_counts();
        let json = serde_json::to_string(&spec).expect("a spec serializes");
        let again = PipelineSpec::from_json(&json).expect("a valid spec's JSON parses");
        // Floats in `config` may move by one ulp through JSON text; all else is exact.
        assert_eq!(again.name, spec.name);
        assert_eq!(again.stages.len(), spec.stages.len());
        for (a, b) in again.stages.iter().zip(&spec.stages) {
            assert_eq!(
                (&a.name, &a.kind, &a.to, a.capacity),
                (&b.name, &b.kind, &b.to, b.capacity)
            );
        }
        let json2 = serde_json::to_string(&again).expect("a spec serializes");
        let third = PipelineSpec::from_json(&json2).expect("a valid spec's JSON parses");
        assert_eq!(third, again);
    }
});
