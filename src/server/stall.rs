//! The send deadline (`connections.send_timeout`): a client that stops
//! reading a response is cut off, like nginx's `send_timeout`, so stalled
//! downloads cannot hold connection slots forever (the cap never sheds a
//! connection that is being served, `conns.rs`).

use std::future::Future;
use std::time::Duration;

use pingora::time::fast_timeout::fast_timeout;

/// `io`, failed with `TimedOut` when it waits longer than `stall` for the
/// client. The timer is set only once `io` has to wait (pingora's lazy
/// timeout), so a write the socket takes at once costs nothing extra.
pub async fn stalled<T>(
    stall: Duration,
    io: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    fast_timeout(stall, io).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client took nothing within connections.send_timeout",
        ))
    })
}
