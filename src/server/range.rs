//! `Range` and `If-None-Match` evaluation; pure.

/// What a `Range` header asks of an entity of a known length.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable single range: send the whole entity.
    Full,
    /// Inclusive byte range.
    Partial(u64, u64),
    /// The range lies outside the entity: 416.
    Unsatisfiable,
}

/// Evaluates a `Range` header against an entity of `len` bytes. Only a single
/// `bytes=` range is honored; multiple ranges or other units get the full body
/// (allowed by RFC 9110 §14.2).
pub fn parse_range(header: Option<&str>, len: u64) -> RangeAsk {
    let Some(h) = header else {
        return RangeAsk::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            None => RangeAsk::Full,
            Some(n) if n == 0 || len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Partial(len.saturating_sub(n), len - 1),
        },
        (start, end) => {
            let Some(s) = num(start) else {
                return RangeAsk::Full;
            };
            if s >= len {
                return RangeAsk::Unsatisfiable;
            }
            if end.is_empty() {
                return RangeAsk::Partial(s, len - 1);
            }
            match num(end) {
                Some(e) if e >= s => RangeAsk::Partial(s, e.min(len - 1)),
                _ => RangeAsk::Full,
            }
        }
    }
}

/// Whether an `If-Range` condition lets a `Range` be served (RFC 9110
/// §13.1.5): no condition; an entity tag equal to `etag` by the strong
/// comparison (neither weak); or a date equal to `last_modified`. When it
/// fails the whole, current body is sent, so a resumed download never
/// joins bytes of two versions.
pub fn if_range_holds(header: Option<&str>, etag: &str, last_modified: Option<&str>) -> bool {
    let Some(h) = header.map(str::trim) else {
        return true;
    };
    if h.starts_with('"') || h.starts_with("W/") {
        return !etag.starts_with("W/") && h == etag;
    }
    last_modified.is_some_and(|lm| lm.trim() == h)
}

/// Whether `If-None-Match` matches `etag` (weak comparison, RFC 9110 §13.1.2).
pub fn none_match(header: Option<&str>, etag: &str) -> bool {
    let Some(h) = header else { return false };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let mine = bare(etag);
    h.split(',').any(|t| t.trim() == "*" || bare(t) == mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAsk::*;
        let table = [
            (None, 10, Full),
            (Some("bytes=0-4"), 10, Partial(0, 4)),
            (Some("bytes=5-"), 10, Partial(5, 9)),
            (Some("bytes=-3"), 10, Partial(7, 9)),
            (Some("bytes=-30"), 10, Partial(0, 9)),
            (Some("bytes=8-100"), 10, Partial(8, 9)),
            (Some("bytes=10-"), 10, Unsatisfiable),
            (Some("bytes=-0"), 10, Unsatisfiable),
            (Some("bytes=0-0"), 0, Unsatisfiable),
            (Some("bytes=5-2"), 10, Full),
            (Some("bytes=0-1,3-4"), 10, Full),
            (Some("items=0-1"), 10, Full),
            (Some("bytes=a-b"), 10, Full),
            (Some("bytes=-"), 10, Full),
        ];
        for (h, len, want) in table {
            assert_eq!(parse_range(h, len), want, "{h:?} {len}");
        }
    }

    #[test]
    fn if_range() {
        let lm = Some("Wed, 01 Jan 2025 00:00:00 GMT");
        // (If-Range, our ETag, our Last-Modified, range served)
        let table = [
            (None, "\"a\"", None, true),
            (Some("\"a\""), "\"a\"", None, true),
            (Some(" \"a\" "), "\"a\"", None, true),
            (Some("\"b\""), "\"a\"", None, false),
            (Some("W/\"a\""), "\"a\"", None, false),
            (Some("W/\"a\""), "W/\"a\"", None, false),
            (Some("\"a\""), "W/\"a\"", None, false),
            (lm, "\"a\"", lm, true),
            (Some("Thu, 02 Jan 2025 00:00:00 GMT"), "\"a\"", lm, false),
            (lm, "\"a\"", None, false),
            (Some("garbage"), "\"a\"", lm, false),
        ];
        for (h, etag, last, want) in table {
            assert_eq!(if_range_holds(h, etag, last), want, "{h:?} {etag} {last:?}");
        }
    }

    #[test]
    fn etags() {
        assert!(none_match(Some("\"a\""), "\"a\""));
        assert!(none_match(Some("\"x\", W/\"a\""), "\"a\""));
        assert!(none_match(Some("*"), "\"a\""));
        assert!(!none_match(Some("\"b\""), "\"a\""));
        assert!(!none_match(None, "\"a\""));
    }
}
