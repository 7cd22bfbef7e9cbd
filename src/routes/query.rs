//! Query strings: strict form decoding (`+` is a space, `%2B` a plus, invalid
//! UTF-8 is an error) and removal of client credentials before a query is
//! forwarded, cached or logged.

use percent_encoding::percent_decode;

use super::{bad, RouteError};

/// Parameter names that carry a client's API key (ProGet's `key`, and the
/// spellings its scripts use).
fn is_credential(name: &str) -> bool {
    ["key", "apikey", "api_key"]
        .iter()
        .any(|k| name.eq_ignore_ascii_case(k))
}

/// A request's query string, decoded once per request: the routes read its
/// values, auth its credential, and the upstream gets it without credentials.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Query {
    /// Decoded `name=value` pairs in order; a bare `name` has an empty value.
    pairs: Vec<(String, String)>,
    /// The first client credential (`key=` and its spellings).
    credential: Option<String>,
    /// The raw query minus credential parameters; `None` when nothing is left.
    clean: Option<String>,
}

impl Query {
    /// Decodes `raw`: every part must be printable ASCII and decode to UTF-8,
    /// even where feedcache only forwards the query (refused here, not
    /// upstream).
    pub fn parse(raw: Option<&str>) -> Result<Query, RouteError> {
        let Some(q) = raw else {
            return Ok(Query::default());
        };
        if !q.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("malformed query string"));
        }
        let mut out = Query::default();
        let mut kept: Vec<&str> = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (n, v) = part.split_once('=').unwrap_or((part, ""));
            let (name, value) = (decode(n)?, decode(v)?);
            if is_credential(&name) {
                out.credential.get_or_insert(value);
            } else {
                kept.push(part);
                out.pairs.push((name, value));
            }
        }
        out.clean = (!kept.is_empty()).then(|| kept.join("&"));
        Ok(out)
    }

    /// The first value of `name` (case-insensitive), if present; never a
    /// credential.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every decoded pair in order, credentials excepted.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The client credential in the query, if any.
    pub fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// The query to forward, cache by or log: without credentials.
    pub fn clean(&self) -> Option<&str> {
        self.clean.as_deref()
    }
}

fn decode(s: &str) -> Result<String, RouteError> {
    // A `%` must start an escape (`%XX`); anything else is malformed.
    let b = s.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(bad("malformed query string"));
        }
    }
    let plus_as_space = s.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| bad("query is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_space_and_encoded_plus_is_plus() {
        let p = Query::parse(Some("version=1.0.0%2Bmeta&name=a+b&flag&x=%E2%82%AC")).unwrap();
        assert_eq!(p.get("version"), Some("1.0.0+meta"));
        assert_eq!(p.get("NAME"), Some("a b"));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("x"), Some("€"));
        assert_eq!(p.get("missing"), None);
        for bad in ["x=%FF", "x=%zz", "x=100%", "x=a b", "x=\u{7f}"] {
            assert!(Query::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_taken_out() {
        let table = [
            (
                Some("q=json&key=s3cret&take=20"),
                Some("q=json&take=20"),
                Some("s3cret"),
            ),
            (Some("KEY=a&apikey=b&api_key=c"), None, Some("a")),
            (Some("q=monkey"), Some("q=monkey"), None),
            (Some("k%65y=s3cret&q=1"), Some("q=1"), Some("s3cret")),
            (None, None, None),
        ];
        for (q, clean, cred) in table {
            let p = Query::parse(q).unwrap();
            assert_eq!((p.clean(), p.credential()), (clean, cred), "{q:?}");
            assert_eq!(p.get("key"), None, "a credential is never a value");
        }
    }
}
