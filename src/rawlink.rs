//! Signed `raw/` links: the only upstream documents `raw/` fetches are the
//! ones a feed's own rewritten metadata pointed a client to.
//!
//! Without this, `raw/{origin}/{any path}` was an open GET proxy to every
//! upstream host, carrying the ProGet API key. Each link feedcache writes
//! into a document carries an HMAC-SHA256 tag of (feed, origin, path, query)
//! under a key kept in the cache directory, so links in cached documents stay
//! valid across restarts while no client can forge a new one.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex characters of the tag in a link (64 bits: forging needs 2^64 guesses,
/// each one a request).
const TAG_HEX: usize = 16;
/// Bytes of the key.
const KEY_LEN: usize = 32;
/// File in the cache directory holding the key.
pub const KEY_FILE: &str = "raw-link.key";

/// Signs and checks `raw/` links.
#[derive(Clone)]
pub struct RawSigner {
    /// HMAC state with the key already absorbed; cloned per link.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for RawSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawSigner(..)")
    }
}

impl RawSigner {
    /// A signer with a fixed key (tests, benches).
    pub fn with_key(key: &[u8]) -> std::io::Result<Self> {
        // HMAC takes keys of any length; the error exists only in the type.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(RawSigner { keyed })
    }

    /// Reads the key from `dir/raw-link.key`, creating it (random, mode 0600)
    /// when it is missing or unreadable as a key.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(KEY_FILE);
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(key) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
                return Self::with_key(&key);
            }
        }
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        // Written to a temp file and renamed: two processes starting on one
        // directory never read half a key.
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
        }
        tmp.persist(&path).map_err(|e| e.error)?;
        Self::with_key(&key)
    }

    fn mac(&self, feed: &str, origin: usize, path: &str, query: Option<&str>) -> Hmac<Sha256> {
        let mut m = self.keyed.clone();
        // `x?` and `x` are one link: clients drop an empty query.
        let query = query.filter(|q| !q.is_empty());
        // Length-prefixed fields: no two different tuples sign the same bytes.
        for part in [feed, &origin.to_string(), path, query.unwrap_or("\u{0}")] {
            m.update(&(part.len() as u64).to_le_bytes());
            m.update(part.as_bytes());
        }
        m
    }

    /// The tag of a link to `path` (no leading `/`) with `query` on the
    /// feed's origin number `origin`.
    pub fn sign(&self, feed: &str, origin: usize, path: &str, query: Option<&str>) -> String {
        let out = self.mac(feed, origin, path, query).finalize().into_bytes();
        hex::encode(&out[..TAG_HEX / 2])
    }

    /// Whether `tag` is the tag of that link (constant-time comparison).
    pub fn verify(
        &self,
        feed: &str,
        origin: usize,
        path: &str,
        query: Option<&str>,
        tag: &str,
    ) -> bool {
        let Ok(bytes) = hex::decode(tag) else {
            return false;
        };
        if bytes.len() != TAG_HEX / 2 {
            return false;
        }
        self.mac(feed, origin, path, query)
            .verify_truncated_left(&bytes)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signed_links_verify() {
        let s = RawSigner::with_key(&[7; KEY_LEN]).unwrap();
        let t = s.sign("nuget", 0, "v3/catalog0/x.json", None);
        assert_eq!(t.len(), TAG_HEX);
        assert!(s.verify("nuget", 0, "v3/catalog0/x.json", None, &t));
        assert!(s.verify("nuget", 0, "v3/catalog0/x.json", Some(""), &t));
        let table: [(&str, usize, &str, Option<&str>, &str); 6] = [
            ("proget/other", 0, "v3/catalog0/x.json", None, &t),
            ("nuget", 1, "v3/catalog0/x.json", None, &t),
            ("nuget", 0, "v3/catalog0/y.json", None, &t),
            ("nuget", 0, "v3/catalog0/x.json", Some("a=1"), &t),
            ("nuget", 0, "v3/catalog0/x.json", None, "zz"),
            ("nuget", 0, "v3/catalog0/x.json", None, "0000000000000000"),
        ];
        for (feed, o, p, q, tag) in table {
            assert!(!s.verify(feed, o, p, q, tag), "{feed} {o} {p} {q:?} {tag}");
        }
        let other = RawSigner::with_key(&[8; KEY_LEN]).unwrap();
        assert!(!other.verify("nuget", 0, "v3/catalog0/x.json", None, &t));
    }

    #[test]
    fn key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = RawSigner::load_or_create(dir.path()).unwrap();
        let b = RawSigner::load_or_create(dir.path()).unwrap();
        assert_eq!(a.sign("f", 0, "p", None), b.sign("f", 0, "p", None));
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let c = RawSigner::load_or_create(dir.path()).unwrap();
        assert_ne!(a.sign("f", 0, "p", None), c.sign("f", 0, "p", None));
    }
}
