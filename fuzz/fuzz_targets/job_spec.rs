//! A job spec (TOML) as a submitter sends it: parsing never panics, what parses is
//! bounded (its actor list is built without blowing up), and the validated spec
//! round-trips through the codec (the form it is stored in).
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec;
use plexus_scheduler::JobSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(job) = JobSpec::from_toml(text) {
        let _ = job.pipeline();
        let _ = job.entry_stages();
        let _ = job.actors();
        let _ = job.check_kinds(&BTreeSet::new());
        let bytes = codec::encode_body(&job).expect("a job re-encodes");
        let again: JobSpec =
            codec::decode_body(&bytes, codec::FRAME_BYTES_MAX).expect("a job decodes");
        assert_eq!(again, job);
    }
});
