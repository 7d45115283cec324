//! A signed allowlist from gossip or the disk: decode-and-verify never panics, and
//! whatever it accepts round-trips. Random bytes never carry a valid signature, so the
//! structural decode (before the signature check) is fuzzed on its own too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec;
use plexus_mesh::allowlist::{ALLOWLIST_BYTES_MAX, Admission, SignedAllowlist};

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedAllowlist::decode(data) {
        let bytes = signed.encode().expect("an accepted allowlist re-encodes");
        let again = SignedAllowlist::decode(&bytes).expect("a re-encoded allowlist verifies");
        assert_eq!(again, signed);
        assert!(
            Admission::new(signed).is_ok(),
            "decode accepted what admission refuses"
        );
    }
    if let Ok(signed) = codec::decode_with_limit::<SignedAllowlist>(data, ALLOWLIST_BYTES_MAX) {
        let bytes = codec::encode(&signed).expect("a decoded allowlist re-encodes");
        let again: SignedAllowlist =
            codec::decode_with_limit(&bytes, ALLOWLIST_BYTES_MAX).expect("re-encoded decodes");
        assert_eq!(again, signed);
        let _ = signed.verify();
    }
});
