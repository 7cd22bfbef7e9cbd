//! Request routing: method and path to a typed route, with every ID and version
//! normalized on the way in. Pure; the table-driven tests below pin the URL layout.

mod proget;
pub mod query;

pub use query::Query;
pub mod transparent;

pub use proget::{semver_of, PackageQuery, PackagesOp, UpackId, UpackOp, UpackVersion};

use crate::keys::{normalize_feed_name, normalize_id, normalize_version, FeedRef, FlatFile};
use percent_encoding::percent_decode_str;

/// Longest request path plus query accepted; longer gets 414.
pub const MAX_URL_LEN: usize = 4096;

/// A request feedcache knows how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Liveness; never touches an upstream.
    Health,
    /// Prometheus metrics.
    Metrics,
    /// `/admin/stats`.
    AdminStats,
    /// `/admin/purge?feed=&id=&version=` (POST or DELETE).
    AdminPurge(crate::keys::PurgeSpec),
    /// `/admin/offline`: GET reports offline mode; POST `?on=true|false` sets it.
    AdminOffline(Option<bool>),
    /// `/_cluster/fill?entry=&url=`: another node asks this one, the key's
    /// owner, for immutable content (filled here once, streamed).
    ClusterFill { key: String, url: url::Url },
    /// A NuGet V3 resource of one feed.
    V3 { feed: FeedRef, res: V3Route },
    /// ProGet's packages API: `/api/packages/{feed}/{op}?...`.
    Packages {
        feed: String,
        op: PackagesOp,
        q: PackageQuery,
    },
    /// ProGet universal packages: `/upack/{feed}/{op}/...`.
    Upack {
        feed: String,
        op: UpackOp,
        id: UpackId,
        version: UpackVersion,
    },
}

/// How a route answers a client without a valid key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClass {
    /// Always open.
    Public,
    /// NuGet clients send stored credentials only after a 401 challenge.
    Challenge,
    /// ProGet's APIs answer 403.
    Forbidden,
    /// Needs the admin key (403), and does not exist without one (404).
    Admin,
    /// Needs the cluster secret (403), and does not exist without one (404).
    Cluster,
}

impl Route {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::AdminStats => "admin_stats",
            Route::AdminPurge(_) => "admin_purge",
            Route::AdminOffline(_) => "admin_offline",
            Route::ClusterFill { .. } => "cluster_fill",
            Route::V3 { res, .. } => match res {
                V3Route::ServiceIndex => "service_index",
                V3Route::FlatIndex { .. } => "flat_index",
                V3Route::FlatFile { .. } => "flat_file",
                V3Route::Registration { .. } => "registration",
                V3Route::Search { .. } => "search",
                V3Route::Autocomplete { .. } => "autocomplete",
                V3Route::Raw { .. } => "raw",
            },
            Route::Packages { op, .. } => match op {
                PackagesOp::Download => "packages_download",
                PackagesOp::Latest => "packages_latest",
                PackagesOp::Versions => "packages_versions",
            },
            Route::Upack { op, .. } => match op {
                UpackOp::Download => "upack_download",
                UpackOp::File(_) => "upack_file",
                UpackOp::Vpack => "upack_vpack",
                UpackOp::Content(_) => "upack_content",
            },
        }
    }

    /// What a missing or wrong client key gets on this route.
    pub fn auth_class(&self) -> AuthClass {
        match self {
            Route::Health => AuthClass::Public,
            Route::V3 { .. } => AuthClass::Challenge,
            Route::Packages { .. } | Route::Upack { .. } | Route::Metrics => AuthClass::Forbidden,
            Route::AdminStats | Route::AdminPurge(_) | Route::AdminOffline(_) => AuthClass::Admin,
            Route::ClusterFill { .. } => AuthClass::Cluster,
        }
    }
}

/// NuGet V3 resources, as laid out under a feed's `/v3/` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V3Route {
    /// `index.json`
    ServiceIndex,
    /// `flatcontainer/{id}/index.json`
    FlatIndex { id: String },
    /// `flatcontainer/{id}/{version}/{file}`
    FlatFile {
        id: String,
        version: String,
        file: FlatFile,
    },
    /// `registration/{tag}/{id}/{rest}`: `rest` is lowercased and safe to append.
    Registration {
        tag: String,
        id: String,
        rest: String,
    },
    /// `search/{tag}` (query string passed through)
    Search { tag: String },
    /// `autocomplete/{tag}`
    Autocomplete { tag: String },
    /// `raw/{origin}/{tag}/{path}`: another document on one of the upstream's
    /// own hosts, that a rewritten document linked to (`tag` proves it).
    Raw {
        origin: usize,
        tag: String,
        path: String,
    },
}

/// Why a request has no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("not found")]
    NotFound,
    /// With the methods the resource takes, for the `Allow` field.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("URL too long")]
    TooLong,
    #[error("{0}")]
    BadRequest(String),
}

fn bad(msg: impl Into<String>) -> RouteError {
    RouteError::BadRequest(msg.into())
}

/// Routes a request. `path` is the raw (still percent-encoded) path; the
/// query is decoded here, once, and returned for the rest of the request.
pub fn route(
    method: &http::Method,
    path: &str,
    raw_query: Option<&str>,
) -> Result<(Route, Query), RouteError> {
    if path.len() + raw_query.map_or(0, str::len) > MAX_URL_LEN {
        return Err(RouteError::TooLong);
    }
    let query = Query::parse(raw_query)?;
    let r = route_path(method, path, &query)?;
    Ok((r, query))
}

fn route_path(method: &http::Method, path: &str, query: &Query) -> Result<Route, RouteError> {
    let segs = decode_segments(path)?;
    let segs: Vec<&str> = segs.iter().map(|s| s.as_ref()).collect();
    let r = match segs.as_slice() {
        ["health"] => Route::Health,
        ["metrics"] => Route::Metrics,
        ["admin", "stats"] => Route::AdminStats,
        ["admin", "purge"] => {
            if method != http::Method::POST && method != http::Method::DELETE {
                return Err(RouteError::MethodNotAllowed("POST, DELETE"));
            }
            return purge_spec(query).map(Route::AdminPurge);
        }
        ["admin", "offline"] => {
            if method == http::Method::POST {
                let on = match query.get("on") {
                    Some("true" | "1") => true,
                    Some("false" | "0") => false,
                    _ => return Err(bad("on=true or on=false is required")),
                };
                return Ok(Route::AdminOffline(Some(on)));
            }
            Route::AdminOffline(None)
        }
        ["_cluster", "fill"] => cluster_fill(query)?,
        ["v3", rest @ ..] => Route::V3 {
            feed: FeedRef::Default,
            res: v3(rest)?,
        },
        ["nuget", feed, "v3", rest @ ..] => {
            let feed = normalize_feed_name(feed).ok_or_else(|| bad("invalid feed name"))?;
            Route::V3 {
                feed: FeedRef::ProGet(feed),
                res: v3(rest)?,
            }
        }
        ["feeds", feed, "v3", rest @ ..] => {
            let feed = normalize_feed_name(feed).ok_or_else(|| bad("invalid feed name"))?;
            Route::V3 {
                feed: FeedRef::Virtual(feed),
                res: v3(rest)?,
            }
        }
        ["api", "packages", feed, op] => {
            let (feed, op, q) = proget::packages(feed, op, query)?;
            Route::Packages { feed, op, q }
        }
        ["upack", feed, op, rest @ ..] => {
            let (feed, op, id, version) = proget::upack(feed, op, rest, query)?;
            Route::Upack {
                feed,
                op,
                id,
                version,
            }
        }
        _ => return Err(RouteError::NotFound),
    };
    if method != http::Method::GET && method != http::Method::HEAD {
        let allow = match r {
            Route::AdminOffline(_) => "GET, HEAD, POST",
            _ => "GET, HEAD",
        };
        return Err(RouteError::MethodNotAllowed(allow));
    }
    Ok(r)
}

/// A peer's fill request: the cache key and the upstream URL to fill it from.
fn cluster_fill(q: &Query) -> Result<Route, RouteError> {
    let key = q.get("entry").unwrap_or_default();
    let ok = !key.is_empty() && key.len() <= 1024 && !key.chars().any(char::is_control);
    if !ok {
        return Err(bad("entry required"));
    }
    let url = q
        .get("url")
        .and_then(|u| url::Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| bad("an http(s) url is required"))?;
    Ok(Route::ClusterFill {
        key: key.to_owned(),
        url,
    })
}

/// `feed`, `id`, `version` of a purge, normalized; at least one is required.
fn purge_spec(q: &Query) -> Result<crate::keys::PurgeSpec, RouteError> {
    let get = |n: &str| q.get(n).filter(|v| !v.is_empty());
    let feed = match get("feed") {
        None => None,
        Some(f) if f.eq_ignore_ascii_case("default") => Some("default".to_string()),
        Some(f) => Some(normalize_feed_name(f).ok_or_else(|| bad("invalid feed name"))?),
    };
    let id = get("id").map(id_of).transpose()?;
    let version = get("version")
        .map(|v| normalize_version(v).map_err(|e| bad(e.to_string())))
        .transpose()?;
    if version.is_some() && id.is_none() {
        return Err(bad("version needs id"));
    }
    if feed.is_none() && id.is_none() {
        return Err(bad("give feed, id, or id and version"));
    }
    Ok(crate::keys::PurgeSpec { feed, id, version })
}

fn v3(segs: &[&str]) -> Result<V3Route, RouteError> {
    Ok(match segs {
        ["index.json"] => V3Route::ServiceIndex,
        ["flatcontainer", id, "index.json"] => V3Route::FlatIndex { id: id_of(id)? },
        ["flatcontainer", id, version, file] => flat_file(id, version, file)?,
        ["registration", tag, id, rest @ ..] if !rest.is_empty() => V3Route::Registration {
            tag: tag_of(tag)?,
            id: id_of(id)?,
            rest: safe_rest(rest)?.to_ascii_lowercase(),
        },
        ["search", tag] => V3Route::Search { tag: tag_of(tag)? },
        ["autocomplete", tag] => V3Route::Autocomplete { tag: tag_of(tag)? },
        ["raw", origin, tag, rest @ ..] if !rest.is_empty() => V3Route::Raw {
            origin: origin.parse().map_err(|_| RouteError::NotFound)?,
            tag: tag_of(tag)?,
            path: safe_rest(rest)?,
        },
        _ => return Err(RouteError::NotFound),
    })
}

fn flat_file(id: &str, spelled: &str, file: &str) -> Result<V3Route, RouteError> {
    let id = id_of(id)?;
    let version = normalize_version(spelled).map_err(|e| bad(e.to_string()))?;
    let lower = file.to_ascii_lowercase();
    let file = if let Some(stem) = lower.strip_suffix(".nupkg") {
        // `{id}.{version}.nupkg`, where the version may be spelled differently
        // from the directory (`1.0` vs `1.0.0`) but must mean the same version.
        let named = stem
            .strip_prefix(id.as_str())
            .and_then(|s| s.strip_prefix('.'))
            .ok_or(RouteError::NotFound)?;
        // Spelled as in the directory (case aside), it means the same
        // version without parsing it again: what clients send.
        if !named.eq_ignore_ascii_case(spelled)
            && normalize_version(named).ok().as_deref() != Some(version.as_str())
        {
            return Err(RouteError::NotFound);
        }
        FlatFile::Nupkg
    } else if lower.strip_suffix(".nuspec") == Some(id.as_str()) {
        FlatFile::Nuspec
    } else if lower == "icon" {
        FlatFile::Icon
    } else if lower == "readme" {
        FlatFile::Readme
    } else {
        return Err(RouteError::NotFound);
    };
    Ok(V3Route::FlatFile { id, version, file })
}

fn id_of(s: &str) -> Result<String, RouteError> {
    normalize_id(s).map_err(|e| bad(e.to_string()))
}

/// Resource tags are the names feedcache gave resources in the service index.
fn tag_of(s: &str) -> Result<String, RouteError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(RouteError::NotFound)
    }
}

/// Joins path segments after checking each is a plain name: no dot-only
/// segments, only characters that need no escaping in an upstream URL.
fn safe_rest(segs: &[&str]) -> Result<String, RouteError> {
    for s in segs {
        let ok = !s.is_empty()
            && *s != "."
            && *s != ".."
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+' | b'~')
            });
        if !ok {
            return Err(bad("invalid path segment"));
        }
    }
    Ok(segs.join("/"))
}

/// Splits `/a/b%2Ec/` into decoded segments; an empty final segment (trailing
/// slash) is dropped. Segments that decode to invalid UTF-8, or that contain
/// separators or control characters once decoded, are rejected.
fn decode_segments(path: &str) -> Result<Vec<std::borrow::Cow<'_, str>>, RouteError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("path must start with /"))?;
    // Segments without escapes are borrowed: the common request allocates
    // nothing here.
    let mut out = Vec::with_capacity(8);
    let mut parts = rest.split('/').peekable();
    while let Some(raw) = parts.next() {
        if raw.is_empty() {
            if parts.peek().is_none() {
                break;
            }
            return Err(RouteError::NotFound);
        }
        // Nearly every segment is plain ASCII with nothing to decode: one
        // pass over its bytes says so, and it is taken as it is.
        if raw
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'%' && b != b'\\')
        {
            out.push(std::borrow::Cow::Borrowed(raw));
            continue;
        }
        let s = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| bad("path is not valid UTF-8"))?;
        if s.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
            return Err(bad("invalid path segment"));
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
