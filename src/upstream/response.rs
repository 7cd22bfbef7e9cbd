//! An upstream's answer as the rest of feedcache reads it: status, header
//! fields and a body taken chunk by chunk, under the client's read timeout
//! (`client.rs`). Our own type rather than `reqwest::Response`: converting
//! hyper's response into reqwest's parsed a placeholder URL and boxed the
//! body on every request (`reqwest::Response::from` was 2.5% of a cold
//! miss's user time, BENCHMARKS.md).

use bytes::Bytes;
use futures_util::Stream;
use http_body::Body;
use http_body_util::BodyExt;

use super::client::Timed;

/// Why reading an upstream body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The upstream sent nothing for `read_timeout`.
    #[error("upstream sent nothing within read_timeout")]
    Timeout,
    /// The connection failed or the body broke HTTP's framing.
    #[error("upstream body: {0}")]
    Io(String),
}

/// One upstream response; its body is read at most once.
pub struct Response {
    head: http::response::Parts,
    body: Timed,
}

impl Response {
    pub(super) fn new(resp: http::Response<Timed>) -> Self {
        let (head, body) = resp.into_parts();
        Response { head, body }
    }

    pub fn status(&self) -> http::StatusCode {
        self.head.status
    }

    pub fn headers(&self) -> &http::HeaderMap {
        &self.head.headers
    }

    /// The body's length when the upstream announced it (`Content-Length`
    /// on HTTP/1, as the connection parsed it).
    pub fn content_length(&self) -> Option<u64> {
        self.body.size_hint().exact()
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => {
                    // Trailers carry no body bytes: skip them.
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The body as a stream of chunks.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
        http_body_util::BodyDataStream::new(self.body)
    }
}
