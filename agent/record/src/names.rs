//! The kernel's symbolic names for event types and codes (`EV_KEY`, `KEY_A`, `REL_X`),
//! taken from the `evdev` crate's tables; unknown values fall back to their number.

use evdev::{
    AbsoluteAxisCode, KeyCode, LedCode, MiscCode, RelativeAxisCode, SoundCode, SwitchCode,
    SynchronizationCode,
};
use std::borrow::Cow;

/// `EV_*` name of an event type.
pub fn type_name(kind: u16) -> Cow<'static, str> {
    Cow::Borrowed(match kind {
        0x00 => "EV_SYN",
        0x01 => "EV_KEY",
        0x02 => "EV_REL",
        0x03 => "EV_ABS",
        0x04 => "EV_MSC",
        0x05 => "EV_SW",
        0x11 => "EV_LED",
        0x12 => "EV_SND",
        0x14 => "EV_REP",
        0x15 => "EV_FF",
        0x16 => "EV_PWR",
        0x17 => "EV_FF_STATUS",
        other => return Cow::Owned(format!("EV_{other:#04x}")),
    })
}

/// Symbolic name of `code` within event type `kind`.
pub fn code_name(kind: u16, code: u16) -> Cow<'static, str> {
    // The evdev crate's Debug impls print the kernel name, or "unknown ..." for gaps in
    // its tables; the latter falls back to the number.
    let name = match kind {
        0x00 => format!("{:?}", SynchronizationCode(code)),
        0x01 => format!("{:?}", KeyCode(code)),
        0x02 => format!("{:?}", RelativeAxisCode(code)),
        0x03 => format!("{:?}", AbsoluteAxisCode(code)),
        0x04 => format!("{:?}", MiscCode(code)),
        0x05 => format!("{:?}", SwitchCode(code)),
        0x11 => format!("{:?}", LedCode(code)),
        0x12 => format!("{:?}", SoundCode(code)),
        _ => return Cow::Owned(code.to_string()),
    };
    if name.contains(' ') {
        Cow::Owned(code.to_string())
    } else {
        Cow::Owned(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names() {
        assert_eq!(type_name(1), "EV_KEY");
        assert_eq!(code_name(1, 30), "KEY_A");
        assert_eq!(code_name(1, 0x110), "BTN_LEFT");
        assert_eq!(code_name(2, 0), "REL_X");
        assert_eq!(code_name(2, 8), "REL_WHEEL");
        assert_eq!(code_name(0, 0), "SYN_REPORT");
        assert_eq!(code_name(4, 4), "MSC_SCAN");
        assert_eq!(code_name(1, 0x2ff), "767");
    }
}
