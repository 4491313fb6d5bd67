// imprint focus reporter for KWin (Plasma 5 and 6).
//
// Calls org.imprint.Focus1.Report(a{sv}) -> (b) on the imprint collector, which owns
// org.imprint.Focus on the session bus, whenever a window is activated, and once when the
// script starts (the collector (re)loads it over D-Bus on every connection, so this first
// report tells it the current focus). The collector accepts reports only from the owner of
// org.kde.KWin, i.e. from this process; the pid is KWin's own knowledge of the client (socket
// credentials on Wayland), not something a client can fake. See packaging/FOCUS.md.
//
// Reports go only to a collector running as another user than KWin's (a system service
// admitted to the session bus by its policy), never to a program of this user that took the
// name. Captions are sent only after the collector has answered that it wants titles.

var BUS_NAME = "org.imprint.Focus";
var OBJECT_PATH = "/org/imprint/Focus1";
var INTERFACE = "org.imprint.Focus1";
var REPORTER = "kwin-script 1";

var wantTitles = false;
var kwinUid = -1;
var titleWindow = null;

// Plasma 5 exposes some strings as QByteArray (an ArrayBuffer in JS).
function str(v) {
    if (v === undefined || v === null)
        return "";
    if (typeof v === "string")
        return v;
    if (Object.prototype.toString.call(v) === "[object ArrayBuffer]") {
        var bytes = new Uint8Array(v);
        var s = "";
        for (var i = 0; i < bytes.length; i++)
            s += String.fromCharCode(bytes[i]);
        return s;
    }
    return String(v);
}

function activeWindow() {
    // Plasma 6: activeWindow; Plasma 5: activeClient.
    if (workspace.activeWindow !== undefined)
        return workspace.activeWindow;
    return workspace.activeClient;
}

function fieldsOf(w) {
    var fields = { reporter: REPORTER, pid: 0 };
    if (w) {
        fields.pid = w.pid > 0 ? w.pid : 0;
        fields.wm_class = str(w.resourceClass);
        fields.app_id = str(w.desktopFileName);
        // X11 / Xwayland: KWin may know the pid only from the client's own _NET_WM_PID.
        fields.x11 = !!w.x11Client;
        if (wantTitles)
            fields.title = str(w.caption);
    }
    return fields;
}

function onCaptionChanged() {
    report(activeWindow());
}

// With titles on, a caption change of the active window is reported too.
function watchCaption(w) {
    if (titleWindow === w)
        return;
    if (titleWindow && titleWindow.captionChanged)
        titleWindow.captionChanged.disconnect(onCaptionChanged);
    titleWindow = w;
    if (w && w.captionChanged)
        w.captionChanged.connect(onCaptionChanged);
}

function send(fields) {
    // The owner of BUS_NAME must run as another user than KWin: the collector, a system
    // service; not a program of this session that took the name.
    callDBus("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
        "GetConnectionUnixUser", BUS_NAME, function (uid) {
            if (uid === undefined || uid === kwinUid) {
                print("imprint-focus: " + BUS_NAME + " is held by a program of this user: not reporting to it");
                return;
            }
            callDBus(BUS_NAME, OBJECT_PATH, INTERFACE, "Report", fields, function (want) {
                var asked = !!want && !wantTitles;
                wantTitles = !!want;
                if (asked)
                    report(activeWindow());
            });
        });
}

function report(w) {
    watchCaption(wantTitles ? w : null);
    send(fieldsOf(w));
}

function start() {
    if (workspace.windowActivated !== undefined)
        workspace.windowActivated.connect(report);  // Plasma 6
    else
        workspace.clientActivated.connect(report);  // Plasma 5
    report(activeWindow());
}

// KWin's own uid: the uid a genuine collector must differ from.
callDBus("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
    "GetConnectionUnixUser", "org.kde.KWin", function (uid) {
        kwinUid = uid;
        start();
    });
