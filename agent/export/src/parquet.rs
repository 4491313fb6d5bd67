//! Writes the tables as zstd-compressed Parquet, one file per table.

use crate::columns;
use crate::rows::{Tables, SCHEMA_ID};
use crate::ExportError;
use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};

/// Rows per Arrow batch handed to the writer: bounds the memory of one conversion.
const CHUNK_ROWS: usize = 65_536;
/// zstd level 3: zstd's own default, most of the ratio at a fraction of the cost.
const ZSTD_LEVEL: i32 = 3;

/// Writes `sessions.parquet`, `actions.parquet` and `events.parquet` into `dir` (0600).
pub fn write(tables: &Tables, dir: &Path) -> Result<Vec<PathBuf>, ExportError> {
    Ok(vec![
        table(dir, "sessions", &tables.sessions, columns::sessions)?,
        table(dir, "actions", &tables.actions, columns::actions)?,
        table(dir, "events", &tables.events, columns::events)?,
    ])
}

fn table<R>(
    dir: &Path,
    name: &str,
    rows: &[R],
    to_batch: fn(&[R]) -> Result<RecordBatch, ArrowError>,
) -> Result<PathBuf, ExportError> {
    let path = dir.join(format!("{name}.parquet"));
    let io = |e| ExportError::Io(path.display().to_string(), e);
    let file = imprint_fsutil::create_with_mode(&path, 0o600).map_err(io)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("imprint.schema".to_owned(), SCHEMA_ID.to_owned()),
            KeyValue::new("imprint.table".to_owned(), name.to_owned()),
        ]))
        .build();
    let schema = to_batch(&[])?.schema();
    let mut w = ArrowWriter::try_new(file, schema, Some(props))?;
    for chunk in rows.chunks(CHUNK_ROWS) {
        w.write(&to_batch(chunk)?)?;
    }
    let file = w.into_inner()?;
    file.sync_all().map_err(io)?;
    Ok(path)
}
