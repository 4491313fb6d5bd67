//! The display server's pointer samples of one session, and the join of kernel events to
//! them by time. Positions come only from samples: relative motion deltas are never integrated
//! (acceleration, scaling and warps make that impossible).

use imprint_record::{PointerSample, PointerTrigger};

/// The farthest a sample may be from the kernel event it gives a position to.
pub const JOIN_WINDOW_NS: u64 = 250_000_000;

/// X button numbers of the wheel (4 up, 5 down, 6 left, 7 right).
const X_WHEEL_VERTICAL: [u32; 2] = [4, 5];
const X_WHEEL_HORIZONTAL: [u32; 2] = [6, 7];

/// One sample, with the time it is joined on and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// The display server's event time when known, else when the helper read it.
    pub t: u64,
    pub s: PointerSample,
    /// Index of the record in the session's items.
    pub item: usize,
}

/// What a kernel event wants a position for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// A press or release of X button `1`…; falls back to no other trigger.
    Button(PointerTrigger, u32),
    /// A wheel event on one axis; falls back to the nearest motion sample.
    Scroll { horizontal: bool },
}

/// A sample found for an event, and how far from it in time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Found {
    pub x: f64,
    pub y: f64,
    /// Sample time − kernel event time, in ms (positive: the sample is later).
    pub lag_ms: f64,
    pub focus: u64,
}

/// A session's samples, sorted by join time; each is given to at most one kernel event.
#[derive(Debug, Default)]
pub struct Samples {
    list: Vec<Sample>,
    used: Vec<bool>,
}

impl Samples {
    /// Sorts `list` by join time.
    pub fn new(mut list: Vec<Sample>) -> Samples {
        list.sort_by_key(|s| s.t);
        let used = vec![false; list.len()];
        Samples { list, used }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The motion samples, in time order.
    pub fn motion(&self) -> impl Iterator<Item = &Sample> {
        self.list
            .iter()
            .filter(|s| s.s.trigger == PointerTrigger::Motion)
    }

    /// Motion samples strictly between two instants.
    pub fn motion_between(&self, from: u64, to: u64) -> Vec<Sample> {
        let start = self.list.partition_point(|s| s.t <= from);
        self.list[start..]
            .iter()
            .take_while(|s| s.t < to)
            .filter(|s| s.s.trigger == PointerTrigger::Motion)
            .copied()
            .collect()
    }

    /// The nearest unused sample that fits `want`, within [`JOIN_WINDOW_NS`] of `t`.
    pub fn join(&mut self, t: u64, want: Want) -> Option<Found> {
        let fits = |s: &PointerSample| match want {
            Want::Button(trigger, button) => s.trigger == trigger && s.button == button,
            Want::Scroll { horizontal } => {
                let buttons = if horizontal {
                    X_WHEEL_HORIZONTAL
                } else {
                    X_WHEEL_VERTICAL
                };
                s.trigger == PointerTrigger::Scroll
                    && (s.button == 0 || buttons.contains(&s.button))
            }
        };
        let i = self.nearest(t, |s| fits(s)).or_else(|| match want {
            Want::Scroll { .. } => self.nearest(t, |s| s.trigger == PointerTrigger::Motion),
            Want::Button(..) => None,
        })?;
        if !matches!(want, Want::Scroll { .. }) || self.list[i].s.trigger != PointerTrigger::Motion
        {
            // A motion sample can place several scrolls; a press or release sample is one
            // server event and belongs to one kernel event.
            self.used[i] = true;
        }
        let s = self.list[i];
        Some(Found {
            x: s.s.x,
            y: s.s.y,
            lag_ms: (s.t as f64 - t as f64) / 1e6,
            focus: s.s.focus,
        })
    }

    fn nearest(&self, t: u64, fits: impl Fn(&PointerSample) -> bool) -> Option<usize> {
        let lo = self
            .list
            .partition_point(|s| s.t < t.saturating_sub(JOIN_WINDOW_NS));
        let hi = self
            .list
            .partition_point(|s| s.t <= t.saturating_add(JOIN_WINDOW_NS));
        (lo..hi)
            .filter(|&i| !self.used[i] && fits(&self.list[i].s))
            .min_by_key(|&i| self.list[i].t.abs_diff(t))
    }
}

/// The X button number of a kernel button code (BTN_LEFT 1, BTN_MIDDLE 2, BTN_RIGHT 3,
/// BTN_SIDE 8, BTN_EXTRA 9), as display servers number them; 0 for others.
pub fn x_button(code: u16) -> u32 {
    match code {
        0x110 => 1,
        0x112 => 2,
        0x111 => 3,
        0x113 => 8,
        0x114 => 9,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64, trigger: PointerTrigger, button: u32, x: f64) -> Sample {
        Sample {
            t,
            s: PointerSample {
                mono_ns: t,
                x,
                y: 1.0,
                trigger,
                button,
                ..Default::default()
            },
            item: 0,
        }
    }

    #[test]
    fn joins_the_nearest_matching_sample_once() {
        let ms = 1_000_000;
        let mut s = Samples::new(vec![
            sample(100 * ms, PointerTrigger::Press, 1, 10.0),
            sample(95 * ms, PointerTrigger::Press, 3, 20.0),
            sample(400 * ms, PointerTrigger::Press, 1, 30.0),
        ]);
        let want = Want::Button(PointerTrigger::Press, 1);
        let f = s.join(98 * ms, want).expect("found");
        assert_eq!(f.x, 10.0);
        assert!((f.lag_ms - 2.0).abs() < 1e-9);
        // Used once: the next left press 300 ms later gets its own sample, not this one.
        assert_eq!(s.join(99 * ms, want), None);
        assert_eq!(s.join(390 * ms, want).map(|f| f.x), Some(30.0));
        // Outside the window: nothing.
        assert_eq!(
            s.join(900 * ms, Want::Button(PointerTrigger::Press, 3)),
            None
        );
    }

    #[test]
    fn scrolls_fall_back_to_motion() {
        let ms = 1_000_000;
        let mut s = Samples::new(vec![sample(10 * ms, PointerTrigger::Motion, 0, 5.0)]);
        let f = s.join(20 * ms, Want::Scroll { horizontal: false });
        assert_eq!(f.map(|f| f.x), Some(5.0));
        // A motion sample places any number of scrolls.
        assert!(s
            .join(30 * ms, Want::Scroll { horizontal: false })
            .is_some());
    }
}
