#!/bin/sh
# Records the D-Bus messages that tests/focus_dbus.rs replays: the exact method calls the GNOME
# Shell extension and the KWin script make (org.imprint.Focus1.Report), plus malformed ones,
# sent by real D-Bus clients to a real dbus-daemon and captured by dbus-monitor.
#
#   sh tests/data/focus/record.sh            # rewrites gnome.pcap and kde.pcap here
#
# Needs dbus-daemon, dbus-monitor, gdbus (libglib2.0-bin) and busctl (systemd).
# No collector owns org.imprint.Focus while recording: the bus answers every call with
# ServiceUnknown, which changes nothing in the calls themselves (the monitor sees each call
# as the bus received it, with the sender field the bus stamped on it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'kill $mon $bus 2>/dev/null; rm -rf "$tmp"' EXIT
addr="unix:path=$tmp/bus"

dbus-daemon --session --nofork --address="$addr" >/dev/null 2>&1 &
bus=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -S "$tmp/bus" ] && break; sleep 0.1; done

DEST="--dest org.imprint.Focus --object-path /org/imprint/Focus1"
REPORT="--method org.imprint.Focus1.Report"

# gdbus is GIO's client: the same GDBus code that gnome-shell's Gio.DBus.session.call() uses.
gcall() { gdbus call --address "$addr" $DEST "$@" >/dev/null 2>&1 || true; }
# busctl is sd-bus; QtDBus (KWin's callDBus) marshals through libdbus; all three write the
# same wire format, which is the point of replaying them.
bcall() { busctl --address="$addr" call -- org.imprint.Focus /org/imprint/Focus1 org.imprint.Focus1 "$@" >/dev/null 2>&1 || true; }

record() {
    out=$1
    shift
    dbus-monitor --address "$addr" --pcap >"$tmp/$out" 2>/dev/null &
    mon=$!
    sleep 0.3
    "$@"
    sleep 0.3
    kill $mon
    wait $mon 2>/dev/null || true
    cp "$tmp/$out" "$here/$out"
}

gnome() {
    # 1. a window, as the extension sends it (title included: the collector asked for titles)
    gcall $REPORT "{'pid': <uint32 4242>, 'wm_class': <'org.gnome.TextEditor'>, 'app_id': <'org.gnome.TextEditor'>, 'title': <'notes.txt'>, 'x11': <false>, 'reporter': <'gnome-shell-extension 1'>}"
    # 2. no window has focus (overview, empty workspace)
    gcall $REPORT "{'pid': <uint32 0>, 'reporter': <'gnome-shell-extension 1'>}"
    # 3. an Xwayland window: WM_CLASS, no app id, x11 (its pid may be the client's claim)
    gcall $REPORT "{'pid': <uint32 5151>, 'wm_class': <'XTerm'>, 'app_id': <''>, 'x11': <true>, 'reporter': <'gnome-shell-extension 1'>}"
    # 4. pid of the wrong type (a string)
    gcall $REPORT "{'pid': <'4242'>, 'wm_class': <'x'>}"
    # 5. no pid at all
    gcall $REPORT "{'wm_class': <'org.gnome.TextEditor'>}"
    # 6. wrong argument list: a bare int32 instead of a{sv}
    gcall $REPORT 4242
    # 7. a method the collector does not implement
    gcall --method org.imprint.Focus1.Hello "{'pid': <uint32 1>}"
    # 8. a pid out of range
    gcall $REPORT "{'pid': <int64 -1>}"
    # 9. wm_class of the wrong type
    gcall $REPORT "{'pid': <uint32 4242>, 'wm_class': <uint32 7>}"
}

kde() {
    # 1. a window, as the KWin script sends it (QtDBus marshals a JS integer as int32)
    bcall Report 'a{sv}' 6 pid i 3141 wm_class s org.kde.konsole app_id s org.kde.konsole title s 'bash — Konsole' x11 b false reporter s 'kwin-script 1'
    # 2. pid as a double (a JS number QtDBus did not narrow)
    bcall Report 'a{sv}' 3 pid d 3141 wm_class s org.kde.dolphin app_id s org.kde.dolphin
    # 3. a double that is not a whole number
    bcall Report 'a{sv}' 1 pid d 3141.5
    # 4. no window has focus
    bcall Report 'a{sv}' 2 pid i 0 reporter s 'kwin-script 1'
    # 5. negative pid
    bcall Report 'a{sv}' 1 pid i -7
    # 6. wrong argument list: four strings (an older, positional protocol)
    bcall Report ssss 3141 org.kde.konsole org.kde.konsole title
}

record gnome.pcap gnome
record kde.pcap kde
echo "recorded: $here/gnome.pcap $here/kde.pcap"
