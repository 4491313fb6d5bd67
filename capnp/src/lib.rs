//! The one definition of an imprint record, on the ring and on disk (see `imprint.capnp`).
#![allow(clippy::all, missing_docs, unused_qualifications)]

/// Code generated from `imprint.capnp`.
pub mod imprint_capnp {
    include!(concat!(env!("OUT_DIR"), "/imprint_capnp.rs"));
}

pub use imprint_capnp::*;

/// The spool format version written into every batch.
pub const FORMAT_VERSION: u16 = 1;
