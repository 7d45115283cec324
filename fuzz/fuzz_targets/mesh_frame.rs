//! A mesh frame as it arrives from a peer (after stream reassembly): decoding never
//! panics, and whatever decodes re-encodes to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec::Bytes;
use plexus_mesh::wire::{MESH_FRAME_BYTES_MAX, decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame(&Bytes::copy_from_slice(data), MESH_FRAME_BYTES_MAX) {
        let bytes = encode_frame(&frame).expect("a decoded frame re-encodes");
        let again =
            decode_frame(&bytes.into(), MESH_FRAME_BYTES_MAX).expect("a re-encoded frame decodes");
        assert_eq!(again, frame);
    }
});
