//! ProGet in front: NuGet feeds, the packages API and universal packages,
//! against a fake ProGet that insists on its API key.

mod common;

use common::proget::*;
use common::*;

#[tokio::test]
async fn nuget_feed_and_packages_api_share_one_fetch() {
    let env = setup(None).await;
    let (foo, bar) = (blob(50_000, 3), blob(60_000, 4));
    let foo_path = format!("{FLAT}foo/1.0.0/foo.1.0.0.nupkg");
    let bar_path = format!("{FLAT}bar/2.0.0/bar.2.0.0.nupkg");
    env.proget.set(&foo_path, Behavior::bytes(foo.clone()));
    env.proget.set(&bar_path, Behavior::bytes(bar.clone()));
    env.proget.set(
        &format!("{FLAT}foo/index.json"),
        Behavior::json(r#"{"versions":["1.0.0"]}"#),
    );

    let (s, _, idx) = get(&env.proxy.url("/nuget/internal/v3/index.json")).await;
    assert_eq!(s, 200);
    let idx = String::from_utf8(idx).unwrap();
    assert!(
        idx.contains(&env.proxy.url("/nuget/internal/v3/flatcontainer/")),
        "{idx}"
    );
    assert!(
        !idx.contains(&env.proget.base()),
        "upstream URL leaked: {idx}"
    );
    assert!(!idx.contains("PackagePublish"), "{idx}");
    let (s, _, versions) = get(&env
        .proxy
        .url("/nuget/internal/v3/flatcontainer/Foo/index.json"))
    .await;
    assert_eq!(
        (s, versions.as_slice()),
        (200, &br#"{"versions":["1.0.0"]}"#[..])
    );

    // Flat container first, then every packages-API spelling: one fetch.
    for path in [
        "/nuget/internal/v3/flatcontainer/Foo/1.0.0/Foo.1.0.0.nupkg",
        "/api/packages/internal/download?purl=pkg:nuget/Foo@1.0",
        "/api/packages/Internal/download?name=FOO&version=1.0.0.0",
        "/api/packages/internal/download?purl=pkg%3Anuget%2Ffoo%401.0.0%252Bmeta",
        "/api/packages/internal/download?name=foo&version=1.0.0%2Bmeta",
    ] {
        let (s, _, b) = get(&env.proxy.url(path)).await;
        assert_eq!(s, 200, "{path}");
        assert!(b == foo, "{path}: wrong body");
    }
    assert_eq!(env.proget.hits(&foo_path), 1);

    // Packages API first, then the flat container: one fetch.
    for path in [
        "/api/packages/internal/download?name=Bar&version=2.0.0",
        "/nuget/internal/v3/flatcontainer/bar/2.0.0/bar.2.0.0.nupkg",
    ] {
        let (s, _, b) = get(&env.proxy.url(path)).await;
        assert_eq!(s, 200, "{path}");
        assert!(b == bar, "{path}: wrong body");
    }
    assert_eq!(env.proget.hits(&bar_path), 1);
    // The default feed and the ProGet feed live side by side.
    let (s, _, _) = get(&env.proxy.url("/v3/index.json")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn packages_api_status_codes_and_metadata() {
    let env = setup(None).await;
    let latest = r#"[{"purl":"pkg:nuget/Foo@1.2.0","name":"Foo","version":"1.2.0"}]"#;
    env.proget
        .set("/api/packages/internal/latest", Behavior::json(latest));
    env.proget.set(
        "/api/packages/internal/versions",
        Behavior::json(r#"[{"name":"Foo","version":"1.2.0"},{"name":"Foo","version":"1.0.0"}]"#),
    );
    env.proget.set(
        "/api/packages/npm-feed/download",
        Behavior::bytes(b"tgz bytes".to_vec()),
    );
    let table: &[(&str, u16)] = &[
        ("/api/packages/internal/download?name=Foo", 400),
        ("/api/packages/internal/download?purl=pkg:nuget/Foo", 400),
        ("/api/packages/internal/download?version=1.0.0", 400),
        ("/api/packages/internal/download?purl=garbage", 400),
        // A literal `+` is a space, so this is not a version.
        (
            "/api/packages/internal/download?name=Foo&version=1.0.0+meta",
            400,
        ),
        (
            "/api/packages/internal/download?name=Foo&version=9.9.9",
            404,
        ),
        (
            "/api/packages/no-such-feed/download?name=x&version=1.0.0",
            404,
        ),
        ("/api/packages/internal/latest", 400),
        ("/api/packages/internal/frobnicate?name=Foo", 404),
        (
            "/api/packages/npm-feed/download?purl=pkg:npm/left-pad@1.3.0",
            200,
        ),
        (
            "/api/packages/internal/latest?name=Foo&stableOnly=true",
            200,
        ),
        ("/api/packages/internal/versions?name=Foo", 200),
    ];
    for (path, want) in table {
        let (s, _, body) = get(&env.proxy.url(path)).await;
        assert_eq!(s, *want, "{path}: {}", String::from_utf8_lossy(&body));
    }
    // Metadata is cached: asked again, no new upstream request.
    let (_, h, body) = get(&env
        .proxy
        .url("/api/packages/internal/latest?name=Foo&stableOnly=true"))
    .await;
    assert_eq!(h["x-cache"], "HIT");
    assert_eq!(body, latest.as_bytes());
    assert_eq!(
        env.proget
            .hits("/api/packages/internal/latest?name=Foo&stableOnly=true"),
        1
    );
    let (_, h, b) = get(&env
        .proxy
        .url("/api/packages/npm-feed/download?purl=pkg:npm/left-pad@1.3.0"))
    .await;
    assert_eq!(
        (h["x-cache"].to_str().unwrap(), b.as_slice()),
        ("HIT", &b"tgz bytes"[..])
    );
    assert_eq!(
        env.proget
            .hits("/api/packages/npm-feed/download?purl=pkg%3Anpm%2Fleft-pad%401.3.0"),
        1
    );
}

#[tokio::test]
async fn client_keys_are_required_and_the_upstream_key_never_leaks() {
    let env = setup(Some("client-key-1")).await;
    env.proget.set(
        &format!("{FLAT}foo/1.0.0/foo.1.0.0.nupkg"),
        Behavior::bytes(b"nupkg".to_vec()),
    );
    let pkg = upack("g", "app", "1.0.0", &[("package/a.txt", b"inside")]);
    env.proget
        .set("/upack/assets/download/g/app/1.0.0", Behavior::bytes(pkg));
    let c = client();
    let mut seen = Vec::new();
    let mut call =
        async |path: &str, headers: &[(&str, &str)]| -> (u16, reqwest::header::HeaderMap) {
            let mut r = c.get(env.proxy.url(path));
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            let resp = within(r.send()).await.expect("request");
            let status = resp.status().as_u16();
            let h = resp.headers().clone();
            let body = within(resp.bytes()).await.expect("body");
            seen.push(format!("{h:?}{}", String::from_utf8_lossy(&body)));
            (status, h)
        };
    let api = "/api/packages/internal/download?name=Foo&version=1.0.0";
    let up = "/upack/assets/download-file/g/app/1.0.0?path=package/a.txt";
    let nuget = "/nuget/internal/v3/index.json";
    assert_eq!(call(api, &[]).await.0, 403);
    assert_eq!(call(up, &[]).await.0, 403);
    assert_eq!(call(up, &[("X-ApiKey", "wrong")]).await.0, 403);
    for path in [nuget, "/v3/index.json"] {
        let (s, h) = call(path, &[]).await;
        assert_eq!(s, 401, "{path}");
        assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    }
    assert_eq!(call("/health", &[]).await.0, 200);

    let basic = "Basic Y2xpZW50LWtleS0xOmNsaWVudC1rZXktMQ=="; // client-key-1:client-key-1
    let api_basic = "Basic YXBpOmNsaWVudC1rZXktMQ=="; // api:client-key-1
    assert_eq!(call(api, &[("X-ApiKey", "client-key-1")]).await.0, 200);
    assert_eq!(call(up, &[("X-NuGet-ApiKey", "client-key-1")]).await.0, 200);
    assert_eq!(call(&format!("{up}&key=client-key-1"), &[]).await.0, 200);
    assert_eq!(call(nuget, &[("Authorization", api_basic)]).await.0, 200);
    assert_eq!(
        call("/v3/index.json", &[("Authorization", basic)]).await.0,
        200
    );
    // Errors and not-founds, with a valid key, must not leak either.
    assert_eq!(
        call("/upack/assets/download/g/none/1.0.0?key=client-key-1", &[])
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            "/nuget/internal/v3/flatcontainer/foo/index.json",
            &[("Authorization", api_basic)]
        )
        .await
        .0,
        404
    );

    for (i, text) in seen.iter().enumerate() {
        assert!(!text.contains(KEY), "response {i} leaks the upstream key");
        assert!(
            !text.contains(&env.proget.base()),
            "response {i} leaks the upstream URL"
        );
    }
    // ProGet always got feedcache's key, never a client's; nuget.org never a key.
    let keys = env.proget.api_keys();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.as_deref() == Some(KEY)), "{keys:?}");
    assert!(env.nuget.api_keys().iter().all(Option::is_none));
    assert_eq!(env.proget.hits("/upack/assets/download/g/app/1.0.0"), 1);
}

/// `raw/` serves only the links a feed's own documents carry, and never takes
/// the ProGet key outside the feed's part of the server (issue #13, row 2).
#[tokio::test]
async fn raw_route_is_not_an_open_proxy() {
    let env = setup(Some("client-key")).await;
    let secret = "/upack/other-feed/packages";
    env.proget
        .set(secret, Behavior::json(r#"[{"name":"private"}]"#));
    env.proget.set(
        "/nuget/internal/v3/extra/doc.json",
        Behavior::json(r#"{"ok":true}"#),
    );
    // A registration page that links to a document of the feed and to
    // another part of the ProGet server.
    env.proget.set(
        "/nuget/internal/v3/registrations/demo/index.json",
        Behavior::json(format!(
            r#"{{"count":0,"items":[],"a":"{{base}}/nuget/internal/v3/extra/doc.json","b":"{{base}}{secret}"}}"#
        )),
    );
    let c = client();
    let get_auth = |url: String| {
        let c = c.clone();
        async move {
            let r = within(c.get(&url).header("X-NuGet-ApiKey", "client-key").send())
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.text().await.unwrap())
        }
    };
    // Hand-made raw paths (no tag, a forged tag, another feed's tag) are 404.
    for path in [
        format!("/nuget/internal/v3/raw/0{secret}"),
        format!("/nuget/internal/v3/raw/0/0123456789abcdef{secret}"),
        "/v3/raw/0/0123456789abcdef/v3/index.json".to_string(),
    ] {
        let (s, body) = get_auth(env.proxy.url(&path)).await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    let (s, body) = get_auth(
        env.proxy
            .url("/nuget/internal/v3/registration/registrations/demo/index.json"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (a, b) = (doc["a"].as_str().unwrap(), doc["b"].as_str().unwrap());
    assert!(
        a.starts_with(&env.proxy.url("/nuget/internal/v3/raw/0/")),
        "{a}"
    );
    // The feed's own document is served through its signed link...
    let (s, body) = get_auth(a.to_string()).await;
    assert_eq!((s, body.as_str()), (200, r#"{"ok":true}"#));
    // ...a link out of the feed's part of the server is not fetched with the key.
    let (s, _) = get_auth(b.to_string()).await;
    assert_eq!(s, 404, "{b}");
    // A signed link with its query or path changed is no longer valid.
    let (s, _) = get_auth(format!("{a}?x=1")).await;
    assert_eq!(s, 404);
    let (s, _) = get_auth(a.replace("doc.json", "doc2.json")).await;
    assert_eq!(s, 404);
    assert_eq!(env.proget.hits(secret), 0, "the other feed was never asked");
}

/// Every feed type's identifiers reach ProGet (issue #10 point 4): a PyPI
/// file name, Debian's component, distribution and architecture. Distinct
/// files never share a cache entry; the same request twice is one fetch.
#[tokio::test]
async fn packages_api_passes_every_identifier_and_keys_by_all_of_them() {
    let env = setup(None).await;
    let pypi = "/api/packages/pypi/download?name=foo&version=1.0&filename=foo-1.0.tar.gz";
    env.proget.set(pypi, Behavior::bytes(b"sdist".to_vec()));
    let deb = |arch: &str| {
        format!("/api/packages/debs/download?name=tool&version=2.0&arch={arch}&component=main&distro=stable")
    };
    env.proget
        .set(&deb("amd64"), Behavior::bytes(b"amd64 build".to_vec()));
    env.proget
        .set(&deb("arm64"), Behavior::bytes(b"arm64 build".to_vec()));

    let p = |s: &str| env.proxy.url(s);
    for _ in 0..2 {
        let (s, _, b) = get(&p(
            "/api/packages/pypi/download?name=foo&version=1.0&filename=foo-1.0.tar.gz",
        ))
        .await;
        assert_eq!((s, b.as_slice()), (200, &b"sdist"[..]));
        // Parameters in any order are one request.
        let (s, _, b) = get(&p(
            "/api/packages/debs/download?distro=stable&arch=amd64&name=tool&component=main&version=2.0",
        ))
        .await;
        assert_eq!((s, b.as_slice()), (200, &b"amd64 build"[..]));
        let (s, _, b) = get(&p(
            "/api/packages/debs/download?name=tool&version=2.0&component=main&distro=stable&arch=arm64",
        ))
        .await;
        assert_eq!((s, b.as_slice()), (200, &b"arm64 build"[..]));
    }
    assert_eq!(env.proget.hits(pypi), 1);
    assert_eq!(env.proget.hits(&deb("amd64")), 1);
    assert_eq!(env.proget.hits(&deb("arm64")), 1);
}

/// The upstream's refusals reach the client with its status and its words
/// (issue #10 point 4): ProGet explains what was wrong.
#[tokio::test]
async fn upstream_refusals_keep_their_status_and_message() {
    let env = setup(None).await;
    let said = |status: u16, text: &str| Behavior::Ok {
        status,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: format!("{text}\r\nsecond line\u{1b}[31m").into_bytes(),
    };
    env.proget.set(
        "/api/packages/pypi/download?name=foo&version=1.0",
        said(400, "A filename is required to download a PyPI package."),
    );
    env.proget.set(
        "/api/packages/locked/versions?name=foo",
        said(403, "The API key does not grant View_Feed on locked."),
    );
    env.proget.set(
        "/api/packages/npm/download?name=left-pad&version=9.9.9",
        said(404, "Package left-pad 9.9.9 was not found in feed npm."),
    );
    env.proget.set(
        "/api/packages/npm/versions?name=right-pad",
        said(404, "Package right-pad was not found in feed npm."),
    );
    let host = env.proget.base().trim_start_matches("http://").to_owned();
    let table = [
        (
            "/api/packages/pypi/download?name=foo&version=1.0",
            400,
            "A filename is required to download a PyPI package.",
        ),
        (
            "/api/packages/locked/versions?name=foo",
            403,
            "The API key does not grant View_Feed on locked.",
        ),
        (
            "/api/packages/npm/download?name=left-pad&version=9.9.9",
            404,
            "Package left-pad 9.9.9 was not found in feed npm.",
        ),
        (
            "/api/packages/npm/versions?name=right-pad",
            404,
            "Package right-pad was not found in feed npm.",
        ),
    ];
    for (path, status, text) in table {
        let (s, _, b) = get(&env.proxy.url(path)).await;
        assert_eq!(s, status, "{path}");
        let want = match status {
            404 => format!("not found ({host}): {text}\n"),
            _ => format!("{host} refused the request ({status}): {text}\n"),
        };
        assert_eq!(
            String::from_utf8(b).unwrap(),
            want,
            "one line, the upstream's first"
        );
    }
}
