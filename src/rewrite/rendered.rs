//! Renderings of templated documents (the service index, rewritten
//! metadata) kept per document and public base: clients of one host name
//! get the same bytes every time, so a hit is served without copying the
//! document and hashing its validator again on each request.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;

use super::render;

/// One rendering and what it was made from (checked on a hit: the cache
/// is keyed by a hash).
struct Rendered {
    etag: String,
    base: String,
    body: Bytes,
    /// The validator of the rendering (per base, see `rendered`).
    out_etag: String,
}

/// Renderings held, weighed by body size: a few hosts × a few hundred
/// documents fit; beyond it the least used go.
const CAPACITY: u64 = 32 * 1024 * 1024;

static RENDERED: LazyLock<moka::sync::Cache<u64, Arc<Rendered>>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(CAPACITY)
        .weigher(|_, r: &Arc<Rendered>| u32::try_from(r.body.len()).unwrap_or(u32::MAX))
        .build()
});

/// `template` (whose validator is `etag`) rendered for `base`, and the
/// validator of that rendering, which differs per base.
pub fn rendered(etag: &str, template: &Bytes, base: &str) -> (Bytes, String) {
    let mut h = DefaultHasher::new();
    (etag, base).hash(&mut h);
    let key = h.finish();
    if let Some(r) = RENDERED.get(&key) {
        if r.etag == etag && r.base == base {
            return (r.body.clone(), r.out_etag.clone());
        }
    }
    let body = render(template, base);
    let out_etag = crate::cache::etag_of(format!("{etag}|{base}").as_bytes());
    RENDERED.insert(
        key,
        Arc::new(Rendered {
            etag: etag.to_owned(),
            base: base.to_owned(),
            body: body.clone(),
            out_etag: out_etag.clone(),
        }),
    );
    (body, out_etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::MARKER;

    #[test]
    fn one_rendering_per_document_and_base() {
        let t = Bytes::from(format!(r#"{{"a":"{MARKER}/v3/x"}}"#));
        let (a1, e1) = rendered("\"t1\"", &t, "http://one");
        let (a2, e2) = rendered("\"t1\"", &t, "http://one");
        assert_eq!((a1.as_ptr(), &e1), (a2.as_ptr(), &e2), "the kept rendering");
        assert_eq!(&a1[..], br#"{"a":"http://one/v3/x"}"#);
        let (b, e3) = rendered("\"t1\"", &t, "https://two");
        assert_eq!(&b[..], br#"{"a":"https://two/v3/x"}"#);
        assert_ne!(e1, e3, "validators differ per base");
        // A new document under the same base is rendered afresh.
        let t2 = Bytes::from(format!(r#"{{"b":"{MARKER}"}}"#));
        assert_eq!(
            &rendered("\"t2\"", &t2, "http://one").0[..],
            br#"{"b":"http://one"}"#
        );
    }
}
