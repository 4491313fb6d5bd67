//! The shared memory-mapped ring between the privileged collector and the unprivileged agent.
//!
//! Two files in the run directory, so each process writes only memory it owns:
//! - `ring` (collector-owned, 0640, readable by the agent's group): a [`layout`] header and the
//!   frame area. Frames are `len u32 | crc32c u32 | seq u64 | payload | pad to 8`.
//! - `ring.cursor` (agent-owned): the committed read position and a "reader is asleep" flag.
//!
//! Single producer, single consumer. Positions are byte offsets that only grow, so there is
//! no full/empty ambiguity; `pos % capacity` is the place in the frame area. The writer never
//! blocks: a frame that does not fit is refused and the caller counts it. The reader treats
//! every byte as untrusted: bounds and CRC are checked before a payload is handed out.

pub mod layout;
pub mod notify;
pub mod reader;
pub mod writer;

pub use layout::{CollectorCounters, RingStats};
pub use reader::{ReadOutcome, RingReader};
pub use writer::{RingFull, RingStart, RingWriter};

use std::path::{Path, PathBuf};

/// File name of the frame ring inside the run directory.
pub const RING_FILE: &str = "ring";
/// File name of the reader's cursor inside the run directory.
pub const CURSOR_FILE: &str = "ring.cursor";

/// Path of the ring file in `run_dir`.
pub fn ring_path(run_dir: &Path) -> PathBuf {
    run_dir.join(RING_FILE)
}

/// Path of the cursor file in `run_dir`.
pub fn cursor_path(run_dir: &Path) -> PathBuf {
    run_dir.join(CURSOR_FILE)
}

/// Errors opening or validating a ring.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an imprint ring ({why})")]
    BadHeader { path: PathBuf, why: String },
    #[error("ring capacity {0} must be a power of two between 4 KiB and 1 GiB")]
    BadCapacity(u64),
}

#[cfg(test)]
mod tests;
