//! Messages on the collector's session socket (`/run/imprint/session.sock`): focus reports
//! from imprint-session and scope verdicts from the agent. One Cap'n Proto message per
//! SOCK_SEQPACKET packet; the collector decodes them as untrusted input with tight limits.

use crate::codec::{fill_focus, read_focus, DecodeError};
use crate::screen_codec::{
    fill_display, fill_pointer, fill_window, read_display, read_pointer, read_window,
};
use crate::{DisplayInfo, FocusInfo, PointerSample, WindowGeometry};
use capnp::message::{Builder, ReaderOptions};
use capnp::serialize;
use imprint_schema as schema;

/// The session socket's name in the collector's run directory.
pub const SOCKET_FILE: &str = "session.sock";

/// The largest packet the collector reads; a longer one is refused (and counted).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Device classes a verdict may admit (bits of [`Verdict::classes`]).
pub mod class {
    pub const KEYBOARD: u32 = 1;
    pub const POINTER: u32 = 2;
    pub const TOUCHPAD: u32 = 4;
    pub const TABLET: u32 = 8;
    pub const VIRTUAL: u32 = 16;
    pub const ALL: u32 = KEYBOARD | POINTER | TOUCHPAD | TABLET | VIRTUAL;

    const EV_REL: u32 = 2;
    const EV_ABS: u32 = 3;

    /// The event types (bit per EV_* type) that can matter under a verdict admitting
    /// `classes`: relative and absolute axes come only from pointers, touchpads and tablets
    /// (and virtual devices, which may send anything), so without those classes they stay out.
    pub fn type_mask(classes: u32) -> u32 {
        if classes & (POINTER | TOUCHPAD | TABLET | VIRTUAL) == 0 {
            !((1 << EV_REL) | (1 << EV_ABS))
        } else {
            u32::MAX
        }
    }

    /// Whether an event of type `kind` passes under a verdict admitting `classes`.
    pub fn admits(classes: u32, kind: u16) -> bool {
        classes != 0 && (kind >= 32 || type_mask(classes) & (1 << kind) != 0)
    }
}

/// The agent's scope decision for one focus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub focus_seq: u64,
    pub ring_epoch: u64,
    /// Bits of [`class`]; 0 admits nothing, so the collector closes the in-kernel gate.
    pub classes: u32,
}

/// One message on the session socket.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionMessage {
    Focus(Box<FocusInfo>),
    Verdict(Verdict),
    /// Asks the collector to publish the BPF programs' counters into the ring header now
    /// (they are otherwise refreshed only when events flow). From any local user.
    Refresh,
    /// Where the display server put the pointer (imprint-session → collector).
    Pointer(PointerSample),
    /// The session's screen layout, when it changes (imprint-session → collector).
    Display(Box<DisplayInfo>),
    /// The focused window moved or was resized (imprint-session → collector).
    Window(WindowGeometry),
}

/// Connects to the session socket at `path` (one SOCK_SEQPACKET connection per sender).
pub fn connect(path: &std::path::Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// Sends `msg` as one packet on `fd` without blocking and without SIGPIPE.
pub fn send(fd: &std::os::fd::OwnedFd, msg: &SessionMessage) -> std::io::Result<()> {
    use nix::sys::socket::MsgFlags;
    use std::os::fd::AsRawFd;
    let packet = encode_message(msg);
    nix::sys::socket::send(
        fd.as_raw_fd(),
        &packet,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(())
}

fn options() -> ReaderOptions {
    *ReaderOptions::new()
        .traversal_limit_in_words(Some(MAX_MESSAGE_BYTES / 8))
        .nesting_limit(4)
}

/// Encodes `msg` as one packet.
pub fn encode_message(msg: &SessionMessage) -> Vec<u8> {
    let mut builder = Builder::new_default();
    let mut root = builder.init_root::<schema::session_message::Builder>();
    match msg {
        SessionMessage::Focus(f) => fill_focus(root.init_focus(), f),
        SessionMessage::Verdict(v) => {
            let mut b = root.init_verdict();
            b.set_focus_seq(v.focus_seq);
            b.set_ring_epoch(v.ring_epoch);
            b.set_classes(v.classes);
        }
        SessionMessage::Refresh => root.set_refresh(()),
        SessionMessage::Pointer(p) => fill_pointer(root.init_pointer(), p),
        SessionMessage::Display(d) => fill_display(root.init_display(), d),
        SessionMessage::Window(w) => fill_window(root.init_window(), w),
    }
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail.
    let _ = serialize::write_message(&mut out, &builder);
    out
}

/// Decodes one packet; anything malformed, oversized or trailing is an error.
pub fn decode_message(mut packet: &[u8]) -> Result<SessionMessage, DecodeError> {
    if packet.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::Capnp(capnp::Error::failed(format!(
            "message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
            packet.len()
        ))));
    }
    let reader = serialize::read_message_from_flat_slice(&mut packet, options())?;
    if !packet.is_empty() {
        return Err(DecodeError::Capnp(capnp::Error::failed(
            "trailing bytes after the message".into(),
        )));
    }
    let root = reader.get_root::<schema::session_message::Reader>()?;
    Ok(match root.which()? {
        schema::session_message::Which::Focus(f) => {
            SessionMessage::Focus(Box::new(read_focus(f?)?))
        }
        schema::session_message::Which::Verdict(v) => {
            let v = v?;
            SessionMessage::Verdict(Verdict {
                focus_seq: v.get_focus_seq(),
                ring_epoch: v.get_ring_epoch(),
                classes: v.get_classes(),
            })
        }
        schema::session_message::Which::Refresh(()) => SessionMessage::Refresh,
        schema::session_message::Which::Pointer(p) => {
            let p = read_pointer(p?);
            finite("pointer position", &[p.x, p.y])?;
            SessionMessage::Pointer(p)
        }
        schema::session_message::Which::Display(d) => {
            let d = read_display(d?)?;
            let scales: Vec<f64> = d.monitors.iter().map(|m| m.scale).collect();
            finite("monitor scale", &scales)?;
            SessionMessage::Display(Box::new(d))
        }
        schema::session_message::Which::Window(w) => SessionMessage::Window(read_window(w?)),
    })
}

/// A helper's numbers go into the dataset as they are: NaN or infinite ones are refused.
fn finite(what: &str, values: &[f64]) -> Result<(), DecodeError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(DecodeError::Capnp(capnp::Error::failed(format!(
            "{what} is not a finite number"
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TtyMode, WindowRect};

    #[test]
    fn messages_round_trip() {
        let focus = SessionMessage::Focus(Box::new(FocusInfo {
            pid: 42,
            exe: "/usr/bin/bash".into(),
            tty: TtyMode::NoEcho,
            locked: true,
            locked_by: "x11:i3lock".into(),
            secure_field: true,
            window: WindowRect {
                x: -5,
                y: 7,
                width: 640,
                height: 480,
            },
            ..Default::default()
        }));
        let verdict = SessionMessage::Verdict(Verdict {
            focus_seq: 9,
            ring_epoch: 3,
            classes: class::POINTER,
        });
        let pointer = SessionMessage::Pointer(PointerSample {
            mono_ns: 5,
            x: 10.0,
            y: 799.0,
            trigger: crate::PointerTrigger::Release,
            button: 1,
            ..Default::default()
        });
        let display = SessionMessage::Display(Box::new(DisplayInfo {
            server: "x11".into(),
            width: 1280,
            height: 800,
            pointer: true,
            ..Default::default()
        }));
        let window = SessionMessage::Window(WindowGeometry {
            focus: 3,
            ..Default::default()
        });
        for m in [
            focus,
            verdict,
            SessionMessage::Refresh,
            pointer,
            display,
            window,
        ] {
            assert_eq!(decode_message(&encode_message(&m)).expect("decodes"), m);
        }
    }

    #[test]
    fn verdict_classes_gate_event_types() {
        assert!(
            !class::admits(0, 1),
            "nothing passes a verdict that admits nothing"
        );
        assert!(class::admits(class::ALL, 2));
        // Keyboard only: keys and syncs pass, pointer axes stay out.
        assert!(class::admits(class::KEYBOARD, 1) && class::admits(class::KEYBOARD, 0));
        assert!(!class::admits(class::KEYBOARD, 2) && !class::admits(class::KEYBOARD, 3));
        // A pointer class lets axes through (buttons are EV_KEY either way).
        assert!(class::admits(class::POINTER, 2) && class::admits(class::POINTER, 1));
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let good = encode_message(&SessionMessage::Verdict(Verdict::default()));
        assert!(decode_message(&[]).is_err());
        assert!(decode_message(&good[..good.len() - 1]).is_err());
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 8]);
        assert!(decode_message(&trailing).is_err());
        assert!(decode_message(&vec![0xff; MAX_MESSAGE_BYTES + 1]).is_err());
        // Every truncation and every single-byte flip decodes or errs; none panics.
        for cut in 0..good.len() {
            let _ = decode_message(&good[..cut]);
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            let _ = decode_message(&b);
        }
    }

    #[test]
    fn positions_and_scales_that_are_not_numbers_are_refused() {
        for (x, y) in [
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
            (f64::NEG_INFINITY, 0.0),
        ] {
            let p = SessionMessage::Pointer(PointerSample {
                x,
                y,
                ..Default::default()
            });
            assert!(decode_message(&encode_message(&p)).is_err(), "{x} {y}");
        }
        let d = SessionMessage::Display(Box::new(DisplayInfo {
            monitors: vec![crate::Monitor {
                scale: f64::NAN,
                ..Default::default()
            }],
            ..Default::default()
        }));
        assert!(decode_message(&encode_message(&d)).is_err());
        let ok = SessionMessage::Pointer(PointerSample {
            x: 12.5,
            y: -3.0,
            ..Default::default()
        });
        assert_eq!(decode_message(&encode_message(&ok)).ok(), Some(ok));
    }
}

#[cfg(test)]
mod seeds {
    use super::*;

    /// Writes the fuzz seeds for the session-socket decoder (tests/fuzz/corpus/session_message).
    #[test]
    #[ignore = "regenerates fuzz seeds: IMPRINT_WRITE_SEEDS=DIR cargo test -p imprint-record -- --ignored"]
    fn write_fuzz_seeds() {
        let dir = std::env::var("IMPRINT_WRITE_SEEDS").expect("IMPRINT_WRITE_SEEDS=DIR");
        let focus = SessionMessage::Focus(Box::new(FocusInfo {
            pid: 4242,
            start_time: 99,
            exe: "/usr/bin/bash".into(),
            terminal_pid: 4200,
            terminal_exe: "/usr/bin/xterm".into(),
            tracker: "x11".into(),
            wm_class: "xterm.XTerm".into(),
            tty: crate::TtyMode::NoEcho,
            locked: true,
            locked_by: "x11:i3lock".into(),
            secure_field: true,
            role: "password text".into(),
            ..Default::default()
        }));
        let verdict = SessionMessage::Verdict(Verdict {
            focus_seq: 7,
            ring_epoch: 12345,
            classes: class::KEYBOARD | class::POINTER,
        });
        std::fs::write(format!("{dir}/seed-focus"), encode_message(&focus)).expect("write");
        std::fs::write(format!("{dir}/seed-verdict"), encode_message(&verdict)).expect("write");
        std::fs::write(
            format!("{dir}/seed-refresh"),
            encode_message(&SessionMessage::Refresh),
        )
        .expect("write");
    }
}
