//! Durable actors in the daemon: the rocksdb replica store, the standard stage
//! kinds, and the service that drives the `plexus-host` core on a real node.

pub mod infer;
pub mod kinds;
pub mod service;
pub mod store;

pub use service::{AskError, DurableService, Local, ServiceMsg, ServiceStatus, ask_scheduler};
