//! Manifests and content ids from the disk, a peer or a client: decoding never
//! panics, a decoded manifest is whole (its chunk count matches its size) and
//! round-trips to the same bytes, so to the same file id; a content id's text
//! parses without panicking and prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_storage::{ChunkId, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = text.parse::<ChunkId>()
    {
        assert_eq!(id.to_string().parse::<ChunkId>().expect("reparses"), id);
    }
    let Ok(m) = Manifest::decode(data) else {
        return;
    };
    assert_eq!(
        Manifest::chunks_for(m.size, m.chunk_bytes),
        m.chunks.len() as u64
    );
    let bytes = m.encode().expect("a manifest re-encodes");
    assert_eq!(bytes, data, "a manifest has one encoding");
    assert_eq!(m.id().expect("an id"), ChunkId::of(data));
    for i in 0..m.chunks.len() {
        assert!(m.plain_len(i) > 0);
    }
});
