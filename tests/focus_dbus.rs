//! GNOME and KDE focus over D-Bus. Neither desktop runs here, so:
//! - **Recorded messages**: `tests/data/focus/{gnome,kde}.pcap` hold real wire-format method
//!   calls (made by gdbus and busctl against a real dbus-daemon, captured by dbus-monitor;
//!   see `tests/data/focus/README.md`), exactly as the Shell extension and the KWin script
//!   send them, plus malformed ones. Each is parsed by the collector's own code and must
//!   give the right report (and, through the resolver, the right focus record) or a clear
//!   error; corrupted bytes must never panic.
//! - **A real bus**: a private dbus-daemon, a client standing in for gnome-shell (it owns
//!   `org.gnome.Shell` and calls `Report` as the extension does) and for KWin (it owns
//!   `org.kde.KWin` and serves `/Scripting`, then reports as the script does), and the real
//!   tracker: focus records with the right, procs-enriched pid; an impostor refused; the
//!   compositor leaving and coming back.

mod common;

use common::{spawn_focus, wait_until};
use imprint_procs::ProcTable;
use imprint_session::gnome::{owner_change, parse_report, ReportError, GNOME_SHELL};
use imprint_session::kde::KWIN;
use imprint_session::{FocusConfig, Report, Resolver, TrackerKind, WindowReport};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use zbus::message::Type as MessageType;
use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{Endian, Value};
use zbus::Message;

const T: Duration = Duration::from_secs(20);

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/focus")
}

/// The packets of a pcap file (`dbus-monitor --pcap`: link type 231, D-Bus).
fn pcap_packets(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).expect("read pcap");
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let u32le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    assert_eq!(u32le(20), 231, "DLT_DBUS");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let len = u32le(off + 8) as usize;
        assert_eq!(len, u32le(off + 12) as usize, "whole packets");
        out.push(b[off + 16..off + 16 + len].to_vec());
        off += 16 + len;
    }
    assert_eq!(off, b.len(), "trailing bytes in {}", path.display());
    out
}

/// Decodes one wire-format message, as zbus does with what it reads from the socket.
/// Like zbus's socket reader, it first checks the framing: the fixed header, and a total
/// length that matches the header's field and body lengths.
fn message(bytes: Vec<u8>) -> Result<Message, String> {
    if bytes.len() < 16 {
        return Err(format!("{}-byte message", bytes.len()));
    }
    let endian = match bytes[0] {
        b'l' => Endian::Little,
        b'B' => Endian::Big,
        b => return Err(format!("endianness byte {b:#x}")),
    };
    let u32at = |o: usize| {
        let a = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
        match endian {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    };
    let (body, fields) = (u32at(4) as usize, u32at(12) as usize);
    if 16 + fields.div_ceil(8) * 8 + body != bytes.len() {
        return Err("length mismatch".into());
    }
    // SAFETY: `from_bytes` is unsafe only because the bytes may be invalid; zbus checks the
    // header and zvariant the body, and invalid bytes are exactly what some tests feed it.
    unsafe { Message::from_bytes(Data::new(bytes, Context::new_dbus(endian, 0))) }
        .map_err(|e| e.to_string())
}

fn recorded(name: &str) -> Vec<Message> {
    pcap_packets(&data_dir().join(name))
        .into_iter()
        .map(|p| message(p).expect("a recorded message decodes"))
        .collect()
}

/// The calls the reporters made (to org.imprint.Focus), in order.
fn calls(all: &[Message]) -> Vec<Message> {
    all.iter().filter(|m| is_call(m)).cloned().collect()
}

/// gdbus introspects the destination before each call (`org.freedesktop.DBus.Introspectable`);
/// those are not the extension's calls.
fn is_call(m: &Message) -> bool {
    let h = m.header();
    h.message_type() == MessageType::MethodCall
        && h.destination().map(|d| d.to_string()).as_deref() == Some("org.imprint.Focus")
        && h.interface().map(|i| i.as_str()) == Some("org.imprint.Focus1")
}

fn sender(m: &Message) -> String {
    m.header().sender().expect("sender").to_string()
}

/// Parses `m` as if its sender were the compositor.
fn trusted(
    m: &Message,
    c: &imprint_session::gnome::Compositor,
    titles: bool,
) -> Result<Report, ReportError> {
    parse_report(m, c, Some(&sender(m)), titles)
}

fn window(r: Result<Report, ReportError>) -> WindowReport {
    match r {
        Ok(Report::Window(w)) => w,
        other => panic!("expected a window, got {other:?}"),
    }
}

#[test]
fn gnome_recorded_messages() {
    let all = recorded("gnome.pcap");
    let c = calls(&all);
    assert_eq!(c.len(), 9, "the calls record.sh makes");

    // 1: a window, as the extension reports it.
    let w = window(trusted(&c[0], &GNOME_SHELL, false));
    assert_eq!(
        w,
        WindowReport {
            tracker: "gnome",
            pid: 4242,
            pid_verified: true,
            app_id: "org.gnome.TextEditor".into(),
            wm_class: "org.gnome.TextEditor".into(),
            title: String::new(),
            rect: Default::default(),
        },
        "titles are off: the title the reporter sent is dropped"
    );
    let w = window(trusted(&c[0], &GNOME_SHELL, true));
    assert_eq!(w.title, "notes.txt");

    // 2: nothing focused.
    assert_eq!(
        trusted(&c[1], &GNOME_SHELL, false),
        Ok(Report::NoWindow { tracker: "gnome" })
    );
    // 3: an Xwayland window: Mutter may have its pid from the client's own claim.
    let w = window(trusted(&c[2], &GNOME_SHELL, false));
    assert_eq!(
        (
            w.pid,
            w.wm_class.as_str(),
            w.app_id.as_str(),
            w.pid_verified
        ),
        (5151, "XTerm", "", false)
    );
    // 4..9: malformed.
    assert_eq!(
        trusted(&c[3], &GNOME_SHELL, false),
        Err(ReportError::Type {
            field: "pid".into(),
            want: "an integer",
            got: "s".into()
        })
    );
    assert_eq!(
        trusted(&c[4], &GNOME_SHELL, false),
        Err(ReportError::Missing("pid"))
    );
    assert_eq!(
        trusted(&c[5], &GNOME_SHELL, false),
        Err(ReportError::Signature("i".into()))
    );
    let e = trusted(&c[6], &GNOME_SHELL, false).expect_err("Hello is no method of ours");
    assert!(
        matches!(&e, ReportError::UnknownMethod { member, .. } if member == "Hello"),
        "{e:?}"
    );
    assert_eq!(e.dbus_name(), "org.freedesktop.DBus.Error.UnknownMethod");
    assert_eq!(
        trusted(&c[7], &GNOME_SHELL, false),
        Err(ReportError::Pid("-1".into()))
    );
    let e = trusted(&c[8], &GNOME_SHELL, false).expect_err("wm_class as a number");
    assert_eq!(
        e,
        ReportError::Type {
            field: "wm_class".into(),
            want: "a string",
            got: "u".into()
        }
    );
    assert_eq!(e.dbus_name(), "org.freedesktop.DBus.Error.InvalidArgs");
    assert!(e.to_string().contains("wm_class"), "{e}");

    // A well-formed report from anyone but the owner of org.gnome.Shell is refused.
    let other = sender(&c[1]);
    assert_ne!(other, sender(&c[0]));
    let e = parse_report(&c[0], &GNOME_SHELL, Some(&other), false).expect_err("impostor");
    assert_eq!(
        e,
        ReportError::Untrusted {
            sender: sender(&c[0]),
            expected: "org.gnome.Shell",
            owner: other
        }
    );
    assert_eq!(e.dbus_name(), "org.freedesktop.DBus.Error.AccessDenied");
    assert!(matches!(
        parse_report(&c[0], &GNOME_SHELL, None, false),
        Err(ReportError::Untrusted { .. })
    ));

    // Everything else on the bus (NameAcquired, the bus's error replies…) is no report.
    for m in all.iter().filter(|m| !is_call(m)) {
        assert!(parse_report(m, &GNOME_SHELL, Some(&sender(m)), false).is_err());
    }
}

#[test]
fn kde_recorded_messages() {
    let c = calls(&recorded("kde.pcap"));
    assert_eq!(c.len(), 6, "the calls record.sh makes");
    let w = window(trusted(&c[0], &KWIN, false));
    assert_eq!(
        w,
        WindowReport {
            tracker: "kde",
            pid: 3141,
            pid_verified: true,
            app_id: "org.kde.konsole".into(),
            wm_class: "org.kde.konsole".into(),
            title: String::new(),
            rect: Default::default(),
        }
    );
    assert_eq!(window(trusted(&c[0], &KWIN, true)).title, "bash — Konsole");
    // A JavaScript number marshalled as a double is still a pid when it is a whole one.
    let w = window(trusted(&c[1], &KWIN, false));
    assert_eq!((w.pid, w.app_id.as_str()), (3141, "org.kde.dolphin"));
    assert_eq!(
        trusted(&c[2], &KWIN, false),
        Err(ReportError::Pid("3141.5".into()))
    );
    assert_eq!(
        trusted(&c[3], &KWIN, false),
        Ok(Report::NoWindow { tracker: "kde" })
    );
    assert_eq!(
        trusted(&c[4], &KWIN, false),
        Err(ReportError::Pid("-7".into()))
    );
    assert_eq!(
        trusted(&c[5], &KWIN, false),
        Err(ReportError::Signature("(ssss)".into()))
    );
    // KWin's reports are not GNOME's: the trusted owner differs per compositor, and the
    // tracker name comes from the compositor, not from the message.
    let e = parse_report(&c[0], &KWIN, Some(":1.999"), false).expect_err("not kwin");
    assert!(e.to_string().contains("org.kde.KWin"), "{e}");
}

/// The bus's NameOwnerChanged signals, as recorded, are how the tracker follows the
/// compositor's name; nothing else (a client's look-alike signal) is taken for one.
#[test]
fn recorded_owner_changes() {
    let all = recorded("gnome.pcap");
    let c = calls(&all);
    let first = sender(&c[0]);
    let changes: Vec<String> = all.iter().filter_map(|m| owner_change(m, &first)).collect();
    assert_eq!(
        changes,
        vec![first.clone(), String::new()],
        "the connection got its name, then left"
    );
    // Calls and other names' changes are not this name's.
    assert!(c.iter().all(|m| owner_change(m, &first).is_none()));
    assert!(all
        .iter()
        .all(|m| owner_change(m, "org.gnome.Shell").is_none()));
}

/// Every truncation and every single-byte corruption of recorded reports decodes to an
/// error or a report: never a panic.
#[test]
fn corrupted_messages_never_panic() {
    let mut packets = Vec::new();
    for f in ["gnome.pcap", "kde.pcap"] {
        for p in pcap_packets(&data_dir().join(f)) {
            let m = message(p.clone()).expect("decodes");
            if m.header().member().map(|m| m.as_str()) == Some("Report") {
                packets.push(p);
            }
        }
    }
    let mut tried = 0;
    let mut accepted = 0;
    for p in &packets {
        let mut variants: Vec<Vec<u8>> = (0..p.len()).map(|n| p[..n].to_vec()).collect();
        for i in 0..p.len() {
            for x in [0x00, 0xff, 0x80] {
                let mut q = p.clone();
                q[i] ^= x;
                variants.push(q);
            }
        }
        for v in variants {
            tried += 1;
            let Ok(m) = message(v) else { continue };
            let owner = m.header().sender().map(|s| s.to_string());
            if parse_report(&m, &GNOME_SHELL, owner.as_deref(), true).is_ok() {
                accepted += 1;
            }
        }
    }
    assert!(tried > 10_000, "{tried}");
    // Corrupting a title's bytes, say, still leaves a valid report; most corruptions don't.
    assert!(accepted < tried / 2, "{accepted} of {tried}");
}

/// The recorded GNOME report, through the resolver, becomes the focus record.
#[test]
fn recorded_report_to_focus_record() {
    let c = calls(&recorded("gnome.pcap"));
    let mut w = window(trusted(&c[0], &GNOME_SHELL, false));
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let mut r = Resolver::new(FocusConfig::default(), ProcTable::new(false), tx);
    // The recorded pid is not alive here: the record keeps what the compositor said.
    let f = r.resolve(&w);
    assert_eq!(
        (
            f.tracker.as_str(),
            f.pid,
            f.pid_verified,
            f.app_id.as_str(),
            f.wm_class.as_str(),
            f.title.as_str(),
            f.unknown
        ),
        (
            "gnome",
            4242,
            true,
            "org.gnome.TextEditor",
            "org.gnome.TextEditor",
            "",
            false
        )
    );
    // The same report naming a live process is enriched from /proc.
    let child = Kill(sleeper());
    w.pid = child.0.id();
    let f = r.resolve(&w);
    assert!(f.exe.ends_with("/sleep"), "{f:?}");
    assert_ne!(f.start_time, 0);
    assert_eq!(f.app_id, "org.gnome.TextEditor");
}

// ---------------------------------------------------------------------------------------
// A real bus.

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

const NOBODY: u32 = 65534;

/// A private session bus run by `nobody`, as a user's bus is run by that user, with the
/// policy snippet of `packaging/FOCUS.md` admitting the collector's user (here root, the
/// user this test runs as): (daemon, address).
fn bus(dir: &Path) -> (Kill, String) {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <include>/usr/share/dbus-1/session.conf</include>
  <policy context="default">
    <allow user="root"/>
  </policy>
</busconfig>
"#,
    )
    .expect("bus.conf");
    let sock = dir.join("bus");
    let addr = format!("unix:path={}", sock.display());
    let child = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "dbus-daemon",
            "--nofork",
            &format!("--config-file={}", conf.display()),
            &format!("--address={addr}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dbus-daemon (apt-get install dbus-daemon)");
    wait_until("the bus socket", T, || sock.exists().then_some(()));
    (Kill(child), addr)
}

async fn uid_of(conn: &zbus::Connection, name: &str) -> u32 {
    conn.call_method(
        Some("org.freedesktop.DBus"),
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus"),
        "GetConnectionUnixUser",
        &(name,),
    )
    .await
    .expect("GetConnectionUnixUser")
    .body()
    .deserialize::<u32>()
    .expect("uid")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(addr: &str) -> zbus::Connection {
    zbus::connection::Builder::address(addr)
        .expect("address")
        .build()
        .await
        .expect("connect")
}

/// Calls Report as the extension and the script do; the reply (titles wanted) or the error.
async fn report(
    conn: &zbus::Connection,
    fields: &[(&str, Value<'_>)],
) -> Result<bool, zbus::Error> {
    let map: HashMap<&str, &Value<'_>> = fields.iter().map(|(k, v)| (*k, v)).collect();
    let reply = conn
        .call_method(
            Some("org.imprint.Focus"),
            "/org/imprint/Focus1",
            Some("org.imprint.Focus1"),
            "Report",
            &(map,),
        )
        .await?;
    reply.body().deserialize::<bool>()
}

async fn has_owner(conn: &zbus::Connection, name: &str) -> bool {
    conn.call_method(
        Some("org.freedesktop.DBus"),
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus"),
        "NameHasOwner",
        &(name,),
    )
    .await
    .ok()
    .and_then(|r| r.body().deserialize::<bool>().ok())
    .unwrap_or(false)
}

/// A connection owning `name` (the compositor's bus name), once the collector is on the bus.
async fn compositor(addr: &str, name: &str) -> zbus::Connection {
    let c = connect(addr).await;
    c.request_name(name)
        .await
        .expect("own the compositor's name");
    c
}

async fn until_collector(conn: &zbus::Connection) {
    let deadline = tokio::time::Instant::now() + T;
    while !has_owner(conn, "org.imprint.Focus").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector never took org.imprint.Focus"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn gnome_live_bus() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_daemon, addr) = bus(dir.path());
    let rt = rt();
    let shell = rt.block_on(compositor(&addr, "org.gnome.Shell"));

    let cfg = FocusConfig {
        tracker: TrackerKind::Gnome,
        dbus_address: Some(addr.clone()),
        max_backoff_ms: 300,
        ..FocusConfig::default()
    };
    let focus = spawn_focus(move |tx| imprint_session::run(cfg, tx));
    rt.block_on(until_collector(&shell));
    // The bus is nobody's; the collector got in by the policy, as its own user. This is what
    // the extension checks before reporting: the name's owner is not a program of its user.
    assert_eq!(rt.block_on(uid_of(&shell, "org.freedesktop.DBus")), NOBODY);
    assert_eq!(rt.block_on(uid_of(&shell, "org.imprint.Focus")), 0);

    let app = Kill(sleeper());
    let pid = app.0.id();
    let wants_titles = rt
        .block_on(report(
            &shell,
            &[
                ("pid", Value::U32(pid)),
                ("wm_class", Value::from("org.example.Editor")),
                ("app_id", Value::from("org.example.Editor.desktop")),
                ("title", Value::from("secret.txt")),
                ("reporter", Value::from("gnome-shell-extension 1")),
            ],
        ))
        .expect("the collector answers gnome-shell");
    assert!(!wants_titles, "titles are off by default");
    let f = focus.wait_for("the reported window", T, |f| f.pid == pid);
    assert_eq!(f.tracker, "gnome");
    assert!(f.pid_verified);
    assert!(f.exe.ends_with("/sleep"), "enriched from /proc: {f:?}");
    assert_eq!(f.app_id, "org.example.Editor");
    assert_eq!(f.wm_class, "org.example.Editor");
    assert_eq!(f.title, "", "titles off: never recorded");

    // Anyone else is refused, and nothing is recorded.
    let impostor = rt.block_on(connect(&addr));
    let err = rt
        .block_on(report(&impostor, &[("pid", Value::U32(1))]))
        .expect_err("an impostor is refused");
    assert!(
        err.to_string().contains("AccessDenied") || err.to_string().contains("not org.gnome.Shell"),
        "{err}"
    );
    // A malformed report from the shell is answered with InvalidArgs.
    let err = rt
        .block_on(report(&shell, &[("pid", Value::from("7"))]))
        .expect_err("a string pid");
    assert!(err.to_string().contains("pid"), "{err}");
    // Focus leaves for the overview.
    rt.block_on(report(&shell, &[("pid", Value::U32(0))]))
        .expect("no window");
    let f = focus.wait_for("no window", T, |f| f.unknown);
    assert_eq!(f.tracker, "gnome");
    assert!(
        !focus.seen().iter().any(|f| f.pid == 1),
        "the impostor's report was recorded: {:?}",
        focus.seen()
    );

    // gnome-shell dies: focus is unknown until a new one reports.
    rt.block_on(report(&shell, &[("pid", Value::U32(pid))]))
        .expect("focus back");
    focus.wait_for("focus back", T, |f| f.pid == pid);
    drop(shell);
    focus.wait_for("unknown after gnome-shell left", T, |f| f.unknown);
    let shell = rt.block_on(compositor(&addr, "org.gnome.Shell"));
    let f = wait_until("focus records to resume", T, || {
        rt.block_on(async {
            until_collector(&shell).await;
            let _ = report(&shell, &[("pid", Value::U32(pid))]).await;
        });
        focus.try_wait_for(Duration::from_millis(300), |f| f.pid == pid)
    });
    assert!(!f.unknown);
}

/// Stands in for KWin's `/Scripting`: records what the collector asks, and on `start` makes
/// the report the script makes when it starts.
struct Scripting {
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    loaded: bool,
    pid: u32,
}

#[zbus::interface(name = "org.kde.kwin.Scripting")]
impl Scripting {
    #[zbus(name = "isScriptLoaded")]
    fn is_script_loaded(&self, name: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .push(format!("isScriptLoaded {name}"));
        self.loaded
    }
    #[zbus(name = "unloadScript")]
    fn unload_script(&mut self, name: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .push(format!("unloadScript {name}"));
        std::mem::replace(&mut self.loaded, false)
    }
    #[zbus(name = "loadScript")]
    fn load_script(&mut self, path: &str, name: &str) -> i32 {
        self.log
            .lock()
            .expect("log")
            .push(format!("loadScript {path} {name}"));
        self.loaded = true;
        7
    }
    #[zbus(name = "start")]
    async fn start(&self, #[zbus(connection)] conn: &zbus::Connection) {
        self.log.lock().expect("log").push("start".into());
        let conn = conn.clone();
        let pid = self.pid;
        // As the script's first report, after start() has returned.
        tokio::spawn(async move {
            let _ = report(
                &conn,
                &[
                    ("pid", Value::I32(pid as i32)),
                    ("wm_class", Value::from("org.kde.konsole")),
                    ("app_id", Value::from("org.kde.konsole")),
                    ("reporter", Value::from("kwin-script 1")),
                ],
            )
            .await;
        });
    }
}

#[test]
fn kde_live_bus_loads_the_script() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_daemon, addr) = bus(dir.path());
    // A multi-threaded runtime: the object server serves while the test blocks elsewhere.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let app = Kill(sleeper());
    let pid = app.0.id();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/kwin-script/imprint-focus");
    let kwin = rt.block_on(async {
        let c = compositor(&addr, "org.kde.KWin").await;
        c.object_server()
            .at(
                "/Scripting",
                Scripting {
                    log: log.clone(),
                    loaded: true,
                    pid,
                },
            )
            .await
            .expect("serve /Scripting");
        c
    });

    let cfg = FocusConfig {
        tracker: TrackerKind::Kde,
        dbus_address: Some(addr.clone()),
        kwin_script: Some(script.clone()),
        max_backoff_ms: 300,
        ..FocusConfig::default()
    };
    let focus = spawn_focus(move |tx| imprint_session::run(cfg, tx));
    let f = focus.wait_for("the script's first report", T, |f| f.pid == pid);
    assert_eq!(f.tracker, "kde");
    assert!(f.pid_verified);
    assert!(f.exe.ends_with("/sleep"), "{f:?}");
    assert_eq!(f.app_id, "org.kde.konsole");
    let main_js = script.join("contents/code/main.js");
    assert!(main_js.is_file());
    assert_eq!(
        *log.lock().expect("log"),
        vec![
            "isScriptLoaded imprint-focus".to_owned(),
            "unloadScript imprint-focus".to_owned(),
            format!("loadScript {} imprint-focus", main_js.display()),
            "start".to_owned(),
        ],
        "a running copy is replaced, so that it reports the current window at once"
    );
    drop(kwin);
    focus.wait_for("unknown after KWin left", T, |f| f.unknown);
}

/// The shipped extension and script, run by node against stubbed Shell / KWin APIs
/// (`tests/data/focus/reporters.test.mjs`): what they send, when, and to whom.
#[test]
fn reporters_against_stubbed_compositors() {
    let out = Command::new("node")
        .arg("--test")
        .arg(data_dir().join("reporters.test.mjs"))
        .output()
        .expect("run node (the rust machine has Node.js 20)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# fail 0"), "{text}");
}
