//! `[ship]`: shipping sealed spool segments to S3-compatible object storage (`imprint ship`,
//! and the agent's shipper). Absent (the default) means nothing leaves the machine.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[ship]` in imprint.toml.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ShipConfig {
    /// Off unless set: a `[ship]` section may be kept in place but disabled.
    pub enabled: bool,
    /// The store's URL (`https://…`; `http://` only for 127.0.0.1 or localhost).
    pub endpoint: String,
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/` needed).
    pub prefix: String,
    pub region: String,
    /// A file (mode 0600 or stricter) holding `access_key_id = …` and `secret_access_key = …`.
    pub credentials_file: PathBuf,
    /// The operator's pseudonym key (as for `imprint export --key`): when set, object keys
    /// carry the keyed machine id that exports use; otherwise only the spool id.
    pub pseudonym_key: Option<PathBuf>,
    /// Uploads in flight at once.
    pub max_concurrency: usize,
    /// Upload bandwidth bound in bytes per second; 0 = unlimited.
    pub max_bytes_per_sec: u64,
    /// How often the agent looks for sealed segments to ship.
    pub interval_secs: u64,
    /// Backoff after a failure: from `backoff_min_ms`, doubling, up to `backoff_max_secs`.
    pub backoff_min_ms: u64,
    pub backoff_max_secs: u64,
    /// Per-request timeout.
    pub timeout_secs: u64,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            enabled: false,
            endpoint: String::new(),
            bucket: String::new(),
            prefix: "imprint".into(),
            region: "us-east-1".into(),
            credentials_file: "/etc/imprint/ship.credentials".into(),
            pseudonym_key: None,
            max_concurrency: 2,
            max_bytes_per_sec: 4 << 20,
            interval_secs: 60,
            backoff_min_ms: 500,
            backoff_max_secs: 300,
            timeout_secs: 60,
        }
    }
}

impl ShipConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
    pub fn backoff_min(&self) -> Duration {
        Duration::from_millis(self.backoff_min_ms)
    }
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_secs)
    }

    /// Whether the endpoint uses plain http (allowed only to the loopback host).
    pub fn allow_http(&self) -> bool {
        self.endpoint.starts_with("http://")
    }

    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.bucket.is_empty() {
            return Err("ship.bucket must be set".into());
        }
        if self.region.is_empty() {
            return Err("ship.region must be set".into());
        }
        let host = if let Some(rest) = self.endpoint.strip_prefix("https://") {
            rest
        } else if let Some(rest) = self.endpoint.strip_prefix("http://") {
            let host = host_of(rest);
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Err(format!(
                    "ship.endpoint = {:?}: plain http is allowed only for 127.0.0.1 or localhost \
                     (segments and credentials would cross the network unencrypted); use https://",
                    self.endpoint
                ));
            }
            rest
        } else {
            return Err(format!(
                "ship.endpoint = {:?}: must be an https:// URL (http:// only for 127.0.0.1 or localhost)",
                self.endpoint
            ));
        };
        if host_of(host).is_empty() {
            return Err(format!("ship.endpoint = {:?}: no host", self.endpoint));
        }
        if self.max_concurrency == 0 || self.max_concurrency > 64 {
            return Err("ship.max_concurrency must be between 1 and 64".into());
        }
        if self.interval_secs == 0 {
            return Err("ship.interval_secs must be at least 1".into());
        }
        if self.timeout_secs == 0 || self.timeout_secs > 3600 {
            return Err("ship.timeout_secs must be between 1 and 3600".into());
        }
        if self.backoff_min_ms == 0 || self.backoff_min() > self.backoff_max() {
            return Err(
                "ship.backoff_min_ms must be at least 1 and no more than ship.backoff_max_secs"
                    .into(),
            );
        }
        if self.prefix.split('/').any(|p| p == "." || p == "..") {
            return Err("ship.prefix may not contain `.` or `..` components".into());
        }
        Ok(())
    }
}

/// `host[:port]` of `host[:port]/path…` without the port.
fn host_of(rest: &str) -> &str {
    let authority = rest.split('/').next().unwrap_or("");
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map(|i| &authority[..=i])
            .unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(endpoint: &str) -> ShipConfig {
        ShipConfig {
            enabled: true,
            endpoint: endpoint.into(),
            bucket: "b".into(),
            ..ShipConfig::default()
        }
    }

    #[test]
    fn http_only_to_loopback() {
        assert!(on("https://s3.example.com").validate().is_ok());
        assert!(on("http://127.0.0.1:9000").validate().is_ok());
        assert!(on("http://localhost:9000/").validate().is_ok());
        let err = on("http://s3.example.com").validate().unwrap_err();
        assert!(err.contains("only for 127.0.0.1 or localhost"), "{err}");
        let err = on("http://127.0.0.1.evil.com").validate().unwrap_err();
        assert!(err.contains("only for 127.0.0.1"), "{err}");
        assert!(on("ftp://x").validate().is_err());
        assert!(
            ShipConfig::default().validate().is_ok(),
            "disabled: not checked"
        );
    }
}
