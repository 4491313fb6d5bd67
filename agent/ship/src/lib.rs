//! imprint's shipper: sealed spool segments to S3-compatible object storage.
//!
//! - **At least once.** A segment's marker (`N.sealed.shipped`) is written only after the
//!   store acknowledged the whole object; a crash before that means the segment is sent again.
//! - **Idempotent keys.** The key is a function of the spool, the segment's first sequence
//!   number and its content's SHA-256 ([`key::object_key`]), and objects are created with a
//!   conditional PUT (`If-None-Match: *`), so a re-send never makes a second object and never
//!   overwrites one. An object found already present is HEADed: the same size is taken as the
//!   acknowledgement of an earlier attempt; a different size is an error, and it stays.
//! - **Bounded.** At most `max_concurrency` uploads at once, at most `max_bytes_per_sec` on
//!   average (a token bucket), a timeout per request, and backoff with jitter after failures.
//!
//! Segment contents are opaque bytes here (they are encrypted before they are sealed); they
//! and the credentials are never logged.

pub mod key;
pub mod limit;
pub mod status;

use imprint_config::ship::ShipConfig;
use imprint_spool::{is_shipped, list_segments, mark_shipped, spool_id, SegmentFile};
use limit::{Backoff, TokenBucket};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use status::ShipStatus;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why shipping could not start, or why a segment was not shipped.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("[ship] is not enabled in the configuration")]
    Disabled,
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is readable by group or others (mode {mode:04o}); credentials must be private: chmod 600 {path}")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path}: {message}")]
    Credentials { path: PathBuf, message: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error(
        "{key} already exists with {remote} bytes, the local segment has {local}: not overwritten"
    )]
    Conflict {
        key: String,
        local: u64,
        remote: u64,
    },
    #[error("{key}: no answer within {secs} s")]
    Timeout { key: String, secs: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShipError + '_ {
    move |source| ShipError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Access key id and secret, from a private file of `key = value` lines
/// (`access_key_id`/`aws_access_key_id`, `secret_access_key`/`aws_secret_access_key`;
/// `[section]` headers and `#` comments are ignored, so an AWS credentials file works).
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>)", self.access_key_id)
    }
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Credentials, ShipError> {
        let bytes = read_private(path)?;
        let text = String::from_utf8(bytes).map_err(|_| ShipError::Credentials {
            path: path.to_owned(),
            message: "not UTF-8 text".into(),
        })?;
        let (mut id, mut secret) = (None, None);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim() {
                "access_key_id" | "aws_access_key_id" => id = Some(v),
                "secret_access_key" | "aws_secret_access_key" => secret = Some(v),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key))
                if !access_key_id.is_empty() && !secret_access_key.is_empty() =>
            {
                Ok(Credentials {
                    access_key_id,
                    secret_access_key,
                })
            }
            _ => Err(ShipError::Credentials {
                path: path.to_owned(),
                message: "needs `access_key_id = …` and `secret_access_key = …` lines".into(),
            }),
        }
    }
}

/// Reads a file that must not be readable by group or others.
fn read_private(path: &Path) -> Result<Vec<u8>, ShipError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ShipError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    std::fs::read(path).map_err(io_err(path))
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Report {
    /// Segments uploaded and marked.
    pub shipped: usize,
    /// Segments found already in the store (an earlier attempt's PUT) and marked.
    pub already_present: usize,
    /// Segments whose file vanished (retention) before they could be sent.
    pub vanished: usize,
    /// Bytes the store acknowledged in this pass.
    pub bytes: u64,
    /// Segments that failed, with why (the first few).
    pub failures: Vec<(PathBuf, String)>,
    pub failed: usize,
    /// Sealed segments (and bytes) still unshipped after the pass.
    pub backlog_segments: u64,
    pub backlog_bytes: u64,
}

enum Outcome {
    Uploaded(u64),
    Present,
    Vanished,
}

struct Inner {
    store: AmazonS3,
    spool: PathBuf,
    prefix: String,
    machine: Option<String>,
    spool_id: String,
    concurrency: usize,
    timeout: Duration,
    bucket: Mutex<TokenBucket>,
    status_path: Option<PathBuf>,
    status: Mutex<ShipStatus>,
}

/// Ships one spool's sealed segments.
#[derive(Clone)]
pub struct Shipper {
    inner: Arc<Inner>,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Shipper {
    /// A shipper for the spool in `spool_dir`; counters go to `status_path` when given.
    pub fn new(
        cfg: &ShipConfig,
        spool_dir: &Path,
        status_path: Option<PathBuf>,
    ) -> Result<Shipper, ShipError> {
        if !cfg.enabled {
            return Err(ShipError::Disabled);
        }
        cfg.validate().map_err(ShipError::Config)?;
        let creds = Credentials::load(&cfg.credentials_file)?;
        let machine = match &cfg.pseudonym_key {
            Some(p) => {
                let k = read_private(p)?;
                if k.len() < 16 {
                    return Err(ShipError::Credentials {
                        path: p.clone(),
                        message: "a pseudonym key needs at least 16 bytes".into(),
                    });
                }
                Some(key::machine_pseudonym(&k, &key::machine_source()))
            }
            None => None,
        };
        std::fs::create_dir_all(spool_dir).map_err(io_err(spool_dir))?;
        let id = spool_id(spool_dir).map_err(io_err(spool_dir))?;
        let timeout = cfg.timeout();
        let options = ClientOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout.min(Duration::from_secs(10)))
            .with_allow_http(cfg.allow_http());
        // One quick retry inside object_store for a dropped connection; the backoff between
        // passes is ours.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
            },
            max_retries: 1,
            retry_timeout: timeout,
        };
        let store = AmazonS3Builder::new()
            .with_endpoint(cfg.endpoint.trim_end_matches('/'))
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(&creds.secret_access_key)
            .with_allow_http(cfg.allow_http())
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(retry)
            .build()?;
        let status = status_path
            .as_deref()
            .and_then(ShipStatus::read)
            .unwrap_or_default();
        Ok(Shipper {
            inner: Arc::new(Inner {
                store,
                spool: spool_dir.to_owned(),
                prefix: cfg.prefix.clone(),
                machine,
                spool_id: id,
                concurrency: cfg.max_concurrency.max(1),
                timeout,
                bucket: Mutex::new(TokenBucket::new(cfg.max_bytes_per_sec, Instant::now())),
                status_path,
                status: Mutex::new(status),
            }),
            backoff_min: cfg.backoff_min(),
            backoff_max: cfg.backoff_max(),
        })
    }

    /// Deletes one object (erasure: a segment rewritten without a person's data); a key
    /// that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ShipError> {
        match self
            .inner
            .store
            .delete(&object_store::path::Path::from(key))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The store, for tests and tools that list what was shipped.
    pub fn store(&self) -> &AmazonS3 {
        &self.inner.store
    }

    /// The key prefix this spool's objects go under.
    pub fn spool_prefix(&self) -> String {
        let i = &self.inner;
        let mut parts: Vec<&str> = i.prefix.split('/').filter(|p| !p.is_empty()).collect();
        if let Some(m) = &i.machine {
            parts.push(m);
        }
        parts.push(&i.spool_id);
        parts.join("/")
    }

    /// A fresh backoff with the configured bounds.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_min, self.backoff_max)
    }

    /// The counters so far.
    pub fn status(&self) -> ShipStatus {
        self.inner
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// One pass: uploads every sealed segment without a marker, `max_concurrency` at a time.
    pub async fn ship_once(&self) -> Result<Report, ShipError> {
        let dir = &self.inner.spool;
        let pending: Vec<SegmentFile> = list_segments(dir)
            .map_err(|e| ShipError::Config(format!("{}: {e}", dir.display())))?
            .into_iter()
            .filter(|s| s.sealed && !is_shipped(s))
            .collect();
        let sem = Arc::new(tokio::sync::Semaphore::new(self.inner.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut report = Report::default();
        for seg in pending {
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let inner = self.inner.clone();
            tasks.spawn(async move {
                let r = inner.ship_one(&seg).await;
                drop(permit);
                (seg, r)
            });
            // Collect what has finished, so the report is complete when the loop ends.
            while let Some(done) = tasks.try_join_next() {
                self.account(&mut report, done);
            }
        }
        while let Some(done) = tasks.join_next().await {
            self.account(&mut report, done);
        }
        self.finish(&mut report);
        Ok(report)
    }

    /// Passes until nothing is left or `attempts` passes have failed, backing off between.
    pub async fn ship_until_done(&self, attempts: u32) -> Result<Report, ShipError> {
        let mut backoff = self.backoff();
        let mut total = Report::default();
        loop {
            let r = self.ship_once().await?;
            total.shipped += r.shipped;
            total.already_present += r.already_present;
            total.vanished += r.vanished;
            total.bytes += r.bytes;
            total.backlog_bytes = r.backlog_bytes;
            total.backlog_segments = r.backlog_segments;
            total.failed = r.failed;
            total.failures = r.failures;
            if total.failed == 0 || backoff.attempts() + 1 >= attempts {
                return Ok(total);
            }
            let delay = backoff.next_delay();
            tracing::info!(
                failed = total.failed,
                delay_ms = delay.as_millis() as u64,
                "shipping failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn account(
        &self,
        report: &mut Report,
        done: Result<(SegmentFile, Result<Outcome, ShipError>), tokio::task::JoinError>,
    ) {
        let mut st = self.inner.status.lock().ok();
        match done {
            Ok((_, Ok(Outcome::Uploaded(n)))) => {
                report.shipped += 1;
                report.bytes += n;
                if let Some(st) = st.as_mut() {
                    st.upload_bytes_total += n;
                    st.segments_shipped_total += 1;
                }
            }
            Ok((_, Ok(Outcome::Present))) => {
                report.already_present += 1;
                if let Some(st) = st.as_mut() {
                    st.segments_shipped_total += 1;
                }
            }
            Ok((_, Ok(Outcome::Vanished))) => report.vanished += 1,
            Ok((seg, Err(e))) => {
                tracing::warn!(segment = %seg.path.display(), error = %e, "segment not shipped");
                report.failed += 1;
                if report.failures.len() < 8 {
                    report.failures.push((seg.path, e.to_string()));
                }
                if let Some(st) = st.as_mut() {
                    st.upload_failures_total += 1;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "upload task ended abnormally");
                report.failed += 1;
                if let Some(st) = st.as_mut() {
                    st.upload_failures_total += 1;
                }
            }
        }
    }

    /// Backlog, and the status file.
    fn finish(&self, report: &mut Report) {
        if let Ok(segs) = list_segments(&self.inner.spool) {
            for s in segs.iter().filter(|s| s.sealed && !is_shipped(s)) {
                report.backlog_segments += 1;
                report.backlog_bytes += s.bytes;
            }
        }
        let Ok(mut st) = self.inner.status.lock() else {
            return;
        };
        st.backlog_bytes = report.backlog_bytes;
        st.backlog_segments = report.backlog_segments;
        st.last_error = report.failures.first().map(|(_, e)| e.clone());
        st.updated_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if let Some(p) = &self.inner.status_path {
            if let Err(e) = st.write(p) {
                tracing::debug!(path = %p.display(), error = %e, "cannot write ship status");
            }
        }
    }
}

impl Inner {
    async fn ship_one(&self, seg: &SegmentFile) -> Result<Outcome, ShipError> {
        let data = match std::fs::read(&seg.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(segment = %seg.path.display(), "segment gone before shipping (retention); skipped");
                return Ok(Outcome::Vanished);
            }
            Err(e) => return Err(io_err(&seg.path)(e)),
        };
        let len = data.len() as u64;
        let key = key::object_key(
            &self.prefix,
            self.machine.as_deref(),
            &self.spool_id,
            seg.first_seq,
            &key::sha256_hex(&data),
        );
        let wait = self
            .bucket
            .lock()
            .map(|mut b| b.take(len, Instant::now()))
            .unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let location = ObjectPath::from(key.as_str());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        // object_store's own timeout covers each request; this one bounds its retry too.
        let limit = self.timeout * 3;
        let put = tokio::time::timeout(
            limit,
            self.store.put_opts(&location, PutPayload::from(data), opts),
        )
        .await
        .map_err(|_| ShipError::Timeout {
            key: key.clone(),
            secs: limit.as_secs(),
        })?;
        let outcome = match put {
            Ok(_) => Outcome::Uploaded(len),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                let meta = tokio::time::timeout(limit, self.store.head(&location))
                    .await
                    .map_err(|_| ShipError::Timeout {
                        key: key.clone(),
                        secs: limit.as_secs(),
                    })??;
                if meta.size != len {
                    return Err(ShipError::Conflict {
                        key,
                        local: len,
                        remote: meta.size,
                    });
                }
                Outcome::Present
            }
            Err(e) => return Err(e.into()),
        };
        if !seg.path.exists() {
            // Acknowledged, then removed by retention: nothing to mark.
            return Ok(Outcome::Vanished);
        }
        mark_shipped(seg, &key).map_err(io_err(&seg.path))?;
        tracing::info!(segment = %seg.path.display(), key = %key, bytes = len, present = matches!(outcome, Outcome::Present), "segment shipped");
        Ok(outcome)
    }
}

/// The exit status and message of a one-off run.
pub fn summary(r: &Report) -> String {
    format!(
        "shipped {} segments ({} bytes), {} already in the store, {} gone before shipping; {} failed; backlog {} segments ({} bytes)",
        r.shipped, r.bytes, r.already_present, r.vanished, r.failed, r.backlog_segments, r.backlog_bytes
    )
}
