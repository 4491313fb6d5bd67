//! imprint: consented keyboard and pointer capture for Linux fleets.
//!
//! The modules follow the pipeline in DESIGN.md: [`source`] → [`collector`] → [`ring`] →
//! [`agent`] ([`policy`] → [`spool`]), with [`ctl`] as the command line.
pub mod fsutil;
pub mod record;
pub mod ring;
pub mod spool;
