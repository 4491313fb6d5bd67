//! File-system helpers that keep imprint's privacy defaults: directories 0700, files 0600
//! (or the explicit mode a caller asks for), and durable renames.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700 if missing, and tightens it if it exists.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    ensure_dir_mode(dir, 0o700)
}

/// Creates `dir` with `mode` if missing; an existing directory is set to `mode`.
pub fn ensure_dir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Opens `path` for appending, creating it with mode 0600.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

/// Creates (truncating) `path` with `mode` for reading and writing.
pub fn create_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .mode(mode)
        .open(path)?;
    // The umask may have narrowed the mode; the caller's mode is the contract.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// fsyncs a directory so that a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = create_with_mode(&tmp, mode)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// True when an I/O error means the file system has no room left.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Standard error for logs, where a failed write is dropped: a log reader that went away (a
/// closed pipe, a full journal) must never stop a daemon. tracing-subscriber reports a
/// failed write with `eprintln!`, which panics on a closed stderr, so failures stop here.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogStderr;

impl io::Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}
