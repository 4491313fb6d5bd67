//! `imprint status`: whether capture is on, which source is live, the ring's fill, the
//! spool's size and every drop counter.

use super::Locations;
use crate::metrics::{prometheus, AgentStats};
use crate::ring::reader::peek_stats;
use crate::ring::RingStats;

pub fn run(loc: &Locations, json: bool, prom: bool) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let ring = peek_stats(&paths.ring, &paths.cursor);
    let agent = AgentStats::read(&paths.status);
    let ring_ok = ring.as_ref().ok();
    let agent_ok = agent.as_ref().ok();
    let alive = ring_ok.is_some_and(|r| !r.closed && pid_alive(r.collector_pid));
    if prom {
        print!("{}", prometheus(ring_ok, agent_ok));
        return Ok(0);
    }
    if json {
        let v = serde_json::json!({
            "capture_on": alive && ring_ok.is_some_and(|r| r.capture_on),
            "collector_running": alive,
            "ring": ring_ok,
            "agent": agent_ok,
            "policy_level": cfg.capture.default_level.as_str(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    match &ring {
        Ok(r) if alive => print_ring(r),
        Ok(r) => {
            println!(
                "capture:   off (collector not running; last ring epoch {})",
                r.epoch
            );
            print_ring_counters(r);
        }
        Err(e) => println!("capture:   off (no collector ring: {e})"),
    }
    println!(
        "policy:    default level {} (from configuration)",
        cfg.capture.default_level.as_str()
    );
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
