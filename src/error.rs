//! The application error type and the one place errors become HTTP statuses.

use crate::cache::CacheError;
use crate::extract::ExtractError;
use crate::routes::RouteError;
use crate::upstream::UpstreamError;

/// An error as the client gets it (built by `AppError::response` only).
#[derive(Debug, PartialEq)]
pub struct ErrorResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(http::HeaderName, String)>,
}

/// Everything a request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The upstream has no such resource (or the feed does not offer it).
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream answered with data feedcache cannot use (bad JSON, too big).
    #[error("bad upstream response: {0}")]
    BadUpstream(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A `Range` outside the entity; carries the entity length for `Content-Range`.
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// A route whose upstream is not configured.
    #[error("{0} is not configured")]
    Unconfigured(&'static str),
    /// No valid client key on a NuGet route: challenge for Basic credentials.
    #[error("authentication required")]
    Unauthorized,
    /// No valid client key on a ProGet API route.
    #[error("missing or invalid API key")]
    Forbidden,
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// A fault of ours outside the cache (a helper task that died).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// The HTTP status for this error; the only mapping in the program.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Route(RouteError::NotFound) => 404,
            AppError::Route(RouteError::MethodNotAllowed(_)) => 405,
            AppError::Route(RouteError::TooLong) => 414,
            AppError::Route(RouteError::BadRequest(_)) => 400,
            AppError::NotFound | AppError::Unconfigured(_) => 404,
            AppError::Upstream(UpstreamError::Timeout(_)) => 504,
            AppError::Upstream(UpstreamError::Offline) => 503,
            AppError::Upstream(UpstreamError::Refused { status, .. }) => *status,
            AppError::Upstream(_) | AppError::BadUpstream(_) => 502,
            AppError::Cache(CacheError::IndexLoading) => 503,
            AppError::Cache(_) | AppError::Internal(_) => 500,
            AppError::RangeNotSatisfiable(_) => 416,
            AppError::Unauthorized => 401,
            AppError::Forbidden => 403,
            AppError::Extract(ExtractError::NotFound) => 404,
            AppError::Extract(_) => 502,
        }
    }

    /// Whether this failure is worth a warning in the log: a fault of ours
    /// or of an upstream. A miss while offline is what the operator asked
    /// for, however often it happens.
    pub fn deserves_warning(&self) -> bool {
        self.status() >= 500 && !matches!(self, AppError::Upstream(UpstreamError::Offline))
    }

    /// Logs a failed background fetch of `key`: upstream and cache failures
    /// as warnings, "not found" and refusals only at debug level.
    pub fn log_for(&self, key: &crate::keys::CacheKey, what: &str) {
        if self.deserves_warning() {
            tracing::warn!(key = %key, error = %self, "{what}");
        } else {
            tracing::debug!(key = %key, error = %self, "{what}");
        }
    }

    /// The error for a non-success upstream status: 404 and 410 are the
    /// upstream's "no such thing", 400 means the identifiers the client sent
    /// were refused; anything else is the upstream failing.
    pub fn from_upstream_status(url: &url::Url, status: u16) -> AppError {
        match status {
            404 | 410 => AppError::NotFound,
            400 => RouteError::BadRequest("the upstream refused the request".into()).into(),
            _ => UpstreamError::Status {
                host: crate::upstream::host_of(url),
                status,
            }
            .into(),
        }
    }

    /// The error for an upstream's non-success answer. A 400 or 403 goes
    /// to the client with the upstream's status and the first line of its
    /// body (ProGet says what was wrong with the identifiers or the key); a
    /// 404 or 410 in plain text likewise, as a 404 ("package not found" and
    /// "file not found" are different answers). Other statuses map as
    /// `from_upstream_status` says.
    pub async fn from_upstream_response(
        url: &url::Url,
        resp: crate::upstream::Response,
    ) -> AppError {
        let status = resp.status().as_u16();
        let status = match status {
            400 | 403 => status,
            // An HTML or XML error page has no useful first line.
            404 | 410 if is_plain_text(resp.headers()) => 404,
            _ => return AppError::from_upstream_status(url, status),
        };
        let message = crate::upstream::first_line(resp).await;
        if message.is_empty() && status == 404 {
            return AppError::NotFound;
        }
        UpstreamError::Refused {
            host: crate::upstream::host_of(url),
            status,
            message,
        }
        .into()
    }

    /// Whether this says the thing asked for does not exist (ours or the
    /// upstream's 404, with or without its message).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            AppError::NotFound | AppError::Upstream(UpstreamError::Refused { status: 404, .. })
        )
    }

    /// Everything the client is told: status, a one-line text body (details
    /// stay in the log) and the headers this error calls for.
    pub fn response(&self) -> ErrorResponse {
        use http::header;
        let mut headers = vec![(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned())];
        match self {
            AppError::RangeNotSatisfiable(len) => {
                headers.push((header::CONTENT_RANGE, format!("bytes */{len}")));
            }
            // Seconds before the breaker lets a request through again.
            AppError::Upstream(UpstreamError::CircuitOpen { retry_after, .. }) => {
                headers.push((header::RETRY_AFTER, retry_after.to_string()));
            }
            AppError::Cache(CacheError::IndexLoading) => {
                headers.push((header::RETRY_AFTER, "5".to_owned()));
            }
            // RFC 9110 15.5.6: a 405 names the methods the resource takes.
            AppError::Route(RouteError::MethodNotAllowed(allow)) => {
                headers.push((header::ALLOW, (*allow).to_owned()));
            }
            // NuGet clients send their key as Basic credentials on a challenge.
            AppError::Unauthorized => {
                headers.push((header::WWW_AUTHENTICATE, "Basic realm=\"feedcache\"".into()));
            }
            _ => {}
        }
        ErrorResponse {
            status: self.status(),
            body: format!("{}\n", self.client_message()),
            headers,
        }
    }

    /// A short text for the client; details stay in the log.
    fn client_message(&self) -> String {
        match self {
            AppError::Route(RouteError::BadRequest(m)) => format!("bad request: {m}"),
            AppError::Route(e) => e.to_string(),
            AppError::NotFound => "not found".into(),
            AppError::Unconfigured(what) => format!("{what} is not configured"),
            // Upstream errors name the host and the cause, never a
            // credential or a path (see `UpstreamError`).
            AppError::Upstream(UpstreamError::Offline) => {
                "not cached, and feedcache is offline (no upstream is contacted)".into()
            }
            AppError::Upstream(UpstreamError::Refused {
                host,
                status,
                message,
            }) if *status == 404 => format!("not found ({host}): {message}"),
            AppError::Upstream(UpstreamError::Refused {
                host,
                status,
                message,
            }) => format!("{host} refused the request ({status}): {message}"),
            AppError::Upstream(e) => format!("upstream failed: {e}"),
            AppError::BadUpstream(_) => "upstream sent an unusable response".into(),
            AppError::Cache(CacheError::IndexLoading) => {
                "the cache index is still loading; retry shortly".into()
            }
            AppError::Cache(_) => "cache error".into(),
            AppError::Internal(_) => "internal error".into(),
            AppError::RangeNotSatisfiable(_) => "range not satisfiable".into(),
            AppError::Unauthorized | AppError::Forbidden => self.to_string(),
            AppError::Extract(ExtractError::NotFound) => "no such file in the package".into(),
            AppError::Extract(ExtractError::Corrupt(_)) => "corrupt package".into(),
            AppError::Extract(ExtractError::Limit(_)) => "package exceeds extraction limits".into(),
        }
    }
}

/// Whether a response's body is declared as plain text.
fn is_plain_text(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let table: Vec<(AppError, u16)> = vec![
            (
                UpstreamError::Refused {
                    host: "h".into(),
                    status: 403,
                    message: "no".into(),
                }
                .into(),
                403,
            ),
            (
                UpstreamError::Refused {
                    host: "h".into(),
                    status: 404,
                    message: "no such package".into(),
                }
                .into(),
                404,
            ),
            (UpstreamError::Offline.into(), 503),
            (RouteError::NotFound.into(), 404),
            (RouteError::MethodNotAllowed("GET, HEAD").into(), 405),
            (RouteError::TooLong.into(), 414),
            (CacheError::IndexLoading.into(), 503),
            (RouteError::BadRequest("x".into()).into(), 400),
            (AppError::NotFound, 404),
            (UpstreamError::Timeout("u".into()).into(), 504),
            (UpstreamError::Connect("u".into()).into(), 502),
            (
                UpstreamError::Truncated {
                    expected: 2,
                    got: 1,
                }
                .into(),
                502,
            ),
            (AppError::BadUpstream("x".into()), 502),
            (AppError::RangeNotSatisfiable(3), 416),
            (AppError::Unauthorized, 401),
            (AppError::Forbidden, 403),
            (ExtractError::NotFound.into(), 404),
            (ExtractError::Corrupt("x".into()).into(), 502),
            (ExtractError::Limit("x".into()).into(), 502),
        ];
        for (e, want) in table {
            assert_eq!(e.status(), want, "{e:?}");
        }
    }

    #[test]
    fn client_messages_name_the_upstream_but_hide_details() {
        let host = "proget.corp.example:8443";
        let table: [(AppError, &str, &str); 4] = [
            (
                UpstreamError::Connect(host.into()).into(),
                "upstream failed: cannot connect to proget.corp.example:8443",
                "",
            ),
            (
                UpstreamError::CircuitOpen {
                    host: host.into(),
                    retry_after: 9,
                }
                .into(),
                "upstream failed: proget.corp.example:8443 is considered down; failing fast",
                "",
            ),
            (
                AppError::BadUpstream("invalid JSON from x: expected value at line 3".into()),
                "upstream sent an unusable response",
                "line 3",
            ),
            (
                crate::cache::CacheError::Io {
                    path: "/var/cache/feedcache/data/ab".into(),
                    msg: "EIO".into(),
                }
                .into(),
                "cache error",
                "/var/cache",
            ),
        ];
        for (e, want, hidden) in table {
            let m = e.client_message();
            assert_eq!(m, want);
            assert!(hidden.is_empty() || !m.contains(hidden), "{m}");
        }
    }

    /// The headers each error calls for, beside the text type.
    #[test]
    fn response_headers() {
        use http::header::{ALLOW, CONTENT_RANGE, RETRY_AFTER, WWW_AUTHENTICATE};
        let open = AppError::from(UpstreamError::CircuitOpen {
            host: "h".into(),
            retry_after: 9,
        });
        type Extra = Option<(http::HeaderName, &'static str)>;
        let table: [(AppError, u16, Extra); 6] = [
            (open, 502, Some((RETRY_AFTER, "9"))),
            (
                AppError::RangeNotSatisfiable(10),
                416,
                Some((CONTENT_RANGE, "bytes */10")),
            ),
            (
                AppError::Unauthorized,
                401,
                Some((WWW_AUTHENTICATE, "Basic realm=\"feedcache\"")),
            ),
            (AppError::NotFound, 404, None),
            (
                CacheError::IndexLoading.into(),
                503,
                Some((RETRY_AFTER, "5")),
            ),
            (
                RouteError::MethodNotAllowed("POST, DELETE").into(),
                405,
                Some((ALLOW, "POST, DELETE")),
            ),
        ];
        for (e, status, extra) in table {
            let r = e.response();
            assert_eq!(r.status, status);
            assert!(r.body.ends_with('\n'));
            let mut want = vec![(
                http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_owned(),
            )];
            want.extend(extra.map(|(n, v)| (n, v.to_owned())));
            assert_eq!(r.headers, want, "{e}");
        }
    }
}
