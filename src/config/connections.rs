//! Client connection limits: how many, and how long one may stay silent.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Limits on client connections (`[connections]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Most open client connections. Over it, a new connection closes the
    /// oldest one that is idle or still sending its request header, and is
    /// refused when every connection is busy. 0 = sized from the process's
    /// file-descriptor limit (half of it, at most 16384).
    pub max: usize,
    /// Time allowed for a whole request header, from its first byte
    /// (not per read: a header trickled byte by byte is cut off too).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a response may wait for the client to take more of it
    /// (between two writes, like nginx's `send_timeout`): a client that
    /// stops reading is cut off, and its slot freed, after this.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: 0,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// File descriptors kept for everything but client connections (cache
/// files, upstream connections, the log).
const RESERVED_FDS: u64 = 512;
/// Largest automatic cap: beyond it memory, not descriptors, is the limit.
const AUTO_MAX: u64 = 16_384;

impl ConnectionsConfig {
    /// Checks that the timeouts are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.header_timeout.is_zero() {
            return Err(invalid(
                "connections.header_timeout",
                "must be greater than zero",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(invalid(
                "connections.idle_timeout",
                "must be greater than zero",
            ));
        }
        if self.send_timeout.is_zero() {
            return Err(invalid(
                "connections.send_timeout",
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    /// The connection cap for a process allowed `fd_limit` open files.
    pub fn cap(&self, fd_limit: u64) -> usize {
        if self.max > 0 {
            return self.max;
        }
        let auto = (fd_limit / 2).min(fd_limit.saturating_sub(RESERVED_FDS));
        usize::try_from(auto.clamp(64, AUTO_MAX)).unwrap_or(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_cap_follows_the_descriptor_limit() {
        let auto = ConnectionsConfig::default();
        let table = [
            (1024, 512),
            (65_536, 16_384),
            (100, 64),
            (1_048_576, 16_384),
        ];
        for (fds, want) in table {
            assert_eq!(auto.cap(fds), want, "{fds}");
        }
        let fixed = ConnectionsConfig {
            max: 10,
            ..ConnectionsConfig::default()
        };
        assert_eq!(fixed.cap(1_048_576), 10);
    }
}
