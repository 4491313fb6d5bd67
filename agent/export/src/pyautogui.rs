//! The `pyautogui` column: each action as the pyautogui call that replays it, with positions
//! as 0–1 fractions of the monitor (as OpenCUA/AgentNet write them). None where no call
//! replays the action truthfully (a click at an unknown place, masked keys, focus, gaps).

use crate::rows::Action;
use crate::text::{MASKED_CHAR, MASKED_KEY};

/// The call for `a`, or None.
pub fn call(a: &Action) -> Option<String> {
    let at = || -> Option<String> { Some(format!("x={}, y={}", num(a.x_norm?), num(a.y_norm?))) };
    let button = a.button.as_deref().unwrap_or("left");
    match a.kind.as_str() {
        "click" => Some(match button {
            "left" => format!("pyautogui.click({})", at()?),
            b => format!("pyautogui.click({}, button={})", at()?, quote(b)),
        }),
        "double_click" => Some(format!("pyautogui.doubleClick({})", at()?)),
        "triple_click" => Some(format!("pyautogui.tripleClick({})", at()?)),
        "right_click" => Some(format!("pyautogui.rightClick({})", at()?)),
        "middle_click" => Some(format!("pyautogui.middleClick({})", at()?)),
        "long_press" => {
            let secs = (a.end_mono_ns.saturating_sub(a.start_mono_ns)) as f64 / 1e9;
            let b = quote(button);
            Some(format!(
                "pyautogui.moveTo({}); pyautogui.mouseDown(button={b}); pyautogui.sleep({}); pyautogui.mouseUp(button={b})",
                at()?,
                num(secs)
            ))
        }
        "drag" => {
            let secs = (a.end_mono_ns.saturating_sub(a.start_mono_ns)) as f64 / 1e9;
            Some(format!(
                "pyautogui.moveTo({}); pyautogui.dragTo(x={}, y={}, duration={}, button={})",
                at()?,
                num(a.end_x_norm?),
                num(a.end_y_norm?),
                num(secs),
                quote(button)
            ))
        }
        "move" => Some(format!("pyautogui.moveTo({})", at()?)),
        "scroll" | "hscroll" => {
            let f = if a.kind == "scroll" {
                "scroll"
            } else {
                "hscroll"
            };
            let clicks = a.scroll_detents?;
            Some(match at() {
                Some(p) => format!("pyautogui.{f}({clicks}, {p})"),
                None => format!("pyautogui.{f}({clicks})"),
            })
        }
        "type" => {
            let text = a.text.as_deref()?;
            if text.is_empty() || text.contains(MASKED_CHAR) {
                return None;
            }
            Some(format!("pyautogui.write({})", quote(text)))
        }
        "hotkey" => {
            let keys = a.keys.as_ref()?;
            if keys.iter().any(|k| k == MASKED_KEY) {
                return None;
            }
            let args: Vec<String> = keys.iter().map(|k| quote(k)).collect();
            Some(format!("pyautogui.hotkey({})", args.join(", ")))
        }
        "key" => {
            let key = a.keys.as_ref()?.last()?;
            if key == MASKED_KEY {
                return None;
            }
            let presses = a.repeat_count.unwrap_or(0) + 1;
            Some(if presses > 1 {
                format!("pyautogui.press({}, presses={presses})", quote(key))
            } else {
                format!("pyautogui.press({})", quote(key))
            })
        }
        _ => None,
    }
}

/// Four decimals, as AgentNet writes coordinates.
fn num(v: f64) -> String {
    format!("{v:.4}")
}

/// A Python string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: &str) -> Action {
        Action {
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn calls() {
        let mut a = action("click");
        assert_eq!(call(&a), None, "a click at an unknown place has no call");
        a.x_norm = Some(0.41234);
        a.y_norm = Some(0.21);
        assert_eq!(
            call(&a).as_deref(),
            Some("pyautogui.click(x=0.4123, y=0.2100)")
        );
        a.kind = "right_click".into();
        assert_eq!(
            call(&a).as_deref(),
            Some("pyautogui.rightClick(x=0.4123, y=0.2100)")
        );
        let mut t = action("type");
        t.text = Some("it's\n".into());
        assert_eq!(call(&t).as_deref(), Some("pyautogui.write('it\\'s\\n')"));
        t.text = Some(format!("ab{MASKED_CHAR}"));
        assert_eq!(call(&t), None);
        let mut h = action("hotkey");
        h.keys = Some(vec!["ctrl".into(), "s".into()]);
        assert_eq!(call(&h).as_deref(), Some("pyautogui.hotkey('ctrl', 's')"));
        let mut s = action("scroll");
        s.scroll_detents = Some(-3);
        assert_eq!(call(&s).as_deref(), Some("pyautogui.scroll(-3)"));
        let mut k = action("key");
        k.keys = Some(vec!["enter".into()]);
        assert_eq!(call(&k).as_deref(), Some("pyautogui.press('enter')"));
        assert_eq!(call(&action("focus")), None);
    }
}
