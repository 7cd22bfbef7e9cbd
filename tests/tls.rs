//! The HTTPS listener: rustls with a configured certificate, HTTP/2 by ALPN,
//! and rewritten URLs that say https.

mod common;

use common::*;

/// feedcache with a TLS listener (a self-signed certificate for
/// `localhost`) and `extra_conf` in its config; returns it, the TLS port and
/// a client configuration that trusts the certificate and offers `alpn`.
async fn tls_proxy(
    up: &FakeUpstream,
    dir: &std::path::Path,
    extra_conf: &str,
    alpn: &[&[u8]],
) -> (Proxy, u16, rustls::ClientConfig) {
    let (section, port, ck) = tls::self_signed(dir);
    let conf = dir.join("c.toml");
    std::fs::write(&conf, format!("{extra_conf}{section}")).unwrap();
    let proxy = Proxy::start(
        &up.index_url(),
        &dir.join("cache"),
        &["-c", conf.to_str().unwrap()],
    )
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (proxy, port, tls)
}

/// A blocking TLS connection to the listener on `port` (retried while it
/// binds), for a client on its own thread; reads time out after 10 s.
fn connect_blocking(
    port: u16,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let sock = (0..200)
        .find_map(|_| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(50)))
                .ok()
        })
        .expect("TLS listener up");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(tls, name).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[tokio::test]
async fn https_listener_speaks_h2_and_rewrites_to_https() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    up.set(
        "/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg",
        Behavior::bytes(blob(100_000, 21)),
    );
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, port, tls) = tls_proxy(&up, dir.path(), "", &[b"h2", b"http/1.1"]).await;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .no_proxy()
        .timeout(STEP)
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");

    // The listener binds shortly after start-up; poll until it answers.
    let resp = within(async {
        loop {
            if let Ok(r) = client.get(format!("{base}/v3/index.json")).send().await {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let index = within(resp.text()).await.unwrap();
    assert!(
        index.contains(&format!("{base}/v3/flatcontainer/")),
        "rewritten to https: {index}"
    );
    let r = within(
        client
            .get(format!(
                "{base}/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg"
            ))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(within(r.bytes()).await.unwrap().len(), 100_000);
}

/// An HTTP/2 connection left idle is closed after `connections.idle_timeout`
/// as HTTP/1 keep-alives are (issue #13 row 1); before, it stayed open.
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    use std::io::{Read, Write};
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let conf = "[connections]\nidle_timeout = \"1s\"\n";
    let (_proxy, port, tls) = tls_proxy(&up, dir.path(), conf, &[b"h2"]).await;
    let tls = std::sync::Arc::new(tls);
    // A blocking client on its own thread: the HTTP/2 preface and an empty
    // SETTINGS frame, then nothing. The server must end the connection.
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = connect_blocking(port, tls);
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
        assert_eq!(s.conn.alpn_protocol(), Some(&b"h2"[..]));
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                // Closed (a GOAWAY may come first): what must happen.
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                // A reset or a TLS close without notify also ends it.
                Err(_) => return true,
            }
        }
    });
    assert!(
        within(closed).await.unwrap(),
        "the idle HTTP/2 connection stayed open"
    );
}

/// A `Connection: close` reply over TLS ends with the server's
/// `close_notify` after the whole body, so the client can tell the end of
/// the reply from a cut connection (rustls reports a close without it as
/// an unexpected end of file).
#[tokio::test]
async fn a_connection_close_reply_over_tls_ends_with_close_notify() {
    use std::io::{Read, Write};
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    up.set(
        "/v3-flatcontainer/cn/1.0.0/cn.1.0.0.nupkg",
        Behavior::bytes(blob(300_000, 5)),
    );
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, port, tls) = tls_proxy(&up, dir.path(), "", &[b"http/1.1"]).await;
    let tls = std::sync::Arc::new(tls);
    let ended = tokio::task::spawn_blocking(move || {
        let path = "/v3/flatcontainer/cn/1.0.0/cn.1.0.0.nupkg";
        // Cold (streamed through pingora's session), then cached (written
        // by the connection loop).
        let mut ends = Vec::new();
        for _ in 0..2 {
            let mut s = connect_blocking(port, tls.clone());
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let mut all = Vec::new();
            let end = s.read_to_end(&mut all).map_err(|e| e.kind());
            ends.push((end, all.len() > 300_000, all.starts_with(b"HTTP/1.1 200")));
        }
        ends
    });
    for (i, (end, whole, ok)) in within(ended).await.unwrap().into_iter().enumerate() {
        assert!(ok && whole, "reply {i}: whole 200");
        assert!(end.is_ok(), "reply {i}: ended by {end:?}, not close_notify");
    }
}
