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

/// Writes `raw` to `stream`, counting the body bytes that went out in
/// `sent` (also when it fails). A client that takes nothing for `stall`
/// fails the write. An error means the connection must be closed.
pub async fn write(
    stream: &mut Stream,
    raw: Raw,
    sent: &mut u64,
    stall: Duration,
) -> std::io::Result<()> {
    match raw.body {
        RawBody::None => write_all(stream, &raw.head, &[], sent, stall).await,
        RawBody::Bytes(b) => write_all(stream, &raw.head, &b, sent, stall).await,
        RawBody::File(f) => {
            write_all(stream, &raw.head, &[], sent, stall).await?;
            sendfile::send(stream, &f, sent, stall).await
        }
    }
}

/// Writes `head` and `body` with as few system calls as the socket takes
/// (one `writev` for a small reply), then flushes. `sent` counts the body
/// bytes as they go, so a client that hangs up mid-body is logged with
/// what it got.
async fn write_all(
    stream: &mut Stream,
    head: &[u8],
    body: &[u8],
    sent: &mut u64,
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
        *sent = b as u64;
    }
    stalled(stall, stream.flush()).await
}
