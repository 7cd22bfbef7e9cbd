//! A count of removals in flight, so a load that raced a removal does not
//! keep what it read.
//!
//! A load opens an entry's file on a blocking thread; a purge or eviction
//! may unlink the file and clear the caches meanwhile, and the load would
//! then put the old entry back where later requests find it (the disk
//! tier's open entries, the memory tier), serving a purged entry for as
//! long as it stays hot. Each removal counts twice, as it begins and as it
//! ends (odd while one is under way); a loader reads the count before, and
//! after keeping what it read checks that no removal began since, taking
//! it back out if one did.

use std::sync::atomic::{AtomicU64, Ordering};

/// The count; see the module.
#[derive(Default)]
pub struct Removals(AtomicU64);

/// One removal under way; ended on drop, so a cancelled one cannot leave
/// the count odd (which would keep every later load from being kept).
pub struct Removing<'a>(&'a AtomicU64);

impl Removals {
    /// A removal begins.
    pub fn begin(&self) -> Removing<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Removing(&self.0)
    }

    /// Where the count stands; read before a load whose result is to be
    /// kept.
    pub fn seen(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Whether what a load read after `seen` may stay where it was just
    /// kept: no removal was under way at `seen`, and none began since.
    pub fn kept_after(&self, seen: u64) -> bool {
        seen.is_multiple_of(2) && self.seen() == seen
    }
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_kept_only_when_no_removal_touched_it() {
        let r = Removals::default();
        let quiet = r.seen();
        assert!(r.kept_after(quiet), "nothing happened");

        let before = r.seen();
        let removing = r.begin();
        let during = r.seen();
        assert!(!r.kept_after(before), "a removal began after the read");
        assert!(!r.kept_after(during), "read while a removal was under way");
        drop(removing);
        assert!(!r.kept_after(during), "that removal ended since");

        // A cancelled removal (its guard dropped early) leaves the count
        // even: later loads are kept again.
        drop(r.begin());
        assert!(r.kept_after(r.seen()));
    }
}
