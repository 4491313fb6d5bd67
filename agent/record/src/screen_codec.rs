//! Cap'n Proto encoding of the screen-space records (pointer positions, display layout, window
//! geometry), shared by the spool codec and the session socket's messages.

use super::codec::DecodeError;
use super::{DisplayInfo, Monitor, PointerSample, PointerTrigger, WindowGeometry, WindowRect};
use imprint_schema as schema;

/// Monitors kept per display: a bound on what one untrusted message can make us allocate.
pub const MAX_MONITORS: u32 = 32;

/// Writes a pointer sample into its builder.
pub fn fill_pointer(mut b: schema::pointer::Builder, p: &PointerSample) {
    b.set_mono_ns(p.mono_ns);
    b.set_x(p.x);
    b.set_y(p.y);
    b.set_trigger(match p.trigger {
        PointerTrigger::Unknown => schema::PointerTrigger::Unknown,
        PointerTrigger::Motion => schema::PointerTrigger::Motion,
        PointerTrigger::Press => schema::PointerTrigger::Press,
        PointerTrigger::Release => schema::PointerTrigger::Release,
        PointerTrigger::Scroll => schema::PointerTrigger::Scroll,
    });
    b.set_button(p.button);
    b.set_server_time_ms(p.server_time_ms);
    b.set_focus(p.focus);
    b.set_event_mono_ns(p.event_mono_ns);
}

/// Reads a pointer sample; an enumerant from a newer schema reads as `Unknown`.
pub fn read_pointer(p: schema::pointer::Reader) -> PointerSample {
    PointerSample {
        mono_ns: p.get_mono_ns(),
        x: p.get_x(),
        y: p.get_y(),
        trigger: match p.get_trigger() {
            Ok(schema::PointerTrigger::Motion) => PointerTrigger::Motion,
            Ok(schema::PointerTrigger::Press) => PointerTrigger::Press,
            Ok(schema::PointerTrigger::Release) => PointerTrigger::Release,
            Ok(schema::PointerTrigger::Scroll) => PointerTrigger::Scroll,
            Ok(schema::PointerTrigger::Unknown) | Err(_) => PointerTrigger::Unknown,
        },
        button: p.get_button(),
        server_time_ms: p.get_server_time_ms(),
        focus: p.get_focus(),
        event_mono_ns: p.get_event_mono_ns(),
    }
}

/// Writes a display description into its builder.
pub fn fill_display(mut b: schema::display::Builder, d: &DisplayInfo) {
    b.set_mono_ns(d.mono_ns);
    b.set_server(d.server.as_str());
    b.set_width(d.width);
    b.set_height(d.height);
    b.set_pointer(d.pointer);
    b.set_pointer_unavailable(d.pointer_unavailable.as_str());
    b.set_double_click_ms(d.double_click_ms);
    b.set_double_click_distance(d.double_click_distance);
    b.set_uid(d.uid);
    b.set_session(d.session.as_str());
    let n = u32::try_from(d.monitors.len())
        .unwrap_or(MAX_MONITORS)
        .min(MAX_MONITORS);
    let mut list = b.init_monitors(n);
    for (i, m) in d.monitors.iter().take(n as usize).enumerate() {
        let mut mb = list.reborrow().get(i as u32);
        mb.set_name(m.name.as_str());
        mb.set_x(m.x);
        mb.set_y(m.y);
        mb.set_width(m.width);
        mb.set_height(m.height);
        mb.set_scale(m.scale);
        mb.set_primary(m.primary);
    }
}

/// Reads a display description, keeping at most [`MAX_MONITORS`] monitors.
pub fn read_display(d: schema::display::Reader) -> Result<DisplayInfo, DecodeError> {
    let mut monitors = Vec::new();
    for m in d.get_monitors()?.iter().take(MAX_MONITORS as usize) {
        monitors.push(Monitor {
            name: m.get_name()?.to_str()?.to_owned(),
            x: m.get_x(),
            y: m.get_y(),
            width: m.get_width(),
            height: m.get_height(),
            scale: m.get_scale(),
            primary: m.get_primary(),
        });
    }
    Ok(DisplayInfo {
        mono_ns: d.get_mono_ns(),
        server: d.get_server()?.to_str()?.to_owned(),
        width: d.get_width(),
        height: d.get_height(),
        monitors,
        pointer: d.get_pointer(),
        pointer_unavailable: d.get_pointer_unavailable()?.to_str()?.to_owned(),
        double_click_ms: d.get_double_click_ms(),
        double_click_distance: d.get_double_click_distance(),
        uid: d.get_uid(),
        session: d.get_session()?.to_str()?.to_owned(),
    })
}

/// Writes a window geometry change into its builder.
pub fn fill_window(mut b: schema::window::Builder, w: &WindowGeometry) {
    b.set_mono_ns(w.mono_ns);
    b.set_focus(w.focus);
    b.set_x(w.rect.x);
    b.set_y(w.rect.y);
    b.set_width(w.rect.width);
    b.set_height(w.rect.height);
}

/// Reads a window geometry change.
pub fn read_window(w: schema::window::Reader) -> WindowGeometry {
    WindowGeometry {
        mono_ns: w.get_mono_ns(),
        focus: w.get_focus(),
        rect: WindowRect {
            x: w.get_x(),
            y: w.get_y(),
            width: w.get_width(),
            height: w.get_height(),
        },
    }
}
