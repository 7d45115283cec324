//! The workloads a scenario runs, one module each: `tells` (numbered messages
//! between workload actors), `asks` (requests each answered exactly once),
//! `supervision` (children crashing under a supervisor)
//! and `durable` (a job of durable actors under the scheduler, with client
//! traffic and migrations).

pub(super) mod asks;
pub(super) mod durable;
mod supervision;
mod tells;
