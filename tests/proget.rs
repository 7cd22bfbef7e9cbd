//! ProGet in front: NuGet feeds, the packages API and universal packages,
//! against a fake ProGet that insists on its API key.

mod common;

use std::io::Write;

use common::*;

const KEY: &str = "upstream-secret-7f3a";
const FLAT: &str = "/nuget/internal/v3/flatcontainer/";

struct Env {
    nuget: FakeUpstream,
    proget: FakeUpstream,
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

/// A default NuGet upstream, a fake ProGet, and feedcache configured for both;
/// `client_key` turns client authentication on.
async fn setup(client_key: Option<&str>) -> Env {
    setup_with(client_key, "").await
}

/// `setup` with more TOML appended to feedcache's config file.
async fn setup_with(client_key: Option<&str>, extra_conf: &str) -> Env {
    let nuget = FakeUpstream::start().await;
    nuget.serve_nuget_index();
    let proget = FakeUpstream::start().await;
    proget.require_key(KEY);
    proget.set(
        "/nuget/internal/v3/index.json",
        Behavior::json(upstream::PROGET_INDEX),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut conf = format!(
        "[proget]\nurl = \"{}/\"\napi_key_env = \"FC_TEST_PROGET_KEY\"\n",
        proget.base()
    );
    if let Some(k) = client_key {
        let keys = dir.path().join("keys");
        std::fs::write(&keys, format!("# client keys\n{k}\n")).unwrap();
        conf.push_str(&format!("[auth]\napi_keys_file = \"{}\"\n", keys.display()));
    }
    conf.push_str(extra_conf);
    let conf_path = dir.path().join("feedcache.toml");
    std::fs::write(&conf_path, conf).unwrap();
    let proxy = Proxy::start_with_env(
        &nuget.index_url(),
        &dir.path().join("cache"),
        &["-c", conf_path.to_str().unwrap()],
        &[("FC_TEST_PROGET_KEY", KEY)],
    )
    .await;
    Env {
        nuget,
        proget,
        proxy,
        _dir: dir,
    }
}

/// A universal package: `upack.json` plus the given files.
fn upack(group: &str, name: &str, version: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    w.start_file("upack.json", opts).unwrap();
    write!(
        w,
        r#"{{"group":"{group}","name":"{name}","version":"{version}"}}"#
    )
    .unwrap();
    for (path, body) in files {
        w.start_file(*path, opts).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

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
async fn universal_packages_download_latest_and_single_files() {
    let env = setup(None).await;
    let data = blob(200_000, 5);
    let pkg = upack(
        "tools/build",
        "cli",
        "1.2.0",
        &[
            ("package/My File.txt", b"hello world"),
            ("package/deep/nested/data.bin", &data),
        ],
    );
    let up_path = "/upack/assets/download/tools/build/cli/1.2.0";
    env.proget.set(up_path, Behavior::bytes(pkg.clone()));
    env.proget.set(
        "/api/packages/assets/latest?group=tools%2Fbuild&name=cli",
        Behavior::json(r#"[{"group":"tools/build","name":"cli","version":"1.2.0"}]"#),
    );
    env.proget.set(
        "/upack/assets/download-vpack/tools/virt/2.0.0",
        Behavior::json(r#"{"name":"virt","version":"2.0.0","contents":["tools/build/cli:1.2.0"]}"#),
    );

    let p = |s: &str| env.proxy.url(s);
    let (s, _, b) = get(&p("/upack/assets/download/tools/build/cli/1.2.0")).await;
    assert_eq!(s, 200);
    assert!(b == pkg);
    let (s, _, b) = get(&p("/upack/assets/download/Tools/Build/CLI?latest")).await;
    assert_eq!(s, 200);
    assert!(b == pkg);
    let files: &[(&str, &[u8])] = &[
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package/My%20File.txt",
            b"hello world",
        ),
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package%2FMy+File.txt",
            b"hello world",
        ),
        (
            "/upack/assets/download-file/tools/build/cli?latest&path=package/deep/nested/data.bin",
            &data,
        ),
    ];
    for (path, want) in files {
        let (s, h, b) = get(&p(path)).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(h["content-length"], want.len().to_string().as_str());
        assert!(b == *want, "{path}: wrong body");
    }
    let (s, h, b) = get(&p(
        "/upack/assets/download-file/tools/build/cli/1.2.0?path=upack.json",
    ))
    .await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap()),
        (200, "application/json")
    );
    assert!(String::from_utf8(b).unwrap().contains(r#""name":"cli""#));
    // Every file came out of the one cached copy.
    assert_eq!(env.proget.hits(up_path), 1);

    env.proget.set(
        "/api/packages/assets/latest?group=tools&name=virt",
        Behavior::json(r#"[{"group":"tools","name":"virt","version":"2.0.0"}]"#),
    );
    for path in [
        "/upack/assets/download-vpack/tools/virt/2.0.0",
        "/upack/assets/download-vpack/tools/virt?latest",
    ] {
        let (s, _, b) = get(&p(path)).await;
        assert_eq!(s, 200, "{path}");
        assert!(String::from_utf8(b).unwrap().contains("contents"), "{path}");
    }
    assert_eq!(
        env.proget
            .hits("/upack/assets/download-vpack/tools/virt/2.0.0"),
        1
    );
    let table: &[(&str, u16)] = &[
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package/missing.txt",
            404,
        ),
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package/deep",
            404,
        ),
        ("/upack/assets/download-file/tools/build/cli/1.2.0", 400),
        ("/upack/assets/download/tools/build/cli", 400),
        ("/upack/assets/download/cli", 400),
        ("/upack/assets/download-vpack/tools/virt", 400),
        ("/upack/assets/download/tools/nothing/1.0.0", 404),
        ("/upack/assets/download/tools/nothing?latest", 404),
    ];
    for (path, want) in table {
        let (s, _, _) = get(&p(path)).await;
        assert_eq!(s, *want, "{path}");
    }
}

#[tokio::test]
async fn hostile_paths_bombs_and_corrupt_packages() {
    let env = setup(None).await;
    let pkg = upack("g", "app", "1.0.0", &[("package/a.txt", b"inside")]);
    env.proget
        .set("/upack/assets/download/g/app/1.0.0", Behavior::bytes(pkg));
    let file = |q: &str| {
        env.proxy
            .url(&format!("/upack/assets/download-file/g/app/1.0.0?{q}"))
    };
    let (s, _, _) = get(&file("path=package/a.txt")).await;
    assert_eq!(s, 200);
    let long = format!("path={}", "a/".repeat(1500));
    let attempts = [
        "path=../upack.json",
        "path=package/../upack.json",
        "path=%2e%2e/upack.json",
        "path=%2e%2e%2fupack.json",
        "path=%252e%252e%252fupack.json",
        "path=package%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "path=/etc/passwd",
        "path=%2Fetc%2Fpasswd",
        "path=C:/Windows/win.ini",
        "path=..%5C..%5Cetc%5Cpasswd",
        "path=package%5Ca.txt",
        "path=package/a.txt%00.png",
        "path=package//a.txt",
        "path=./package/a.txt",
        "path=%FF%FE",
        long.as_str(),
    ];
    for q in attempts {
        let (s, _, b) = get(&file(q)).await;
        assert!(matches!(s, 400 | 404 | 414), "{q}: {s}");
        assert!(!String::from_utf8_lossy(&b).contains("root:"), "{q}");
    }
    for path in [
        "/upack/assets/download/%2E%2E/app/1.0.0",
        "/upack/assets/download/..%2F..%2Fetc/app/1.0.0",
        "/upack/assets/download/g/app/1.0.0%2F..%2F..",
    ] {
        // (The client may already have resolved `%2E%2E` itself: then 404.)
        let (s, _, _) = get(&env.proxy.url(path)).await;
        assert!(matches!(s, 400 | 404), "{path}: {s}");
    }

    // A zip bomb: 8 MiB of zeros in a few KB. Refused before inflating.
    let bomb = upack(
        "g",
        "bomb",
        "1.0.0",
        &[("package/zeros", &vec![0u8; 8 << 20])],
    );
    assert!(bomb.len() < 100_000);
    env.proget
        .set("/upack/assets/download/g/bomb/1.0.0", Behavior::bytes(bomb));
    let (s, _, _) = get(&env
        .proxy
        .url("/upack/assets/download-file/g/bomb/1.0.0?path=package/zeros"))
    .await;
    assert_eq!(s, 502);

    // Not a zip: 502, and not cached (the next request fetches again).
    let broken = "/upack/assets/download/g/broken/1.0.0";
    env.proget.set(
        broken,
        Behavior::bytes(b"PK\x03\x04 this is not a zip".to_vec()),
    );
    for round in 1..=2 {
        let (s, _, _) = get(&env
            .proxy
            .url("/upack/assets/download-file/g/broken/1.0.0?path=upack.json"))
        .await;
        assert_eq!(s, 502);
        assert_eq!(env.proget.hits(broken), round);
    }
    // Cut off mid-body: 502, not cached.
    let cut = "/upack/assets/download/g/cut/1.0.0";
    env.proget.set(
        cut,
        Behavior::Truncate {
            declared: 10_000,
            body: vec![b'P'; 100],
        },
    );
    for round in 1..=2 {
        let (s, _, _) = get(&env
            .proxy
            .url("/upack/assets/download-file/g/cut/1.0.0?path=upack.json"))
        .await;
        assert_eq!(s, 502);
        assert_eq!(env.proget.hits(cut), round);
    }
}

#[tokio::test]
async fn packages_over_the_entry_limit_are_refused_and_not_cached() {
    let env = setup_with(None, "[extract]\nmax_entries = 1000\n").await;
    let files = |n: usize| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("package/f{i}.txt"), blob(100, i as u64)))
            .collect()
    };
    let pack = |name: &str, files: &[(String, Vec<u8>)]| {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        upack("g", name, "1.0.0", &refs)
    };
    // 2,000 tiny entries: over the limit, and over 256 KiB, so the package
    // is streamed through a file like the huge ones.
    let many = pack("many", &files(2000));
    assert!(many.len() > 256 << 10, "{}", many.len());
    let up = "/upack/assets/download/g/many/1.0.0";
    env.proget.set(up, Behavior::bytes(many));
    let file = env
        .proxy
        .url("/upack/assets/download-file/g/many/1.0.0?path=package/f1.txt");
    let (s, _, b) = get(&file).await;
    assert_eq!(s, 502, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("extraction limits"));
    assert_eq!(env.proget.hits(up), 1);
    // Nothing refused is kept: the next request for the file, and one for
    // the whole package, each fetch it again. A request sent the moment the
    // refused fill's clients got their error can still join that fill while
    // it unregisters, so each waits for its fetch rather than expecting it
    // on the first try. (The whole package streams as it arrives, so its
    // client may get every byte before the check at the end refuses it.)
    let whole = env.proxy.url(up);
    for (url, fetches) in [(&file, 2), (&whole, 3)] {
        eventually(async || {
            if let Ok(r) = within(client().get(url).send()).await {
                let _ = within(r.bytes()).await;
            }
            env.proget.hits(up) >= fetches
        })
        .await;
    }

    // Under the limit: served, twice, from one fetch; HTML inside a package
    // comes out as plain text.
    let mut few = files(500);
    few.push(("package/index.html".into(), b"<script>1</script>".to_vec()));
    let up = "/upack/assets/download/g/few/1.0.0";
    env.proget.set(up, Behavior::bytes(pack("few", &few)));
    for want in ["MISS", "HIT"] {
        let (s, h, b) = get(&env
            .proxy
            .url("/upack/assets/download-file/g/few/1.0.0?path=package/f7.txt"))
        .await;
        assert_eq!((s, b), (200, blob(100, 7)));
        assert_eq!(h["x-cache"], want);
    }
    let (s, h, _) = get(&env
        .proxy
        .url("/upack/assets/download-file/g/few/1.0.0?path=package/index.html"))
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(env.proget.hits(up), 1);
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
