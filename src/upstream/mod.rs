//! Requests to upstreams: the one place that checks offline mode, the
//! circuit breakers and where the ProGet key may go, follows redirects and
//! types errors. `client.rs` sends them (a ring-based rustls config with
//! the system roots plus an optional corporate CA).

mod client;
mod response;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use url::Url;

use client::{Client, ClientSpec};
pub use response::{BodyError, Response};

use crate::config::UpstreamConfig;
use crate::secret::Secret;

/// Sent as `User-Agent` on every upstream request.
const USER_AGENT_VALUE: &str = concat!("feedcache/", env!("CARGO_PKG_VERSION"));

/// Redirects followed per request; each hop is checked for where the API key may go.
const MAX_REDIRECTS: usize = 5;

/// Why an upstream request failed. Cloneable: one failed fill is reported to
/// every waiting client. Messages name the host only, never credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("timed out talking to {0}")]
    Timeout(String),
    #[error("{host} answered {status}")]
    Status { host: String, status: u16 },
    #[error("upstream body truncated: {got} of {expected} bytes")]
    Truncated { expected: u64, got: u64 },
    #[error("upstream I/O error from {0}")]
    Io(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("bad redirect from {0}")]
    Redirect(String),
    /// The host failed repeatedly and is being left alone for a while
    /// (`retry_after` seconds more).
    #[error("{host} is considered down; failing fast")]
    CircuitOpen { host: String, retry_after: u64 },
    /// Offline mode: no upstream is contacted.
    #[error("offline mode: no upstream is contacted")]
    Offline,
    /// The upstream refused the request (400 or 403) or has no such thing
    /// (404, when it says so in plain text), in its own words.
    #[error("{host} answered {status}: {message}")]
    Refused {
        host: String,
        status: u16,
        message: String,
    },
}

/// The most of an upstream's refusal read for its message.
pub const REFUSAL_READ: usize = 1024;
/// The most of that message passed on.
const REFUSAL_SHOWN: usize = 200;

/// The first line of an upstream's answer, for a refusal passed on to the
/// client: read from at most 1 KiB, control characters removed, 200
/// characters at most.
pub async fn first_line(mut resp: Response) -> String {
    let mut body = Vec::new();
    while body.len() < REFUSAL_READ {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    first_line_of(&body)
}

/// The first non-empty line of up to 1 KiB of `body`, as `first_line`
/// passes it on (also for `feedcache warm`'s own client).
pub fn first_line_of(body: &[u8]) -> String {
    let body = &body[..body.len().min(REFUSAL_READ)];
    let text = String::from_utf8_lossy(body);
    // One line of plain text: no control characters can reach the client.
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(REFUSAL_SHOWN)
        .collect()
}

/// Optional request headers for one upstream GET.
#[derive(Debug, Default, Clone)]
pub struct Request<'a> {
    /// Revalidate an entry: the upstream's ETag from the last 200.
    pub if_none_match: Option<&'a str>,
    /// Ask for gzip (metadata, which feedcache decompresses itself).
    pub accept_gzip: bool,
    /// The cluster secret, on a request to a peer (`cluster/`).
    pub cluster_secret: Option<&'a str>,
}

/// The header a node presents the cluster secret in.
pub const CLUSTER_HEADER: &str = "X-Feedcache-Cluster";

/// A shared upstream client with connection pooling.
#[derive(Clone)]
pub struct Upstream {
    /// How to build each worker thread's own client (`client()`).
    spec: Arc<ClientSpec>,
    /// The ProGet API key and the one origin it may be sent to.
    credential: Option<Arc<(url::Origin, http::HeaderValue)>>,
    breakers: Arc<crate::breaker::Breakers>,
    /// Offline mode, shared by every clone (switchable at runtime).
    offline: Arc<AtomicBool>,
}

impl Upstream {
    /// Whether requests to `origin` (`scheme://host:port`) are failing and
    /// being held back by its circuit breaker.
    pub fn is_down(&self, origin: &str) -> bool {
        self.breakers.is_open(origin)
    }

    /// Whether offline mode is on.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Relaxed)
    }

    /// Switches offline mode (admin API).
    pub fn set_offline(&self, on: bool) {
        self.offline.store(on, Ordering::Relaxed);
    }

    /// Builds the client from config: timeouts, roots, HTTP/2 by ALPN.
    /// `credential` is an API key sent as `X-ApiKey` to that URL's origin only.
    pub fn new(
        cfg: &UpstreamConfig,
        credential: Option<(&Url, &Secret)>,
    ) -> Result<Self, UpstreamError> {
        let spec = Arc::new(ClientSpec {
            id: NEXT_SPEC.fetch_add(1, Ordering::Relaxed),
            tls: tls_config(cfg.ca_file.as_deref())?,
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
        });
        let credential = match credential {
            Some((url, key)) => {
                let mut v = http::HeaderValue::from_str(key.expose()).map_err(|_| {
                    UpstreamError::Tls("API key is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                Some(Arc::new((url.origin(), v)))
            }
            None => None,
        };
        let breakers = Arc::new(crate::breaker::Breakers::new(
            cfg.breaker_failures,
            cfg.breaker_cooldown,
        ));
        Ok(Upstream {
            spec,
            credential,
            breakers,
            offline: Arc::new(AtomicBool::new(cfg.offline)),
        })
    }

    /// This thread's client. Each worker runtime keeps its own pool: hyper
    /// runs a pooled connection as a task on the runtime that opened it, so
    /// a shared pool made about every other fill hand its request and
    /// response across threads (an `eventfd` write and a second wake-up
    /// each way). Every caller is a task on some runtime's thread, so
    /// there is one client per such thread.
    fn client(&self) -> Client {
        CLIENTS.with(|c| {
            let mut c = c.borrow_mut();
            if let Some((_, client)) = c.iter().find(|(id, _)| *id == self.spec.id) {
                return client.clone();
            }
            let client = self.spec.build();
            c.push((self.spec.id, client.clone()));
            client
        })
    }

    /// Whether a request to `url` would carry the ProGet API key.
    pub fn sends_key_to(&self, url: &Url) -> bool {
        self.credential
            .as_ref()
            .is_some_and(|c| url.origin() == c.0)
    }

    /// Sends one GET, following redirects; any final status is returned to
    /// the caller to interpret.
    pub async fn get(&self, url: &Url, req: &Request<'_>) -> Result<Response, UpstreamError> {
        // The one place every upstream request passes: offline, none is made.
        if self.is_offline() {
            return Err(UpstreamError::Offline);
        }
        let client = self.client();
        let mut url = std::borrow::Cow::Borrowed(url);
        for _ in 0..=MAX_REDIRECTS {
            let headers = self.headers(&url, req)?;
            let host = url.origin().ascii_serialization();
            if !self.breakers.admit(&host, std::time::Instant::now()) {
                crate::metrics::get().upstream(std::time::Duration::ZERO, Some("circuit_open"));
                let left = self.breakers.retry_after(&host, std::time::Instant::now());
                return Err(UpstreamError::CircuitOpen {
                    host: host_of(&url),
                    retry_after: left.as_secs().max(1),
                });
            }
            let started = std::time::Instant::now();
            let sent = client.get(&url, headers).await;
            let kind = match &sent {
                Ok(r) if r.status().is_server_error() => Some("status_5xx"),
                Ok(_) => None,
                Err(UpstreamError::Timeout(_)) => Some("timeout"),
                Err(UpstreamError::Connect(_)) => Some("connect"),
                Err(_) => Some("io"),
            };
            crate::metrics::get().upstream(started.elapsed(), kind);
            // Connection trouble and 5xx count against the host; any other
            // answer (404 included) shows it is up.
            let ok = sent.as_ref().is_ok_and(|r| !r.status().is_server_error());
            self.breakers.record(&host, ok, std::time::Instant::now());
            let resp = sent?;
            let redirect = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308);
            if !redirect {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| url.join(loc).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"));
            url = std::borrow::Cow::Owned(
                next.ok_or_else(|| UpstreamError::Redirect(host_of(&url)))?,
            );
        }
        Err(UpstreamError::Redirect(host_of(&url)))
    }

    /// The headers of one GET to `url`. A header value that cannot be sent
    /// (an ETag or secret with control characters) fails the request.
    fn headers(&self, url: &Url, req: &Request<'_>) -> Result<http::HeaderMap, UpstreamError> {
        use http::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, IF_NONE_MATCH, USER_AGENT};
        let value = |v: &str| HeaderValue::from_str(v).map_err(|_| UpstreamError::Io(host_of(url)));
        let mut h = http::HeaderMap::with_capacity(6);
        h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        h.insert(ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static(if req.accept_gzip { "gzip" } else { "identity" }),
        );
        if let Some(tag) = req.if_none_match {
            h.insert(IF_NONE_MATCH, value(tag)?);
        }
        if let Some(s) = req.cluster_secret {
            h.insert(CLUSTER_HEADER, value(s)?);
        }
        if let Some(cred) = self.credential.as_ref().filter(|_| self.sends_key_to(url)) {
            h.insert("X-ApiKey", cred.1.clone());
        }
        Ok(h)
    }
}

/// Tells the clients of different `Upstream`s apart in `CLIENTS`.
static NEXT_SPEC: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// Each thread's clients, by `ClientSpec::id` (one per `Upstream`, so
    /// a handful at most).
    static CLIENTS: std::cell::RefCell<Vec<(usize, Client)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The rustls client config every HTTP client of feedcache uses: the ring
/// provider pingora already links (reqwest is built without one), the system
/// roots plus an optional extra CA file, HTTP/2 offered by ALPN.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    // A machine without a CA bundle can still reach plain-HTTP and
    // corporate-CA upstreams, so missing system roots are not fatal.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| UpstreamError::Tls(format!("{}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| UpstreamError::Tls(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| UpstreamError::Tls(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// Maps an error reading an upstream body to the typed error, naming only
/// the host (the details go to the log).
pub fn classify(url: &Url, e: &BodyError) -> UpstreamError {
    let host = host_of(url);
    match e {
        BodyError::Timeout => UpstreamError::Timeout(host),
        BodyError::Io(why) => {
            tracing::debug!(host, error = %why, "upstream body failed");
            UpstreamError::Io(host)
        }
    }
}

/// `host[:port]` of a URL, for messages and logs.
pub fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => "upstream".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::first_line_of;

    #[test]
    fn a_refusal_is_passed_on_as_one_clean_line() {
        let long = "x".repeat(300);
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"Package not found.\r\nmore", "Package not found."),
            (
                b"\n\n  The API key is invalid  \n",
                "The API key is invalid",
            ),
            (b"bad\x1b[31m id\x07", "bad[31m id"),
            (long.as_bytes(), &long[..200]),
            (b"caf\xc3\xa9 \xff", "caf\u{e9} \u{fffd}"),
        ];
        for (body, want) in cases {
            assert_eq!(first_line_of(body), *want, "{body:?}");
        }
        // Only the first KiB is read for it.
        let late = [vec![b'\n'; 1024], b"late".to_vec()].concat();
        assert_eq!(first_line_of(&late), "");
    }
}
