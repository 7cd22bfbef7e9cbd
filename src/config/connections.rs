//! Client connection limits: how many, and how long one may stay silent.

use std::time::Duration;

use bytesize::ByteSize;
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
    /// Kernel send buffer of each client connection (`SO_SNDBUF`; Linux
    /// doubles it). 0 leaves it to the kernel's autotuning, which grows it
    /// to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default): a large body
    /// then leaves in one write, and its whole transmission runs on the
    /// worker that wrote it. A smaller buffer lets the client drain one
    /// part while the worker sends the next (1 MB hits at one connection:
    /// 1.3× the throughput at 0.6× the CPU, BENCHMARKS.md). One connection
    /// moves at most about twice this per round trip, so clients far away
    /// on fast links may want more, or 0.
    pub send_buffer: ByteSize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: 0,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            send_buffer: ByteSize::kib(256),
        }
    }
}

/// File descriptors kept for everything but client connections (cache
/// files, upstream connections, the log).
const RESERVED_FDS: u64 = 512;
/// Below a page the kernel rounds up anyway, and a body would leave in
/// slivers.
const MIN_SEND_BUFFER: u64 = 4 * 1024;
/// Far beyond any autotuned size; a typo like `256MiB` for `256KiB`.
const MAX_SEND_BUFFER: u64 = 64 * 1024 * 1024;
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
        let buffer = self.send_buffer.as_u64();
        if buffer != 0 && !(MIN_SEND_BUFFER..=MAX_SEND_BUFFER).contains(&buffer) {
            return Err(invalid(
                "connections.send_buffer",
                "must be 0 (kernel autotuning) or between 4 KiB and 64 MiB",
            ));
        }
        Ok(())
    }

    /// The send buffer to set on accepted connections; `None` leaves it
    /// to the kernel.
    pub fn send_buffer(&self) -> Option<usize> {
        match self.send_buffer.as_u64() {
            0 => None,
            n => usize::try_from(n).ok(),
        }
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

    #[test]
    fn send_buffer_zero_is_left_to_the_kernel() {
        let table = [(0, None), (4096, Some(4096)), (262_144, Some(262_144))];
        for (bytes, want) in table {
            let c = ConnectionsConfig {
                send_buffer: ByteSize::b(bytes),
                ..ConnectionsConfig::default()
            };
            assert!(c.validate().is_ok(), "{bytes}");
            assert_eq!(c.send_buffer(), want, "{bytes}");
        }
    }
}
