//! Large cached bodies for a client on another host, bodies too large to
//! map (over `MAP_MAX`), or every large one with `sendfile = true`, go
//! from the page cache to the socket with `sendfile(2)`, like nginx's
//! `sendfile on`: no copy through user space, a third to a half of the
//! server CPU of writing a 50 MB hit from its mapping at 64 connections.
//! A client on this host is slower for it (it reads cold page-cache pages
//! instead of the ones the server's copy warmed), so mapped bodies are
//! written from the mapping to such clients by default (BENCHMARKS.md).
//!
//! pingora writes the response header; the connection's stream is then
//! taken out of the session (`front.rs`) and the body is sent here on the
//! socket's descriptor. When the socket buffer is full, a duplicate of the
//! descriptor is registered with the runtime to wait for room, so a slow
//! client never blocks the worker.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::Stream;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;

use super::stall::stalled;

/// Bodies at least this large are sent with `sendfile`; smaller ones leave
/// with the header in one write, which is cheaper. Memory entries this
/// large keep their file for it (`cache/held.rs`).
pub const SENDFILE_MIN: u64 = crate::cache::HELD_MIN;
/// Most bytes one `sendfile` call may move, so one transfer cannot hold a
/// worker for long even when the socket buffer is huge.
const STEP: usize = 4 * 1024 * 1024;
/// The socket send buffer while a body goes by `sendfile`: one step's
/// worth. The connection's usual buffer (`connections.send_buffer`) is
/// sized for writes from memory; `sendfile` with it stops after every
/// few hundred KiB to wait for room: 3.3× the CPU per 50 MB hit at 64
/// connections and 0.7× the throughput at one (BENCHMARKS.md).
const SENDFILE_BUFFER: usize = STEP;

/// A body to send from a file.
pub struct FileBody {
    pub file: Arc<File>,
    /// Byte offset in `file`.
    pub offset: u64,
    pub len: u64,
}

/// Flushes what pingora buffered (the header), then sends `body` on the
/// stream's socket, counting the body bytes sent in `sent` (also when it
/// fails: the access log records what made it). A client that takes
/// nothing for `stall` fails the send. An error means the
/// connection must be closed.
pub async fn send(
    stream: &mut Stream,
    body: &FileBody,
    sent: &mut u64,
    stall: Duration,
) -> io::Result<()> {
    stalled(stall, stream.flush()).await?;
    let raw = stream.id();
    // SAFETY: `raw` is the descriptor of the TCP socket that `stream` owns
    // (pingora's id of a plain TCP stream is its descriptor; `front.rs`
    // sends only on plain TCP). `stream` is borrowed mutably for the whole
    // call, so the descriptor stays open and nothing else writes to it.
    let sock: BorrowedFd<'_> = unsafe { BorrowedFd::borrow_raw(raw) };
    // Best effort: a socket that refuses keeps its buffer and still works.
    // Set on every such body (one system call against at least 64 KiB
    // moved); the connection keeps it afterwards, which costs later
    // writes from memory on it only the speed-up of the smaller buffer.
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(SENDFILE_BUFFER);
    let mut offset = body.offset;
    let end = body.offset + body.len;
    let mut waiter: Option<AsyncFd<OwnedFd>> = None;
    while offset < end {
        let want = usize::try_from(end - offset).unwrap_or(STEP).min(STEP);
        match rustix::fs::sendfile(sock, body.file.as_fd(), Some(&mut offset), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "cache file shorter than its entry",
                ))
            }
            // Let the worker's other connections run between steps.
            Ok(n) => {
                *sent += n as u64;
                tokio::task::consume_budget().await
            }
            Err(e) if e == rustix::io::Errno::AGAIN => {
                if waiter.is_none() {
                    let dup = sock.try_clone_to_owned()?;
                    // SAFETY: the AsyncFd owns `dup` and closes it only
                    // after deregistering it.
                    let w = unsafe { AsyncFd::register(dup) }
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    waiter = Some(w);
                }
                if let Some(w) = &waiter {
                    stalled(stall, w.writable()).await?.clear_ready();
                }
            }
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
