//! A tier shared with other nodes (object storage, `cluster/`), between the
//! local disk and the upstream, for immutable content only. Its objects are
//! whole entry files, header and body as this node writes them, so a copy
//! read back is checked with the entry's own seal (length and CRC-32) and
//! key before it is kept or served; a damaged one is refetched from the
//! upstream and replaced.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::entry::{decode_header, Freshness};
use super::load::DiskEntry;
use super::{Cache, CacheError};
use crate::keys::CacheKey;

/// What the cache needs of a shared tier. Failures are the tier's to log
/// and count: the cache only ever falls back to the upstream.
#[async_trait::async_trait]
pub trait SharedTier: Send + Sync {
    /// The entry file stored under `name`, if the tier has it (`None` when
    /// it has not, or cannot answer in time).
    async fn fetch(&self, name: &str) -> Option<Bytes>;
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

/// Why a shared copy is not used.
fn check(bytes: &[u8], key: &CacheKey) -> Result<(), &'static str> {
    let (meta, stored_key, offset, seal) = decode_header(bytes).map_err(|_| "unreadable header")?;
    if stored_key.as_deref() != Some(key.as_str()) {
        return Err("written for another key");
    }
    if meta.freshness != Freshness::Immutable {
        return Err("not immutable content");
    }
    let seal = seal.ok_or("no seal")?;
    let body = bytes.get(usize::try_from(offset).map_err(|_| "bad offset")?..);
    let body = body.ok_or("shorter than its header")?;
    if body.len() as u64 != seal.len {
        return Err("length differs from its seal");
    }
    if crc32fast::hash(body) != seal.crc {
        return Err("checksum differs from its seal");
    }
    Ok(())
}

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

    /// The entry for `key` from the shared tier, checked and published on
    /// the local disk first; `None` when the tier has no good copy.
    pub(super) async fn fetch_shared(
        &self,
        key: &CacheKey,
    ) -> Result<Option<DiskEntry>, CacheError> {
        let Some(tier) = &self.shared else {
            return Ok(None);
        };
        let name = self.disk.name(key);
        let Some(bytes) = tier.fetch(&name).await else {
            return Ok(None);
        };
        let checked = {
            let (b, k) = (bytes.clone(), key.clone());
            crate::offload::cpu_bound(b.len(), move || check(&b, &k)).await
        };
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                tracing::warn!(key = %key, why, "dropping a damaged copy from the shared tier");
                tier.rejected(&name, why);
                return Ok(None);
            }
            Err(_) => return Ok(None),
        }
        self.disk.put_file(key, bytes).await?;
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
    ) -> Option<reqwest::Response> {
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
    use super::super::entry::{encode_header, seal, Meta, SEAL_AT};
    use super::*;

    fn entry(key: &str, freshness: Freshness, body: &[u8]) -> Vec<u8> {
        let meta = Meta {
            freshness,
            content_type: "application/octet-stream".into(),
            content_encoding: None,
            etag: "\"e\"".into(),
            upstream_etag: None,
            last_modified: None,
            stored_at: 1,
            templated: false,
        };
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
            (b"garbage".to_vec(), Err("unreadable header")),
        ];
        for (bytes, want) in table {
            assert_eq!(check(&bytes, &key), want);
        }
    }
}
