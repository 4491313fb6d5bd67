//! Writes the tables as JSON lines (one object per row, the Parquet columns as keys).

use crate::rows::Tables;
use crate::ExportError;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `sessions.jsonl`, `actions.jsonl` and `events.jsonl` into `dir` (0600).
pub fn write(tables: &Tables, dir: &Path) -> Result<Vec<PathBuf>, ExportError> {
    Ok(vec![
        table(dir, "sessions", &tables.sessions)?,
        table(dir, "actions", &tables.actions)?,
        table(dir, "events", &tables.events)?,
    ])
}

fn table<R: Serialize>(dir: &Path, name: &str, rows: &[R]) -> Result<PathBuf, ExportError> {
    let path = dir.join(format!("{name}.jsonl"));
    let io = |e| ExportError::Io(path.display().to_string(), e);
    let file = imprint_fsutil::create_with_mode(&path, 0o600).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n").map_err(io)?;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(path)
}
