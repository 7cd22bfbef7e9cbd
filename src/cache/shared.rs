//! A tier shared with other nodes (object storage, `cluster/`), between the
//! local disk and the upstream, for immutable content only. Its objects are
//! whole entry files, header and body as this node writes them, so a copy
//! read back is checked with the entry's own seal (length and CRC-32) and
//! key before it is kept or served; a damaged one is refetched from the
//! upstream and replaced.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use futures_util::StreamExt;

use super::entry::{decode_header, Freshness, HeaderError, Seal};
use super::load::{blocking, DiskEntry};
use super::{Cache, CacheError};
use crate::keys::CacheKey;

/// An object being read from a shared tier: its size, then its bytes.
pub struct SharedObject {
    pub size: u64,
    pub body: futures_util::stream::BoxStream<'static, Result<Bytes, String>>,
}

/// What the cache needs of a shared tier. Failures are the tier's to log
/// and count: the cache only ever falls back to the upstream.
#[async_trait::async_trait]
pub trait SharedTier: Send + Sync {
    /// The entry file stored under `name`, if the tier has it (`None` when
    /// it has not, or cannot answer in time).
    async fn fetch(&self, name: &str) -> Option<SharedObject>;
    /// Takes note of a new local entry (its file) to share, in the
    /// background; never blocks.
    fn offer(&self, name: &str, path: PathBuf);
    /// Counts a copy that failed its checks.
    fn rejected(&self, name: &str, why: &str);
    /// Whether the tier answered its last request, and how many entries
    /// wait to be shared (for `/health` and `/metrics`).
    fn status(&self) -> (bool, u64);
}

/// The other nodes: who owns a key. Its owner fills it for the cluster;
/// every other node asks the owner instead of the upstream.
pub trait Owners: Send + Sync {
    /// Where to ask the owner of `key` for it (to be filled from `url`),
    /// and the secret to present; `None` when this node owns it.
    fn owner(&self, key: &CacheKey, url: &url::Url) -> Option<(url::Url, &str)>;
    /// The other nodes' origins (`http://ip:port`), for `/health`.
    fn others(&self) -> Vec<String>;
}

/// Checks a copy from the shared tier as it streams in: the header names
/// `key` and immutable content, and the body matches the seal (length and
/// CRC-32). Only a copy that passes is kept.
struct Verifier<'a> {
    key: &'a CacheKey,
    /// The start of the file, until the header is complete.
    head: Vec<u8>,
    /// The seal, once the header is read.
    seal: Option<Seal>,
    crc: crc32fast::Hasher,
    body: u64,
}

impl<'a> Verifier<'a> {
    fn new(key: &'a CacheKey) -> Self {
        Verifier {
            key,
            head: Vec::new(),
            seal: None,
            crc: crc32fast::Hasher::new(),
            body: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), &'static str> {
        if self.seal.is_some() {
            self.crc.update(chunk);
            self.body += chunk.len() as u64;
            return Ok(());
        }
        self.head.extend_from_slice(chunk);
        let (meta, key, offset, seal) = match decode_header(&self.head) {
            Ok(h) => h,
            Err(HeaderError::Short(_)) if self.head.len() <= MAX_HEAD => return Ok(()),
            Err(_) => return Err("unreadable header"),
        };
        if key.as_deref() != Some(self.key.as_str()) {
            return Err("written for another key");
        }
        if meta.freshness != Freshness::Immutable {
            return Err("not immutable content");
        }
        self.seal = Some(seal.ok_or("no seal")?);
        let rest = self
            .head
            .split_off(usize::try_from(offset).map_err(|_| "bad offset")?);
        self.head = Vec::new();
        self.feed(&rest)
    }

    fn finish(self) -> Result<(), &'static str> {
        let seal = self.seal.ok_or("shorter than its header")?;
        if self.body != seal.len {
            return Err("length differs from its seal");
        }
        if self.crc.finalize() != seal.crc {
            return Err("checksum differs from its seal");
        }
        Ok(())
    }
}

/// Longest entry header read while looking for its end.
const MAX_HEAD: usize = 1 << 20;

/// Data from the shared tier is written in blocks of this size.
const BLOCK: usize = 256 * 1024;

impl Cache {
    /// Sets the other nodes (once, at start).
    pub fn with_owners(mut self, owners: Arc<dyn Owners>) -> Self {
        self.owners = Some(owners);
        self
    }

    /// Sets the shared tier (once, at start).
    pub fn with_shared(mut self, tier: Arc<dyn SharedTier>) -> Self {
        self.shared = Some(tier);
        self
    }

    /// The entry for `key` from the shared tier, streamed into a temp file
    /// and checked on the way, then published on the local disk; `None`
    /// when the tier has no good copy (a bad one is counted and dropped).
    pub(super) async fn fetch_shared(
        &self,
        key: &CacheKey,
    ) -> Result<Option<DiskEntry>, CacheError> {
        let Some(tier) = &self.shared else {
            return Ok(None);
        };
        let name = self.disk.name(key);
        let Some(mut obj) = tier.fetch(&name).await else {
            return Ok(None);
        };
        let refuse = |why: &str| {
            tracing::warn!(key = %key, why, "dropping a damaged copy from the shared tier");
            tier.rejected(&name, why);
            Ok(None)
        };
        if obj.size > self.max_body.saturating_add(MAX_HEAD as u64) {
            return refuse("larger than cache.max_package_size");
        }
        // Dropped before `adopt`, the temp file is removed.
        let temp = Arc::new(self.disk.temp(key)?);
        let mut check = Verifier::new(key);
        let mut pending = bytes::BytesMut::new();
        let mut written = 0u64;
        loop {
            let next = obj.body.next().await;
            let end = next.is_none();
            if let Some(chunk) = next {
                let Ok(chunk) = chunk else {
                    // The tier logged it; the upstream answers instead.
                    return Ok(None);
                };
                if let Err(why) = check.feed(&chunk) {
                    return refuse(why);
                }
                pending.extend_from_slice(&chunk);
                if written + pending.len() as u64 > obj.size {
                    return refuse("longer than announced");
                }
            }
            if pending.len() >= BLOCK || (end && !pending.is_empty()) {
                let (block, t, at) = (pending.split().freeze(), temp.clone(), written);
                written += block.len() as u64;
                blocking(move || t.write_at(&block, at))
                    .await
                    .inspect_err(|e| self.disk.writable.failed(e))?;
            }
            if end {
                break;
            }
        }
        if let Err(why) = check.finish() {
            return refuse(why);
        }
        let Ok(temp) = Arc::try_unwrap(temp) else {
            return Ok(None);
        };
        self.disk.adopt(key, temp).await?;
        self.disk.get(key).await
    }

    /// The answer of `key`'s owner: the body, or its "not found" (which is
    /// the upstream's). `None` when this node owns the key, the fill is for
    /// a peer, or the owner failed: then the bucket and the upstream follow,
    /// so no node is a single point of failure.
    pub(super) async fn ask_owner(
        &self,
        key: &CacheKey,
        url: &url::Url,
        upstream: &crate::upstream::Upstream,
        forward: bool,
    ) -> Option<crate::upstream::Response> {
        if !forward {
            return None;
        }
        let (peer, secret) = self.owners.as_ref()?.owner(key, url)?;
        let req = crate::upstream::Request {
            cluster_secret: Some(secret),
            ..Default::default()
        };
        let failed = |why: &dyn std::fmt::Display| {
            tracing::warn!(key = %key, peer = %peer.authority(), error = %why, "owner node failed; filling here");
            crate::metrics::get().peer("error");
        };
        match upstream.get(&peer, &req).await {
            Ok(r) if r.status().is_success() || matches!(r.status().as_u16(), 404 | 410) => {
                crate::metrics::get().peer("ok");
                Some(r)
            }
            Ok(r) => {
                failed(&r.status());
                None
            }
            Err(e) => {
                failed(&e);
                None
            }
        }
    }

    /// Offers the local entry of `key` to the shared tier.
    pub(super) fn share(&self, key: &CacheKey) {
        if let Some(tier) = &self.shared {
            let name = self.disk.name(key);
            tier.offer(&name, self.disk.path_for(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::{encode_header, seal, test_meta, SEAL_AT};
    use super::*;

    fn entry(key: &str, freshness: Freshness, body: &[u8]) -> Vec<u8> {
        let meta = test_meta(freshness);
        let mut f = encode_header(&meta, key);
        let at = usize::try_from(SEAL_AT).unwrap();
        f[at..at + 12].copy_from_slice(&seal(body.len() as u64, crc32fast::hash(body)));
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn only_whole_copies_of_the_right_key_pass() {
        let key = CacheKey::from("nuget/flat/a/1.0.0/a.1.0.0.nupkg".to_string());
        let good = entry(key.as_str(), Freshness::Immutable, b"package bytes");
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let table: [(Vec<u8>, Result<(), &str>); 6] = [
            (good.clone(), Ok(())),
            (flipped, Err("checksum differs from its seal")),
            (
                good[..good.len() - 1].to_vec(),
                Err("length differs from its seal"),
            ),
            (
                entry(
                    "nuget/flat/b/1.0.0/b.1.0.0.nupkg",
                    Freshness::Immutable,
                    b"x",
                ),
                Err("written for another key"),
            ),
            (
                entry(key.as_str(), Freshness::Metadata, b"x"),
                Err("not immutable content"),
            ),
            (
                b"garbage that is not an entry".to_vec(),
                Err("unreadable header"),
            ),
        ];
        for (bytes, want) in table {
            // Whatever the chunks, the same verdict.
            for size in [1, 7, 64, 1 << 20] {
                let mut v = Verifier::new(&key);
                let fed = bytes.chunks(size).try_for_each(|c| v.feed(c));
                assert_eq!(fed.and_then(|_| v.finish()), want, "chunks of {size}");
            }
        }
    }
}
