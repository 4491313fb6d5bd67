//! Where the pointer is, from the X server: the screen positions that kernel deltas cannot give
//! (acceleration, scaling and warps happen in the server). XInput2 raw events on the root say
//! *when* the pointer moved or a button changed, whoever holds a grab; a core `QueryPointer`
//! on the root then says *where*. Motion is read at most every [`MOTION_INTERVAL`], plus once
//! when it stops, so a fast drag costs tens of round trips a second, not hundreds.
//!
//! The same connection follows the screen layout (RandR 1.5 monitors, re-read on screen
//! changes) and the focused window's rectangle (its origin from `TranslateCoordinates`, which
//! unlike `GetGeometry` is relative to the root even under a reparenting window manager),
//! re-reported when the window is moved or resized.
//!
//! X server times are CLOCK_MONOTONIC milliseconds (truncated to 32 bits) on Linux, the clock
//! kernel input events carry, so each sample also says when the server saw its event.

use crate::reporter::Update;
use crate::x11::{connect, window_rect, BorrowedFd};
use crate::FocusError;
use imprint_record::{
    monotonic_now_ns, DisplayInfo, Monitor, PointerSample, PointerTrigger, WindowGeometry,
    WindowRect,
};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::time::Instant;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xinput::{self, XIEventMask};
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, Window,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

/// The shortest time between two position reads while the pointer moves (about 60 Hz).
pub const MOTION_INTERVAL: Duration = Duration::from_millis(16);

/// Server times further than this from now are not on our clock (a remote server).
const CLOCK_TRUST_MS: i64 = 10_000;

fn xerr(e: impl std::fmt::Display) -> FocusError {
    FocusError::X11(e.to_string())
}

/// The monotonic time of X server time `server_ms`, if the server's clock is ours.
pub fn server_time_to_mono_ns(server_ms: u32, now_ns: u64) -> Option<u64> {
    let now_ms = now_ns / 1_000_000;
    // Server times wrap at 2^32 ms; the difference, taken as signed, survives the wrap.
    let behind = i64::from((now_ms as u32).wrapping_sub(server_ms) as i32);
    if behind.abs() > CLOCK_TRUST_MS {
        return None;
    }
    let ms = (now_ms as i64).checked_sub(behind)?;
    u64::try_from(ms).ok().map(|m| m * 1_000_000)
}

/// A Display update saying positions are not available, and why.
pub fn unavailable(server: &str, why: &str) -> Update {
    Update::Display(Box::new(DisplayInfo {
        mono_ns: monotonic_now_ns(),
        server: server.into(),
        pointer: false,
        pointer_unavailable: why.into(),
        ..DisplayInfo::default()
    }))
}

/// Watches pointer, layout and the focused window's geometry on X display `display` (by
/// default `$DISPLAY`) until the connection fails or `tx` closes.
pub async fn watch_x11(
    display: Option<String>,
    xauthority: Option<PathBuf>,
    tx: mpsc::Sender<Update>,
) -> Result<(), FocusError> {
    let dpy = display
        .or_else(|| std::env::var("DISPLAY").ok())
        .filter(|d| !d.is_empty())
        .ok_or(FocusError::NotFound("X11 display"))?;
    let (conn, screen) = connect(&dpy, &crate::lock::xauthority_files(xauthority))?;
    let root = conn
        .setup()
        .roots
        .get(screen)
        .ok_or_else(|| FocusError::X11(format!("no screen {screen}")))?
        .root;
    if conn
        .extension_information(xinput::X11_EXTENSION_NAME)
        .map_err(xerr)?
        .is_none()
    {
        return Err(FocusError::X11("the server has no XInput extension".into()));
    }
    let v = xinput::xi_query_version(&conn, 2, 2)
        .map_err(xerr)?
        .reply()
        .map_err(xerr)?;
    if (v.major_version, v.minor_version) < (2, 1) {
        return Err(FocusError::X11(format!(
            "XInput {}.{}: raw events on the root need 2.1",
            v.major_version, v.minor_version
        )));
    }
    let raw =
        XIEventMask::RAW_MOTION | XIEventMask::RAW_BUTTON_PRESS | XIEventMask::RAW_BUTTON_RELEASE;
    xinput::xi_select_events(
        &conn,
        root,
        &[xinput::EventMask {
            deviceid: xinput::Device::ALL_MASTER.into(),
            mask: vec![raw],
        }],
    )
    .map_err(xerr)?
    .check()
    .map_err(xerr)?;
    conn.change_window_attributes(
        root,
        &ChangeWindowAttributesAux::new()
            .event_mask(EventMask::PROPERTY_CHANGE | EventMask::STRUCTURE_NOTIFY),
    )
    .map_err(xerr)?
    .check()
    .map_err(xerr)?;
    let has_randr = has_randr_15(&conn);
    if has_randr {
        let _ = conn.randr_select_input(
            root,
            randr::NotifyMask::SCREEN_CHANGE
                | randr::NotifyMask::CRTC_CHANGE
                | randr::NotifyMask::OUTPUT_CHANGE,
        );
    }
    let active_atom = conn
        .intern_atom(false, b"_NET_ACTIVE_WINDOW")
        .map_err(xerr)?
        .reply()
        .map_err(xerr)?
        .atom;
    tracing::info!(display = %dpy, xinput = %format!("{}.{}", v.major_version, v.minor_version), randr = has_randr, "x11 pointer watcher connected");

    // SAFETY: the connection (and so its socket) outlives `afd`, which is dropped first at
    // the end of this function; the fd number does not change while it is open.
    let afd = unsafe {
        AsyncFd::register_with_interest(BorrowedFd(conn.stream().as_raw_fd()), Interest::READABLE)
    }
    .map_err(|e| FocusError::io("x11 socket", e.into()))?;
    let mut w = Watcher {
        conn: &conn,
        root,
        has_randr,
        active_atom,
        active: None,
        active_rect: None,
        display: None,
        last_motion_read: None,
        motion_pending: None,
        dropped: 0,
    };
    let result = async {
        w.report_display(&tx).await?;
        w.follow_active()?;
        loop {
            loop {
                match conn.poll_for_event() {
                    Ok(Some(ev)) => w.on_event(ev, &tx).await?,
                    Ok(None) => break,
                    Err(e) => return Err(xerr(e)),
                }
            }
            conn.flush().map_err(xerr)?;
            let deadline = w
                .motion_pending
                .and_then(|_| w.last_motion_read.map(|t| t + MOTION_INTERVAL));
            tokio::select! {
                r = afd.readable() => match r {
                    Ok(mut g) => g.clear_ready(),
                    Err(e) => return Err(FocusError::io("x11 socket", e)),
                },
                () = sleep_until(deadline) => {
                    if let Some(time) = w.motion_pending.take() {
                        w.sample(PointerTrigger::Motion, 0, time, &tx)?;
                    }
                }
                () = tx.closed() => return Ok(()),
            }
        }
    }
    .await;
    drop(afd);
    if let Err(e) = &result {
        tracing::warn!(display = %dpy, error = %e, "x11 pointer watcher lost its display");
    }
    result
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn has_randr_15(conn: &RustConnection) -> bool {
    matches!(
        conn.extension_information(randr::X11_EXTENSION_NAME),
        Ok(Some(_))
    ) && conn
        .randr_query_version(1, 5)
        .ok()
        .and_then(|c| c.reply().ok())
        .is_some_and(|r| (r.major_version, r.minor_version) >= (1, 5))
}

struct Watcher<'a> {
    conn: &'a RustConnection,
    root: Window,
    has_randr: bool,
    active_atom: u32,
    /// The focused window whose geometry is followed.
    active: Option<Window>,
    active_rect: Option<WindowRect>,
    display: Option<DisplayInfo>,
    last_motion_read: Option<Instant>,
    /// Server time of motion not yet read (it came too soon after the last read).
    motion_pending: Option<u32>,
    /// Samples the reporter could not take (its queue was full).
    dropped: u64,
}

impl Watcher<'_> {
    async fn on_event(&mut self, ev: Event, tx: &mpsc::Sender<Update>) -> Result<(), FocusError> {
        match ev {
            Event::XinputRawMotion(m) => {
                let due = self
                    .last_motion_read
                    .is_none_or(|t| t.elapsed() >= MOTION_INTERVAL);
                if due {
                    self.motion_pending = None;
                    self.sample(PointerTrigger::Motion, 0, m.time, tx)?;
                } else {
                    self.motion_pending = Some(m.time);
                }
            }
            Event::XinputRawButtonPress(b) => {
                // Buttons 4-7 are the wheel: one press per detent, and a release that says
                // nothing more.
                let trigger = if (4..=7).contains(&b.detail) {
                    PointerTrigger::Scroll
                } else {
                    PointerTrigger::Press
                };
                self.sample(trigger, b.detail, b.time, tx)?;
            }
            Event::XinputRawButtonRelease(b) if !(4..=7).contains(&b.detail) => {
                self.sample(PointerTrigger::Release, b.detail, b.time, tx)?;
            }
            Event::PropertyNotify(p) if p.window == self.root && p.atom == self.active_atom => {
                self.follow_active()?;
            }
            Event::ConfigureNotify(c) if c.window == self.root => {
                self.report_display(tx).await?;
            }
            Event::ConfigureNotify(c) if Some(c.window) == self.active => {
                self.report_window(tx).await?;
            }
            Event::RandrScreenChangeNotify(_) | Event::RandrNotify(_) => {
                self.report_display(tx).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads the position now and reports it for a server event at `server_ms`.
    fn sample(
        &mut self,
        trigger: PointerTrigger,
        button: u32,
        server_ms: u32,
        tx: &mpsc::Sender<Update>,
    ) -> Result<(), FocusError> {
        let reply = self
            .conn
            .query_pointer(self.root)
            .map_err(xerr)?
            .reply()
            .map_err(xerr)?;
        let now = monotonic_now_ns();
        if trigger == PointerTrigger::Motion {
            self.last_motion_read = Some(Instant::now());
        }
        if !reply.same_screen {
            // On another screen of a multi-screen display: not a position on this root.
            return Ok(());
        }
        let sample = PointerSample {
            mono_ns: now,
            x: f64::from(reply.root_x),
            y: f64::from(reply.root_y),
            trigger,
            button,
            server_time_ms: server_ms,
            focus: 0,
            event_mono_ns: server_time_to_mono_ns(server_ms, now).unwrap_or(0),
        };
        // Never wait on the reporter here: a late position is worth less than the next.
        if tx.try_send(Update::Pointer(sample)).is_err() {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "pointer samples dropped: reporter busy"
                );
            }
        }
        Ok(())
    }

    /// The screen layout now.
    fn layout(&self) -> Result<DisplayInfo, FocusError> {
        let geo = self
            .conn
            .get_geometry(self.root)
            .map_err(xerr)?
            .reply()
            .map_err(xerr)?;
        let mut monitors = Vec::new();
        if self.has_randr {
            let reply = self
                .conn
                .randr_get_monitors(self.root, true)
                .map_err(xerr)?
                .reply()
                .map_err(xerr)?;
            for m in reply.monitors {
                let name = self
                    .conn
                    .get_atom_name(m.name)
                    .ok()
                    .and_then(|c| c.reply().ok())
                    .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                    .unwrap_or_default();
                monitors.push(Monitor {
                    name,
                    x: i32::from(m.x),
                    y: i32::from(m.y),
                    width: u32::from(m.width),
                    height: u32::from(m.height),
                    // X11 has no per-monitor scale: applications scale by DPI themselves.
                    scale: 1.0,
                    primary: m.primary,
                });
            }
        }
        if monitors.is_empty() {
            monitors.push(Monitor {
                name: "screen".into(),
                width: u32::from(geo.width),
                height: u32::from(geo.height),
                scale: 1.0,
                primary: true,
                ..Monitor::default()
            });
        }
        Ok(DisplayInfo {
            mono_ns: monotonic_now_ns(),
            server: "x11".into(),
            width: u32::from(geo.width),
            height: u32::from(geo.height),
            monitors,
            pointer: true,
            ..DisplayInfo::default()
        })
    }

    async fn report_display(&mut self, tx: &mpsc::Sender<Update>) -> Result<(), FocusError> {
        let d = self.layout()?;
        let same = self.display.as_ref().is_some_and(|old| {
            (old.width, old.height, &old.monitors) == (d.width, d.height, &d.monitors)
        });
        if !same {
            tracing::info!(
                width = d.width,
                height = d.height,
                monitors = d.monitors.len(),
                "screen layout"
            );
            self.display = Some(d.clone());
            if tx.send(Update::Display(Box::new(d))).await.is_err() {
                return Err(FocusError::Closed);
            }
        }
        Ok(())
    }

    /// Starts following the window `_NET_ACTIVE_WINDOW` names (its first geometry travels
    /// with the focus report; only later changes are reported from here).
    fn follow_active(&mut self) -> Result<(), FocusError> {
        let prop = self
            .conn
            .get_property(false, self.root, self.active_atom, AtomEnum::ANY, 0, 1)
            .map_err(xerr)?
            .reply()
            .map_err(xerr)?;
        let win = prop
            .value32()
            .and_then(|mut v| v.next())
            .filter(|&w| w != 0);
        if win == self.active {
            return Ok(());
        }
        self.active = win;
        self.active_rect = None;
        if let Some(w) = win {
            // A window that is already gone just sends no ConfigureNotify.
            let _ = self.conn.change_window_attributes(
                w,
                &ChangeWindowAttributesAux::new().event_mask(EventMask::STRUCTURE_NOTIFY),
            );
            self.active_rect = self.rect(w);
        }
        Ok(())
    }

    /// The window's rectangle, `None` when it is gone or cannot be read.
    fn rect(&self, win: Window) -> Option<WindowRect> {
        window_rect(self.conn, self.root, win)
            .ok()
            .filter(|r| *r != WindowRect::default())
    }

    async fn report_window(&mut self, tx: &mpsc::Sender<Update>) -> Result<(), FocusError> {
        let Some(win) = self.active else {
            return Ok(());
        };
        let Some(rect) = self.rect(win) else {
            return Ok(());
        };
        if self.active_rect == Some(rect) {
            return Ok(());
        }
        self.active_rect = Some(rect);
        let g = WindowGeometry {
            mono_ns: monotonic_now_ns(),
            focus: 0,
            rect,
        };
        if tx.send(Update::Window(g)).await.is_err() {
            return Err(FocusError::Closed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_times_map_to_our_clock_across_the_wrap() {
        let now = 5_000_000_123_456_789u64; // ~57 days of uptime
        let now_ms = now / 1_000_000;
        let t = (now_ms - 40) as u32;
        assert_eq!(
            server_time_to_mono_ns(t, now),
            Some((now_ms - 40) * 1_000_000)
        );
        // A server time just before a 2^32 wrap, read just after it.
        let after_wrap = (1u64 << 32) + 5; // ms
        let t = u32::MAX - 4; // 10 ms earlier
        assert_eq!(
            server_time_to_mono_ns(t, after_wrap * 1_000_000),
            Some((after_wrap - 10) * 1_000_000)
        );
        // Another machine's clock (a remote server) is not taken for ours.
        assert_eq!(
            server_time_to_mono_ns((now_ms as u32).wrapping_add(3_600_000), now),
            None
        );
    }
}
