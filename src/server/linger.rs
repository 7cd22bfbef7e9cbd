//! Lingering close, as nginx's `lingering_close`: a connection feedcache
//! closes after a reply may still be bringing bytes from the client (the
//! body of a request answered without reading it, such as a push refused
//! with 404 or 405, or requests pipelined after a `Connection: close`).
//! Closing a socket with unread bytes makes the kernel answer with a
//! reset, and a client whose stack drops received data on a reset
//! (Windows) loses the reply it had not read yet. So the write side is
//! shut first (the client sees the reply end), and whatever still arrives
//! is read and dropped until the client closes, within `LINGER_TIME`
//! overall and `LINGER_TIMEOUT` between reads. The connection keeps its
//! slot meanwhile, as one waiting for a request: a newcomer over the cap
//! or the server's shutdown ends the wait (`conns.rs`).

use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conns::Slot;

/// Longest a connection lingers in all (nginx's `lingering_time`).
const LINGER_TIME: Duration = Duration::from_secs(30);
/// Longest it waits for the client's next bytes (nginx's
/// `lingering_timeout`).
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes dropped per read.
const DRAIN: usize = 64 * 1024;

/// Shuts the write side of `stream`, then reads and drops what the client
/// sends until it closes or the time is up.
pub async fn linger(stream: &mut Stream, slot: &Slot) {
    let end = Instant::now() + LINGER_TIME;
    // On TLS the shutdown writes `close_notify`, which a client that has
    // stopped reading never takes: it waits like a read.
    if !matches!(
        slot.wait_for(Some(LINGER_TIMEOUT), stream.shutdown()).await,
        Some(Ok(()))
    ) {
        return;
    }
    let mut scratch = vec![0; DRAIN];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let read = stream.read(&mut scratch);
        if !matches!(slot.wait_for(Some(left.min(LINGER_TIMEOUT)), read).await, Some(Ok(n)) if n > 0)
        {
            return;
        }
    }
}
