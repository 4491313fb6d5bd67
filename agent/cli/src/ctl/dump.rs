//! `imprint dump`: the spool as JSON lines. Damage is skipped and shown as a gap line (with
//! the number of ring records lost, when the neighbouring batches tell it), never a stop.

use super::walk::{walk, Found};
use super::Locations;
use imprint_common::{EV_SYN, SYN_REPORT};
use imprint_record::names::{code_name, type_name};
use imprint_record::{DeviceInfo, Record};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;

pub fn run(loc: &Locations) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printer = Printer::default();
    let mut io_err = None;
    let ids = loc.identities()?;
    let mut locked = 0u64;
    walk(&paths.spool, ids.as_ref(), |found| {
        locked += matches!(found, Found::Locked { .. }) as u64;
        for line in printer.lines(found) {
            if let Err(e) = writeln!(out, "{line}") {
                io_err.get_or_insert(e);
            }
        }
    })?;
    for line in printer.finish() {
        if let Err(e) = writeln!(out, "{line}") {
            io_err.get_or_insert(e);
        }
    }
    if let Err(e) = out.flush() {
        io_err.get_or_insert(e);
    }
    match io_err {
        // A closed pipe (`imprint dump | head`) is a normal end.
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ if locked > 0 => {
            eprintln!("imprint dump: {locked} encrypted segments or frames not shown: pass --identity with an operator's age identity file");
            Ok(2)
        }
        _ => Ok(0),
    }
}

/// Turns walk results into JSON lines; remembers what it printed so repeated device and
/// policy announcements (one per segment) appear once.
#[derive(Default)]
pub struct Printer {
    devices: BTreeMap<u32, DeviceInfo>,
    policy: Option<String>,
    last_ring: Option<(u64, u64)>,
    damage: Vec<String>,
}

impl Printer {
    /// The lines for one walk result.
    pub fn lines(&mut self, found: Found) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        match found {
            Found::Segment { .. } | Found::Locked { .. } => {}
            Found::Damaged { place, why } => {
                eprintln!("imprint dump: skipping damaged data: {place}: {why}");
                self.damage.push(place);
            }
            Found::TornTail { place, bytes } => {
                eprintln!(
                    "imprint dump: {place}: torn tail of {bytes} bytes (an interrupted write)"
                );
            }
            Found::Missing { after, before } => {
                eprintln!(
                    "imprint dump: spool frames {}..{} are missing",
                    after + 1,
                    before - 1
                );
                self.damage
                    .push(format!("spool frames {}..{}", after + 1, before - 1));
            }
            Found::Batch { meta, records, .. } => {
                if !self.damage.is_empty() {
                    // Ring sequence numbers are contiguous, so the batches around the damage
                    // say how many records it held.
                    let count = match self.last_ring {
                        Some((epoch, last))
                            if epoch == meta.ring_epoch && meta.ring_seq_first > last + 1 =>
                        {
                            meta.ring_seq_first - last - 1
                        }
                        _ => 0,
                    };
                    let places = std::mem::take(&mut self.damage);
                    out.push(json!({"kind": "gap", "stage": "spool_corrupt", "count": count, "place": places.join("; ")}));
                }
                if meta.ring_seq_last > 0 {
                    self.last_ring = Some((meta.ring_epoch, meta.ring_seq_last));
                }
                for rec in records {
                    if let Some(v) = self.record(rec) {
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    /// Lines owed at the end (damage after the last good batch).
    pub fn finish(&mut self) -> Vec<serde_json::Value> {
        if self.damage.is_empty() {
            return Vec::new();
        }
        let places = std::mem::take(&mut self.damage);
        vec![
            json!({"kind": "gap", "stage": "spool_corrupt", "count": 0, "place": places.join("; ")}),
        ]
    }

    fn record(&mut self, rec: Record) -> Option<serde_json::Value> {
        match rec {
            Record::Event(e) => {
                if e.kind == EV_SYN && e.code == SYN_REPORT {
                    return None;
                }
                Some(json!({
                    "kind": "event",
                    "mono_ns": e.mono_ns,
                    "device": e.device,
                    "type": type_name(e.kind),
                    "code": code_name(e.kind, e.code),
                    "value": e.value,
                    "focus": e.focus,
                }))
            }
            Record::Device(d) => {
                if self.devices.get(&d.index) == Some(&d) {
                    return None;
                }
                self.devices.insert(d.index, d.clone());
                Some(json!({
                    "kind": "device",
                    "device": d.index,
                    "name": d.name,
                    "bus": d.bus,
                    "vendor": d.vendor,
                    "product": d.product,
                    "version": d.version,
                    "phys": d.phys,
                    "virtual": d.is_virtual,
                    "node": d.node,
                    "removed": d.removed,
                    "source": d.source,
                    "mono_ns": d.mono_ns,
                }))
            }
            Record::Focus(f) => {
                let mut v = json!({
                    "kind": "focus",
                    "seq": f.seq,
                    "mono_ns": f.mono_ns,
                    "tracker": f.tracker,
                });
                let o = v.as_object_mut()?;
                if !f.reporter.is_empty() {
                    o.insert("reporter".into(), f.reporter.clone().into());
                }
                if f.unknown {
                    o.insert("unknown".into(), true.into());
                    if !f.unknown_reason.is_empty() {
                        o.insert("unknown_reason".into(), f.unknown_reason.into());
                    }
                    return Some(v);
                }
                o.insert("pid".into(), f.pid.into());
                o.insert("pid_verified".into(), f.pid_verified.into());
                o.insert("start_time".into(), f.start_time.into());
                o.insert("exe".into(), f.exe.into());
                o.insert("uid".into(), f.uid.into());
                // Optional identity fields appear only when known, so lines stay readable.
                for (k, val) in [
                    ("app_id", f.app_id),
                    ("wm_class", f.wm_class),
                    ("unit", f.unit),
                    ("cgroup", f.cgroup),
                    ("session", f.session),
                    ("seat", f.seat),
                    ("title", f.title),
                    ("cmdline", f.cmdline),
                    ("terminal_exe", f.terminal_exe),
                ] {
                    if !val.is_empty() {
                        o.insert(k.into(), val.into());
                    }
                }
                if f.terminal_pid != 0 {
                    o.insert("terminal_pid".into(), f.terminal_pid.into());
                }
                if f.tty != imprint_record::TtyMode::None {
                    o.insert("tty".into(), f.tty.as_str().into());
                }
                if f.locked {
                    o.insert("locked".into(), true.into());
                    o.insert("locked_by".into(), f.locked_by.into());
                }
                if f.secure_field {
                    o.insert("secure_field".into(), true.into());
                }
                if !f.keymap.is_empty() {
                    o.insert("keymap".into(), f.keymap.into());
                }
                if !f.role.is_empty() {
                    o.insert("role".into(), f.role.into());
                }
                let w = f.window;
                if w.width != 0 {
                    o.insert(
                        "window".into(),
                        json!({"x": w.x, "y": w.y, "width": w.width, "height": w.height}),
                    );
                }
                Some(v)
            }
            Record::Pointer(p) => tagged("pointer", &p),
            Record::Display(d) => tagged("display", &*d),
            Record::Window(w) => Some(json!({
                "kind": "window",
                "mono_ns": w.mono_ns,
                "focus": w.focus,
                "x": w.rect.x,
                "y": w.rect.y,
                "width": w.rect.width,
                "height": w.rect.height,
            })),
            Record::Gap(g) => Some(json!({
                "kind": "gap",
                "stage": g.stage.as_str(),
                "count": g.count,
                "from_ns": g.from_ns,
                "to_ns": g.to_ns,
            })),
            Record::Policy(p) => {
                if self.policy.as_deref() == Some(p.hash.as_str()) {
                    return None;
                }
                self.policy = Some(p.hash.clone());
                Some(
                    json!({"kind": "policy", "version": p.version, "hash": p.hash, "default_level": p.default_level, "rules": p.rules}),
                )
            }
            Record::Redaction(r) => Some(json!({
                "kind": "redaction",
                "rule": r.rule,
                "count": r.count,
                "placeholder": r.placeholder,
                "from_ns": r.from_ns,
                "to_ns": r.to_ns,
                "focus": r.focus,
                "device": r.device,
                "key_times_ns": r.key_times_ns,
            })),
            Record::Counts(c) => Some(json!({
                "kind": "counts",
                "from_ns": c.from_ns,
                "to_ns": c.to_ns,
                "focus": c.focus,
                "keys": c.keys,
                "clicks": c.clicks,
                "motion": c.motion,
                "scroll": c.scroll,
            })),
            Record::Paste(p) => Some(json!({
                "kind": "paste",
                "mono_ns": p.mono_ns,
                "focus": p.focus,
                "device": p.device,
            })),
            Record::Other => None,
        }
    }
}

/// `value`'s fields with `"kind": kind` first, for the screen records whose fields are dumped as
/// they are.
fn tagged(kind: &str, value: &impl serde::Serialize) -> Option<serde_json::Value> {
    let mut fields = serde_json::to_value(value).ok()?;
    let mut v = json!({ "kind": kind });
    v.as_object_mut()?.append(fields.as_object_mut()?);
    Some(v)
}
