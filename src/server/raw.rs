//! Replies the HTTP/1 connection loop writes itself, after the pingora
//! session has handed the stream back: the head as bytes (`head.rs`), then
//! a body at hand or a file by `sendfile`. For a small hit that is one
//! `writev`, with no header map built or dropped.

use bytes::Bytes;
use pingora::protocols::Stream;
use std::io::IoSlice;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::sendfile::{self, FileBody};
use super::stall::stalled;

/// A reply for the connection loop to write: head, then body.
pub struct Raw {
    pub head: Bytes,
    pub body: RawBody,
    /// The head says `Connection: keep-alive`.
    pub keep: bool,
}

/// The body of a `Raw` reply.
pub enum RawBody {
    /// HEAD, 304.
    None,
    Bytes(Bytes),
    /// Sent with `sendfile`.
    File(FileBody),
}

/// What of a raw reply went out, also when writing it failed: the access
/// log records a reply whose head never left as the client's hang-up
/// (499), and otherwise with the body bytes that made it.
#[derive(Debug, Default, PartialEq)]
pub struct Progress {
    /// The whole head was written.
    pub head: bool,
    /// Body bytes written.
    pub body: u64,
}

impl Progress {
    /// The status to log for a reply of `status` whose writing stopped
    /// here: nginx's 499 while the client had none of the head, as for a
    /// session whose header never went out (`Handler::write`).
    pub fn logged_status(&self, status: u16) -> u16 {
        if self.head {
            status
        } else {
            super::CLIENT_CLOSED
        }
    }
}

/// Writes `raw` to `stream`, recording in `sent` what went out. A client
/// that takes nothing for `stall` fails the write. An error means the
/// connection must be closed.
pub async fn write(
    stream: &mut Stream,
    raw: Raw,
    sent: &mut Progress,
    stall: Duration,
) -> std::io::Result<()> {
    match raw.body {
        RawBody::None => write_all(stream, &raw.head, &[], sent, stall).await,
        RawBody::Bytes(b) => write_all(stream, &raw.head, &b, sent, stall).await,
        RawBody::File(f) => {
            write_all(stream, &raw.head, &[], sent, stall).await?;
            let r = sendfile::send(stream, &f, &mut sent.body, stall).await;
            crate::metrics::get().sendfile_bytes(sent.body);
            r
        }
    }
}

/// Writes `head` and `body` with as few system calls as the socket takes
/// (one `writev` for a small reply), then flushes. `sent` follows the
/// bytes as they go, so a client that hangs up is logged with what it got.
async fn write_all(
    stream: &mut Stream,
    head: &[u8],
    body: &[u8],
    sent: &mut Progress,
    stall: Duration,
) -> std::io::Result<()> {
    let (mut h, mut b) = (0, 0);
    while h < head.len() || b < body.len() {
        let bufs = [IoSlice::new(&head[h..]), IoSlice::new(&body[b..])];
        let n = stalled(stall, stream.write_vectored(&bufs)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len() - h);
        h += from_head;
        b += n - from_head;
        sent.head = h == head.len();
        sent.body = b as u64;
    }
    stalled(stall, stream.flush()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(10);

    fn reply() -> Raw {
        Raw {
            head: Bytes::from_static(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"),
            body: RawBody::Bytes(Bytes::from_static(b"body")),
            keep: true,
        }
    }

    /// Writes `reply()` to a pipe whose reader takes `take` bytes and
    /// then hangs up (`None`: takes everything); whether the write
    /// succeeded, and what it recorded.
    async fn write_to(take: Option<usize>) -> (bool, Progress) {
        let head_len = reply().head.len();
        // Room for the head only, so the body waits for the reader.
        let (w, mut r) = tokio::io::duplex(head_len);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; take.unwrap_or(head_len + 4)];
            timeout(WAIT, r.read_exact(&mut buf)).await
        });
        if take == Some(0) {
            // Gone before anything was written.
            let _ = timeout(WAIT, reader).await.unwrap();
            return write_on(Box::new(w)).await;
        }
        let out = write_on(Box::new(w)).await;
        let _ = timeout(WAIT, reader).await.unwrap();
        out
    }

    async fn write_on(mut stream: Stream) -> (bool, Progress) {
        let mut sent = Progress::default();
        let r = timeout(WAIT, write(&mut stream, reply(), &mut sent, WAIT));
        (r.await.unwrap().is_ok(), sent)
    }

    #[tokio::test]
    async fn progress_says_what_reached_a_client_that_hung_up() {
        let cases = [
            // reader takes, write succeeded, head out, body bytes out
            (None, true, true, 4),
            (Some(0), false, false, 0),
            (Some(10), false, true, 0),
        ];
        for (take, ok, head, body) in cases {
            let (done, sent) = write_to(take).await;
            assert_eq!((done, &sent), (ok, &Progress { head, body }), "{take:?}");
            let logged = if head { 200 } else { 499 };
            assert_eq!(sent.logged_status(200), logged, "{take:?}");
        }
    }
}
