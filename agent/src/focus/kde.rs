//! KDE Plasma (KWin 5 and 6): not implemented yet. The plan (see `packaging/FOCUS.md`): a
//! KWin script in `packaging/kwin-script/`, loaded with `org.kde.kwin.Scripting.loadScript`,
//! connects to `workspace.clientActivated` (5) / `workspace.windowActivated` (6) and calls
//! `callDBus("org.imprint.Focus", "/org/imprint/Focus", "org.imprint.Focus1", "Report", …)`.
//! Until then `tracker = "kde"` reports focus as unknown (and retries).
