//! The application error type and the one place errors become HTTP statuses.

use crate::cache::CacheError;
use crate::extract::ExtractError;
use crate::routes::RouteError;
use crate::upstream::UpstreamError;

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
}

impl AppError {
    /// The HTTP status for this error; the only mapping in the program.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Route(RouteError::NotFound) => 404,
            AppError::Route(RouteError::MethodNotAllowed) => 405,
            AppError::Route(RouteError::TooLong) => 414,
            AppError::Route(RouteError::BadRequest(_)) => 400,
            AppError::NotFound | AppError::Unconfigured(_) => 404,
            AppError::Upstream(UpstreamError::Timeout(_)) => 504,
            AppError::Upstream(_) | AppError::BadUpstream(_) => 502,
            AppError::Cache(_) => 500,
            AppError::RangeNotSatisfiable(_) => 416,
            AppError::Unauthorized => 401,
            AppError::Forbidden => 403,
            AppError::Extract(ExtractError::NotFound) => 404,
            AppError::Extract(_) => 502,
        }
    }

    /// Logs a failed background fetch of `key`: upstream and cache failures
    /// as warnings, "not found" and refusals only at debug level.
    pub fn log_for(&self, key: &crate::keys::CacheKey, what: &str) {
        if self.status() >= 500 {
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

    /// A short text for the client; details stay in the log.
    pub fn client_message(&self) -> String {
        match self {
            AppError::Route(RouteError::BadRequest(m)) => format!("bad request: {m}"),
            AppError::Route(e) => e.to_string(),
            AppError::NotFound => "not found".into(),
            AppError::Unconfigured(what) => format!("{what} is not configured"),
            AppError::Upstream(UpstreamError::Timeout(_)) => "upstream timed out".into(),
            AppError::Upstream(UpstreamError::CircuitOpen(_)) => {
                "upstream unavailable (failing fast)".into()
            }
            AppError::Upstream(_) | AppError::BadUpstream(_) => "upstream failed".into(),
            AppError::Cache(_) => "cache error".into(),
            AppError::RangeNotSatisfiable(_) => "range not satisfiable".into(),
            AppError::Unauthorized | AppError::Forbidden => self.to_string(),
            AppError::Extract(ExtractError::NotFound) => "no such file in the package".into(),
            AppError::Extract(ExtractError::Corrupt(_)) => "corrupt package".into(),
            AppError::Extract(ExtractError::Limit(_)) => "package exceeds extraction limits".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let table: Vec<(AppError, u16)> = vec![
            (RouteError::NotFound.into(), 404),
            (RouteError::MethodNotAllowed.into(), 405),
            (RouteError::TooLong.into(), 414),
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
    fn client_messages_hide_details() {
        let e = AppError::from(UpstreamError::Connect(
            "https://secret.internal:8443".into(),
        ));
        assert!(!e.client_message().contains("secret"));
    }
}
