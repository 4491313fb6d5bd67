//! `imprint status`: whether capture is on, which source is live, the ring's fill, the
//! spool's size and every drop counter.

use super::Locations;
use crate::agent::{policy_status_path, PolicyStatus};
use crate::metrics::{prometheus, AgentStats};
use crate::ring::reader::peek_stats;
use crate::ring::RingStats;
use crate::source::ebpf::{peek_status as peek_ebpf, EbpfStatus};

pub fn run(loc: &Locations, json: bool, prom: bool) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let ring = peek_stats(&paths.ring, &paths.cursor);
    let agent = AgentStats::read(&paths.status);
    let ring_ok = ring.as_ref().ok();
    let agent_ok = agent.as_ref().ok();
    let alive = ring_ok.is_some_and(|r| !r.closed && pid_alive(r.collector_pid));
    let ebpf = ring_ok.and_then(|_| peek_ebpf(&paths.ring).ok());
    let pstatus = read_policy_status(&policy_status_path(&paths.status));
    if prom {
        print!("{}", prometheus(ring_ok, agent_ok));
        if let Some(p) = &pstatus {
            print!("{}", policy_prometheus(p));
        }
        if let Some(e) = &ebpf {
            print!("{}", ebpf_prometheus(e));
        }
        return Ok(0);
    }
    if json {
        let v = serde_json::json!({
            "capture_on": alive && ring_ok.is_some_and(|r| r.capture_on),
            "collector_running": alive,
            "ring": ring_ok,
            "ebpf": ebpf,
            "agent": agent_ok,
            "policy_level": cfg.capture.default_level.as_str(),
            "policy": pstatus,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    match &ring {
        Ok(r) if alive => {
            print_ring(r);
            if let Some(e) = &ebpf {
                print_ebpf(e);
            }
        }
        Ok(r) => {
            println!(
                "capture:   off (collector not running; last ring epoch {})",
                r.epoch
            );
            print_ring_counters(r);
        }
        Err(e) => println!("capture:   off (no collector ring: {e})"),
    }
    match (&pstatus, cfg.compile_policy(&loc.config_source().0)) {
        (Some(p), _) => print_policy(p),
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
            println!(
                "written:   {} events in {} batches",
                a.events_written, a.batches_written
            );
            println!(
                "agent drops: policy={} disk={} (gap pending: {}) ring_corrupt={}",
                a.dropped_policy, a.dropped_disk, a.dropped_disk_pending, a.ring_corrupt_frames
            );
        }
        Err(e) => println!("agent:     no status yet ({}: {e})", paths.status.display()),
    }
    Ok(0)
}

fn print_ring(r: &RingStats) {
    println!(
        "capture:   {} (source: {}, {} devices, collector pid {})",
        if r.capture_on { "on" } else { "off" },
        r.source,
        r.devices,
        r.collector_pid
    );
    print_ring_counters(r);
}

fn print_ring_counters(r: &RingStats) {
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
}

fn pid_alive(pid: u32) -> bool {
    pid != 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
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

/// The eBPF source's metrics (their own families; the shared ones come from `metrics`).
fn ebpf_prometheus(e: &EbpfStatus) -> String {
    let k = &e.kernel;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    metric(
        "imprint_ebpf_live",
        "gauge",
        "1 while the eBPF source is live (0: evdev fallback, see imprint status).",
        &[("", u64::from(e.live))],
    );
    metric(
        "imprint_capture_paused",
        "gauge",
        "1 while capture is paused.",
        &[("", u64::from(e.paused))],
    );
    metric(
        "imprint_bpf_events_total",
        "counter",
        "Input events seen by the eBPF programs, by outcome.",
        &[
            ("{outcome=\"submitted\"}", k.submitted),
            ("{outcome=\"gated_off\"}", k.gated_off),
            ("{outcome=\"gated_device\"}", k.gated_device),
            ("{outcome=\"gated_type\"}", k.gated_type),
            ("{outcome=\"reserve_failed\"}", k.reserve_failed),
        ],
    );
    metric(
        "imprint_bpf_ringbuf_wakeups_total",
        "counter",
        "Times the collector woke to drain the BPF ring buffer.",
        &[("", e.wakeups)],
    );
    out
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
    let file = dir.join(crate::source::ebpf::PAUSE_FILE);
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

/// What is captured, shown to whoever runs `imprint status`: the policy in force and, when the
/// focused application belongs to the caller, its level and the rule that decided it.
fn print_policy(p: &PolicyStatus) {
    println!(
        "policy:    version {}, hash {}, {} rules; default {}, unknown focus {}",
        p.stamp.version, p.stamp.hash, p.stamp.rules, p.default_level, p.unknown_focus_level
    );
    let me = nix::unistd::getuid().as_raw();
    match &p.current {
        Some(c) if c.uid == Some(me) || me == 0 => {
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
            println!(
                "you:       focused {app}: captured at level {} (rule {}){secure}",
                c.level, c.rule
            );
        }
        Some(c) if c.uid.is_none() => println!(
            "you:       focus unknown: captured at level {} ({})",
            c.level, c.rule
        ),
        _ => println!("you:       no application of yours has focus on this seat"),
    }
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
    let mut out = String::new();
    out.push_str("# HELP imprint_events_redacted_total Key presses replaced by redaction records, by rule.\n# TYPE imprint_events_redacted_total counter\n");
    for (rule, n) in &p.filter.redacted {
        let rule = rule.replace(['\\', '"', '\n'], "_");
        out.push_str(&format!(
            "imprint_events_redacted_total{{rule=\"{rule}\"}} {n}\n"
        ));
    }
    let mut one = |name: &str, kind: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    one(
        "imprint_keys_masked_total",
        "counter",
        "Printable key events masked at level timing.",
        p.filter.masked_keys,
    );
    one(
        "imprint_pastes_total",
        "counter",
        "Paste shortcuts recorded as paste markers.",
        p.filter.pastes,
    );
    one(
        "imprint_redaction_late_total",
        "counter",
        "Matches found after part of them had left the holdback window.",
        p.filter.late_matches,
    );
    one(
        "imprint_policy_reloads_total",
        "counter",
        "Policy reloads applied.",
        p.reload.reloads,
    );
    one(
        "imprint_policy_reload_failures_total",
        "counter",
        "Policy reloads refused because the new policy did not validate.",
        p.reload.failures,
    );
    out
}
