//! Metadata documents (service index, version lists, registration, search):
//! fetched whole, rewritten, cached with a TTL and revalidated with ETags.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;
use url::Url;

use crate::cache::{etag_of, Cache, Found, Freshness, Inflight, Joined, MemEntry, Meta};
use crate::clock::{Clock, SystemClock};
use crate::error::AppError;
use crate::keys::CacheKey;
use crate::offload::cpu_bound;
use crate::rewrite::Rewriter;
use crate::upstream::{classify, host_of, Request, Upstream};

/// What to do with a fetched document before storing it.
#[derive(Clone)]
pub enum Transform {
    /// Store as received (after decompression).
    None,
    /// Rewrite upstream URLs in JSON; non-JSON bodies are stored as received.
    Rewrite(Arc<Rewriter>),
}

/// How a metadata answer was obtained, for `X-Cache` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Revalidated,
    /// Past its TTL, answered at once while a refresh runs in the background
    /// (or while the upstream is down), within `max_stale`.
    Stale,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Revalidated => "REVALIDATED",
            Outcome::Stale => "STALE",
        }
    }
}

type Flight = watch::Receiver<Option<Result<(Arc<MemEntry>, Outcome), AppError>>>;

/// Fetches and caches metadata documents.
pub struct MetadataStore {
    cache: Arc<Cache>,
    upstream: Upstream,
    ttl: Duration,
    /// How long past its TTL a document may still be served.
    max_stale: Duration,
    max_size: u64,
    flights: Inflight<Flight>,
    /// What "now" is for TTLs (the system clock but in tests).
    clock: Arc<dyn Clock>,
}

/// Freshness settings of the metadata store.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub ttl: Duration,
    pub max_stale: Duration,
    pub max_size: u64,
}

impl MetadataStore {
    pub fn new(cache: Arc<Cache>, upstream: Upstream, policy: Policy) -> Arc<Self> {
        Self::with_clock(cache, upstream, policy, Arc::new(SystemClock))
    }

    /// `new` with the clock TTLs are measured by.
    pub fn with_clock(
        cache: Arc<Cache>,
        upstream: Upstream,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(MetadataStore {
            cache,
            upstream,
            ttl: policy.ttl,
            max_stale: policy.max_stale,
            max_size: policy.max_size,
            flights: Inflight::default(),
            clock,
        })
    }

    /// The document for `key`: cached while fresh; past its TTL (up to
    /// `max_stale`) answered at once while one background refresh runs;
    /// otherwise fetched or revalidated once however many clients ask.
    pub async fn get(
        self: &Arc<Self>,
        key: &CacheKey,
        url: &Url,
        transform: &Transform,
    ) -> Result<(Arc<MemEntry>, Outcome), AppError> {
        self.get_with(key, url, transform, false).await
    }

    /// Asks the upstream now even if the cached copy is fresh (coalesced with
    /// any refresh in flight), e.g. before answering that a version is absent.
    pub async fn revalidate(
        self: &Arc<Self>,
        key: &CacheKey,
        url: &Url,
        transform: &Transform,
    ) -> Result<(Arc<MemEntry>, Outcome), AppError> {
        self.cache.negative.invalidate(key);
        self.get_with(key, url, transform, true).await
    }

    async fn get_with(
        self: &Arc<Self>,
        key: &CacheKey,
        url: &Url,
        transform: &Transform,
        force: bool,
    ) -> Result<(Arc<MemEntry>, Outcome), AppError> {
        // Offline, a forced revalidation is an ordinary read of the cache.
        let force = force && !self.upstream.is_offline();
        let cached = self.cached(key).await?;
        if let (Some(m), false) = (&cached, force) {
            let (ttl, now) = (self.ttl.as_secs(), self.clock.now_secs());
            if !m.meta.is_expired(ttl, now) {
                return Ok((m.clone(), Outcome::Hit));
            }
            // Offline, whatever is cached is the answer, however old.
            if self.upstream.is_offline() {
                return Ok((m.clone(), Outcome::Stale));
            }
            if !m
                .meta
                .is_expired(ttl.saturating_add(self.max_stale.as_secs()), now)
            {
                // Stale-while-revalidate: this client does not wait; the
                // refresh (or its failure, if the upstream is down) is the
                // next client's concern.
                drop(self.start(key, url, transform, cached.clone()));
                return Ok((m.clone(), Outcome::Stale));
            }
        }
        let mut rx = self.start(key, url, transform, cached);
        let r = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| AppError::BadUpstream("metadata fetch vanished".into()))?;
        r.clone()
            .unwrap_or_else(|| Err(AppError::BadUpstream("metadata fetch vanished".into())))
    }

    /// `key`'s cached copy if it is fresh: what `get` answers as a hit,
    /// asked before the caller builds the upstream URL (for a feed's
    /// documents that takes its service index and a URL parse, which a hit
    /// does not need). A remembered 404 is `NotFound`, as from `get`.
    pub async fn fresh(&self, key: &CacheKey) -> Result<Option<Arc<MemEntry>>, AppError> {
        let (ttl, now) = (self.ttl.as_secs(), self.clock.now_secs());
        Ok(self
            .cached(key)
            .await?
            .filter(|m| !m.meta.is_expired(ttl, now)))
    }

    /// The cached copy of `key`, fresh or not; `NotFound` while a 404 for
    /// it is remembered.
    async fn cached(&self, key: &CacheKey) -> Result<Option<Arc<MemEntry>>, AppError> {
        if self.cache.negative.contains_key(key) {
            return Err(AppError::NotFound);
        }
        Ok(match self.cache.get(key).await? {
            Some(Found::Memory(m)) => Some(m),
            Some(Found::Disk(d)) => {
                let body = d.body().await?;
                Some(Arc::new(MemEntry {
                    meta: d.meta.clone(),
                    body,
                    backing: None,
                }))
            }
            None => None,
        })
    }

    /// Joins the refresh of `key` in flight, or starts one in its own task.
    fn start(
        self: &Arc<Self>,
        key: &CacheKey,
        url: &Url,
        transform: &Transform,
        cached: Option<Arc<MemEntry>>,
    ) -> Flight {
        let joined = self.flights.join_or_start(key, || {
            let (tx, rx) = watch::channel(None);
            let this = self.clone();
            let (key, url, transform) = (key.clone(), url.clone(), transform.clone());
            tokio::spawn(async move {
                let done = this.flights.finish_on_drop(&key);
                let r = this.refresh(&key, &url, &transform, cached).await;
                if let Err(e) = &r {
                    e.log_for(&key, "metadata fetch failed");
                }
                drop(done);
                tx.send_replace(Some(r));
            });
            rx
        });
        match joined {
            Joined::Existing(rx) | Joined::Started(rx) => rx,
        }
    }

    async fn refresh(
        &self,
        key: &CacheKey,
        url: &Url,
        transform: &Transform,
        cached: Option<Arc<MemEntry>>,
    ) -> Result<(Arc<MemEntry>, Outcome), AppError> {
        let validator = cached
            .as_ref()
            .and_then(|c| c.meta.upstream_etag.as_deref());
        let req = Request {
            if_none_match: validator,
            accept_gzip: true,
            ..Request::default()
        };
        let resp = self.upstream.get(url, &req).await?;
        let status = resp.status().as_u16();
        if status == 304 {
            if let Some(c) = cached {
                let mut meta = (*c.meta).clone();
                meta.stored_at = self.clock.now_secs();
                let m = self.cache.put(key, meta, c.body.clone()).await?;
                return Ok((m, Outcome::Revalidated));
            }
        }
        if status == 404 || status == 410 {
            // The upstream no longer has it: drop what we had, and remember
            // the answer for a while (negative caching).
            if cached.is_some() {
                self.cache.remove(key).await?;
            }
            self.cache.negative.insert(key.clone(), false);
            return Err(AppError::from_upstream_response(url, resp).await);
        }
        if status != 200 {
            return Err(AppError::from_upstream_response(url, resp).await);
        }
        let header = |n: http::header::HeaderName| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let upstream_etag = header(http::header::ETAG);
        let last_modified = header(http::header::LAST_MODIFIED);
        // Every metadata document is JSON; an upstream's other type (an HTML
        // error page sent with 200) is not passed on.
        let content_type = header(http::header::CONTENT_TYPE)
            .filter(|t| t.to_ascii_lowercase().contains("json"))
            .unwrap_or_else(|| "application/json".into());
        let gzip =
            header(http::header::CONTENT_ENCODING).is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
        let raw = self.read_limited(url, resp).await?;
        let body = if gzip { self.gunzip(&raw)? } else { raw };

        // A document that does not parse is a fault of the upstream's (502),
        // never a cached 200.
        let invalid = |e: serde_json::Error| {
            AppError::BadUpstream(format!("invalid JSON from {}: {e}", host_of(url)))
        };
        let (body, templated) = match transform {
            Transform::Rewrite(rw) => {
                let (rw, input) = (rw.clone(), body.clone());
                let out = cpu_bound(body.len(), move || rw.rewrite_json(&input)).await?;
                (Bytes::from(out.map_err(invalid)?), true)
            }
            Transform::None => {
                let input = body.clone();
                cpu_bound(body.len(), move || {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&input).map(|_| ())
                })
                .await?
                .map_err(invalid)?;
                (body, false)
            }
        };
        let meta = Meta {
            freshness: Freshness::Metadata,
            content_type,
            content_encoding: None,
            etag: etag_of(&body),
            upstream_etag,
            last_modified,
            stored_at: self.clock.now_secs(),
            templated,
        };
        let m = self.cache.put(key, meta, body).await?;
        Ok((m, Outcome::Miss))
    }

    /// Reads a body, refusing more than `max_size` bytes.
    async fn read_limited(
        &self,
        url: &Url,
        resp: crate::upstream::Response,
    ) -> Result<Bytes, AppError> {
        if resp.content_length().is_some_and(|n| n > self.max_size) {
            return Err(AppError::BadUpstream("metadata document too large".into()));
        }
        let mut out = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(url, &e))?;
            if (out.len() + chunk.len()) as u64 > self.max_size {
                return Err(AppError::BadUpstream("metadata document too large".into()));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    fn gunzip(&self, raw: &[u8]) -> Result<Bytes, AppError> {
        gunzip(raw, self.max_size)
    }
}

/// Decompresses, refusing output beyond `max_size` (a gzip bomb).
pub fn gunzip(raw: &[u8], max_size: u64) -> Result<Bytes, AppError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(max_size + 1)
        .read_to_end(&mut out)
        .map_err(|e| AppError::BadUpstream(format!("bad gzip: {e}")))?;
    if out.len() as u64 > max_size {
        return Err(AppError::BadUpstream("metadata document too large".into()));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests;
