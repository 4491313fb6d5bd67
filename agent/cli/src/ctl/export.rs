//! `imprint export`: the spool as the `sessions`, `actions` and `events` tables
//! (`imprint.actions/v1`, agent/export/SCHEMA.md), in Parquet or JSONL, with a manifest.

use super::walk::{walk, Found};
use super::Locations;
use imprint_export::pseudonym::{self, Key, MAKE_KEY};
use imprint_export::{AppFilter, Exporter, Filters, Format, Options};
use std::path::PathBuf;

/// The output format (`--format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormat {
    Parquet,
    Jsonl,
}

/// `imprint export` arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output directory (created 0700; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Only what happened at or after T (RFC 3339, e.g. 2026-05-01T09:00:00Z, or Unix seconds).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only what happened before T (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Only actions and events in applications whose app_id, wm_class or executable name
    /// matches GLOB.
    #[arg(long, value_name = "GLOB")]
    app: Option<String>,
    /// The spool to read [default: the configuration's, or DATA_DIR/spool].
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// The pseudonym key (at least 16 random bytes, mode 0600).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Write into a directory that already holds files (an earlier export's are replaced).
    #[arg(long)]
    force: bool,
}

pub fn run(loc: &Locations, args: ExportArgs) -> anyhow::Result<i32> {
    let Some(key_path) = &args.key else {
        anyhow::bail!(
            "a pseudonym key is needed (--key FILE): subject and machine ids are keyed HMACs, \
             and the key stays with the operator. Make one with: {MAKE_KEY}"
        );
    };
    let key = Key::load(key_path)?;
    let since = args.since.as_deref().map(parse_time).transpose()?;
    let until = args.until.as_deref().map(parse_time).transpose()?;
    let app = args.app.as_deref().map(AppFilter::new).transpose()?;
    let cfg = loc.load()?;
    let (config_path, _) = loc.config_source();
    // The policy tells each event's level (and so which keys were masked) when it is the one
    // the spool was written under; a policy that does not compile only loses that.
    let policy = match cfg.compile_policy(&config_path) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "policy does not compile; levels are not exported");
            None
        }
    };
    let spool = args.spool.clone().unwrap_or_else(|| loc.paths(&cfg).spool);
    let format = match args.format {
        ExportFormat::Parquet => Format::Parquet,
        ExportFormat::Jsonl => Format::Jsonl,
    };
    imprint_export::prepare_dir(&args.out, args.force)?;
    let filters = Filters {
        since_unix_ms: since,
        until_unix_ms: until,
        app: app.as_ref().map(|a| a.pattern().to_owned()),
    };
    let mut exporter = Exporter::new(Options {
        since_unix_ms: since,
        until_unix_ms: until,
        app,
        key: key.clone(),
        policy,
        machine: pseudonym::machine_source(),
        subject_of: subject,
    });
    let ids = loc.identities()?;
    let mut locked = Vec::new();
    walk(&spool, ids.as_ref(), |found| match found {
        Found::Locked { place } => locked.push(place),
        Found::Batch { meta, records } => exporter.push_batch(&meta, records),
        Found::Damaged { place, why } => {
            tracing::warn!(%place, %why, "skipping damaged spool data");
        }
        Found::Missing { after, before } => {
            tracing::warn!(after, before, "spool frames are missing");
        }
        Found::TornTail { place, bytes } => {
            tracing::warn!(%place, bytes, "torn tail (an interrupted write)");
        }
        Found::Segment { .. } => {}
    })?;
    if let Some(first) = locked.first() {
        anyhow::bail!(
            "{} encrypted segments or frames (first: {first}) cannot be read: pass --identity with an operator's age identity file",
            locked.len()
        );
    }
    let tables = exporter.finish();
    let m = imprint_export::write(&tables, &args.out, format, &spool, filters, &key)?;
    println!(
        "exported {} sessions, {} actions, {} events to {} ({}, {})",
        m.rows.sessions,
        m.rows.actions,
        m.rows.events,
        args.out.display(),
        format.as_str(),
        imprint_export::rows::SCHEMA_ID
    );
    Ok(0)
}

/// A user is pseudonymised by name (the same person on every machine), else by uid.
fn subject(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("user:{}", u.name),
        _ => imprint_export::subject_by_uid(uid),
    }
}

/// RFC 3339 or Unix seconds → Unix ms.
pub(super) fn parse_time(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        anyhow::anyhow!(
            "{s}: not a time ({e}); use RFC 3339 (2026-05-01T09:00:00Z) or Unix seconds"
        )
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("{s}: before 1970"))?;
    Ok(d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1700000000").ok(), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.5").ok(), Some(1_700_000_000_500));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").ok(),
            Some(1_700_000_000_000)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
