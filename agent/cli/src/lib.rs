//! The `imprint` command line: status, pause/resume, policy check/explain, dump, verify, and
//! `run`, which links the collector, the agent and the session trackers in one process.
pub mod ctl;
