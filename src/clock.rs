//! Wall-clock seconds for freshness decisions, behind a trait so that tests
//! move time forward instead of sleeping through a TTL.

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds since the Unix epoch, as entries record them (`stored_at`).
pub trait Clock: Send + Sync {
    fn now_secs(&self) -> u64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        crate::cache::now_secs()
    }
}

/// A clock that moves only when told to (tests).
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(secs: u64) -> Self {
        ManualClock(AtomicU64::new(secs))
    }

    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
