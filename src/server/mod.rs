//! The pingora front end: every request is answered in `request_filter` from
//! the cache core; pingora's own upstream proxying is never used.

mod range;
mod respond;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

use crate::app::{App, Body};
use crate::error::AppError;
use crate::rewrite::public_base;
use crate::routes::route;
use crate::routes::transparent::{is_transparent, map_path};
use respond::{write_error, write_reply, Sent};

/// Per-connection write buffer (see `build`).
const WRITE_BUFFER: usize = 16 * 1024;

/// The `ProxyHttp` implementation.
pub struct Proxy {
    app: Arc<App>,
    /// `host:port` used in rewritten URLs when a request carries no usable Host.
    fallback_host: String,
}

/// Per-request state, for the access log.
pub struct Ctx {
    start: Instant,
    route: &'static str,
    cache: &'static str,
    /// Where the body came from, for metrics.
    tier: &'static str,
    sent: Sent,
}

fn header<'a>(s: &'a Session, name: &str) -> Option<&'a str> {
    s.req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            route: "-",
            cache: "-",
            tier: "-",
            sent: Sent::default(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let uri = session.req_header().uri.clone();
        let method = session.req_header().method.clone();
        // HTTP/2 carries the host as :authority, not Host.
        let host = header(session, "host").or_else(|| uri.authority().map(|a| a.as_str()));
        // Transparent mode: nuget.org's own layout for its own host name.
        let path = if is_transparent(host, &self.app.config.transparent_hosts) {
            map_path(uri.path())
        } else {
            std::borrow::Cow::Borrowed(uri.path())
        };
        let routed = route(&method, &path, uri.query());
        let reply = match &routed {
            Ok(r) => {
                ctx.route = r.kind();
                let headers = &session.req_header().headers;
                match self.app.auth.check(r.auth_class(), headers, uri.query()) {
                    Ok(()) => self.app.handle(r, uri.query()).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(AppError::from(e.clone())),
        };
        ctx.sent = match reply {
            Ok(reply) => {
                ctx.cache = reply.cache;
                ctx.tier = match &reply.body {
                    Body::Bytes(_) => "memory",
                    Body::Disk(_) => "disk",
                    Body::Fill(..) => "upstream",
                    Body::Extract(_) => "package",
                };
                // Only rewritten documents need the base URL; skip the work
                // on the package path.
                let base = if reply.meta.templated {
                    public_base(
                        self.app.config.public_url.as_ref().map(url::Url::as_str),
                        header(session, "x-forwarded-proto"),
                        header(session, "x-forwarded-host"),
                        host,
                        &self.fallback_host,
                        session.digest().is_some_and(|d| d.ssl_digest.is_some()),
                    )
                } else {
                    String::new()
                };
                match write_reply(session, reply, &base).await {
                    Ok(sent) => sent,
                    // The client went away mid-response: nothing to report,
                    // and the connection must not be reused.
                    Err(e)
                        if matches!(
                            e.etype(),
                            ErrorType::WriteError | ErrorType::ConnectionClosed
                        ) =>
                    {
                        tracing::debug!(path = uri.path(), error = %e, "client gone");
                        session.set_keepalive(None);
                        return Ok(true);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => {
                if e.status() >= 500 {
                    tracing::warn!(path = uri.path(), error = %e, "request failed");
                }
                write_error(session, &e).await?
            }
        };
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // request_filter always answers; reaching here is a bug, not a proxy target.
        Err(Error::explain(ErrorType::InternalError, "no upstream peer"))
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        // Once a header is out, the only honest signal of an incomplete body
        // is to drop the connection, not to append an error page.
        if session.response_written().is_none() {
            let _ = write_error(session, &AppError::BadUpstream(e.to_string())).await;
        }
        FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let req = session.req_header();
        crate::metrics::get().request(
            ctx.route,
            ctx.cache,
            ctx.tier,
            ctx.sent.status,
            ctx.sent.bytes,
        );
        tracing::info!(
            target: "access",
            method = %req.method,
            path = req.uri.path(),
            route = ctx.route,
            cache = ctx.cache,
            status = ctx.sent.status,
            bytes = ctx.sent.bytes,
            ms = ctx.start.elapsed().as_secs_f64() * 1000.0,
            error = e.map(|e| e.to_string()),
        );
    }
}

/// The HTTPS listener: address and PEM files.
pub struct TlsListener {
    pub addr: SocketAddr,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Builds the pingora server with the plain HTTP listener and/or the HTTPS
/// listener (HTTP/2 and HTTP/1.1 by ALPN).
pub fn build(
    app: Arc<App>,
    plain: Option<SocketAddr>,
    tls: Option<TlsListener>,
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
    let proxy = Proxy {
        app,
        fallback_host: fallback.map(|a| a.to_string()).unwrap_or_default(),
    };
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    // A write buffer that holds the header and a small body together, so a
    // typical metadata or small-package response leaves in one send() instead
    // of two (pingora's default buffer is one MSS). Per connection; 16 KiB
    // keeps 10k idle keep-alive connections at 160 MiB.
    let buffers = L4BufferSettings::default().write(WRITE_BUFFER);
    if let Some(listen) = plain {
        svc.add_listener(ListenerConfig::tcp(listen.to_string()).l4_buffer(buffers));
    }
    if let Some(t) = tls {
        let path = |p: &std::path::Path| p.to_str().map(str::to_owned).ok_or("non-UTF-8 path");
        let (cert, key) = (path(&t.cert)?, path(&t.key)?);
        let mut settings = TlsSettings::intermediate(&cert, &key)
            .map_err(|e| format!("TLS certificate {cert} / key {key}: {e}"))?;
        settings.enable_h2();
        svc.add_listener(
            ListenerConfig::tcp(t.addr.to_string())
                .tls(settings)
                .l4_buffer(buffers),
        );
    }
    server.add_service(svc);
    Ok(server)
}
