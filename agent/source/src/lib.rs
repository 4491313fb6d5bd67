//! Capture sources. Each produces the same [`SourceEvent`]s into a channel the collector
//! drains: `ebpf` (fentry on the kernel input core, the primary source), `evdev` (passive reads
//! of /dev/input, the fallback), `replay` (libinput recordings).

pub mod ebpf;
pub mod evdev;
#[cfg(feature = "replay")]
pub mod libinput_yaml;
#[cfg(feature = "replay")]
pub mod replay;

use imprint_common::RawInput;
use imprint_record::{DeviceInfo, FocusInfo, Gap, Source};
use tokio::sync::mpsc;

/// What a source reports to the collector.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// A device appeared (or, with `removed`, went away).
    Device(DeviceInfo),
    /// One input event from a device announced before.
    Input(RawInput),
    /// Events the source knows it lost.
    Gap(Gap),
    /// The focused application changed (from a focus tracker); `seq` is assigned by the
    /// collector, so trackers may leave it 0.
    Focus(Box<FocusInfo>),
}

/// The channel sources write into.
pub type SourceTx = mpsc::Sender<SourceEvent>;

/// How many source events may wait for the collector before a source waits.
pub const CHANNEL_DEPTH: usize = 4096;

/// Errors that stop a source from starting.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(feature = "replay")]
    #[error(transparent)]
    Recording(#[from] libinput_yaml::RecordingError),
}

pub use imprint_record::monotonic_now_ns;

/// Which source is feeding the collector, for counters and status.
pub fn source_code(s: Source) -> u32 {
    match s {
        Source::Unknown => 0,
        Source::Evdev => 1,
        Source::Ebpf => 2,
        Source::Replay => 3,
    }
}
