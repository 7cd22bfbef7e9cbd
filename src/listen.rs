//! Listen addresses: parsing, and turning port 0 into a concrete free port.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

/// Parses `host:port`; the host is an IP literal (`127.0.0.1`, `[::1]`) or a
/// name resolved now (`localhost:5000`: its first address).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || format!("`{s}` is not a host and port, like 127.0.0.1:5000 or localhost:5000");
    if !s.contains(':') {
        return Err(bad());
    }
    s.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// Checks that `addr` can be listened on, and turns port 0 into a free port.
/// pingora binds listeners itself, retrying for a while and then failing in
/// a thread of its own while the process lives on, so an address in use is
/// caught here first and start-up fails at once with one clear line. pingora
/// also offers no way to learn the port it got for port 0: the kernel hands
/// out a free port, which is released and passed to pingora a moment later
/// (tests rely on this).
pub fn resolve_ephemeral(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let probe = TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    probe.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        assert!(parse_listen("127.0.0.1:5000").is_ok());
        assert!(parse_listen("[::1]:80").is_ok());
        assert!(parse_listen("localhost:80").unwrap().ip().is_loopback());
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("no such host.invalid:80").is_err());
        let a = resolve_ephemeral(parse_listen("127.0.0.1:0").unwrap()).unwrap();
        assert_ne!(a.port(), 0);
        // A port in use is refused at once, with the address in the message.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let err = resolve_ephemeral(busy).unwrap_err().to_string();
        assert!(err.contains(&busy.to_string()), "{err}");
    }
}
