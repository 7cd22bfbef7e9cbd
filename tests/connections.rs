//! Hostile clients (issue #13, row 1): header deadlines, idle keep-alive
//! timeouts and the connection cap, against the real binary.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// feedcache with short deadlines and a small connection cap.
async fn setup(max: usize) -> (FakeUpstream, Proxy, tempfile::TempDir) {
    start(&format!(
        "[connections]\nmax = {max}\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"\n"
    ))
    .await
}

/// feedcache with the config file `conf`, in front of a fake NuGet feed.
async fn start(conf: &str) -> (FakeUpstream, Proxy, tempfile::TempDir) {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with_conf(&up.index_url(), dir.path(), "cache", conf).await;
    (up, proxy, dir)
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = within(s.read_to_end(&mut out)).await;
    out
}

/// `read_to_close`, as text.
async fn read_text(s: &mut TcpStream) -> String {
    String::from_utf8_lossy(&read_to_close(s).await).into_owned()
}

#[tokio::test]
async fn a_trickled_header_is_cut_off_at_the_deadline() {
    let (_up, proxy, _dir) = setup(100).await;
    let mut s = within(TcpStream::connect(proxy.addr())).await.unwrap();
    // One byte at a time, each well inside any per-read timeout: only a
    // deadline on the whole header ends this.
    let trickle = async {
        for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The write loop ends only when the server has closed the connection.
    within(trickle).await;
    let rest = read_to_close(&mut s).await;
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (_up, proxy, _dir) = setup(100).await;
    let mut s = within(TcpStream::connect(proxy.addr())).await.unwrap();
    within(s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
        .await
        .unwrap();
    // The response arrives, then the connection is closed by the idle
    // deadline (1 s here) without the client doing anything.
    let text = read_text(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
}

/// An extra CRLF after a request (RFC 9112 2.2: a server should ignore
/// it) leaves the connection idle, closed by the idle deadline without a
/// word, rather than waiting for a header and answering 408 (whether the
/// request was read in place or padded so that pingora reads it).
#[tokio::test]
async fn an_extra_line_end_after_a_request_is_not_a_new_request() {
    // The idle deadline well after the header deadline, so which of the two
    // ended the connection shows in what was sent.
    let (_up, proxy, _dir) =
        start("[connections]\nheader_timeout = \"1s\"\nidle_timeout = \"3s\"\n").await;
    let padding = pingora_padding();
    for pad in ["", padding.as_str()] {
        let mut s = within(TcpStream::connect(proxy.addr())).await.unwrap();
        let req = format!("GET /health HTTP/1.1\r\nHost: x\r\n{pad}\r\n\r\n");
        within(s.write_all(req.as_bytes())).await.unwrap();
        let text = read_text(&mut s).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    }
}

#[tokio::test]
async fn a_reply_to_a_request_whose_body_is_still_coming_is_not_reset() {
    // feedcache answers a push at once without reading its body, and
    // closes. Closed with the body unread, the socket would answer the
    // client with a reset, and a client stack that drops unread data on
    // a reset (Windows) would lose the reply; the rest of the body is read
    // and dropped until the client closes (a lingering close).
    let (_up, proxy, _dir) = start("").await;
    let head =
        format!("PUT /api/v2/package HTTP/1.1\r\nHost: x\r\nContent-Length: {FLOOD}\r\n\r\n");
    let text = send_flood_then_read(proxy.addr(), &head).await;
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
}

#[tokio::test]
async fn a_refused_header_is_answered_while_the_client_still_sends() {
    // The same for a header refused with 400 (malformed, or longer than
    // the parser takes) while its rest or a body is still coming.
    let (_up, proxy, _dir) = start("").await;
    let cases = [
        format!("PUT /x HTTP/1.1\r\nHost: x\r\nBad Name: y\r\nContent-Length: {FLOOD}\r\n\r\n"),
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Long: ".to_string(),
    ];
    for head in cases {
        let text = send_flood_then_read(proxy.addr(), &head).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{head:?}: {text}");
    }
}

/// A request that declares a body (which no route reads) and holds it
/// back for a `100 Continue` is answered at once, not left waiting until
/// the header deadline (RFC 9110 10.1.1: a final status instead of 100).
#[tokio::test]
async fn a_request_holding_its_body_for_100_continue_is_answered() {
    // A header deadline far beyond the test's step timeout: waiting for
    // the body would fail the test rather than end in a closed connection.
    let (_up, proxy, _dir) = start("[connections]\nheader_timeout = \"10m\"\n").await;
    for (method, path, want) in [
        ("GET", "/health", "HTTP/1.1 200"),
        ("PUT", "/api/v2/package", "HTTP/1.1 4"),
    ] {
        let mut s = within(TcpStream::connect(proxy.addr())).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        );
        within(s.write_all(head.as_bytes())).await.unwrap();
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = within(s.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "{method}: closed without a reply");
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(want), "{method}: {text}");
        assert!(text.contains("Connection: close"), "{method}: {text}");
    }
}

/// Bytes sent after a head: more than the loopback's socket buffers
/// hold, so the client is still sending when the reply comes.
const FLOOD: usize = 32 << 20;

/// Sends `head`, then `FLOOD` bytes of `x`, all of which must be taken;
/// then shuts the write side and reads the reply to the end.
async fn send_flood_then_read(addr: String, head: &str) -> String {
    let mut s = within(TcpStream::connect(addr)).await.unwrap();
    within(s.write_all(head.as_bytes())).await.unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..FLOOD / chunk.len() {
        within(s.write_all(&chunk))
            .await
            .expect("the body is taken to its end");
    }
    within(s.shutdown()).await.unwrap();
    read_text(&mut s).await
}

#[tokio::test]
async fn a_reply_with_connection_close_arrives_whole_and_ends() {
    // Cold, the body streams through pingora's session; cached, the
    // connection loop writes it. Either way the close comes after the
    // whole body, and the lingering close ends with the client's.
    let (up, proxy, _dir) = start("").await;
    let body = blob(2_000_000, 3);
    up.set(
        "/v3-flatcontainer/cl/1.0.0/cl.1.0.0.nupkg",
        Behavior::bytes(body.clone()),
    );
    let req = "GET /v3/flatcontainer/cl/1.0.0/cl.1.0.0.nupkg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for pass in ["cold", "cached"] {
        let mut s = within(TcpStream::connect(proxy.addr())).await.unwrap();
        within(s.write_all(req.as_bytes())).await.unwrap();
        let all = read_to_close(&mut s).await;
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect(pass) + 4;
        let head = String::from_utf8_lossy(&all[..split]);
        assert!(head.starts_with("HTTP/1.1 200"), "{pass}: {head}");
        assert!(head.contains("Connection: close"), "{pass}: {head}");
        assert!(
            all[split..] == body[..],
            "{pass}: {} body bytes",
            all.len() - split
        );
    }
}

#[tokio::test]
async fn a_flood_of_idle_connections_does_not_lock_clients_out() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (up, proxy, _dir) = setup(200).await;
    let pkg = blob(20_000, 9);
    up.set(
        "/v3-flatcontainer/flood/1.0.0/flood.1.0.0.nupkg",
        Behavior::bytes(pkg.clone()),
    );
    let url = proxy.url("/v3/flatcontainer/flood/1.0.0/flood.1.0.0.nupkg");
    assert_eq!(get(&url).await.0, 200, "cached before the flood");
    // 2,000 connections (10x the cap), each sending one byte of a header.
    let target = proxy.addr();
    let mut flood = Vec::new();
    for _ in 0..2_000 {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&target)).await
        {
            let _ = s.write_all(b"G").await;
            flood.push(s);
        }
    }
    assert!(
        flood.len() > 1_000,
        "only {} connections opened",
        flood.len()
    );
    // New clients still get answers, on fresh connections each time.
    for _ in 0..5 {
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let r = within(c.get(proxy.url("/health")).send()).await.unwrap();
        assert_eq!(r.status(), 200);
        let r = within(c.get(&url).send()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(within(r.bytes()).await.unwrap().len(), pkg.len());
    }
    drop(flood);
}

/// A client that hangs up mid-body is logged and counted with the status
/// that went out and the bytes that made it, never as status 0 (#13, code
/// health): both on pingora's write path (a fill) and on the connection
/// loop's own (a disk hit written from its mapping, or by `sendfile`).
#[tokio::test]
async fn hang_ups_are_recorded_with_the_status_sent() {
    for top in ["", "sendfile = true\n"] {
        hang_ups_recorded(top).await;
    }
}

async fn hang_ups_recorded(top: &str) {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("feedcache.toml");
    std::fs::write(&conf, top).unwrap();
    let log = dir.path().join("feedcache.log");
    let proxy = Proxy::start_logging_to(
        &up.index_url(),
        &dir.path().join("cache"),
        &log,
        &["-c", conf.to_str().unwrap()],
    )
    .await;
    let path = "/v3-flatcontainer/big/1.0.0/big.1.0.0.nupkg";
    up.set(path, Behavior::bytes(blob(16_000_000, 5)));
    let hang_up = || async {
        let mut s = within(TcpStream::connect(proxy.addr())).await.unwrap();
        let req = "GET /v3/flatcontainer/big/1.0.0/big.1.0.0.nupkg HTTP/1.1\r\nHost: x\r\n\r\n";
        within(s.write_all(req.as_bytes())).await.unwrap();
        let mut first = [0u8; 1024];
        let n = within(s.read(&mut first)).await.unwrap();
        assert!(first[..n].starts_with(b"HTTP/1.1 200"));
        // Dropped with most of the body unread: the server's writes fail.
    };
    hang_up().await; // the fill
    let (s, _, b) = get(&proxy.url("/v3/flatcontainer/big/1.0.0/big.1.0.0.nupkg")).await;
    assert_eq!((s, b.len()), (200, 16_000_000));
    hang_up().await; // a disk hit
    let total = |m: &str, prefix: &str| -> u64 {
        let (name, label) = prefix.split_once('{').unwrap_or((prefix, ""));
        m.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    // All three downloads recorded, and every request recorded is a 200.
    eventually(async || {
        let (_, _, m) = get(&proxy.url("/metrics")).await;
        let m = String::from_utf8(m).unwrap();
        assert!(!m.contains("status=\"0\""), "{m}");
        total(&m, "feedcache_requests_total{route=\"flat_file\"") == 3
            && total(&m, "feedcache_requests_total{")
                == total(&m, "feedcache_responses_total{status=\"200\"}")
    })
    .await;
    // The access log gives each its bytes: the hung-up hit what went out
    // before the hang-up (some, not all), the whole download all of it.
    let mut bytes = Vec::new();
    eventually(async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        bytes = text
            .lines()
            .filter(|l| l.contains("access:") && l.contains("big.1.0.0.nupkg"))
            .filter_map(|l| {
                l.split(" bytes=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .collect();
        bytes.len() == 3
    })
    .await;
    assert_eq!(bytes[1], 16_000_000, "{bytes:?}");
    assert!(bytes[2] > 0 && bytes[2] < 16_000_000, "{bytes:?}");
}

/// A client that stops reading a response is cut off after
/// `connections.send_timeout`, freeing its slot: with a cap of one
/// connection, the next client gets in. A disk hit written from its
/// mapping, the same by `sendfile`, and a fill streamed through pingora.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    stalled_reader("", true).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_by_sendfile() {
    stalled_reader("sendfile = true\n", true).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_a_fill_is_cut_off() {
    stalled_reader("", false).await;
}

async fn stalled_reader(top: &str, cached: bool) {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let conf = format!("{top}[connections]\nmax = 1\nsend_timeout = \"1s\"\n");
    let proxy = Proxy::start_with_conf(&up.index_url(), dir.path(), "cache", &conf).await;
    up.set(
        "/v3-flatcontainer/big/1.0.0/big.1.0.0.nupkg",
        Behavior::bytes(blob(16_000_000, 9)),
    );
    let path = "/v3/flatcontainer/big/1.0.0/big.1.0.0.nupkg";
    // With a cap of one, a newcomer is refused (closed unanswered) while
    // the previous client's connection is still busy on the server, which
    // it can be for a moment after that client has its answer (the
    // readiness probe's, the warm-up's): both steps below retry until the
    // one slot is free.
    if cached {
        eventually(async || {
            let Ok(r) = client().get(proxy.url(path)).send().await else {
                return false;
            };
            r.status() == 200 && r.bytes().await.is_ok_and(|b| b.len() == 16_000_000)
        })
        .await;
    }
    // Asks for 16 MB, reads the head, then nothing: the server's writes
    // stop once the socket buffers are full.
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut held = None;
    eventually(async || {
        let Ok(mut s) = TcpStream::connect(proxy.addr()).await else {
            return false;
        };
        if s.write_all(req.as_bytes()).await.is_err() {
            return false;
        }
        let mut head = [0u8; 64];
        let n = s.read(&mut head).await.unwrap_or(0);
        if !head[..n].starts_with(b"HTTP/1.1 200") {
            return false;
        }
        held = Some(s);
        true
    })
    .await;
    let stalled = held.expect("a stalled download");
    // Refused while the stalled download holds the one slot; let in once
    // the send deadline has cut it off.
    eventually(async || {
        let Ok(mut s) = TcpStream::connect(proxy.addr()).await else {
            return false;
        };
        let ask = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if s.write_all(ask).await.is_err() {
            return false;
        }
        read_to_close(&mut s).await.starts_with(b"HTTP/1.1 200")
    })
    .await;
    drop(stalled);
}
