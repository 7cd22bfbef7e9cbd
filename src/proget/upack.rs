//! `/upack/{feed}/download|download-file|download-vpack`: universal packages
//! cached whole (checked to be readable zips within the entry limit before
//! they are kept), with single files served out of the cached copy through
//! its kept central directory.

use std::io::Cursor;
use std::sync::Arc;

use crate::app::{App, Body, Reply};
use crate::cache::{etag_of, now_secs, Found, Freshness, Meta};
use crate::error::AppError;
use crate::extract::{
    content_archive, extract, ContentFormat, DirKey, ExtractError, Limits, Package, MAX_IN_MEMORY,
};
use crate::keys::CacheKey;
use crate::metadata::Transform;
use crate::routes::{semver_of, PackageQuery, PackagesOp, UpackId, UpackOp, UpackVersion};

impl App {
    pub(crate) async fn upack(
        &self,
        feed: &str,
        op: &UpackOp,
        id: &UpackId,
        version: &UpackVersion,
    ) -> Result<Reply, AppError> {
        let version = match version {
            UpackVersion::Exact(v) => v.clone(),
            UpackVersion::Latest => self.upack_latest(feed, id).await?,
        };
        match op {
            UpackOp::Download => self.upack_blob(feed, id, &version, false).await,
            UpackOp::Vpack => self.upack_blob(feed, id, &version, true).await,
            UpackOp::File(path) => self.upack_file(feed, id, &version, path).await,
            UpackOp::Content(f) => self.upack_content(feed, id, &version, *f).await,
        }
    }

    /// The newest version, from the packages API's `latest` (metadata: cached
    /// with the TTL and revalidated), so `?latest` shares the versioned entry.
    async fn upack_latest(&self, feed: &str, id: &UpackId) -> Result<String, AppError> {
        let q = PackageQuery {
            kind: None,
            group: (!id.group.is_empty()).then(|| id.group.to_ascii_lowercase()),
            name: id.name.to_ascii_lowercase(),
            version: None,
            qualifier: None,
            stable_only: false,
            extra: Vec::new(),
        };
        let (url, key) = self.packages_meta(feed, &PackagesOp::Latest, &q)?;
        let (entry, _) = self.metadata.get(&key, &url, &Transform::None).await?;
        let doc: serde_json::Value = serde_json::from_slice(&entry.body)
            .map_err(|e| AppError::BadUpstream(format!("latest: {e}")))?;
        let first = match &doc {
            serde_json::Value::Array(items) => items.first(),
            obj @ serde_json::Value::Object(_) => Some(obj),
            _ => None,
        };
        let version = first
            .and_then(|o| o.get("version"))
            .and_then(|v| v.as_str())
            .ok_or(AppError::NotFound)?;
        semver_of(version)
            .map_err(|_| AppError::BadUpstream(format!("latest: bad version {version}")))
    }

    fn upack_key_url(
        &self,
        feed: &str,
        id: &UpackId,
        version: &str,
        vpack: bool,
    ) -> Result<(CacheKey, url::Url), AppError> {
        let key = CacheKey::upack(feed, &id.group, &id.name, version, vpack);
        let op = if vpack { "download-vpack" } else { "download" };
        // Lowercased like the key (ProGet matches case-insensitively), so the
        // upstream URL does not depend on which client came first.
        let (group, name) = (id.group.to_ascii_lowercase(), id.name.to_ascii_lowercase());
        let mut segs = vec!["upack", feed, op];
        segs.extend(group.split('/').filter(|s| !s.is_empty()));
        segs.push(&name);
        segs.push(version);
        Ok((key, self.proget_url(&segs, None)?))
    }

    /// A whole package (or vpack manifest), cached as immutable content.
    pub(crate) async fn upack_blob(
        &self,
        feed: &str,
        id: &UpackId,
        version: &str,
        vpack: bool,
    ) -> Result<Reply, AppError> {
        let (key, url) = self.upack_key_url(feed, id, version, vpack)?;
        if let Some(reply) = self.cached_blob(&key).await? {
            return Ok(reply);
        }
        let check = (!vpack).then_some(self.cache.package_check);
        self.fill_reply(&key, url, check).await
    }

    /// One file out of the cached package; the upstream is asked only when
    /// the package itself is not cached yet.
    async fn upack_file(
        &self,
        feed: &str,
        id: &UpackId,
        version: &str,
        path: &str,
    ) -> Result<Reply, AppError> {
        let (key, url) = self.upack_key_url(feed, id, version, false)?;
        let (pkg, meta, cache) = self.upack_package(&key, url).await?;
        let limits = Limits::from(&self.config.extract);
        let dir = DirKey::new(key.clone(), meta.etag.clone(), pkg.len());
        let dirs = self.directories.clone();
        let extracted = match extract(pkg, path.to_owned(), limits, dirs, dir.clone()).await {
            Ok(e) => e,
            Err(e) => return Err(self.package_failed(&key, &dir, e).await),
        };
        let meta = derived(&meta, content_type(path), path);
        Ok(Reply {
            meta: Arc::new(meta),
            body: Body::Extract(extracted),
            cache,
            missing: None,
        })
    }

    /// The whole package for local work on it (one file, a content archive):
    /// cached, else fetched once into the cache (or into memory while the
    /// disk takes no writes).
    async fn upack_package(
        &self,
        key: &CacheKey,
        url: url::Url,
    ) -> Result<(Package, Arc<Meta>, &'static str), AppError> {
        let found = match self.cache.get(key).await? {
            Some(Found::Memory(m)) => (Package::Bytes(m.body.clone()), m.meta.clone(), "HIT"),
            Some(Found::Disk(d)) => {
                let pkg = match &d.map {
                    Some(m) => Package::Bytes(m.clone()),
                    None => Package::File {
                        file: d.file.clone(),
                        offset: d.offset,
                        len: d.len,
                    },
                };
                (pkg, d.meta.clone(), "HIT")
            }
            None => {
                let check = Some(self.cache.package_check);
                let (fill, _) =
                    self.cache
                        .fill_blob(key, url.clone(), self.upstream.clone(), check, true);
                let (pkg, meta) = match fill.reader().complete().await {
                    // No disk to hold it: the package is read into memory
                    // for this request only (bounded), then dropped.
                    Err(AppError::Cache(_)) if !self.cache.disk.writable.ok() => {
                        self.package_in_memory(&url).await?
                    }
                    other => other?,
                };
                (pkg, meta, "MISS")
            }
        };
        Ok(found)
    }

    /// The error for a failed read of a cached package. One that no longer
    /// reads as a zip (damaged on disk) is dropped, with the directory kept
    /// for it, so the next request fetches it again.
    async fn package_failed(&self, key: &CacheKey, dir: &DirKey, e: ExtractError) -> AppError {
        if matches!(e, ExtractError::Corrupt(_)) {
            tracing::warn!(key = %key, error = %e, "dropping unreadable package");
            self.directories.remove(dir);
            if let Err(r) = self.cache.remove(key).await {
                return r.into();
            }
        }
        e.into()
    }

    /// `download?contentOnly=zip|tgz`: made from the package once, then kept
    /// as an immutable entry derived from it.
    async fn upack_content(
        &self,
        feed: &str,
        id: &UpackId,
        version: &str,
        format: ContentFormat,
    ) -> Result<Reply, AppError> {
        let (key, url) = self.upack_key_url(feed, id, version, false)?;
        let content_key = CacheKey::from(format!("{}-content.{}", key.as_str(), format.ext()));
        if let Some(found) = self.cache.get(&content_key).await? {
            return Ok(crate::app::found_reply(found));
        }
        let (pkg, meta, _) = self.upack_package(&key, url).await?;
        let limits = Limits::from(&self.config.extract);
        let dir = DirKey::new(key.clone(), meta.etag.clone(), pkg.len());
        let dirs = (self.directories.clone(), dir.clone());
        let tag = format!("content.{}", format.ext());
        let meta = derived(&meta, format.content_type(), &tag);
        // Written straight into the cache file, bounded like a package;
        // in memory only while the disk takes no writes.
        let Some(out) = self.cache.entry_writer(&content_key, &meta)? else {
            let made = content_archive(
                pkg,
                format,
                limits,
                MAX_IN_MEMORY,
                dirs,
                Cursor::new(Vec::new()),
            );
            let body = match made.await {
                Ok(c) => bytes::Bytes::from(c.into_inner()),
                Err(e) => return Err(self.package_failed(&key, &dir, e).await),
            };
            let m = self.cache.put(&content_key, meta, body).await?;
            return Ok(Reply {
                meta: m.meta.clone(),
                body: Body::Bytes(m.body.clone()),
                cache: "MISS",
                missing: None,
            });
        };
        let failure = out.failure();
        let cap = self.cache.max_body;
        let out = match content_archive(pkg, format, limits, cap, dirs, out).await {
            Ok(out) => out,
            Err(_) if failure.get().is_some() => {
                let msg = failure.get().map(String::as_str).unwrap_or_default();
                return Err(self.cache.write_failed(msg).into());
            }
            Err(e) => return Err(self.package_failed(&key, &dir, e).await),
        };
        let found = self.cache.put_written(&content_key, out).await?;
        let mut reply = found
            .map(crate::app::found_reply)
            .ok_or_else(|| AppError::Internal("a content archive vanished once written".into()))?;
        reply.cache = "MISS";
        Ok(reply)
    }

    /// A whole package fetched into memory, uncached and checked like a
    /// fill: what `download-file` uses while the cache disk takes no writes.
    async fn package_in_memory(&self, url: &url::Url) -> Result<(Package, Arc<Meta>), AppError> {
        let mut p = self.cache.pass_through(url, &self.upstream).await?;
        let too_big = || AppError::Cache(crate::cache::CacheError::NotWritable);
        if p.len.is_some_and(|n| n > IN_MEMORY_MAX) {
            return Err(too_big());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut p.body).await {
            body.extend_from_slice(&chunk?);
            if body.len() as u64 > IN_MEMORY_MAX {
                return Err(too_big());
            }
        }
        let pkg = Package::Bytes(body.freeze());
        let check = self.cache.package_check;
        let checked = pkg.clone();
        tokio::task::spawn_blocking(move || check.run(checked))
            .await
            .map_err(|e| AppError::Internal(format!("package check: {e}")))??;
        Ok((pkg, p.meta))
    }
}

/// Largest package read into memory for `download-file` while the cache
/// disk takes no writes; larger ones fail until the disk is back.
const IN_MEMORY_MAX: u64 = 256 * 1024 * 1024;

/// The meta of something made from a package (one file, a content
/// archive): immutable, with its own type and an ETag derived from the
/// package's and `what`.
fn derived(pkg: &Meta, content_type: &str, what: &str) -> Meta {
    Meta {
        freshness: Freshness::Immutable,
        content_type: content_type.into(),
        content_encoding: None,
        etag: etag_of(format!("{}|{what}", pkg.etag).as_bytes()),
        upstream_etag: None,
        last_modified: pkg.last_modified.clone(),
        stored_at: now_secs(),
        templated: false,
    }
}

/// A media type from the file extension; unknown types are plain bytes.
/// Files out of an upstream's package must never run as pages of
/// feedcache's origin (they could read its other responses), so HTML is
/// served as plain text and SVG, which can carry script, as bytes.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("txt" | "md" | "log" | "csv" | "html" | "htm") => "text/plain; charset=utf-8",
        Some("xml" | "nuspec" | "config") => "application/xml",
        Some("zip" | "upack" | "nupkg") => "application/zip",
        Some("gz" | "tgz") => "application/gzip",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn content_types() {
        let table = [
            ("upack.json", "application/json"),
            ("package/README.md", "text/plain; charset=utf-8"),
            ("package/index.html", "text/plain; charset=utf-8"),
            ("package/Page.HTM", "text/plain; charset=utf-8"),
            ("package/logo.svg", "application/octet-stream"),
            ("package/logo.SVG", "application/octet-stream"),
            ("package/icon.png", "image/png"),
            ("package/app.nuspec", "application/xml"),
            ("package/tool.exe", "application/octet-stream"),
            ("package/no-extension", "application/octet-stream"),
        ];
        for (path, want) in table {
            assert_eq!(content_type(path), want, "{path}");
        }
    }
}
