//! The send buffer of a connection while it writes a large body from
//! memory (a mapped cache file or bytes at hand): twice
//! `connections.send_buffer` while no other such body is being written in
//! the process, the configured size otherwise.
//!
//! Measured (BENCHMARKS.md): with 512 KiB instead of 256 KiB, a 1 MB hit at
//! one connection costs 0.75–0.92× the server CPU (three `writev`s per hit
//! become fewer) at the client's CPU and rate unchanged within noise, but
//! set on every connection it cost 50 MB hits at 64 connections a sixth of
//! their throughput: twice the bytes queued on every connection no longer
//! fit in the CPU cache the server's copy warmed, so the client reads them
//! from memory. What decides is the bytes queued across connections, so
//! the larger buffer goes to a body only while it is alone.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How much larger than the configured buffer a lone large body's is.
const ALONE_FACTOR: usize = 2;

/// The send buffer size for a body of `len` bytes with `others` other
/// large bodies in flight, or `None` to leave the buffer alone: small
/// bodies leave in one write with any buffer, and `base == None` means
/// the kernel tunes it (`connections.send_buffer = 0`).
pub fn size_for(base: Option<usize>, len: usize, others: usize) -> Option<usize> {
    let base = base?;
    if len <= base {
        return None;
    }
    Some(if others == 0 {
        base.saturating_mul(ALONE_FACTOR)
    } else {
        base
    })
}

/// The large bodies being written from memory, process-wide.
pub struct SendBuffers {
    /// `connections.send_buffer`, as set on every accepted connection.
    base: Option<usize>,
    in_flight: AtomicUsize,
}

/// One large body in flight; counted until dropped, so a write that fails
/// or is cancelled never leaves the count high.
pub struct InFlight<'a> {
    count: &'a AtomicUsize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SendBuffers {
    pub fn new(base: Option<usize>) -> Self {
        SendBuffers {
            base,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Sizes the send buffer of `sock` for a body of `len` bytes; the
    /// returned guard counts the body as in flight (`None`: a small body,
    /// not counted). Set on every large body, so a buffer raised for one
    /// (here, or to 4 MiB by `sendfile.rs`) never carries over to the next.
    pub fn size(&self, sock: BorrowedFd<'_>, len: usize) -> Option<InFlight<'_>> {
        size_for(self.base, len, 0)?;
        let others = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            count: &self.in_flight,
        };
        if let Some(size) = size_for(self.base, len, others) {
            // Best effort: a socket that refuses keeps its buffer and works.
            let _ = socket2::SockRef::from(&sock).set_send_buffer_size(size);
        }
        Some(guard)
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    const K: usize = 1024;

    #[test]
    fn a_lone_large_body_gets_the_larger_buffer() {
        let cases = [
            // base, body, other large bodies in flight, buffer set
            (Some(256 * K), 10 * K, 0, None),
            (Some(256 * K), 256 * K, 0, None),
            (Some(256 * K), 256 * K + 1, 0, Some(512 * K)),
            (Some(256 * K), 50_000 * K, 0, Some(512 * K)),
            (Some(256 * K), 1000 * K, 1, Some(256 * K)),
            (Some(256 * K), 1000 * K, 63, Some(256 * K)),
            (None, 1000 * K, 0, None),
        ];
        for (base, len, others, want) in cases {
            assert_eq!(size_for(base, len, others), want, "{base:?} {len} {others}");
        }
    }

    fn sndbuf(s: &std::net::TcpStream) -> usize {
        socket2::SockRef::from(s).send_buffer_size().unwrap()
    }

    #[test]
    fn the_buffer_follows_the_bodies_in_flight() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let b = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let bufs = SendBuffers::new(Some(64 * K));
        // Linux reports twice what was set.
        let first = bufs.size(a.as_fd(), 1000 * K).unwrap();
        assert_eq!(sndbuf(&a), 2 * 128 * K);
        let second = bufs.size(b.as_fd(), 1000 * K).unwrap();
        assert_eq!(sndbuf(&b), 2 * 64 * K);
        assert_eq!(bufs.in_flight(), 2);
        assert!(bufs.size(b.as_fd(), 10 * K).is_none(), "small: not counted");
        drop(first);
        drop(second);
        assert_eq!(bufs.in_flight(), 0);
        // Alone again: the larger buffer, also on a connection that had
        // the smaller one.
        let _again = bufs.size(b.as_fd(), 1000 * K).unwrap();
        assert_eq!(sndbuf(&b), 2 * 128 * K);
    }
}
