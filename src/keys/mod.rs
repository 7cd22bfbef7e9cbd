//! Cache keys: one normalized key per resource, whatever spelling a client used.
//!
//! A key is also the entry's relative path in the disk tier, so every component
//! is validated or hashed here and nowhere else.

mod id;
mod purge;
mod rules;
mod version;

pub use id::{lower_invariant, normalize_id, validate_id, IdError, MAX_ID_LEN};
pub use purge::{key_matches, PurgeSpec};
pub use rules::IdRules;
pub use version::{normalize_version, NuGetVersion, VersionError, MAX_VERSION_LEN};

use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// Which NuGet V3 feed a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FeedRef {
    /// The configured `[nuget]` upstream, served at `/v3/`.
    Default,
    /// A ProGet feed by (lowercased) name, served at `/nuget/{feed}/v3/`.
    ProGet(String),
    /// A virtual feed (`[[feeds]]`) by (lowercased) name, served at
    /// `/feeds/{name}/v3/`: one feed over several upstreams.
    Virtual(String),
}

impl FeedRef {
    /// Key prefix of everything cached for this feed.
    pub fn key_prefix(&self) -> String {
        let mut out = String::new();
        self.push_key_prefix(&mut out);
        out
    }

    /// Appends `key_prefix` to `out` (keys built on the hit path, in one
    /// buffer).
    pub fn push_key_prefix(&self, out: &mut String) {
        match self {
            FeedRef::Default => out.push_str("nuget"),
            FeedRef::ProGet(f) => {
                out.push_str("proget/");
                out.push_str(f);
            }
            FeedRef::Virtual(f) => {
                out.push_str("feeds/");
                out.push_str(f);
            }
        }
    }

    /// Path prefix under which clients reach this feed, without trailing slash.
    pub fn public_prefix(&self) -> String {
        match self {
            FeedRef::Default => "/v3".into(),
            FeedRef::ProGet(f) => format!("/nuget/{f}/v3"),
            FeedRef::Virtual(f) => format!("/feeds/{f}/v3"),
        }
    }
}

/// ProGet feed names: 1–50 of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn normalize_feed_name(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 50
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| s.to_ascii_lowercase())
}

/// Files of a version in the flat container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatFile {
    Nupkg,
    Nuspec,
    Icon,
    Readme,
}

/// A normalized cache key; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Arc<str>);

impl CacheKey {
    /// The key as a relative path of safe components.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The feed's service index.
    pub fn service_index(feed: &FeedRef) -> Self {
        Self::from(format!("{}/index.json", feed.key_prefix()))
    }

    /// `{id}/index.json` of the flat container. `id` must be normalized.
    pub fn flat_index(feed: &FeedRef, id: &str) -> Self {
        Self::from(format!("{}/flat/{id}/index.json", feed.key_prefix()))
    }

    /// A file of one version in the flat container; `id` and `version` normalized.
    pub fn flat_file(feed: &FeedRef, id: &str, version: &str, file: FlatFile) -> Self {
        // Built on every package hit: one buffer, pushed in place.
        let mut key = String::with_capacity(32 + 2 * (id.len() + version.len()));
        feed.push_key_prefix(&mut key);
        for part in ["/flat/", id, "/", version, "/"] {
            key.push_str(part);
        }
        match file {
            FlatFile::Nupkg => {
                for part in [id, ".", version, ".nupkg"] {
                    key.push_str(part);
                }
            }
            FlatFile::Nuspec => {
                key.push_str(id);
                key.push_str(".nuspec");
            }
            FlatFile::Icon => key.push_str("icon"),
            FlatFile::Readme => key.push_str("readme"),
        }
        Self::from(key)
    }

    /// A universal package (`vpack` false) or virtual package manifest of a
    /// ProGet feed. Group, name and version must come validated from routing;
    /// they are lowercased here (ProGet matches them case-insensitively). The
    /// group is one path component (`/` becomes `~`, which groups cannot hold,
    /// behind `@`), so no group/name split can collide with another.
    pub fn upack(feed: &str, group: &str, name: &str, version: &str, vpack: bool) -> Self {
        let group = group.to_ascii_lowercase().replace('/', "~");
        let name = name.to_ascii_lowercase();
        let version = version.to_ascii_lowercase();
        let file = if vpack { "vpack" } else { "upack" };
        Self::from(format!(
            "proget/{feed}/upack/@{group}/{name}/{version}/{file}"
        ))
    }

    /// A document whose identity is an arbitrary upstream path or query: grouped
    /// by `class` and `tag` (validated route parts) and an optional normalized id
    /// (so a later purge by id finds it), named by a hash of `detail`.
    pub fn hashed(feed: &FeedRef, class: &str, tag: &str, id: Option<&str>, detail: &str) -> Self {
        let digest = hex::encode(&Sha256::digest(detail.as_bytes())[..16]);
        let prefix = feed.key_prefix();
        match id {
            Some(id) => Self::from(format!("{prefix}/{class}/{tag}/{id}/{digest}")),
            None => Self::from(format!("{prefix}/{class}/{tag}/{digest}")),
        }
    }
}

impl From<String> for CacheKey {
    fn from(s: String) -> Self {
        CacheKey(Arc::from(s))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nupkg(id: &str, v: &str) -> String {
        let id = normalize_id(id).unwrap();
        let v = normalize_version(v).unwrap();
        CacheKey::flat_file(&FeedRef::Default, &id, &v, FlatFile::Nupkg).to_string()
    }

    #[test]
    fn every_spelling_is_one_key() {
        let want = "nuget/flat/newtonsoft.json/13.0.1/newtonsoft.json.13.0.1.nupkg";
        for (id, v) in [
            ("Newtonsoft.Json", "13.0.1"),
            ("newtonsoft.json", "13.00.01"),
            ("NEWTONSOFT.JSON", "13.0.1.0"),
            ("Newtonsoft.JSON", "13.0.1+sha.abc"),
        ] {
            assert_eq!(nupkg(id, v), want, "{id} {v}");
        }
        assert_eq!(
            nupkg("Foo", "1.0.0-Beta.1"),
            "nuget/flat/foo/1.0.0-beta.1/foo.1.0.0-beta.1.nupkg"
        );
    }

    #[test]
    fn feeds_do_not_share_keys() {
        let a = CacheKey::flat_index(&FeedRef::Default, "x");
        let b = CacheKey::flat_index(&FeedRef::ProGet("internal".into()), "x");
        assert_ne!(a, b);
        assert_eq!(b.as_str(), "proget/internal/flat/x/index.json");
    }

    #[test]
    fn hashed_keys_are_stable_and_safe() {
        let k = CacheKey::hashed(&FeedRef::Default, "search", "query", None, "q=../../etc");
        assert_eq!(
            k,
            CacheKey::hashed(&FeedRef::Default, "search", "query", None, "q=../../etc")
        );
        assert!(!k.as_str().contains(".."));
        assert!(k.as_str().starts_with("nuget/search/query/"));
    }

    #[test]
    fn upack_keys_fold_case_and_keep_groups_apart() {
        let a = CacheKey::upack("f", "Tools/Build", "CLI", "1.0.0-RC", false);
        assert_eq!(a.as_str(), "proget/f/upack/@tools~build/cli/1.0.0-rc/upack");
        let b = CacheKey::upack("f", "tools", "build", "1.0.0", false);
        let c = CacheKey::upack("f", "", "tools", "1.0.0", false);
        assert_ne!(b, c);
        assert_eq!(c.as_str(), "proget/f/upack/@/tools/1.0.0/upack");
        assert_ne!(
            a,
            CacheKey::upack("f", "Tools/Build", "CLI", "1.0.0-RC", true)
        );
    }

    #[test]
    fn feed_names() {
        let table = [
            ("Internal", Some("internal")),
            ("my-feed_2.x", Some("my-feed_2.x")),
            (".hidden", None),
            ("..", None),
            ("a/b", None),
            ("", None),
        ];
        for (input, want) in table {
            assert_eq!(normalize_feed_name(input).as_deref(), want, "{input}");
        }
    }
}
