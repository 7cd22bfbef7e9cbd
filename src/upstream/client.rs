//! The pooled HTTP client under `Upstream`: hyper-util's client (the one
//! reqwest runs on) over rustls, HTTP/2 by ALPN, with feedcache's two
//! timeouts. Its responses are handed on as `Response` (`response.rs`, which
//! also holds the body type that times silences out).

use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::Url;

use super::response::{timed_out, Response, Timed};
use super::{host_of, UpstreamError};

type Pool = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector>,
    http_body_util::Empty<Bytes>,
>;

/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// What a client is built from, kept so that each worker thread builds its own.
pub(super) struct ClientSpec {
    /// Tells the clients of different `Upstream`s apart in a thread's list.
    pub id: usize,
    pub tls: rustls::ClientConfig,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// One pool of upstream connections and the read timeout of its requests.
#[derive(Clone)]
pub(super) struct Client {
    pool: Pool,
    read_timeout: Duration,
}

impl ClientSpec {
    pub(super) fn build(&self) -> Client {
        let mut http = HttpConnector::new();
        // https URLs are passed on to the TLS layer wrapped around this one.
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_nodelay(true);
        let mut tls = self.tls.clone();
        // hyper-rustls offers h2 and http/1.1 itself and refuses a config
        // that names protocols already.
        tls.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let pool = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(https);
        Client {
            pool,
            read_timeout: self.read_timeout,
        }
    }
}

impl Client {
    /// Sends one GET with `headers`. The response head must arrive within
    /// the read timeout (the TCP connect within its own, shorter limit,
    /// inside it); after that, the body fails when the upstream is silent
    /// for that long.
    pub(super) async fn get(
        &self,
        url: &Url,
        headers: http::HeaderMap,
    ) -> Result<Response, UpstreamError> {
        let uri = http::Uri::try_from(url.as_str()).map_err(|_| UpstreamError::Io(host_of(url)))?;
        let mut req = http::Request::new(http_body_util::Empty::new());
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let resp = tokio::time::timeout(self.read_timeout, self.pool.request(req))
            .await
            .map_err(|_| UpstreamError::Timeout(host_of(url)))?
            .map_err(|e| send_error(url, &e))?;
        let limit = self.read_timeout;
        Ok(Response::new(resp.map(|body| Timed::new(body, limit))))
    }
}

/// The typed error of a request that got no response head.
fn send_error(url: &Url, e: &hyper_util::client::legacy::Error) -> UpstreamError {
    if timed_out(e) {
        UpstreamError::Timeout(host_of(url))
    } else if e.is_connect() {
        UpstreamError::Connect(host_of(url))
    } else {
        UpstreamError::Io(host_of(url))
    }
}
