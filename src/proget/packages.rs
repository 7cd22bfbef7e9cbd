//! `/api/packages/{feed}/download|latest|versions`. NuGet packages share the
//! flat container's cache key, so either path fetches a package only once.

use url::form_urlencoded::Serializer;

use crate::app::{App, Reply};
use crate::error::AppError;
use crate::keys::{normalize_id, normalize_version, CacheKey, FeedRef, FlatFile};
use crate::metadata::Transform;
use crate::routes::{semver_of, PackageQuery, PackagesOp, RouteError, UpackId};

fn bad(m: impl ToString) -> AppError {
    RouteError::BadRequest(m.to_string()).into()
}

impl App {
    pub(crate) async fn packages(
        &self,
        feed: &str,
        op: &PackagesOp,
        q: &PackageQuery,
    ) -> Result<Reply, AppError> {
        if *op == PackagesOp::Download {
            return self.packages_download(feed, q).await;
        }
        let (url, key) = self.packages_meta(feed, op, q)?;
        self.meta_reply(&key, &url, &Transform::None).await
    }

    /// Upstream URL and cache key of a `latest` or `versions` call.
    pub(crate) fn packages_meta(
        &self,
        feed: &str,
        op: &PackagesOp,
        q: &PackageQuery,
    ) -> Result<(url::Url, CacheKey), AppError> {
        let name = match op {
            PackagesOp::Latest => "latest",
            PackagesOp::Versions => "versions",
            PackagesOp::Download => "download",
        };
        let query = upstream_query(op, q);
        let url = self.proget_url(&["api", "packages", feed, name], Some(&query))?;
        let feed = FeedRef::ProGet(feed.to_owned());
        let key = CacheKey::hashed(&feed, "api", name, None, &query.to_lowercase());
        Ok((url, key))
    }

    async fn packages_download(&self, feed: &str, q: &PackageQuery) -> Result<Reply, AppError> {
        let version = q.version.as_deref().unwrap_or_default();
        let feed_ref = FeedRef::ProGet(feed.to_owned());
        match q.kind.as_deref() {
            Some("nuget") => {
                let id = normalize_id(&q.name).map_err(bad)?;
                let v = normalize_version(version).map_err(bad)?;
                return self.flat_file(&feed_ref, &id, &v, FlatFile::Nupkg).await;
            }
            Some("upack") => {
                let id = UpackId {
                    group: q.group.clone().unwrap_or_default(),
                    name: q.name.clone(),
                };
                return self
                    .upack_blob(feed, &id, &semver_of(version)?, false)
                    .await;
            }
            _ => {}
        }
        let query = upstream_query(&PackagesOp::Download, q);
        let key = CacheKey::hashed(&feed_ref, "api", "download", None, &query.to_lowercase());
        // `name`/`version` alone do not say what kind of feed this is. When
        // they could be a NuGet package, look in both places before asking the
        // upstream whether the feed is a NuGet feed.
        let plain =
            q.kind.is_none() && q.group.is_none() && q.qualifier.is_none() && q.extra.is_empty();
        if plain {
            if let (Ok(id), Ok(v)) = (normalize_id(&q.name), normalize_version(version)) {
                let flat = CacheKey::flat_file(&feed_ref, &id, &v, FlatFile::Nupkg);
                if let Some(reply) = self.cached_blob(&flat).await? {
                    return Ok(reply);
                }
            }
        }
        if let Some(reply) = self.cached_blob(&key).await? {
            return Ok(reply);
        }
        if plain && self.is_nuget_feed(&feed_ref).await? {
            let id = normalize_id(&q.name).map_err(bad)?;
            let v = normalize_version(version).map_err(bad)?;
            return self.flat_file(&feed_ref, &id, &v, FlatFile::Nupkg).await;
        }
        let url = self.proget_url(&["api", "packages", feed, "download"], Some(&query))?;
        self.fill_reply(&key, url, None).await
    }

    /// Whether the ProGet feed has a NuGet V3 service index.
    async fn is_nuget_feed(&self, feed: &FeedRef) -> Result<bool, AppError> {
        match self.feed_index(feed).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The query sent upstream, rebuilt from the parsed identifiers: credentials
/// and unknown parameters are dropped and every value is encoded one way
/// (`+` as `%2B`), so equal requests share one cache key.
pub fn upstream_query(op: &PackagesOp, q: &PackageQuery) -> String {
    let mut s = Serializer::new(String::new());
    match (&q.kind, op) {
        (Some(kind), PackagesOp::Download) => {
            s.append_pair("purl", &purl_string(kind, q));
        }
        _ => {
            if let Some(g) = &q.group {
                s.append_pair("group", g);
            }
            s.append_pair("name", &q.name);
            match op {
                PackagesOp::Latest => {}
                _ => {
                    if let Some(v) = &q.version {
                        s.append_pair("version", v);
                    }
                }
            }
            if let Some(x) = &q.qualifier {
                s.append_pair("qualifier", x);
            }
            if *op == PackagesOp::Latest && q.stable_only {
                s.append_pair("stableOnly", "true");
            }
        }
    }
    for (name, value) in &q.extra {
        s.append_pair(name, value);
    }
    s.finish()
}

/// Components of a purl are percent-encoded except unreserved characters.
const PURL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

fn purl_string(kind: &str, q: &PackageQuery) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, PURL_COMPONENT).to_string();
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = &q.group {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&enc(seg));
            out.push('/');
        }
    }
    out.push_str(&enc(&q.name));
    if let Some(v) = &q.version {
        out.push('@');
        out.push_str(&enc(v));
    }
    if let Some(x) = &q.qualifier {
        out.push('?');
        out.push_str(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(kind: Option<&str>, group: Option<&str>, name: &str, v: Option<&str>) -> PackageQuery {
        PackageQuery {
            kind: kind.map(Into::into),
            group: group.map(Into::into),
            name: name.into(),
            version: v.map(Into::into),
            qualifier: None,
            stable_only: true,
            extra: Vec::new(),
        }
    }

    #[test]
    fn upstream_queries_are_canonical() {
        use PackagesOp::*;
        let table = [
            (
                Download,
                q(None, None, "Foo", Some("1.0.0+b")),
                "name=Foo&version=1.0.0%2Bb",
            ),
            (
                Download,
                q(Some("npm"), Some("@s"), "x y", Some("1.0")),
                "purl=pkg%3Anpm%2F%2540s%2Fx%2520y%401.0",
            ),
            (
                Latest,
                q(None, Some("g/h"), "Foo", Some("9")),
                "group=g%2Fh&name=Foo&stableOnly=true",
            ),
            (
                Versions,
                q(None, None, "Foo", Some("1.0")),
                "name=Foo&version=1.0",
            ),
            (
                Download,
                PackageQuery {
                    extra: vec![("filename".into(), "Foo-1.0.tar.gz".into())],
                    ..q(None, None, "Foo", Some("1.0"))
                },
                "name=Foo&version=1.0&filename=Foo-1.0.tar.gz",
            ),
            (
                Download,
                PackageQuery {
                    extra: vec![
                        ("arch".into(), "amd64".into()),
                        ("distro".into(), "stable".into()),
                    ],
                    ..q(Some("deb"), None, "x", Some("2"))
                },
                "purl=pkg%3Adeb%2Fx%402&arch=amd64&distro=stable",
            ),
        ];
        for (op, pq, want) in table {
            assert_eq!(upstream_query(&op, &pq), want);
        }
    }
}
