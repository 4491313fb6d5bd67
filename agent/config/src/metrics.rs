//! `[metrics]`: where `imprint metrics --serve` answers Prometheus scrapes. The Unix socket
//! is always local; a TCP address is accepted only on a loopback interface.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[metrics]` in imprint.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// The Unix socket to serve on (default: `metrics.sock` in the agent's runtime directory).
    pub socket: Option<PathBuf>,
    /// A loopback TCP address to serve on as well, such as `127.0.0.1:9464`; none by default.
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The TCP address, refused unless it is a loopback one: metrics say how much each person
    /// types, and nothing of imprint's listens beyond the machine.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, String> {
        let Some(text) = &self.listen else {
            return Ok(None);
        };
        loopback(text).map(Some)
    }
}

/// Parses `text` as a socket address on a loopback interface.
pub fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("`{text}` is not an address and port such as 127.0.0.1:9464: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "`{text}` is not a loopback address: metrics are served on 127.0.0.1 or ::1 only"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(loopback("127.0.0.1:9464").is_ok());
        assert!(loopback("[::1]:9464").is_ok());
        for bad in [
            "0.0.0.0:9464",
            "192.168.1.5:9464",
            "[::]:9464",
            "localhost:9464",
            "9464",
        ] {
            assert!(loopback(bad).is_err(), "{bad}");
        }
    }
}
