//! The replay source: plays a `libinput record` recording through the pipeline, at the
//! recorded pace (scaled by `speed`) or as fast as the pipeline takes it.
//!
//! Replayed events keep their recorded timestamps (offsets from the start of the recording),
//! so the same recording always produces the same spool contents.

use super::libinput_yaml::Recording;
use super::{SourceEvent, SourceTx};
use imprint_common::RawInput;
use imprint_record::{DeviceInfo, Source};
use std::time::Duration;

/// How fast to replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the collector accepts events.
    Max,
    /// Recorded pace multiplied by this factor (1.0 = real time).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "speed must be `max` or a positive factor, not `{s}`"
            )),
        }
    }
}

const BUS_VIRTUAL: u16 = 0x06;

/// Sends the recording's devices and events into `tx`; returns how many events were sent.
pub async fn run(rec: Recording, speed: Speed, tx: SourceTx) -> u64 {
    for (i, d) in rec.devices.iter().enumerate() {
        let info = DeviceInfo {
            index: i as u32 + 1,
            name: d.name.clone(),
            bus: d.bus,
            vendor: d.vendor,
            product: d.product,
            version: d.version,
            phys: String::new(),
            is_virtual: d.bus == BUS_VIRTUAL,
            node: d.node.clone(),
            removed: false,
            mono_ns: 0,
            source: Source::Replay,
        };
        if tx.send(SourceEvent::Device(info)).await.is_err() {
            return 0;
        }
    }
    let start = tokio::time::Instant::now();
    let mut sent = 0;
    for e in &rec.events {
        if let Speed::Factor(f) = speed {
            let at = Duration::from_secs_f64(e.time_us as f64 / 1e6 / f);
            tokio::time::sleep_until(start + at).await;
        }
        let raw = RawInput {
            mono_ns: e.time_us * 1000,
            device: e.device as u32 + 1,
            kind: e.kind,
            code: e.code,
            value: e.value,
            _pad: 0,
        };
        if tx.send(SourceEvent::Input(raw)).await.is_err() {
            break;
        }
        sent += 1;
    }
    sent
}
