//! Proof of AI work in the daemon: the work service (the driver of the
//! `plexus-poai` auditor: receipts signed for this node's forward passes, sampled
//! re-execution of other nodes' work, evidence, per-epoch tallies) and its store.

mod service;
pub mod store;

pub use service::{
    BACKEND_TAG, FETCH_TIMEOUT, FETCHES_MAX, MESSAGE_TYPE, WORK_LOCAL_ID, WorkMsg, WorkService,
    WorkSettings, WorkStatus, WorkWire, recompute,
};
pub use store::{WorkStore, WorkStoreError, work_dir};

/// Forward passes waiting for the work service; past it a pass gets no receipt.
pub const WORK_QUEUE: usize = 4_096;
