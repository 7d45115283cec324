//! The scheduler's answer as a node reads it from the scheduler's host (a peer):
//! decoding never panics; whatever decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec;
use plexus_scheduler::app::decode_response;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = decode_response(data) {
        let bytes = codec::encode_body(&response).expect("a response re-encodes");
        assert_eq!(
            decode_response(&bytes).expect("re-encoded decodes"),
            response
        );
    }
});
