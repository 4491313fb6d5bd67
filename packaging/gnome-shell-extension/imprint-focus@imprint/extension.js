// imprint focus reporter for GNOME Shell 45 and later (ES modules).
//
// Calls org.imprint.Focus1.Report(a{sv}) -> (b) on the imprint collector, which owns
// org.imprint.Focus on the session bus, whenever the focused window changes and whenever the
// collector (re)appears on the bus. The collector accepts reports only from the owner of
// org.gnome.Shell, i.e. from this process; the pid comes from Mutter, which knows it from the
// client's socket, so a client cannot fake it. See packaging/FOCUS.md.
//
// Reports go only to a collector running as another user than this session's (a system
// service admitted to the session bus by its policy), never to a program of this user that
// took the name. Titles are sent only after the collector has answered that it wants them.
// While the screen is locked, and when the extension is disabled, it reports "no window".

import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Meta from 'gi://Meta';
import Shell from 'gi://Shell';
import {Extension} from 'resource:///org/gnome/shell/extensions/extension.js';
import * as Main from 'resource:///org/gnome/shell/ui/main.js';

const BUS_NAME = 'org.imprint.Focus';
const OBJECT_PATH = '/org/imprint/Focus1';
const INTERFACE = 'org.imprint.Focus1';
const REPORTER = 'gnome-shell-extension 1';
const TIMEOUT_MS = 2000;

export default class ImprintFocusExtension extends Extension {
    enable() {
        this._bus = Gio.DBus.session;
        this._ownUid = new Gio.Credentials().get_unix_user();
        this._collector = null;
        this._wantTitles = false;
        this._titleWindow = null;
        this._titleId = 0;
        this._cancellable = new Gio.Cancellable();
        this._focusId = global.display.connect('notify::focus-window', () => this._report());
        this._lockId = Main.sessionMode.connect('updated', () => this._report());
        this._watchId = Gio.bus_watch_name_on_connection(this._bus, BUS_NAME,
            Gio.BusNameWatcherFlags.NONE,
            (_conn, _name, owner) => this._collectorAppeared(owner),
            () => {
                this._collector = null;
                this._wantTitles = false;
            });
    }

    disable() {
        // Input from now on (the lock screen, another extension's UI) is nobody's: say so.
        this._send({pid: new GLib.Variant('u', 0), reporter: new GLib.Variant('s', REPORTER)}, true);
        global.display.disconnect(this._focusId);
        Main.sessionMode.disconnect(this._lockId);
        Gio.bus_unwatch_name(this._watchId);
        this._watchTitle(null);
        this._cancellable.cancel();
        this._cancellable = null;
        this._collector = null;
        this._bus = null;
    }

    // Accept the name's owner only if it is not a program of this session's user.
    _collectorAppeared(owner) {
        this._bus.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
            'GetConnectionUnixUser', new GLib.Variant('(s)', [owner]), new GLib.VariantType('(u)'),
            Gio.DBusCallFlags.NONE, TIMEOUT_MS, this._cancellable, (conn, res) => {
                try {
                    const [uid] = conn.call_finish(res).deepUnpack();
                    if (uid === this._ownUid) {
                        console.warn(`imprint-focus: ${BUS_NAME} is held by a program of this user (${owner}): not reporting to it`);
                        return;
                    }
                    this._collector = owner;
                    this._report();
                } catch (e) {
                    if (!e.matches?.(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED))
                        console.warn(`imprint-focus: ${e.message}`);
                }
            });
    }

    _report() {
        if (!this._collector)
            return;
        const locked = Main.sessionMode.isLocked;
        const win = locked ? null : global.display.focus_window;
        this._watchTitle(this._wantTitles ? win : null);
        const fields = {reporter: new GLib.Variant('s', REPORTER)};
        if (!win) {
            fields.pid = new GLib.Variant('u', 0);
        } else {
            const app = Shell.WindowTracker.get_default().get_window_app(win);
            let appId = app?.get_id() ?? '';
            // Windows without a .desktop file get a made-up "window:N" app: no app id then.
            if (appId.startsWith('window:'))
                appId = win.get_gtk_application_id() ?? '';
            fields.pid = new GLib.Variant('u', Math.max(win.get_pid(), 0));
            fields.wm_class = new GLib.Variant('s', win.get_wm_class() ?? '');
            fields.app_id = new GLib.Variant('s', appId);
            // Xwayland: Mutter may know the pid only from the client's own _NET_WM_PID.
            fields.x11 = new GLib.Variant('b', win.get_client_type() === Meta.WindowClientType.X11);
            if (this._wantTitles)
                fields.title = new GLib.Variant('s', win.get_title() ?? '');
        }
        this._send(fields, false);
    }

    _send(fields, lastWords) {
        if (!this._collector || !this._bus)
            return;
        // Addressed to the unique name checked above, not to whoever owns BUS_NAME now.
        this._bus.call(this._collector, OBJECT_PATH, INTERFACE, 'Report',
            new GLib.Variant('(a{sv})', [fields]), new GLib.VariantType('(b)'),
            Gio.DBusCallFlags.NO_AUTO_START, TIMEOUT_MS, lastWords ? null : this._cancellable,
            (conn, res) => {
                try {
                    const [want] = conn.call_finish(res).deepUnpack();
                    if (lastWords)
                        return;
                    const asked = want && !this._wantTitles;
                    this._wantTitles = want;
                    if (asked)
                        this._report();
                } catch (e) {
                    if (!e.matches?.(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED))
                        console.warn(`imprint-focus: Report: ${e.message}`);
                }
            });
    }

    // With titles on, a title change of the focused window is reported too.
    _watchTitle(win) {
        if (this._titleWindow === win)
            return;
        if (this._titleWindow && this._titleId)
            this._titleWindow.disconnect(this._titleId);
        this._titleWindow = win;
        this._titleId = win ? win.connect('notify::title', () => this._report()) : 0;
    }
}
