//! Transparent mode: requests for api.nuget.org in nuget.org's own URL
//! layout are answered from the cache, and only for the configured host.

mod common;

use common::*;

#[tokio::test]
async fn nuget_org_layout_is_served_for_its_host_only() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(20_000, 31);
    up.set(
        "/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg",
        Behavior::bytes(body.clone()),
    );
    up.set(
        "/v3/registration5-gz-semver2/demo.pkg/index.json",
        Behavior::json(
            r#"{"items":[{"@id":"{base}/v3/registration5-gz-semver2/demo.pkg/index.json#page","packageContent":"{base}/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg"}]}"#,
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    // The test client plays the TLS-terminating proxy in front (X-Forwarded-Proto).
    let conf = "transparent_hosts = [\"api.nuget.org\"]\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
    let proxy = Proxy::start_with_conf(&up.index_url(), dir.path(), "cache", conf).await;
    let c = client();
    let fetch = async |path: &str, host: &str| {
        let r = within(
            c.get(proxy.url(path))
                .header("Host", host)
                .header("X-Forwarded-Proto", "https")
                .send(),
        )
        .await
        .unwrap();
        let status = r.status().as_u16();
        (status, within(r.bytes()).await.unwrap().to_vec())
    };

    let nupkg = "/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg";
    let (s, b) = fetch(nupkg, "api.nuget.org").await;
    assert_eq!(s, 200);
    assert!(b == body);
    let (s, b) = fetch(
        "/v3/registration5-gz-semver2/demo.pkg/index.json",
        "api.nuget.org",
    )
    .await;
    assert_eq!(s, 200);
    let reg = String::from_utf8(b).unwrap();
    assert!(
        reg.contains("https://api.nuget.org/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg"),
        "{reg}"
    );
    assert!(!reg.contains(&up.base()), "{reg}");
    let (s, b) = fetch(nupkg, "api.nuget.org:443").await;
    assert_eq!(s, 200, "a port in Host does not matter");
    assert!(b == body);
    let (s, b) = fetch("/v3/index.json", "api.nuget.org").await;
    assert_eq!(s, 200);
    assert!(String::from_utf8(b)
        .unwrap()
        .contains("https://api.nuget.org/v3/flatcontainer/"));
    // Other host names keep feedcache's own layout only.
    let (s, _) = fetch(nupkg, "feedcache.corp.example").await;
    assert_eq!(s, 404);
    assert_eq!(
        up.hits("/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg"),
        1
    );
}
