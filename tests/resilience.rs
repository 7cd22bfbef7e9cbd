//! Never down when the upstream is: the cache keeps serving, fail-fast for
//! uncached content, the circuit breaker, negative caching and
//! new versions, against a fault-injecting fake upstream.

mod common;

use std::time::{Duration, Instant};

use common::*;

const NUPKG: &str = "/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg";
const INDEX: &str = "/v3-flatcontainer/demo.pkg/index.json";

/// A proxy with a 1 s metadata TTL and the given extra config lines
/// (stale-while-revalidate itself is tested on a clock in `metadata/tests.rs`).
async fn setup(extra_conf: &str) -> (FakeUpstream, Proxy, tempfile::TempDir) {
    setup_ttl("1s", extra_conf).await
}

async fn setup_ttl(ttl: &str, extra_conf: &str) -> (FakeUpstream, Proxy, tempfile::TempDir) {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    up.set(NUPKG, Behavior::bytes(blob(50_000, 9)));
    up.set(INDEX, Behavior::json(r#"{"versions":["1.0.0"]}"#));
    let dir = tempfile::tempdir().unwrap();
    let conf = format!("[cache]\nmetadata_ttl = \"{ttl}\"\nnegative_ttl = \"1h\"\n{extra_conf}");
    let proxy = Proxy::start_with_conf(&up.index_url(), dir.path(), "cache", &conf).await;
    (up, proxy, dir)
}

#[tokio::test]
async fn upstream_down_serves_cache_and_fails_fast_for_the_rest() {
    // Stale metadata while the upstream is down, up to max_stale, is
    // time-based: `metadata::tests` moves a clock through it.
    let (up, proxy, _dir) = setup_ttl("1h", "").await;
    let idx = proxy.url("/v3/flatcontainer/demo.pkg/index.json");
    let pkg = proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg");
    assert_eq!(get(&idx).await.0, 200);
    assert_eq!(get(&pkg).await.0, 200);

    up.set_down(true);
    for _ in 0..3 {
        let (s, h, b) = get(&idx).await;
        assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "HIT"));
        assert_eq!(b, br#"{"versions":["1.0.0"]}"#);
        let (s, h, _) = get(&pkg).await;
        assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "HIT"));
    }
    // Not cached: a clear error, quickly, with the connection intact.
    let start = Instant::now();
    let (s, h, b) = get(&proxy.url("/v3/flatcontainer/other/1.0.0/other.1.0.0.nupkg")).await;
    assert_eq!(s, 502);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert!(!b.is_empty());
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn breaker_stops_hammering_a_failing_upstream() {
    // A long TTL: no background refresh may succeed in between and reset
    // the failure count.
    let (up, proxy, _dir) = setup_ttl(
        "1h",
        "[upstream]\nbreaker_failures = 2\nbreaker_cooldown = \"1h\"\n",
    )
    .await;
    // Learn the service index first, then the upstream starts failing.
    assert_eq!(get(&proxy.url("/v3/index.json")).await.0, 200);
    let path = |i: u32| format!("/v3-flatcontainer/p{i}/1.0.0/p{i}.1.0.0.nupkg");
    for i in 0..5 {
        up.set(
            &path(i),
            Behavior::Ok {
                status: 503,
                headers: vec![],
                body: b"busy".to_vec(),
            },
        );
    }
    let host = up.base().trim_start_matches("http://").to_owned();
    for i in 0..5 {
        let (s, h, b) =
            get(&proxy.url(&format!("/v3/flatcontainer/p{i}/1.0.0/p{i}.1.0.0.nupkg"))).await;
        assert_eq!(s, 502, "request {i}");
        // One line naming the upstream and the cause; Retry-After while
        // the breaker is open.
        let text = String::from_utf8_lossy(&b);
        assert!(text.contains(&host) && text.lines().count() == 1, "{text}");
        if i >= 2 {
            assert!(text.contains("considered down"), "{text}");
            let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(secs > 3000, "{secs}");
        } else {
            assert!(text.contains("answered 503"), "{text}");
        }
    }
    let asked: usize = (0..5).map(|i| up.hits(&path(i))).sum();
    assert_eq!(asked, 2, "after 2 failures the breaker fails fast");
    // The cache keeps serving meanwhile.
    assert_eq!(get(&proxy.url("/v3/index.json")).await.0, 200);
}

#[tokio::test]
async fn slow_upstream_times_out_with_504() {
    let (up, proxy, _dir) = setup("[upstream]\nread_timeout = \"1s\"\n").await;
    assert_eq!(get(&proxy.url("/v3/index.json")).await.0, 200);
    up.set(
        "/v3-flatcontainer/slow/1.0.0/slow.1.0.0.nupkg",
        Behavior::Slow(
            Duration::from_secs(20),
            Box::new(Behavior::bytes(b"late".to_vec())),
        ),
    );
    let start = Instant::now();
    let (s, _, _) = get(&proxy.url("/v3/flatcontainer/slow/1.0.0/slow.1.0.0.nupkg")).await;
    assert_eq!(s, 504);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn not_found_is_cached_errors_are_not() {
    let (up, proxy, _dir) = setup("").await;
    assert_eq!(get(&proxy.url("/v3/index.json")).await.0, 200);
    let missing = "/v3-flatcontainer/gone/1.0.0/gone.1.0.0.nupkg";
    for _ in 0..3 {
        assert_eq!(
            get(&proxy.url("/v3/flatcontainer/gone/1.0.0/gone.1.0.0.nupkg"))
                .await
                .0,
            404
        );
    }
    // One fetch, plus one look at the version list before repeating the 404.
    assert_eq!(up.hits(missing), 1);
    assert_eq!(up.hits("/v3-flatcontainer/gone/index.json"), 1);

    let flaky = "/v3-flatcontainer/flaky/1.0.0/flaky.1.0.0.nupkg";
    up.set(
        flaky,
        Behavior::Ok {
            status: 500,
            headers: vec![],
            body: vec![],
        },
    );
    assert_eq!(
        get(&proxy.url("/v3/flatcontainer/flaky/1.0.0/flaky.1.0.0.nupkg"))
            .await
            .0,
        502
    );
    up.set(flaky, Behavior::bytes(b"ok now".to_vec()));
    let (s, _, b) = get(&proxy.url("/v3/flatcontainer/flaky/1.0.0/flaky.1.0.0.nupkg")).await;
    assert_eq!((s, b.as_slice()), (200, &b"ok now"[..]));
    assert_eq!(up.hits(flaky), 2);
}

#[tokio::test]
async fn a_version_published_after_a_404_is_visible_at_once() {
    let (up, proxy, _dir) = setup("").await;
    let url = proxy.url("/v3/flatcontainer/demo.pkg/2.0.0/demo.pkg.2.0.0.nupkg");
    assert_eq!(get(&url).await.0, 404);
    // Published upstream: the package and its version list.
    up.set(
        "/v3-flatcontainer/demo.pkg/2.0.0/demo.pkg.2.0.0.nupkg",
        Behavior::bytes(b"v2".to_vec()),
    );
    up.set(INDEX, Behavior::json(r#"{"versions":["1.0.0","2.0.0"]}"#));
    let (s, _, b) = get(&url).await;
    assert_eq!((s, b.as_slice()), (200, &b"v2"[..]));
}

#[tokio::test]
async fn refused_connections_fail_fast_while_the_cache_serves() {
    let (up, proxy, _dir) = setup_ttl("1h", "").await;
    let pkg = proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg");
    assert_eq!(get(&pkg).await.0, 200);
    up.refuse();
    let start = Instant::now();
    for i in 0..3 {
        let (s, _, _) =
            get(&proxy.url(&format!("/v3/flatcontainer/n{i}/1.0.0/n{i}.1.0.0.nupkg"))).await;
        assert_eq!(s, 502);
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    let (s, h, _) = get(&pkg).await;
    assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "HIT"));
}
