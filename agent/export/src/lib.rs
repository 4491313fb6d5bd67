//! imprint's export stage: the spool's records → the `sessions`, `actions` and `events`
//! tables of `imprint.actions/v1` (see SCHEMA.md), written as zstd Parquet or JSONL with a
//! manifest.
//!
//! - [`rows`]: the row model, defined once for both formats.
//! - [`actions`]: records → actions (click, drag, scroll, type, hotkey…); [`samples`] joins
//!   kernel events to the display server's pointer positions; [`text`] rebuilds typed text.
//! - [`pseudonym`]: keyed HMAC ids for people and machines.
//! - [`columns`], [`parquet`], [`jsonl`], [`manifest`]: the files.
//!
//! The export holds only what the spool holds: `counts` records and anything below `timing`
//! make no rows, and keys masked or redacted by the policy stay masked or redacted.

pub mod actions;
pub mod columns;
pub mod jsonl;
pub mod manifest;
pub mod parquet;
pub mod pseudonym;
pub mod pyautogui;
pub mod rows;
pub mod samples;
pub mod text;

use actions::{Item, RingPos};
use imprint_policy::keys::{classify, EV_SYN};
use imprint_policy::rules::DeviceClass;
use imprint_policy::{Level, Policy};
use imprint_record::codec::BatchMeta;
use imprint_record::names::{code_name, type_name};
use imprint_record::{DeviceInfo, FocusInfo, Monitor, Record};
use pseudonym::Key;
use rows::{unix_ms, Event, MonitorRow, Session, Tables};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use manifest::{Filters, Manifest};

const SYN_REPORT: u16 = 0;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("--app {0}: {1}")]
    Glob(String, String),
    #[error(
        "{0} is not empty; choose a new directory or pass --force to overwrite the export in it"
    )]
    NotEmpty(String),
    #[error(transparent)]
    Key(#[from] pseudonym::KeyError),
}

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Jsonl,
}

impl Format {
    /// The name used on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

/// `--app GLOB`: matches a focus by app_id, wm_class or the executable's file name.
#[derive(Clone, Debug)]
pub struct AppFilter {
    pattern: String,
    glob: globset::GlobMatcher,
}

impl AppFilter {
    /// Compiles a glob (`firefox*`, `org.gnome.*`).
    pub fn new(pattern: &str) -> Result<AppFilter, ExportError> {
        let glob = globset::Glob::new(pattern)
            .map_err(|e| ExportError::Glob(pattern.to_owned(), e.to_string()))?
            .compile_matcher();
        Ok(AppFilter {
            pattern: pattern.to_owned(),
            glob,
        })
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// True when `f` is the application.
    pub fn matches(&self, f: &FocusInfo) -> bool {
        let exe = Path::new(&f.exe)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        [f.app_id.as_str(), f.wm_class.as_str(), exe.as_str()]
            .iter()
            .any(|s| !s.is_empty() && self.glob.is_match(s))
    }
}

/// How an export is made.
pub struct Options {
    pub since_unix_ms: Option<i64>,
    pub until_unix_ms: Option<i64>,
    pub app: Option<AppFilter>,
    pub key: Key,
    /// The policy in force now: when its hash is the one a batch was written under, each
    /// event's level is told (and keys masked at `timing` are shown as masked).
    pub policy: Option<Policy>,
    /// What identifies the machine ([`pseudonym::machine_source`]).
    pub machine: String,
    /// The name a uid is pseudonymised by (a user name is the same person on every machine).
    pub subject_of: fn(u32) -> String,
}

/// The default [`Options::subject_of`]: the uid.
pub fn subject_by_uid(uid: u32) -> String {
    format!("uid:{uid}")
}

/// One session being gathered.
struct Acc {
    boot_id: String,
    display_session: String,
    has_display: bool,
    row: Session,
    uid: Option<u32>,
    items: Vec<Item>,
    event_rows: Vec<usize>,
}

/// Gathers batches (in spool order) and makes the tables.
pub struct Exporter {
    opts: Options,
    devices: HashMap<u32, DeviceInfo>,
    foci: HashMap<u64, FocusInfo>,
    levels: HashMap<(u64, DeviceClass), Level>,
    sessions: Vec<Acc>,
    events: Vec<Event>,
}

impl Exporter {
    pub fn new(opts: Options) -> Exporter {
        Exporter {
            opts,
            devices: HashMap::new(),
            foci: HashMap::new(),
            levels: HashMap::new(),
            sessions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Takes one decoded batch.
    pub fn push_batch(&mut self, meta: &BatchMeta, records: Vec<Record>) {
        let policy_matches =
            self.opts.policy.as_ref().is_some_and(|p| {
                !meta.policy.hash.is_empty() && p.stamp().hash == meta.policy.hash
            });
        if !policy_matches {
            self.levels.clear();
        }
        let ring = RingPos {
            epoch: meta.ring_epoch,
            first: meta.ring_seq_first,
            last: meta.ring_seq_last,
        };
        for rec in records {
            let display_session = match &rec {
                Record::Display(d) => Some(d.session.as_str()),
                _ => None,
            };
            let s = self.session(meta, display_session);
            let offset = meta.realtime_offset_ns;
            let mut item = Item {
                rec: Record::Other,
                realtime_offset_ns: offset,
                ring,
                event_index: None,
                level: None,
            };
            match rec {
                Record::Event(e) if e.kind == EV_SYN && e.code == SYN_REPORT => continue,
                Record::Event(e) => {
                    let included = self.time_ok(unix_ms(e.mono_ns, offset)) && self.app_ok(e.focus);
                    item.level = if policy_matches {
                        self.level(e.focus, e.device, e.kind, e.code)
                    } else {
                        None
                    };
                    if included {
                        let index = self.events.len() as u64;
                        item.event_index = Some(index);
                        self.events.push(Event {
                            event_index: index,
                            session_id: String::new(),
                            mono_ns: e.mono_ns,
                            unix_ms: unix_ms(e.mono_ns, offset),
                            device: e.device,
                            device_name: self.devices.get(&e.device).map(|d| d.name.clone()),
                            kind: type_name(e.kind).into_owned(),
                            code: code_name(e.kind, e.code).into_owned(),
                            value: e.value,
                            focus_seq: e.focus,
                        });
                        self.sessions[s].event_rows.push(index as usize);
                    }
                    item.rec = Record::Event(e);
                }
                Record::Device(d) => {
                    self.devices.insert(d.index, d);
                    continue;
                }
                Record::Policy(p) => {
                    let row = &mut self.sessions[s].row;
                    row.policy_hash.get_or_insert(p.hash);
                    row.policy_version.get_or_insert(p.version);
                    continue;
                }
                // Level `counts`: no events, so no rows.
                Record::Counts(_) | Record::Other => continue,
                Record::Focus(f) => {
                    let acc = &mut self.sessions[s];
                    if !f.unknown {
                        acc.uid.get_or_insert(f.uid);
                    }
                    if !f.keymap.is_empty() {
                        acc.row.keymap = Some(f.keymap.clone());
                    }
                    self.levels.retain(|(seq, _), _| *seq != f.seq);
                    self.foci.insert(f.seq, (*f).clone());
                    item.rec = Record::Focus(f);
                }
                Record::Display(d) => {
                    let acc = &mut self.sessions[s];
                    acc.has_display = true;
                    if d.uid != 0 || acc.uid.is_none() {
                        acc.uid = Some(d.uid);
                    }
                    let row = &mut acc.row;
                    row.display_server = Some(d.server.clone());
                    row.screen_width = Some(d.width);
                    row.screen_height = Some(d.height);
                    row.monitors = d.monitors.iter().map(monitor).collect();
                    row.double_click_ms = (d.double_click_ms != 0).then_some(d.double_click_ms);
                    row.double_click_distance =
                        (d.double_click_distance != 0).then_some(d.double_click_distance);
                    row.pointer_available = d.pointer;
                    row.pointer_unavailable_reason = if d.pointer {
                        None
                    } else if d.pointer_unavailable.is_empty() {
                        Some("pointer_unavailable".into())
                    } else {
                        Some(d.pointer_unavailable.clone())
                    };
                    item.rec = Record::Display(d);
                }
                rec => item.rec = rec,
            }
            let t = item.rec.mono_ns();
            let acc = &mut self.sessions[s];
            if t != 0 {
                let row = &mut acc.row;
                if row.start_mono_ns == 0 || t < row.start_mono_ns {
                    row.start_mono_ns = t;
                }
                row.end_mono_ns = row.end_mono_ns.max(t);
                if row.realtime_offset_ns == 0 {
                    row.realtime_offset_ns = offset;
                }
            }
            acc.items.push(item);
        }
    }

    /// The session a record of this batch belongs to (starting one when the boot or the
    /// display session changes).
    fn session(&mut self, meta: &BatchMeta, display_session: Option<&str>) -> usize {
        let new = match self.sessions.last_mut() {
            None => true,
            Some(cur) if cur.boot_id != meta.boot_id => true,
            Some(cur) => match display_session {
                Some(ds) if ds != cur.display_session => {
                    if cur.has_display {
                        true
                    } else {
                        // The records before the first display report are this session's.
                        cur.display_session = ds.to_owned();
                        false
                    }
                }
                _ => false,
            },
        };
        if new {
            self.sessions.push(Acc {
                boot_id: meta.boot_id.clone(),
                display_session: display_session.unwrap_or_default().to_owned(),
                has_display: false,
                row: Session {
                    boot_id: meta.boot_id.clone(),
                    realtime_offset_ns: meta.realtime_offset_ns,
                    ..Session::default()
                },
                uid: None,
                items: Vec::new(),
                event_rows: Vec::new(),
            });
        }
        self.sessions.len() - 1
    }

    fn level(&mut self, focus: u64, device: u32, kind: u16, code: u16) -> Option<Level> {
        let policy = self.opts.policy.as_ref()?;
        let class = classify(kind, code, self.devices.get(&device));
        if let Some(l) = self.levels.get(&(focus, class)) {
            return Some(*l);
        }
        let f = self.foci.get(&focus);
        let l = policy.decide(f, Some(class)).level;
        self.levels.insert((focus, class), l);
        Some(l)
    }

    fn time_ok(&self, unix: Option<i64>) -> bool {
        let after = self
            .opts
            .since_unix_ms
            .is_none_or(|s| unix.is_some_and(|u| u >= s));
        let before = self
            .opts
            .until_unix_ms
            .is_none_or(|s| unix.is_some_and(|u| u < s));
        after && before
    }

    fn app_ok(&self, focus: u64) -> bool {
        match &self.opts.app {
            None => true,
            Some(app) => self.foci.get(&focus).is_some_and(|f| app.matches(f)),
        }
    }

    /// Builds the actions and the session rows.
    pub fn finish(mut self) -> Tables {
        let mut tables = Tables::default();
        let mut ordinal: HashMap<(String, String), u32> = HashMap::new();
        let sessions = std::mem::take(&mut self.sessions);
        for acc in sessions {
            let mut actions = actions::build(&acc.items);
            actions.retain(|a| {
                self.time_ok(a.start_unix_ms)
                    && (a.kind == "gap"
                        || a.focus_seq.is_some_and(|f| self.app_ok(f))
                        || self.opts.app.is_none())
            });
            if actions.is_empty() && acc.event_rows.is_empty() {
                continue;
            }
            let n = ordinal
                .entry((acc.boot_id.clone(), acc.display_session.clone()))
                .or_default();
            *n += 1;
            let key = &self.opts.key;
            let session_id = key.id(
                "session",
                &format!("{}/{}/{}", acc.boot_id, acc.display_session, n),
            );
            let mut row = acc.row;
            row.session_id = session_id.clone();
            if !acc.has_display {
                row.pointer_unavailable_reason = Some("no_pointer_source".into());
            }
            row.machine_id = key.id("machine", &self.opts.machine);
            row.subject_id = acc
                .uid
                .map(|u| key.id("subject", &(self.opts.subject_of)(u)));
            row.start_unix_ms = unix_ms(row.start_mono_ns, row.realtime_offset_ns);
            row.end_unix_ms = unix_ms(row.end_mono_ns, row.realtime_offset_ns);
            row.action_count = actions.len() as u64;
            row.event_count = acc.event_rows.len() as u64;
            for i in acc.event_rows {
                if let Some(e) = self.events.get_mut(i) {
                    e.session_id = session_id.clone();
                }
            }
            for mut a in actions {
                a.action_index = tables.actions.len() as u64;
                a.session_id = session_id.clone();
                tables.actions.push(a);
            }
            tables.sessions.push(row);
        }
        tables.events = self.events;
        tables
    }
}

fn monitor(m: &Monitor) -> MonitorRow {
    MonitorRow {
        name: m.name.clone(),
        x: m.x,
        y: m.y,
        width: m.width,
        height: m.height,
        scale: m.scale,
        primary: m.primary,
    }
}

/// Creates the output directory (0700); refuses one that holds files unless `force`.
pub fn prepare_dir(dir: &Path, force: bool) -> Result<(), ExportError> {
    let shown = dir.display().to_string();
    let io = |e| ExportError::Io(shown.clone(), e);
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() && !force {
            return Err(ExportError::NotEmpty(shown));
        }
    }
    imprint_fsutil::ensure_private_dir(dir).map_err(io)
}

/// Writes the tables in `format` and the manifest into `dir`.
pub fn write(
    tables: &Tables,
    dir: &Path,
    format: Format,
    source_spool: &Path,
    filters: Filters,
    key: &Key,
) -> Result<Manifest, ExportError> {
    let files: Vec<PathBuf> = match format {
        Format::Parquet => parquet::write(tables, dir)?,
        Format::Jsonl => jsonl::write(tables, dir)?,
    };
    let m = manifest::write(
        dir,
        tables,
        &files,
        manifest::ManifestInput {
            format: format.as_str(),
            source_spool,
            filters,
            key_id: key.key_id(),
        },
    )?;
    imprint_fsutil::sync_dir(dir).map_err(|e| ExportError::Io(dir.display().to_string(), e))?;
    tracing::info!(
        dir = %dir.display(),
        format = format.as_str(),
        sessions = m.rows.sessions,
        actions = m.rows.actions,
        events = m.rows.events,
        "export written"
    );
    Ok(m)
}
