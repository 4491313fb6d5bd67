//! `imprint erase --subject USER [--since T]`: removes one person's data from the local spool
//! (their focus records and everything attributed to those foci), rewriting each sealed
//! segment that held any, and records the request in the audit trail. Segments whose content
//! changed lose their shipped mark, so the store's old object is named for deletion and the
//! rewritten segment is shipped again.

use super::Locations;
use imprint_agent::retention::SegmentSummary;
use imprint_record::codec::{decode_batch, encode_batch};
use imprint_record::Record;
use imprint_spool::rewrite::{read_all, replace_sealed};
use imprint_spool::{list_segments, Recipients};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct EraseArgs {
    /// The person: a user name or a numeric uid.
    #[arg(long, value_name = "USER")]
    subject: String,
    /// Only what they did at or after T (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "T")]
    since: Option<String>,
}

/// What one erasure did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Erased {
    pub segments_rewritten: u64,
    pub records_removed: u64,
    pub events_removed: u64,
    /// Object keys in the store that held the old content.
    pub stale_objects: Vec<String>,
    /// Of those, deleted from the store (with shipping on).
    pub objects_deleted: u64,
    /// Why the others could not be deleted.
    pub delete_failures: Vec<String>,
    /// Rewritten segments shipped again.
    pub reshipped: u64,
}

pub fn run(loc: &Locations, args: EraseArgs) -> anyhow::Result<i32> {
    let uid = resolve_uid(&args.subject)?;
    let since = args
        .since
        .as_deref()
        .map(super::export::parse_time)
        .transpose()?;
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    let ids = loc.identities()?;
    let recipients = if cfg.spool.recipients.is_empty() {
        None
    } else {
        Some(Recipients::parse(&cfg.spool.recipients)?)
    };
    let segments = list_segments(&paths.spool)
        .map_err(|e| anyhow::anyhow!("{}: {e}", paths.spool.display()))?;
    // Every segment must be readable before any is changed: erasure is all or nothing.
    for seg in &segments {
        read_all(seg, ids.as_ref())?;
    }
    let mut done = Erased::default();
    let mut foci: HashMap<u64, u32> = HashMap::new();
    for seg in &segments {
        let frames = read_all(seg, ids.as_ref())?;
        let mut changed = false;
        let mut summary = SegmentSummary::default();
        let mut out = Vec::with_capacity(frames.len());
        for (seq, payload) in frames {
            let (meta, records) = decode_batch(&payload)
                .map_err(|e| anyhow::anyhow!("{} frame {seq}: {e}", seg.path.display()))?;
            let before = records.len();
            let kept: Vec<Record> = records
                .into_iter()
                .filter(|r| {
                    let theirs = belongs_to(r, uid, &mut foci);
                    let in_window = match since {
                        None => true,
                        // Without a realtime offset the time is unknown: erase (fail closed).
                        Some(t) => {
                            imprint_export::rows::unix_ms(r.mono_ns(), meta.realtime_offset_ns)
                                .is_none_or(|ms| ms >= t)
                        }
                    };
                    let gone = theirs && in_window;
                    if gone && matches!(r, Record::Event(_)) {
                        done.events_removed += 1;
                    }
                    !gone
                })
                .collect();
            summary.add_batch(&meta, &kept);
            if kept.len() != before {
                changed = true;
                done.records_removed += (before - kept.len()) as u64;
                out.push((seq, encode_batch(&meta, &kept)));
            } else {
                out.push((seq, payload));
            }
        }
        if changed {
            let stale = replace_sealed(seg, &out, recipients.as_ref(), 3, &summary.to_tag())?;
            done.segments_rewritten += 1;
            done.stale_objects.extend(stale);
        }
    }
    if cfg.ship.enabled && !done.stale_objects.is_empty() {
        erase_remote(&cfg.ship, &paths, &mut done);
    }
    audit(
        paths.spool.parent().unwrap_or(Path::new(".")),
        &args.subject,
        since,
        &done,
    )?;
    println!(
        "erased {} events ({} records) of {} in {} segments; {} shipped objects held the old content, {} deleted from the store, {} rewritten segments shipped again",
        done.events_removed,
        done.records_removed,
        args.subject,
        done.segments_rewritten,
        done.stale_objects.len(),
        done.objects_deleted,
        done.reshipped,
    );
    for f in &done.delete_failures {
        eprintln!("imprint erase: not deleted from the store: {f}");
    }
    Ok(if done.delete_failures.is_empty() {
        0
    } else {
        1
    })
}

/// Deletes the stale objects and ships the rewritten segments in their place.
fn erase_remote(cfg: &imprint_config::ship::ShipConfig, paths: &super::Paths, done: &mut Erased) {
    let fail = |done: &mut Erased, why: String| {
        done.delete_failures
            .extend(done.stale_objects.iter().map(|k| format!("{k}: {why}")))
    };
    let shipper = match imprint_ship::Shipper::new(
        cfg,
        &paths.spool,
        Some(imprint_ship::status::status_path(&paths.status)),
    ) {
        Ok(s) => s,
        Err(e) => return fail(done, e.to_string()),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(done, e.to_string()),
    };
    rt.block_on(async {
        for key in done.stale_objects.clone() {
            match shipper.delete(&key).await {
                Ok(()) => done.objects_deleted += 1,
                Err(e) => done.delete_failures.push(format!("{key}: {e}")),
            }
        }
        match shipper.ship_until_done(3).await {
            Ok(r) => done.reshipped = r.shipped as u64,
            Err(e) => done.delete_failures.push(format!("re-shipping: {e}")),
        }
    });
}

/// Whether `r` is the subject's: their focus, or input attributed to one of their foci. A
/// focus this walk has not seen (its record went with an older segment) counts as theirs.
fn belongs_to(r: &Record, uid: u32, foci: &mut HashMap<u64, u32>) -> bool {
    let focus = match r {
        Record::Focus(f) => {
            foci.insert(f.seq, f.uid);
            return f.uid == uid;
        }
        Record::Event(e) => e.focus,
        Record::Redaction(x) => x.focus,
        Record::Counts(x) => x.focus,
        Record::Paste(x) => x.focus,
        Record::Pointer(x) => x.focus,
        Record::Window(x) => x.focus,
        Record::Device(_)
        | Record::Gap(_)
        | Record::Policy(_)
        | Record::Display(_)
        | Record::Other => return false,
    };
    focus != 0 && foci.get(&focus).is_none_or(|&u| u == uid)
}

fn resolve_uid(subject: &str) -> anyhow::Result<u32> {
    if let Ok(uid) = subject.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(subject) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => anyhow::bail!("{subject}: no such user (give a uid for a removed account)"),
        Err(e) => anyhow::bail!("{subject}: cannot look up the user: {e}"),
    }
}

/// Appends the request to `DATA_DIR/audit.jsonl` (0600, fsynced).
fn audit(data_dir: &Path, subject: &str, since: Option<i64>, done: &Erased) -> anyhow::Result<()> {
    let path = data_dir.join("audit.jsonl");
    let mut f = imprint_fsutil::open_private_append(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let line = json!({
        "unix_ms": now_ms,
        "action": "erase",
        "subject": subject,
        "since_unix_ms": since,
        "result": done,
    });
    writeln!(f, "{line}")
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
