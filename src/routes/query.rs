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

/// Decoded `name=value` pairs in order; a bare `name` has an empty value.
pub fn parse(query: Option<&str>) -> Result<Vec<(String, String)>, RouteError> {
    let Some(q) = query else {
        return Ok(Vec::new());
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(n)?, decode(v)?))
        })
        .collect()
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

/// The first value of `name` (case-insensitive), if present.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The first client credential in a query, if any.
pub fn credential(query: Option<&str>) -> Option<String> {
    let pairs = parse(query).ok()?;
    pairs
        .into_iter()
        .find(|(n, _)| is_credential(n))
        .map(|(_, v)| v)
}

/// The raw query without credential parameters; `None` when nothing is left.
pub fn without_credentials(query: Option<&str>) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(n, _)| n);
            let name = decode(name).unwrap_or_default();
            !is_credential(&name)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_space_and_encoded_plus_is_plus() {
        let p = parse(Some("version=1.0.0%2Bmeta&name=a+b&flag&x=%E2%82%AC")).unwrap();
        assert_eq!(get(&p, "version"), Some("1.0.0+meta"));
        assert_eq!(get(&p, "NAME"), Some("a b"));
        assert_eq!(get(&p, "flag"), Some(""));
        assert_eq!(get(&p, "x"), Some("€"));
        assert_eq!(get(&p, "missing"), None);
        assert!(parse(Some("x=%FF")).is_err());
        assert!(parse(Some("x=%zz")).is_err());
        assert!(parse(Some("x=100%")).is_err());
    }

    #[test]
    fn credentials_are_removed() {
        let table = [
            (Some("q=json&key=s3cret&take=20"), Some("q=json&take=20")),
            (Some("KEY=a&apikey=b&api_key=c"), None),
            (Some("q=monkey"), Some("q=monkey")),
            (Some("k%65y=s3cret&q=1"), Some("q=1")),
            (None, None),
        ];
        for (q, want) in table {
            assert_eq!(without_credentials(q).as_deref(), want, "{q:?}");
        }
        assert_eq!(credential(Some("q=1&apikey=abc")).as_deref(), Some("abc"));
        assert_eq!(credential(Some("q=1")), None);
    }
}
