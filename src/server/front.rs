//! The connection loop: admission under the connection cap, deadlines on
//! idle keep-alive connections and on request headers, then one request
//! after another on the connection.
//!
//! pingora's own HTTP/1 loop times each read separately, so a header sent a
//! byte at a time stays open for as long as the client likes; this loop
//! bounds the whole header and lets idle or half-sent connections be closed
//! to make room for new ones (see `conns`). HTTP/2 connections (TLS with
//! ALPN `h2`) are handed to pingora's HTTP/2 server as they are.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;

use super::conns::{Conns, Slot};
use super::Handler;

/// Connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For a whole request header, from its first byte.
    pub header: Duration,
    /// For the next request on a keep-alive connection.
    pub idle: Duration,
}

/// The `ServerApp` behind every listener.
pub struct Front {
    pub handler: Arc<Handler>,
    pub conns: Arc<Conns>,
    pub deadlines: Deadlines,
}

/// How waiting for a request ended.
enum Next {
    Request,
    /// Closed, timed out, shed or shutting down: close quietly.
    Close,
    /// A malformed or unfinished header: answer this status, then close.
    Refuse(u16),
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(slot) = self.conns.admit() else {
            crate::metrics::get().connection_refused();
            return None;
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 multiplexes requests itself; its streams are served by
            // the same handler through pingora's HTTP/2 server.
            return ServerApp::process_new(&self.handler, stream, shutdown).await;
        }
        self.serve_http1(stream, &slot, shutdown).await;
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
        loop {
            let (next, mut session) = self.next_request(stream, slot, first, shutdown).await;
            match next {
                Next::Request => {}
                Next::Close => return,
                Next::Refuse(status) => {
                    let _ = session.respond_error(status).await;
                    session.shutdown().await;
                    return;
                }
            }
            first = false;
            let plain = session.digest().is_none_or(|d| d.ssl_digest.is_none());
            let mut out = self.handler.serve(&mut session, plain).await;
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let Some(file) = out.file.take() else {
                self.handler.log(session.req_header(), &out);
                if !out.reusable() {
                    return;
                }
                match session.finish().await {
                    Ok(Some(reusable)) => stream = reusable.into_parts().0,
                    _ => return,
                }
                continue;
            };
            // The header is written (buffered); the body goes out with
            // sendfile on the connection's own socket.
            let req = session.req_header().clone();
            let keep = session.as_http1().is_some_and(|h| h.will_keepalive());
            let ServerSession::H1(h1) = session else {
                return;
            };
            // A request pipelined behind this one would be lost with the
            // session's read buffer; pingora disables pipelining and no
            // NuGet client pipelines, and such a client only waits for the
            // idle deadline.
            stream = h1.into_inner();
            let mut sent = 0;
            if let Err(e) = super::sendfile::send(&mut stream, &file, &mut sent).await {
                out.failed(sent, e);
            }
            self.handler.log(&req, &out);
            if !keep || !out.reusable() {
                return;
            }
        }
    }

    /// Waits for the next request header within the deadlines, giving way
    /// when the connection is shed or the server shuts down.
    async fn next_request(
        &self,
        mut stream: Stream,
        slot: &Slot,
        first: bool,
        shutdown: &ShutdownWatch,
    ) -> (Next, ServerSession) {
        let waiting = slot.waiting();
        let mut shutdown = shutdown.clone();
        // Idle: wait for the first byte (a fresh connection gets the header
        // deadline for it, a kept-alive one the idle deadline).
        let idle = if first {
            self.deadlines.header
        } else {
            self.deadlines.idle
        };
        let mut byte = [0u8; 1];
        // pingora's coarse shared timer: a tokio timer here armed a kernel
        // hrtimer on every idle wait (measured at c1: ~15% of the CPU).
        let peeked = tokio::select! {
            biased;
            r = fast_timeout(idle, stream.try_peek(&mut byte)) => Some(r),
            _ = waiting.shed() => None,
            _ = shutdown.changed() => None,
        };
        let mut session = ServerSession::new_http1(stream);
        let idle_secs = self.deadlines.idle.as_secs().max(1);
        session.set_keepalive((!*shutdown.borrow()).then_some(idle_secs));
        // Per read while a request body is drained before reuse.
        session.set_read_timeout(Some(self.deadlines.header));
        session.set_total_drain_timeout(Some(self.deadlines.header));
        let mut header = self.deadlines.header;
        match peeked {
            Some(Ok(Ok(true))) => {}
            // Peeking unsupported (TLS): idle and header share one deadline.
            Some(Ok(Ok(false))) if !first => header += self.deadlines.idle,
            Some(Ok(Ok(false))) => {}
            _ => return (Next::Close, session),
        }
        let read = tokio::select! {
            biased;
            r = fast_timeout(header, session.read_request()) => r,
            _ = waiting.shed() => return (Next::Close, session),
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
