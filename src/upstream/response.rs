//! An upstream's answer as the rest of feedcache reads it: status, header
//! fields and a body taken chunk by chunk, under the client's read timeout
//! (`Timed`). Our own type rather than `reqwest::Response`: converting
//! hyper's response into reqwest's parsed a placeholder URL and boxed the
//! body on every request (`reqwest::Response::from` was 2.5% of a cold
//! miss's user time, BENCHMARKS.md).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

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

/// A response body that fails with `BodyError::Timeout` once the upstream has sent
/// nothing for `limit` while it is being read. Silence is counted from the
/// moment a read starts waiting, so a reader that pauses (a slow client
/// downstream) never times the upstream out.
pub(super) struct Timed {
    inner: hyper::body::Incoming,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The deadline is armed: a read is waiting for the upstream.
    waiting: bool,
}

impl Timed {
    pub(super) fn new(inner: hyper::body::Incoming, limit: Duration) -> Self {
        Timed {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            waiting: false,
        }
    }
}

impl Body for Timed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(body_error)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let at = tokio::time::Instant::now() + this.limit;
                    this.deadline.as_mut().reset(at);
                }
                match this.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Timeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// hyper's body error, typed: a timeout anywhere in its sources (a TLS or
/// TCP read that timed out) or else a broken connection or framing.
fn body_error(e: hyper::Error) -> BodyError {
    if timed_out(&e) {
        BodyError::Timeout
    } else {
        BodyError::Io(e.to_string())
    }
}

/// Whether an I/O timeout is among `e` and its sources (hyper and
/// hyper-util wrap the socket's error).
pub(super) fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = err.source();
    }
    false
}
