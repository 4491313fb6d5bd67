//! imprint: consented keyboard and pointer capture for Linux fleets.
//!
//! The modules follow the pipeline in DESIGN.md: [`source`] → [`collector`] → [`ring`] →
//! [`agent`] ([`policy`] → [`spool`]), with [`ctl`] as the command line.
pub mod agent;
pub mod collector;
pub mod config;
pub mod control;
pub mod ctl;
pub mod focus;
pub mod fsutil;
pub mod metrics;
pub mod policy;
pub mod procs;
pub mod record;
pub mod ring;
pub mod source;
pub mod spool;
