//! The cache disk stops taking writes (issue #13 row 9: a full disk or a
//! read-only remount): cached entries are still served, and misses come
//! from the upstream uncached instead of failing with a 500.

mod common;

use common::*;

const SMALL: &str = "/v3-flatcontainer/small/1.0.0/small.1.0.0.nupkg";
const BIG: &str = "/v3-flatcontainer/big/1.0.0/big.1.0.0.nupkg";
const LIST: &str = "/v3-flatcontainer/big/index.json";

fn proxy_path(upstream_path: &str) -> String {
    upstream_path.replace("/v3-flatcontainer/", "/v3/flatcontainer/")
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_unwritable_disk_serves_misses_from_the_upstream_uncached() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let small = blob(10_000, 1);
    let big = blob(1_500_000, 2);
    up.set(SMALL, Behavior::bytes(small.clone()));
    up.set(BIG, Behavior::bytes(big.clone()));
    up.set(LIST, Behavior::json(r#"{"versions":["1.0.0"]}"#));
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;

    // Cached while the disk still worked (the second read promotes it).
    for want in ["MISS", "HIT"] {
        let (s, h, b) = get(&proxy.url(&proxy_path(SMALL))).await;
        assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, want));
        assert!(b == small);
    }

    forbid_writes(proxy.pid());

    // Before: "500 cache error" (or a 200 cut off at ENOSPC). Now: the whole
    // body, from the upstream, every time, and nothing half-written kept.
    for _ in 0..2 {
        let (s, h, b) = get(&proxy.url(&proxy_path(BIG))).await;
        assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "MISS"));
        assert_eq!(b.len(), big.len());
        assert!(b == big);
    }
    // The fill that found the disk failing, then one uncached fetch per
    // request: nothing is kept while the disk is down.
    assert_eq!(up.hits(BIG), 3);
    assert_eq!(temp_files(dir.path()), 0);

    // Metadata is kept in memory only.
    for _ in 0..2 {
        let (s, _, b) = get(&proxy.url(&proxy_path(LIST))).await;
        assert_eq!((s, b.as_slice()), (200, &br#"{"versions":["1.0.0"]}"#[..]));
    }
    assert_eq!(up.hits(LIST), 1, "served from memory the second time");

    let (s, h, b) = get(&proxy.url(&proxy_path(SMALL))).await;
    assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "HIT"));
    assert!(b == small);

    let (s, _, m) = get(&proxy.url("/metrics")).await;
    assert_eq!(s, 200);
    let m = String::from_utf8(m).unwrap();
    assert!(
        metric(&m, "feedcache_disk_write_failures_total") >= 1,
        "{m}"
    );
    assert!(metric(&m, "feedcache_disk_bypassed_total") >= 2, "{m}");
}
