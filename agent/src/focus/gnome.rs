//! GNOME Shell: not implemented yet. The plan (see `packaging/FOCUS.md`): a Shell extension
//! in `packaging/gnome-shell-extension/` calls `org.imprint.Focus1.Report(pid, wm_class,
//! app_id, title)` on the user's session bus whenever `global.display` changes
//! `focus-window`; the collector owns that name (connecting as the session's user) and
//! checks that the sender is the session's gnome-shell. Until then `tracker = "gnome"`
//! reports focus as unknown (and retries).
