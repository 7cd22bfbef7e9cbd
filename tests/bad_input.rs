//! Bad input anywhere gets a 4xx with a short message, never a panic or a
//! dropped connection: raw malformed requests, bad IDs, versions, queries.

mod common;

use std::io::{Read, Write};

use common::*;

/// Sends raw bytes and returns the status line.
fn raw(base: &str, request: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    s.write_all(request).unwrap();
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn malformed_requests_get_4xx() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let base = proxy.base.clone();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET /v3/flat\xffcontainer/x/index.json HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET /v3/flatcontainer/%ff%fe/index.json HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET /v3/search/query?q=%ff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "400",
        ),
    ];
    for (req, want) in cases {
        let b = base.clone();
        let line = tokio::task::spawn_blocking(move || raw(&b, &req))
            .await
            .unwrap();
        assert!(line.contains(want), "{line:?}");
    }
    let long_id = "a".repeat(101);
    let table = [
        (format!("/v3/flatcontainer/{long_id}/index.json"), 400),
        (
            "/v3/flatcontainer/foo/1.2.3.4.5/foo.nuspec".to_string(),
            400,
        ),
        ("/v3/flatcontainer/foo/1.0.0-/foo.nuspec".to_string(), 400),
        ("/v3/flatcontainer/foo%00bar/index.json".to_string(), 400),
        (
            format!("/v3/flatcontainer/foo/index.json?{}", "x".repeat(5000)),
            414,
        ),
        (
            "/api/packages/f/download?name=a&version=%zz".to_string(),
            400,
        ),
    ];
    for (path, want) in table {
        let (s, h, b) = get(&proxy.url(&path)).await;
        assert_eq!(s, want, "{path}");
        assert_eq!(h["content-type"], "text/plain; charset=utf-8");
        assert!(b.len() < 200);
    }
    // Still serving.
    assert_eq!(get(&proxy.url("/health")).await.0, 200);
}
