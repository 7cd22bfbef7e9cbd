//! What a purge removes: the spec parsed from `/admin/purge` and which
//! cache keys it covers. Pure, beside the keys it reads.

/// What `/admin/purge` removes; at least one field is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeSpec {
    /// `default` (the `[nuget]` feed) or a ProGet feed name, lowercased.
    pub feed: Option<String>,
    /// A normalized package id.
    pub id: Option<String>,
    /// A normalized version (needs `id`).
    pub version: Option<String>,
}

/// Whether a cache key falls under a purge. Keys look like
/// `nuget/flat/{id}/...`, `nuget/reg/{tag}/{id}/...`, `proget/{feed}/...`,
/// `feeds/{name}/...`.
pub fn key_matches(key: &str, spec: &PurgeSpec) -> bool {
    let segs: Vec<&str> = key.split('/').collect();
    let (feed, rest) = match segs.as_slice() {
        ["nuget", rest @ ..] => ("default", rest),
        // A purge of feed X covers the ProGet feed and the virtual feed X.
        ["proget" | "feeds", f, rest @ ..] => (*f, rest),
        _ => return false,
    };
    if spec.feed.as_deref().is_some_and(|f| f != feed) {
        return false;
    }
    let Some(id) = &spec.id else {
        return true;
    };
    match rest {
        // Version lists and registration documents of the id are purged too,
        // so that they are fetched afresh with the purged version.
        ["flat", i, "index.json"] => i == id,
        ["flat", i, v, ..] => i == id && spec.version.as_deref().is_none_or(|want| want == *v),
        ["reg", _, i, ..] => i == id,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(feed: Option<&str>, id: Option<&str>, version: Option<&str>) -> PurgeSpec {
        PurgeSpec {
            feed: feed.map(Into::into),
            id: id.map(Into::into),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn purge_table() {
        let keys = [
            "nuget/flat/foo/index.json",
            "nuget/flat/foo/1.0.0/foo.1.0.0.nupkg",
            "nuget/flat/foo/2.0.0/foo.2.0.0.nupkg",
            "nuget/reg/registration5-gz-semver2/foo/abc",
            "nuget/flat/foobar/1.0.0/foobar.1.0.0.nupkg",
            "nuget/index.json",
            "proget/internal/flat/foo/1.0.0/foo.1.0.0.nupkg",
            "proget/assets/upack/@g/tool/1.0.0/upack",
        ];
        let table: Vec<(PurgeSpec, Vec<usize>)> = vec![
            (spec(None, Some("foo"), None), vec![0, 1, 2, 3, 6]),
            (spec(None, Some("foo"), Some("1.0.0")), vec![0, 1, 3, 6]),
            (
                spec(Some("default"), Some("foo"), Some("2.0.0")),
                vec![0, 2, 3],
            ),
            (spec(Some("internal"), Some("foo"), None), vec![6]),
            (spec(Some("assets"), None, None), vec![7]),
            (spec(Some("default"), None, None), vec![0, 1, 2, 3, 4, 5]),
        ];
        for (s, want) in table {
            let got: Vec<usize> = (0..keys.len())
                .filter(|i| key_matches(keys[*i], &s))
                .collect();
            assert_eq!(got, want, "{s:?}");
        }
    }
}
