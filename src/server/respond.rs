//! How a `Reply` answers a request (`plan`: conditional and range requests,
//! HEAD, raw or through the session), and writing it or an `AppError` to a
//! pingora session: streaming from memory, disk or a running fill.

use std::borrow::Cow;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession as Session;

use super::head::Head;
use super::range::{if_range_holds, none_match, parse_range, RangeAsk};
use super::raw::{Raw, RawBody};
use super::request::Request;
use super::sendfile::{FileBody, SENDFILE_MIN};
use crate::app::{Body, Reply};
use crate::cache::read_at;
use crate::error::AppError;
use crate::rewrite::rendered;

/// Disk reads are done in blocks this large.
const DISK_BLOCK: usize = 256 * 1024;
/// Mapped bodies are handed to the connection in slices this large, so one
/// big response does not hold a worker for its whole length at once.
const MAP_BLOCK: usize = 1024 * 1024;

/// How a reply may be written.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Through the pingora session (HTTP/2).
    Session,
    /// HTTP/1: a body at hand is handed back with its head as bytes, for the
    /// connection loop to write (`keep`: the connection stays open after
    /// it); `sendfile` says which large disk bodies go by `sendfile`.
    H1 { keep: bool, sendfile: Sendfile },
}

/// Which large disk bodies an HTTP/1 connection sends with `sendfile(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sendfile {
    /// None (TLS: the bytes must pass through rustls).
    Never,
    /// Those not held mapped (entries over `MAP_MAX`): the rest are written
    /// from their mapping, as Varnish writes from its memory. The client
    /// then reads pages the server's copy just brought into the shared
    /// cache instead of cold page-cache pages, which measured faster at a
    /// lower CPU cost per hit at one connection and faster at 64
    /// (BENCHMARKS.md).
    Unmapped,
    /// Those not held mapped, and mapped ones too when the client is on
    /// another host (`sendfile = "auto"`): what warms the cache for a
    /// reader on this host is a wasted copy for a network card.
    Remote,
    /// Every one (`sendfile = true`): no copy in feedcache at all, about
    /// half the CPU per large hit at high concurrency, for hosts where the
    /// server's CPU rather than the client's is what runs out.
    Always,
}

impl Mode {
    /// Whether a cached body whose file is at hand (on disk, or held in
    /// memory as its mapping), mapped or not, leaves by `sendfile`;
    /// `on_this_host` tells (when asked) whether the client is local.
    fn sendfile(self, mapped: bool, on_this_host: impl FnOnce() -> bool) -> bool {
        match self {
            Mode::H1 { sendfile, .. } => match sendfile {
                Sendfile::Never => false,
                Sendfile::Unmapped => !mapped,
                Sendfile::Remote => !mapped || !on_this_host(),
                Sendfile::Always => true,
            },
            Mode::Session => false,
        }
    }
}

/// What was sent, for the access log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub status: u16,
    pub bytes: u64,
}

/// How a successful reply leaves, decided before anything is written.
pub enum Plan {
    /// Written by the connection loop itself (HTTP/1, a body at hand).
    Raw(Sent, Raw),
    /// Through the pingora session (`write_streamed`).
    Session(Streamed),
    /// An error response instead (a range that cannot be satisfied).
    Error(AppError),
}

/// A reply for the pingora session: HTTP/2, a body that streams in, or a
/// head only pingora may write.
pub struct Streamed {
    head: Head<'static>,
    body: Body,
    start: u64,
    len: Option<u64>,
    /// HEAD or 304: the head alone.
    head_only: bool,
}

/// Decides how `reply` answers `req`: its head (validators, range), and
/// whether it leaves raw (`Mode::H1` and a body at hand) or through the
/// session. Nothing is written yet, so a request read without a pingora
/// session (`request::parse_plain`) needs one only when this says so.
pub fn plan(reply: Reply, req: &Request<'_>, public_base: &str, mode: Mode) -> Plan {
    let Reply {
        meta,
        body,
        cache,
        missing,
    } = reply;
    let (body, etag) = match body {
        // Rendered per public base, so the validator differs per base too.
        Body::Bytes(b) | Body::Held { body: b, .. } if meta.templated => {
            let (body, etag) = rendered(&meta.etag, &b, public_base);
            (Body::Bytes(body), Cow::Owned(etag))
        }
        Body::Template { https, http } => {
            let b = if public_base.starts_with("https:") {
                https
            } else {
                http
            };
            let (body, etag) = rendered(&meta.etag, &b, public_base);
            (Body::Bytes(body), Cow::Owned(etag))
        }
        other => (other, Cow::Borrowed(meta.etag.as_str())),
    };
    let is_head = req.method == http::Method::HEAD;

    let mut head = Head::new(200);
    head.push("X-Content-Type-Options", "nosniff");
    if meta.templated {
        // Rendered with the request's host name: shared caches must not
        // hand one client's rendering to another.
        head.push("Vary", "Host, X-Forwarded-Host, X-Forwarded-Proto");
    }
    head.push("ETag", etag.as_ref());
    if let Some(lm) = &meta.last_modified {
        head.push("Last-Modified", lm.as_str());
    }
    head.push("X-Cache", cache);
    if let Some(m) = &missing {
        head.push("X-Feedcache-Missing", m.as_str());
    }

    if none_match(req.header_list("if-none-match").as_deref(), &etag) {
        head.status = 304;
        let sent = Sent {
            status: 304,
            bytes: 0,
        };
        if let Some(raw) = raw_reply(&head, RawBody::None, mode) {
            return Plan::Raw(sent, raw);
        }
        return Plan::Session(Streamed {
            head: head.into_owned(),
            body,
            start: 0,
            len: None,
            head_only: true,
        });
    }
    head.push("Content-Type", meta.content_type.as_str());
    if let Some(enc) = &meta.content_encoding {
        head.push("Content-Encoding", enc.as_str());
    }

    // (A `Template` was rendered into `Bytes` above.)
    let total = match &body {
        Body::Bytes(b) | Body::Template { https: b, .. } | Body::Held { body: b, .. } => {
            Some(b.len() as u64)
        }
        Body::Disk(d) => Some(d.len),
        Body::Fill(_, len) | Body::Stream(_, len) => *len,
        Body::Extract(x) => Some(x.size),
    };
    // A fill in progress is sent whole: ranges are served once it is cached.
    // Extracted files are inflated front to back, so they are sent whole too.
    // HEAD ignores Range (RFC 9110 §14.2), and a failed If-Range asks for
    // the whole current body.
    let ask = match (&body, total) {
        (Body::Fill(..) | Body::Stream(..) | Body::Extract(_), _) | (_, None) => RangeAsk::Full,
        _ if is_head => RangeAsk::Full,
        (_, Some(len)) => match req.header("range") {
            Some(r)
                if if_range_holds(req.header("if-range"), &etag, meta.last_modified.as_deref()) =>
            {
                parse_range(Some(r), len)
            }
            _ => RangeAsk::Full,
        },
    };
    let (start, len) = match (ask, total) {
        (RangeAsk::Unsatisfiable, Some(t)) => return Plan::Error(AppError::RangeNotSatisfiable(t)),
        (RangeAsk::Partial(a, b), Some(t)) => {
            head.status = 206;
            head.push("Content-Range", format!("bytes {a}-{b}/{t}"));
            (a, Some(b - a + 1))
        }
        (_, total) => (0, total),
    };
    if !matches!(body, Body::Fill(..) | Body::Stream(..) | Body::Extract(_)) {
        head.push("Accept-Ranges", "bytes");
    }
    match len {
        Some(n) => head.push("Content-Length", n),
        // HTTP/1.1 needs chunked framing to show where an unknown-length body
        // ends (and that it ended); HTTP/2 frames it itself; HTTP/1.0 has no
        // chunked framing (RFC 9112 6.1): its body ends with the connection
        // (`write_streamed`).
        None if req.version == http::Version::HTTP_11 => head.push("Transfer-Encoding", "chunked"),
        None => {}
    }
    let status = head.status;
    // Bodies that are whole at hand leave on HTTP/1 without pingora's
    // header machinery (`head.rs`); the rest stream through the session.
    // A cached body with its file at hand (on disk, or held in memory as
    // the file's mapping) goes by `sendfile` where it is large and the
    // connection and the policy allow (`Sendfile`); an unmapped one would
    // otherwise be read through user space block by block.
    let on_file = match &body {
        Body::Held { file, offset, .. } => Some((file, *offset, true)),
        Body::Disk(d) => Some((&d.file, d.offset, d.map.is_some())),
        _ => None,
    };
    let by_sendfile = match (on_file, len) {
        (Some((file, offset, mapped)), Some(n))
            if !is_head && n >= SENDFILE_MIN && mode.sendfile(mapped, || req.on_this_host()) =>
        {
            Some(RawBody::File(FileBody {
                file: file.clone(),
                offset: offset + start,
                len: n,
            }))
        }
        _ => None,
    };
    let at_hand = match (&body, len) {
        _ if is_head => Some(RawBody::None),
        _ if by_sendfile.is_some() => by_sendfile,
        (
            Body::Bytes(b) | Body::Template { https: b, .. } | Body::Held { body: b, .. },
            Some(n),
        ) => Some(RawBody::Bytes(slice_of(b, start, n))),
        (Body::Disk(d), Some(n)) => d
            .map
            .as_ref()
            .map(|m| RawBody::Bytes(slice_of(m, start, n))),
        _ => None,
    };
    let bytes = if is_head { 0 } else { len.unwrap_or(0) };
    if let Some(raw) = at_hand.and_then(|b| raw_reply(&head, b, mode)) {
        return Plan::Raw(Sent { status, bytes }, raw);
    }
    Plan::Session(Streamed {
        head: head.into_owned(),
        body,
        start,
        len,
        head_only: is_head,
    })
}

/// Writes a `Plan::Session` reply. An `Err` after the header went out
/// means the body could not be completed; the caller must drop the
/// connection.
pub async fn write_streamed(session: &mut Session, reply: Streamed) -> Result<Sent> {
    let Streamed {
        head,
        body,
        start,
        len,
        head_only,
    } = reply;
    let status = head.status;
    if len.is_none() && session.req_header().version == http::Version::HTTP_10 {
        // Close-delimited: no keep-alive after it (`plan`).
        session.set_keepalive(None);
    }
    session.write_response_header(head.to_pingora()?).await?;
    if head_only {
        return Ok(Sent { status, bytes: 0 });
    }

    let mut sent = 0u64;
    match body {
        Body::Bytes(b) | Body::Template { https: b, .. } | Body::Held { body: b, .. } => {
            let part = slice_of(&b, start, len.unwrap_or(0));
            sent = part.len() as u64;
            session.write_response_body(part, true).await?;
        }
        Body::Disk(d) if d.map.is_some() => {
            let map = d.map.unwrap_or_default();
            let end = usize::try_from(start + len.unwrap_or(0))
                .unwrap_or(map.len())
                .min(map.len());
            let mut pos = usize::try_from(start).unwrap_or(end).min(end);
            if pos == end {
                session.write_response_body(Bytes::new(), true).await?;
            }
            // Slices of the mapping: no copy until the socket write.
            while pos < end {
                let next = (pos + MAP_BLOCK).min(end);
                sent += (next - pos) as u64;
                session
                    .write_response_body(map.slice(pos..next), next == end)
                    .await?;
                pos = next;
            }
        }
        Body::Disk(d) => {
            let end = start + len.unwrap_or(0);
            let mut pos = start;
            while pos < end {
                let n = usize::try_from(end - pos)
                    .unwrap_or(DISK_BLOCK)
                    .min(DISK_BLOCK);
                let chunk = read_at(d.file.clone(), d.offset + pos, n)
                    .await
                    .map_err(|e| internal(&AppError::from(e)))?;
                if chunk.is_empty() {
                    return Err(internal(&AppError::BadUpstream(
                        "cache entry shorter than recorded".into(),
                    )));
                }
                pos += chunk.len() as u64;
                sent += chunk.len() as u64;
                session.write_response_body(chunk, pos == end).await?;
            }
        }
        Body::Fill(mut reader, _) => loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => {
                    sent += chunk.len() as u64;
                    session.write_response_body(chunk, false).await?;
                }
                Ok(None) => {
                    session.write_response_body(Bytes::new(), true).await?;
                    break;
                }
                Err(e) => return Err(internal(&e)),
            }
        },
        Body::Stream(mut stream, _) => loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    sent += chunk.len() as u64;
                    session.write_response_body(chunk, false).await?;
                }
                None => {
                    session.write_response_body(Bytes::new(), true).await?;
                    break;
                }
                Some(Err(e)) => return Err(internal(&e)),
            }
        },
        Body::Extract(mut x) => loop {
            match x.body.recv().await {
                Some(Ok(chunk)) => {
                    sent += chunk.len() as u64;
                    session.write_response_body(chunk, false).await?;
                }
                None if sent == x.size => {
                    session.write_response_body(Bytes::new(), true).await?;
                    break;
                }
                None => {
                    let e = crate::extract::ExtractError::Corrupt("extraction stopped".into());
                    return Err(internal(&AppError::from(e)));
                }
                Some(Err(e)) => return Err(internal(&AppError::from(e))),
            }
        },
    }
    Ok(Sent {
        status,
        bytes: sent,
    })
}

/// `n` bytes of `b` from `start`, within its bounds.
fn slice_of(b: &Bytes, start: u64, n: u64) -> Bytes {
    let end = usize::try_from(start + n).unwrap_or(b.len()).min(b.len());
    b.slice(usize::try_from(start).unwrap_or(0).min(end)..end)
}

/// The reply written by the connection loop itself, when `mode` allows and
/// the head can be written as it is.
fn raw_reply(head: &Head<'_>, body: RawBody, mode: Mode) -> Option<Raw> {
    // (A `RawBody::File` is only made where `mode` allows `sendfile`.)
    let Mode::H1 { keep, .. } = mode else {
        return None;
    };
    let date = pingora::protocols::http::date::get_cached_date();
    let head = head.to_h1(date.as_bytes(), keep)?;
    Some(Raw { head, body, keep })
}

/// Writes an error response with a short plain-text message.
pub async fn write_error(session: &mut Session, e: &AppError) -> Result<Sent> {
    let r = e.response();
    let body = Bytes::from(r.body);
    let mut resp = ResponseHeader::build(r.status, Some(2 + r.headers.len()))?;
    resp.insert_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    for (name, value) in r.headers {
        resp.insert_header(name, value)?;
    }
    let is_head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(resp)).await?;
    if !is_head {
        session.write_response_body(body.clone(), true).await?;
    }
    Ok(Sent {
        status: r.status,
        bytes: if is_head { 0 } else { body.len() as u64 },
    })
}

/// An error that aborts a response mid-body.
fn internal(e: &AppError) -> Box<Error> {
    Error::explain(ErrorType::InternalError, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_disk_bodies_go_by_sendfile() {
        let h1 = |sendfile| Mode::H1 {
            keep: true,
            sendfile,
        };
        // (mode, mapped, client on this host, by sendfile)
        let cases = [
            (Mode::Session, false, false, false),
            (Mode::Session, true, false, false),
            (h1(Sendfile::Never), false, false, false),
            (h1(Sendfile::Never), true, false, false),
            (h1(Sendfile::Unmapped), false, true, true),
            (h1(Sendfile::Unmapped), true, false, false),
            (h1(Sendfile::Unmapped), true, true, false),
            (h1(Sendfile::Remote), false, true, true),
            (h1(Sendfile::Remote), false, false, true),
            (h1(Sendfile::Remote), true, true, false),
            (h1(Sendfile::Remote), true, false, true),
            (h1(Sendfile::Always), false, true, true),
            (h1(Sendfile::Always), true, true, true),
        ];
        for (mode, mapped, here, want) in cases {
            assert_eq!(
                mode.sendfile(mapped, || here),
                want,
                "{mode:?}, mapped: {mapped}, on this host: {here}"
            );
        }
    }
}
