//! ProGet routes: the packages API (`/api/packages/{feed}/...`) and universal
//! packages (`/upack/{feed}/...`), with their identifiers validated here.

use super::{bad, Query, RouteError};
use crate::keys::normalize_feed_name;
use crate::proget::purl;

/// Longest package name or group accepted from a client.
const MAX_NAME: usize = 250;

/// `/api/packages/{feed}/{op}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackagesOp {
    /// `download`: exactly one package, by `purl` or `name`/`version`.
    Download,
    /// `latest`, with `stableOnly`.
    Latest,
    /// `versions`, optionally narrowed by `version`.
    Versions,
}

/// The identifiers of a packages API request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageQuery {
    /// Package type when given by a purl (`nuget`, `upack`...).
    pub kind: Option<String>,
    pub group: Option<String>,
    pub name: String,
    pub version: Option<String>,
    /// Purl qualifiers or `qualifier=`, passed through.
    pub qualifier: Option<String>,
    pub stable_only: bool,
    /// Every other parameter (a PyPI `filename`, Debian `component`,
    /// `distro`, `arch`, and any the client sends), sorted by name then
    /// value: sent upstream and part of the cache key, so distinct files
    /// never share an entry and equal requests always do.
    pub extra: Vec<(String, String)>,
}

/// Parameters of the packages API that `PackageQuery` holds by name.
const KNOWN: [&str; 6] = [
    "purl",
    "group",
    "name",
    "version",
    "qualifier",
    "stableOnly",
];

/// `/upack/{feed}/{op}/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpackOp {
    Download,
    /// `download-file` with its validated `path`.
    File(String),
    Vpack,
    /// `download?contentOnly=zip|tgz`: the content files, made locally.
    Content(crate::extract::ContentFormat),
}

/// A universal package name; `group` may be empty and may contain `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpackId {
    pub group: String,
    pub name: String,
}

/// A requested version, or `?latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpackVersion {
    /// SemVer 2, lowercased.
    Exact(String),
    Latest,
}

/// Parses `/api/packages/{feed}/{op}` with its query.
pub fn packages(
    feed: &str,
    op: &str,
    q: &Query,
) -> Result<(String, PackagesOp, PackageQuery), RouteError> {
    let feed = feed_of(feed)?;
    let op = match op {
        "download" => PackagesOp::Download,
        "latest" => PackagesOp::Latest,
        "versions" => PackagesOp::Versions,
        _ => return Err(RouteError::NotFound),
    };
    let field = |name: &str| -> Result<Option<String>, RouteError> {
        match q.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.len() > MAX_NAME || v.chars().any(char::is_control) => {
                Err(bad(format!("invalid {name}")))
            }
            Some(v) => Ok(Some(v.to_owned())),
        }
    };
    let stable_only = field("stableOnly")?.is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut extra = Vec::new();
    for (name, value) in q.pairs() {
        if KNOWN.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            continue;
        }
        if name.len() > MAX_NAME
            || value.len() > MAX_NAME
            || format!("{name}{value}").chars().any(char::is_control)
        {
            return Err(bad(format!("invalid {name}")));
        }
        extra.push((name.clone(), value.clone()));
    }
    extra.sort();
    let pq = match field("purl")? {
        Some(p) => {
            let p = purl::parse(&p).map_err(bad)?;
            PackageQuery {
                kind: Some(p.kind),
                group: p.namespace,
                name: p.name,
                version: p.version,
                qualifier: p.qualifiers,
                stable_only,
                extra,
            }
        }
        None => PackageQuery {
            kind: None,
            group: field("group")?,
            name: field("name")?.ok_or_else(|| bad("name or purl is required"))?,
            version: field("version")?,
            qualifier: field("qualifier")?,
            stable_only,
            extra,
        },
    };
    if op == PackagesOp::Download && pq.version.is_none() {
        return Err(bad(
            "the identifiers must resolve to exactly one package: version is missing",
        ));
    }
    Ok((feed, op, pq))
}

/// Parses `/upack/{feed}/{op}/{group...}/{name}[/{version}]` with its query.
/// The group may contain `/`, so the name and version are taken from the end.
pub fn upack(
    feed: &str,
    op: &str,
    rest: &[&str],
    q: &Query,
) -> Result<(String, UpackOp, UpackId, UpackVersion), RouteError> {
    let feed = feed_of(feed)?;
    let latest = q.get("latest").is_some_and(|v| v.is_empty() || v == "true");
    let op = match op {
        "download" => match q.get("contentOnly") {
            None => UpackOp::Download,
            Some(f) => UpackOp::Content(
                crate::extract::ContentFormat::parse(f)
                    .ok_or_else(|| bad("contentOnly must be zip or tgz"))?,
            ),
        },
        "download-vpack" => UpackOp::Vpack,
        "download-file" => {
            let p = q.get("path").ok_or_else(|| bad("path is required"))?;
            UpackOp::File(crate::extract::entry_path(p).map_err(bad)?)
        }
        _ => return Err(RouteError::NotFound),
    };
    let (group, name, version) = if latest {
        let (name, group) = rest.split_last().ok_or(RouteError::NotFound)?;
        (group, *name, UpackVersion::Latest)
    } else {
        match rest {
            [group @ .., name, version] => (group, *name, UpackVersion::Exact(semver_of(version)?)),
            _ => return Err(bad("a version or latest is required")),
        }
    };
    for g in group {
        if !plain_name(g) {
            return Err(bad("invalid group"));
        }
    }
    let group = group.join("/");
    if group.len() > MAX_NAME {
        return Err(bad("invalid group"));
    }
    if name.len() > 50 || !plain_name(name) {
        return Err(bad("invalid package name"));
    }
    let id = UpackId {
        group,
        name: name.to_owned(),
    };
    Ok((feed, op, id, version))
}

fn feed_of(s: &str) -> Result<String, RouteError> {
    normalize_feed_name(s).ok_or_else(|| bad("invalid feed name"))
}

/// Universal package names and group parts: letters, digits, `.`, `-`, `_`.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A SemVer 2 version, lowercased for case-insensitive matching.
pub fn semver_of(s: &str) -> Result<String, RouteError> {
    if s.len() > 128 {
        return Err(bad("invalid version"));
    }
    semver::Version::parse(s)
        .map(|_| s.to_ascii_lowercase())
        .map_err(|_| bad("a version or latest is required (invalid version)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pq(name: &str, version: Option<&str>) -> PackageQuery {
        PackageQuery {
            kind: None,
            group: None,
            name: name.into(),
            version: version.map(Into::into),
            qualifier: None,
            stable_only: false,
            extra: Vec::new(),
        }
    }

    #[test]
    fn packages_table() {
        let ok = |op, q| Ok(("feed".to_string(), op, q));
        let nuget = PackageQuery {
            kind: Some("nuget".into()),
            ..pq("Foo", Some("1.0.0+meta"))
        };
        let table: Vec<(&str, &str, Option<&str>, Result<_, ()>)> = vec![
            (
                "Feed",
                "download",
                Some("name=Foo&version=1.0"),
                ok(PackagesOp::Download, pq("Foo", Some("1.0"))),
            ),
            (
                "feed",
                "download",
                Some("purl=pkg:nuget/Foo@1.0.0%2Bmeta"),
                ok(PackagesOp::Download, nuget),
            ),
            ("feed", "download", Some("purl=pkg%3Anuget%2FFoo"), Err(())),
            ("feed", "download", Some("name=Foo"), Err(())),
            ("feed", "download", Some("version=1.0"), Err(())),
            ("feed", "download", None, Err(())),
            ("feed", "download", Some("purl=nonsense"), Err(())),
            (
                "feed",
                "versions",
                Some("name=Foo&key=secret"),
                ok(PackagesOp::Versions, pq("Foo", None)),
            ),
            (
                "feed",
                "latest",
                Some("name=Foo&stableOnly=true"),
                ok(
                    PackagesOp::Latest,
                    PackageQuery {
                        stable_only: true,
                        ..pq("Foo", None)
                    },
                ),
            ),
            (
                "feed",
                "download",
                // Any other parameter is kept, sorted, never dropped.
                Some("name=Foo&version=1&distro=stable&arch=amd64&component=main"),
                ok(
                    PackagesOp::Download,
                    PackageQuery {
                        extra: vec![
                            ("arch".into(), "amd64".into()),
                            ("component".into(), "main".into()),
                            ("distro".into(), "stable".into()),
                        ],
                        ..pq("Foo", Some("1"))
                    },
                ),
            ),
            ("feed", "delete", Some("name=Foo"), Err(())),
            ("../x", "download", Some("name=Foo&version=1"), Err(())),
        ];
        for (feed, op, q, want) in table {
            let got = Query::parse(q)
                .and_then(|q| packages(feed, op, &q))
                .map_err(|_| ());
            assert_eq!(got, want, "{feed} {op} {q:?}");
        }
    }

    #[test]
    fn upack_table() {
        let id = |g: &str, n: &str| UpackId {
            group: g.into(),
            name: n.into(),
        };
        let exact = |v: &str| UpackVersion::Exact(v.into());
        type Want = Result<(UpackOp, UpackId, UpackVersion), ()>;
        let table: Vec<(&str, &[&str], Option<&str>, Want)> = vec![
            (
                "download",
                &["g", "tool", "1.0.0"],
                None,
                Ok((UpackOp::Download, id("g", "tool"), exact("1.0.0"))),
            ),
            (
                "download",
                &["a", "b", "c", "tool", "1.0.0-RC.1"],
                None,
                Ok((UpackOp::Download, id("a/b/c", "tool"), exact("1.0.0-rc.1"))),
            ),
            (
                "download",
                &["tool", "1.0.0"],
                None,
                Ok((UpackOp::Download, id("", "tool"), exact("1.0.0"))),
            ),
            (
                "download",
                &["g", "tool"],
                Some("latest"),
                Ok((UpackOp::Download, id("g", "tool"), UpackVersion::Latest)),
            ),
            (
                "download",
                &["tool"],
                Some("latest"),
                Ok((UpackOp::Download, id("", "tool"), UpackVersion::Latest)),
            ),
            ("download", &["tool"], None, Err(())),
            ("download", &["g", "tool"], None, Err(())),
            ("download", &["g", "tool", "1.0"], None, Err(())),
            ("download", &["..", "tool", "1.0.0"], None, Err(())),
            (
                "download-vpack",
                &["g", "v", "2.0.0"],
                None,
                Ok((UpackOp::Vpack, id("g", "v"), exact("2.0.0"))),
            ),
            (
                "download-file",
                &["g", "tool", "1.0.0"],
                Some("path=package/My%20File.txt"),
                Ok((
                    UpackOp::File("package/My File.txt".into()),
                    id("g", "tool"),
                    exact("1.0.0"),
                )),
            ),
            (
                "download-file",
                &["g", "tool"],
                Some("latest&path=upack.json"),
                Ok((
                    UpackOp::File("upack.json".into()),
                    id("g", "tool"),
                    UpackVersion::Latest,
                )),
            ),
            ("download-file", &["g", "tool", "1.0.0"], None, Err(())),
            (
                "download-file",
                &["g", "tool", "1.0.0"],
                Some("path=../x"),
                Err(()),
            ),
            ("upload", &["g", "tool", "1.0.0"], None, Err(())),
        ];
        for (op, rest, q, want) in table {
            let got = Query::parse(q)
                .and_then(|q| upack("feed", op, rest, &q))
                .map(|(_, op, id, v)| (op, id, v))
                .map_err(|_| ());
            assert_eq!(got, want, "{op} {rest:?} {q:?}");
        }
    }
}
