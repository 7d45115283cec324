//! The actor spec a peer's `Activate` command carries: decoding never panics, its keys
//! are computed without panicking, and it round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_scheduler::ActorSpec;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = ActorSpec::decode(data) {
        let _ = spec.output_keys();
        let bytes = spec.encode().expect("a spec re-encodes");
        assert_eq!(
            ActorSpec::decode(&bytes).expect("a re-encoded spec decodes"),
            spec
        );
    }
});
