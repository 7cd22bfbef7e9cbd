//! Whether the cache disk takes writes. A failed write (disk full, a
//! read-only remount, a file-size limit) marks it down for `RETRY_AFTER`;
//! meanwhile misses are streamed from the upstream uncached and metadata is
//! kept in memory only, instead of clients getting a 500 for content the
//! upstream can give. Entries already cached keep being served.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the disk is left alone after a failed write before the next
/// fill tries it again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The disk's write health, shared by every fill.
pub struct Writable {
    start: Instant,
    /// Milliseconds after `start` until which writes are not attempted.
    down_until: AtomicU64,
    /// Whether the last state change was logged as down (one warning per
    /// outage, one line when it is back).
    down: AtomicBool,
}

impl Default for Writable {
    fn default() -> Self {
        Writable {
            start: Instant::now(),
            down_until: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }
}

impl Writable {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether writes should be attempted now.
    pub fn ok(&self) -> bool {
        let ok = self.now_ms() >= self.down_until.load(Ordering::Relaxed);
        // Read first: the common case (never down) writes nothing to this
        // line, which every fill on every worker reads.
        if ok && self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("retrying writes to the cache disk");
        }
        ok
    }

    /// A write failed: no writes for `RETRY_AFTER`.
    pub fn failed(&self, error: &dyn Display) {
        let until = self.now_ms() + u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(0);
        self.down_until.store(until, Ordering::Relaxed);
        crate::metrics::get().disk_write_failed();
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %error,
                retry_in_s = RETRY_AFTER.as_secs(),
                "cache disk not writable: misses are served from the upstream uncached"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_holds_writes_off_then_lets_them_retry() {
        let w = Writable::default();
        assert!(w.ok());
        w.failed(&"disk full");
        assert!(!w.ok());
        // As if RETRY_AFTER had passed.
        w.down_until.store(0, Ordering::Relaxed);
        assert!(w.ok());
        assert!(!w.down.load(Ordering::Relaxed));
    }
}
