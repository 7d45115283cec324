//! The bytes of a mesh stream as a peer sends them, cut into reads of a fuzzed size:
//! the reassembler (`FrameReader`) never panics, yields the same frames however the
//! bytes are cut, accounts for every byte, and each frame goes through the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec::FrameReader;
use plexus_mesh::wire::{MESH_FRAME_BYTES_MAX, decode_frame};

/// Feeds `bytes` in pieces of `chunk`, copied in (`extend`) or read into the
/// reader's room as a transport does (`room`, `advance`); returns the frames and
/// how the reader ended.
fn reassemble(bytes: &[u8], chunk: usize, max: usize, read: bool) -> (Vec<Vec<u8>>, bool, usize) {
    let mut reader = FrameReader::new(max);
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk) {
        if read {
            let room = reader.room(chunk);
            assert!(room.len() >= piece.len(), "less room than asked for");
            room[..piece.len()].copy_from_slice(piece);
            reader.advance(piece.len());
        } else {
            reader.extend(piece);
        }
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "a frame over the reader's limit");
                    frames.push(frame.to_vec());
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(reader.next_frame().is_err(), "a failed reader recovered");
                    return (frames, true, reader.buffered());
                }
            }
        }
    }
    (frames, false, reader.buffered())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    // A small limit too, so the fuzzer reaches the oversized-prefix path cheaply.
    let max = if cut & 0x80 != 0 {
        64
    } else {
        MESH_FRAME_BYTES_MAX
    };
    let chunk = usize::from(cut & 0x3f) + 1;
    let (pieces, failed, left) = reassemble(stream, chunk, max, true);
    let (whole, whole_failed, whole_left) = reassemble(stream, stream.len().max(1), max, false);
    assert_eq!(pieces, whole, "the frames depend on how the stream was cut");
    assert_eq!(failed, whole_failed);
    if !failed {
        assert_eq!(left, whole_left);
        let used: usize = pieces.iter().map(|f| f.len() + 4).sum();
        assert_eq!(used + left, stream.len(), "bytes lost or invented");
    }
    for frame in pieces {
        let _ = decode_frame(&frame.into(), max);
    }
});
