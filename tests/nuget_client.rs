//! End to end with a real NuGet client: NuGet.exe 5.8 on mono installs real
//! packages (made with `nuget pack`) through feedcache from fake upstreams
//! (helpers in `common/nuget_exe.rs`).

mod common;

use common::nuget_exe::*;
use common::*;

#[tokio::test]
async fn nuget_exe_installs_through_feedcache() {
    let Some(t) = E2e::setup().await else {
        return;
    };

    let up = nuget_org_serving(&t.app, &t.dep).await;

    let cache = t.path().join("cache");
    let proxy = Proxy::start(&up.index_url(), &cache, &[]).await;
    let config = t.config_without_sources();
    let source = proxy.url("/v3/index.json");
    t.install_twice(&source, &config).await;

    // Each package left the upstream once; the second install was all cache.
    assert_eq!(
        up.hits("/v3-flatcontainer/demo.app/1.0.0/demo.app.1.0.0.nupkg"),
        1
    );
    assert_eq!(
        up.hits("/v3-flatcontainer/demo.dep/2.0.0/demo.dep.2.0.0.nupkg"),
        1
    );
    // Over plain HTTP the index leaves RepositorySignatures out (NuGet.exe
    // 5.8 fails every install over HTTP otherwise); nothing asked for it.
    assert_eq!(up.hits(SIGNATURES), 0, "{:?}", up.paths());
    // Nothing reached the upstream except through feedcache.
    let agents = up.agents();
    assert!(!agents.is_empty());
    for a in &agents {
        assert!(
            a.starts_with("feedcache/"),
            "a request reached the upstream directly: {a:?}"
        );
    }
}

#[tokio::test]
async fn nuget_exe_installs_from_a_proget_feed_with_basic_credentials() {
    let Some(t) = E2e::setup().await else {
        return;
    };

    let nuget_org = FakeUpstream::start().await;
    nuget_org.serve_nuget_index();
    let proget = proget_serving(&t.app, &t.dep).await;

    std::fs::write(t.path().join("client-keys"), "client-key\n").unwrap();
    let conf = t.path().join("feedcache.toml");
    std::fs::write(
        &conf,
        format!(
            "[proget]\nurl = \"{}/\"\napi_key_env = \"FC_E2E_PROGET_KEY\"\n[auth]\napi_keys_file = \"{}\"\n",
            proget.base(),
            t.path().join("client-keys").display()
        ),
    )
    .unwrap();
    let proxy = Proxy::start_with_env(
        &nuget_org.index_url(),
        &t.path().join("cache"),
        &["-c", conf.to_str().unwrap()],
        &[("FC_E2E_PROGET_KEY", "upstream-key")],
    )
    .await;
    let source = proxy.url("/nuget/internal/v3/index.json");
    // NuGet sends the stored credentials after feedcache's 401 challenge.
    let config = t.path().join("NuGet.Config");
    std::fs::write(
        &config,
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><configuration>
<packageSources><clear /><add key="feedcache" value="{source}" /></packageSources>
<packageSourceCredentials><feedcache>
<add key="Username" value="api" /><add key="ClearTextPassword" value="client-key" />
</feedcache></packageSourceCredentials></configuration>"#
        ),
    )
    .unwrap();
    t.install_twice("feedcache", &config).await;

    assert_eq!(
        proget.hits("/nuget/internal/v3/flatcontainer/demo.app/1.0.0/demo.app.1.0.0.nupkg"),
        1
    );
    // Every ProGet request carried feedcache's key, never the client's.
    let keys = proget.api_keys();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.as_deref() == Some("upstream-key")),
        "{keys:?}"
    );
    assert!(nuget_org.api_keys().iter().all(Option::is_none));
}

/// Over HTTPS the index keeps RepositorySignatures and NuGet.exe reads them
/// through feedcache before it installs (issue #10 points 3 and 6).
#[tokio::test]
async fn nuget_exe_reads_repository_signatures_over_https() {
    let Some(t) = E2e::setup().await else {
        return;
    };
    let up = nuget_org_serving(&t.app, &t.dep).await;
    let (section, port, ck) = tls::self_signed(t.path());
    let conf = t.path().join("feedcache.toml");
    std::fs::write(&conf, section).unwrap();
    let cache = t.path().join("cache");
    let _proxy = Proxy::start(&up.index_url(), &cache, &["-c", conf.to_str().unwrap()]).await;
    for round in 0..2 {
        mono_trust(&t.path().join(format!("home{round}")), &ck.cert.pem());
    }
    let config = t.config_without_sources();
    let source = format!("https://localhost:{port}/v3/index.json");
    t.install_twice(&source, &config).await;
    assert_eq!(
        up.hits(SIGNATURES),
        1,
        "read by NuGet.exe through feedcache, then cached: {:?}",
        up.paths()
    );
    for a in up.agents() {
        assert!(a.starts_with("feedcache/"), "{a:?}");
    }
}

/// One virtual feed over a ProGet feed and nuget.org (issue #11 point 5):
/// Demo.App only from the internal feed, everything else from nuget.org.
/// Both upstreams serve both packages; the rules decide who is asked.
#[tokio::test]
async fn nuget_exe_restores_across_two_upstreams_through_one_virtual_feed() {
    let Some(t) = E2e::setup().await else {
        return;
    };
    let nuget_org = FakeUpstream::start().await;
    nuget_org.serve_nuget_index();
    serve_packages(
        &nuget_org,
        &t.app,
        &t.dep,
        "/v3/registration5-semver1/",
        "/v3-flatcontainer/",
        &["/v3/registration5-gz-semver2/"],
    );
    let proget = proget_serving(&t.app, &t.dep).await;
    let conf = t.path().join("feedcache.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[proget]
url = "{}/"
api_key_env = "FC_E2E_PROGET_KEY"

[[feeds]]
name = "company"
upstreams = [
  {{ source = "proget:internal", include = ["Demo.App"] }},
  {{ source = "nuget", exclude = ["Demo.App"] }},
]
"#,
            proget.base()
        ),
    )
    .unwrap();
    let proxy = Proxy::start_with_env(
        &nuget_org.index_url(),
        &t.path().join("cache"),
        &["-c", conf.to_str().unwrap()],
        &[("FC_E2E_PROGET_KEY", "upstream-key")],
    )
    .await;
    let config = t.config_without_sources();
    let source = proxy.url("/feeds/company/v3/index.json");
    t.install_twice(&source, &config).await;

    let nupkg = |flat: &str, id: &str, v: &str| format!("{flat}{id}/{v}/{id}.{v}.nupkg");
    let internal = "/nuget/internal/v3/flatcontainer/";
    assert_eq!(proget.hits(&nupkg(internal, "demo.app", "1.0.0")), 1);
    assert_eq!(
        nuget_org.hits(&nupkg("/v3-flatcontainer/", "demo.dep", "2.0.0")),
        1
    );
    // Demo.App was never asked of nuget.org, Demo.Dep never of ProGet.
    for p in nuget_org.paths() {
        assert!(!p.contains("demo.app"), "nuget.org asked for {p}");
    }
    for p in proget.paths() {
        assert!(!p.contains("demo.dep"), "ProGet asked for {p}");
    }
}
