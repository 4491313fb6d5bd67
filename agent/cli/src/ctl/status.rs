//! `imprint status`: whether capture is on, which source is live, the ring's fill, the
//! spool's size and every drop counter, what is captured about the caller right now, and the
//! organisation's notice.
//!
//! Any local user may run it. The ring is readable only by the collector and the `imprint`
//! group, so what every user may know (capture on or off, the live source, the collector's
//! counters) comes from the agent's control socket, which reads the ring on their behalf;
//! reading the ring directly is an extra for those who can. When neither answers, capture is
//! reported as unknown, never as off.

use super::Locations;
use imprint_agent::control::{self, ControlError, Reply, Request};
use imprint_agent::daemon::Paths;
use imprint_agent::status::{pid_alive, CaptureView};
use imprint_agent::{policy_status_path, PolicyStatus};
use imprint_config::NoticeConfig;
use imprint_metrics::{prometheus, AgentStats, Exposition};
use imprint_ring::reader::peek_stats;
use imprint_ring::{RingError, RingStats};
use imprint_source::ebpf::{peek_status as peek_ebpf, EbpfStatus};
use std::path::Path;

/// Where the capture state shown came from.
enum Capture {
    /// Read from the ring header here (the caller can read the ring).
    Ring(CaptureView),
    /// As the agent read it, answering on its control socket.
    Agent(CaptureView),
    /// Nothing reachable could tell; the text says what was tried.
    Unknown(String),
}

impl Capture {
    fn view(&self) -> Option<&CaptureView> {
        match self {
            Capture::Ring(v) | Capture::Agent(v) => Some(v).filter(|v| v.known),
            Capture::Unknown(_) => None,
        }
    }

    fn origin(&self) -> Option<&'static str> {
        match self {
            Capture::Ring(v) if v.known => Some("ring"),
            Capture::Agent(v) if v.known => Some("agent"),
            _ => None,
        }
    }
}

/// What capture is, from the direct ring read and the agent's answer, best first.
fn capture_state(
    ring_path: &Path,
    ring: &Result<RingStats, RingError>,
    you: Option<&Result<Reply, ControlError>>,
) -> Capture {
    if let Ok(r) = ring {
        return Capture::Ring(CaptureView::from_stats(r, pid_alive(r.collector_pid)));
    }
    let agent = you.and_then(|y| y.as_ref().ok());
    if let Some(c) = agent.and_then(|r| r.capture.as_ref()) {
        return Capture::Agent(c.clone());
    }
    let ring_err = match ring {
        Err(RingError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            // Visible to everyone (its directory is world-readable): no collector has made
            // a ring, so nothing is captured.
            return Capture::Ring(CaptureView {
                known: true,
                error: Some(format!("no collector ring at {}", ring_path.display())),
                ..CaptureView::default()
            });
        }
        Err(e @ RingError::BadHeader { .. }) => {
            return Capture::Ring(CaptureView {
                known: true,
                error: Some(e.to_string()),
                ..CaptureView::default()
            });
        }
        Err(e) => e.to_string(),
        Ok(_) => String::new(),
    };
    let why = match (agent, you) {
        (Some(_), _) => "the agent does not report capture (an older agent?)".to_owned(),
        (None, Some(Err(e))) => format!("the agent is not answering ({e})"),
        _ => "the agent was not asked".to_owned(),
    };
    Capture::Unknown(format!(
        "{why}, and the collector's ring cannot be read here ({ring_err})"
    ))
}

pub fn run(loc: &Locations, json: bool, prom: bool, ask: Request) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let acting = ask != Request::Status;
    let you = (!prom).then(|| control::request(&paths.control, &ask));
    let refused = matches!(&you, Some(Ok(r)) if r.error.is_some())
        || (acting && matches!(&you, Some(Err(_))));
    let code = i32::from(refused);
    if prom {
        print!("{}", prometheus_text(&paths));
        return Ok(0);
    }
    let ring = peek_stats(&paths.ring, &paths.cursor);
    let agent = AgentStats::read(&paths.status);
    let ring_ok = ring.as_ref().ok();
    let agent_ok = agent.as_ref().ok();
    let ebpf = ring_ok
        .and_then(|_| peek_ebpf(&paths.ring).ok())
        .map(|e| fresh_ebpf(&paths.ring, &paths.session, e));
    let pstatus = read_policy_status(&policy_status_path(&paths.status));
    let capture = capture_state(&paths.ring, &ring, you.as_ref());
    let answered = you.as_ref().and_then(|r| r.as_ref().ok());
    // The running agent's notice, else the configuration's as read here (an agent started
    // without a configuration file knows none).
    let notice = answered
        .map(|r| &r.notice)
        .filter(|n| !n.text.is_empty())
        .unwrap_or(&cfg.notice);
    let machine_paused = ebpf.as_ref().map(|e| e.paused).or_else(|| {
        let file = paths.ring.parent()?.join(imprint_source::ebpf::PAUSE_FILE);
        file.try_exists().ok()
    });
    if json {
        let view = capture.view();
        let v = serde_json::json!({
            "capture_on": view.map(|c| c.capture_on),
            "capture_known": view.is_some(),
            "capture_from": capture.origin(),
            "capture": match &capture {
                Capture::Ring(c) | Capture::Agent(c) => serde_json::to_value(c)?,
                Capture::Unknown(why) => serde_json::json!({ "known": false, "error": why }),
            },
            "collector_running": view.map(|c| c.collector_running),
            "machine_paused": machine_paused,
            "ring": ring_ok,
            "ebpf": ebpf,
            "agent": agent_ok,
            "policy_level": cfg.capture.default_level.as_str(),
            "policy": pstatus,
            "notice": notice,
            "you": you.as_ref().map(|r| r.as_ref().map_err(|e| e.to_string())),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    print_capture(&capture);
    if let Some(e) = &ebpf {
        print_ebpf(e);
    } else if machine_paused == Some(true) {
        println!("paused:    yes, on this whole machine: no input event is captured (`imprint resume` resumes)");
    }
    match (&pstatus, cfg.compile_policy(&loc.config_source().0)) {
        (Some(p), _) => print_policy(p),
        (None, _) if answered.is_some() => {}
        (None, Ok(p)) => println!(
            "policy:    {} rules; default {}, unknown focus {} (from configuration; the agent has not reported yet)",
            p.stamp().rules,
            p.default_level().as_str(),
            p.unknown_focus_level().as_str()
        ),
        (None, Err(e)) => println!("policy:    invalid configuration: {e}"),
    }
    match &agent {
        Ok(a) => {
            println!(
                "spool:     {} bytes in {}",
                a.spool_bytes,
                paths.spool.display()
            );
            if a.spool_encrypted {
                println!(
                    "encryption: on, to {} operator key(s); this machine cannot read the spool back",
                    a.spool_recipients
                );
            } else {
                println!(
                    "encryption: OFF: the spool is unencrypted on disk (set [spool] recipients)"
                );
            }
            println!(
                "written:   {} events in {} batches",
                a.events_written, a.batches_written
            );
            println!(
                "agent drops: policy={} disk={} (gap pending: {}) ring_corrupt={}",
                a.dropped_policy, a.dropped_disk, a.dropped_disk_pending, a.ring_corrupt_frames
            );
        }
        // The spool's own counters are the operators'; what concerns the caller follows.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && answered.is_some() => {}
        Err(e) => println!("agent:     no status yet ({}: {e})", paths.status.display()),
    }
    if let Some(you) = &you {
        print_you(you);
    }
    print_notice(notice);
    Ok(code)
}

fn print_capture(c: &Capture) {
    let (v, by) = match c {
        Capture::Ring(v) => (v, ""),
        Capture::Agent(v) => (v, "; as the agent reports"),
        Capture::Unknown(why) => {
            println!("capture:   unknown: {why}");
            return;
        }
    };
    if !v.known {
        println!(
            "capture:   unknown: {}",
            v.error.as_deref().unwrap_or("the agent cannot tell")
        );
    } else if v.collector_running {
        println!(
            "capture:   {} (source: {}, {} devices, collector pid {}{by})",
            if v.capture_on { "on" } else { "off" },
            v.source,
            v.devices,
            v.collector_pid
        );
        print_ring_counters(v);
    } else if let Some(e) = &v.error {
        println!("capture:   off ({e}{by})");
    } else {
        println!(
            "capture:   off (collector not running; last ring epoch {}{by})",
            v.epoch
        );
        print_ring_counters(v);
    }
}

/// The organisation's notice, as configured.
fn print_notice(n: &NoticeConfig) {
    if n.text.is_empty() {
        println!("notice:    none configured");
        return;
    }
    println!("notice:    version {}", n.version);
    for line in n.text.lines() {
        println!("  {line}");
    }
}

/// The caller's own part, as the agent's control socket tells it.
fn print_you(you: &Result<Reply, ControlError>) {
    let r = match you {
        Ok(r) => r,
        Err(e) => {
            println!("you:       the agent cannot be asked ({e})");
            return;
        }
    };
    if let Some(e) = &r.error {
        println!("refused:   {e}");
    }
    if !r.policy.is_empty() {
        println!("policy:    {} (version:hash)", r.policy);
    }
    match &r.focused {
        Some(c) => {
            let app = if c.app_id.is_empty() {
                c.exe.clone()
            } else {
                format!("{} ({})", c.exe, c.app_id)
            };
            let secure = c
                .secure
                .as_deref()
                .map(|s| format!("; secure input: {s}, capped at timing"))
                .unwrap_or_default();
            let rule = if c.rule.is_empty() {
                "no rule matched: the policy's default".to_owned()
            } else {
                format!("rule {}", c.rule)
            };
            println!(
                "you:       focused {app}: captured at level {} ({rule}){secure}",
                c.level
            );
        }
        None => println!("you:       no application of yours has focus on this seat"),
    }
    match (r.paused_for_s, r.pause_max_minutes) {
        (Some(s), _) => println!(
            "paused:    yes, by you: nothing of yours is captured for {} min {} s more (`imprint status --resume` ends it)",
            s / 60,
            s % 60
        ),
        (None, 0) => println!("paused:    no (this machine's policy does not offer pausing)"),
        (None, max) => println!(
            "paused:    no (you may pause for up to {max} minutes: `imprint status --pause MINUTES`)"
        ),
    }
}

fn print_ring_counters(r: &CaptureView) {
    let pct = if r.capacity > 0 {
        r.pending_bytes as f64 * 100.0 / r.capacity as f64
    } else {
        0.0
    };
    println!(
        "ring:      {} of {} bytes pending ({pct:.1}%)",
        r.pending_bytes, r.capacity
    );
    println!(
        "captured:  evdev={} ebpf={} replay={}",
        r.events_evdev, r.events_ebpf, r.events_replay
    );
    println!(
        "collector drops: ring_full={} evdev_syn_dropped={} (gap records written: {})",
        r.frames_dropped, r.evdev_dropped, r.gaps_written
    );
    println!(
        "sessions:  {} helpers connected, {} lost; reports refused={} malformed={}; scope gate {} ({} events kept out)",
        r.helpers,
        r.helpers_lost,
        r.reports_refused,
        r.reports_malformed,
        if r.scope_closed { "closed" } else { "open" },
        r.scope_dropped
    );
    println!(
        "pointer:   {} positions from the display server, {} dropped by a full ring",
        r.pointer_samples, r.pointer_dropped
    );
}

fn print_ebpf(e: &EbpfStatus) {
    if e.paused {
        println!("paused:    yes: no input event is captured (`imprint resume` resumes)");
    }
    match (e.live, e.fallback, &e.reason) {
        (true, _, _) => println!(
            "ebpf:      live (ring buffer {} bytes, {} wake-ups; kernel: {} submitted, {} gated while paused, {} lost to a full ring buffer)",
            e.ringbuf_bytes, e.wakeups, e.kernel.submitted, e.kernel.gated_off, e.kernel.reserve_failed
        ),
        (false, Some(code), reason) => println!(
            "ebpf:      unavailable ({code}), using evdev: {}",
            reason.as_deref().unwrap_or("")
        ),
        (false, None, _) => {}
    }
}

/// Every metric, in Prometheus text format: what `status --prometheus` prints and
/// `imprint metrics --serve` answers, read fresh from the ring, the agent's snapshots and the
/// collector.
pub fn prometheus_text(paths: &Paths) -> String {
    let ring = peek_stats(&paths.ring, &paths.cursor);
    let agent = AgentStats::read(&paths.status);
    let ebpf = ring
        .as_ref()
        .ok()
        .and_then(|_| peek_ebpf(&paths.ring).ok())
        .map(|e| fresh_ebpf(&paths.ring, &paths.session, e));
    let bpf_lost = ebpf
        .as_ref()
        .map(|e| vec![("{stage=\"bpf_reserve\"}", e.kernel.reserve_failed)])
        .unwrap_or_default();
    let mut out = prometheus(ring.as_ref().ok(), agent.as_ref().ok(), &bpf_lost);
    if let Some(p) = read_policy_status(&policy_status_path(&paths.status)) {
        out.push_str(&policy_prometheus(&p));
    }
    if let Some(e) = &ebpf {
        out.push_str(&ebpf_prometheus(e));
    }
    let ship = imprint_ship::status::status_path(&paths.status);
    if let Some(s) = imprint_ship::status::ShipStatus::read(&ship) {
        out.push_str(&s.prometheus());
    }
    out
}

/// The eBPF source's metrics (their own families; the shared ones come from `metrics`).
fn ebpf_prometheus(e: &EbpfStatus) -> String {
    let k = &e.kernel;
    let mut out = Exposition::default();
    out.one(
        "imprint_ebpf_live",
        "gauge",
        "1 while the eBPF source is live (0: evdev fallback, see imprint status).",
        u64::from(e.live),
    );
    out.one(
        "imprint_capture_paused",
        "gauge",
        "1 while capture is paused.",
        u64::from(e.paused),
    );
    out.family(
        "imprint_bpf_events_total",
        "counter",
        "Input events seen by the eBPF programs, by outcome.",
        &[
            ("{outcome=\"submitted\"}", k.submitted),
            ("{outcome=\"gated_off\"}", k.gated_off),
            ("{outcome=\"gated_type\"}", k.gated_type),
            ("{outcome=\"reserve_failed\"}", k.reserve_failed),
        ],
    );
    out.one(
        "imprint_bpf_ringbuf_wakeups_total",
        "counter",
        "Times the collector woke to drain the BPF ring buffer.",
        e.wakeups,
    );
    out.finish()
}

/// `imprint pause` / `imprint resume`: creates or removes the pause file beside the ring, which
/// the collector watches.
pub fn pause(loc: &Locations, on: bool) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let dir = paths
        .ring
        .parent()
        .ok_or_else(|| anyhow::anyhow!("the ring path has no directory"))?;
    let file = dir.join(imprint_source::ebpf::PAUSE_FILE);
    if on {
        std::fs::write(&file, b"").map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        println!("capture paused ({} exists)", file.display());
    } else {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("{}: {e}", file.display()),
        }
        println!("capture resumed");
    }
    Ok(0)
}

fn read_policy_status(path: &std::path::Path) -> Option<PolicyStatus> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The policy in force and what it did (from the agent's private status file; the caller's
/// own focus comes from the control socket, see [`print_you`]).
fn print_policy(p: &PolicyStatus) {
    println!(
        "policy:    version {}, hash {}, {} rules; default {}, unknown focus {}",
        p.stamp.version, p.stamp.hash, p.stamp.rules, p.default_level, p.unknown_focus_level
    );
    let f = &p.filter;
    let redacted: Vec<String> = f.redacted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "redaction: {} keys masked (timing), {} keys capped by echo-off terminals, {} pastes, redacted: {}",
        f.masked_keys,
        f.echo_off_keys,
        f.pastes,
        if redacted.is_empty() {
            "none".to_owned()
        } else {
            redacted.join(" ")
        }
    );
    if f.no_helper_dropped > 0 || f.tty_unknown_keys > 0 {
        println!(
            "fail closed: {} events not written (no session helper reported focus), {} key presses capped (terminal state unreadable)",
            f.no_helper_dropped, f.tty_unknown_keys
        );
    }
    if !f.keymap.is_empty() {
        println!(
            "keymap:    {}{}",
            f.keymap,
            if f.keymap_fallback {
                " (libxkbcommon unavailable: typed text rebuilt with the US layout)"
            } else {
                ""
            }
        );
    }
    if f.motion_coalesced > 0 || f.paused > 0 {
        println!(
            "pointer:   {} motion events coalesced; {} events not written while users paused",
            f.motion_coalesced, f.paused
        );
    }
    if p.reload.reloads > 0 || p.reload.failures > 0 {
        println!(
            "reloads:   {} ok, {} refused{}",
            p.reload.reloads,
            p.reload.failures,
            p.reload
                .last_error
                .as_deref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        );
    }
}

/// Policy metrics in Prometheus text format.
fn policy_prometheus(p: &PolicyStatus) -> String {
    let mut out = Exposition::default();
    let rules: Vec<(String, u64)> = p
        .filter
        .redacted
        .iter()
        .map(|(rule, n)| {
            let rule = rule.replace(['\\', '"', '\n'], "_");
            (format!("{{rule=\"{rule}\"}}"), *n)
        })
        .collect();
    let samples: Vec<(&str, u64)> = rules.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    out.family(
        "imprint_events_redacted_total",
        "counter",
        "Key presses replaced by redaction records, by rule.",
        &samples,
    );
    let f = &p.filter;
    for (name, help, v) in [
        (
            "imprint_keys_masked_total",
            "Printable key events masked at level timing.",
            f.masked_keys,
        ),
        (
            "imprint_pastes_total",
            "Paste shortcuts recorded as paste markers.",
            f.pastes,
        ),
        (
            "imprint_redaction_late_total",
            "Matches found after part of them had left the holdback window.",
            f.late_matches,
        ),
        (
            "imprint_events_paused_total",
            "Input events not written because their user paused capture.",
            f.paused,
        ),
        (
            "imprint_motion_coalesced_total",
            "Relative pointer motion events summed into others.",
            f.motion_coalesced,
        ),
        (
            "imprint_policy_reloads_total",
            "Policy reloads applied.",
            p.reload.reloads,
        ),
        (
            "imprint_policy_reload_failures_total",
            "Policy reloads refused because the new policy did not validate.",
            p.reload.failures,
        ),
    ] {
        out.one(name, "counter", help, v);
    }
    out.one(
        "imprint_keymap_fallback",
        "gauge",
        "1 when typed text is rebuilt with the built-in US layout because xkb is unavailable.",
        u64::from(f.keymap_fallback),
    );
    out.finish()
}

/// The BPF programs' counters reach the ring header only when events flow (or capture
/// changes), so a closed gate would show stale ones: ask the collector for a snapshot on its
/// session socket and wait briefly for it. Without an answer the last snapshot is shown.
fn fresh_ebpf(ring: &Path, session: &Path, e: EbpfStatus) -> EbpfStatus {
    if !e.live {
        return e;
    }
    let Ok(conn) = imprint_record::wire::connect(session) else {
        return e;
    };
    if imprint_record::wire::send(&conn, &imprint_record::wire::SessionMessage::Refresh).is_err() {
        return e;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while std::time::Instant::now() < deadline {
        match peek_ebpf(ring) {
            Ok(now) if now.refreshes != e.refreshes => return now,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(_) => break,
        }
    }
    e
}
