//! The two-tier cache: memory (moka) over disk, plus fills in flight.

mod blob_meta;
mod blocks;
mod bypass;
mod disk;
mod durable;
mod entry;
mod fill;
mod follow;
mod held;
mod hot;
mod index;
mod inflight;
mod load;
mod memory;
mod removals;
mod shared;
mod writable;
mod writev;
mod written;

pub use bypass::{BodyStream, Passthrough};
pub use disk::DiskTier;
pub use entry::{etag_of, now_secs, Freshness, MemEntry, Meta};
pub use fill::BodyCheck;
pub use follow::{Fill, FillReader, FillState};
pub use held::{Budget, HELD_MIN};
pub use index::DiskIndex;
pub use inflight::{Inflight, Joined};
pub use load::{read_at, DiskEntry};
pub use memory::MemoryTier;
pub use shared::{Owners, SharedObject, SharedTier};
pub use written::EntryWriter;

use std::sync::Arc;

use bytes::Bytes;

use crate::keys::CacheKey;

/// Why the cache could not read or write an entry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("cache I/O on {path}: {msg}")]
    Io { path: String, msg: String },
    /// Writes are off after a failed one (`writable.rs`); the miss is
    /// served from the upstream instead.
    #[error("cache disk not writable")]
    NotWritable,
    /// The disk index is still being built from the files (`index.rs`): a
    /// purge now would miss entries of earlier runs.
    #[error("cache index still loading")]
    IndexLoading,
}

/// A cached entry, wherever it lives.
#[derive(Debug, Clone)]
pub enum Found {
    Memory(Arc<MemEntry>),
    Disk(DiskEntry),
}

impl Found {
    pub fn meta(&self) -> &Arc<Meta> {
        match self {
            Found::Memory(m) => &m.meta,
            Found::Disk(d) => &d.meta,
        }
    }

    /// Which tier answered, for the `X-Cache` header and logs.
    pub fn tier(&self) -> &'static str {
        match self {
            Found::Memory(_) => "memory",
            Found::Disk(_) => "disk",
        }
    }
}

/// Both tiers and the fills in flight.
pub struct Cache {
    pub memory: MemoryTier,
    pub disk: DiskTier,
    /// Streaming package fills.
    pub blobs: Inflight<Arc<Fill>>,
    /// Keys the upstream recently answered 404 for (negative caching); 5xx,
    /// timeouts and truncated bodies never land here.
    /// The flag says whether a 404 was already re-checked (see `App::flat_file`).
    pub negative: moka::sync::Cache<CacheKey, bool>,
    /// A tier shared with other nodes (`cluster/`), read before the
    /// upstream and given every fill.
    pub shared: Option<Arc<dyn SharedTier>>,
    /// The other nodes of a cluster: a miss asks the key's owner first.
    pub owners: Option<Arc<dyn Owners>>,
    /// Largest body a fill accepts (`cache.max_package_size`).
    pub max_body: u64,
    /// The check a package body without a length must pass to be kept
    /// (`extract.max_entries`).
    pub package_check: crate::extract::PackageCheck,
    /// Memory entries that may keep their file open for `sendfile`.
    pub held: Budget,
}

impl Cache {
    /// `negative_ttl`: how long an upstream 404 is remembered.
    pub fn new(memory: MemoryTier, disk: DiskTier, negative_ttl: std::time::Duration) -> Self {
        Cache {
            memory,
            disk,
            blobs: Inflight::default(),
            negative: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(negative_ttl)
                .build(),
            max_body: u64::MAX,
            package_check: crate::extract::PackageCheck::default(),
            shared: None,
            owners: None,
            held: Budget::default(),
        }
    }

    /// Lets up to `n` memory entries keep their cache file open, so that
    /// large ones can be sent by `sendfile` (`held.rs`).
    pub fn with_held_files(mut self, n: usize) -> Self {
        self.held = Budget::new(n);
        self
    }

    /// Caps the size of bodies fills accept.
    pub fn with_max_body(mut self, max: u64) -> Self {
        self.max_body = max;
        self
    }

    /// Caps the entries of packages checked before they are kept.
    pub fn with_max_entries(mut self, max: u64) -> Self {
        self.package_check = crate::extract::PackageCheck { max_entries: max };
        self
    }

    /// Looks in memory, then on disk; small disk entries are promoted to memory.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Found>, CacheError> {
        if let Some(m) = self.memory.get(key).await {
            return Ok(Some(Found::Memory(m)));
        }
        let seen = self.disk.removals.seen();
        let Some(d) = self.disk.get(key).await? else {
            return Ok(None);
        };
        if !self.memory.admits(d.len) {
            return Ok(Some(Found::Disk(d)));
        }
        let body = d.body().await?;
        if body.len() as u64 != d.len {
            return Ok(Some(Found::Disk(d)));
        }
        let m = Arc::new(MemEntry {
            meta: d.meta.clone(),
            body,
            // The body is the mapping when there is one (`DiskEntry::body`).
            backing: d
                .map
                .as_ref()
                .and_then(|_| self.held.back(&d.file, d.offset, d.len, d.meta.templated)),
        });
        self.memory.insert(key.clone(), m.clone()).await;
        if !self.disk.removals.kept_after(seen) {
            // A removal (a purge) raced the load: served once, not kept.
            self.memory.remove(key).await;
        }
        Ok(Some(Found::Memory(m)))
    }

    /// Stores a whole entry in both tiers (disk first, atomically; memory
    /// only while the disk takes no writes).
    pub async fn put(
        &self,
        key: &CacheKey,
        meta: Meta,
        body: Bytes,
    ) -> Result<Arc<MemEntry>, CacheError> {
        // Without a writable disk the entry lives in memory only: clients
        // are still served, and the next fetch tries the disk again.
        if self.disk.writable.ok() {
            if let Err(e) = self.disk.put(key, &meta, body.clone()).await {
                tracing::debug!(key = %key, error = %e, "entry kept in memory only");
            }
        }
        let m = Arc::new(MemEntry {
            meta: Arc::new(meta),
            body,
            backing: None,
        });
        self.memory.insert(key.clone(), m.clone()).await;
        Ok(m)
    }

    /// Removes every entry whose key satisfies `pred` from both tiers and
    /// forgets remembered 404s; returns the keys removed.
    pub async fn purge(
        self: &Arc<Self>,
        pred: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Result<Vec<CacheKey>, CacheError> {
        let (this, pred) = (self.clone(), Arc::new(pred));
        let on_disk = pred.clone();
        let mut keys = load::blocking(move || this.disk.purge(|k| on_disk(k))).await?;
        // Entries memory holds without a file (evicted from disk, or kept
        // while the disk took no writes) go too.
        let seen: std::collections::HashSet<CacheKey> = keys.iter().cloned().collect();
        keys.extend(
            self.memory
                .matching(|k| pred(k))
                .into_iter()
                .filter(|k| !seen.contains(k)),
        );
        for k in &keys {
            self.memory.remove(k).await;
        }
        self.negative.invalidate_all();
        Ok(keys)
    }

    /// Keeps the disk tier under its cap. Entries memory serves are never
    /// read from disk, so the disk's own record calls them old; they go
    /// last. Blocking.
    pub fn evict(&self) -> usize {
        self.disk.evict(|k| self.memory.holds(k))
    }

    /// Drops an entry from both tiers.
    pub async fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        self.memory.remove(key).await;
        self.disk.remove(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Bounds every await of these tests.
    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("timed out")
    }

    /// A purge reaches what memory holds without a file (evicted from disk,
    /// or kept while the disk took no writes), not only what disk indexes.
    #[tokio::test]
    async fn a_purge_removes_entries_memory_holds_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::new(
            MemoryTier::new(64 << 20, 4 << 20),
            DiskTier::open(dir.path()).unwrap(),
            Duration::from_secs(60),
        ));
        within(async {
            while !cache.disk.index.ready() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let meta = entry::test_meta(Freshness::Immutable);
        let (a, b) = ("nuget/flat/a/1.0.0/a.nupkg", "nuget/flat/b/1.0.0/b.nupkg");
        for k in [a, b] {
            let key = CacheKey::from(k.to_owned());
            within(cache.put(&key, meta.clone(), Bytes::from_static(b"body")))
                .await
                .unwrap();
        }
        // a's file goes behind memory's back, as an eviction takes it.
        within(cache.disk.remove(&CacheKey::from(a.to_owned())))
            .await
            .unwrap();
        let purged = within(cache.purge(|k| k.starts_with("nuget/flat/")))
            .await
            .unwrap();
        assert_eq!(purged.len(), 2, "{purged:?}");
        for k in [a, b] {
            let key = CacheKey::from(k.to_owned());
            assert!(within(cache.get(&key)).await.unwrap().is_none(), "{k}");
        }
    }

    #[tokio::test]
    async fn large_entries_promoted_from_disk_keep_their_file_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(
            MemoryTier::new(64 << 20, 4 << 20),
            DiskTier::open(dir.path()).unwrap(),
            Duration::from_secs(60),
        )
        .with_held_files(1);
        let meta = entry::test_meta(Freshness::Immutable);
        let big = HELD_MIN as usize;
        // (key, body length, kept open)
        let cases = [
            ("a", big, true),
            // The budget of one is spent.
            ("b", big, false),
            ("c", big - 1, false),
        ];
        for (name, len, _) in cases {
            let body = Bytes::from(vec![b'x'; len]);
            let key = CacheKey::from(name.to_owned());
            within(cache.disk.put(&key, &meta, body)).await.unwrap();
        }
        for (name, len, held) in cases {
            let key = CacheKey::from(name.to_owned());
            let Some(Found::Memory(m)) = within(cache.get(&key)).await.unwrap() else {
                panic!("{name}: not promoted to memory");
            };
            assert_eq!(m.body.len(), len, "{name}");
            assert_eq!(m.backing.is_some(), held, "{name}");
        }
    }
}
