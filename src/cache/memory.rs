//! The memory tier: a moka cache weighed in body bytes.

use std::sync::Arc;

use moka::future::Cache;

use super::entry::MemEntry;
use super::hot::Hot;
use crate::keys::CacheKey;

/// Per-entry bookkeeping counted on top of the body, so that many tiny
/// entries cannot exceed the configured size.
const OVERHEAD: usize = 256;

/// Small, hot entries as shared `Bytes`.
pub struct MemoryTier {
    cache: Cache<CacheKey, Arc<MemEntry>>,
    max_entry: u64,
    /// Each worker's copy of the hottest small entries (`hot.rs`).
    hot: Hot,
}

impl MemoryTier {
    /// `capacity` and `max_entry` in bytes.
    pub fn new(capacity: u64, max_entry: u64) -> Self {
        let hot = Hot::new();
        let changes = hot.changes();
        let cache = Cache::builder()
            .max_capacity(capacity)
            // Evictions by size change the tier as much as our own calls.
            .eviction_listener(move |_k, _v, _cause| {
                changes.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            })
            .weigher(|_k, v: &Arc<MemEntry>| {
                u32::try_from(v.body.len() + OVERHEAD).unwrap_or(u32::MAX)
            })
            .build();
        MemoryTier {
            cache,
            max_entry,
            hot,
        }
    }

    /// Whether a body of this size is kept in memory at all.
    pub fn admits(&self, len: u64) -> bool {
        len <= self.max_entry
    }

    pub async fn get(&self, key: &CacheKey) -> Option<Arc<MemEntry>> {
        if let Some(e) = self.hot.get(key) {
            return Some(e);
        }
        let seen = self.hot.generation();
        let e = self.cache.get(key).await?;
        self.hot.keep(key, &e, seen);
        Some(e)
    }

    /// Inserts when the entry is small enough; larger ones stay on disk
    /// only, and an older entry of the key goes (memory is asked first, so
    /// a document that outgrew the tier would otherwise be served old).
    pub async fn insert(&self, key: CacheKey, entry: Arc<MemEntry>) {
        if self.admits(entry.body.len() as u64) {
            self.cache.insert(key, entry).await;
            // Not left to the eviction listener: moka may call it later,
            // with its housekeeping, and the change must be seen at once.
            self.hot.changed();
        } else {
            self.remove_if_held(&key).await;
        }
    }

    pub async fn remove(&self, key: &CacheKey) {
        self.cache.invalidate(key).await;
        self.hot.changed();
    }

    /// `remove`, only when the key is held: every removal drops the
    /// workers' hot copies (`hot.rs`), and a fill too large for memory
    /// must not cost them that for nothing.
    pub async fn remove_if_held(&self, key: &CacheKey) {
        if self.cache.contains_key(key) {
            self.remove(key).await;
        }
    }

    /// Whether an entry of this key is held (no maintenance run, no read
    /// recorded).
    pub fn holds(&self, key: &str) -> bool {
        self.cache.contains_key(&CacheKey::from(key.to_owned()))
    }

    /// The keys held that satisfy `pred` (for purges: an entry may be held
    /// here after its file was evicted, or without one at all).
    pub fn matching(&self, pred: impl Fn(&str) -> bool) -> Vec<CacheKey> {
        self.cache
            .iter()
            .filter(|(k, _)| pred(k.as_str()))
            .map(|(k, _)| (*k).clone())
            .collect()
    }

    /// Entries currently held (approximate; no maintenance run).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Body bytes currently held (after pending maintenance).
    pub async fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{test_meta, Freshness};
    use bytes::Bytes;

    #[tokio::test]
    async fn an_entry_that_outgrows_the_tier_leaves_no_older_one() {
        let tier = MemoryTier::new(1 << 20, 10);
        let key = CacheKey::from("nuget/flat/a/index.json".to_string());
        let entry = |len: usize| {
            Arc::new(MemEntry {
                meta: Arc::new(test_meta(Freshness::Immutable)),
                body: Bytes::from(vec![b'x'; len]),
                backing: None,
            })
        };
        // (body length put, length then found in memory)
        for (len, found) in [(5, Some(5)), (20, None), (10, Some(10))] {
            tier.insert(key.clone(), entry(len)).await;
            let got = tier.get(&key).await.map(|e| e.body.len());
            assert_eq!(got, found, "after a put of {len} bytes");
        }
    }
}
