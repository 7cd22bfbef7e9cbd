//! The disk tier survives a restart: a new process serves what the old one
//! cached without asking the upstream, even when the upstream is gone.

mod common;

use common::*;

#[tokio::test]
async fn restarted_proxy_serves_from_disk_without_upstream() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let small = blob(5_000, 4);
    let large = blob(6 << 20, 5); // above memory_max_entry: disk-only
    up.set(
        "/v3-flatcontainer/a/1.0.0/a.1.0.0.nupkg",
        Behavior::bytes(small.clone()),
    );
    up.set(
        "/v3-flatcontainer/b/2.0.0/b.2.0.0.nupkg",
        Behavior::bytes(large.clone()),
    );
    up.set(
        "/v3-flatcontainer/a/index.json",
        Behavior::json(r#"{"versions":["1.0.0"]}"#),
    );
    let dir = tempfile::tempdir().unwrap();

    let first = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    for p in [
        "/v3/flatcontainer/a/1.0.0/a.1.0.0.nupkg",
        "/v3/flatcontainer/b/2.0.0/b.2.0.0.nupkg",
        "/v3/flatcontainer/a/index.json",
    ] {
        assert_eq!(get(&first.url(p)).await.0, 200, "{p}");
    }
    first.kill();
    let index_url = up.index_url();
    drop(up); // the upstream is gone

    let second = Proxy::start(&index_url, dir.path(), &[]).await;
    let (s, h, b) = get(&second.url("/v3/flatcontainer/A/1.0/a.1.0.0.nupkg")).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-cache"], "HIT");
    assert!(b == small);
    let (s, _, b) = get(&second.url("/v3/flatcontainer/b/2.0.0/b.2.0.0.nupkg")).await;
    assert_eq!(s, 200);
    assert!(b == large);
    let (s, _, b) = get(&second.url("/v3/flatcontainer/a/index.json")).await;
    assert_eq!(s, 200);
    assert_eq!(b, br#"{"versions":["1.0.0"]}"#);
    // Never cached, and the upstream is down: a clear error, not a hang.
    let (s, _, _) = get(&second.url("/v3/flatcontainer/c/1.0.0/c.1.0.0.nupkg")).await;
    assert_eq!(s, 502);
}
