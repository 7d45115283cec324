//! The scheduler's state as restored from a replica (the disk, or a record a peer
//! hands off): restoring never panics, a restored state snapshots and restores to
//! itself, and the restored scheduler then runs a tick and a status request without
//! panicking (a state that decodes is not thereby consistent).
//! Input: 4 bytes of schema version (little-endian), then the snapshot bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::migratable::{Migratable, Snapshot};
use plexus_scheduler::app::SchedulerApp;

fuzz_target!(|data: &[u8]| {
    let Some((version, bytes)) = data.split_first_chunk::<4>() else {
        return;
    };
    let snapshot = Snapshot {
        schema_version: u32::from_le_bytes(*version),
        bytes: bytes.to_vec(),
    };
    if let Ok(mut app) = SchedulerApp::restore(&snapshot) {
        let state = app.scheduler().state();
        let again = state.snapshot().expect("a restored state snapshots");
        let back = SchedulerApp::restore(&again).expect("a fresh snapshot restores");
        assert_eq!(back.scheduler().state(), state);
        app.apply(plexus_fuzz::scheduler_run_inputs(), true)
            .expect("a restored scheduler applies a tick and a status request");
    }
});
