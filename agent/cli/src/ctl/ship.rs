//! `imprint ship`: one pass over the spool: upload every sealed segment that has no marker,
//! then exit (non-zero if anything is left unshipped).

use super::Locations;
use imprint_ship::{status::status_path, summary, Shipper};

#[derive(clap::Args, Debug)]
pub struct ShipArgs {
    /// Passes to try (with backoff between them) before giving up on failed segments.
    #[arg(long, default_value = "3")]
    attempts: u32,
}

pub fn run(loc: &Locations, args: ShipArgs) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    if !cfg.ship.enabled {
        anyhow::bail!("shipping is not configured: set [ship] enabled = true, endpoint and bucket in the configuration");
    }
    let paths = loc.paths(&cfg);
    if let Some(dir) = paths.status.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let shipper = Shipper::new(&cfg.ship, &paths.spool, Some(status_path(&paths.status)))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(shipper.ship_until_done(args.attempts.max(1)))?;
    println!("{}", summary(&report));
    if report.failed > 0 || report.backlog_segments > 0 {
        for (path, why) in &report.failures {
            eprintln!("imprint ship: {}: {why}", path.display());
        }
        eprintln!(
            "imprint ship: {} sealed segments ({} bytes) remain unshipped",
            report.backlog_segments, report.backlog_bytes
        );
        return Ok(1);
    }
    Ok(0)
}
