//! A small per-thread copy of the memory tier's hottest entries, looked at
//! before moka.
//!
//! Every moka lookup touches state the worker threads share (its read-op
//! channel, the entry's reference counts, the frequency sketch); with two
//! workers hitting the same few keys that cost ~15% of a small hit's CPU
//! at c64 (BENCHMARKS.md). Each thread keeps the entries it found in moka
//! here, and trusts them only while the tier has not changed at all: every
//! insert, removal or eviction bumps the tier's generation, and a thread
//! whose copy is of an older generation drops it. The generation is read
//! before moka is asked and checked again before an answer is kept, so an
//! entry replaced in between is never kept.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::entry::MemEntry;
use crate::keys::CacheKey;

/// Bodies up to this size are kept per thread.
const MAX_BODY: usize = 64 * 1024;
/// Bodies up to this size are kept as this thread's own copy (see `keep`).
const OWN_COPY_MAX: usize = 16 * 1024;
/// Entries kept per thread; a full copy starts over.
const MAX_ENTRIES: usize = 256;
/// Body bytes kept per thread; a full copy starts over.
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// One thread's copy, of one tier at one generation.
struct Copy {
    tier: u64,
    generation: u64,
    bytes: usize,
    entries: HashMap<CacheKey, Arc<MemEntry>>,
}

thread_local! {
    static COPY: RefCell<Copy> = RefCell::new(Copy {
        tier: u64::MAX,
        generation: 0,
        bytes: 0,
        entries: HashMap::new(),
    });
}

/// The tier's side: which tier, and how often it has changed.
pub struct Hot {
    tier: u64,
    generation: Arc<AtomicU64>,
}

impl Hot {
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Hot {
            tier: NEXT.fetch_add(1, Ordering::Relaxed),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A handle that marks the tier changed (for moka's eviction listener).
    pub fn changes(&self) -> Arc<AtomicU64> {
        self.generation.clone()
    }

    /// The tier changed: every thread's copy is out of date. Called after
    /// the change is made in moka.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The generation to pass to `keep` after asking moka.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// This thread's copy of `key`, if it is of the tier as it is now.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<MemEntry>> {
        let now = self.generation();
        COPY.with_borrow_mut(|c| {
            if c.tier != self.tier || c.generation != now {
                c.tier = self.tier;
                c.generation = now;
                c.bytes = 0;
                c.entries.clear();
                return None;
            }
            c.entries.get(key).cloned()
        })
    }

    /// Keeps what moka answered for `key`, if the tier has not changed
    /// since `seen` (read before moka was asked) and the body is small.
    pub fn keep(&self, key: &CacheKey, entry: &Arc<MemEntry>, seen: u64) {
        let len = entry.body.len();
        if len > MAX_BODY || self.generation() != seen {
            return;
        }
        COPY.with_borrow_mut(|c| {
            if c.tier != self.tier || c.generation != seen {
                return;
            }
            if c.entries.len() >= MAX_ENTRIES || c.bytes + len > MAX_BYTES {
                c.entries.clear();
                c.bytes = 0;
            }
            // Small bodies are copied: every hit clones the entry, its meta
            // and its body, and reference counts both workers share bounced
            // between them at c64. Larger ones share moka's entry: their copy
            // would cost more than the counts, again after every change.
            let kept = if len <= OWN_COPY_MAX {
                Arc::new(MemEntry {
                    meta: Arc::new((*entry.meta).clone()),
                    body: bytes::Bytes::copy_from_slice(&entry.body),
                    backing: None,
                })
            } else {
                entry.clone()
            };
            if c.entries.insert(key.clone(), kept).is_none() {
                c.bytes += len;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{test_meta, Freshness};

    fn entry(len: usize) -> Arc<MemEntry> {
        Arc::new(MemEntry {
            meta: Arc::new(test_meta(Freshness::Immutable)),
            body: bytes::Bytes::from(vec![b'x'; len]),
            backing: None,
        })
    }

    fn key(s: &str) -> CacheKey {
        CacheKey::from(s.to_owned())
    }

    #[test]
    fn a_kept_entry_is_served_until_the_tier_changes() {
        let hot = Hot::new();
        let (k, e) = (key("nuget/flat/a/index.json"), entry(10));
        assert!(hot.get(&k).is_none());
        hot.keep(&k, &e, hot.generation());
        let kept = hot.get(&k).unwrap();
        assert_eq!((&kept.body, &kept.meta), (&e.body, &e.meta));
        hot.changed();
        assert!(hot.get(&k).is_none());
        // Moka's eviction listener goes through the same counter.
        hot.keep(&k, &e, hot.generation());
        hot.changes().fetch_add(1, Ordering::AcqRel);
        assert!(hot.get(&k).is_none());
    }

    #[test]
    fn what_moka_answered_before_a_change_is_not_kept() {
        let hot = Hot::new();
        let k = key("nuget/flat/b/index.json");
        assert!(hot.get(&k).is_none());
        let seen = hot.generation();
        hot.changed(); // an insert landed while moka was being asked
        hot.keep(&k, &entry(10), seen);
        assert!(hot.get(&k).is_none());
    }

    #[test]
    fn only_small_bodies_are_kept_and_a_full_copy_starts_over() {
        let hot = Hot::new();
        // (body length, kept)
        for (len, kept) in [(0, true), (MAX_BODY, true), (MAX_BODY + 1, false)] {
            let k = key(&format!("nuget/flat/c{len}"));
            hot.get(&k);
            hot.keep(&k, &entry(len), hot.generation());
            assert_eq!(hot.get(&k).is_some(), kept, "{len} bytes");
        }
        let first = key("nuget/flat/first");
        hot.keep(&first, &entry(1), hot.generation());
        for i in 0..MAX_ENTRIES {
            hot.keep(
                &key(&format!("nuget/flat/n{i}")),
                &entry(1),
                hot.generation(),
            );
        }
        assert!(hot.get(&first).is_none());
        COPY.with_borrow(|c| assert!(c.entries.len() <= MAX_ENTRIES && c.bytes <= MAX_BYTES));
    }

    /// Small bodies become the thread's own copy (no reference count shared
    /// with the other workers), larger ones share moka's entry.
    #[test]
    fn small_entries_are_copied_larger_ones_shared() {
        let hot = Hot::new();
        // (body length, own copy)
        for (len, own) in [(10, true), (OWN_COPY_MAX, true), (OWN_COPY_MAX + 1, false)] {
            let (k, e) = (key(&format!("nuget/flat/own{len}")), entry(len));
            hot.get(&k);
            hot.keep(&k, &e, hot.generation());
            let kept = hot.get(&k).unwrap();
            assert_eq!(kept.body, e.body);
            assert_eq!(!Arc::ptr_eq(&kept, &e), own, "{len} bytes");
            assert_eq!(kept.body.as_ptr() != e.body.as_ptr(), own, "{len} bytes");
        }
    }

    #[test]
    fn tiers_do_not_see_each_others_entries() {
        let (one, two) = (Hot::new(), Hot::new());
        let k = key("nuget/flat/d/index.json");
        one.get(&k);
        one.keep(&k, &entry(10), one.generation());
        assert!(two.get(&k).is_none());
        // and `two` looking took the thread's copy over
        assert!(one.get(&k).is_none());
    }
}
