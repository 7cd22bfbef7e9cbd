//! The connection loop: admission under the connection cap, deadlines on
//! idle keep-alive connections and on request headers, then one request
//! after another on the connection.
//!
//! pingora's own HTTP/1 loop times each read separately, so a header sent a
//! byte at a time stays open for as long as the client likes; this loop
//! bounds the whole header and lets idle or half-sent connections be closed
//! to make room for new ones (see `conns`). HTTP/2 connections (TLS with
//! ALPN `h2`) are handed to pingora's HTTP/2 server as they are.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use memchr::memmem;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;
use tokio::io::AsyncReadExt;

use super::conns::{Conns, Slot};
use super::raw::Raw;
use super::request::{parse_plain, PLAIN_FIELDS};
use super::{Conn, Handler, Left, Outcome, Pending};

/// Bytes read at once for the start of a request: a NuGet GET fits.
const FIRST_READ: usize = 4096;

/// Connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For a whole request header, from its first byte.
    pub header: Duration,
    /// For the next request on a keep-alive connection.
    pub idle: Duration,
    /// For the client to take more of a response.
    pub send: Duration,
}

/// The `ServerApp` behind every listener.
pub struct Front {
    pub handler: Arc<Handler>,
    pub conns: Arc<Conns>,
    pub deadlines: Deadlines,
}

/// How a connection goes on after a reply.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    /// It carries the next request.
    Next,
    /// The reply asked for a close: linger (`linger.rs`), then close.
    Close,
    /// It failed: close at once.
    Broken,
}

/// How a request read in place (`serve_plain`) went.
enum Plain {
    /// Answered; the next request on the connection, if `after` allows
    /// one, may have begun after the first `len` bytes.
    Done { len: usize, after: After },
    /// Answered, but the reply needs a pingora session to be written.
    Rest(Box<(Pending, Outcome)>),
    /// Not a plain request: pingora reads it.
    No,
}

/// How waiting for a request ended.
enum Next {
    Request,
    /// Closed, timed out, shed or shutting down: close quietly.
    Close,
    /// A malformed or unfinished header: answer this status, then close
    /// (lingering after a 400).
    Refuse(u16),
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.conns.watch_shutdown(shutdown);
        let Some(slot) = self.conns.admit() else {
            crate::metrics::get().connection_refused();
            return None;
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 multiplexes requests itself; its streams are served by
            // the same handler through pingora's HTTP/2 server.
            return ServerApp::process_new(&self.handler, stream, shutdown).await;
        }
        self.serve_http1(super::rehome::rehome(stream), &slot, shutdown)
            .await;
        None
    }

    /// The listeners are closed: write out the buffered log before the
    /// process winds down.
    async fn cleanup(&self) {
        crate::logging::flush();
    }
}

impl Front {
    async fn serve_http1(&self, mut stream: Stream, slot: &Slot, shutdown: &ShutdownWatch) {
        let mut first = true;
        // Bytes of the next request read along with the last one (a client
        // that pipelines), or the emptied buffer of the last one to read
        // into again.
        let mut prefix: Option<BytesMut> = None;
        loop {
            let Some(mut start) = self
                .first_bytes(&mut stream, prefix.take(), slot, first)
                .await
            else {
                return;
            };
            first = false;
            let mut pending = None;
            if holds_whole_header(&start) {
                match self.serve_plain(&mut stream, &start, shutdown).await {
                    Plain::Done {
                        len,
                        after: After::Next,
                    } => {
                        start.advance(len);
                        prefix = Some(start);
                        continue;
                    }
                    Plain::Done { after, .. } => return self.close(stream, after, slot).await,
                    Plain::Rest(rest) => pending = Some(*rest),
                    Plain::No => {}
                }
            }
            let (next, mut session) = self.read_request(stream, start, slot, shutdown).await;
            match next {
                Next::Request => {}
                Next::Close => return,
                Next::Refuse(status) => {
                    if session.respond_error(status).await.is_err() {
                        return;
                    }
                    // A header out of time gets no more time: lingering
                    // would give a client trickling one (slowloris) its
                    // slot that much longer.
                    if status == 408 {
                        session.shutdown().await;
                        return;
                    }
                    // The rest of a header too long or malformed, or a
                    // body after it, may still be coming: linger, so the
                    // reply is not lost to a reset.
                    let ServerSession::H1(h1) = session else {
                        return;
                    };
                    return self.close(h1.into_inner(), After::Close, slot).await;
                }
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let mut out = match pending {
                // Answered already; only the writing needs the session.
                Some((rest, mut out)) => {
                    self.handler.write(&mut session, rest, &mut out).await;
                    out
                }
                None => {
                    let plain = session.digest().is_none_or(|d| d.ssl_digest.is_none());
                    self.handler.serve(&mut session, Some(plain)).await
                }
            };
            let Some(raw) = out.raw.take() else {
                let req = session.req_header();
                self.handler.log(&req.method, req.uri.path(), &out);
                if !out.reusable() {
                    return;
                }
                if !session.as_http1().is_some_and(|h| h.will_keepalive()) {
                    // The reply said `Connection: close`: linger on the
                    // stream rather than have pingora close it.
                    let ServerSession::H1(mut h1) = session else {
                        return;
                    };
                    if h1.finish_body().await.is_err() {
                        return;
                    }
                    return self.close(h1.into_inner(), After::Close, slot).await;
                }
                match session.finish().await {
                    Ok(Some(reusable)) => (stream, prefix) = reusable.into_parts(),
                    _ => return,
                }
                continue;
            };
            // The reply is written here, on the connection's own stream: the
            // session ends first (handing back the stream and any pipelined
            // bytes), so the access log keeps what it needs of the request.
            let ServerSession::H1(h1) = session else {
                return;
            };
            let (method, uri) = (h1.req_header().method.clone(), h1.req_header().uri.clone());
            if raw.keep {
                match h1.reuse().await {
                    Ok(Some(reusable)) => (stream, prefix) = reusable.into_parts(),
                    _ => return,
                }
            } else {
                stream = h1.into_inner();
            }
            match self
                .send_raw(&mut stream, raw, out, &method, uri.path())
                .await
            {
                After::Next => {}
                after => return self.close(stream, after, slot).await,
            }
        }
    }

    /// Writes a raw reply and logs the request; how the connection goes
    /// on.
    async fn send_raw(
        &self,
        stream: &mut Stream,
        raw: Raw,
        mut out: Outcome,
        method: &http::Method,
        path: &str,
    ) -> After {
        let keep = raw.keep;
        let mut sent = super::raw::Progress::default();
        if let Err(e) = super::raw::write(stream, raw, &mut sent, self.deadlines.send).await {
            out.failed(&sent, e);
        }
        self.handler.log(method, path, &out);
        match (out.reusable(), keep) {
            (false, _) => After::Broken,
            (true, true) => After::Next,
            (true, false) => After::Close,
        }
    }

    /// Ends a connection after its last reply: a lingering close when the
    /// reply asked for it, else at once.
    async fn close(&self, mut stream: Stream, after: After, slot: &Slot) {
        if after == After::Close {
            super::linger::linger(&mut stream, slot).await;
        }
    }

    /// Answers a plain request (`request::parse_plain`) read in place from
    /// `start`, without a pingora session, as far as it can.
    async fn serve_plain(
        &self,
        stream: &mut Stream,
        start: &[u8],
        shutdown: &ShutdownWatch,
    ) -> Plain {
        let mut fields = [httparse::EMPTY_HEADER; PLAIN_FIELDS];
        let Some(p) = parse_plain(start, &mut fields, stream) else {
            return Plain::No;
        };
        let conn = Conn {
            plain: !p.req.tls(),
            keep: p.keep && !*shutdown.borrow(),
        };
        let (out, raw) = match self.handler.answer(&p.req, Some(conn)).await {
            (out, Left::Raw(raw)) => (out, raw),
            (out, Left::Session(rest)) => return Plain::Rest(Box::new((rest, out))),
        };
        let after = self
            .send_raw(stream, raw, out, &p.req.method, p.req.path)
            .await;
        Plain::Done { len: p.len, after }
    }

    /// Waits for the first bytes of the next request within the deadlines,
    /// giving way when the connection is shed or the server shuts down.
    /// `None`: closed, idle too long, shed or shutting down.
    async fn first_bytes(
        &self,
        stream: &mut Stream,
        prefix: Option<BytesMut>,
        slot: &Slot,
        first: bool,
    ) -> Option<BytesMut> {
        // Idle: wait for the first byte (a fresh connection gets the header
        // deadline for it, a kept-alive one the idle deadline).
        let idle = if first {
            self.deadlines.header
        } else {
            self.deadlines.idle
        };
        // The first bytes of the request are read here and handed to the
        // session as the start of its header: one read per request, also on
        // streams without a read buffer (`rehome.rs`) and on TLS. The idle
        // deadline, a newcomer over the cap and the shutdown all end the
        // wait through the slot (`conns.rs`): no timer per wait (a tokio
        // timer here armed a kernel hrtimer on every idle wait, measured at
        // c1: ~15% of the CPU; pingora's coarse one still cost ~3%).
        let mut start = match prefix.map(skip_blank_lines) {
            // The next request has begun already.
            Some(p) if !p.is_empty() => return Some(p),
            // The last request's buffer, read into again.
            Some(mut p) => {
                p.clear();
                p.reserve(FIRST_READ);
                p
            }
            None => BytesMut::with_capacity(FIRST_READ),
        };
        let got = slot.wait_for(Some(idle), stream.read_buf(&mut start)).await;
        matches!(got, Some(Ok(n)) if n > 0).then_some(start)
    }

    /// Reads the request that begins with `prefix` through a pingora
    /// session, under the header deadline.
    async fn read_request(
        &self,
        stream: Stream,
        prefix: BytesMut,
        slot: &Slot,
        shutdown: &ShutdownWatch,
    ) -> (Next, ServerSession) {
        let mut session = ServerSession::new_http1(stream);
        let idle_secs = self.deadlines.idle.as_secs().max(1);
        session.set_keepalive((!*shutdown.borrow()).then_some(idle_secs));
        // Per read while a request body is drained before reuse.
        session.set_read_timeout(Some(self.deadlines.header));
        session.set_total_drain_timeout(Some(self.deadlines.header));
        let ServerSession::H1(h1) = &mut session else {
            return (Next::Close, session);
        };
        // Requests a client pipelines are answered in order, not dropped
        // with the connection.
        h1.set_pipelining_enabled(true);
        let whole = holds_whole_header(&prefix);
        h1.set_pipelined_prefix(prefix);
        let header = self.deadlines.header;
        let read = if whole {
            // Nearly every request arrives whole in the first read: parsing
            // it waits for no I/O, so arming the header deadline and the shed
            // signal for it was pure cost (about a tenth of a c1 hit's user
            // CPU went to the two deadlines and the select).
            Ok(session.read_request().await)
        } else {
            // The rest of the header: under the header deadline (from its
            // first byte), and closable for a newcomer meanwhile.
            let read = fast_timeout(header, session.read_request());
            match slot.wait_for(None, read).await {
                Some(r) => r,
                None => return (Next::Close, session),
            }
        };
        let next = match read {
            Ok(Ok(true)) => Next::Request,
            Ok(Ok(false)) => Next::Close,
            Ok(Err(e)) if e.etype() == &pingora::ErrorType::InvalidHTTPHeader => Next::Refuse(400),
            Ok(Err(_)) => Next::Close,
            Err(_) => {
                crate::metrics::get().header_timeout();
                Next::Refuse(408)
            }
        };
        (next, session)
    }
}

/// The bytes read after a request without the empty lines they begin
/// with: some clients end a request with an extra CRLF, which RFC 9112
/// (2.2) says a server should ignore. Left in, it would be taken for the
/// start of a header and wait under the header deadline for a request
/// that never comes (a 408 where an idle close is due).
fn skip_blank_lines(mut rest: BytesMut) -> BytesMut {
    let blank = rest
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    rest.advance(blank);
    rest
}

/// Whether `start` (the first bytes read for a request) holds its whole
/// header, so parsing it cannot wait for the client. A header ends with an
/// empty line; one that begins with a line break (empty lines before the
/// request line, which a parser skips) is left to the guarded path.
fn holds_whole_header(start: &[u8]) -> bool {
    // A client that sends one request at a time ends its read with the
    // empty line: checked first, without a search. `memmem::find` would
    // build its searcher on every call (0.4% of a 10 KB hit's samples).
    static END: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));
    !matches!(start.first(), None | Some(b'\r' | b'\n'))
        && (start.ends_with(b"\r\n\r\n") || END.find(start).is_some())
}

#[cfg(test)]
mod tests {
    use super::{holds_whole_header, skip_blank_lines};
    use bytes::BytesMut;

    #[test]
    fn empty_lines_after_a_request_are_skipped() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"\r\n", b""),
            (b"\n", b""),
            (b"\r\n\r\n", b""),
            (b"\r", b""),
            (b"\r\nGET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"),
            // Only leading ones: the header's own line ends stay.
            (b"\nG\r\n", b"G\r\n"),
            (b" \r\n", b" \r\n"),
        ];
        for (rest, want) in cases {
            let got = skip_blank_lines(BytesMut::from(*rest));
            assert_eq!(&got[..], *want, "{:?}", String::from_utf8_lossy(rest));
        }
    }

    #[test]
    fn whole_headers_are_told_from_partial_ones() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\n\r\n", true),
            // A pipelined second request after the first's end.
            (b"GET /a HTTP/1.1\r\n\r\nGET /b HT", true),
            (b"PUT /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", true),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r", false),
            (b"GET / HTTP/1.1\n\n", false),
            (b"\r\n\r\n", false),
            (b"\r\nGET / HTTP/1.1\r\n\r\n", false),
            (b"", false),
        ];
        for (start, want) in cases {
            assert_eq!(
                holds_whole_header(start),
                *want,
                "{:?}",
                String::from_utf8_lossy(start)
            );
        }
    }
}
