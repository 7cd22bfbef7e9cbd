//! Listen addresses: parsing, and turning port 0 into a concrete free port.

use std::net::{SocketAddr, TcpListener};

/// Parses `host:port` where host is an IP literal (`127.0.0.1`, `[::1]`).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("`{s}` is not an IP address with a port, like 127.0.0.1:5000"))
}

/// pingora binds listeners itself and offers no way to learn the port it got for
/// port 0, so an ephemeral port is chosen here: the kernel hands out a free port,
/// which is released and passed to pingora a moment later. Tests rely on this.
pub fn resolve_ephemeral(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = TcpListener::bind(addr)?;
    probe.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        assert!(parse_listen("127.0.0.1:5000").is_ok());
        assert!(parse_listen("[::1]:80").is_ok());
        assert!(parse_listen("localhost:80").is_err());
        assert!(parse_listen("127.0.0.1").is_err());
        let a = resolve_ephemeral(parse_listen("127.0.0.1:0").unwrap()).unwrap();
        assert_ne!(a.port(), 0);
        let fixed = parse_listen("127.0.0.1:5000").unwrap();
        assert_eq!(resolve_ephemeral(fixed).unwrap(), fixed);
    }
}
