//! What a replica reads back from its store (`src/hosting/store.rs`): a slot and a
//! raised promise (a ballot, decoded with a 1 KiB limit). A corrupt disk gives a typed
//! error, never a panic; whatever decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec;
use plexus_durable::Ballot;
use plexus_durable::replica::{decode_slot, encode_slot};

fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = decode_slot(data) {
        let bytes = encode_slot(&slot).expect("a slot re-encodes");
        assert_eq!(
            decode_slot(&bytes).expect("a re-encoded slot decodes"),
            slot
        );
    }
    if let Ok(ballot) = codec::decode_with_limit::<Ballot>(data, 1024) {
        let bytes = codec::encode(&ballot).expect("a ballot re-encodes");
        let again: Ballot = codec::decode_with_limit(&bytes, 1024).expect("re-encoded decodes");
        assert_eq!(again, ballot);
    }
});
