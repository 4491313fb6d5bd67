//! `imprint-collector`: the small privileged half, as the package ships it. It reads input
//! (eBPF, or passive evdev), takes focus from the imprint-session helpers and scope verdicts
//! from the agent on the session socket, and frames records into the shared ring. It links
//! no policy, regex, compression or display-protocol code, and reads no configuration file:
//! its few settings are flags in the unit.

use imprint_collector::sessions::{self, SessionAuthority, SessionSocketOptions};
use imprint_collector::{Collector, CollectorOptions, Input};
use imprint_source::ebpf::EbpfOptions;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::mpsc;

const USAGE: &str = "usage: imprint-collector [--run-dir DIR] [--cursor FILE] [--capacity BYTES] \
[--source ebpf|evdev|off] [--input-dir DIR] [--seat SEAT] [--session-uid UID] [--agent-user USER] \
[--ring-group GROUP]";

struct Args {
    run_dir: PathBuf,
    cursor: PathBuf,
    capacity: u64,
    source: String,
    input_dir: PathBuf,
    seat: String,
    session_uid: Option<u32>,
    agent_user: String,
    ring_group: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        run_dir: "/run/imprint".into(),
        cursor: "/run/imprint-agent/cursor".into(),
        capacity: 4 << 20,
        source: "ebpf".into(),
        input_dir: "/dev/input".into(),
        seat: "seat0".into(),
        session_uid: None,
        agent_user: "imprint".into(),
        ring_group: "imprint".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match arg.as_str() {
            "--run-dir" => a.run_dir = value()?.into(),
            "--cursor" => a.cursor = value()?.into(),
            "--capacity" => a.capacity = number(value()?)?,
            "--source" => a.source = value()?,
            "--input-dir" => a.input_dir = value()?.into(),
            "--seat" => a.seat = value()?,
            "--session-uid" => {
                a.session_uid = Some(
                    number(value()?)?
                        .try_into()
                        .map_err(|_| "uid out of range")?,
                )
            }
            "--agent-user" => a.agent_user = value()?,
            "--ring-group" => a.ring_group = value()?,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !a.capacity.is_power_of_two() {
        return Err(format!("--capacity {} is not a power of two", a.capacity));
    }
    Ok(a)
}

fn main() -> ExitCode {
    init_logging();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("imprint-collector: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imprint-collector: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let input = match args.source.as_str() {
        "ebpf" => Input::Ebpf(EbpfOptions::from_env(), args.input_dir.clone()),
        "evdev" => Input::Evdev(args.input_dir.clone()),
        "off" => Input::Off,
        other => anyhow::bail!("unknown --source {other} (ebpf, evdev or off)"),
    };
    // The ring's directory is entered by the agent's group and, for the session socket, by
    // every user's helper: the ring itself stays 0640.
    imprint_fsutil::ensure_dir_mode(&args.run_dir, 0o755)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.run_dir.display()))?;
    let agent_uids = nix::unistd::User::from_name(&args.agent_user)
        .ok()
        .flatten()
        .map(|u| vec![u.uid.as_raw()])
        .unwrap_or_default();
    let authority = match args.session_uid {
        Some(uid) => SessionAuthority::Uid(uid),
        None => SessionAuthority::logind(&args.seat),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let collector = Collector::create(&CollectorOptions {
            ring_path: imprint_ring::ring_path(&args.run_dir),
            cursor_path: args.cursor.clone(),
            ring_capacity: args.capacity,
            ring_mode: 0o640,
            ring_group: Some(args.ring_group.clone()),
        })?;
        let mut collector = collector;
        collector.expect_session_helpers(true);
        collector.set_watchdog(imprint_service::Watchdog::from_env());
        let (tx, rx) = mpsc::channel(256);
        let _server = sessions::spawn(
            SessionSocketOptions {
                path: args.run_dir.join(sessions::SOCKET_FILE),
                authority,
                agent_uids,
            },
            tx,
        )?;
        collector.run(input, Some(rx), shutdown()).await?;
        Ok(())
    })
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM: stopping"),
                _ = i.recv() => tracing::info!("SIGINT: stopping"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

/// Plain text to stderr (journald under systemd); `IMPRINT_LOG` sets the level.
fn init_logging() {
    let level = match std::env::var("IMPRINT_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(|| imprint_fsutil::LogStderr)
        .with_target(false)
        .try_init();
}
