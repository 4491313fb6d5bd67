//! The dataset end to end, in the real kernel with a real X server: a uinput mouse and keyboard
//! drive Debian's Xorg (libinput input driver, dummy video driver, see [`crate::xorg`]);
//! `imprint run` captures the kernel's events, `imprint-session --tracker x11` reports the
//! focused window (xmessage, covering the screen) and the server's pointer positions; after
//! the run, `imprint export --format jsonl` turns the spool into actions. The host checks the
//! exported clicks, drag, scroll, typed text and Ctrl+S against what the script sent and
//! against where X had the pointer (`xdotool getmouselocation`) at each press. (`xinput
//! test-xi2 --root` sees no button events here: xmessage's window takes them first.)

use crate::harness::{shell_quote, VmRun};
use crate::json_lines;
use crate::xorg::{self, mouse_location, Input, DISPLAY};
use serde_json::Value;
use std::path::Path;

const MOUSE: &str = "imprint-dataset-mouse";
const KEYBOARD: &str = "imprint-dataset-keyboard";
const CONFIG: &str = "/etc/imprint/imprint.toml";

/// Only xmessage is in scope; the shell, and anything unknown, is not.
const IMPRINT_TOML: &str = r#"[session]
owner_uid = 0
agent_user = "0"

[focus]
tracker = "none"

[spool]
fsync_interval_ms = 50

[policy]
default = "off"
unknown_focus = "off"

[[rule]]
name = "xmessage"
exe = "/usr/bin/xmessage"
level = "full"
"#;

/// What the devices do, once imprint is recording. Positions are absolute on the 1280x800
/// screen because the first step pushes the pointer into the top-left corner and libinput's
/// flat profile moves one pixel per unit.
const SCRIPT: &str = r#"move -2000 -2000
sleep 200
move 200 150
sleep 200
exec xdotool getmouselocation > /tmp/xloc/click
click left
sleep 600
move 100 100
sleep 200
exec xdotool getmouselocation > /tmp/xloc/drag-from
drag left 250 100 10
exec xdotool getmouselocation > /tmp/xloc/drag-to
sleep 600
move 50 50
sleep 200
exec xdotool getmouselocation > /tmp/xloc/scroll
scroll -3
sleep 600
type hello world
sleep 600
chord ctrl+s
sleep 600
"#;

const CLICK_AT: (f64, f64) = (200.0, 150.0);
const DRAG_FROM: (f64, f64) = (300.0, 250.0);
const DRAG_TO: (f64, f64) = (550.0, 350.0);
const SCROLL_AT: (f64, f64) = (600.0, 400.0);

fn guest_script() -> String {
    let inputs = [Input::pointer(MOUSE), Input::keyboard(KEYBOARD)];
    format!(
        r#"export DISPLAY={DISPLAY} NO_COLOR=1
{driver}{start}
xmessage -geometry 1280x800+0+0 -buttons "" "imprint dataset test" > /tmp/xmessage.log 2>&1 &
i=0
until win=$(xdotool search --class Xmessage 2>/dev/null | tail -n 1) && [ -n "$win" ]; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then echo "no xmessage window"; cat /tmp/xmessage.log; exit 1; fi
    sleep 0.1
done
# No window manager here: set what one would, the active window.
xprop -root -f _NET_ACTIVE_WINDOW 32x -set _NET_ACTIVE_WINDOW $(printf '%#x' $win)
mkdir -p /tmp/xloc
mkdir -p /data
imprint run --config {CONFIG} --data-dir /data > /tmp/imprint.log 2>&1 &
imprint=$!
i=0
while [ $i -lt 120 ]; do
    imprint status --config {CONFIG} --data-dir /data 2>/dev/null \
        | grep -q -e 'source: evdev' -e 'source: ebpf' && break
    sleep 0.5
    i=$((i + 1))
done
IMPRINT_LOG=info,imprint_session=debug imprint-session --config {CONFIG} --tracker x11 \
    --socket /data/run/session.sock > /tmp/session.log 2>&1 &
session=$!
i=0
until grep -q 'connected to the collector' /tmp/session.log \
    && grep -q 'x11 pointer watcher connected' /tmp/session.log \
    && grep -q 'exe=/usr/bin/xmessage' /tmp/session.log; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then echo "imprint-session did not start"; break; fi
    sleep 0.1
done
touch /tmp/go
wait $driver
driver_rc=$?
# Let the last samples reach the spool (fsync every 50 ms).
sleep 2
imprint status --json --config {CONFIG} --data-dir /data > /tmp/status.json 2>&1
kill -TERM $session
wait $session
kill -TERM $imprint
wait $imprint
imprint_rc=$?
{stop}
head -c 32 /dev/urandom > /tmp/key
chmod 600 /tmp/key
imprint export --config {CONFIG} --data-dir /data --format jsonl --out /tmp/export \
    --key /tmp/key > /tmp/export.log 2>&1
export_rc=$?
for f in /tmp/xloc/*; do echo "${{f##*/}} $(cat $f)"; done > /tmp/locs
echo "driver=$driver_rc imprint=$imprint_rc export=$export_rc" > /tmp/rcs
section rcs /tmp/rcs
section imprint-log /tmp/imprint.log
section session-log /tmp/session.log
section status /tmp/status.json
section export-log /tmp/export.log
section driver-log /tmp/driver.log
section locs /tmp/locs
section actions /tmp/export/actions.jsonl
section sessions /tmp/export/sessions.jsonl
"#,
        driver = xorg::driver("/etc/imprint-test/dataset.txt", MOUSE, KEYBOARD),
        start = xorg::start(&inputs),
        stop = xorg::stop(),
    )
}

fn run() -> VmRun {
    let mut vm = xorg::vm("dataset_actions_from_xorg_match_the_server")
        .unwrap_or_else(|err| panic!("putting Xorg into the initramfs: {err:#}"))
        .with_imprint()
        .with_session()
        .file(CONFIG, IMPRINT_TOML, 0o644)
        .file("/etc/imprint-test/dataset.txt", SCRIPT, 0o644)
        .script(&guest_script());
    for exe in ["/usr/bin/xmessage", "/usr/bin/xprop"] {
        vm.initramfs()
            .copy_dynamic(Path::new(exe))
            .unwrap_or_else(|err| panic!("{exe} (apt-get install x11-utils): {err:#}"));
    }
    vm.run().unwrap_or_else(|err| panic!("{err:#}"))
}

fn xy(v: &Value, x: &str, y: &str) -> Option<(f64, f64)> {
    Some((v[x].as_f64()?, v[y].as_f64()?))
}

fn within_1px(got: Option<(f64, f64)>, want: (f64, f64)) -> bool {
    got.is_some_and(|(x, y)| (x - want.0).abs() <= 1.0 && (y - want.1).abs() <= 1.0)
}

#[test]
fn dataset_actions_from_xorg_match_the_server() {
    let run = run();
    if run.section("rcs").trim() != "driver=0 imprint=0 export=0" {
        run.fail(&format!("exit statuses: {}", run.section("rcs")));
    }
    run.assert_success();
    let actions = json_lines(&run, "actions");
    let summary: Vec<String> = actions
        .iter()
        .map(|a| {
            format!(
                "{} {} x={} y={} end=({}, {}) text={} keys={} detents={} unavailable={}",
                a["type"],
                a["button"],
                a["x"],
                a["y"],
                a["end_x"],
                a["end_y"],
                a["text"],
                a["keys"],
                a["scroll_detents"],
                a["position_unavailable"]
            )
        })
        .collect();
    let fail = |what: &str| -> ! {
        run.fail(&format!(
            "{what}\nexported actions:\n  {}",
            summary.join("\n  ")
        ))
    };
    let of = |kind: &str| -> Vec<&Value> { actions.iter().filter(|a| a["type"] == kind).collect() };

    // Where X had the pointer (xdotool getmouselocation) just before each press and after
    // the drag; the Xorg test shows X delivers the button events there.
    let locs: std::collections::HashMap<&str, (f64, f64)> = run
        .section("locs")
        .lines()
        .map(|line| {
            let (name, text) = line.split_once(' ').unwrap_or((line, ""));
            match mouse_location(text) {
                Ok((x, y)) => (name, (f64::from(x), f64::from(y))),
                Err(err) => fail(&format!("section locs: {err:#}")),
            }
        })
        .collect();
    let at = |name: &str| -> (f64, f64) {
        *locs
            .get(name)
            .unwrap_or_else(|| fail(&format!("no pointer location {name} from X: {locs:?}")))
    };
    let want = [
        ("click", CLICK_AT),
        ("drag-from", DRAG_FROM),
        ("drag-to", DRAG_TO),
        ("scroll", SCROLL_AT),
    ];
    for (name, sent) in want {
        if at(name) != sent {
            fail(&format!(
                "X put the pointer at {:?} for {name}, the script at {sent:?}",
                at(name)
            ));
        }
    }

    // The click, at the position X reported for its press.
    let clicks = of("click");
    let [click] = clicks[..] else {
        fail(&format!("want one click, got {}", clicks.len()))
    };
    if click["button"] != "left" || !within_1px(xy(click, "x", "y"), at("click")) {
        fail(&format!(
            "click: {click}; X had the pointer at {:?}",
            at("click")
        ));
    }
    let pyautogui = click["pyautogui"].as_str().unwrap_or("");
    if !pyautogui.starts_with("pyautogui.click(x=0.15") {
        fail(&format!("click's pyautogui form: {pyautogui:?}"));
    }

    // The drag: from X's press to X's release, with a path that moves right and down.
    let drags = of("drag");
    let [drag] = drags[..] else {
        fail(&format!("want one drag, got {}", drags.len()))
    };
    if !within_1px(xy(drag, "x", "y"), at("drag-from"))
        || !within_1px(xy(drag, "end_x", "end_y"), at("drag-to"))
    {
        fail(&format!(
            "drag: {drag}; X had the pointer at {:?}, then {:?}",
            at("drag-from"),
            at("drag-to")
        ));
    }
    let path: Vec<(f64, f64)> = drag["path"]
        .as_array()
        .map(|p| p.iter().filter_map(|s| xy(s, "x", "y")).collect())
        .unwrap_or_default();
    let ordered = path
        .windows(2)
        .all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1);
    let inside = path.iter().all(|&(x, y)| {
        (DRAG_FROM.0..=DRAG_TO.0).contains(&x) && (DRAG_FROM.1..=DRAG_TO.1).contains(&y)
    });
    if path.len() < 3 || !ordered || !inside {
        fail(&format!(
            "drag path: {path:?} (want at least 3 samples, from {DRAG_FROM:?} towards \
             {DRAG_TO:?}, in order)"
        ));
    }

    // The scroll: three detents down, where X put its wheel buttons.
    let scrolls = of("scroll");
    let [scroll] = scrolls[..] else {
        fail(&format!("want one scroll, got {}", scrolls.len()))
    };
    if scroll["scroll_detents"] != -3 || !within_1px(xy(scroll, "x", "y"), at("scroll")) {
        fail(&format!("scroll: {scroll}"));
    }

    // The typing, and the hotkey.
    let typed: String = of("type")
        .iter()
        .filter_map(|a| a["text"].as_str())
        .collect();
    if typed != "hello world" {
        fail(&format!("typed text {typed:?}, want \"hello world\""));
    }
    let hotkeys = of("hotkey");
    let [hotkey] = hotkeys[..] else {
        fail(&format!("want one hotkey, got {}", hotkeys.len()))
    };
    if hotkey["keys"] != serde_json::json!(["ctrl", "s"])
        || hotkey["pyautogui"] != "pyautogui.hotkey('ctrl', 's')"
    {
        fail(&format!("hotkey: {hotkey}"));
    }

    // Every action is xmessage's, with its window, on the server's layout.
    let sessions = json_lines(&run, "sessions");
    let [session] = &sessions[..] else {
        fail(&format!("want one session, got {sessions:?}"))
    };
    if session["display_server"] != "x11"
        || session["screen_width"] != xorg::SCREEN.0
        || session["screen_height"] != xorg::SCREEN.1
        || session["pointer_available"] != true
    {
        fail(&format!("session: {session}"));
    }
    for a in [click, drag, scroll] {
        if a["window_rect"]["width"].as_u64().unwrap_or(0) < 1000 {
            fail(&format!("no xmessage window on {a}"));
        }
    }
    eprintln!(
        "dataset: {} actions; click at {:?}, drag {:?} -> {:?} over {} samples; {}",
        actions.len(),
        xy(click, "x", "y"),
        xy(drag, "x", "y"),
        xy(drag, "end_x", "end_y"),
        path.len(),
        shell_quote(&typed)
    );
}
