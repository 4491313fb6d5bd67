//! `imprint run`, `imprint collector` and `imprint agent`: wiring the pipeline halves to
//! configuration, signals and each other.

use super::{Locations, Paths};
use imprint_agent::daemon::{self, ensure_parent, prepare_data_dir, shutdown_signal};
use imprint_agent::StopHandle;
use imprint_collector::sessions::{self, SessionAuthority, SessionEvent, SessionSocketOptions};
use imprint_collector::{Collector, CollectorOptions, Input};
use imprint_config::Config;
use imprint_source::{ebpf::EbpfOptions, evdev::INPUT_DIR, libinput_yaml, replay::Speed};
use std::path::Path;
use tokio::sync::mpsc;

/// `imprint run`: both halves in one process. With `--replay` it exits once the recording
/// is on disk; otherwise on SIGTERM or SIGINT, after draining what was captured.
pub fn run(loc: &Locations, replay: Option<&Path>, speed: Speed) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let input = input_for(&cfg, replay, speed)?;
    let replayed = match &input {
        Input::Replay(rec, _) => Some((
            rec.events.len(),
            rec.devices
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
        )),
        _ => None,
    };
    let rt = runtime()?;
    let collector = Collector::create(&collector_options(&cfg, &paths)?)?;
    let stop = StopHandle::default();
    let mut opts = daemon::options(&cfg, &paths, true)?;
    opts.policy_source = Some(loc.config_source());
    let agent_stop = stop.clone();
    let agent = std::thread::Builder::new()
        .name("imprint-agent".into())
        .spawn(move || imprint_agent::run(opts, agent_stop))?;
    let sessions = rt.block_on(async {
        let rx = sessions_for(&cfg, &paths)?;
        spawn_focus(&cfg, &input, &rx.1);
        anyhow::Ok(rx.0)
    })?;
    let summary = rt.block_on(collector.run(input, Some(sessions), shutdown_signal()));
    if summary.is_err() {
        stop.stop();
    }
    let stats = agent
        .join()
        .map_err(|_| anyhow::anyhow!("agent thread panicked"))??;
    let summary = summary?;

    if let Some((events, devices)) = replayed {
        println!(
            "replayed {events} events from {} devices ({})",
            devices.len(),
            devices.join(", ")
        );
    }
    println!(
        "captured {} events; wrote {} events ({} records in {} batches) to {} ({} bytes), policy level {}",
        summary.events,
        stats.events_written,
        stats.records_written,
        stats.batches_written,
        paths.spool.display(),
        stats.spool_bytes,
        stats.level
    );
    println!(
        "dropped: ring_full={} policy={} disk={} ring_corrupt={}",
        summary.frames_dropped, stats.dropped_policy, stats.dropped_disk, stats.ring_corrupt_frames
    );
    if stats.level == "off" && stats.events_written == 0 {
        println!(
            "the policy admitted nothing: nothing is captured or written \
             (add [[rule]] entries, or set capture.default_level, in the config)"
        );
    }
    Ok(0)
}

/// `imprint collector`: the privileged half alone. Focus comes only from imprint-session
/// helpers, over the session socket.
pub fn collector(
    loc: &Locations,
    replay: Option<&Path>,
    speed: Speed,
    session_focus: bool,
) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let input = input_for(&cfg, replay, speed)?;
    let rt = runtime()?;
    let mut collector = Collector::create(&collector_options(&cfg, &paths)?)?;
    collector.replay_with_session_focus(session_focus);
    collector.expect_session_helpers(true);
    let sessions = rt.block_on(async { sessions_for(&cfg, &paths) })?.0;
    rt.block_on(collector.run(input, Some(sessions), shutdown_signal()))?;
    Ok(0)
}

/// Serves the session socket; returns its receiver, and a sender for in-process trackers.
fn sessions_for(
    cfg: &Config,
    paths: &Paths,
) -> anyhow::Result<(mpsc::Receiver<SessionEvent>, mpsc::Sender<SessionEvent>)> {
    let (tx, rx) = mpsc::channel(256);
    let authority = match cfg.session.owner_uid {
        Some(uid) => SessionAuthority::Uid(uid),
        None => SessionAuthority::logind(&cfg.focus.seat),
    };
    // A user name, or a bare uid (machines and tests without that user in passwd).
    let agent_uids = match cfg.session.agent_user.parse::<u32>() {
        Ok(uid) => vec![uid],
        Err(_) => nix::unistd::User::from_name(&cfg.session.agent_user)
            .ok()
            .flatten()
            .map(|u| vec![u.uid.as_raw()])
            .unwrap_or_default(),
    };
    sessions::spawn(
        SessionSocketOptions {
            path: paths.session.clone(),
            authority,
            agent_uids,
        },
        tx.clone(),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", paths.session.display()))?;
    Ok((rx, tx))
}

/// `imprint agent`: the unprivileged half alone (what `imprint-agent` runs).
pub fn agent(loc: &Locations, exit_when_closed: bool) -> anyhow::Result<i32> {
    daemon::run(loc.config_source(), loc.data_dir(), exit_when_closed)?;
    Ok(0)
}

fn input_for(cfg: &Config, replay: Option<&Path>, speed: Speed) -> anyhow::Result<Input> {
    if cfg
        .compile_policy(Path::new(imprint_config::DEFAULT_PATH))?
        .captures_nothing()
    {
        return Ok(Input::Off);
    }
    Ok(match replay {
        Some(path) => Input::Replay(libinput_yaml::load(path)?, speed),
        // eBPF first; the collector falls back to evdev (and says why) when it cannot load.
        None => Input::Ebpf(EbpfOptions::from_env(), INPUT_DIR.into()),
    })
}

/// Focus trackers in this process (`imprint run`), on their own thread: the X11 client
/// makes blocking round trips, and a hung display server must never stall the capture loop.
fn spawn_focus(cfg: &Config, input: &Input, tx: &mpsc::Sender<SessionEvent>) {
    if !matches!(input, Input::Evdev(_) | Input::Ebpf(..)) {
        return;
    }
    let focus = cfg.focus.clone();
    let tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("imprint-focus".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(async move {
                    let (ftx, mut frx) = mpsc::channel::<Box<imprint_record::FocusInfo>>(64);
                    let forward = async move {
                        while let Some(mut f) = frx.recv().await {
                            f.reporter = "inproc".into();
                            if tx.send(SessionEvent::Focus(0, f)).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::join!(imprint_session::run(focus, ftx), forward);
                }),
                Err(e) => tracing::error!(error = %e, "cannot start the focus tracker"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the focus tracker; events carry unknown focus");
    }
}

fn collector_options(cfg: &Config, paths: &Paths) -> anyhow::Result<CollectorOptions> {
    prepare_data_dir(paths)?;
    // The ring's directory is entered by the agent's group and, for the session socket, by
    // every user's helper; the ring itself is 0640.
    ensure_parent(&paths.ring, 0o755)?;
    Ok(CollectorOptions {
        ring_path: paths.ring.clone(),
        cursor_path: paths.cursor.clone(),
        ring_capacity: cfg.ring.capacity_bytes,
        ring_mode: 0o640,
        ring_group: Some("imprint".into()),
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
