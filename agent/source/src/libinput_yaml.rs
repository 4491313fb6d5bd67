//! Parser for recordings made by `libinput record` (file format version 1, as written by
//! libinput's `tools/libinput-record.c`): the devices' identities and their evdev events.
//! Everything else in the file (udev properties, quirks, libinput events) is ignored.

use serde::Deserialize;

/// The recording format this parser understands.
pub const SUPPORTED_VERSION: u32 = 1;

/// A recording that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a libinput recording: {0}")]
    Yaml(String),
    #[error("recording format version {0} is not supported (expected {SUPPORTED_VERSION})")]
    Version(u32),
    #[error("device {device} ({name}), event {index}: {why}")]
    BadEvent {
        device: usize,
        name: String,
        index: usize,
        why: String,
    },
    #[error("device {device}: `id` must be [bustype, vendor, product, version]")]
    BadId { device: usize },
}

/// One recorded device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedDevice {
    pub node: String,
    pub name: String,
    pub bus: u16,
    pub vendor: u16,
    pub product: u16,
    pub version: u16,
}

/// One recorded event; `time_us` is the offset from the start of the recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Index into [`Recording::devices`].
    pub device: usize,
    pub time_us: u64,
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// A parsed recording: devices, and all their events merged in time order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recording {
    pub libinput_version: String,
    pub devices: Vec<RecordedDevice>,
    pub events: Vec<RecordedEvent>,
}

#[derive(Deserialize)]
struct FileYaml {
    version: u32,
    #[serde(default)]
    libinput: Option<LibinputYaml>,
    #[serde(default)]
    devices: Vec<DeviceYaml>,
}

#[derive(Deserialize)]
struct LibinputYaml {
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct DeviceYaml {
    #[serde(default)]
    node: Option<String>,
    evdev: EvdevYaml,
    #[serde(default)]
    events: Option<Vec<FrameYaml>>,
}

#[derive(Deserialize)]
struct EvdevYaml {
    #[serde(default)]
    name: String,
    id: Vec<i64>,
}

#[derive(Deserialize)]
struct FrameYaml {
    #[serde(default)]
    evdev: Option<Vec<Vec<i64>>>,
}

/// Parses a recording's text.
pub fn parse(text: &str) -> Result<Recording, RecordingError> {
    let file: FileYaml =
        serde_norway::from_str(text).map_err(|e| RecordingError::Yaml(e.to_string()))?;
    if file.version != SUPPORTED_VERSION {
        return Err(RecordingError::Version(file.version));
    }
    let mut rec = Recording {
        libinput_version: file.libinput.and_then(|l| l.version).unwrap_or_default(),
        ..Default::default()
    };
    for (d, dev) in file.devices.into_iter().enumerate() {
        let id: Vec<u16> = dev
            .evdev
            .id
            .iter()
            .filter_map(|&v| u16::try_from(v).ok())
            .collect();
        let [bus, vendor, product, version] = id[..] else {
            return Err(RecordingError::BadId { device: d });
        };
        let name = dev.evdev.name;
        let mut index = 0;
        for frame in dev.events.unwrap_or_default() {
            for ev in frame.evdev.unwrap_or_default() {
                let bad = |why: &str| RecordingError::BadEvent {
                    device: d,
                    name: name.clone(),
                    index,
                    why: why.into(),
                };
                let [sec, usec, kind, code, value] = ev[..] else {
                    return Err(bad("an event must be [sec, usec, type, code, value]"));
                };
                if sec < 0 || !(0..1_000_000).contains(&usec) {
                    return Err(bad("timestamp out of range"));
                }
                rec.events.push(RecordedEvent {
                    device: d,
                    time_us: sec as u64 * 1_000_000 + usec as u64,
                    kind: u16::try_from(kind).map_err(|_| bad("type out of range"))?,
                    code: u16::try_from(code).map_err(|_| bad("code out of range"))?,
                    value: i32::try_from(value).map_err(|_| bad("value out of range"))?,
                });
                index += 1;
            }
        }
        rec.devices.push(RecordedDevice {
            node: dev.node.unwrap_or_default(),
            name,
            bus,
            vendor,
            product,
            version,
        });
    }
    // All devices share one time base; a stable sort keeps each device's own order.
    rec.events.sort_by_key(|e| e.time_us);
    Ok(rec)
}

/// Reads and parses a recording file.
pub fn load(path: &std::path::Path) -> Result<Recording, RecordingError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecordingError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DEVICES: &str = r#"
version: 1
ndevices: 2
libinput:
  version: "1.22.1"
  git: "unknown"
devices:
- node: /dev/input/event1
  evdev:
    # Name: kbd
    name: "kbd"
    id: [6, 1, 2, 3]
    codes:
      0: [0, 1] # EV_SYN
    properties: []
  events:
  # Current time is 10:00:00
  - evdev:
    - [  0,      0,   1,  30,       1] # EV_KEY / KEY_A                    1
    - [  0,      0,   0,   0,       0] # ------------ SYN_REPORT (0) ---------- +0ms
  - evdev:
    - [  0,  50000,   1,  30,       0] # EV_KEY / KEY_A                    0
    - [  0,  50000,   0,   0,       0] # ------------ SYN_REPORT (0) ---------- +50ms
- node: /dev/input/event2
  evdev:
    name: "mouse"
    id: [3, 4, 5, 6]
  events:
  - evdev:
    - [  0,  20000,   2,   0,      -3] # EV_REL / REL_X                   -3
    - [  0,  20000,   0,   0,       0]
"#;

    #[test]
    fn merges_devices_in_time_order() {
        let r = parse(TWO_DEVICES).expect("parse");
        assert_eq!(r.libinput_version, "1.22.1");
        assert_eq!(r.devices.len(), 2);
        assert_eq!(
            r.devices[1],
            RecordedDevice {
                node: "/dev/input/event2".into(),
                name: "mouse".into(),
                bus: 3,
                vendor: 4,
                product: 5,
                version: 6
            }
        );
        let seq: Vec<_> = r
            .events
            .iter()
            .map(|e| (e.device, e.time_us, e.kind, e.code, e.value))
            .collect();
        assert_eq!(
            seq,
            vec![
                (0, 0, 1, 30, 1),
                (0, 0, 0, 0, 0),
                (1, 20000, 2, 0, -3),
                (1, 20000, 0, 0, 0),
                (0, 50000, 1, 30, 0),
                (0, 50000, 0, 0, 0)
            ]
        );
    }

    #[test]
    fn rejects_other_versions_and_bad_events() {
        assert!(matches!(
            parse("version: 2\ndevices: []\n"),
            Err(RecordingError::Version(2))
        ));
        let bad = TWO_DEVICES.replace("[  0,  20000,   2,   0,      -3]", "[0, 20000, 2, 0]");
        let err = parse(&bad).expect_err("short event");
        assert!(
            err.to_string().contains("device 1 (mouse), event 0"),
            "{err}"
        );
        assert!(matches!(parse("{{{"), Err(RecordingError::Yaml(_))));
    }
}
