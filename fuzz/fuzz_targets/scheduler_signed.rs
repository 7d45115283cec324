//! A signed scheduler request as a client sends it to the API: decoding never panics,
//! verification of whatever decodes never panics, and it round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_scheduler::Signed;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = Signed::decode(data) {
        let _ = signed.verify();
        let bytes = signed.encode().expect("a request re-encodes");
        assert_eq!(
            Signed::decode(&bytes).expect("a re-encoded request decodes"),
            signed
        );
    }
});
