//! The filter's unit and property tests.

use crate::filter::Level;
use crate::rules::{Origin, RuleConfig};
use crate::{Policy, PolicySpec};

/// One rule: `/usr/bin/app` (rule "app") at `level`; nothing else is captured.
fn policy(level: Level) -> Policy {
    Policy::compile(PolicySpec {
        rules: vec![RuleConfig {
            name: Some("app".into()),
            exe: Some("/usr/bin/app".into()),
            level,
            origin: Origin::default(),
            ..Default::default()
        }],
        ..Default::default()
    })
    .expect("policy")
}

mod unit {
    use crate::filter::*;
    use crate::rules::{Origin, RuleConfig};
    use crate::PolicySpec;

    use super::policy;

    fn focus(seq: u64, exe: &str) -> Record {
        Record::Focus(Box::new(FocusInfo {
            seq,
            exe: exe.into(),
            uid: 1000,
            ..Default::default()
        }))
    }

    /// Press/release (with scan codes and SYN frames) for each key code.
    fn typing(codes: &[(u16, bool)], focus: u64) -> Vec<Record> {
        paced(codes, focus, 1_000_000, 10_000_000).0
    }

    /// As [`typing`], from event time `t0`, `step` ns between events; and the time after.
    fn paced(codes: &[(u16, bool)], focus: u64, t0: u64, step: u64) -> (Vec<Record>, u64) {
        let mut out = Vec::new();
        let mut t = t0;
        let ev = |t: u64, kind: u16, code: u16, value: i32| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 1,
                kind,
                code,
                value,
                focus,
            })
        };
        for (code, shift) in codes {
            for value in [1, 0] {
                if *shift && value == 1 {
                    out.push(ev(t, EV_KEY, keys::KEY_LEFTSHIFT, 1));
                    out.push(ev(t, EV_SYN, 0, 0));
                }
                out.push(ev(t, EV_MSC, MSC_SCAN, 0x70000 + i32::from(*code)));
                out.push(ev(t, EV_KEY, *code, value));
                out.push(ev(t, EV_SYN, 0, 0));
                t += step;
                if *shift && value == 0 {
                    out.push(ev(t, EV_KEY, keys::KEY_LEFTSHIFT, 0));
                    out.push(ev(t, EV_SYN, 0, 0));
                }
            }
        }
        (out, t)
    }

    /// US key codes for `s` (letters, digits, a few symbols).
    fn codes(s: &str) -> Vec<(u16, bool)> {
        let mut m = keys::Modifiers::default();
        s.chars()
            .map(|c| {
                for shift in [false, true] {
                    m.shift = u8::from(shift);
                    for code in 0..128u16 {
                        if keys::us_char(code, &m) == Some(c) {
                            return (code, shift);
                        }
                    }
                }
                panic!("no key for {c:?}")
            })
            .collect()
    }

    fn run(p: Policy, recs: Vec<Record>) -> (Vec<Record>, FilterStats) {
        let mut f = Filter::new(p);
        let mut out = Vec::new();
        for r in recs {
            f.push_record(r, &mut out);
        }
        f.flush(&mut out);
        (out, f.stats)
    }

    fn key_events(out: &[Record]) -> Vec<InputEvent> {
        out.iter()
            .filter_map(|r| match r {
                Record::Event(e) if e.kind == EV_KEY => Some(*e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn no_rule_writes_nothing() {
        let mut recs = vec![focus(1, "/usr/bin/other")];
        recs.extend(typing(&codes("hello"), 1));
        let (out, stats) = run(policy(Level::Full), recs);
        assert!(
            out.iter().all(|r| !matches!(r, Record::Event(_))),
            "{out:?}"
        );
        assert!(out.iter().all(|r| !matches!(r, Record::Focus(_))));
        assert!(stats.dropped_policy > 0);
        // Unknown focus (seq 0) likewise.
        let (out, _) = run(policy(Level::Full), typing(&codes("hello"), 0));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn timing_keeps_timing_not_identity() {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        let typed = typing(&codes("Hi there"), 1);
        let n_keys = typed
            .iter()
            .filter(|r| matches!(r, Record::Event(e) if e.kind == EV_KEY))
            .count();
        recs.extend(typed);
        let (out, stats) = run(policy(Level::Timing), recs);
        let keys = key_events(&out);
        assert_eq!(keys.len(), n_keys, "every key event's timing is kept");
        assert!(keys
            .iter()
            .all(|e| e.code == KEY_A || !keys::is_printable_key(e.code)));
        assert!(keys.iter().any(|e| e.code == keys::KEY_LEFTSHIFT));
        assert!(out
            .iter()
            .all(|r| !matches!(r, Record::Event(e) if e.kind == EV_MSC)));
        assert_eq!(stats.masked_keys, 16);
    }

    #[test]
    fn counts_writes_counts_only() {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        recs.extend(typing(&codes("abc"), 1));
        let (out, _) = run(policy(Level::Counts), recs);
        assert!(out.iter().all(|r| !matches!(r, Record::Event(_))));
        let keys: u32 = out
            .iter()
            .filter_map(|r| match r {
                Record::Counts(c) => Some(c.keys),
                _ => None,
            })
            .sum();
        assert_eq!(keys, 3);
    }

    fn redacted(text: &str) -> (Vec<Record>, String) {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        recs.extend(typing(&codes(text), 1));
        let (out, _) = run(policy(Level::Full), recs);
        // Rebuild what is left from the written key presses.
        let mut m = keys::Modifiers::default();
        let mut left = String::new();
        for e in key_events(&out) {
            m.update(e.code, e.value);
            if e.value == 1 {
                if let Some(c) = keys::us_char(e.code, &m) {
                    left.push(c);
                }
            }
        }
        (out, left)
    }

    #[test]
    fn full_redacts_canaries_and_keeps_timing() {
        for (canary, rule) in [
            ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
            ("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "github_token"),
            ("4111111111111111", "card_number"),
            ("bob@example.com", "email"),
        ] {
            let (out, left) = redacted(&format!("x {canary} y"));
            assert!(!left.contains(canary), "{rule}: {left}");
            assert!(
                left.starts_with("x ") && left.ends_with(" y"),
                "{rule}: {left:?}"
            );
            let r: Vec<&Redaction> = out
                .iter()
                .filter_map(|r| match r {
                    Record::Redaction(r) => Some(&**r),
                    _ => None,
                })
                .collect();
            assert_eq!(r.len(), 1, "{rule}: {r:?}");
            assert_eq!(r[0].rule, rule);
            assert_eq!(r[0].count as usize, canary.len());
            assert_eq!(r[0].key_times_ns.len(), canary.len());
            assert!(r[0].from_ns < r[0].to_ns);
            // No scan code of a redacted key survives.
            let scans = out
                .iter()
                .filter(|r| matches!(r, Record::Event(e) if e.kind == EV_MSC))
                .count();
            assert_eq!(scans, 2 * "x  y".len(), "{rule}");
        }
    }

    #[test]
    fn pem_block_is_redacted() {
        let (out, left) = redacted("-----BEGIN PRIVATE KEY-----abcdef-----END PRIVATE KEY-----ok");
        assert_eq!(left, "ok", "{out:?}");
        assert!(out
            .iter()
            .any(|r| matches!(r, Record::Redaction(r) if r.rule == "private_key")));
    }

    #[test]
    fn assignment_value_is_redacted() {
        let (_, left) = redacted("password=hunter2 ");
        assert_eq!(left, "password= ");
    }

    #[test]
    fn a_pause_writes_a_gap_instead_of_events() {
        let mut f = Filter::new(policy(Level::Timing));
        let mut out = Vec::new();
        f.push_record(focus(1, "/usr/bin/app"), &mut out);
        // typing() starts at 1 ms and takes 20 ms a key: "xab" pauses on "ab" only.
        f.pause(1000, 21_000_000, 61_000_000);
        f.pause(1001, 0, u64::MAX);
        for r in typing(&codes("xabc"), 1) {
            f.push_record(r, &mut out);
        }
        f.flush(&mut out);
        let gaps: Vec<&Gap> = out
            .iter()
            .filter_map(|r| match r {
                Record::Gap(g) => Some(g),
                _ => None,
            })
            .collect();
        // "ab": 2 keys × (scan + press, scan + release); SYN reports are not counted.
        assert_eq!(gaps.len(), 1, "{out:?}");
        assert_eq!((gaps[0].stage, gaps[0].count), (Stage::Paused, 8));
        assert_eq!(f.stats.paused, 8);
        // Only "x" and "c" (press and release) were written, and the gap sits between them.
        assert_eq!(key_events(&out).len(), 4);
        let gap_at = out.iter().position(|r| matches!(r, Record::Gap(_)));
        let c_at = out
            .iter()
            .rposition(|r| matches!(r, Record::Event(e) if e.kind == EV_KEY));
        assert!(gap_at < c_at, "{out:?}");
    }

    #[test]
    fn a_key_pressed_out_of_scope_is_released_out_of_scope() {
        let ev = |t: u64, code: u16, value: i32, focus: u64| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 1,
                kind: EV_KEY,
                code,
                value,
                focus,
            })
        };
        // Enter goes down in the shell (no rule), which starts the app before it comes up.
        let recs = vec![
            focus(1, "/bin/sh"),
            ev(1, keys::KEY_ENTER, 1, 1),
            focus(2, "/usr/bin/app"),
            ev(2, keys::KEY_ENTER, 0, 2),
            ev(3, keys::KEY_ENTER, 1, 2),
            ev(4, keys::KEY_ENTER, 0, 2),
        ];
        let (out, _) = run(policy(Level::Full), recs);
        let times: Vec<u64> = key_events(&out).iter().map(|e| e.mono_ns).collect();
        assert_eq!(times, [3, 4]);
    }

    #[test]
    fn paste_is_a_marker() {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        let ev = |t: u64, code: u16, value: i32| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 1,
                kind: EV_KEY,
                code,
                value,
                focus: 1,
            })
        };
        recs.extend([
            ev(1, keys::KEY_LEFTCTRL, 1),
            ev(2, keys::KEY_V, 1),
            ev(3, keys::KEY_V, 0),
            ev(4, keys::KEY_LEFTCTRL, 0),
        ]);
        let (out, stats) = run(policy(Level::Full), recs);
        assert_eq!(stats.pastes, 1);
        assert!(out.iter().any(|r| matches!(r, Record::Paste(_))));
    }

    #[test]
    fn password_manager_is_timing_even_when_full() {
        let p = Policy::compile(PolicySpec {
            policy: crate::PolicyConfig {
                default: Some(Level::Full),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("policy");
        let mut recs = vec![focus(1, "/usr/bin/keepassxc")];
        recs.extend(typing(&codes("secret"), 1));
        let (out, _) = run(p, recs);
        assert!(key_events(&out).iter().all(|e| e.code == KEY_A));
    }

    #[test]
    fn text_edited_with_the_cursor_is_redacted() {
        // "bob@exmple.com", eight times Left, "a": the text is bob@example.com.
        let mut keys = codes("x bob@exmple.com");
        keys.extend([(keys::KEY_LEFT, false); 8]);
        keys.extend(codes("a"));
        let mut recs = vec![focus(1, "/usr/bin/app")];
        recs.extend(typing(&keys, 1));
        let (out, stats) = run(policy(Level::Full), recs);
        assert_eq!(stats.redacted.get("email"), Some(&15), "{out:?}");
        assert!(!stats.keymap.is_empty());
    }

    /// Types `parts` into the app at `full` with `step` ns between events and `pause` ns
    /// between parts (`\u{8}` is Backspace); what is left of the text, and the redactions.
    fn typed_slowly(parts: &[&str], step: u64, pause: u64) -> (String, Vec<Redaction>) {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        let mut t = 1_000_000;
        for part in parts {
            let mut codes = Vec::new();
            for c in part.chars() {
                if c == '\u{8}' {
                    codes.push((keys::KEY_BACKSPACE, false));
                } else {
                    codes.extend(self::codes(&c.to_string()));
                }
            }
            let (r, end) = paced(&codes, 1, t, step);
            recs.extend(r);
            t = end + pause;
        }
        let (out, _) = run(policy(Level::Full), recs);
        let mut m = keys::Modifiers::default();
        let mut left = String::new();
        for e in key_events(&out) {
            m.update(e.code, e.value);
            if e.value == 1 {
                if e.code == keys::KEY_BACKSPACE {
                    left.pop();
                } else if let Some(c) = keys::us_char(e.code, &m) {
                    left.push(c);
                }
            }
        }
        let reds = out
            .iter()
            .filter_map(|r| match r {
                Record::Redaction(r) => Some((**r).clone()),
                _ => None,
            })
            .collect();
        (left, reds)
    }

    /// Every redaction accounts exactly: a key time per key, from and to at the first and
    /// last of them.
    fn accounts(r: &Redaction) {
        assert!(r.count > 0, "{r:?}");
        assert_eq!(r.count as usize, r.key_times_ns.len(), "{r:?}");
        assert_eq!(r.key_times_ns.iter().min(), Some(&r.from_ns), "{r:?}");
        assert_eq!(r.key_times_ns.iter().max(), Some(&r.to_ns), "{r:?}");
    }

    #[test]
    fn a_token_typed_slower_than_the_window_is_held_whole() {
        // 800 ms a key: the token takes 33 s, far past the 5 s window.
        let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
        let (left, reds) = typed_slowly(&[&format!("x {token} y")], 400_000_000, 0);
        assert_eq!(left, "x  y");
        assert_eq!(reds.len(), 1, "{reds:?}");
        assert_eq!(reds[0].rule, "github_token");
        assert_eq!(reds[0].count as usize, token.len());
        accounts(&reds[0]);
    }

    #[test]
    fn a_pause_or_a_backspace_inside_a_secret_releases_nothing() {
        // A card number typed in groups with a 30 s pause to look up the rest.
        let (left, reds) = typed_slowly(
            &["card 4111 1111 ", "1111 1111 ok"],
            60_000_000,
            30_000_000_000,
        );
        assert!(!left.contains("4111") && !left.contains("1111"), "{left:?}");
        assert!(
            left.starts_with("card ") && left.ends_with("ok"),
            "{left:?}"
        );
        assert!(reds.iter().any(|r| r.rule == "card_number"), "{reds:?}");
        reds.iter().for_each(accounts);
        // A typo corrected with Backspace in the middle of a token, with pauses.
        let (left, reds) = typed_slowly(
            &["x ghp_0123456789abcdefgX", "\u{8}hijklmnopqrstuvwxyzAB y"],
            300_000_000,
            20_000_000_000,
        );
        assert_eq!(left, "x  y", "{reds:?}");
        reds.iter().for_each(accounts);
    }

    #[test]
    fn a_token_past_its_bounds_is_masked_not_released() {
        let long: String = "abcdefghij".repeat(25);
        let (left, reds) = typed_slowly(&[&format!("ok {long} fine")], 5_000_000, 0);
        assert_eq!(left, "ok  fine", "{reds:?}");
        assert_eq!(reds.len(), 1, "{reds:?}");
        assert_eq!(reds[0].rule, "holdback_full");
        assert_eq!(reds[0].count as usize, long.len());
        accounts(&reds[0]);
        // Open for longer than a minute of event time.
        let (left, reds) = typed_slowly(&["ok abc", "def fine"], 50_000_000, 70_000_000_000);
        assert_eq!(left, "ok  fine", "{reds:?}");
        assert_eq!(reds[0].rule, "holdback_full");
    }

    #[test]
    fn prose_typed_slowly_is_kept() {
        let text = "the quick brown fox, at 3 pm (or so), said \"hi there\" and left.";
        let (left, reds) = typed_slowly(&[text], 300_000_000, 0);
        assert_eq!(left, text);
        assert!(reds.is_empty(), "{reds:?}");
    }

    fn motion_policy(interval_ms: u64, distance: u32) -> Policy {
        Policy::compile(PolicySpec {
            policy: crate::PolicyConfig {
                motion_interval_ms: interval_ms,
                motion_distance: distance,
                ..Default::default()
            },
            rules: vec![RuleConfig {
                exe: Some("/usr/bin/app".into()),
                level: Level::Timing,
                origin: Origin::default(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("policy")
    }

    /// Mouse frames (REL_X, REL_Y, SYN) 1 ms apart from ring seq 10 on, then a click.
    fn mouse(moves: &[(i32, i32)]) -> Vec<(u64, Record)> {
        let ev = |t: u64, kind: u16, code: u16, value: i32| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 2,
                kind,
                code,
                value,
                focus: 1,
            })
        };
        let mut recs = vec![(1, focus(1, "/usr/bin/app"))];
        let mut seq = 10;
        for (i, (dx, dy)) in moves.iter().enumerate() {
            let t = (i as u64 + 1) * 1_000_000;
            recs.push((seq, ev(t, EV_REL, keys::REL_X, *dx)));
            recs.push((seq, ev(t, EV_REL, keys::REL_Y, *dy)));
            recs.push((seq, ev(t, EV_SYN, 0, 0)));
            seq += 1;
        }
        let t = (moves.len() as u64 + 1) * 1_000_000;
        recs.push((seq, ev(t, EV_KEY, 0x110, 1)));
        recs.push((seq, ev(t, EV_SYN, 0, 0)));
        recs
    }

    #[test]
    fn coalesced_motion_keeps_sums_and_comes_before_the_click() {
        let moves: Vec<(i32, i32)> = (0..50).map(|i| (i % 5 - 1, 3 - i % 4)).collect();
        let sum = moves.iter().fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
        for (interval, distance) in [(0, 0), (10, 0), (0, 25), (1000, 0)] {
            let mut f = Filter::new(motion_policy(interval, distance));
            let mut out = Vec::new();
            for (seq, r) in mouse(&moves) {
                f.push_record_seq(r, seq, &mut out);
            }
            f.flush(&mut out);
            let evs: Vec<InputEvent> = out
                .iter()
                .filter_map(|r| match r {
                    Record::Event(e) => Some(*e),
                    _ => None,
                })
                .collect();
            let rel: Vec<&InputEvent> = evs.iter().filter(|e| e.kind == EV_REL).collect();
            let got = rel.iter().fold((0, 0), |(a, b), e| match e.code {
                keys::REL_X => (a + e.value, b),
                _ => (a, b + e.value),
            });
            assert_eq!(got, sum, "sums kept ({interval}, {distance})");
            let click = evs.iter().position(|e| e.kind == EV_KEY);
            let last_rel = evs.iter().rposition(|e| e.kind == EV_REL);
            assert!(last_rel < click, "motion before the click");
            assert_eq!(evs.last().map(|e| e.kind), Some(EV_SYN));
            let n_rel = moves
                .iter()
                .map(|(x, y)| usize::from(*x != 0) + usize::from(*y != 0))
                .sum::<usize>();
            if interval == 0 && distance == 0 {
                assert_eq!(rel.len(), 100, "off: every event kept");
                assert_eq!(f.stats.motion_coalesced, 0);
            } else {
                assert!(rel.len() < n_rel / 2, "{}: {rel:?}", rel.len());
                assert_eq!(f.stats.motion_coalesced as usize, 100 - rel.len());
                // Every SYN closes a frame with something in it.
                assert!(evs
                    .windows(2)
                    .all(|w| w[0].kind != EV_SYN || w[1].kind != EV_SYN));
            }
            if interval == 1000 {
                // One sum at once (the first frame), one with the rest before the click.
                assert_eq!(rel.len(), 4, "{rel:?}");
            }
        }
    }

    #[test]
    fn summed_motion_holds_the_commit_position() {
        let mut p = motion_policy(1000, 0);
        let mut spec = (*p.spec).clone();
        spec.policy.holdback_ms = 1;
        p = Policy::compile(spec).expect("policy");
        let mut f = Filter::new(p);
        let mut out = Vec::new();
        let recs = mouse(&[(1, 1), (2, 2), (3, 3)]);
        // The first frame (seq 10) is written at once (and released by 3 ms: the window is
        // 1 ms); 11 and 12 are summed.
        for (seq, r) in recs.iter().take(1 + 3 * 3).cloned() {
            f.push_record_seq(r, seq, &mut out);
        }
        assert_eq!(f.oldest_held_seq(), Some(11));
        // A key (seq 13) releases what is older than the 1 ms window, not the sum.
        let key = InputEvent {
            mono_ns: 3_500_000,
            device: 1,
            kind: EV_KEY,
            code: keys::KEY_LEFTSHIFT,
            value: 1,
            focus: 1,
        };
        f.push_record_seq(Record::Event(key), 13, &mut out);
        assert_eq!(f.oldest_held_seq(), Some(11));
        // The click (seq 14) writes the sum behind the key: it still holds seq 11.
        for (seq, r) in recs.iter().skip(1 + 3 * 3).cloned() {
            f.push_record_seq(r, seq + 1, &mut out);
        }
        assert!(f.motion.is_empty());
        assert_eq!(f.oldest_held_seq(), Some(11));
        f.flush(&mut out);
        assert_eq!(f.oldest_held_seq(), None);
        assert!(f.early.is_empty());
    }
}

mod props {
    use crate::filter::*;
    use proptest::prelude::*;

    use super::policy;

    proptest! {
        /// Arbitrary event streams never panic; at `timing` no printable key identity and no
        /// scan code is written; with no focus nothing is written.
        #[test]
        fn arbitrary_streams(evs in proptest::collection::vec(
            (0u16..5, 0u16..0x200, -1i32..3, 0u64..3, 0u32..2), 0..300)) {
            for level in [Level::Full, Level::Timing, Level::Counts] {
                let mut f = Filter::new(policy(level));
                let mut out = Vec::new();
                f.push_record(Record::Focus(Box::new(FocusInfo {
                    seq: 1,
                    exe: "/usr/bin/app".into(),
                    ..Default::default()
                })), &mut out);
                for (i, (kind, code, value, focus, device)) in evs.iter().enumerate() {
                    f.push_record(Record::Event(InputEvent {
                        mono_ns: i as u64 * 1_000_000,
                        device: *device,
                        kind: *kind,
                        code: *code,
                        value: *value,
                        focus: *focus,
                    }), &mut out);
                }
                f.flush(&mut out);
                for r in &out {
                    if let Record::Event(e) = r {
                        // (A SYN_REPORT closes a frame whose events were admitted.)
                        if e.kind != EV_SYN {
                            prop_assert_eq!(e.focus, 1, "only the in-scope focus is written");
                        }
                        if level == Level::Timing {
                            prop_assert!(!(e.kind == EV_MSC && e.code == MSC_SCAN));
                            if e.kind == EV_KEY && keys::is_keyboard_code(e.code) {
                                prop_assert!(e.code == KEY_A || !keys::is_printable_key(e.code));
                            }
                        }
                        prop_assert!(level != Level::Counts);
                    }
                }
            }
        }
    }
}
