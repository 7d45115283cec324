//! Durable actors in the daemon: the rocksdb replica store, the stage kinds durable
//! actors run, and the service that drives the `plexus-durable` and
//! `plexus-scheduler` cores on a real node.

pub mod apps;
pub mod service;
pub mod store;

pub use service::{AskError, DurableService, Local, ServiceMsg, ServiceStatus, ask_scheduler};
