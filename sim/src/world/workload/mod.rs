//! The workloads a scenario runs, one module each: `tells` (numbered messages
//! between workload actors), `supervision` (children crashing under a supervisor)
//! and `durable` (a job of durable actors under the scheduler, with client
//! traffic and migrations).

pub(super) mod durable;
mod supervision;
mod tells;
