//! The head of one reply: status and header fields, built once and written
//! either as HTTP/1.1 bytes straight to the connection or as pingora's
//! `ResponseHeader` (HTTP/2, streamed bodies, errors).
//!
//! A hit on HTTP/1 is the hot path: pingora's `ResponseHeader` keeps a
//! header map plus a case-preserving copy of every name and allocates per
//! field, and serializing it allocated again (~22 allocations per 10 KB hit,
//! ~9% of the CPU under `wrk -c64`, BENCHMARKS.md). Written here, a head is
//! one buffer.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use pingora::http::ResponseHeader;

/// One header value.
pub enum Value<'a> {
    Text(Cow<'a, str>),
    Num(u64),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::Text(Cow::Owned(s))
    }
}

impl From<u64> for Value<'_> {
    fn from(n: u64) -> Self {
        Value::Num(n)
    }
}

/// Status and fields of a reply, in the order they are written.
pub struct Head<'a> {
    pub status: u16,
    fields: Vec<(&'static str, Value<'a>)>,
}

impl<'a> Head<'a> {
    pub fn new(status: u16) -> Self {
        Head {
            status,
            fields: Vec::with_capacity(12),
        }
    }

    pub fn push(&mut self, name: &'static str, value: impl Into<Value<'a>>) {
        self.fields.push((name, value.into()));
    }

    /// The same head owning its values, to outlive what it borrowed from
    /// (a reply that streams through the session).
    pub fn into_owned(self) -> Head<'static> {
        let fields = self
            .fields
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
                    Value::Num(n) => Value::Num(n),
                };
                (name, value)
            })
            .collect();
        Head {
            status: self.status,
            fields,
        }
    }

    /// The head as pingora's header, for its HTTP/1 and HTTP/2 writers
    /// (which add `Date` and, on HTTP/1, `Connection`).
    pub fn to_pingora(&self) -> pingora::Result<Box<ResponseHeader>> {
        let mut resp = ResponseHeader::build(self.status, Some(self.fields.len() + 2))?;
        for (name, value) in &self.fields {
            match value {
                Value::Text(t) => resp.insert_header(*name, t.as_ref())?,
                Value::Num(n) => resp.insert_header(*name, *n)?,
            }
        }
        Ok(Box::new(resp))
    }

    /// The head as HTTP/1.1 bytes, with `Date` and `Connection` as pingora
    /// writes them. `None` when a value could not be sent as it is (a
    /// control character: it would end the field early); the caller then
    /// goes through `to_pingora`, which refuses it with an error.
    pub fn to_h1(&self, date: &[u8], keepalive: bool) -> Option<Bytes> {
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut out = BytesMut::with_capacity(512);
        // Numbers by `itoa`, not `write!`: this runs once per hit.
        let mut num = itoa::Buffer::new();
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(num.format(self.status).as_bytes());
        out.put_u8(b' ');
        out.put_slice(reason.as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in &self.fields {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            match value {
                Value::Text(t) if t.bytes().all(field_byte) => out.put_slice(t.as_bytes()),
                Value::Text(_) => return None,
                Value::Num(n) => out.put_slice(num.format(*n).as_bytes()),
            }
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"Date: ");
        out.put_slice(date);
        out.put_slice(if keepalive {
            b"\r\nConnection: keep-alive\r\n\r\n"
        } else {
            b"\r\nConnection: close\r\n\r\n"
        });
        Some(out.freeze())
    }
}

/// What a field value may hold (RFC 9110 field-vchar, space and tab).
fn field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, fields: &[(&'static str, &'static str)]) -> Head<'static> {
        let mut h = Head::new(status);
        for (n, v) in fields {
            h.push(n, *v);
        }
        h
    }

    /// status, fields, keep-alive, the bytes expected
    type Case<'a> = (u16, &'a [(&'static str, &'static str)], bool, &'a str);

    #[test]
    fn serializes_like_pingora() {
        let date = b"Wed, 02 Dec 2026 07:00:00 GMT";
        let table: &[Case] = &[
            (
                200,
                &[("ETag", "\"x\""), ("Content-Type", "application/json")],
                true,
                "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Type: application/json\r\n\
                 Date: Wed, 02 Dec 2026 07:00:00 GMT\r\nConnection: keep-alive\r\n\r\n",
            ),
            (
                304,
                &[],
                false,
                "HTTP/1.1 304 Not Modified\r\nDate: Wed, 02 Dec 2026 07:00:00 GMT\r\n\
                 Connection: close\r\n\r\n",
            ),
            (
                206,
                &[("Content-Range", "bytes 0-1/10")],
                true,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/10\r\n\
                 Date: Wed, 02 Dec 2026 07:00:00 GMT\r\nConnection: keep-alive\r\n\r\n",
            ),
        ];
        for (status, fields, keep, want) in table {
            let got = head(*status, fields).to_h1(date, *keep).unwrap();
            assert_eq!(std::str::from_utf8(&got).unwrap(), *want);
        }
    }

    #[test]
    fn numbers_and_owned_values() {
        let mut h = Head::new(200);
        h.push("Content-Length", 10_240u64);
        h.push("X-Cache", String::from("HIT"));
        let got = h.to_h1(b"D", true).unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 10240\r\nX-Cache: HIT\r\n"));
        let p = h.to_pingora().unwrap();
        assert_eq!(p.headers["content-length"], "10240");
        assert_eq!(p.headers["x-cache"], "HIT");
    }

    #[test]
    fn control_characters_are_never_written_raw() {
        for bad in ["a\r\nSet-Cookie: x", "a\nb", "a\0b", "a\x7fb"] {
            let h = head(200, &[("ETag", bad)]);
            assert!(h.to_h1(b"D", true).is_none(), "{bad:?}");
            assert!(h.to_pingora().is_err(), "{bad:?}");
        }
        assert!(head(200, &[("ETag", "a\tb é")]).to_h1(b"D", true).is_some());
    }
}
