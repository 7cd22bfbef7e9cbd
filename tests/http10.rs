//! HTTP/1.0 clients against the real binary: a body whose length is not
//! known when its header goes out (a fill from an upstream that sent no
//! Content-Length) cannot be chunked for them (RFC 9112 6.1).

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn an_unknown_length_body_reaches_http_1_0_close_delimited() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(50_000, 9);
    up.set(
        "/v3-flatcontainer/cd.pkg/1.0.0/cd.pkg.1.0.0.nupkg",
        Behavior::CloseDelimited(body.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr()))
        .await
        .unwrap();
    // Even when the client asks to keep the connection, the body can only
    // end with it.
    let req = "GET /v3/flatcontainer/cd.pkg/1.0.0/cd.pkg.1.0.0.nupkg HTTP/1.0\r\n\
               Host: x\r\nConnection: keep-alive\r\n\r\n";
    within(s.write_all(req.as_bytes())).await.unwrap();
    let mut got = Vec::new();
    within(s.read_to_end(&mut got)).await.unwrap();
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole header")
        + 4;
    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
    assert!(head.starts_with("http/1."), "{head}");
    assert!(head.contains(" 200 "), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(
        got[end..] == body[..],
        "the body, byte for byte, then the close"
    );
}
