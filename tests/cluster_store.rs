//! The shared tier on a real S3-compatible server (Garage, or s3s-fs where
//! Garage is not installed; issue #12 points 1 and 3, the bucket part): a node with an empty disk serves what another node
//! fetched without asking the upstream; a damaged object is refused and
//! replaced; a stopped bucket fails no request.

mod common;

use common::s3::S3;
use common::*;

const PKG: &str = "/v3-flatcontainer/shared.pkg/1.0.0/shared.pkg.1.0.0.nupkg";
const URL: &str = "/v3/flatcontainer/shared.pkg/1.0.0/shared.pkg.1.0.0.nupkg";

/// A node with its own cache directory `dir/name` over `s3`.
async fn node(up: &FakeUpstream, s3: &S3, dir: &std::path::Path, name: &str) -> Proxy {
    let conf = dir.join(format!("{name}.toml"));
    std::fs::write(&conf, s3.conf()).unwrap();
    Proxy::start_with_env(
        &up.index_url(),
        &dir.join(name),
        &["-c", conf.to_str().unwrap()],
        &s3.env(),
    )
    .await
}

async fn health(p: &Proxy) -> String {
    String::from_utf8(get(&p.url("/health")).await.2).unwrap()
}

/// A metric's value in a node's `/metrics` (0 when absent).
async fn metric(p: &Proxy, line: &str) -> u64 {
    let text = String::from_utf8(get(&p.url("/metrics")).await.2).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until every fill of `p` has left for the bucket.
async fn uploaded(p: &Proxy) {
    eventually(async || health(p).await.contains(", 0 uploads waiting")).await;
}

#[tokio::test]
async fn nodes_share_packages_through_the_bucket_and_refuse_damaged_copies() {
    let Some(s3) = S3::start().await else {
        eprintln!("SKIPPED: no S3 server installed (scripts/deps.sh test)");
        return;
    };
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    // Large enough to go through the streaming fill, not the small one.
    let small = blob(10_000, 3);
    let big = blob(3_000_000, 4);
    up.set(PKG, Behavior::bytes(big.clone()));
    let small_pkg = "/v3-flatcontainer/small.pkg/1.0.0/small.pkg.1.0.0.nupkg";
    up.set(small_pkg, Behavior::bytes(small.clone()));
    let dir = tempfile::tempdir().unwrap();

    let a = node(&up, &s3, dir.path(), "a").await;
    let (s, _, b) = get(&a.url(URL)).await;
    assert!(s == 200 && b == big);
    let (s, _, b) = get(&a.url("/v3/flatcontainer/small.pkg/1.0.0/small.pkg.1.0.0.nupkg")).await;
    assert!(s == 200 && b == small);
    uploaded(&a).await;
    assert_eq!(s3.objects().await.len(), 2, "both fills uploaded");
    assert_eq!(
        metric(
            &a,
            "feedcache_store_requests_total{op=\"put\",result=\"ok\"}"
        )
        .await,
        2
    );

    // A new node with an empty disk: from the bucket, the upstream untouched.
    let b_node = node(&up, &s3, dir.path(), "b").await;
    for _ in 0..2 {
        let (s, _, b) = get(&b_node.url(URL)).await;
        assert!(s == 200 && b == big);
        let (s, _, b) =
            get(&b_node.url("/v3/flatcontainer/small.pkg/1.0.0/small.pkg.1.0.0.nupkg")).await;
        assert!(s == 200 && b == small);
    }
    assert_eq!((up.hits(PKG), up.hits(small_pkg)), (1, 1));
    assert_eq!(
        metric(
            &b_node,
            "feedcache_store_requests_total{op=\"get\",result=\"hit\"}"
        )
        .await,
        2
    );

    // Damage every object: a third node refuses the copies, fetches from
    // the upstream and replaces them.
    s3.damage_all().await;
    let c = node(&up, &s3, dir.path(), "c").await;
    let (s, _, b) = get(&c.url(URL)).await;
    assert!(s == 200 && b == big, "never the damaged copy");
    assert_eq!(up.hits(PKG), 2);
    assert_eq!(
        metric(
            &c,
            "feedcache_store_requests_total{op=\"get\",result=\"rejected\"}"
        )
        .await,
        1
    );
    uploaded(&c).await;
    let d = node(&up, &s3, dir.path(), "d").await;
    let (s, _, b) = get(&d.url(URL)).await;
    assert!(s == 200 && b == big);
    assert_eq!(up.hits(PKG), 2, "the replaced object serves the next node");
}

#[tokio::test]
async fn a_stopped_bucket_fails_no_request() {
    let Some(mut s3) = S3::start().await else {
        eprintln!("SKIPPED: no S3 server installed (scripts/deps.sh test)");
        return;
    };
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(500_000, 5);
    up.set(PKG, Behavior::bytes(body.clone()));
    let dir = tempfile::tempdir().unwrap();
    let a = node(&up, &s3, dir.path(), "a").await;
    assert!(health(&a).await.contains("store: reachable"));
    s3.stop();
    let (s, _, b) = get(&a.url(URL)).await;
    assert!(s == 200 && b == body, "from the upstream");
    // The local tier serves it from now on, bucket or not.
    let (s, h, _) = get(&a.url(URL)).await;
    assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "HIT"));
    eventually(async || health(&a).await.contains("store: failing")).await;
    assert_eq!(up.hits(PKG), 1);
}
