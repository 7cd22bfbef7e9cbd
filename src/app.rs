//! The application core: resolves a route to a `Reply` from the cache,
//! filling from the upstream on a miss. Knows nothing of pingora.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use url::Url;

use crate::auth::Auth;
use crate::cache::{BodyCheck, Cache, DiskEntry, FillReader, Found, Meta};
use crate::config::Config;
use crate::error::AppError;
use crate::feeds::FeedIndex;
use crate::keys::{CacheKey, FeedRef, FlatFile};
use crate::metadata::{MetadataStore, Outcome, Transform};
use crate::rawlink::RawSigner;
use crate::routes::{Route, V3Route};
use crate::upstream::Upstream;

/// A response body, wherever it comes from.
pub enum Body {
    /// In memory; `templated` bodies are rendered by the responder.
    Bytes(Bytes),
    /// A templated body with one variant for HTTPS public bases and one
    /// for plain HTTP (the service index, see `FeedIndex::template_plain`).
    Template { https: Bytes, http: Bytes },
    /// In memory, mapped from the cache file it may also be sent from
    /// (`sendfile`); never a templated document.
    Held {
        body: Bytes,
        file: Arc<std::fs::File>,
        /// Byte offset of the body in `file`.
        offset: u64,
    },
    /// A complete entry on disk.
    Disk(DiskEntry),
    /// A fill in progress, with the length when the upstream announced it.
    Fill(FillReader, Option<u64>),
    /// Straight from the upstream, not stored (the disk takes no writes).
    Stream(crate::cache::BodyStream, Option<u64>),
    /// A file being inflated out of a cached package.
    Extract(crate::extract::Extracted),
}

/// What the handler answers: entry meta, body, and how the cache did.
pub struct Reply {
    pub meta: Arc<Meta>,
    pub body: Body,
    /// `HIT`, `MISS`, `REVALIDATED`: sent as `X-Cache`.
    pub cache: &'static str,
    /// Upstreams of a virtual feed that did not answer (their key prefixes,
    /// comma-separated): sent as `X-Feedcache-Missing`.
    pub missing: Option<String>,
}

/// Shared state of the running proxy.
pub struct App {
    pub config: Config,
    pub cache: Arc<Cache>,
    pub upstream: Upstream,
    pub metadata: Arc<MetadataStore>,
    /// Client keys (`[auth]`).
    pub auth: Auth,
    /// Signs and checks `raw/` links.
    raw_signer: Arc<RawSigner>,
    /// Parsed service indexes by feed, with the ETag of the document they came from.
    feeds: Mutex<HashMap<FeedRef, (String, Arc<FeedIndex>)>>,
    /// Parsed central directories of cached packages (`download-file`).
    pub directories: crate::extract::Directories,
}

impl App {
    pub fn new(
        config: Config,
        cache: Arc<Cache>,
        upstream: Upstream,
        auth: Auth,
        raw_signer: RawSigner,
    ) -> Arc<Self> {
        let policy = crate::metadata::Policy {
            ttl: config.cache.metadata_ttl,
            max_stale: config.cache.max_stale,
            max_size: config.cache.max_metadata_size.as_u64(),
        };
        let metadata = MetadataStore::new(cache.clone(), upstream.clone(), policy);
        let directories = crate::extract::Directories::new(config.extract.max_entries);
        Arc::new(App {
            config,
            cache,
            upstream,
            metadata,
            auth,
            raw_signer: Arc::new(raw_signer),
            feeds: Mutex::new(HashMap::new()),
            directories,
        })
    }

    /// Answers a routed request. `query` is the query string without client
    /// credentials (`Query::clean`): what is forwarded and part of a key.
    pub async fn handle(&self, route: &Route, query: Option<&str>) -> Result<Reply, AppError> {
        match route {
            Route::Health => Ok(generated(self.health(), "text/plain; charset=utf-8")),
            Route::Metrics => Ok(self.metrics().await),
            Route::AdminStats => Ok(self.stats().await),
            Route::AdminPurge(spec) => self.purge(spec).await,
            Route::AdminOffline(set) => Ok(self.offline(*set)),
            Route::ClusterFill { key, url } => self.cluster_fill(key, url).await,
            Route::V3 { feed, res } => self.v3(feed, res, query).await,
            Route::Packages { feed, op, q } => self.packages(feed, op, q).await,
            Route::Upack {
                feed,
                op,
                id,
                version,
            } => self.upack(feed, op, id, version).await,
        }
    }

    /// A V3 route as clients reach it: `/feeds/{name}/v3/` is a virtual
    /// feed, and so is `/v3/` when `default_feed` names one.
    async fn v3(
        &self,
        feed: &FeedRef,
        res: &V3Route,
        query: Option<&str>,
    ) -> Result<Reply, AppError> {
        match (feed, &self.config.default_feed) {
            (FeedRef::Virtual(name), _) => self.group_v3(name, res, query, false).await,
            (FeedRef::Default, Some(name)) => self.group_v3(name, res, query, true).await,
            _ => self.v3_member(feed, res, query).await,
        }
    }

    /// A V3 route of one upstream feed, as it is (also how a virtual feed
    /// asks its members).
    pub(crate) async fn v3_member(
        &self,
        feed: &FeedRef,
        res: &V3Route,
        query: Option<&str>,
    ) -> Result<Reply, AppError> {
        match res {
            V3Route::ServiceIndex => {
                let (idx, meta, cache) = self.feed_index(feed).await?;
                let mut meta = (*meta).clone();
                meta.templated = true;
                meta.content_type = "application/json; charset=utf-8".into();
                Ok(Reply {
                    meta: Arc::new(meta),
                    body: Body::Template {
                        https: idx.template.clone(),
                        http: idx.template_plain.clone(),
                    },
                    cache,
                    missing: None,
                })
            }
            V3Route::FlatIndex { id } => {
                let key = CacheKey::flat_index(feed, id);
                if let Some(reply) = self.fresh_reply(&key).await? {
                    return Ok(reply);
                }
                let (idx, _, _) = self.feed_index(feed).await?;
                let url = join(flat_base(&idx)?, &format!("{id}/index.json"))?;
                self.meta_reply(&key, &url, &Transform::None).await
            }
            V3Route::FlatFile { id, version, file } => {
                self.flat_file(feed, id, version, *file).await
            }
            V3Route::Registration { tag, id, rest } => {
                let key = CacheKey::hashed(feed, "reg", tag, Some(id), rest);
                if let Some(reply) = self.fresh_reply(&key).await? {
                    return Ok(reply);
                }
                let (idx, _, _) = self.feed_index(feed).await?;
                let base = idx.registration(tag).ok_or(AppError::NotFound)?;
                let url = join(base, &format!("{id}/{rest}"))?;
                self.meta_reply(&key, &url, &Transform::Rewrite(idx.rewriter.clone()))
                    .await
            }
            V3Route::Search { tag } | V3Route::Autocomplete { tag } => {
                let (idx, _, _) = self.feed_index(feed).await?;
                let (class, base) = match res {
                    V3Route::Search { .. } => ("search", idx.search(tag)),
                    _ => ("autocomplete", idx.autocomplete(tag)),
                };
                let mut url = base.ok_or(AppError::NotFound)?.clone();
                url.set_query(query);
                let key = CacheKey::hashed(feed, class, tag, None, query.unwrap_or(""));
                self.meta_reply(&key, &url, &Transform::Rewrite(idx.rewriter.clone()))
                    .await
            }
            V3Route::Raw { origin, tag, path } => {
                // Only links that this feed's own rewritten documents carry:
                // anything else would make `raw/` an open proxy.
                let signed = self
                    .raw_signer
                    .verify(&feed.key_prefix(), *origin, path, query, tag);
                if !signed {
                    return Err(AppError::NotFound);
                }
                let (idx, _, _) = self.feed_index(feed).await?;
                let o = idx.origins.get(*origin).ok_or(AppError::NotFound)?;
                let mut url = Url::parse(&format!("{o}/{path}"))
                    .map_err(|_| AppError::Route(crate::routes::RouteError::NotFound))?;
                url.set_query(query);
                // The ProGet key goes only to the feed's own part of the
                // server, even where another feed's document links elsewhere.
                if self.upstream.sends_key_to(&url) {
                    let root = join(&self.service_index_url(feed)?, "../")?;
                    if !url.as_str().starts_with(root.as_str()) {
                        return Err(AppError::NotFound);
                    }
                }
                let detail = format!("{path}?{}", query.unwrap_or(""));
                let key = CacheKey::hashed(feed, "raw", &origin.to_string(), None, &detail);
                self.meta_reply(&key, &url, &Transform::Rewrite(idx.rewriter.clone()))
                    .await
            }
        }
    }

    pub(crate) async fn flat_file(
        &self,
        feed: &FeedRef,
        id: &str,
        version: &str,
        file: FlatFile,
    ) -> Result<Reply, AppError> {
        let key = CacheKey::flat_file(feed, id, version, file);
        // Package content never expires: a cached copy is served without even
        // looking at the service index, so a hit needs no upstream at all.
        if let Some(reply) = self.cached_blob(&key).await? {
            return Ok(reply);
        }
        if let Some(rechecked) = self.cache.negative.get(&key) {
            // The upstream said 404 a moment ago. A version published since
            // must not stay invisible: re-read the version list once, and
            // repeat the 404 only if it still does not list this version.
            if rechecked || !self.version_listed(feed, id, version, true).await? {
                self.cache.negative.insert(key, true);
                return Err(AppError::NotFound);
            }
            self.cache.negative.invalidate(&key);
        }
        let url = self.flat_url(feed, id, version, file).await?;
        self.fill_reply(&key, url, None).await
    }

    /// The upstream URL of a file of `id` `version` in `feed`'s flat container.
    pub(crate) async fn flat_url(
        &self,
        feed: &FeedRef,
        id: &str,
        version: &str,
        file: FlatFile,
    ) -> Result<Url, AppError> {
        let (idx, _, _) = self.feed_index(feed).await?;
        let name = match file {
            FlatFile::Nupkg => format!("{id}/{version}/{id}.{version}.nupkg"),
            FlatFile::Nuspec => format!("{id}/{version}/{id}.nuspec"),
            FlatFile::Icon => format!("{id}/{version}/icon"),
            FlatFile::Readme => format!("{id}/{version}/readme"),
        };
        join(flat_base(&idx)?, &name)
    }

    /// Whether the upstream's version list has `version` of `id`; with
    /// `now`, revalidated now rather than as fresh as the TTL allows.
    pub(crate) async fn version_listed(
        &self,
        feed: &FeedRef,
        id: &str,
        version: &str,
        now: bool,
    ) -> Result<bool, AppError> {
        let (idx, _, _) = self.feed_index(feed).await?;
        let url = join(flat_base(&idx)?, &format!("{id}/index.json"))?;
        let key = CacheKey::flat_index(feed, id);
        let got = if now {
            self.metadata.revalidate(&key, &url, &Transform::None).await
        } else {
            self.metadata.get(&key, &url, &Transform::None).await
        };
        let entry = match got {
            Ok((entry, _)) => entry,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let (body, want) = (entry.body.clone(), version.to_owned());
        crate::offload::cpu_bound(body.len(), move || crate::versions::lists(&body, &want))
            .await?
            .map_err(|e| AppError::BadUpstream(format!("version list: {e}")))
    }

    /// Immutable content already cached, or being fetched right now.
    pub(crate) async fn cached_blob(&self, key: &CacheKey) -> Result<Option<Reply>, AppError> {
        if let Some(found) = self.cache.get(key).await? {
            return Ok(Some(found_reply(found)));
        }
        match self.cache.blobs.get(key) {
            Some(fill) => fill_reply(fill.reader(), "MISS").await.map(Some),
            None => Ok(None),
        }
    }

    /// Joins or starts the fill of `key` from `url` and streams it.
    pub(crate) async fn fill_reply(
        &self,
        key: &CacheKey,
        url: Url,
        check: Option<BodyCheck>,
    ) -> Result<Reply, AppError> {
        self.fill_reply_from(key, url, check, true).await
    }

    /// `fill_reply`; without `forward` (a peer's request) the key's owner
    /// is this node whatever the ring says, so requests never loop.
    pub(crate) async fn fill_reply_from(
        &self,
        key: &CacheKey,
        url: Url,
        check: Option<BodyCheck>,
        forward: bool,
    ) -> Result<Reply, AppError> {
        if !self.cache.disk.writable.ok() {
            return self.pass_through(&url).await;
        }
        let (fill, _) =
            self.cache
                .fill_blob(key, url.clone(), self.upstream.clone(), check, forward);
        match fill_reply(fill.reader(), "MISS").await {
            // The disk failed this fill before a byte was sent.
            Err(AppError::Cache(_)) if !self.cache.disk.writable.ok() => {
                self.pass_through(&url).await
            }
            other => other,
        }
    }

    /// A miss served from the upstream without storing it.
    async fn pass_through(&self, url: &Url) -> Result<Reply, AppError> {
        let p = self.cache.pass_through(url, &self.upstream).await?;
        Ok(Reply {
            meta: p.meta,
            body: Body::Stream(p.body, p.len),
            cache: "MISS",
            missing: None,
        })
    }

    pub(crate) async fn meta_reply(
        &self,
        key: &CacheKey,
        url: &Url,
        t: &Transform,
    ) -> Result<Reply, AppError> {
        let (entry, outcome) = self.metadata.get(key, url, t).await?;
        Ok(Reply {
            meta: entry.meta.clone(),
            body: Body::Bytes(entry.body.clone()),
            cache: outcome.as_str(),
            missing: None,
        })
    }

    /// A fresh cached document answered as `meta_reply` would, without the
    /// feed's service index or an upstream URL: like package content, a
    /// document within its TTL needs nothing from the upstream side.
    async fn fresh_reply(&self, key: &CacheKey) -> Result<Option<Reply>, AppError> {
        Ok(self.metadata.fresh(key).await?.map(|entry| Reply {
            meta: entry.meta.clone(),
            body: Body::Bytes(entry.body.clone()),
            cache: Outcome::Hit.as_str(),
            missing: None,
        }))
    }

    /// The feed's parsed service index (fresh per the metadata TTL).
    pub async fn feed_index(
        &self,
        feed: &FeedRef,
    ) -> Result<(Arc<FeedIndex>, Arc<Meta>, &'static str), AppError> {
        let url = self.service_index_url(feed)?;
        let key = CacheKey::service_index(feed);
        let (entry, outcome) = self.metadata.get(&key, &url, &Transform::None).await?;
        let etag = &entry.meta.etag;
        {
            let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((tag, idx)) = feeds.get(feed) {
                if tag == etag {
                    return Ok((idx.clone(), entry.meta.clone(), outcome.as_str()));
                }
            }
        }
        let (f, u, body, signer) = (
            feed.clone(),
            url.clone(),
            entry.body.clone(),
            self.raw_signer.clone(),
        );
        let built =
            crate::offload::cpu_bound(body.len(), move || FeedIndex::build(&f, &u, &body, &signer))
                .await?;
        let idx = Arc::new(built.map_err(AppError::BadUpstream)?);
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(feed.clone(), (etag.clone(), idx.clone()));
        Ok((idx, entry.meta.clone(), outcome.as_str()))
    }

    /// Whether `url` is on one of this node's upstreams (configured, or named
    /// by a service index it has read): all a peer may have it fetch.
    pub(crate) fn knows_origin(&self, url: &Url) -> bool {
        let origin = url.origin();
        let configured = [
            Some(&self.config.nuget.service_index),
            self.config.proget.url.as_ref(),
        ];
        if configured.iter().flatten().any(|u| u.origin() == origin) {
            return true;
        }
        let text = origin.ascii_serialization();
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.values().any(|(_, idx)| idx.origins.contains(&text))
    }

    fn service_index_url(&self, feed: &FeedRef) -> Result<Url, AppError> {
        match feed {
            FeedRef::Default => Ok(self.config.nuget.service_index.clone()),
            FeedRef::ProGet(f) => self.proget_url(&["nuget", f, "v3", "index.json"], None),
            // Made by feedcache itself (`group/`), not fetched.
            FeedRef::Virtual(_) => Err(AppError::NotFound),
        }
    }
}

fn flat_base(idx: &FeedIndex) -> Result<&Url, AppError> {
    idx.flat.as_ref().ok_or(AppError::NotFound)
}

/// Appends a relative path of validated segments to a base ending in `/`.
fn join(base: &Url, rel: &str) -> Result<Url, AppError> {
    base.join(rel)
        .map_err(|e| AppError::BadUpstream(format!("cannot build upstream URL: {e}")))
}

/// A reply feedcache makes itself (health, metrics, admin): never cached.
pub(crate) fn generated(body: Bytes, content_type: &str) -> Reply {
    Reply {
        meta: Arc::new(Meta {
            freshness: crate::cache::Freshness::Metadata,
            content_type: content_type.into(),
            content_encoding: None,
            etag: crate::cache::etag_of(&body),
            upstream_etag: None,
            last_modified: None,
            stored_at: 0,
            templated: false,
        }),
        body: Body::Bytes(body),
        cache: "NONE",
        missing: None,
    }
}

pub(crate) fn found_reply(found: Found) -> Reply {
    match found {
        Found::Memory(m) => Reply {
            meta: m.meta.clone(),
            body: match &m.backing {
                Some(b) => Body::Held {
                    body: m.body.clone(),
                    file: b.file.clone(),
                    offset: b.offset,
                },
                None => Body::Bytes(m.body.clone()),
            },
            cache: "HIT",
            missing: None,
        },
        Found::Disk(d) => Reply {
            meta: d.meta.clone(),
            body: Body::Disk(d),
            cache: "HIT",
            missing: None,
        },
    }
}

async fn fill_reply(mut reader: FillReader, cache: &'static str) -> Result<Reply, AppError> {
    let (meta, len) = reader.head().await?;
    // A small fill is whole in memory before anyone reads it: answered as
    // one block (on HTTP/1 without pingora's header map, `server/raw.rs`).
    let body = match reader.memory_body() {
        Some(b) => Body::Bytes(b),
        None => Body::Fill(reader, len),
    };
    Ok(Reply {
        meta,
        body,
        cache,
        missing: None,
    })
}
