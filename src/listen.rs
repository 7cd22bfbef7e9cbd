//! Listen addresses: parsing, and reserving one (port 0: a concrete free
//! port) until pingora listens on it.

use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

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

/// An address held for pingora's listener from start-up on.
///
/// pingora binds listeners itself and offers no way to learn the port it
/// got for port 0, and it retries a bind that fails for a while, in a
/// thread of its own, while the process lives on. So the address is bound
/// here first: an address in use fails start-up at once with one clear
/// line, and port 0 becomes a concrete port. The socket stays bound (with
/// `SO_REUSEADDR`, never listening, so it receives no connection) as long
/// as this value lives: pingora's listener, also `SO_REUSEADDR`, binds
/// beside it, while a `bind` to port 0 anywhere else is never handed this
/// port. Releasing it before pingora had bound let another socket take the
/// port in between, and a client read on stdout a port that another server
/// was answering (seen in the tests, which start many servers at once).
pub struct Reserved {
    pub addr: SocketAddr,
    _hold: Socket,
}

/// Reserves `addr` (port 0: a free port) for the life of the returned value.
pub fn reserve(addr: SocketAddr) -> std::io::Result<Reserved> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let hold = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    hold.set_reuse_address(true)?;
    // A listener on the address already is refused here (with
    // `SO_REUSEADDR`, only a socket that merely is bound does not conflict).
    hold.bind(&addr.into()).map_err(named)?;
    let addr = hold
        .local_addr()?
        .as_socket()
        .ok_or_else(|| named(std::io::ErrorKind::InvalidData.into()))?;
    Ok(Reserved { addr, _hold: hold })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_and_resolves() {
        assert!(parse_listen("127.0.0.1:5000").is_ok());
        assert!(parse_listen("[::1]:80").is_ok());
        assert!(parse_listen("localhost:80").unwrap().ip().is_loopback());
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("no such host.invalid:80").is_err());
        let r = reserve(parse_listen("127.0.0.1:0").unwrap()).unwrap();
        assert_ne!(r.addr.port(), 0);
        // pingora's listener (`SO_REUSEADDR`, as std's) binds beside the
        // reservation and gets its connections.
        let pingora = TcpListener::bind(r.addr).unwrap();
        let _client = std::net::TcpStream::connect(r.addr).unwrap();
        assert!(pingora.accept().is_ok());
        // A port in use is refused at once, with the address in the message.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let err = reserve(busy).err().unwrap().to_string();
        assert!(err.contains(&busy.to_string()), "{err}");
    }
}
