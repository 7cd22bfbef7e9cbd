//! The pingora front end: pingora accepts connections (TCP, TLS, HTTP/2)
//! and parses HTTP; `front` runs each connection under the connection cap
//! and deadlines, and `Handler` answers every request from the cache core.
//! pingora's proxy pipeline (`ProxyHttp`) is not used: feedcache answers
//! every request itself, and skipping its per-request filter phases and
//! modules is measurably cheaper (BENCHMARKS.md).

mod conns;
mod front;
mod head;
mod linger;
mod range;
mod raw;
mod rehome;
mod request;
mod respond;
mod sendfile;
mod stall;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

use crate::app::{App, Body};
use crate::config::SendfilePolicy;
use crate::error::AppError;
use crate::rewrite::public_base;
use crate::routes::route;
use crate::routes::transparent::{is_transparent, map_path};
pub use conns::Conns;
use front::{Deadlines, Front};
use raw::Raw;
use request::Request;
use respond::{plan, write_error, write_streamed, Mode, Plan, Sendfile, Sent, Streamed};

/// Per-connection write buffer of TLS connections (see `build`).
const WRITE_BUFFER: usize = 16 * 1024;
/// TLS reads whole records (up to 16 KiB).
const TLS_READ_BUFFER: usize = 16 * 1024;

/// Status logged for a client that closed its connection before the
/// response header went out (nginx's convention).
const CLIENT_CLOSED: u16 = 499;

/// Answers requests: one per call of `serve`, on HTTP/1 or HTTP/2.
pub struct Handler {
    app: Arc<App>,
    /// `host:port` used in rewritten URLs when a request carries no usable Host.
    fallback_host: String,
    /// For pingora's HTTP/2 server: the idle deadline of HTTP/1 keep-alive
    /// connections applies to HTTP/2 connections too.
    options: HttpServerOptions,
}

/// What one request did, for the access log and metrics.
pub struct Outcome {
    route: &'static str,
    cache: &'static str,
    /// Where the body came from, for metrics.
    tier: &'static str,
    sent: Sent,
    /// Why the response could not be completed.
    error: Option<Box<Error>>,
    /// A reply for the connection loop to write itself (HTTP/1).
    pub raw: Option<Raw>,
    start: Instant,
}

impl Outcome {
    /// Whether the connection may carry another request.
    pub fn reusable(&self) -> bool {
        self.error.is_none()
    }

    /// A raw reply could not be sent completely; `sent` went out.
    pub fn failed(&mut self, sent: &raw::Progress, e: std::io::Error) {
        self.sent.bytes = sent.body;
        self.sent.status = sent.logged_status(self.sent.status);
        self.error = Some(Error::because(ErrorType::WriteError, "writing reply", e));
    }
}

impl Handler {
    /// Metrics and the access-log line of a finished request.
    pub fn log(&self, method: &http::Method, path: &str, out: &Outcome) {
        let start = out.start;
        crate::metrics::get().request(
            out.route,
            out.cache,
            out.tier,
            out.sent.status,
            out.sent.bytes,
        );
        if crate::logging::access_enabled() {
            crate::logging::access(&crate::logging::Access {
                method: method.as_str(),
                path,
                route: out.route,
                cache: out.cache,
                status: out.sent.status,
                bytes: out.sent.bytes,
                elapsed: start.elapsed(),
            });
        }
        if let Some(e) = &out.error {
            tracing::debug!(path, error = %e, "response not completed");
        }
    }

    /// Answers the request read into `session`. On HTTP/1 (`h1` says
    /// whether the connection is plain TCP), a reply whose body is at hand
    /// is left in `Outcome::raw` for the caller to write; `log` records the
    /// request once it is done.
    pub async fn serve(&self, session: &mut ServerSession, h1: Option<bool>) -> Outcome {
        // No route reads a request body. With one declared, the reply closes
        // the connection (lingering) instead of first draining a body the
        // client may hold back for a `100 Continue` it would never get.
        if h1.is_some() && !session.is_body_empty() {
            session.set_keepalive(None);
        }
        let conn = h1.map(|plain| Conn {
            plain,
            keep: session.as_http1().is_some_and(|h| h.will_keepalive()),
        });
        let (mut out, left) = self.answer(&Request::of_session(session), conn).await;
        match left {
            Left::Raw(raw) => out.raw = Some(raw),
            Left::Session(rest) => self.write(session, rest, &mut out).await,
        }
        out
    }

    /// Routes, authenticates and answers `req`, and decides how the reply
    /// leaves: on HTTP/1 (`conn`) a reply whose body is at hand is left raw
    /// for the connection loop to write; the rest needs a pingora session,
    /// which `write` writes it to.
    pub async fn answer(&self, req: &Request<'_>, conn: Option<Conn>) -> (Outcome, Left) {
        let mut out = Outcome {
            route: "-",
            cache: "-",
            tier: "-",
            sent: Sent::default(),
            error: None,
            raw: None,
            start: Instant::now(),
        };
        // HTTP/2 carries the host as :authority, not Host.
        let host = req.header("host").or(req.authority);
        // Transparent mode: nuget.org's own layout for its own host name.
        let path = if is_transparent(host, &self.app.config.transparent_hosts) {
            map_path(req.path)
        } else {
            std::borrow::Cow::Borrowed(req.path)
        };
        let routed = route(&req.method, &path, req.query);
        let reply = match &routed {
            Ok((r, query)) => {
                out.route = r.kind();
                let checked =
                    self.app
                        .auth
                        .check(r.auth_class(), || req.header_map(), query.credential());
                match checked {
                    Ok(()) => self.app.handle(r, query.clean()).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(AppError::from(e.clone())),
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                if e.deserves_warning() {
                    tracing::warn!(path = req.path, error = %e, "request failed");
                }
                return (out, Left::Session(Pending::Error(e)));
            }
        };
        out.cache = reply.cache;
        out.tier = match &reply.body {
            // Fetched for this request, answered from memory.
            Body::Bytes(_) if reply.cache == "MISS" => "upstream",
            Body::Bytes(_) | Body::Template { .. } | Body::Held { .. } => "memory",
            Body::Disk(_) => "disk",
            Body::Fill(..) | Body::Stream(..) => "upstream",
            Body::Extract(_) => "package",
        };
        // Only rewritten documents need the base URL; skip the work on the
        // package path.
        let base = if reply.meta.templated {
            // Forwarded headers only from a configured reverse proxy: anyone
            // else could make feedcache write their host into the URLs it
            // serves.
            let trusted = self.app.config.trusts(req.peer());
            let fwd = |name| trusted.then(|| req.header(name)).flatten();
            public_base(
                self.app.config.public_url.as_ref().map(url::Url::as_str),
                fwd("x-forwarded-proto"),
                fwd("x-forwarded-host"),
                host,
                &self.fallback_host,
                req.tls(),
            )
        } else {
            String::new()
        };
        let mode = match conn {
            Some(c) => Mode::H1 {
                keep: c.keep,
                sendfile: match (c.plain, self.app.config.sendfile) {
                    (false, _) => Sendfile::Never,
                    (true, SendfilePolicy::Mapped) => Sendfile::Unmapped,
                    (true, SendfilePolicy::Auto) => Sendfile::Remote,
                    (true, SendfilePolicy::Always) => Sendfile::Always,
                },
            },
            None => Mode::Session,
        };
        match plan(reply, req, &base, mode) {
            Plan::Raw(sent, raw) => {
                out.sent = sent;
                (out, Left::Raw(raw))
            }
            Plan::Session(s) => (out, Left::Session(Pending::Streamed(s))),
            Plan::Error(e) => (out, Left::Session(Pending::Error(e))),
        }
    }

    /// Writes what `answer` left for the session, recording in `out` what
    /// went out.
    pub async fn write(&self, session: &mut ServerSession, rest: Pending, out: &mut Outcome) {
        // Each body write pingora makes (HTTP/2, TLS, streamed fills) waits
        // for the client at most this long.
        session.set_write_timeout(Some(self.app.config.connections.send_timeout));
        let written = match rest {
            Pending::Streamed(s) => write_streamed(session, s).await,
            Pending::Error(e) => write_error(session, &e).await,
        };
        let e = match written {
            Ok(sent) => {
                out.sent = sent;
                return;
            }
            Err(e) => e,
        };
        // The client went away mid-response, or the body could not be
        // completed: the connection must not be reused, and once a header is
        // out the only honest signal is to drop it.
        let gone = matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ConnectionClosed
        );
        if gone {
            let path = session.req_header().uri.path();
            tracing::debug!(path, error = %e, "client gone");
        }
        session.set_keepalive(None);
        if let Some(h) = session.response_written() {
            // Logged as sent, with the bytes that made it (as nginx).
            out.sent.status = h.status.as_u16();
            out.sent.bytes = session.body_bytes_sent() as u64;
        } else if gone {
            // Closed before the header: nginx's 499.
            out.sent.status = CLIENT_CLOSED;
        } else {
            // Nothing went out yet (a header we could not build): a fault of
            // ours, answered rather than dropped.
            let _ = session.respond_error(500).await;
            out.sent.status = 500;
        }
        out.error = Some(e);
    }
}

/// An HTTP/1 connection, for `Handler::answer`.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// Plain TCP (not TLS): large bodies may go by `sendfile`.
    pub plain: bool,
    /// The connection stays open after this reply.
    pub keep: bool,
}

/// What `Handler::answer` left to be written.
pub enum Left {
    /// By the connection loop itself.
    Raw(Raw),
    /// Through a pingora session (`Handler::write`).
    Session(Pending),
}

/// A reply `Handler::answer` left for a pingora session to write.
pub enum Pending {
    Streamed(Streamed),
    Error(AppError),
}

/// HTTP/2 streams (pingora's HTTP/2 server calls this once per stream).
#[async_trait]
impl HttpServerApp for Handler {
    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }

    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            _ => return None,
        }
        let out = self.serve(&mut session, None).await;
        let req = session.req_header();
        self.log(&req.method, req.uri.path(), &out);
        if out.reusable() {
            let _ = session.finish().await;
        }
        None
    }
}

/// The HTTPS listener: address and PEM files.
pub struct TlsListener {
    pub addr: SocketAddr,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Builds the pingora server with the plain HTTP listener and/or the HTTPS
/// listener (HTTP/2 and HTTP/1.1 by ALPN); at most `max_connections` client
/// connections are open at once.
pub fn build(
    app: Arc<App>,
    plain: Option<SocketAddr>,
    tls: Option<TlsListener>,
    max_connections: usize,
) -> std::result::Result<Server, String> {
    let threads = match app.config.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let conf = ServerConf {
        threads,
        pid_file: app
            .config
            .cache
            .dir
            .join("feedcache.pid")
            .display()
            .to_string(),
        upgrade_sock: app
            .config
            .cache
            .dir
            .join("feedcache-upgrade.sock")
            .display()
            .to_string(),
        // Let in-flight downloads finish on SIGTERM, within reason.
        // One single-threaded runtime per worker, like nginx workers: no
        // cross-core task hand-offs on the hot path (measured: benches/load.py).
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(30),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let fallback = plain.or(tls.as_ref().map(|t| t.addr));
    let send_buffer = app.config.connections.send_buffer();
    let deadlines = Deadlines {
        header: app.config.connections.header_timeout,
        idle: app.config.connections.idle_timeout,
        send: app.config.connections.send_timeout,
    };
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(deadlines.idle);
    let handler = Arc::new(Handler {
        app,
        fallback_host: fallback.map(|a| a.to_string()).unwrap_or_default(),
        options,
    });
    let front = Front {
        handler,
        conns: Conns::new(max_connections)
            .map_err(|e| format!("starting the connection sweeper: {e}"))?,
        deadlines,
    };
    // pingora sets the send buffer on every accepted connection, plain and
    // TLS (`connections.send_buffer` says why it is not the kernel's).
    let mut socket = TcpSocketOptions::default();
    socket.tcp_snd_buf = send_buffer;
    let mut svc = Service::new("feedcache".to_string(), front);
    // Plain connections need no buffers: they are registered again on the
    // worker that serves them without any (`rehome.rs`), requests are read
    // in one call (`front.rs`) and replies written with one `writev`
    // (`raw.rs`).
    if let Some(listen) = plain {
        svc.add_listener(
            ListenerConfig::tcp(listen.to_string())
                .l4_buffer(L4BufferSettings::unbuffered())
                .tcp_socket_options(socket.clone()),
        );
    }
    // On TLS a write buffer holds the header and a small body together, so
    // a response leaves in one record and one send() instead of two.
    if let Some(t) = tls {
        let path = |p: &std::path::Path| p.to_str().map(str::to_owned).ok_or("non-UTF-8 path");
        let (cert, key) = (path(&t.cert)?, path(&t.key)?);
        let mut settings = TlsSettings::intermediate(&cert, &key)
            .map_err(|e| format!("TLS certificate {cert} / key {key}: {e}"))?;
        settings.enable_h2();
        svc.add_listener(
            ListenerConfig::tcp(t.addr.to_string())
                .tls(settings)
                .l4_buffer(L4BufferSettings::new(TLS_READ_BUFFER, WRITE_BUFFER))
                .tcp_socket_options(socket),
        );
    }
    server.add_service(svc);
    Ok(server)
}
