// Runs the shipped GNOME Shell extension and KWin script against stubbed Shell / KWin APIs
// (neither desktop runs here) and checks what they would send over D-Bus:
//   node tests/data/focus/reporters.test.mjs
// tests/focus_dbus.rs runs it. Uses node's own test runner; no packages.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import {fileURLToPath} from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const KWIN_JS = fs.readFileSync(path.join(root, 'packaging/kwin-script/imprint-focus/contents/code/main.js'), 'utf8');
const GNOME_JS = fs.readFileSync(path.join(root, 'packaging/gnome-shell-extension/imprint-focus@imprint/extension.js'), 'utf8');

// ---- KWin -------------------------------------------------------------------------------

function kwin({plasma6 = true, kwinUid = 1000, collectorUid = 990, wantTitles = false, active = null} = {}) {
    const reports = [];
    const handlers = [];
    const signal = () => ({connect: f => handlers.push(f), disconnect: () => {}});
    const workspace = plasma6
        ? {windowActivated: signal(), activeWindow: active}
        : {clientActivated: signal(), activeClient: active};
    const ctx = {
        workspace,
        print: () => {},
        callDBus(service, objectPath, iface, method, ...args) {
            const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null;
            if (method === 'GetConnectionUnixUser') {
                cb(args[0] === 'org.kde.KWin' ? kwinUid : collectorUid);
            } else if (method === 'Report') {
                assert.equal(service, 'org.imprint.Focus');
                assert.equal(objectPath, '/org/imprint/Focus1');
                assert.equal(iface, 'org.imprint.Focus1');
                assert.equal(args.length, 1, 'one a{sv} argument');
                reports.push(JSON.parse(JSON.stringify(args[0])));
                if (cb)
                    cb(wantTitles);
            } else {
                assert.fail(`unexpected call ${method}`);
            }
        },
    };
    vm.createContext(ctx);
    vm.runInContext(KWIN_JS, ctx);
    const activate = w => {
        if (plasma6)
            workspace.activeWindow = w;
        else
            workspace.activeClient = w;
        handlers.forEach(h => h(w));
    };
    return {reports, activate, handlers};
}

const konsole = {pid: 3141, resourceClass: 'org.kde.konsole', desktopFileName: 'org.kde.konsole', caption: 'bash — Konsole'};

test('kwin (Plasma 6): reports the active window at start and on activation, no caption', () => {
    const k = kwin({active: konsole});
    assert.equal(k.handlers.length, 1, 'connected to windowActivated');
    assert.deepEqual(k.reports, [{reporter: 'kwin-script 1', pid: 3141, wm_class: 'org.kde.konsole', app_id: 'org.kde.konsole', x11: false}]);
    k.activate({pid: 77, resourceClass: 'firefox', desktopFileName: 'firefox', caption: 'bank', x11Client: true});
    assert.deepEqual(k.reports[1], {reporter: 'kwin-script 1', pid: 77, wm_class: 'firefox', app_id: 'firefox', x11: true});
    k.activate(null);
    assert.deepEqual(k.reports[2], {reporter: 'kwin-script 1', pid: 0});
});

test('kwin: the caption only once the collector asks for titles', () => {
    const k = kwin({active: konsole, wantTitles: true});
    assert.equal(k.reports.length, 2);
    assert.equal(k.reports[0].title, undefined);
    assert.equal(k.reports[1].title, 'bash — Konsole');
});

test('kwin (Plasma 5): clientActivated, QByteArray strings', () => {
    const bytes = s => new Uint8Array([...s].map(c => c.charCodeAt(0))).buffer;
    const k = kwin({plasma6: false, active: {pid: 12, resourceClass: bytes('dolphin'), desktopFileName: bytes('org.kde.dolphin'), caption: 'x'}});
    assert.equal(k.handlers.length, 1, 'connected to clientActivated');
    assert.deepEqual(k.reports, [{reporter: 'kwin-script 1', pid: 12, wm_class: 'dolphin', app_id: 'org.kde.dolphin', x11: false}]);
});

test('kwin: nothing goes to a name held by a program of the same user', () => {
    const k = kwin({active: konsole, collectorUid: 1000});
    assert.deepEqual(k.reports, []);
});

// ---- GNOME Shell ------------------------------------------------------------------------

function gnome({ownUid = 1000, collectorUid = 990, wantTitles = false, focus = null, locked = false} = {}) {
    const reports = [];
    const on = {};
    let appeared = null;
    class Variant {
        constructor(type, value) {
            this.type = type;
            this.value = value;
        }
    }
    const unpack = v => Object.fromEntries(Object.entries(v).map(([k, x]) => [k, [x.type, x.value]]));
    const bus = {
        call(name, objectPath, iface, method, params, replyType, flags, timeout, cancellable, cb) {
            let reply;
            if (method === 'GetConnectionUnixUser') {
                assert.deepEqual([...params.value], [':1.7']);
                reply = [collectorUid];
            } else if (method === 'Report') {
                assert.equal(name, ':1.7', 'to the owner checked, not to the well-known name');
                assert.equal(objectPath, '/org/imprint/Focus1');
                assert.equal(iface, 'org.imprint.Focus1');
                assert.equal(params.type, '(a{sv})');
                reports.push(unpack(params.value[0]));
                reply = [wantTitles];
            } else {
                assert.fail(`unexpected call ${method}`);
            }
            cb({call_finish: () => ({deepUnpack: () => reply})}, null);
        },
    };
    const window = w => w && {
        get_pid: () => w.pid,
        get_wm_class: () => w.wm_class,
        get_title: () => w.title,
        get_gtk_application_id: () => w.gtk ?? null,
        get_client_type: () => (w.x11 ? 1 : 0),
        connect: () => 1,
        disconnect: () => {},
        app: w.app,
    };
    const display = {
        focus_window: window(focus),
        connect: (sig, f) => {
            on[sig] = f;
            return 1;
        },
        disconnect: () => {},
    };
    const stubs = {
        Gio: {
            DBus: {session: bus},
            Credentials: class { get_unix_user() { return ownUid; } },
            Cancellable: class { cancel() {} },
            BusNameWatcherFlags: {NONE: 0},
            DBusCallFlags: {NONE: 0, NO_AUTO_START: 1},
            IOErrorEnum: {CANCELLED: 19},
            bus_watch_name_on_connection: (conn, name, flags, onAppeared) => {
                assert.equal(name, 'org.imprint.Focus');
                appeared = onAppeared;
                return 5;
            },
            bus_unwatch_name: () => {},
        },
        GLib: {Variant, VariantType: class { constructor(t) { this.t = t; } }},
        Meta: {WindowClientType: {WAYLAND: 0, X11: 1}},
        Shell: {WindowTracker: {get_default: () => ({get_window_app: w => (w.app ? {get_id: () => w.app} : null)})}},
        Extension: class {},
        Main: {sessionMode: {isLocked: locked, connect: () => 2, disconnect: () => {}}},
    };
    const src = GNOME_JS
        .replace(/^import (\w+) from 'gi:\/\/(\w+)';$/mg, 'const $1 = __stubs.$2;')
        .replace(/^import \{Extension\} from .*$/m, 'const {Extension} = __stubs;')
        .replace(/^import \* as Main from .*$/m, 'const Main = __stubs.Main;')
        .replace('export default class', '__stubs.Ext = class');
    assert.ok(!/^import /m.test(src), 'every import stubbed');
    const ctx = {__stubs: stubs, global: {display}, console};
    vm.createContext(ctx);
    vm.runInContext(src, ctx);
    const ext = new stubs.Ext();
    ext.enable();
    return {
        reports,
        ext,
        appear: () => appeared(bus, 'org.imprint.Focus', ':1.7'),
        focus: w => {
            display.focus_window = window(w);
            on['notify::focus-window']();
        },
    };
}

const editor = {pid: 4242, wm_class: 'org.gnome.TextEditor', title: 'notes.txt', app: 'org.gnome.TextEditor.desktop'};

test('gnome: reports once the collector appears, then on every focus change', () => {
    const g = gnome({focus: editor});
    assert.deepEqual(g.reports, [], 'nothing before the collector is on the bus');
    g.appear();
    assert.deepEqual(g.reports, [{
        reporter: ['s', 'gnome-shell-extension 1'],
        pid: ['u', 4242],
        wm_class: ['s', 'org.gnome.TextEditor'],
        app_id: ['s', 'org.gnome.TextEditor.desktop'],
        x11: ['b', false],
    }]);
    g.focus({pid: 5151, wm_class: 'XTerm', title: 't', app: 'window:3', gtk: null, x11: true});
    assert.deepEqual(g.reports[1].app_id, ['s', ''], 'a made-up window:N app is no app id');
    assert.deepEqual(g.reports[1].x11, ['b', true]);
    g.focus(null);
    assert.deepEqual(g.reports[2], {reporter: ['s', 'gnome-shell-extension 1'], pid: ['u', 0]});
    g.ext.disable();
    assert.deepEqual(g.reports[3].pid, ['u', 0], 'disabled: no window');
});

test('gnome: the title only once the collector asks for titles', () => {
    const g = gnome({focus: editor, wantTitles: true});
    g.appear();
    assert.equal(g.reports.length, 2);
    assert.equal(g.reports[0].title, undefined);
    assert.deepEqual(g.reports[1].title, ['s', 'notes.txt']);
});

test('gnome: locked screen is no window', () => {
    const g = gnome({focus: editor, locked: true});
    g.appear();
    assert.deepEqual(g.reports[0].pid, ['u', 0]);
});

test('gnome: nothing goes to a name held by a program of the same user', () => {
    const g = gnome({focus: editor, collectorUid: 1000});
    const warn = console.warn;
    console.warn = () => {};
    try {
        g.appear();
    } finally {
        console.warn = warn;
    }
    g.focus(editor);
    assert.deepEqual(g.reports, []);
});
