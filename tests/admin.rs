//! The admin API (purge, stats, offline mode) and the disk cap: LRU
//! eviction in the background, and an index rebuilt from the files after a
//! restart.

mod common;

use common::*;

const ADMIN: &str = "admin-key-5x";

fn nupkg(id: &str, v: &str) -> String {
    format!("/v3-flatcontainer/{id}/{v}/{id}.{v}.nupkg")
}

fn ours(id: &str, v: &str) -> String {
    format!("/v3/flatcontainer/{id}/{v}/{id}.{v}.nupkg")
}

async fn start(up: &FakeUpstream, dir: &std::path::Path, conf: &str) -> Proxy {
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!("[admin]\napi_key_env = \"FC_TEST_ADMIN\"\n{conf}"),
    )
    .unwrap();
    Proxy::start_with_env(
        &up.index_url(),
        &dir.join("cache"),
        &["-c", path.to_str().unwrap()],
        &[("FC_TEST_ADMIN", ADMIN)],
    )
    .await
}

async fn admin(proxy: &Proxy, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
    let r = within(
        client()
            .request(method, proxy.url(path))
            .header("X-ApiKey", ADMIN)
            .send(),
    )
    .await
    .unwrap();
    let s = r.status().as_u16();
    let text = within(r.text()).await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Stats once the start-up index scan is done and `check` holds.
async fn stats_when(
    proxy: &Proxy,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    within(async {
        loop {
            let (_, v) = admin(proxy, reqwest::Method::GET, "/admin/stats").await;
            if v["disk"]["index_complete"] == true && check(&v) {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
}

#[tokio::test]
async fn purge_by_version_id_and_feed() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    for (id, v) in [("foo", "1.0.0"), ("foo", "2.0.0"), ("bar", "1.0.0")] {
        up.set(&nupkg(id, v), Behavior::bytes(blob(5_000, 1)));
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&up, dir.path(), "").await;
    for (id, v) in [("foo", "1.0.0"), ("foo", "2.0.0"), ("bar", "1.0.0")] {
        assert_eq!(get(&proxy.url(&ours(id, v))).await.0, 200);
    }
    let (s, _, _) = get(&proxy.url("/admin/stats")).await;
    assert_eq!(s, 403, "the admin key is required");
    let (s, _) = admin(&proxy, reqwest::Method::GET, "/admin/purge?id=foo").await;
    assert_eq!(s, 405);
    let (s, _) = admin(&proxy, reqwest::Method::POST, "/admin/purge").await;
    assert_eq!(s, 400);
    let v = stats_when(&proxy, |v| v["disk"]["entries"].as_u64() >= Some(4)).await;
    assert!(v["memory"]["entries"].as_u64().is_some(), "{v}");

    let x_cache =
        async |id: &str, ver: &str| get(&proxy.url(&ours(id, ver))).await.1["x-cache"].clone();
    let (s, v) = admin(
        &proxy,
        reqwest::Method::POST,
        "/admin/purge?id=Foo&version=1.0",
    )
    .await;
    assert_eq!((s, v["purged"].as_u64()), (200, Some(1)));
    assert_eq!(x_cache("foo", "1.0.0").await, "MISS");
    assert_eq!(x_cache("foo", "2.0.0").await, "HIT");
    let (_, v) = admin(&proxy, reqwest::Method::DELETE, "/admin/purge?id=foo").await;
    assert_eq!(v["purged"].as_u64(), Some(2));
    assert_eq!(x_cache("foo", "2.0.0").await, "MISS");
    assert_eq!(x_cache("bar", "1.0.0").await, "HIT");
    let (_, v) = admin(&proxy, reqwest::Method::POST, "/admin/purge?feed=default").await;
    assert!(v["purged"].as_u64() >= Some(3), "{v}");
    assert_eq!(x_cache("bar", "1.0.0").await, "MISS");
    assert_eq!(up.hits(&nupkg("foo", "1.0.0")), 2);
    assert_eq!(up.hits(&nupkg("bar", "1.0.0")), 2);
}

#[tokio::test]
async fn disk_cap_evicts_least_recently_used_and_restart_keeps_the_index() {
    use std::os::unix::ffi::OsStrExt;
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let ids: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for id in &ids {
        up.set(&nupkg(id, "1.0.0"), Behavior::bytes(blob(200_000, 2)));
    }
    let dir = tempfile::tempdir().unwrap();
    // Files that are not entries (issue #13 row 8: a short name once panicked
    // the evictor for good, and the cache grew past its cap) are skipped.
    let data = dir.path().join("cache/data");
    std::fs::create_dir_all(data.join("ab/cd")).unwrap();
    for stray in ["ab/x", "ab/cd/y", "loose"] {
        std::fs::write(data.join(stray), b"stray").unwrap();
    }
    let odd = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    std::fs::write(data.join("ab").join(odd), b"").unwrap();
    // Disk-only entries (above memory_max_entry), 8 x 200 KB against a 1 MiB cap.
    let conf =
        "[cache]\ndisk_size = \"1MiB\"\nmemory_size = \"1MiB\"\nmemory_max_entry = \"64KiB\"\n";
    let proxy = start(&up, dir.path(), conf).await;
    stats_when(&proxy, |_| true).await;
    for id in &ids {
        assert_eq!(get(&proxy.url(&ours(id, "1.0.0"))).await.0, 200);
        // p0 stays in use: it must survive as the most recently used.
        assert_eq!(get(&proxy.url(&ours("p0", "1.0.0"))).await.0, 200);
    }
    let v = stats_when(&proxy, |v| v["disk"]["bytes"].as_u64() <= Some(1 << 20)).await;
    let kept = v["disk"]["entries"].as_u64().unwrap();
    assert!(kept < 8, "{v}");
    let (_, h, _) = get(&proxy.url(&ours("p0", "1.0.0"))).await;
    assert_eq!(h["x-cache"], "HIT", "the most recently used entry is kept");
    let (_, h, _) = get(&proxy.url(&ours("p1", "1.0.0"))).await;
    assert_eq!(
        h["x-cache"], "MISS",
        "the least recently used entry went first"
    );
    assert_eq!(up.hits(&nupkg("p1", "1.0.0")), 2);
    assert!(data.join("ab/x").exists(), "stray files are left alone");

    // A restart rebuilds the index from the files, without fetching anything.
    let before = stats_when(&proxy, |_| true).await["disk"]["entries"].as_u64();
    proxy.kill();
    let proxy = start(&up, dir.path(), conf).await;
    let after = stats_when(&proxy, |_| true).await;
    assert_eq!(after["disk"]["entries"].as_u64(), before, "{after}");
    let (_, h, _) = get(&proxy.url(&ours("p0", "1.0.0"))).await;
    assert_eq!(h["x-cache"], "HIT");
    assert_eq!(up.hits(&nupkg("p0", "1.0.0")), 1);
}

#[tokio::test]
async fn admin_api_does_not_exist_without_a_key() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let (s, _, _) = get(&proxy.url("/admin/stats")).await;
    assert_eq!(s, 404);
}

/// Offline mode (issue #11 point 3): only what is cached is served, no
/// upstream request is made, a miss is a 503 with a one-line reason; the
/// admin API switches it at runtime.
#[tokio::test]
async fn offline_mode_serves_the_cache_and_asks_no_upstream() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    up.set(&nupkg("on", "1.0.0"), Behavior::bytes(blob(100_000, 4)));
    up.set(&nupkg("off", "1.0.0"), Behavior::bytes(blob(100_000, 5)));
    up.set(
        "/v3-flatcontainer/on/index.json",
        Behavior::json(r#"{"versions":["1.0.0"]}"#),
    );
    let dir = tempfile::tempdir().unwrap();
    // A 1 s TTL: the cached metadata is long expired when offline asks.
    let conf = "[cache]\nmetadata_ttl = \"1s\"\nmax_stale = \"1s\"\n";
    let proxy = start(&up, dir.path(), conf).await;
    for path in [
        "/v3/index.json",
        "/v3/flatcontainer/on/index.json",
        &ours("on", "1.0.0"),
    ] {
        assert_eq!(get(&proxy.url(path)).await.0, 200, "{path}");
    }
    proxy.kill();

    let conf = format!("{conf}[upstream]\noffline = true\n");
    let proxy = start(&up, dir.path(), &conf).await;
    let before = up.total_hits();
    for path in [
        "/v3/index.json",
        "/v3/flatcontainer/on/index.json",
        &ours("on", "1.0.0"),
    ] {
        let (s, h, _) = get(&proxy.url(path)).await;
        assert_eq!(s, 200, "{path}");
        assert_ne!(h["x-cache"], "MISS", "{path}");
    }
    let (s, h, b) = get(&proxy.url(&ours("off", "1.0.0"))).await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap()),
        (503, "text/plain; charset=utf-8")
    );
    assert_eq!(
        String::from_utf8(b).unwrap(),
        "not cached, and feedcache is offline (no upstream is contacted)\n"
    );
    assert_eq!(up.total_hits(), before, "no upstream request while offline");
    let (_, v) = admin(&proxy, reqwest::Method::GET, "/admin/offline").await;
    assert_eq!(v["offline"], true);

    // Back online through the admin API: the miss is fetched.
    let (s, v) = admin(&proxy, reqwest::Method::POST, "/admin/offline?on=false").await;
    assert_eq!((s, &v["offline"]), (200, &serde_json::Value::Bool(false)));
    assert_eq!(get(&proxy.url(&ours("off", "1.0.0"))).await.0, 200);
    assert_eq!(up.hits(&nupkg("off", "1.0.0")), 1);
    let (s, _) = admin(&proxy, reqwest::Method::POST, "/admin/offline").await;
    assert_eq!(s, 400);
}
