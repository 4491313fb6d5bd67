//! Pointer motion coalescing (`policy.motion_interval_ms`, `policy.motion_distance`): relative
//! motion is summed per device and written as one REL_X/REL_Y frame when the interval has
//! passed since the last one written or the distance is reached. The sums are exact, so the
//! pointer's path is coarser but it ends where it did.

use super::keys::{EV_REL, REL_X, REL_Y};
use imprint_record::InputEvent;
use std::collections::HashMap;

/// Summed motion of one device, waiting to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Motion {
    pub device: u32,
    pub focus: u64,
    pub dx: i32,
    pub dy: i32,
    /// Event time of the last event summed.
    pub to_ns: u64,
    /// Ring seq of the first event summed: frames from there on are not on disk yet.
    pub seq: u64,
    /// REL_X/REL_Y events summed.
    pub events: u64,
}

impl Motion {
    /// The events written for it: REL_X and REL_Y (when not zero).
    pub fn events(&self) -> impl Iterator<Item = InputEvent> + '_ {
        [(REL_X, self.dx), (REL_Y, self.dy)]
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(code, value)| InputEvent {
                mono_ns: self.to_ns,
                device: self.device,
                kind: EV_REL,
                code,
                value,
                focus: self.focus,
            })
    }
}

struct Pending {
    m: Motion,
    /// The current frame added to it (its SYN_REPORT is then not written by itself).
    in_frame: bool,
}

/// Per-device motion sums.
#[derive(Default)]
pub struct Coalescer {
    interval_ns: u64,
    distance: i64,
    pending: HashMap<u32, Pending>,
    /// Event time of the last motion written, per device.
    last: HashMap<u32, u64>,
}

impl Coalescer {
    /// Off when both are 0.
    pub fn new(interval_ms: u64, distance: u32) -> Coalescer {
        Coalescer {
            interval_ns: interval_ms.saturating_mul(1_000_000),
            distance: i64::from(distance),
            ..Default::default()
        }
    }

    pub fn on(&self) -> bool {
        self.interval_ns > 0 || self.distance > 0
    }

    /// True for the events this sums.
    pub fn is_motion(e: &InputEvent) -> bool {
        e.kind == EV_REL && (e.code == REL_X || e.code == REL_Y)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds one REL_X/REL_Y event read from ring frame `seq`. Motion already summed that can
    /// not take it (another focus, or the sum would overflow) is returned, to be written first.
    pub fn add(&mut self, e: &InputEvent, seq: u64) -> Option<Motion> {
        let flushed = match self.pending.get(&e.device) {
            Some(p) => {
                let sum = if e.code == REL_X { p.m.dx } else { p.m.dy };
                if p.m.focus != e.focus || sum.checked_add(e.value).is_none() {
                    self.take(e.device)
                } else {
                    None
                }
            }
            None => None,
        };
        let p = self.pending.entry(e.device).or_insert(Pending {
            m: Motion {
                device: e.device,
                focus: e.focus,
                dx: 0,
                dy: 0,
                to_ns: e.mono_ns,
                seq,
                events: 0,
            },
            in_frame: false,
        });
        if e.code == REL_X {
            p.m.dx += e.value;
        } else {
            p.m.dy += e.value;
        }
        p.m.to_ns = p.m.to_ns.max(e.mono_ns);
        p.m.events += 1;
        p.in_frame = true;
        flushed
    }

    /// Ends a frame of `device` at time `t`: whether the frame's motion was summed here, and
    /// the sum when it is due (interval passed or distance reached).
    pub fn frame_end(&mut self, device: u32, t: u64) -> (bool, Option<Motion>) {
        let Some(p) = self.pending.get_mut(&device) else {
            return (false, None);
        };
        let summed = std::mem::take(&mut p.in_frame);
        let (dx, dy) = (i64::from(p.m.dx), i64::from(p.m.dy));
        let far = self.distance > 0 && dx * dx + dy * dy >= self.distance * self.distance;
        let late = self.interval_ns > 0
            && self
                .last
                .get(&device)
                .is_none_or(|l| t >= l.saturating_add(self.interval_ns));
        (summed, if far || late { self.take(device) } else { None })
    }

    /// The motion summed for `device`, taken to be written now.
    pub fn take(&mut self, device: u32) -> Option<Motion> {
        let p = self.pending.remove(&device)?;
        self.last.insert(device, p.m.to_ns);
        Some(p.m)
    }

    /// Everything summed, taken to be written now.
    pub fn take_all(&mut self) -> Vec<Motion> {
        let mut devices: Vec<u32> = self.pending.keys().copied().collect();
        devices.sort_unstable();
        devices.into_iter().filter_map(|d| self.take(d)).collect()
    }

    /// The ring seq of the oldest event summed and not yet written.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.pending.values().map(|p| p.m.seq).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: u64, code: u16, value: i32) -> InputEvent {
        InputEvent {
            mono_ns: t,
            device: 3,
            kind: EV_REL,
            code,
            value,
            focus: 1,
        }
    }

    /// Frames of (dx, dy) 1 ms apart; returns the motion written.
    fn run(c: &mut Coalescer, frames: &[(i32, i32)]) -> Vec<Motion> {
        let mut out = Vec::new();
        for (i, (dx, dy)) in frames.iter().enumerate() {
            let t = (i as u64 + 1) * 1_000_000;
            out.extend(c.add(&ev(t, REL_X, *dx), i as u64));
            out.extend(c.add(&ev(t, REL_Y, *dy), i as u64));
            let (summed, due) = c.frame_end(3, t);
            assert!(summed);
            out.extend(due);
        }
        out.extend(c.take_all());
        out
    }

    #[test]
    fn interval_sums_exactly() {
        let frames: Vec<(i32, i32)> = (0..100).map(|i| (i % 7 - 3, 2 - i % 5)).collect();
        let mut c = Coalescer::new(10, 0);
        let out = run(&mut c, &frames);
        let (sx, sy) = frames.iter().fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
        assert_eq!(out.iter().map(|m| m.dx).sum::<i32>(), sx);
        assert_eq!(out.iter().map(|m| m.dy).sum::<i32>(), sy);
        assert_eq!(out.iter().map(|m| m.events).sum::<u64>(), 200);
        // The first frame goes at once, then one per 10 ms.
        assert!((10..=12).contains(&out.len()), "{}", out.len());
        assert_eq!(out[0].events, 2);
        assert!(out.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn distance_threshold() {
        let mut c = Coalescer::new(0, 10);
        let out = run(&mut c, &[(3, 4); 6]);
        // |(6,8)| = 10: written every second frame.
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|m| (m.dx, m.dy) == (6, 8)));
    }

    #[test]
    fn another_focus_or_overflow_writes_what_was_summed() {
        let mut c = Coalescer::new(1000, 0);
        assert_eq!(c.add(&ev(1, REL_X, 5), 1), None);
        let mut other = ev(2, REL_X, 1);
        other.focus = 2;
        let m = c.add(&other, 2).expect("flushed");
        assert_eq!((m.focus, m.dx, m.seq), (1, 5, 1));
        assert_eq!(c.oldest_seq(), Some(2));
        c.add(&ev(3, REL_X, i32::MAX), 3);
        assert!(c.add(&ev(4, REL_X, i32::MAX), 4).is_some());
    }
}
