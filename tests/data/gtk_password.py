#!/usr/bin/python3
"""A real GTK 3 window for tests/session_atspi.rs: a normal entry and a password entry
(visibility off, which GTK exposes over AT-SPI with the role `password text`).

Focus is driven from stdin, one command a line:
  normal    focus the normal entry
  password  focus the password entry
  probe-a   focus the first of two buttons (push button role: not an entry)
  probe-b   focus the second button
  quit      exit
Each command is answered on stdout with `ok COMMAND` once GTK has moved its focus, and
`ready` is printed once the window is mapped and holds the X input focus. There is no
window manager under Xvfb, so the window takes the X focus itself (XSetInputFocus via
Gdk.Window.focus), which is what makes GTK treat it as active and report widget focus.

A focus change is sent over AT-SPI (during grab_focus, so before `ok`) only once GTK's
bridge has connected its ATK listeners, which it does asynchronously, after the registry
has embedded the application and listed its listeners. The test therefore moves focus
between the two buttons until one is reported before it looks at the entries.

Needs python3-gi and gir1.2-gtk-3.0; NO_AT_BRIDGE must not be set.
"""
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import GLib, Gdk, Gtk  # noqa: E402

APP = "imprint-gtk-password"


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    GLib.set_prgname(APP)
    GLib.set_application_name(APP)
    win = Gtk.Window(title="imprint password test")
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
    normal = Gtk.Entry()
    normal.set_name("normal")
    normal.get_accessible().set_name("normal entry")
    password = Gtk.Entry()
    password.set_name("password")
    password.set_visibility(False)
    password.get_accessible().set_name("password entry")
    probe_a = Gtk.Button(label="probe a")
    probe_b = Gtk.Button(label="probe b")
    box.pack_start(normal, False, False, 0)
    box.pack_start(password, False, False, 0)
    box.pack_start(probe_a, False, False, 0)
    box.pack_start(probe_b, False, False, 0)
    win.add(box)
    win.connect("destroy", Gtk.main_quit)
    entries = {"normal": normal, "password": password, "probe-a": probe_a, "probe-b": probe_b}
    announced = [False]

    def take_x_focus(*_):
        gdk_win = win.get_window()
        if gdk_win is not None:
            gdk_win.focus(Gdk.CURRENT_TIME)
        return False

    def on_active(*_):
        if win.is_active() and not announced[0]:
            announced[0] = True
            normal.grab_focus()
            say("ready")

    def on_stdin(source, condition):
        line = source.readline()
        if not line:
            Gtk.main_quit()
            return False
        cmd = line.strip()
        if cmd == "quit":
            Gtk.main_quit()
            return False
        target = entries.get(cmd)
        if target is None:
            say("error unknown command " + cmd)
            return True
        # Without a window manager nothing gives focus back if it was lost; take it again.
        if not win.is_active():
            take_x_focus()
        target.grab_focus()
        say("ok " + cmd if target.has_focus() else "error no focus " + cmd)
        return True

    win.connect("notify::is-active", on_active)
    win.connect("map-event", take_x_focus)
    win.show_all()
    GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
    Gtk.main()


if __name__ == "__main__":
    main()
