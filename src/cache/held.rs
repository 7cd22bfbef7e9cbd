//! Memory entries that keep their cache file open. The memory tier holds
//! an entry promoted from disk as a slice of the file's mapping; with the
//! file at hand too, a large body can still leave by `sendfile(2)` (to a
//! client on another host, `server/respond.rs`) instead of being copied
//! through user space. Each backed entry holds a descriptor, so their
//! number is capped (a share of the process's descriptor limit, set at
//! start) and they can never take the descriptors connections need.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bodies at least this large keep their file: the smallest body the
/// server sends by `sendfile` (`server::sendfile::SENDFILE_MIN`); below
/// it a copy costs less than the extra system calls.
pub const HELD_MIN: u64 = 64 * 1024;

/// The cache file a memory entry's body was mapped from.
#[derive(Debug)]
pub struct Backing {
    pub file: Arc<File>,
    /// Byte offset of the body in `file`.
    pub offset: u64,
    _count: Counted,
}

/// One backed entry, counted while it lives.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many entries may keep their file, and how many do.
#[derive(Debug, Default)]
pub struct Budget {
    cap: usize,
    used: Arc<AtomicUsize>,
}

impl Budget {
    /// At most `cap` backed entries at once (0: none).
    pub fn new(cap: usize) -> Self {
        Budget {
            cap,
            used: Arc::default(),
        }
    }

    /// A backing for a memory entry whose body is the mapping of the
    /// `len` bytes at `offset` in `file` (the caller's word: only then are
    /// they the same bytes), when the body is large and sent as stored (a
    /// `templated` document is rendered per request, so its file is not
    /// what a client gets), and the cap allows one more.
    pub fn back(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: u64,
        templated: bool,
    ) -> Option<Backing> {
        if len < HELD_MIN || templated {
            return None;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .ok()?;
        Some(Backing {
            file: file.clone(),
            offset,
            _count: Counted(self.used.clone()),
        })
    }

    /// Backed entries alive now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<File> {
        Arc::new(tempfile::tempfile().unwrap())
    }

    #[test]
    fn only_large_bodies_sent_as_stored_are_backed() {
        let budget = Budget::new(10);
        // (length, templated, backed)
        let cases = [
            (HELD_MIN, false, true),
            (50 << 20, false, true),
            (HELD_MIN - 1, false, false),
            (HELD_MIN, true, false),
        ];
        for (len, templated, want) in cases {
            let b = budget.back(&file(), 100, len, templated);
            assert_eq!(b.is_some(), want, "{len} {templated}");
            if let Some(b) = b {
                assert_eq!(b.offset, 100);
            }
        }
    }

    #[test]
    fn the_cap_holds_and_a_dropped_backing_frees_its_place() {
        let budget = Budget::new(2);
        let f = file();
        let a = budget.back(&f, 0, HELD_MIN, false).expect("first");
        let _b = budget.back(&f, 0, HELD_MIN, false).expect("second");
        assert!(
            budget.back(&f, 0, HELD_MIN, false).is_none(),
            "over the cap"
        );
        assert_eq!(budget.used(), 2);
        drop(a);
        assert_eq!(budget.used(), 1);
        assert!(
            budget.back(&f, 0, HELD_MIN, false).is_some(),
            "a place freed"
        );
        assert!(
            Budget::default().back(&f, 0, HELD_MIN, false).is_none(),
            "cap 0"
        );
    }
}
