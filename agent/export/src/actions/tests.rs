use super::*;
use imprint_record::{Gap, Monitor, PointerSample, Stage};

const MS: u64 = 1_000_000;
const KBD: u32 = 1;
const MOUSE: u32 = 2;
const FOCUS: u64 = 7;
const BTN_L: u16 = 0x110;
const BTN_R: u16 = 0x111;
const KEY_S: u16 = 31;
const KEY_H: u16 = 35;
const KEY_I: u16 = 23;
const KEY_1: u16 = 2;

/// Records → items, events numbered as the export numbers them.
fn items(recs: Vec<Record>) -> Vec<Item> {
    let mut n = 0;
    recs.into_iter()
        .map(|rec| {
            let mut it = Item::new(rec);
            it.realtime_offset_ns = 1_700_000_000_000 * MS as i64;
            if matches!(it.rec, Record::Event(_)) {
                it.event_index = Some(n);
                n += 1;
            }
            it
        })
        .collect()
}

fn run(recs: Vec<Record>) -> Vec<Action> {
    build(&items(recs))
}

fn ev(t_ms: u64, device: u32, kind: u16, code: u16, value: i32) -> Record {
    Record::Event(InputEvent {
        mono_ns: t_ms * MS,
        device,
        kind,
        code,
        value,
        focus: FOCUS,
    })
}

fn key(t_ms: u64, code: u16, value: i32) -> Record {
    ev(t_ms, KBD, EV_KEY, code, value)
}

/// Press and release of `code`, 30 ms apart.
fn tap(t_ms: u64, code: u16) -> Vec<Record> {
    vec![key(t_ms, code, 1), key(t_ms + 30, code, 0)]
}

fn btn(t_ms: u64, code: u16, value: i32) -> Record {
    ev(t_ms, MOUSE, EV_KEY, code, value)
}

fn rel(t_ms: u64, code: u16, value: i32) -> Record {
    ev(t_ms, MOUSE, EV_REL, code, value)
}

fn sample(t_ms: u64, x: f64, y: f64, trigger: PointerTrigger, button: u32) -> Record {
    Record::Pointer(PointerSample {
        // The helper reads a few ms after the server's event; the server time is joined on.
        mono_ns: t_ms * MS + 3 * MS,
        x,
        y,
        trigger,
        button,
        server_time_ms: t_ms as u32,
        focus: FOCUS,
        event_mono_ns: t_ms * MS,
    })
}

fn display(pointer: bool, reason: &str) -> Record {
    Record::Display(Box::new(DisplayInfo {
        mono_ns: 1,
        server: "x11".into(),
        width: 3840,
        height: 1080,
        monitors: vec![
            Monitor {
                name: "DP-1".into(),
                x: 0,
                y: 0,
                width: 1920,
                height: 1080,
                scale: 1.0,
                primary: true,
            },
            Monitor {
                name: "HDMI-1".into(),
                x: 1920,
                y: 0,
                width: 1920,
                height: 1080,
                scale: 1.0,
                primary: false,
            },
        ],
        pointer,
        pointer_unavailable: reason.into(),
        double_click_ms: 400,
        double_click_distance: 5,
        uid: 1000,
        session: "3".into(),
    }))
}

fn focus() -> Record {
    Record::Focus(Box::new(FocusInfo {
        seq: FOCUS,
        mono_ns: 2,
        exe: "/usr/bin/gedit".into(),
        app_id: "org.gnome.gedit".into(),
        wm_class: "gedit".into(),
        window: WindowRect {
            x: 100,
            y: 50,
            width: 800,
            height: 600,
        },
        ..Default::default()
    }))
}

fn with_screen(mut recs: Vec<Record>) -> Vec<Record> {
    let mut all = vec![display(true, ""), focus()];
    all.append(&mut recs);
    all
}

fn of_kind<'a>(actions: &'a [Action], kind: &str) -> Vec<&'a Action> {
    actions.iter().filter(|a| a.kind == kind).collect()
}

fn only<'a>(actions: &'a [Action], kind: &str) -> &'a Action {
    let found = of_kind(actions, kind);
    assert_eq!(found.len(), 1, "one {kind} in {actions:#?}");
    found[0]
}

/// A left click (press and release at `x`, `y`) with its samples.
fn click_at(t_ms: u64, x: f64, y: f64) -> Vec<Record> {
    vec![
        btn(t_ms, BTN_L, 1),
        ev(t_ms, MOUSE, 0, 0, 0),
        sample(t_ms + 2, x, y, PointerTrigger::Press, 1),
        btn(t_ms + 60, BTN_L, 0),
        sample(t_ms + 61, x, y, PointerTrigger::Release, 1),
    ]
}

#[test]
fn a_click_takes_the_display_servers_position() {
    let acts = run(with_screen(click_at(1000, 500.0, 300.0)));
    let c = only(&acts, "click");
    assert_eq!((c.x, c.y), (Some(500.0), Some(300.0)));
    assert_eq!(c.button.as_deref(), Some("left"));
    assert_eq!(c.position_unavailable, None);
    // The sample's server time is 2 ms after the kernel's press.
    assert!((c.position_lag_ms.expect("lag") - 2.0).abs() < 1e-9);
    assert_eq!(c.monitor.as_deref(), Some("DP-1"));
    assert!((c.x_norm.expect("x_norm") - 500.0 / 1920.0).abs() < 1e-12);
    assert!((c.y_norm.expect("y_norm") - 300.0 / 1080.0).abs() < 1e-12);
    assert_eq!((c.window_x, c.window_y), (Some(400.0), Some(250.0)));
    assert_eq!(c.window_rect.map(|r| r.width), Some(800));
    assert_eq!(c.app_id.as_deref(), Some("org.gnome.gedit"));
    assert_eq!(c.focus_seq, Some(FOCUS));
    // Raw range: the press (event 0), the SYN (1) and the release (2).
    assert_eq!((c.event_first, c.event_last), (Some(0), Some(2)));
    assert_eq!((c.start_mono_ns, c.end_mono_ns), (1000 * MS, 1060 * MS));
    assert_eq!(c.start_unix_ms, Some(1_700_000_000_000 + 1000));
    assert_eq!(
        c.pyautogui.as_deref(),
        Some("pyautogui.click(x=0.2604, y=0.2778)")
    );
}

#[test]
fn a_click_on_the_second_monitor_is_normalised_to_it() {
    let acts = run(with_screen(click_at(1000, 1920.0 + 960.0, 540.0)));
    let c = only(&acts, "click");
    assert_eq!(c.monitor.as_deref(), Some("HDMI-1"));
    assert_eq!((c.x_norm, c.y_norm), (Some(0.5), Some(0.5)));
    assert_eq!(
        c.pyautogui.as_deref(),
        Some("pyautogui.click(x=0.5000, y=0.5000)")
    );
}

#[test]
fn two_quick_clicks_are_a_double_click_and_three_a_triple() {
    let mut recs = click_at(1000, 500.0, 300.0);
    recs.extend(click_at(1150, 501.0, 301.0));
    let acts = run(with_screen(recs.clone()));
    let d = only(&acts, "double_click");
    assert_eq!(d.click_count, Some(2));
    assert_eq!((d.x, d.y), (Some(500.0), Some(300.0)));
    assert_eq!((d.start_mono_ns, d.end_mono_ns), (1000 * MS, 1210 * MS));
    assert!(of_kind(&acts, "click").is_empty());
    assert!(d
        .pyautogui
        .as_deref()
        .is_some_and(|p| p.starts_with("pyautogui.doubleClick(x=0.2604")));

    recs.extend(click_at(1300, 500.0, 300.0));
    let acts = run(with_screen(recs.clone()));
    assert_eq!(only(&acts, "triple_click").click_count, Some(3));

    // Too slow (the desktop's 400 ms) or too far (5 px): separate clicks.
    let mut slow = click_at(1000, 500.0, 300.0);
    slow.extend(click_at(1500, 500.0, 300.0));
    assert_eq!(of_kind(&run(with_screen(slow)), "click").len(), 2);
    let mut far = click_at(1000, 500.0, 300.0);
    far.extend(click_at(1150, 520.0, 300.0));
    assert_eq!(of_kind(&run(with_screen(far)), "click").len(), 2);
}

#[test]
fn right_middle_and_long_press() {
    let recs = vec![
        btn(1000, BTN_R, 1),
        sample(1001, 10.0, 20.0, PointerTrigger::Press, 3),
        btn(1050, BTN_R, 0),
        btn(2000, 0x112, 1),
        sample(2001, 10.0, 20.0, PointerTrigger::Press, 2),
        btn(2050, 0x112, 0),
        btn(3000, BTN_L, 1),
        sample(3001, 10.0, 20.0, PointerTrigger::Press, 1),
        btn(3800, BTN_L, 0),
        sample(3801, 11.0, 20.0, PointerTrigger::Release, 1),
    ];
    let acts = run(with_screen(recs));
    let r = only(&acts, "right_click");
    assert_eq!(r.button.as_deref(), Some("right"));
    assert_eq!(
        r.pyautogui.as_deref(),
        Some("pyautogui.rightClick(x=0.0052, y=0.0185)")
    );
    assert_eq!(
        only(&acts, "middle_click").button.as_deref(),
        Some("middle")
    );
    let l = only(&acts, "long_press");
    assert_eq!(l.end_mono_ns - l.start_mono_ns, 800 * MS);
    assert!(l
        .pyautogui
        .as_deref()
        .is_some_and(|p| p.contains("mouseDown(button='left')") && p.contains("sleep(0.8000)")));
}

#[test]
fn a_drag_keeps_its_path() {
    let recs = vec![
        btn(1000, BTN_L, 1),
        sample(1001, 100.0, 100.0, PointerTrigger::Press, 1),
        rel(1040, keys::REL_X, 10),
        sample(1041, 150.0, 120.0, PointerTrigger::Motion, 0),
        rel(1080, keys::REL_X, 10),
        sample(1081, 200.0, 140.0, PointerTrigger::Motion, 0),
        btn(1200, BTN_L, 0),
        sample(1201, 300.0, 200.0, PointerTrigger::Release, 1),
    ];
    let acts = run(with_screen(recs));
    let d = only(&acts, "drag");
    assert_eq!((d.x, d.y), (Some(100.0), Some(100.0)));
    assert_eq!((d.end_x, d.end_y), (Some(300.0), Some(200.0)));
    let path = d.path.as_ref().expect("path");
    let xs: Vec<f64> = path.iter().map(|p| p.x).collect();
    assert_eq!(xs, vec![100.0, 150.0, 200.0, 300.0]);
    let ts: Vec<f64> = path.iter().map(|p| p.t_ms).collect();
    assert_eq!(ts, vec![0.0, 41.0, 81.0, 200.0]);
    assert_eq!(d.event_first, Some(0));
    assert_eq!(d.event_last, Some(3));
    assert_eq!(
        d.pyautogui.as_deref(),
        Some("pyautogui.moveTo(x=0.0521, y=0.0926); pyautogui.dragTo(x=0.1562, y=0.1852, duration=0.2000, button='left')")
    );
    // The drag's motion samples are its path, not a move.
    assert!(of_kind(&acts, "move").is_empty());
}

#[test]
fn without_positions_device_motion_tells_a_drag_from_a_click() {
    let recs = vec![
        btn(1000, BTN_L, 1),
        rel(1050, keys::REL_X, 30),
        rel(1050, keys::REL_Y, -5),
        btn(1100, BTN_L, 0),
    ];
    let acts = run(recs);
    let d = only(&acts, "drag");
    assert_eq!((d.x, d.path.as_ref()), (None, None));
    assert_eq!(d.position_unavailable.as_deref(), Some("no_pointer_source"));
    assert_eq!(d.pyautogui, None);
}

#[test]
fn unknown_positions_say_why() {
    let click = || vec![btn(1000, BTN_L, 1), btn(1050, BTN_L, 0)];
    // No display report at all (a replay): no pointer source.
    let acts = run(click());
    let c = only(&acts, "click");
    assert_eq!((c.x, c.y, c.x_norm), (None, None, None));
    assert_eq!(c.position_unavailable.as_deref(), Some("no_pointer_source"));
    assert_eq!(c.pyautogui, None, "no call for a click at an unknown place");
    // A display server without pointer positions (sway): its reason.
    let mut recs = vec![display(false, "sway_has_no_cursor_ipc")];
    recs.extend(click());
    let acts = run(recs);
    assert_eq!(
        only(&acts, "click").position_unavailable.as_deref(),
        Some("sway_has_no_cursor_ipc")
    );
    // Positions are available but none was sampled near the click.
    let mut recs = with_screen(click());
    recs.push(sample(5000, 1.0, 1.0, PointerTrigger::Press, 1));
    let acts = run(recs);
    assert_eq!(
        only(&acts, "click").position_unavailable.as_deref(),
        Some("no_pointer_sample")
    );
    // A sample for another button is not this click's.
    let mut recs = with_screen(click());
    recs.push(sample(1001, 1.0, 1.0, PointerTrigger::Press, 3));
    let acts = run(recs);
    assert_eq!(
        only(&acts, "click").position_unavailable.as_deref(),
        Some("no_pointer_sample")
    );
}

#[test]
fn wheel_events_become_scrolls_with_detents_and_hi_res() {
    let mut recs = Vec::new();
    for i in 0..3 {
        recs.push(rel(1000 + i * 50, keys::REL_WHEEL, -1));
        recs.push(rel(1000 + i * 50, keys::REL_WHEEL_HI_RES, -120));
    }
    recs.push(sample(1001, 960.0, 540.0, PointerTrigger::Scroll, 5));
    recs.push(rel(1400, keys::REL_HWHEEL, 2));
    recs.push(rel(1400, keys::REL_HWHEEL_HI_RES, 240));
    // A pause longer than the grouping window starts a new scroll.
    recs.push(rel(3000, keys::REL_WHEEL, 1));
    let acts = run(with_screen(recs));
    let scrolls = of_kind(&acts, "scroll");
    assert_eq!(scrolls.len(), 2);
    let s = scrolls[0];
    assert_eq!((s.scroll_detents, s.scroll_hi_res), (Some(-3), Some(-360)));
    assert_eq!((s.x, s.y), (Some(960.0), Some(540.0)));
    assert_eq!((s.event_first, s.event_last), (Some(0), Some(5)));
    assert_eq!(
        s.pyautogui.as_deref(),
        Some("pyautogui.scroll(-3, x=0.5000, y=0.5000)")
    );
    assert_eq!(scrolls[1].scroll_detents, Some(1));
    assert_eq!(
        scrolls[1].scroll_hi_res, None,
        "the device sent no hi-res values"
    );
    assert_eq!(
        scrolls[1].position_unavailable.as_deref(),
        Some("no_pointer_sample")
    );
    assert_eq!(scrolls[1].pyautogui.as_deref(), Some("pyautogui.scroll(1)"));
    let h = only(&acts, "hscroll");
    assert_eq!((h.scroll_detents, h.scroll_hi_res), (Some(2), Some(240)));
}

#[test]
fn typing_with_shift_and_backspace_is_one_type_action() {
    let mut recs = vec![key(1000, keys::KEY_LEFTSHIFT, 1)];
    recs.extend(tap(1010, KEY_H));
    recs.push(key(1050, keys::KEY_LEFTSHIFT, 0));
    recs.extend(tap(1200, KEY_I));
    recs.extend(tap(1400, KEY_I));
    recs.extend(tap(1600, keys::KEY_BACKSPACE));
    recs.push(key(1800, keys::KEY_LEFTSHIFT, 1));
    recs.extend(tap(1810, KEY_1));
    recs.push(key(1850, keys::KEY_LEFTSHIFT, 0));
    let acts = run(with_screen(recs));
    assert_eq!(acts.iter().filter(|a| a.kind != "focus").count(), 1);
    let t = only(&acts, "type");
    assert_eq!(t.text.as_deref(), Some("Hi!"));
    assert_eq!(
        t.key_times_ms.as_deref(),
        Some(&[0.0, 190.0, 390.0, 590.0, 800.0][..]),
        "every press, Backspace included, relative to the first"
    );
    assert_eq!(t.pyautogui.as_deref(), Some("pyautogui.write('Hi!')"));
    assert_eq!(t.start_mono_ns, 1010 * MS);
    assert_eq!(t.end_mono_ns, 1840 * MS);
    assert_eq!(t.app_id.as_deref(), Some("org.gnome.gedit"));
}

#[test]
fn enter_is_a_key_and_ends_the_typing() {
    let mut recs = tap(1000, KEY_H);
    recs.extend(tap(1100, KEY_I));
    recs.extend(tap(1200, keys::KEY_ENTER));
    let acts = run(with_screen(recs));
    assert_eq!(only(&acts, "type").text.as_deref(), Some("hi"));
    let k = only(&acts, "key");
    assert_eq!(k.keys.as_deref(), Some(&["enter".to_owned()][..]));
    assert_eq!(k.modifiers.as_deref(), Some(&[][..]));
    assert_eq!(k.pyautogui.as_deref(), Some("pyautogui.press('enter')"));
    assert_eq!((k.start_mono_ns, k.end_mono_ns), (1200 * MS, 1230 * MS));
}

#[test]
fn ctrl_s_is_a_hotkey() {
    let mut recs = tap(900, KEY_H);
    recs.push(key(1000, keys::KEY_LEFTCTRL, 1));
    recs.extend(tap(1050, KEY_S));
    recs.push(key(1100, keys::KEY_LEFTCTRL, 0));
    let acts = run(with_screen(recs));
    assert_eq!(only(&acts, "type").text.as_deref(), Some("h"));
    let h = only(&acts, "hotkey");
    assert_eq!(
        h.keys.as_deref(),
        Some(&["ctrl".to_owned(), "s".to_owned()][..])
    );
    assert_eq!(h.modifiers.as_deref(), Some(&["ctrl".to_owned()][..]));
    assert_eq!(
        h.pyautogui.as_deref(),
        Some("pyautogui.hotkey('ctrl', 's')")
    );
    assert!(
        of_kind(&acts, "key").is_empty(),
        "ctrl was not tapped alone"
    );
}

#[test]
fn a_pause_ends_the_typing() {
    let mut recs = tap(1000, KEY_H);
    recs.extend(tap(1000 + 1500, KEY_I));
    let acts = run(with_screen(recs));
    let texts: Vec<_> = of_kind(&acts, "type")
        .iter()
        .map(|a| a.text.clone())
        .collect();
    assert_eq!(texts, vec![Some("h".into()), Some("i".into())]);
}

#[test]
fn a_click_ends_the_typing() {
    let mut recs = tap(1000, KEY_H);
    recs.extend(click_at(1100, 5.0, 5.0));
    recs.extend(tap(1200, KEY_I));
    let acts = run(with_screen(recs));
    let kinds: Vec<&str> = acts
        .iter()
        .map(|a| a.kind.as_str())
        .filter(|k| *k != "focus")
        .collect();
    assert_eq!(kinds, vec!["type", "click", "type"]);
}

#[test]
fn autorepeat_folds_into_the_key() {
    let recs = vec![
        key(1000, keys::KEY_RIGHT, 1),
        key(1500, keys::KEY_RIGHT, 2),
        key(1533, keys::KEY_RIGHT, 2),
        key(1566, keys::KEY_RIGHT, 2),
        key(1600, keys::KEY_RIGHT, 0),
    ];
    let acts = run(with_screen(recs));
    let k = only(&acts, "key");
    assert_eq!(k.repeat_count, Some(3));
    assert_eq!((k.event_first, k.event_last), (Some(0), Some(4)));
    assert_eq!(
        k.pyautogui.as_deref(),
        Some("pyautogui.press('right', presses=4)")
    );
}

#[test]
fn keys_masked_at_timing_stay_masked() {
    let mut recs = with_screen(Vec::new());
    recs.extend(tap(1000, keys::KEY_A));
    recs.extend(tap(1100, keys::KEY_A));
    recs.extend(tap(1200, keys::KEY_BACKSPACE));
    let mut its = items(recs);
    for it in &mut its {
        if matches!(it.rec, Record::Event(_)) {
            it.level = Some(Level::Timing);
        }
    }
    let acts = build(&its);
    let t = only(&acts, "type");
    assert_eq!(t.text.as_deref(), Some("\u{2022}"));
    assert_eq!(t.level.as_deref(), Some("timing"));
    assert_eq!(t.pyautogui, None, "a masked text has no call");
}

#[test]
fn focus_redaction_and_gap_records_are_actions() {
    let recs = vec![
        focus(),
        Record::Redaction(Box::new(Redaction {
            from_ns: 2000 * MS,
            to_ns: 2300 * MS,
            rule: "card_number".into(),
            count: 16,
            placeholder: "[card_number]".into(),
            focus: FOCUS,
            device: KBD,
            key_times_ns: vec![2000 * MS, 2300 * MS],
        })),
        Record::Gap(Gap {
            from_ns: 3000 * MS,
            to_ns: 3100 * MS,
            stage: Stage::RingFull,
            count: 42,
            device: 0,
        }),
    ];
    let acts = run(recs);
    let f = only(&acts, "focus");
    assert_eq!(f.app_id.as_deref(), Some("org.gnome.gedit"));
    assert_eq!(f.exe.as_deref(), Some("/usr/bin/gedit"));
    assert_eq!(f.focus_seq, Some(FOCUS));
    let r = only(&acts, "redacted");
    assert_eq!(r.redaction_rule.as_deref(), Some("card_number"));
    assert_eq!(r.redaction_count, Some(16));
    assert_eq!(r.redaction_placeholder.as_deref(), Some("[card_number]"));
    assert_eq!(r.key_times_ms.as_deref(), Some(&[0.0, 300.0][..]));
    let g = only(&acts, "gap");
    assert_eq!(
        (g.gap_stage.as_deref(), g.gap_count),
        (Some("ring_full"), Some(42))
    );
    assert_eq!(g.end_mono_ns - g.start_mono_ns, 100 * MS);
}

#[test]
fn motion_between_actions_is_a_move_with_a_path() {
    let mut recs = vec![
        sample(1000, 10.0, 10.0, PointerTrigger::Motion, 0),
        sample(1020, 20.0, 15.0, PointerTrigger::Motion, 0),
        sample(1040, 30.0, 20.0, PointerTrigger::Motion, 0),
    ];
    recs.extend(click_at(1100, 30.0, 20.0));
    recs.push(sample(1300, 40.0, 20.0, PointerTrigger::Motion, 0));
    recs.push(sample(1320, 50.0, 20.0, PointerTrigger::Motion, 0));
    // After a pause of more than 500 ms: another move.
    recs.push(sample(2000, 60.0, 20.0, PointerTrigger::Motion, 0));
    recs.push(sample(2020, 70.0, 20.0, PointerTrigger::Motion, 0));
    let acts = run(with_screen(recs));
    let moves = of_kind(&acts, "move");
    assert_eq!(moves.len(), 3);
    let m = moves[0];
    assert_eq!((m.x, m.y), (Some(30.0), Some(20.0)), "where it ended");
    let xs: Vec<f64> = m.path.as_ref().expect("path").iter().map(|p| p.x).collect();
    assert_eq!(xs, vec![10.0, 20.0, 30.0]);
    assert_eq!(m.end_mono_ns - m.start_mono_ns, 40 * MS);
    assert_eq!(
        m.pyautogui.as_deref(),
        Some("pyautogui.moveTo(x=0.0156, y=0.0185)")
    );
    let kinds: Vec<&str> = acts
        .iter()
        .map(|a| a.kind.as_str())
        .filter(|k| *k != "focus")
        .collect();
    assert_eq!(kinds, vec!["move", "click", "move", "move"]);
}

#[test]
fn counts_and_pastes_make_no_actions() {
    let recs = vec![
        Record::Counts(imprint_record::Counts {
            from_ns: 1,
            to_ns: 2,
            keys: 5,
            ..Default::default()
        }),
        Record::Paste(imprint_record::Paste::default()),
    ];
    assert!(run(recs).is_empty());
}
