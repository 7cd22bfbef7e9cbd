//! Rewriting upstream URLs in JSON documents to feedcache URLs.
//!
//! Documents are stored with a placeholder origin (`MARKER`) in place of
//! feedcache's own address, because that address depends on each request
//! (Host, X-Forwarded-*); `render` puts the real one in when serving.
//! `stream.rs` rewrites whole documents without building them in memory.

mod rendered;
mod stream;

pub use rendered::rendered;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use memchr::memmem;
use serde_json::Value;

use crate::rawlink::RawSigner;

/// Stands for feedcache's public base URL in stored documents. `.invalid` is
/// reserved (RFC 2606), so no real upstream URL can start with it.
pub const MARKER: &str = "https://feedcache.invalid";

/// Maps upstream URL prefixes to feedcache paths (which start with `MARKER`).
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// (upstream prefix, replacement, raw origin number), longest prefix first.
    rules: Vec<(String, String, Option<usize>)>,
    /// Rule numbers by the origin (`scheme://host[:port]`) their prefix
    /// starts with: a string is compared with its own origin's rules only,
    /// so the work per string does not grow with the number of rules.
    by_origin: HashMap<String, Vec<usize>>,
    /// Signs `raw/` links, with the feed they belong to.
    raw: Option<(Arc<RawSigner>, String)>,
}

/// The `scheme://authority` an http(s) URL string starts with.
fn origin_part(s: &str) -> Option<&str> {
    let rest_at = if s.starts_with("https://") {
        8
    } else if s.starts_with("http://") {
        7
    } else {
        return None;
    };
    let end = s[rest_at..]
        .find(['/', '?', '#'])
        .map_or(s.len(), |i| rest_at + i);
    Some(&s[..end])
}

impl Rewriter {
    /// Builds a rewriter; rules may come in any order.
    pub fn new(rules: Vec<(String, String)>) -> Self {
        let mut rw = Rewriter {
            rules: rules.into_iter().map(|(f, t)| (f, t, None)).collect(),
            ..Rewriter::default()
        };
        rw.index();
        rw
    }

    /// Orders the rules longest first and files them under their origins.
    fn index(&mut self) {
        self.rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        self.by_origin.clear();
        for (i, (from, ..)) in self.rules.iter().enumerate() {
            if let Some(o) = origin_part(from) {
                self.by_origin.entry(o.to_owned()).or_default().push(i);
            }
        }
    }

    /// Adds catch-all rules for the upstream's hosts: `(origin/, replacement
    /// ending in raw/{n}/, n)`. Each link they make carries a tag from
    /// `signer` for `feed`, and `raw/` serves nothing else.
    pub fn with_raw(
        mut self,
        signer: Arc<RawSigner>,
        feed: String,
        raw: Vec<(String, String, usize)>,
    ) -> Self {
        self.rules
            .extend(raw.into_iter().map(|(f, t, n)| (f, t, Some(n))));
        self.index();
        self.raw = Some((signer, feed));
        self
    }

    /// The rewritten URL when `s` starts with a known upstream prefix.
    pub fn map(&self, s: &str) -> Option<String> {
        let candidates = self.by_origin.get(origin_part(s)?)?;
        let (to, rest, origin) = candidates.iter().find_map(|&i| {
            let (from, to, origin) = self.rules.get(i)?;
            s.strip_prefix(from.as_str()).map(|rest| (to, rest, origin))
        })?;
        let Some(origin) = origin else {
            return Some(format!("{to}{rest}"));
        };
        let (signer, feed) = self.raw.as_ref()?;
        let target = rest.split_once('#').map_or(rest, |(t, _)| t);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let tag = signer.sign(feed, *origin, path, query);
        Some(format!("{to}{tag}/{rest}"))
    }

    /// Rewrites every string value (not keys) of a JSON document in place.
    pub fn rewrite_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(new) = self.map(s) {
                    *s = new;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.rewrite_value(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.rewrite_value(i)),
            _ => {}
        }
    }

    /// Rewrites a JSON body in one pass, without building it in memory
    /// (`stream.rs`); fails on invalid JSON, nesting deeper than 128 levels
    /// or more than `MAX_NODES` values.
    pub fn rewrite_json(&self, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
        stream::rewrite(self, body)
    }
}

/// Replaces every `MARKER` in a stored document with the public base URL
/// (scheme, host and any path prefix, without trailing slash).
pub fn render(template: &Bytes, public_base: &str) -> Bytes {
    let finder = memmem::Finder::new(MARKER.as_bytes());
    let mut hits = finder.find_iter(template).peekable();
    if hits.peek().is_none() {
        return template.clone();
    }
    let mut out = Vec::with_capacity(template.len() + 256);
    let mut last = 0;
    for at in hits {
        out.extend_from_slice(&template[last..at]);
        out.extend_from_slice(public_base.as_bytes());
        last = at + MARKER.len();
    }
    out.extend_from_slice(&template[last..]);
    Bytes::from(out)
}

/// The public base URL for a request: the configured one, else
/// `X-Forwarded-Proto`/`X-Forwarded-Host` or `Host`, else the listen address.
/// Header values are accepted only when they look like a scheme or a host, so
/// a hostile header cannot inject text into served JSON.
pub fn public_base(
    configured: Option<&str>,
    forwarded_proto: Option<&str>,
    forwarded_host: Option<&str>,
    host: Option<&str>,
    fallback_host: &str,
    tls: bool,
) -> String {
    if let Some(c) = configured {
        return c.trim_end_matches('/').to_owned();
    }
    let scheme = match first_value(forwarded_proto) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ if tls => "https",
        _ => "http",
    };
    let host = [first_value(forwarded_host), host]
        .into_iter()
        .flatten()
        .find(|h| valid_host(h))
        .unwrap_or(fallback_host);
    format!("{scheme}://{host}")
}

/// The first of a comma-separated list (proxies append to X-Forwarded-*).
fn first_value(v: Option<&str>) -> Option<&str> {
    v.and_then(|s| s.split(',').next()).map(str::trim)
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Arc<RawSigner> {
        Arc::new(RawSigner::with_key(&[1; 32]).unwrap())
    }

    fn rw() -> Rewriter {
        Rewriter::new(vec![
            (
                "https://up.example/flat/".into(),
                format!("{MARKER}/v3/flatcontainer/"),
            ),
            (
                "https://up.example/reg/".into(),
                format!("{MARKER}/v3/registration/reg/"),
            ),
        ])
        .with_raw(
            signer(),
            "nuget".into(),
            vec![(
                "https://up.example/".into(),
                format!("{MARKER}/v3/raw/0/"),
                0,
            )],
        )
    }

    #[test]
    fn longest_prefix_wins() {
        let table = [
            (
                "https://up.example/flat/a/1.0.0/a.1.0.0.nupkg",
                Some("/v3/flatcontainer/a/1.0.0/a.1.0.0.nupkg"),
            ),
            (
                "https://up.example/reg/a/index.json",
                Some("/v3/registration/reg/a/index.json"),
            ),
            ("https://elsewhere.example/flat/", None),
            ("see https://up.example/flat/", None),
        ];
        for (input, want) in table {
            let want = want.map(|w| format!("{MARKER}{w}"));
            assert_eq!(rw().map(input), want, "{input}");
        }
    }

    #[test]
    fn raw_links_carry_a_tag_for_path_and_query() {
        let s = signer();
        let table = [
            (
                "https://up.example/catalog/x.json",
                "catalog/x.json",
                None,
                "",
            ),
            ("https://up.example/a/b?x=1&y=2", "a/b", Some("x=1&y=2"), ""),
            ("https://up.example/a#frag", "a", None, "#frag"),
        ];
        for (input, path, query, frag) in table {
            let tag = s.sign("nuget", 0, path, query);
            let q = query.map(|q| format!("?{q}")).unwrap_or_default();
            let want = format!("{MARKER}/v3/raw/0/{tag}/{path}{q}{frag}");
            assert_eq!(rw().map(input), Some(want), "{input}");
        }
    }

    #[test]
    fn rewrites_nested_values_not_keys() {
        let doc = br#"{"https://up.example/k":["https://up.example/flat/x",{"@id":"https://up.example/reg/x/index.json","n":1}]}"#;
        let out = String::from_utf8(rw().rewrite_json(doc).unwrap()).unwrap();
        assert!(out.starts_with(r#"{"https://up.example/k":"#), "{out}");
        assert!(!out.contains("\"https://up.example/flat"), "{out}");
        assert!(!out.contains("\"https://up.example/reg"), "{out}");
        assert!(out.contains(r#""n":1"#));
    }

    #[test]
    fn render_substitutes_every_marker() {
        let t = Bytes::from(format!("[\"{MARKER}/a\",\"{MARKER}/b\"]"));
        assert_eq!(
            &render(&t, "http://h:1")[..],
            b"[\"http://h:1/a\",\"http://h:1/b\"]"
        );
        let plain = Bytes::from_static(b"{}");
        assert_eq!(render(&plain, "http://h"), plain);
    }

    #[test]
    fn public_base_sources() {
        let fb = "127.0.0.1:5000";
        let table = [
            (
                Some("https://c.example/sub/"),
                None,
                None,
                Some("h"),
                "https://c.example/sub",
            ),
            (
                None,
                Some("https"),
                Some("proxy.example"),
                Some("h"),
                "https://proxy.example",
            ),
            (
                None,
                Some("HTTPS, http"),
                None,
                Some("h:8080"),
                "https://h:8080",
            ),
            (None, None, None, Some("h:8080"), "http://h:8080"),
            (None, None, None, None, "http://127.0.0.1:5000"),
            (
                None,
                Some("gopher"),
                Some("\"><x"),
                Some("ok.example"),
                "http://ok.example",
            ),
            (None, None, None, Some("a\"b"), "http://127.0.0.1:5000"),
        ];
        for (conf, proto, fhost, host, want) in table {
            assert_eq!(public_base(conf, proto, fhost, host, fb, false), want);
        }
    }
}
