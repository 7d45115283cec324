//! A pipeline spec (TOML or JSON) from a user: parsing never panics; a valid spec has
//! a topological order, and its JSON form parses back to the same spec (numbers in
//! `config` to within 1e-12 relative: serde_json parses floats to within an ulp).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::pipeline::spec::PipelineSpec;
use serde_json::Value;

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() && !(x == 0.0 && y == 0.0) => {
                x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

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
        assert_eq!(again.name, spec.name);
        assert_eq!(again.stages.len(), spec.stages.len());
        for (a, b) in again.stages.iter().zip(&spec.stages) {
            assert_eq!(
                (&a.name, &a.kind, &a.to, a.capacity),
                (&b.name, &b.kind, &b.to, b.capacity)
            );
            // serde_json parses float text to within an ulp, not exactly (even its own
            // output: 9.999999999e63 came back 9.999999999000001e63), so numbers in
            // `config` are compared with a relative tolerance; all else is exact.
            assert!(
                same_json(&a.config, &b.config),
                "{:?} != {:?}",
                a.config,
                b.config
            );
        }
    }
});
