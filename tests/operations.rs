//! What an operator sees (issue #13, the new-user list): logs written to a
//! file are plain text with rounded durations, and an unreachable upstream
//! is named, with the cause, in one line.

mod common;

use common::*;

#[tokio::test]
async fn logs_are_plain_text_with_rounded_durations_when_not_a_terminal() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("feedcache.log");
    let proxy =
        Proxy::start_logging_to(&up.index_url(), &dir.path().join("cache"), &log, &[]).await;
    assert_eq!(get(&proxy.url("/v3/index.json")).await.0, 200);
    assert_eq!(get(&proxy.url("/nope")).await.0, 404);
    // SIGTERM: the buffered log is written out before the process ends.
    let st = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(proxy.wait_exit().await.success());

    let text = std::fs::read_to_string(&log).unwrap();
    // Before: ANSI colour codes in the file, and `ms=0.13989300000000002`.
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file:\n{text}"
    );
    let access: Vec<&str> = text.lines().filter(|l| l.contains(" access: ")).collect();
    assert!(
        access
            .iter()
            .any(|l| l.contains("path=\"/v3/index.json\"") && l.contains("status=200")),
        "{text}"
    );
    assert!(
        access
            .iter()
            .any(|l| l.contains("path=\"/nope\"") && l.contains("status=404")),
        "{text}"
    );
    for line in access {
        let ms = line.rsplit("ms=").next().unwrap().trim();
        let (whole, frac) = ms.split_once('.').unwrap_or((ms, ""));
        assert!(whole.parse::<u64>().is_ok() && frac.len() <= 3, "{line}");
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_named_with_the_cause() {
    // A port nothing listens on: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let index = format!("http://127.0.0.1:{port}/v3/index.json");
    let proxy = Proxy::start(&index, dir.path(), &[]).await;
    let (s, h, b) = get(&proxy.url("/v3/index.json")).await;
    assert_eq!(s, 502);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    let text = String::from_utf8(b).unwrap();
    // Before: "502 upstream failed", naming neither the host nor the cause.
    assert_eq!(
        text,
        format!("upstream failed: cannot connect to 127.0.0.1:{port}\n")
    );
}
