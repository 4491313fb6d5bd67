//! The agent as a daemon: its paths and options from the configuration, signals, and the
//! run loop. Shared by the `imprint-agent` binary and `imprint agent` / `imprint run`.

use crate::{AgentOptions, StopHandle};
use imprint_config::{Config, DEFAULT_PATH};
use imprint_spool::SpoolOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Resolved paths for one invocation.
#[derive(Clone, Debug)]
pub struct Paths {
    pub ring: PathBuf,
    pub cursor: PathBuf,
    pub status: PathBuf,
    pub spool: PathBuf,
    /// The agent's control socket.
    pub control: PathBuf,
    /// The collector's session socket (helpers' focus reports, the agent's verdicts).
    pub session: PathBuf,
    /// Where `imprint metrics --serve` answers scrapes.
    pub metrics: PathBuf,
}

/// Where everything lives: from the configuration, or all under `data_dir` (development and
/// tests).
pub fn paths(cfg: &Config, data_dir: Option<&Path>) -> Paths {
    let (run, agent_run, data) = match data_dir {
        Some(d) => (d.join("run"), d.join("run"), d.to_path_buf()),
        None => (
            cfg.paths.run_dir.clone(),
            cfg.paths.agent_run_dir.clone(),
            cfg.paths.data_dir.clone(),
        ),
    };
    Paths {
        ring: imprint_ring::ring_path(&run),
        cursor: agent_run.join(imprint_ring::CURSOR_FILE),
        status: agent_run.join("agent.status.json"),
        control: match data_dir {
            Some(d) => d.join(crate::control::SOCKET_FILE),
            None => cfg.paths.status_dir.join(crate::control::SOCKET_FILE),
        },
        spool: data.join("spool"),
        session: run.join(imprint_record::wire::SOCKET_FILE),
        metrics: match (&cfg.metrics.socket, data_dir) {
            (Some(p), None) => p.clone(),
            _ => agent_run.join("metrics.sock"),
        },
    }
}

/// The agent's options from the configuration.
pub fn options(
    cfg: &Config,
    paths: &Paths,
    exit_when_closed: bool,
) -> anyhow::Result<AgentOptions> {
    prepare_data_dir(paths)?;
    ensure_parent(&paths.cursor, 0o750)?;
    if paths.control.parent() != paths.spool.parent() {
        // Every local user may reach the socket (it answers each about themselves only).
        ensure_parent(&paths.control, 0o755)?;
    }
    Ok(AgentOptions {
        ring_path: paths.ring.clone(),
        cursor_path: paths.cursor.clone(),
        status_path: paths.status.clone(),
        spool: SpoolOptions {
            segment_max_bytes: cfg.spool.segment_max_bytes,
            retention_max_bytes: cfg.spool.retention_max_bytes,
            retention_max_age: Duration::from_secs(cfg.spool.retention_max_age_hours * 3600),
            // With shipping on, retention keeps what the store has not acknowledged.
            keep_unshipped: cfg.ship.enabled,
            // Malformed keys stop the agent: it never falls back to writing plaintext.
            recipients: if cfg.spool.recipients.is_empty() {
                None
            } else {
                Some(imprint_spool::Recipients::parse(&cfg.spool.recipients)?)
            },
            ..SpoolOptions::new(paths.spool.clone())
        },
        fsync_interval: cfg.spool.fsync_interval(),
        policy: cfg.compile_policy(Path::new(DEFAULT_PATH))?,
        policy_source: None,
        exit_when_closed,
        control_path: Some(paths.control.clone()),
        session_socket: Some(paths.session.clone()),
        ship: cfg.ship.clone(),
    })
}

/// The data directory is private (0700) before anything is created inside it.
pub fn prepare_data_dir(paths: &Paths) -> anyhow::Result<()> {
    ensure_parent(&paths.spool, 0o700)
}

/// Creates the directory a file lives in with `mode`, when missing.
pub fn ensure_parent(path: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        imprint_fsutil::ensure_dir_mode(dir, mode)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Runs the agent with the configuration at `config` (and whether it must exist) until
/// SIGTERM/SIGINT, or until the ring is closed and drained with `exit_when_closed`.
pub fn run(
    config: (PathBuf, bool),
    data_dir: Option<&Path>,
    exit_when_closed: bool,
) -> anyhow::Result<crate::AgentStats> {
    let cfg = Config::load(&config.0, config.1)?;
    let paths = paths(&cfg, data_dir);
    let mut opts = options(&cfg, &paths, exit_when_closed)?;
    opts.policy_source = Some(config);
    let stop = StopHandle::default();
    let signal_stop = stop.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("imprint-signals".into())
        .spawn(move || {
            rt.block_on(shutdown_signal());
            signal_stop.stop();
        })?;
    let stats = crate::run(opts, stop)?;
    tracing::info!(events = stats.events_written, "agent stopped");
    Ok(stats)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
