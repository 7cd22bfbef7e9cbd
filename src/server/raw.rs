//! Replies the HTTP/1 connection loop writes itself, after the pingora
//! session has handed the stream back: the head as bytes (`head.rs`), then
//! a body at hand or a file by `sendfile`. For a small hit that is one
//! buffered write and one `send`, with no header map built or dropped.

use bytes::Bytes;
use pingora::protocols::Stream;
use tokio::io::AsyncWriteExt;

use super::sendfile::{self, FileBody};

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
/// `sent` (also when it fails). An error means the connection must be
/// closed.
pub async fn write(stream: &mut Stream, raw: Raw, sent: &mut u64) -> std::io::Result<()> {
    // The stream's write buffer holds the head and a small body together,
    // so both leave in one `send`; larger bodies go straight to the socket.
    stream.write_all(&raw.head).await?;
    match raw.body {
        RawBody::None => stream.flush().await,
        RawBody::Bytes(b) => {
            stream.write_all(&b).await?;
            stream.flush().await?;
            *sent = b.len() as u64;
            Ok(())
        }
        RawBody::File(f) => sendfile::send(stream, &f, sent).await,
    }
}
