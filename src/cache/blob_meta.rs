//! The entry meta of package content (packages, READMEs, icons) built from
//! the upstream's response headers: a content type safe to serve from our
//! origin, and the upstream's validator, kept weak where it was weak.

use url::Url;

use super::entry::{now_secs, Freshness, Meta};

/// Types a package, manifest, README or icon may be served as; anything
/// else (an upstream's `text/html` error page, SVG with script in it) is
/// served as `application/octet-stream`, so nothing from an upstream runs
/// as a page of feedcache's origin.
const SAFE_TYPES: [&str; 12] = [
    "application/octet-stream",
    "application/zip",
    "application/xml",
    "text/xml",
    "text/plain",
    "text/markdown",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/x-icon",
    "image/vnd.microsoft.icon",
];

fn safe_content_type(upstream: Option<String>) -> String {
    let safe = upstream.filter(|t| {
        let essence = t.split(';').next().unwrap_or("").trim();
        SAFE_TYPES.iter().any(|s| essence.eq_ignore_ascii_case(s))
    });
    safe.unwrap_or_else(|| "application/octet-stream".into())
}

/// Meta for package content from the upstream's response headers.
pub(super) fn blob_meta(h: &http::HeaderMap, url: &Url, len: Option<u64>) -> Meta {
    let get = |name: http::header::HeaderName| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let upstream_etag = get(http::header::ETAG);
    let last_modified = get(http::header::LAST_MODIFIED);
    // The upstream's validator when it has one, so clients see the same ETag
    // as from the origin; otherwise one derived from what identifies the body.
    let etag = match &upstream_etag {
        Some(t) => quoted_etag(t),
        None => super::etag_of(
            format!("{url}|{len:?}|{}", last_modified.as_deref().unwrap_or("")).as_bytes(),
        ),
    };
    Meta {
        freshness: Freshness::Immutable,
        content_type: safe_content_type(get(http::header::CONTENT_TYPE)),
        content_encoding: get(http::header::CONTENT_ENCODING).filter(|e| e != "identity"),
        etag,
        upstream_etag,
        last_modified,
        stored_at: now_secs(),
        templated: false,
    }
}

/// The upstream's entity tag, quoted where it was not. A weak one stays
/// weak: the upstream promises no byte-for-byte sameness for it, so
/// `If-Range` must never match it (`server/range.rs`).
fn quoted_etag(t: &str) -> String {
    match t.strip_prefix("W/") {
        Some(w) => format!("W/\"{}\"", w.trim_matches('"')),
        None => format!("\"{}\"", t.trim_matches('"')),
    }
}

#[cfg(test)]
mod tests {
    use super::{quoted_etag, safe_content_type};

    #[test]
    fn upstream_etags_are_quoted_and_stay_weak_or_strong() {
        for (upstream, want) in [
            ("\"abc\"", "\"abc\""),
            ("abc", "\"abc\""),
            ("W/\"abc\"", "W/\"abc\""),
            ("W/abc", "W/\"abc\""),
        ] {
            assert_eq!(quoted_etag(upstream), want, "{upstream}");
        }
    }

    #[test]
    fn only_safe_types_pass() {
        let table = [
            (None, "application/octet-stream"),
            (Some("text/html"), "application/octet-stream"),
            (Some("text/html; charset=utf-8"), "application/octet-stream"),
            (Some("image/svg+xml"), "application/octet-stream"),
            (Some("application/javascript"), "application/octet-stream"),
            (Some("image/png"), "image/png"),
            (Some("Application/Octet-Stream"), "Application/Octet-Stream"),
            (
                Some("text/plain; charset=utf-8"),
                "text/plain; charset=utf-8",
            ),
        ];
        for (upstream, want) in table {
            assert_eq!(
                safe_content_type(upstream.map(String::from)),
                want,
                "{upstream:?}"
            );
        }
    }
}
