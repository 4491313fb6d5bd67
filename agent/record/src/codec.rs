//! Cap'n Proto encoding of [`Record`]s and spool batches. Everything decoded here comes from
//! a file another process or a disk could have corrupted, so reads use tight limits and
//! every error is returned, never unwrapped.

use super::{
    screen_codec, Counts, DeviceInfo, FocusInfo, Gap, InputEvent, Paste, PolicyStamp, Record,
    Redaction, Source, Stage, TtyMode, WindowRect,
};
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::serialize;
use imprint_schema as schema;

/// Why a frame's payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("capnp: {0}")]
    Capnp(#[from] capnp::Error),
    #[error("unknown enumerant: {0}")]
    NotInSchema(#[from] capnp::NotInSchema),
    #[error("invalid utf-8 in text field")]
    Utf8(#[from] std::str::Utf8Error),
}

/// Limits for one ring frame (a single record): small, as a record is small.
pub fn record_reader_options() -> ReaderOptions {
    *ReaderOptions::new()
        .traversal_limit_in_words(Some(64 * 1024))
        .nesting_limit(8)
}

/// Limits for one spool batch.
pub fn batch_reader_options() -> ReaderOptions {
    *ReaderOptions::new()
        .traversal_limit_in_words(Some(64 * 1024 * 1024))
        .nesting_limit(8)
}

/// Where a batch's records were read from, and what admitted them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchMeta {
    pub format_version: u16,
    pub ring_epoch: u64,
    pub ring_seq_first: u64,
    pub ring_seq_last: u64,
    pub policy: PolicyStamp,
    /// The boot the batch's `mono_ns` values belong to ("" in batches from before it was kept).
    pub boot_id: String,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC when the batch was written (0: not recorded).
    pub realtime_offset_ns: i64,
}

/// Encodes one record as a standalone capnp message appended to `out`.
pub fn encode_record(rec: &Record, out: &mut Vec<u8>) {
    let mut msg = Builder::new(HeapAllocator::new().first_segment_words(32));
    fill_record(msg.init_root(), rec);
    // Writing to a Vec cannot fail.
    let _ = serialize::write_message(out, &msg);
}

/// Decodes one record from a capnp message.
pub fn decode_record(mut bytes: &[u8]) -> Result<Record, DecodeError> {
    let msg = serialize::read_message_from_flat_slice(&mut bytes, record_reader_options())?;
    read_record(msg.get_root()?)
}

/// Encodes a spool batch.
pub fn encode_batch(meta: &BatchMeta, records: &[Record]) -> Vec<u8> {
    let mut msg = Builder::new(HeapAllocator::new().first_segment_words(1024));
    {
        let mut b = msg.init_root::<schema::batch::Builder>();
        b.set_format_version(meta.format_version);
        b.set_ring_epoch(meta.ring_epoch);
        b.set_ring_seq_first(meta.ring_seq_first);
        b.set_ring_seq_last(meta.ring_seq_last);
        fill_policy(b.reborrow().init_policy(), &meta.policy);
        b.set_boot_id(meta.boot_id.as_str());
        b.set_realtime_offset_ns(meta.realtime_offset_ns);
        let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
        let mut list = b.init_records(n);
        for (i, rec) in records.iter().take(n as usize).enumerate() {
            fill_record(list.reborrow().get(i as u32), rec);
        }
    }
    let mut out = Vec::new();
    let _ = serialize::write_message(&mut out, &msg);
    out
}

/// Decodes a spool batch.
pub fn decode_batch(mut bytes: &[u8]) -> Result<(BatchMeta, Vec<Record>), DecodeError> {
    let msg = serialize::read_message_from_flat_slice(&mut bytes, batch_reader_options())?;
    let b = msg.get_root::<schema::batch::Reader>()?;
    let p = b.get_policy()?;
    let meta = BatchMeta {
        format_version: b.get_format_version(),
        ring_epoch: b.get_ring_epoch(),
        ring_seq_first: b.get_ring_seq_first(),
        ring_seq_last: b.get_ring_seq_last(),
        policy: read_policy(p)?,
        boot_id: b.get_boot_id()?.to_str()?.to_owned(),
        realtime_offset_ns: b.get_realtime_offset_ns(),
    };
    let list = b.get_records()?;
    let mut records = Vec::with_capacity(list.len() as usize);
    for r in list.iter() {
        records.push(read_record(r)?);
    }
    Ok((meta, records))
}

fn fill_policy(mut b: schema::policy_stamp::Builder, p: &PolicyStamp) {
    b.set_version(p.version);
    b.set_hash(p.hash.as_str());
    b.set_default_level(p.default_level.as_str());
    b.set_rules(p.rules);
}

fn read_policy(p: schema::policy_stamp::Reader) -> Result<PolicyStamp, DecodeError> {
    Ok(PolicyStamp {
        version: p.get_version(),
        hash: p.get_hash()?.to_str()?.to_owned(),
        default_level: p.get_default_level()?.to_str()?.to_owned(),
        rules: p.get_rules(),
    })
}

/// Writes a focus record into its Cap'n Proto builder.
pub fn fill_focus(mut b: schema::focus::Builder, f: &FocusInfo) {
    b.set_seq(f.seq);
    b.set_mono_ns(f.mono_ns);
    b.set_pid(f.pid);
    b.set_start_time(f.start_time);
    b.set_exe(f.exe.as_str());
    b.set_app_id(f.app_id.as_str());
    b.set_unit(f.unit.as_str());
    b.set_cgroup(f.cgroup.as_str());
    b.set_uid(f.uid);
    b.set_session(f.session.as_str());
    b.set_seat(f.seat.as_str());
    b.set_title(f.title.as_str());
    b.set_wm_class(f.wm_class.as_str());
    b.set_pid_verified(f.pid_verified);
    b.set_tracker(f.tracker.as_str());
    b.set_unknown(f.unknown);
    b.set_terminal_pid(f.terminal_pid);
    b.set_terminal_exe(f.terminal_exe.as_str());
    b.set_cmdline(f.cmdline.as_str());
    b.set_tty(match f.tty {
        TtyMode::None => schema::TtyMode::None,
        TtyMode::Unknown => schema::TtyMode::Unknown,
        TtyMode::Echo => schema::TtyMode::Echo,
        TtyMode::NoEcho => schema::TtyMode::NoEcho,
        TtyMode::Raw => schema::TtyMode::Raw,
    });
    b.set_locked(f.locked);
    b.set_locked_by(f.locked_by.as_str());
    b.set_secure_field(f.secure_field);
    b.set_role(f.role.as_str());
    b.set_reporter(f.reporter.as_str());
    b.set_reporter_uid(f.reporter_uid);
    b.set_unknown_reason(f.unknown_reason.as_str());
    b.set_window_x(f.window.x);
    b.set_window_y(f.window.y);
    b.set_window_width(f.window.width);
    b.set_window_height(f.window.height);
    b.set_keymap(f.keymap.as_str());
}

/// Reads a focus record, checking its text fields.
pub fn read_focus(f: schema::focus::Reader) -> Result<FocusInfo, DecodeError> {
    let text = |t: capnp::Result<capnp::text::Reader>| -> Result<String, DecodeError> {
        Ok(t?.to_str()?.to_owned())
    };
    Ok(FocusInfo {
        seq: f.get_seq(),
        mono_ns: f.get_mono_ns(),
        pid: f.get_pid(),
        start_time: f.get_start_time(),
        exe: text(f.get_exe())?,
        app_id: text(f.get_app_id())?,
        unit: text(f.get_unit())?,
        cgroup: text(f.get_cgroup())?,
        uid: f.get_uid(),
        session: text(f.get_session())?,
        seat: text(f.get_seat())?,
        title: text(f.get_title())?,
        wm_class: text(f.get_wm_class())?,
        pid_verified: f.get_pid_verified(),
        tracker: text(f.get_tracker())?,
        unknown: f.get_unknown(),
        terminal_pid: f.get_terminal_pid(),
        terminal_exe: text(f.get_terminal_exe())?,
        cmdline: text(f.get_cmdline())?,
        // An enumerant from a newer writer is not understood: the tty state is unknown.
        tty: match f.get_tty() {
            Ok(schema::TtyMode::None) => TtyMode::None,
            Ok(schema::TtyMode::Echo) => TtyMode::Echo,
            Ok(schema::TtyMode::NoEcho) => TtyMode::NoEcho,
            Ok(schema::TtyMode::Raw) => TtyMode::Raw,
            Ok(schema::TtyMode::Unknown) | Err(_) => TtyMode::Unknown,
        },
        locked: f.get_locked(),
        locked_by: text(f.get_locked_by())?,
        secure_field: f.get_secure_field(),
        role: text(f.get_role())?,
        reporter: text(f.get_reporter())?,
        reporter_uid: f.get_reporter_uid(),
        unknown_reason: text(f.get_unknown_reason())?,
        window: WindowRect {
            x: f.get_window_x(),
            y: f.get_window_y(),
            width: f.get_window_width(),
            height: f.get_window_height(),
        },
        keymap: text(f.get_keymap())?,
    })
}

fn fill_record(b: schema::record::Builder, rec: &Record) {
    match rec {
        Record::Event(e) => {
            let mut b = b.init_event();
            b.set_mono_ns(e.mono_ns);
            b.set_device(e.device);
            b.set_type(e.kind);
            b.set_code(e.code);
            b.set_value(e.value);
            b.set_focus(e.focus);
        }
        Record::Device(d) => {
            let mut b = b.init_device();
            b.set_index(d.index);
            b.set_name(d.name.as_str());
            b.set_bus(d.bus);
            b.set_vendor(d.vendor);
            b.set_product(d.product);
            b.set_version(d.version);
            b.set_phys(d.phys.as_str());
            b.set_virtual(d.is_virtual);
            b.set_node(d.node.as_str());
            b.set_removed(d.removed);
            b.set_mono_ns(d.mono_ns);
            b.set_source(source_to_schema(d.source));
        }
        Record::Gap(g) => {
            let mut b = b.init_gap();
            b.set_from_ns(g.from_ns);
            b.set_to_ns(g.to_ns);
            b.set_stage(stage_to_schema(g.stage));
            b.set_count(g.count);
            b.set_device(g.device);
        }
        Record::Focus(f) => fill_focus(b.init_focus(), f),
        Record::Policy(p) => fill_policy(b.init_policy(), p),
        Record::Redaction(r) => {
            let mut b = b.init_redaction();
            b.set_from_ns(r.from_ns);
            b.set_to_ns(r.to_ns);
            b.set_rule(r.rule.as_str());
            b.set_count(r.count);
            b.set_placeholder(r.placeholder.as_str());
            b.set_focus(r.focus);
            b.set_device(r.device);
            let n = u32::try_from(r.key_times_ns.len()).unwrap_or(u32::MAX);
            let mut list = b.init_key_times_ns(n);
            for (i, t) in r.key_times_ns.iter().take(n as usize).enumerate() {
                list.set(i as u32, *t);
            }
        }
        Record::Counts(c) => {
            let mut b = b.init_counts();
            b.set_from_ns(c.from_ns);
            b.set_to_ns(c.to_ns);
            b.set_focus(c.focus);
            b.set_keys(c.keys);
            b.set_clicks(c.clicks);
            b.set_motion(c.motion);
            b.set_scroll(c.scroll);
        }
        Record::Paste(p) => {
            let mut b = b.init_paste();
            b.set_mono_ns(p.mono_ns);
            b.set_focus(p.focus);
            b.set_device(p.device);
        }
        Record::Pointer(p) => screen_codec::fill_pointer(b.init_pointer(), p),
        Record::Display(d) => screen_codec::fill_display(b.init_display(), d),
        Record::Window(w) => screen_codec::fill_window(b.init_window(), w),
        // Nothing to write for a record this build cannot interpret.
        Record::Other => {}
    }
}

fn read_record(r: schema::record::Reader) -> Result<Record, DecodeError> {
    use schema::record::Which;
    Ok(match r.which() {
        Ok(Which::Event(e)) => {
            let e = e?;
            Record::Event(InputEvent {
                mono_ns: e.get_mono_ns(),
                device: e.get_device(),
                kind: e.get_type(),
                code: e.get_code(),
                value: e.get_value(),
                focus: e.get_focus(),
            })
        }
        Ok(Which::Device(d)) => {
            let d = d?;
            Record::Device(DeviceInfo {
                index: d.get_index(),
                name: d.get_name()?.to_str()?.to_owned(),
                bus: d.get_bus(),
                vendor: d.get_vendor(),
                product: d.get_product(),
                version: d.get_version(),
                phys: d.get_phys()?.to_str()?.to_owned(),
                is_virtual: d.get_virtual(),
                node: d.get_node()?.to_str()?.to_owned(),
                removed: d.get_removed(),
                mono_ns: d.get_mono_ns(),
                // An enumerant from a newer schema reads as unknown rather than failing.
                source: d.get_source().map(source_from_schema).unwrap_or_default(),
            })
        }
        Ok(Which::Gap(g)) => {
            let g = g?;
            Record::Gap(Gap {
                from_ns: g.get_from_ns(),
                to_ns: g.get_to_ns(),
                stage: g.get_stage().map(stage_from_schema).unwrap_or_default(),
                count: g.get_count(),
                device: g.get_device(),
            })
        }
        Ok(Which::Policy(p)) => Record::Policy(read_policy(p?)?),
        Ok(Which::Focus(f)) => Record::Focus(Box::new(read_focus(f?)?)),
        Ok(Which::Redaction(r)) => {
            let r = r?;
            Record::Redaction(Box::new(Redaction {
                from_ns: r.get_from_ns(),
                to_ns: r.get_to_ns(),
                rule: r.get_rule()?.to_str()?.to_owned(),
                count: r.get_count(),
                placeholder: r.get_placeholder()?.to_str()?.to_owned(),
                focus: r.get_focus(),
                device: r.get_device(),
                key_times_ns: r.get_key_times_ns()?.iter().collect(),
            }))
        }
        Ok(Which::Counts(c)) => {
            let c = c?;
            Record::Counts(Counts {
                from_ns: c.get_from_ns(),
                to_ns: c.get_to_ns(),
                focus: c.get_focus(),
                keys: c.get_keys(),
                clicks: c.get_clicks(),
                motion: c.get_motion(),
                scroll: c.get_scroll(),
            })
        }
        Ok(Which::Paste(p)) => {
            let p = p?;
            Record::Paste(Paste {
                mono_ns: p.get_mono_ns(),
                focus: p.get_focus(),
                device: p.get_device(),
            })
        }
        Ok(Which::Pointer(p)) => Record::Pointer(screen_codec::read_pointer(p?)),
        Ok(Which::Display(d)) => Record::Display(Box::new(screen_codec::read_display(d?)?)),
        Ok(Which::Window(w)) => Record::Window(screen_codec::read_window(w?)),
        Err(_) => Record::Other,
    })
}

fn source_to_schema(s: Source) -> schema::Source {
    match s {
        Source::Unknown => schema::Source::Unknown,
        Source::Evdev => schema::Source::Evdev,
        Source::Ebpf => schema::Source::Ebpf,
        Source::Replay => schema::Source::Replay,
    }
}

fn source_from_schema(s: schema::Source) -> Source {
    match s {
        schema::Source::Unknown => Source::Unknown,
        schema::Source::Evdev => Source::Evdev,
        schema::Source::Ebpf => Source::Ebpf,
        schema::Source::Replay => Source::Replay,
    }
}

fn stage_to_schema(s: Stage) -> schema::Stage {
    match s {
        Stage::Unknown => schema::Stage::Unknown,
        Stage::BpfReserve => schema::Stage::BpfReserve,
        Stage::RingFull => schema::Stage::RingFull,
        Stage::EvdevSynDropped => schema::Stage::EvdevSynDropped,
        Stage::Policy => schema::Stage::Policy,
        Stage::Disk => schema::Stage::Disk,
        Stage::RingCorrupt => schema::Stage::RingCorrupt,
        Stage::SpoolCorrupt => schema::Stage::SpoolCorrupt,
        Stage::SpoolTorn => schema::Stage::SpoolTorn,
        Stage::Paused => schema::Stage::Paused,
        Stage::Retention => schema::Stage::Retention,
        Stage::CollectorCrash => schema::Stage::CollectorCrash,
        Stage::RingReplaced => schema::Stage::RingReplaced,
    }
}

fn stage_from_schema(s: schema::Stage) -> Stage {
    match s {
        schema::Stage::Unknown => Stage::Unknown,
        schema::Stage::BpfReserve => Stage::BpfReserve,
        schema::Stage::RingFull => Stage::RingFull,
        schema::Stage::EvdevSynDropped => Stage::EvdevSynDropped,
        schema::Stage::Policy => Stage::Policy,
        schema::Stage::Disk => Stage::Disk,
        schema::Stage::RingCorrupt => Stage::RingCorrupt,
        schema::Stage::SpoolCorrupt => Stage::SpoolCorrupt,
        schema::Stage::SpoolTorn => Stage::SpoolTorn,
        schema::Stage::Paused => Stage::Paused,
        schema::Stage::Retention => Stage::Retention,
        schema::Stage::CollectorCrash => Stage::CollectorCrash,
        schema::Stage::RingReplaced => Stage::RingReplaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let recs = vec![
            Record::Event(InputEvent {
                mono_ns: 7,
                device: 2,
                kind: 1,
                code: 30,
                value: 1,
                focus: 3,
            }),
            Record::Device(DeviceInfo {
                index: 2,
                name: "kbd".into(),
                bus: 3,
                vendor: 0x1234,
                product: 5,
                version: 1,
                phys: "usb-1".into(),
                is_virtual: true,
                node: "/dev/input/event4".into(),
                removed: false,
                mono_ns: 1,
                source: Source::Evdev,
            }),
            Record::Gap(Gap {
                from_ns: 1,
                to_ns: 9,
                stage: Stage::RingFull,
                count: 12,
                device: 2,
            }),
            Record::Focus(Box::new(FocusInfo {
                seq: 4,
                pid: 77,
                exe: "/usr/bin/xterm".into(),
                wm_class: "xterm".into(),
                tracker: "x11".into(),
                pid_verified: true,
                terminal_pid: 70,
                ..Default::default()
            })),
            Record::Redaction(Box::new(Redaction {
                from_ns: 10,
                to_ns: 20,
                rule: "aws_access_key".into(),
                count: 2,
                placeholder: "[aws_access_key]".into(),
                focus: 4,
                device: 2,
                key_times_ns: vec![10, 20],
            })),
            Record::Counts(Counts {
                from_ns: 1,
                to_ns: 2,
                focus: 4,
                keys: 3,
                clicks: 4,
                motion: 5,
                scroll: 6,
            }),
            Record::Paste(Paste {
                mono_ns: 9,
                focus: 4,
                device: 2,
            }),
            Record::Policy(PolicyStamp {
                version: 3,
                hash: "abc".into(),
                default_level: "off".into(),
                rules: 2,
            }),
            Record::Pointer(crate::PointerSample {
                mono_ns: 11,
                x: 640.5,
                y: 12.0,
                trigger: crate::PointerTrigger::Press,
                button: 3,
                server_time_ms: 99,
                focus: 4,
                event_mono_ns: 10,
            }),
            Record::Display(Box::new(crate::DisplayInfo {
                mono_ns: 1,
                server: "x11".into(),
                width: 2560,
                height: 1440,
                monitors: vec![crate::Monitor {
                    name: "DP-1".into(),
                    x: 1280,
                    width: 1280,
                    height: 1440,
                    scale: 2.0,
                    primary: true,
                    ..Default::default()
                }],
                pointer: false,
                pointer_unavailable: "sway: no cursor position IPC".into(),
                double_click_ms: 400,
                double_click_distance: 5,
                uid: 1000,
                session: "3".into(),
            })),
            Record::Window(crate::WindowGeometry {
                mono_ns: 12,
                focus: 4,
                rect: crate::WindowRect {
                    x: -5,
                    y: 20,
                    width: 300,
                    height: 200,
                },
            }),
        ];
        for r in &recs {
            let mut buf = Vec::new();
            encode_record(r, &mut buf);
            assert_eq!(&decode_record(&buf).expect("decode"), r);
        }
        let meta = BatchMeta {
            format_version: 1,
            ring_epoch: 5,
            ring_seq_first: 1,
            ring_seq_last: 3,
            boot_id: "5e2b".into(),
            realtime_offset_ns: -7,
            ..Default::default()
        };
        let bytes = encode_batch(&meta, &recs);
        assert_eq!(decode_batch(&bytes).expect("decode batch"), (meta, recs));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_record(&[0xff; 40]).is_err());
        assert!(decode_batch(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}
