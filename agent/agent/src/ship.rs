//! The agent's shipper: a thread with its own single-threaded tokio runtime that ships
//! sealed segments every `[ship] interval_secs` and backs off (with jitter) while the store
//! fails. The agent never waits for it: a store that is down only grows the backlog, which
//! `imprint status --prometheus` shows.

use imprint_config::ship::ShipConfig;
use imprint_ship::{status::status_path, Shipper};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running shipper thread; dropping it stops it (an upload in flight is abandoned and
/// sent again next time: shipping is at least once).
pub struct ShipThread {
    stop: Arc<tokio::sync::Notify>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for ShipThread {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts shipping `spool` when `[ship]` is enabled; errors are logged, never fatal.
pub fn start(cfg: &ShipConfig, spool: &Path, agent_status: &Path) -> Option<ShipThread> {
    if !cfg.enabled {
        return None;
    }
    let shipper = match Shipper::new(cfg, spool, Some(status_path(agent_status))) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "shipping is configured but cannot start; segments stay local");
            return None;
        }
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let interval = cfg.interval();
    let stopped = stop.clone();
    let handle = std::thread::Builder::new()
        .name("imprint-ship".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "no runtime for shipping");
                    return;
                }
            };
            rt.block_on(run(shipper, interval, stopped));
        });
    match handle {
        Ok(h) => Some(ShipThread {
            stop,
            handle: Some(h),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the shipper thread");
            None
        }
    }
}

async fn run(shipper: Shipper, interval: std::time::Duration, stop: Arc<tokio::sync::Notify>) {
    let mut backoff = shipper.backoff();
    tracing::info!(prefix = %shipper.spool_prefix(), "shipper started");
    loop {
        let delay = tokio::select! {
            _ = stop.notified() => return,
            r = shipper.ship_once() => match r {
                Ok(r) if r.failed == 0 => {
                    backoff.reset();
                    if r.shipped + r.already_present > 0 {
                        tracing::info!(shipped = r.shipped, present = r.already_present, bytes = r.bytes, backlog_bytes = r.backlog_bytes, "shipped");
                    }
                    interval
                }
                Ok(r) => {
                    let d = backoff.next_delay();
                    tracing::warn!(failed = r.failed, backlog_bytes = r.backlog_bytes, retry_in_ms = d.as_millis() as u64, "shipping failed; backing off");
                    d
                }
                Err(e) => {
                    let d = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "shipping pass failed; backing off");
                    d
                }
            },
        };
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
