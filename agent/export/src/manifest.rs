//! `manifest.json`: what an export holds and how it was made, with a checksum per file.

use crate::rows::{Tables, SCHEMA_ID, SCHEMA_MINOR};
use crate::ExportError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The filters an export was made with.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Filters {
    pub since_unix_ms: Option<i64>,
    pub until_unix_ms: Option<i64>,
    pub app: Option<String>,
}

/// One file of the export.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub table: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Row counts per table.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub sessions: u64,
    pub actions: u64,
    pub events: u64,
}

/// The manifest of one export.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub schema: &'static str,
    pub schema_minor: u32,
    pub imprint_version: &'static str,
    pub created_unix_ms: i64,
    pub format: String,
    pub source_spool: String,
    pub filters: Filters,
    pub rows: Counts,
    pub files: Vec<FileEntry>,
    /// A hash of the pseudonym key (never the key): exports with the same id share ids.
    pub pseudonym_key_id: String,
}

/// Input for [`write`].
pub struct ManifestInput<'a> {
    pub format: &'a str,
    pub source_spool: &'a Path,
    pub filters: Filters,
    pub key_id: String,
}

/// Checksums `files` and writes `manifest.json` into `dir` (0600).
pub fn write(
    dir: &Path,
    tables: &Tables,
    files: &[PathBuf],
    input: ManifestInput<'_>,
) -> Result<Manifest, ExportError> {
    let mut entries = Vec::new();
    for f in files {
        let (bytes, sha256) = checksum(f)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let table = name.split('.').next().unwrap_or_default().to_owned();
        entries.push(FileEntry {
            name,
            table,
            bytes,
            sha256,
        });
    }
    let created_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let m = Manifest {
        schema: SCHEMA_ID,
        schema_minor: SCHEMA_MINOR,
        imprint_version: env!("CARGO_PKG_VERSION"),
        created_unix_ms,
        format: input.format.to_owned(),
        source_spool: input.source_spool.display().to_string(),
        filters: input.filters,
        rows: Counts {
            sessions: tables.sessions.len() as u64,
            actions: tables.actions.len() as u64,
            events: tables.events.len() as u64,
        },
        files: entries,
        pseudonym_key_id: input.key_id,
    };
    let mut text = serde_json::to_vec_pretty(&m)?;
    text.push(b'\n');
    let path = dir.join("manifest.json");
    imprint_fsutil::write_atomic(&path, &text, 0o600)
        .map_err(|e| ExportError::Io(path.display().to_string(), e))?;
    Ok(m)
}

fn checksum(path: &Path) -> Result<(u64, String), ExportError> {
    let io = |e| ExportError::Io(path.display().to_string(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}
