//! Cache entries: response metadata and the on-disk file format.
//!
//! One file per entry: `MAGIC`, a little-endian u32 meta length, the meta as
//! JSON, then the body. One file means one atomic rename publishes header and
//! body together; the body length is whatever follows the header.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// First bytes of every entry file; bump the digit when the format changes.
pub const MAGIC: &[u8; 8] = b"FCACHE01";

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

/// Serializes the header that precedes the body in an entry file.
pub fn encode_header(meta: &Meta, key: &str) -> Vec<u8> {
    // Meta has only strings, numbers and enums: serialization cannot fail.
    let json = serde_json::to_vec(&HeaderOut { key, meta }).unwrap_or_default();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Why an entry file's header could not be read.
#[derive(Debug, PartialEq)]
pub enum HeaderError {
    /// Need at least this many bytes from the start of the file.
    Short(usize),
    Corrupt(&'static str),
}

/// A parsed header: the meta, the recorded key and the body offset.
pub type Header = (Meta, Option<String>, u64);

/// Parses a header from the start of an entry file.
pub fn decode_header(buf: &[u8]) -> Result<Header, HeaderError> {
    let fixed = MAGIC.len() + 4;
    if buf.len() < fixed {
        return Err(HeaderError::Short(fixed));
    }
    if &buf[..MAGIC.len()] != MAGIC {
        return Err(HeaderError::Corrupt("bad magic"));
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&buf[MAGIC.len()..fixed]);
    let len = u32::from_le_bytes(n);
    if len > MAX_META_LEN {
        return Err(HeaderError::Corrupt("meta too long"));
    }
    let end = fixed + len as usize;
    if buf.len() < end {
        return Err(HeaderError::Short(end));
    }
    let h: HeaderIn =
        serde_json::from_slice(&buf[fixed..end]).map_err(|_| HeaderError::Corrupt("bad meta"))?;
    Ok((h.meta, h.key, end as u64))
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
        let h = encode_header(&meta(), "nuget/flat/a/1.0.0/a.1.0.0.nupkg");
        let (m, key, off) = decode_header(&h).unwrap();
        assert_eq!(m, meta());
        assert_eq!(key.as_deref(), Some("nuget/flat/a/1.0.0/a.1.0.0.nupkg"));
        assert_eq!(off as usize, h.len());
    }

    #[test]
    fn short_and_corrupt_headers() {
        let h = encode_header(&meta(), "k");
        assert_eq!(decode_header(&h[..3]), Err(HeaderError::Short(12)));
        assert_eq!(decode_header(&h[..20]), Err(HeaderError::Short(h.len())));
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
