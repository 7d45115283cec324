//! A durable actor's committed state (a record body from a replica, or one carried in
//! a handoff by a peer): decoding never panics; whatever decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec;
use plexus_durable::activation::DurableState;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = DurableState::decode(data) {
        let bytes = codec::encode_body(&state).expect("a state re-encodes");
        assert_eq!(
            DurableState::decode(&bytes).expect("a re-encoded state decodes"),
            state
        );
    }
});
