//! sway (and i3-compatible) IPC: `"i3-ipc"`, u32 length, u32 type, JSON payload, in native
//! byte order. The tracker subscribes to `window` and `workspace` events and reads the
//! focused container's `pid` (sway takes it from the Wayland client's socket credentials:
//! verified) and `app_id` (or, for Xwayland windows, `window_properties.class`).
//!
//! i3 on X11 reports no pids; under i3 the [`super::x11`] tracker is used instead.

use super::{send, FocusConfig, FocusError, Report, ReportTx, WindowReport};
use imprint_procs::logind::Session;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const TRACKER: &str = "sway";
const MAGIC: &[u8; 6] = b"i3-ipc";
/// Message types.
pub const RUN_COMMAND: u32 = 0;
pub const SUBSCRIBE: u32 = 2;
pub const GET_TREE: u32 = 4;
/// Event types have the high bit set.
pub const EVENT_WORKSPACE: u32 = 0x8000_0000;
pub const EVENT_WINDOW: u32 = 0x8000_0003;
pub const EVENT_SHUTDOWN: u32 = 0x8000_0006;
/// A tree of a few thousand windows is well under this.
const MAX_PAYLOAD: usize = 64 << 20;

/// Encodes one IPC message.
pub fn encode(ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(14 + payload.len());
    m.extend_from_slice(MAGIC);
    m.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// Reads one IPC message: (type, payload).
pub async fn read_message(s: &mut UnixStream) -> Result<(u32, Vec<u8>), FocusError> {
    let mut hdr = [0u8; 14];
    s.read_exact(&mut hdr)
        .await
        .map_err(|e| FocusError::io("sway ipc", e))?;
    if &hdr[..6] != MAGIC {
        return Err(FocusError::Protocol("sway ipc: bad magic".into()));
    }
    let len = u32::from_ne_bytes([hdr[6], hdr[7], hdr[8], hdr[9]]) as usize;
    let ty = u32::from_ne_bytes([hdr[10], hdr[11], hdr[12], hdr[13]]);
    if len > MAX_PAYLOAD {
        return Err(FocusError::Protocol(format!(
            "sway ipc: {len}-byte message"
        )));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)
        .await
        .map_err(|e| FocusError::io("sway ipc", e))?;
    Ok((ty, payload))
}

/// The newest `sway-ipc.*.sock` in `dir` (for `uid` when given) that accepts a connection.
pub fn discover(dir: &Path, uid: Option<u32>) -> Option<PathBuf> {
    let prefix = match uid {
        Some(u) => format!("sway-ipc.{u}."),
        None => "sway-ipc.".to_owned(),
    };
    let mut socks: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".sock")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    socks.sort();
    socks
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .find(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
}

/// What a window (container) says about itself.
pub fn window_report(c: &Value, titles: bool) -> WindowReport {
    let props = &c["window_properties"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    WindowReport {
        tracker: TRACKER,
        pid: c["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        pid_verified: true,
        app_id: s(&c["app_id"]),
        wm_class: s(&props["class"]),
        title: if titles { s(&c["name"]) } else { String::new() },
        rect: rect_of(&c["rect"]),
    }
}

/// A sway `rect` (`{"x", "y", "width", "height"}`, in the layout's logical pixels).
fn rect_of(r: &Value) -> imprint_record::WindowRect {
    let int = |k: &str| {
        r[k].as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0)
    };
    let size = |k: &str| {
        r[k].as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    imprint_record::WindowRect {
        x: int("x"),
        y: int("y"),
        width: size("width"),
        height: size("height"),
    }
}

/// The focused leaf container in a `get_tree` reply.
pub fn focused_in_tree(node: &Value) -> Option<&Value> {
    let is_leaf = node["nodes"].as_array().is_none_or(|a| a.is_empty())
        && node["floating_nodes"]
            .as_array()
            .is_none_or(|a| a.is_empty());
    if node["focused"].as_bool() == Some(true) {
        let ty = node["type"].as_str().unwrap_or_default();
        return (is_leaf && (ty == "con" || ty == "floating_con")).then_some(node);
    }
    for key in ["nodes", "floating_nodes"] {
        if let Some(children) = node[key].as_array() {
            for c in children {
                if let Some(f) = focused_in_tree(c) {
                    return Some(f);
                }
            }
        }
    }
    None
}

/// What one event means for focus (None: nothing changed).
pub fn interpret_event(
    ty: u32,
    payload: &Value,
    titles: bool,
    focused_id: &mut Option<i64>,
) -> Option<Report> {
    match ty {
        EVENT_WINDOW => {
            let change = payload["change"].as_str().unwrap_or_default();
            let c = &payload["container"];
            let id = c["id"].as_i64();
            match change {
                "focus" => {
                    *focused_id = id;
                    Some(Report::Window(window_report(c, titles)))
                }
                "title" if titles && id == *focused_id => {
                    Some(Report::Window(window_report(c, titles)))
                }
                "close" if id == *focused_id => {
                    *focused_id = None;
                    Some(Report::NoWindow { tracker: TRACKER })
                }
                _ => None,
            }
        }
        EVENT_WORKSPACE => {
            // Focus moved to an empty workspace: no window has focus. (A non-empty one is
            // followed by a window focus event.)
            let cur = &payload["current"];
            let empty = cur["nodes"].as_array().is_none_or(|a| a.is_empty())
                && cur["floating_nodes"]
                    .as_array()
                    .is_none_or(|a| a.is_empty());
            (payload["change"] == "focus" && empty).then(|| {
                *focused_id = None;
                Report::NoWindow { tracker: TRACKER }
            })
        }
        _ => None,
    }
}

/// Tracks focus over one IPC connection until it fails.
pub async fn run(
    cfg: &FocusConfig,
    session: Option<&Session>,
    tx: &ReportTx,
) -> Result<(), FocusError> {
    let path = match &cfg.sway_socket {
        Some(p) => p.clone(),
        None => {
            let dir = cfg
                .runtime_dir
                .clone()
                .or_else(|| session.map(|s| s.runtime_dir.clone()))
                .ok_or(FocusError::NotFound("sway (no runtime dir)"))?;
            discover(&dir, session.map(|s| s.uid)).ok_or(FocusError::NotFound("sway"))?
        }
    };
    let mut s = UnixStream::connect(&path)
        .await
        .map_err(|e| FocusError::io(format!("sway ipc {}", path.display()), e))?;
    s.write_all(&encode(SUBSCRIBE, br#"["window","workspace","shutdown"]"#))
        .await
        .map_err(|e| FocusError::io("sway ipc", e))?;
    // Subscribed first, then the tree: no change can fall between the two.
    s.write_all(&encode(GET_TREE, b""))
        .await
        .map_err(|e| FocusError::io("sway ipc", e))?;
    tracing::info!(socket = %path.display(), "sway focus tracker connected");
    let mut focused: Option<i64> = None;
    loop {
        let (ty, payload) = tokio::select! {
            m = read_message(&mut s) => m?,
            () = tx.closed() => return Err(FocusError::Closed),
        };
        let v: Value = serde_json::from_slice(&payload)
            .map_err(|e| FocusError::Protocol(format!("sway ipc json: {e}")))?;
        let report = match ty {
            SUBSCRIBE => {
                if v["success"].as_bool() != Some(true) {
                    return Err(FocusError::Protocol("sway refused the subscription".into()));
                }
                None
            }
            GET_TREE => Some(match focused_in_tree(&v) {
                Some(c) => {
                    focused = c["id"].as_i64();
                    Report::Window(window_report(c, cfg.titles))
                }
                None => Report::NoWindow { tracker: TRACKER },
            }),
            EVENT_SHUTDOWN => {
                return Err(FocusError::Protocol("sway is shutting down".into()));
            }
            _ => interpret_event(ty, &v, cfg.titles, &mut focused),
        };
        if let Some(r) = report {
            send(tx, r).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn framing() {
        let m = encode(SUBSCRIBE, b"[\"window\"]");
        assert_eq!(&m[..6], b"i3-ipc");
        assert_eq!(u32::from_ne_bytes([m[6], m[7], m[8], m[9]]), 10);
        assert_eq!(u32::from_ne_bytes([m[10], m[11], m[12], m[13]]), 2);
    }

    #[test]
    fn events() {
        let mut f = None;
        let ev = json!({"change": "focus", "container": {"id": 7, "pid": 42, "app_id": "one",
            "name": "secret title", "focused": true}});
        let Some(Report::Window(w)) = interpret_event(EVENT_WINDOW, &ev, false, &mut f) else {
            panic!("focus event")
        };
        assert_eq!(
            (w.pid, w.app_id.as_str(), w.title.as_str()),
            (42, "one", "")
        );
        assert_eq!(f, Some(7));
        let xw = json!({"change": "focus", "container": {"id": 8, "pid": 43, "app_id": null,
            "window_properties": {"class": "XTerm", "instance": "xterm"}}});
        let Some(Report::Window(w)) = interpret_event(EVENT_WINDOW, &xw, true, &mut f) else {
            panic!("xwayland focus")
        };
        assert_eq!((w.app_id.as_str(), w.wm_class.as_str()), ("", "XTerm"));
        let close = json!({"change": "close", "container": {"id": 8}});
        assert_eq!(
            interpret_event(EVENT_WINDOW, &close, false, &mut f),
            Some(Report::NoWindow { tracker: "sway" })
        );
        let ws = json!({"change": "focus", "current": {"nodes": [], "floating_nodes": []}});
        assert_eq!(
            interpret_event(EVENT_WORKSPACE, &ws, false, &mut f),
            Some(Report::NoWindow { tracker: "sway" })
        );
    }

    #[test]
    fn tree() {
        let t = json!({"type": "root", "focused": false, "nodes": [
            {"type": "output", "nodes": [{"type": "workspace", "nodes": [
                {"type": "con", "id": 4, "pid": 10, "focused": false, "nodes": []},
                {"type": "con", "id": 5, "pid": 11, "focused": true, "nodes": []}
            ], "floating_nodes": []}]}]});
        assert_eq!(
            focused_in_tree(&t).and_then(|c| c["pid"].as_u64()),
            Some(11)
        );
        let empty =
            json!({"type": "root", "nodes": [{"type": "workspace", "focused": true, "nodes": []}]});
        assert!(focused_in_tree(&empty).is_none());
    }
}
