//! Cache entries: response metadata and the on-disk file format.
//!
//! One file per entry: `MAGIC`, a little-endian u32 meta length, the seal
//! (u64 body length and u32 CRC-32 of the body, written when the body is
//! complete), the meta as JSON, then the body. One file means one atomic
//! rename publishes header and body together. Entries are not fsynced one by
//! one (see `durable.rs`): the seal is how an entry that a power cut left
//! short or zero-filled is told from a good one. Files of the first format
//! (`FCACHE01`, no seal, fsynced when written) are still read.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// First bytes of every entry file; bump the digit when the format changes.
pub const MAGIC: &[u8; 8] = b"FCACHE02";
/// The first format: no seal.
const MAGIC_V1: &[u8; 8] = b"FCACHE01";
/// Where the seal lies in a `MAGIC` file, and its size.
pub const SEAL_AT: u64 = 12;
const SEAL_LEN: usize = 12;

/// Largest meta header accepted when reading, against corrupt length fields.
const MAX_META_LEN: u32 = 64 * 1024;

/// How an entry ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    /// Package content: kept, never revalidated.
    Immutable,
    /// Service index, version lists, registration, search: revalidated after the TTL.
    Metadata,
}

/// What is stored about a response besides its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub freshness: Freshness,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// The ETag feedcache serves (quoted).
    pub etag: String,
    /// The upstream's ETag, for `If-None-Match` on revalidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Unix seconds when the upstream last confirmed this body.
    pub stored_at: u64,
    /// The body holds `rewrite::MARKER` and must be rendered per request.
    #[serde(default)]
    pub templated: bool,
}

impl Meta {
    /// Whether a metadata entry is past its TTL.
    pub fn is_expired(&self, ttl_secs: u64, now: u64) -> bool {
        self.freshness == Freshness::Metadata && now.saturating_sub(self.stored_at) >= ttl_secs
    }
}

/// An entry held in memory.
#[derive(Debug)]
pub struct MemEntry {
    pub meta: Arc<Meta>,
    pub body: Bytes,
    /// The cache file `body` is mapped from, for `sendfile` (`held.rs`).
    pub backing: Option<super::held::Backing>,
}

/// Unix time in seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A strong ETag over body bytes.
pub fn etag_of(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..12]))
}

/// The header as written: the entry's cache key (so the disk index can be
/// rebuilt and purged by key from the files alone) beside its meta.
#[derive(Serialize)]
struct HeaderOut<'a> {
    key: &'a str,
    #[serde(flatten)]
    meta: &'a Meta,
}

#[derive(Deserialize)]
struct HeaderIn {
    #[serde(default)]
    key: Option<String>,
    #[serde(flatten)]
    meta: Meta,
}

/// Serializes the header that precedes the body in an entry file, with an
/// empty seal (see `seal`).
pub fn encode_header(meta: &Meta, key: &str) -> Vec<u8> {
    // Meta has only strings, numbers and enums: serialization cannot fail.
    let json = serde_json::to_vec(&HeaderOut { key, meta }).unwrap_or_default();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + SEAL_LEN + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; SEAL_LEN]);
    out.extend_from_slice(&json);
    out
}

/// The seal of a complete body: its length and CRC-32, written at `SEAL_AT`.
pub fn seal(len: u64, crc: u32) -> [u8; SEAL_LEN] {
    let mut out = [0; SEAL_LEN];
    out[..8].copy_from_slice(&len.to_le_bytes());
    out[8..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What a sealed entry promises about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    pub len: u64,
    pub crc: u32,
}

/// Why an entry file's header could not be read.
#[derive(Debug, PartialEq)]
pub enum HeaderError {
    /// Need at least this many bytes from the start of the file.
    Short(usize),
    Corrupt(&'static str),
}

/// A parsed header: the meta, the recorded key, the body offset, and the
/// seal (`None` for first-format files).
pub type Header = (Meta, Option<String>, u64, Option<Seal>);

/// Parses a header from the start of an entry file.
pub fn decode_header(buf: &[u8]) -> Result<Header, HeaderError> {
    let prefix = MAGIC.len() + 4;
    if buf.len() < prefix {
        return Err(HeaderError::Short(prefix));
    }
    let sealed = match &buf[..MAGIC.len()] {
        m if m == MAGIC => true,
        m if m == MAGIC_V1 => false,
        _ => return Err(HeaderError::Corrupt("bad magic")),
    };
    let mut n = [0u8; 4];
    n.copy_from_slice(&buf[MAGIC.len()..prefix]);
    let len = u32::from_le_bytes(n);
    if len > MAX_META_LEN {
        return Err(HeaderError::Corrupt("meta too long"));
    }
    let fixed = if sealed { prefix + SEAL_LEN } else { prefix };
    let end = fixed + len as usize;
    if buf.len() < end {
        return Err(HeaderError::Short(end));
    }
    let seal = sealed.then(|| {
        let mut l = [0u8; 8];
        let mut c = [0u8; 4];
        l.copy_from_slice(&buf[prefix..prefix + 8]);
        c.copy_from_slice(&buf[prefix + 8..fixed]);
        Seal {
            len: u64::from_le_bytes(l),
            crc: u32::from_le_bytes(c),
        }
    });
    let h: HeaderIn =
        serde_json::from_slice(&buf[fixed..end]).map_err(|_| HeaderError::Corrupt("bad meta"))?;
    Ok((h.meta, h.key, end as u64, seal))
}

/// Reads and parses the header at the start of an entry file of `size`
/// bytes: one small read, a second only for an unusually long header.
pub fn read_header(
    file: &std::fs::File,
    size: u64,
) -> std::io::Result<Result<Header, HeaderError>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; usize::try_from(size.min(4096)).unwrap_or(4096)];
    let n = file.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(match decode_header(&buf) {
        Err(HeaderError::Short(need)) if (need as u64) <= size => {
            let mut big = vec![0u8; need];
            file.read_exact_at(&mut big, 0)?;
            decode_header(&big)
        }
        other => other,
    })
}

/// A plain meta for tests of the tiers.
#[cfg(test)]
pub(crate) fn test_meta(freshness: Freshness) -> Meta {
    Meta {
        freshness,
        content_type: "application/octet-stream".into(),
        content_encoding: None,
        etag: "\"e\"".into(),
        upstream_etag: None,
        last_modified: None,
        stored_at: 1,
        templated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            freshness: Freshness::Immutable,
            content_type: "application/octet-stream".into(),
            content_encoding: None,
            etag: "\"x\"".into(),
            upstream_etag: Some("\"0x1\"".into()),
            last_modified: None,
            stored_at: 7,
            templated: false,
        }
    }

    #[test]
    fn header_round_trips() {
        let mut h = encode_header(&meta(), "nuget/flat/a/1.0.0/a.1.0.0.nupkg");
        let (m, key, off, _) = decode_header(&h).unwrap();
        assert_eq!(m, meta());
        assert_eq!(key.as_deref(), Some("nuget/flat/a/1.0.0/a.1.0.0.nupkg"));
        assert_eq!(off as usize, h.len());
        let at = SEAL_AT as usize;
        h[at..at + SEAL_LEN].copy_from_slice(&seal(5, 0xdead_beef));
        let (.., s) = decode_header(&h).unwrap();
        assert_eq!(
            s,
            Some(Seal {
                len: 5,
                crc: 0xdead_beef
            })
        );
        // First-format files: no seal field, still readable.
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&h[8..12]);
        v1.extend_from_slice(&h[at + SEAL_LEN..]);
        let (m, _, off, s) = decode_header(&v1).unwrap();
        assert_eq!((m, off as usize, s), (meta(), v1.len(), None));
    }

    #[test]
    fn short_and_corrupt_headers() {
        let h = encode_header(&meta(), "k");
        assert_eq!(decode_header(&h[..3]), Err(HeaderError::Short(12)));
        assert_eq!(decode_header(&h[..30]), Err(HeaderError::Short(h.len())));
        let mut bad = h.clone();
        bad[0] = b'X';
        assert_eq!(decode_header(&bad), Err(HeaderError::Corrupt("bad magic")));
        let mut huge = h.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_header(&huge),
            Err(HeaderError::Corrupt("meta too long"))
        );
    }

    #[test]
    fn expiry() {
        let mut m = meta();
        assert!(!m.is_expired(10, 1000), "immutable never expires");
        m.freshness = Freshness::Metadata;
        assert!(!m.is_expired(10, 16));
        assert!(m.is_expired(10, 17));
    }
}
