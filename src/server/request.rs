//! The request as the handler reads it: method, path, query and header
//! fields, either from pingora's parsed header (HTTP/2, and every HTTP/1
//! request out of the ordinary) or straight from the bytes of the
//! connection's first read (`parse_plain`).
//!
//! Nearly every request a package cache sees is a bodiless GET whose whole
//! header arrives in one read. pingora's HTTP/1 session builds a header
//! map with a case-preserving copy of every name, parses the target into a
//! `Uri`, validates and drops it all again: about a tenth of a small hit's
//! CPU at one connection (BENCHMARKS.md). For those requests the fields are
//! read in place; anything unusual (a body, `Expect`, `Upgrade`, HTTP/1.0,
//! an absolute-form target, odd bytes in the target) goes to pingora as
//! before, so the checks it makes still apply to everything it could apply
//! them to.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use pingora::protocols::http::ServerSession;
use pingora::protocols::SocketDigest;
use pingora::protocols::Stream;

/// Header fields `parse_plain` reads at most; a request with more goes to
/// pingora (NuGet clients send fewer than ten).
pub const PLAIN_FIELDS: usize = 32;

/// One request's header, borrowed from where it was parsed.
pub struct Request<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The target's authority (HTTP/2's `:authority`, an absolute-form
    /// target): the host name when there is no `Host` field.
    pub authority: Option<&'a str>,
    /// HTTP/1.0, 1.1 or 2: how a body of unknown length is framed.
    pub version: http::Version,
    fields: Fields<'a>,
    conn: Conn<'a>,
}

enum Fields<'a> {
    Map(&'a HeaderMap),
    Parsed(&'a [httparse::Header<'a>]),
}

/// Where the connection's addresses and TLS state are read from.
enum Conn<'a> {
    Session(&'a ServerSession),
    /// Taken from the stream, which stays free to be written to.
    Stream {
        tls: bool,
        socket: Option<Arc<SocketDigest>>,
    },
}

impl<'a> Request<'a> {
    /// The request pingora read into `session`.
    pub fn of_session(session: &'a ServerSession) -> Self {
        let req = session.req_header();
        Request {
            method: req.method.clone(),
            path: req.uri.path(),
            query: req.uri.query(),
            authority: req.uri.authority().map(|a| a.as_str()),
            version: if session.is_http2() {
                http::Version::HTTP_2
            } else {
                req.version
            },
            fields: Fields::Map(&req.headers),
            conn: Conn::Session(session),
        }
    }

    /// The first field `name` (lower case) as text; `None` when absent or
    /// not visible ASCII (as `HeaderValue::to_str`).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        match self.fields {
            Fields::Map(m) => m.get(name).and_then(|v| v.to_str().ok()),
            Fields::Parsed(fields) => fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(name))
                .and_then(|f| visible_text(f.value)),
        }
    }

    /// Every field line `name` (lower case) as one comma-separated list
    /// (RFC 9110 5.3), for list fields such as `If-None-Match`; borrowed
    /// when there is one line. Lines that are not visible ASCII are left out.
    pub fn header_list(&self, name: &str) -> Option<std::borrow::Cow<'a, str>> {
        match self.fields {
            Fields::Map(m) => joined(m.get_all(name).iter().filter_map(|v| v.to_str().ok())),
            Fields::Parsed(fields) => joined(
                fields
                    .iter()
                    .filter(|f| f.name.eq_ignore_ascii_case(name))
                    .filter_map(|f| visible_text(f.value)),
            ),
        }
    }

    /// The fields as a header map, for the checks that want every value of
    /// a name (client keys). Built only when asked for.
    pub fn header_map(&self) -> std::borrow::Cow<'a, HeaderMap> {
        match self.fields {
            Fields::Map(m) => std::borrow::Cow::Borrowed(m),
            Fields::Parsed(fields) => {
                let mut map = HeaderMap::with_capacity(fields.len());
                for f in fields {
                    // httparse admits only token names; a value it took is
                    // one `HeaderValue` takes too.
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(f.name.as_bytes()),
                        HeaderValue::from_bytes(f.value),
                    ) {
                        map.append(n, v);
                    }
                }
                std::borrow::Cow::Owned(map)
            }
        }
    }

    /// Whether the connection is TLS.
    pub fn tls(&self) -> bool {
        match self.conn {
            Conn::Session(s) => s.digest().is_some_and(|d| d.ssl_digest.is_some()),
            Conn::Stream { tls, .. } => tls,
        }
    }

    /// Whether the client runs on this host: it comes from a loopback
    /// address, from the address it reached (this host's own, which the
    /// kernel loops back too) or over a Unix socket. Unknown counts as
    /// local.
    pub fn on_this_host(&self) -> bool {
        let (peer, local) = match self.conn {
            Conn::Session(s) => (s.client_addr(), s.server_addr()),
            Conn::Stream { ref socket, .. } => match socket {
                Some(d) => (d.peer_addr(), d.local_addr()),
                None => (None, None),
            },
        };
        let ip = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet().map(|a| a.ip()))
        };
        same_host(ip(peer), ip(local))
    }

    /// The client's IP address (asked of the kernel once per connection).
    pub fn peer(&self) -> Option<IpAddr> {
        let addr = match self.conn {
            Conn::Session(s) => s.client_addr().cloned(),
            Conn::Stream { ref socket, .. } => socket.as_ref().and_then(|d| d.peer_addr().cloned()),
        };
        addr.and_then(|a| a.as_inet().map(|a| a.ip()))
    }
}

/// Whether a client at `peer` that reached this host at `local` runs on
/// this host (`Request::on_this_host`).
fn same_host(peer: Option<IpAddr>, local: Option<IpAddr>) -> bool {
    match peer.map(|p| p.to_canonical()) {
        Some(p) => p.is_loopback() || local.map(|l| l.to_canonical()) == Some(p),
        None => true,
    }
}

/// A plain request read in place: the request, the length of its header
/// in the buffer, and whether the client keeps the connection open.
pub struct Plain<'a> {
    pub req: Request<'a>,
    pub len: usize,
    pub keep: bool,
}

/// Reads a bodiless HTTP/1.1 GET or HEAD whose whole header is in `buf`,
/// with `fields` as room for its header fields. `None` for anything else:
/// that request goes to pingora's parser, which answers a malformed one.
pub fn parse_plain<'a>(
    buf: &'a [u8],
    fields: &'a mut [httparse::Header<'a>; PLAIN_FIELDS],
    stream: &Stream,
) -> Option<Plain<'a>> {
    let mut req = httparse::Request::new(fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    let method = match req.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return None,
    };
    if req.version? != 1 {
        return None;
    }
    let target = req.path?;
    if !plain_target(target) {
        return None;
    }
    let fields: &'a [httparse::Header<'a>] = req.headers;
    let mut keep = true;
    let mut hosts = 0;
    for f in fields {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            // pingora refuses these; let it.
            if hosts > 1 || f.value.contains(&b'@') {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            // A list of tokens; `close` anywhere ends the connection, any
            // other token (`upgrade`) is pingora's business.
            for token in f.value.split(|b| *b == b',') {
                match token.trim_ascii() {
                    t if t.eq_ignore_ascii_case(b"close") => keep = false,
                    t if t.eq_ignore_ascii_case(b"keep-alive") || t.is_empty() => {}
                    _ => return None,
                }
            }
        } else if [
            &b"content-length"[..],
            b"transfer-encoding",
            b"expect",
            b"upgrade",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        {
            return None;
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Some(Plain {
        req: Request {
            method,
            path,
            query,
            authority: None,
            version: http::Version::HTTP_11,
            fields: Fields::Parsed(fields),
            conn: Conn::Stream {
                tls: stream.get_ssl_digest().is_some(),
                socket: stream.get_socket_digest(),
            },
        },
        len,
        keep,
    })
}

/// An origin-form target of only the characters a URI may hold unescaped
/// (RFC 3986 unreserved, sub-delims, `:@/?%`), so it reads the same as
/// `http::Uri` would read it. Anything else, a fragment included, is left
/// to pingora.
fn plain_target(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| URI_BYTE[usize::from(b)])
}

/// The bytes `plain_target` admits, as a table: a target is checked byte
/// by byte on every request.
static URI_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=:@/?%";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// A field value as text, when it is visible ASCII (tabs and spaces too).
/// Field lines as one list: the line itself when there is one (no
/// allocation on the common path), else joined with ", ".
fn joined<'a>(mut lines: impl Iterator<Item = &'a str>) -> Option<std::borrow::Cow<'a, str>> {
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(std::borrow::Cow::Borrowed(first));
    };
    let mut all = format!("{first}, {second}");
    for l in lines {
        all.push_str(", ");
        all.push_str(l);
    }
    Some(std::borrow::Cow::Owned(all))
}

fn visible_text(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        Box::new(tokio_test::io::Builder::new().build())
    }

    #[test]
    fn clients_on_this_host_are_told_from_remote_ones() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let cases = [
            (ip("127.0.0.1"), ip("127.0.0.1"), true),
            (ip("127.3.2.1"), None, true),
            (ip("::1"), ip("::1"), true),
            (ip("::ffff:127.0.0.1"), ip("::ffff:127.0.0.1"), true),
            // This host's own address, reached from this host.
            (ip("10.0.0.5"), ip("10.0.0.5"), true),
            (ip("::ffff:10.0.0.5"), ip("10.0.0.5"), true),
            (ip("10.0.0.5"), ip("10.0.0.1"), false),
            (ip("2001:db8::2"), ip("2001:db8::1"), false),
            (ip("192.168.1.2"), None, false),
            // A Unix socket, or nothing known.
            (None, None, true),
        ];
        for (peer, local, want) in cases {
            assert_eq!(same_host(peer, local), want, "{peer:?} at {local:?}");
        }
    }

    #[test]
    fn plain_requests_are_told_from_the_rest() {
        // (path, query, keep) of a request read in place.
        type Read<'a> = (&'a str, Option<&'a str>, bool);
        let cases: &[(&str, Option<Read>)] = &[
            (
                "GET /v3/index.json HTTP/1.1\r\nHost: a\r\n\r\n",
                Some(("/v3/index.json", None, true)),
            ),
            (
                "HEAD /a/b?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n",
                Some(("/a/b", Some("x=1&y"), true)),
            ),
            ("GET / HTTP/1.1\r\n\r\n", Some(("/", None, true))),
            (
                "GET /%41 HTTP/1.1\r\nConnection: close\r\n\r\n",
                Some(("/%41", None, false)),
            ),
            (
                "GET / HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n",
                Some(("/", None, true)),
            ),
            (
                "GET / HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n",
                Some(("/", None, false)),
            ),
            // Pipelined bytes after the header are not this request's.
            (
                "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n",
                Some(("/a", None, true)),
            ),
            // To pingora:
            ("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", None),
            (
                "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
                None,
            ),
            ("GET / HTTP/1.0\r\n\r\n", None),
            ("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", None),
            ("GET * HTTP/1.1\r\n\r\n", None),
            ("GET /a#b HTTP/1.1\r\n\r\n", None),
            ("GET /a\"b HTTP/1.1\r\n\r\n", None),
            ("GET /a{b} HTTP/1.1\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nHost: a\r\n", None),
            ("GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", None),
            ("DELETE / HTTP/1.1\r\n\r\n", None),
        ];
        let s = stream();
        for (raw, want) in cases {
            let mut fields = [httparse::EMPTY_HEADER; PLAIN_FIELDS];
            let got = parse_plain(raw.as_bytes(), &mut fields, &s)
                .map(|p| (p.req.path, p.req.query, p.keep));
            assert_eq!(got, *want, "{raw:?}");
        }
    }

    #[test]
    fn every_admitted_target_byte_reads_as_http_uri_reads_it() {
        for b in 0..=255u8 {
            if !URI_BYTE[usize::from(b)] {
                continue;
            }
            let target = format!("/a{}b?c{}d", b as char, b as char);
            assert!(plain_target(&target), "{b:#x}");
            let uri: http::Uri = target.parse().expect("admitted byte");
            let (path, query) = target.split_once('?').expect("query");
            assert_eq!((uri.path(), uri.query()), (path, Some(query)), "{b:#x}");
        }
    }

    #[test]
    fn fields_read_in_place_match_a_header_map() {
        let raw = "GET /x HTTP/1.1\r\nHost: feed.example\r\nX-ApiKey: k1\r\nx-apikey: k2\r\nIf-None-Match: \"e\"\r\nX-Odd: café\r\n\r\n";
        let s = stream();
        let mut fields = [httparse::EMPTY_HEADER; PLAIN_FIELDS];
        let p = parse_plain(raw.as_bytes(), &mut fields, &s).expect("plain");
        assert_eq!(p.len, raw.len());
        let map = p.req.header_map();
        for name in ["host", "x-apikey", "if-none-match", "x-odd", "range"] {
            let from_map = map.get(name).and_then(|v| v.to_str().ok());
            assert_eq!(p.req.header(name), from_map, "{name}");
        }
        assert_eq!(p.req.header("HOST"), Some("feed.example"));
        assert_eq!(map.get_all("x-apikey").iter().count(), 2);
        // A list field over two lines reads as one list, either way.
        let from_map = Request {
            fields: Fields::Map(&map),
            conn: Conn::Stream {
                tls: false,
                socket: None,
            },
            method: http::Method::GET,
            path: "/x",
            query: None,
            authority: None,
            version: http::Version::HTTP_11,
        };
        for r in [&p.req, &from_map] {
            assert_eq!(r.header_list("x-apikey").as_deref(), Some("k1, k2"));
            assert_eq!(r.header_list("if-none-match").as_deref(), Some("\"e\""));
            assert_eq!(r.header_list("range"), None);
        }
    }
}
