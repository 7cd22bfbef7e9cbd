//! Moves a plain TCP connection's socket onto the I/O driver of the worker
//! runtime that serves it.
//!
//! pingora accepts every connection on one runtime and spawns its task on a
//! random worker runtime (`work_stealing = false`), while the socket stays
//! registered with the accepting runtime's driver. Every readiness event of
//! a connection served elsewhere then crossed threads: the accepting thread
//! woke from `epoll_wait` only to write the serving runtime's eventfd and
//! wake it in turn (measured at c=1: `eventfd_write` 16% of the CPU, and
//! two thread wake-ups per request). Registered again here, each worker
//! polls the sockets of its own connections, like an nginx worker.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};

/// `stream` registered with the current runtime, when it is plain TCP and
/// nothing fails; otherwise `stream` as it was (served, with the hop).
pub fn rehome(stream: Stream) -> Stream {
    if !stream.as_any().is::<TcpStream>() {
        return stream;
    }
    let raw = stream.id();
    // SAFETY: `raw` is the descriptor `stream` owns (pingora's id of a plain
    // TCP stream is its descriptor); `stream` outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    let Ok(dup) = rustix::io::fcntl_dupfd_cloexec(fd, 0) else {
        return stream;
    };
    let Ok(moved) = register(dup) else {
        return stream;
    };
    // Dropping the original deregisters it from the accepting runtime and
    // closes its descriptor; the connection lives on in the duplicate.
    drop(stream);
    moved
}

fn register(fd: OwnedFd) -> std::io::Result<Stream> {
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true)?;
    let tokio = tokio::net::TcpStream::from_std(std)?;
    let raw = tokio.as_raw_fd();
    let mut moved = TcpStream::from(tokio);
    moved.set_socket_digest(SocketDigest::from_raw_fd(raw));
    Ok(Box::new(moved))
}
