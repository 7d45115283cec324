//! A durable protocol message from a peer: decoding never panics, and whatever
//! decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_durable::wire::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode(data) {
        let _ = msg.key();
        let bytes = encode(&msg).expect("a decoded message re-encodes");
        let again = decode(&bytes).expect("a re-encoded message decodes");
        assert_eq!(again, msg);
    }
});
