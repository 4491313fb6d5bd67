//! `imprint-session`: runs as the user in each login session (a systemd user unit, or XDG
//! autostart) and reports to the collector what only that session can see: the focused
//! application, the terminal's echo state, the lock state and a focused password field.
//! It holds no privilege and opens no input device.

use imprint_session::reporter::{self, Update};
use imprint_session::{FocusConfig, TrackerKind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::mpsc;

const USAGE: &str = "usage: imprint-session [--config FILE] [--socket PATH] [--tracker KIND]";

struct Args {
    config: PathBuf,
    socket: PathBuf,
    tracker: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        config: "/etc/imprint/imprint.toml".into(),
        socket: "/run/imprint/session.sock".into(),
        tracker: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--config" => a.config = value()?.into(),
            "--socket" => a.socket = value()?.into(),
            "--tracker" => a.tracker = Some(value()?),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    init_logging();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("imprint-session: {e}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = match imprint_session::settings::load_focus(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imprint-session: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(t) = &args.tracker {
        match imprint_session::settings::tracker_from_str(t) {
            Some(k) => cfg.tracker = k,
            None => {
                eprintln!("imprint-session: unknown tracker {t}");
                return ExitCode::from(2);
            }
        }
    }
    imprint_session::settings::own_session(&mut cfg);
    // The organisation's notice: a bad [notice] must not stop focus reporting.
    let notice = imprint_session::settings::load_notice(&args.config).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no notice shown");
        Default::default()
    });
    tracing::info!(tracker = cfg.tracker.as_str(), socket = %args.socket.display(), "imprint-session starting");
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imprint-session: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        tokio::spawn(imprint_session::notice::at_login(notice));
        run(cfg, args.socket).await
    });
    ExitCode::SUCCESS
}

async fn run(cfg: FocusConfig, socket: PathBuf) {
    let (tx, rx) = mpsc::channel(64);
    // Focus: the trackers for this session, resolved to process identity.
    let (ftx, mut frx) = mpsc::channel(64);
    tokio::spawn(imprint_session::run(cfg.clone(), ftx));
    let focus_out = tx.clone();
    tokio::spawn(async move {
        while let Some(f) = frx.recv().await {
            if focus_out.send(Update::Focus(f)).await.is_err() {
                return;
            }
        }
    });
    let mut watchers = reporter::Watchers::default();
    if cfg.tracker == TrackerKind::X11 {
        watchers.locks.push("x11");
        tokio::spawn(watch_lock_x11(cfg.clone(), tx.clone()));
        tokio::spawn(watch_pointer_x11(cfg.clone(), tx.clone()));
    } else {
        // Never estimated from kernel deltas: without the server's word, positions are null.
        let why = match cfg.tracker {
            TrackerKind::Sway => "sway has no IPC for the cursor position",
            TrackerKind::Tty | TrackerKind::None => "no display server",
            _ => "imprint-session does not read pointer positions from this desktop yet",
        };
        let _ = tx
            .send(imprint_session::pointer::unavailable(
                cfg.tracker.as_str(),
                why,
            ))
            .await;
    }
    if let Ok(id) = std::env::var("XDG_SESSION_ID") {
        watchers.locks.push("logind");
        tokio::spawn(watch_lock_logind(id, tx.clone()));
    }
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        watchers.accessible = true;
        tokio::spawn(watch_accessible(tx.clone()));
    }
    drop(tx);
    tokio::select! {
        () = reporter::run(socket, watchers, rx) => {}
        () = shutdown() => tracing::info!("imprint-session stopping"),
    }
}

/// Restarts `watch` after it fails, with a capped backoff; each failure first sends
/// `unavailable`, so a watcher that cannot run does not hold its verdict undecided forever.
async fn retry<F, Fut, E>(
    what: &'static str,
    tx: &mpsc::Sender<Update>,
    unavailable: impl Fn() -> Update,
    mut watch: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match watch().await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(watcher = what, error = %e, retry_ms = backoff.as_millis() as u64, "watcher stopped");
                if tx.send(unavailable()).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn watch_lock_x11(cfg: FocusConfig, tx: mpsc::Sender<Update>) {
    let lockers: Vec<String> = imprint_session::lock::DEFAULT_LOCKERS
        .iter()
        .map(|s| s.to_string())
        .collect();
    retry(
        "x11 lock",
        &tx,
        || Update::LockUnavailable { source: "x11" },
        || {
            let (ltx, lrx) = mpsc::channel(8);
            let w = imprint_session::lock::watch_x11(
                cfg.x11_display.clone(),
                cfg.x11_xauthority.clone(),
                lockers.clone(),
                ltx,
            );
            let fwd = forward_lock("x11", lrx, tx.clone());
            async move {
                tokio::select! {
                    r = w => r,
                    () = fwd => Ok(()),
                }
            }
        },
    )
    .await
}

async fn watch_pointer_x11(cfg: FocusConfig, tx: mpsc::Sender<Update>) {
    retry(
        "x11 pointer",
        &tx,
        || imprint_session::pointer::unavailable("x11", "lost the X server connection"),
        || {
            imprint_session::pointer::watch_x11(
                cfg.x11_display.clone(),
                cfg.x11_xauthority.clone(),
                tx.clone(),
            )
        },
    )
    .await
}

async fn watch_lock_logind(id: String, tx: mpsc::Sender<Update>) {
    retry(
        "logind lock",
        &tx,
        || Update::LockUnavailable { source: "logind" },
        || {
            let (ltx, lrx) = mpsc::channel(8);
            let w = imprint_session::lock::watch_logind(id.clone(), ltx);
            let fwd = forward_lock("logind", lrx, tx.clone());
            async move {
                tokio::select! {
                    r = w => r,
                    () = fwd => Ok(()),
                }
            }
        },
    )
    .await
}

async fn forward_lock(
    source: &'static str,
    mut rx: mpsc::Receiver<imprint_session::lock::LockState>,
    tx: mpsc::Sender<Update>,
) {
    while let Some(s) = rx.recv().await {
        let u = Update::Lock {
            source,
            locked: s.locked,
            by: s.by,
        };
        if tx.send(u).await.is_err() {
            return;
        }
    }
}

async fn watch_accessible(tx: mpsc::Sender<Update>) {
    retry(
        "at-spi",
        &tx,
        || Update::AccessibleUnavailable,
        || {
            let (atx, mut arx) = mpsc::channel(8);
            let w = imprint_session::atspi::watch(None, atx);
            let tx = tx.clone();
            let fwd = async move {
                while let Some(a) = arx.recv().await {
                    let u = Update::Accessible {
                        password: a.password,
                        role: a.role_name,
                    };
                    if tx.send(u).await.is_err() {
                        return;
                    }
                }
            };
            async move {
                tokio::select! {
                    r = w => r,
                    () = fwd => Ok(()),
                }
            }
        },
    )
    .await
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("IMPRINT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| imprint_fsutil::LogStderr)
        .with_target(false)
        .try_init();
}
