//! Flat container through the real proxy: misses, hits, spellings, coalescing,
//! HTTP details and truncated upstream bodies.

mod common;

use std::sync::Arc;

use common::*;
use tokio::sync::Notify;

const NUPKG: &str = "/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg";

async fn setup() -> (FakeUpstream, Proxy, tempfile::TempDir, Vec<u8>) {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(300_000, 1);
    up.set(NUPKG, Behavior::bytes(body.clone()));
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    (up, proxy, dir, body)
}

#[tokio::test]
async fn miss_then_hit_fetches_once() {
    let (up, proxy, _dir, body) = setup().await;
    let url = proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg");
    let (s1, h1, b1) = get(&url).await;
    let (s2, h2, b2) = get(&url).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1, body);
    assert_eq!(b2, body);
    assert_eq!(h1["x-cache"], "MISS");
    assert_eq!(h2["x-cache"], "HIT");
    assert_eq!(h2["content-length"], body.len().to_string().as_str());
    assert_eq!(up.hits(NUPKG), 1);
}

#[tokio::test]
async fn every_spelling_hits_one_entry() {
    let (up, proxy, _dir, body) = setup().await;
    for path in [
        "/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg",
        "/v3/flatcontainer/Demo.Pkg/1.0.0/Demo.Pkg.1.0.0.nupkg",
        "/v3/flatcontainer/DEMO.PKG/1.0/DEMO.PKG.1.0.nupkg",
        "/v3/flatcontainer/demo.pkg/1.00.0.0/demo.pkg.1.0.0.nupkg",
        "/v3/flatcontainer/demo.pkg/1.0.0%2Bbuild.7/demo.pkg.1.0.0.nupkg",
        "/v3/flatcontainer/demo.pkg/01.0.0/demo.pkg.1.0.0.nupkg",
    ] {
        let (s, _, b) = get(&proxy.url(path)).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(b, body, "{path}");
    }
    assert_eq!(up.hits(NUPKG), 1);
}

#[tokio::test]
async fn concurrent_cold_requests_share_one_fetch_and_stream() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(2_000_000, 2);
    let gate = Arc::new(Notify::new());
    up.set(
        NUPKG,
        Behavior::Gated {
            body: body.clone(),
            split: 700_000,
            gate: gate.clone(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let url = proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg");

    // Every client gets its response headers (and the first part of the body)
    // while the upstream is still holding back the rest: they are all attached
    // to the one fill in progress, not served from a finished entry.
    let (head_tx, mut head_rx) = tokio::sync::mpsc::channel(64);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let url = url.clone();
        let head_tx = head_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = client().get(&url).send().await.expect("send");
            assert_eq!(r.status(), 200);
            let mut got = r
                .chunk()
                .await
                .expect("first chunk")
                .expect("some body")
                .to_vec();
            head_tx.send(()).await.expect("report");
            while let Some(c) = r.chunk().await.expect("chunk") {
                got.extend_from_slice(&c);
            }
            got
        }));
    }
    for _ in 0..50 {
        within(head_rx.recv())
            .await
            .expect("a client started receiving");
    }
    assert_eq!(
        up.hits(NUPKG),
        1,
        "one upstream fetch while 50 clients wait"
    );
    gate.notify_one();
    for t in tasks {
        let got = within(t).await.expect("client task");
        assert!(
            got == body,
            "a client got different bytes ({} vs {})",
            got.len(),
            body.len()
        );
    }
    assert_eq!(up.hits(NUPKG), 1);
}

#[tokio::test]
async fn head_conditional_and_range() {
    let (up, proxy, _dir, body) = setup().await;
    let url = proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg");
    let c = client();

    let head = within(c.head(&url).send()).await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(head.headers()["content-type"], "application/octet-stream");
    let etag = head.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "{etag}");
    assert!(within(head.bytes()).await.unwrap().is_empty());

    // HEAD may have filled the cache; either way GET must be complete.
    let (s, h, b) = get(&url).await;
    assert_eq!((s, b.len()), (200, body.len()));
    assert_eq!(h["etag"].to_str().unwrap(), etag);

    let r = within(c.get(&url).header("If-None-Match", &etag).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(within(r.bytes()).await.unwrap().is_empty());
    let r = within(c.get(&url).header("If-None-Match", "\"other\"").send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = within(c.get(&url).header("Range", "bytes=100-199").send())
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{}", body.len()).as_str()
    );
    assert_eq!(within(r.bytes()).await.unwrap().as_ref(), &body[100..200]);

    let r = within(c.get(&url).header("Range", "bytes=-10").send())
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        within(r.bytes()).await.unwrap().as_ref(),
        &body[body.len() - 10..]
    );

    let r = within(
        c.get(&url)
            .header("Range", format!("bytes={}-", body.len()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", body.len()).as_str()
    );
    assert_eq!(up.hits(NUPKG), 1);
}

#[tokio::test]
async fn truncated_upstream_body_is_neither_served_whole_nor_cached() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(1_000_000, 3);
    up.set(
        NUPKG,
        Behavior::Truncate {
            declared: body.len(),
            body: body[..400_000].to_vec(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let url = proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg");

    // Either a clean 502 (the cut was seen before the headers went out) or a
    // 200 whose body breaks off: never a complete-looking 200.
    let r = within(client().get(&url).send()).await.expect("headers");
    let status = r.status().as_u16();
    match (status, within(r.bytes()).await) {
        (200, Ok(b)) => panic!(
            "a truncated body was delivered as complete ({} bytes)",
            b.len()
        ),
        (200, Err(_)) | (502, Ok(_)) => {}
        (s, _) => panic!("unexpected status {s}"),
    }
    // The failed fill deletes its temp file before clients see the abort.
    assert_eq!(temp_files(dir.path()), 0, "no temp file left behind");
    // Not cached: the next request goes upstream again, now to a good copy.
    up.set(NUPKG, Behavior::bytes(body.clone()));
    let (s, _, b) = get(&url).await;
    assert_eq!(s, 200);
    assert!(b == body);
    assert_eq!(up.hits(NUPKG), 2);
}

#[tokio::test]
async fn upstream_404_and_bad_input() {
    let (_up, proxy, _dir, _) = setup().await;
    let table = [
        ("/v3/flatcontainer/nothere/1.0.0/nothere.1.0.0.nupkg", 404),
        ("/v3/flatcontainer/nothere/index.json", 404),
        (
            "/v3/flatcontainer/demo.pkg/not.a.version/demo.pkg.nuspec",
            400,
        ),
        ("/v3/flatcontainer/..%2F..%2Fetc/index.json", 400),
        ("/v3/flatcontainer/demo.pkg/1.0.0/other.1.0.0.nupkg", 404),
        ("/v3/registration/unknown-hive/demo.pkg/index.json", 404),
        ("/nuget/internal/v3/index.json", 404),
        ("/nope", 404),
    ];
    for (path, want) in table {
        let (s, h, b) = get(&proxy.url(path)).await;
        assert_eq!(s, want, "{path}");
        assert_eq!(h["content-type"], "text/plain; charset=utf-8", "{path}");
        assert!(b.len() < 200, "short message for {path}");
    }
    let r = within(client().post(proxy.url("/v3/index.json")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn metrics_count_hits_misses_and_upstream_requests() {
    let (_up, proxy, _dir, _) = setup().await;
    let url = proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg");
    get(&url).await;
    get(&url).await;
    let (s, h, b) = get(&proxy.url("/metrics")).await;
    assert_eq!(s, 200);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(b).unwrap();
    for want in [
        "feedcache_requests_total{cache=\"MISS\",route=\"flat_file\",tier=\"upstream\"} 1",
        "feedcache_requests_total{cache=\"HIT\",route=\"flat_file\",tier=\"memory\"} 1",
        "feedcache_upstream_requests_total 2",
        "feedcache_upstream_seconds_count 2",
        "feedcache_cache_bytes{tier=\"memory\"}",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    let served: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("feedcache_bytes_served_total "))
        .and_then(|v| v.parse().ok())
        .expect("bytes served");
    assert!(served >= 600_000, "{served}");
}

/// Large entries leave whole, as ranges, and with the connection kept
/// alive for the next request (raw HTTP/1.1 so the reuse is certain): one
/// too large for the memory tier (sent from the disk tier) and one the
/// memory tier holds as its file's mapping, with the file for `sendfile`;
/// each from the mapping (to this host's clients by default, to all with
/// `sendfile = false`) and with `sendfile = true` by `sendfile(2)`.
#[tokio::test]
async fn large_entries_are_sent_whole_ranged_and_keep_alive() {
    // 6 MB is above memory_max_entry (4 MiB), 3.5 MB below it.
    for size in [6_000_000, 3_500_000] {
        for conf in ["", "sendfile = false\n", "sendfile = true\n"] {
            large_entries_sent(conf, size).await;
        }
    }
}

async fn large_entries_sent(conf: &str, size: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(size, 77);
    let path = "/v3-flatcontainer/huge/1.0.0/huge.1.0.0.nupkg";
    up.set(path, Behavior::bytes(body.clone()));
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with_conf(&up.index_url(), dir.path(), "cache", conf).await;
    let url_path = "/v3/flatcontainer/huge/1.0.0/huge.1.0.0.nupkg";
    let (s, h, b) = get(&proxy.url(url_path)).await;
    assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "MISS"));
    assert!(b == body);

    let addr = proxy.addr();
    let mut conn = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let mut buf = Vec::new();
    // Reads one response with a Content-Length body off the connection.
    async fn response(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                while buf.len() < end + 4 + len {
                    let mut chunk = vec![0u8; 1 << 16];
                    let n = within(conn.read(&mut chunk)).await.unwrap();
                    assert!(n > 0, "connection closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let rest = buf.split_off(end + 4 + len);
                let got = buf.split_off(end + 4);
                *buf = rest;
                return (head, got);
            }
            let mut chunk = vec![0u8; 1 << 16];
            let n = within(conn.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "connection closed before a response");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let asks = [
        (String::new(), 0, body.len()),
        ("Range: bytes=1000-2999999\r\n".to_string(), 1000, 3_000_000),
        (
            "Range: bytes=-100\r\n".to_string(),
            body.len() - 100,
            body.len(),
        ),
        (String::new(), 0, body.len()),
    ];
    for (extra, from, to) in asks {
        let req = format!("GET {url_path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        within(conn.write_all(req.as_bytes())).await.unwrap();
        let (head, got) = response(&mut conn, &mut buf).await;
        assert!(
            head.contains("X-Cache: HIT") || head.contains("x-cache: HIT"),
            "{head}"
        );
        assert!(got == body[from..to], "bytes {from}-{to} differ");
    }
    assert_eq!(up.hits(path), 1);
    // To this host's clients (loopback) the body is written unless the
    // setting says `true`; then every large part above went by `sendfile`,
    // from the memory tier as from the disk tier.
    let (_, _, m) = get(&proxy.url("/metrics")).await;
    let m = String::from_utf8(m).unwrap();
    let by_sendfile: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("feedcache_sendfile_bytes_total "))
        .expect("sendfile counter")
        .parse()
        .unwrap();
    // Two whole bodies and the range of 2,999,000 bytes; the last 100
    // bytes are below `sendfile`'s minimum.
    let want = if conf.contains("true") {
        (2 * size + 2_999_000) as u64
    } else {
        0
    };
    assert_eq!(by_sendfile, want, "{conf:?}, {size} bytes");
}

/// A plain GET/HEAD is read in place and anything unusual by pingora
/// (`server/request.rs`); both must answer alike. More header fields than
/// the in-place reader takes send the same request down pingora's path.
#[tokio::test]
async fn requests_read_in_place_and_by_pingora_are_answered_alike() {
    let (up, proxy, _dir, _body) = setup().await;
    up.set(
        "/v3-flatcontainer/small.pkg/1.0.0/small.pkg.1.0.0.nupkg",
        Behavior::bytes(blob(2_000, 3)),
    );
    let big = "/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg";
    let little = "/v3/flatcontainer/small.pkg/1.0.0/small.pkg.1.0.0.nupkg";
    for p in [big, little, "/v3/index.json"] {
        assert_eq!(get(&proxy.url(p)).await.0, 200);
    }
    let etag = get(&proxy.url(little)).await.1["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    // (method, path, extra fields, the status both must give)
    let asks = [
        ("GET", big, String::new(), 200),
        ("HEAD", little, String::new(), 200),
        ("GET", little, "Range: bytes=0-9\r\n".to_owned(), 206),
        ("GET", little, "Range: bytes=99999-\r\n".to_owned(), 416),
        ("GET", little, format!("If-None-Match: {etag}\r\n"), 304),
        // One list over two field lines (RFC 9110 5.3).
        (
            "GET",
            little,
            format!("If-None-Match: \"nope\"\r\nIf-None-Match: {etag}\r\n"),
            304,
        ),
        // Range is for GET only (RFC 9110 §14.2).
        ("HEAD", little, "Range: bytes=0-9\r\n".to_owned(), 200),
        ("HEAD", little, "Range: bytes=99999-\r\n".to_owned(), 200),
        // If-Range: the range only of the same version, else all of it.
        (
            "GET",
            little,
            format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
            206,
        ),
        (
            "GET",
            little,
            "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n".to_owned(),
            200,
        ),
        ("GET", "/v3/index.json", String::new(), 200),
        (
            "GET",
            "/v3/flatcontainer/none.pkg/index.json",
            String::new(),
            404,
        ),
        (
            "GET",
            "/v3/flatcontainer/Demo.Pkg/1.00/demo.pkg.1.0.0.nupkg?x=%41",
            String::new(),
            200,
        ),
    ];
    let padding = pingora_padding();
    let addr = proxy.addr();
    for (method, path, extra, want) in &asks {
        let mut answers = Vec::new();
        for pad in ["", padding.as_str()] {
            let mut s = within(tokio::net::TcpStream::connect(&addr)).await.unwrap();
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}{pad}Connection: close\r\n\r\n"
            );
            use tokio::io::AsyncWriteExt;
            within(s.write_all(req.as_bytes())).await.unwrap();
            let (status, mut headers, body) =
                read_response(&mut s, &mut Vec::new(), *method == "HEAD" || *want == 304).await;
            headers.remove("date");
            answers.push((status, headers, body));
        }
        assert_eq!(answers[0].0, *want, "{method} {path} {extra}");
        assert_eq!(answers[0], answers[1], "{method} {path} {extra}");
    }
}

/// Reads one response off `s` (after `buf`'s leftovers): status, headers
/// (names lowercased) and, unless `head`, the body of its Content-Length.
async fn read_response(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    head: bool,
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 65536];
        let n = within(s.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed before a full header");
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: std::collections::HashMap<_, _> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    buf.drain(..end);
    let len: usize = if head {
        0
    } else {
        headers["content-length"].parse().unwrap()
    };
    while buf.len() < len {
        let mut chunk = [0u8; 65536];
        let n = within(s.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..len).collect();
    (status, headers, body)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, proxy, _dir, body) = setup().await;
    let small = blob(2_000, 3);
    up.set(
        "/v3-flatcontainer/small.pkg/1.0.0/small.pkg.1.0.0.nupkg",
        Behavior::bytes(small.clone()),
    );
    let big = "/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg";
    let little = "/v3/flatcontainer/small.pkg/1.0.0/small.pkg.1.0.0.nupkg";
    // Cached first, so the pipelined hits leave from disk (the 300 KB one,
    // from its mapping) and from memory (the small one).
    for p in [big, little, little] {
        assert_eq!(get(&proxy.url(p)).await.0, 200);
    }
    let addr = proxy.addr();
    let mut s = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let reqs = format!(
        "GET {big} HTTP/1.1\r\nHost: x\r\n\r\n\
         HEAD {little} HTTP/1.1\r\nHost: x\r\n\r\n\
         GET {little} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n\
         GET /v3/flatcontainer/none.pkg/index.json HTTP/1.1\r\nHost: x\r\n\r\n\
         GET {little} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    use tokio::io::AsyncWriteExt;
    within(s.write_all(reqs.as_bytes())).await.unwrap();
    let mut buf = Vec::new();
    let (st, h, b) = read_response(&mut s, &mut buf, false).await;
    assert_eq!((st, h["x-cache"].as_str()), (200, "HIT"));
    assert_eq!(b, body);
    let (st, h, _) = read_response(&mut s, &mut buf, true).await;
    assert_eq!((st, h["content-length"].as_str()), (200, "2000"));
    let (st, _, b) = read_response(&mut s, &mut buf, false).await;
    assert_eq!((st, b.as_slice()), (206, &small[..10]));
    let (st, _, _) = read_response(&mut s, &mut buf, false).await;
    assert_eq!(st, 404);
    let (st, h, b) = read_response(&mut s, &mut buf, false).await;
    assert_eq!((st, h["connection"].as_str()), (200, "close"));
    assert_eq!(b, small);
    // Then the server closes the connection, with nothing more sent.
    let mut rest = Vec::new();
    use tokio::io::AsyncReadExt;
    within(s.read_to_end(&mut rest)).await.unwrap();
    assert!(buf.is_empty() && rest.is_empty());
    assert_eq!(up.hits(NUPKG), 1);
}
