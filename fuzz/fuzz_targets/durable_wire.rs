//! A durable protocol message from a peer: decoding never panics, whatever
//! decodes round-trips (shared or copied, the same message), and a patch in it applies to a base or fails cleanly,
//! never building more than the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_durable::wire::{DurableMsg, ReplicaOp, decode, decode_shared, encode};

fuzz_target!(|data: &[u8]| {
    // The service decodes from the frame's shared bytes: the same answer.
    let shared = decode_shared(&data.to_vec().into());
    assert_eq!(shared.is_ok(), decode(data).is_ok());
    if let Ok(msg) = shared {
        let _ = msg.key();
        let bytes = encode(&msg).expect("a decoded message re-encodes");
        let again = decode(&bytes).expect("a re-encoded message decodes");
        assert_eq!(again, msg);
        if let DurableMsg::Replica {
            op: ReplicaOp::Patch { patch },
            ..
        } = &msg
        {
            let base: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
            if let Ok(body) = patch.patch.apply(&base, 1 << 16) {
                assert!(body.len() <= 1 << 16);
            }
            let _ = patch.rebuild(&base, 1 << 16);
        }
    }
});
