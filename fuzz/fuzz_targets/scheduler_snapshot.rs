//! The scheduler's state as restored from a replica (the disk, or a peer's handoff):
//! restoring never panics, and a restored state snapshots and restores to itself.
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
    if let Ok(app) = SchedulerApp::restore(&snapshot) {
        let state = app.scheduler().state();
        let again = state.snapshot().expect("a restored state snapshots");
        let back = SchedulerApp::restore(&again).expect("a fresh snapshot restores");
        assert_eq!(back.scheduler().state(), state);
    }
});
