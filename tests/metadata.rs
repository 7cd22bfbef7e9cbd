//! Metadata through the real proxy: service index and registration rewriting
//! (plain and gzip), search, version lists and TTL revalidation.

mod common;

use std::io::Write;

use common::*;
use serde_json::Value;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

const REG_INDEX: &str = r#"{"@id":"{base}/v3/registration5-semver1/demo.pkg/index.json","count":2,"items":[
 {"@id":"{base}/v3/registration5-semver1/demo.pkg/index.json#page/1.0.0/1.0.0","count":1,"lower":"1.0.0","upper":"1.0.0",
  "items":[{"@id":"{base}/v3/registration5-semver1/demo.pkg/1.0.0.json",
    "catalogEntry":{"@id":"{base}/v3/catalog0/data/2024.01.01/demo.pkg.1.0.0.json","id":"Demo.Pkg","version":"1.0.0",
      "projectUrl":"https://github.com/example/demo",
      "dependencyGroups":[{"dependencies":[{"id":"Other","range":"[1.0.0, )","registration":"{base}/v3/registration5-semver1/other/index.json"}]}]},
    "packageContent":"{base}/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg"}]},
 {"@id":"{base}/v3/registration5-semver1/demo.pkg/page/2.0.0/3.0.0.json","count":5,"lower":"2.0.0","upper":"3.0.0"}]}"#;

async fn setup(extra: &[&str]) -> (FakeUpstream, Proxy, tempfile::TempDir) {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), extra).await;
    (up, proxy, dir)
}

fn assert_no_upstream(body: &[u8], up: &FakeUpstream) {
    let s = String::from_utf8_lossy(body);
    assert!(
        !s.contains(&up.addr.to_string()),
        "upstream address leaked: {s}"
    );
}

#[tokio::test]
async fn service_index_points_everything_at_feedcache() {
    let (up, proxy, dir) = setup(&[]).await;
    let (s, h, b) = get(&proxy.url("/v3/index.json")).await;
    assert_eq!(s, 200);
    assert!(h["content-type"].to_str().unwrap().contains("json"));
    assert!(h.get("content-encoding").is_none());
    assert_no_upstream(&b, &up);
    let v: Value = serde_json::from_slice(&b).unwrap();
    let res = v["resources"].as_array().unwrap();
    let types: Vec<&str> = res.iter().map(|r| r["@type"].as_str().unwrap()).collect();
    assert!(!types
        .iter()
        .any(|t| t.starts_with("PackagePublish") || t.starts_with("Catalog")));
    let versioned = res
        .iter()
        .find(|r| r["@type"] == "RegistrationsBaseUrl/Versioned")
        .unwrap();
    assert_eq!(
        versioned["clientVersion"], "4.3.0-alpha",
        "other properties are kept"
    );
    assert_eq!(res.len(), 10, "{types:?}");
    for r in res {
        let id = r["@id"].as_str().unwrap();
        assert!(id.starts_with(&format!("{}/v3/", proxy.base)), "{id}");
    }
    // Forwarded headers decide the public address, but only from a
    // configured proxy: from anyone else they are ignored.
    let forwarded = |proxy: &Proxy| {
        let req = client()
            .get(proxy.url("/v3/index.json"))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "nuget.corp.example")
            .send();
        async move {
            let r = within(req).await.unwrap();
            let vary = r.headers()["vary"].to_str().unwrap().to_owned();
            let v: Value = serde_json::from_slice(&within(r.bytes()).await.unwrap()).unwrap();
            let first = v["resources"][0]["@id"].as_str().unwrap().to_owned();
            (vary, first)
        }
    };
    let (vary, id) = forwarded(&proxy).await;
    assert!(id.starts_with(&format!("{}/v3/", proxy.base)), "{id}");
    assert!(vary.contains("X-Forwarded-Host"), "{vary}");
    let conf = "trusted_proxies = [\"127.0.0.0/8\"]\n";
    let behind = Proxy::start_with_conf(&up.index_url(), dir.path(), "behind", conf).await;
    let (_, id) = forwarded(&behind).await;
    assert!(id.starts_with("https://nuget.corp.example/v3/"), "{id}");
    assert_eq!(up.hits("/v3/index.json"), 2, "once per feedcache");
}

#[tokio::test]
async fn registration_plain_and_gzip_hives_are_rewritten() {
    let (up, proxy, _dir) = setup(&[]).await;
    up.set(
        "/v3/registration5-semver1/demo.pkg/index.json",
        Behavior::json(REG_INDEX),
    );
    let gz = gzip(REG_INDEX.replace("{base}", &up.base()).as_bytes());
    up.set(
        "/v3/registration5-gz-semver2/demo.pkg/index.json",
        Behavior::Ok {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Content-Encoding".into(), "gzip".into()),
            ],
            body: gz,
        },
    );
    up.set(
        "/v3/registration5-semver1/demo.pkg/page/2.0.0/3.0.0.json",
        Behavior::json(r#"{"@id":"{base}/v3/registration5-semver1/demo.pkg/page/2.0.0/3.0.0.json","items":[]}"#),
    );

    for hive in ["registration5-semver1", "registration5-gz-semver2"] {
        let url = proxy.url(&format!("/v3/registration/{hive}/Demo.Pkg/index.json"));
        let r = within(client().get(&url).header("Accept-Encoding", "gzip").send())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{hive}");
        let enc = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let b = within(r.bytes()).await.unwrap();
        // The body must match its Content-Encoding.
        let plain = match enc.as_deref() {
            None | Some("identity") => b.to_vec(),
            Some(other) => panic!("unexpected encoding {other}"),
        };
        assert_no_upstream(&plain, &up);
        let v: Value = serde_json::from_slice(&plain).expect("valid JSON");
        let content = v["items"][0]["items"][0]["packageContent"]
            .as_str()
            .unwrap();
        assert_eq!(
            content,
            proxy.url("/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg"),
            "{hive}"
        );
        assert_eq!(
            v["items"][0]["items"][0]["catalogEntry"]["projectUrl"],
            "https://github.com/example/demo",
            "foreign URLs stay"
        );
    }
    // A non-inlined page URL from the rewritten index works through feedcache.
    let (_, _, b) =
        get(&proxy.url("/v3/registration/registration5-semver1/demo.pkg/index.json")).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    let page = v["items"][1]["@id"].as_str().unwrap().to_owned();
    let (s, _, pb) = get(&page).await;
    assert_eq!(s, 200, "{page}");
    assert_no_upstream(&pb, &up);
    // So does the catalog entry, through raw/.
    let catalog = v["items"][0]["items"][0]["catalogEntry"]["@id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(catalog.starts_with(&proxy.url("/v3/raw/0/")), "{catalog}");
}

#[tokio::test]
async fn search_is_rewritten_and_cached_per_query() {
    let (up, proxy, _dir) = setup(&[]).await;
    up.set(
        "/query",
        Behavior::json(r#"{"totalHits":1,"data":[{"@id":"{base}/v3/registration5-semver1/demo.pkg/index.json","registration":"{base}/v3/registration5-semver1/demo.pkg/index.json","id":"Demo.Pkg"}]}"#),
    );
    let (s, _, b) = get(&proxy.url("/v3/search/query?q=demo&take=5")).await;
    assert_eq!(s, 200);
    assert_no_upstream(&b, &up);
    let (_, h, _) = get(&proxy.url("/v3/search/query?q=demo&take=5")).await;
    assert_eq!(h["x-cache"], "HIT");
    let _ = get(&proxy.url("/v3/search/query?q=other")).await;
    assert_eq!(up.hits("/query?q=demo&take=5"), 1);
    assert_eq!(up.hits("/query?q=other"), 1);
}

#[tokio::test]
async fn version_list_is_cached() {
    // Revalidation after the TTL, 304 renewals and replaced documents are
    // time-based: `metadata::tests` moves a clock through them.
    let (up, proxy, _dir) = setup(&[]).await;
    let path = "/v3-flatcontainer/demo.pkg/index.json";
    up.set(path, Behavior::json(r#"{"versions":["1.0.0"]}"#));
    let url = proxy.url("/v3/flatcontainer/Demo.Pkg/index.json");
    let (s, h, b) = get(&url).await;
    assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "MISS"));
    assert_eq!(b, br#"{"versions":["1.0.0"]}"#);
    let (_, h, _) = get(&url).await;
    assert_eq!(h["x-cache"], "HIT");
    assert_eq!(up.hits(path), 1);
}

/// NuGet audit (`dotnet restore` warnings NU1901-NU1904) behind feedcache
/// (issue #10 point 1): VulnerabilityInfo is advertised under feedcache, its
/// index and every page it lists are served through feedcache, cached, and
/// name no upstream URL; links for a browser stay as they are.
#[tokio::test]
async fn vulnerability_data_is_served_through_feedcache() {
    let up = FakeUpstream::start().await;
    up.set(
        "/v3/index.json",
        Behavior::json(
            r#"{"version":"3.0.0","resources":[
 {"@id":"{base}/v3-flatcontainer/","@type":"PackageBaseAddress/3.0.0"},
 {"@id":"{base}/v3/vulnerabilities/index.json","@type":"VulnerabilityInfo/6.7.0"},
 {"@id":"https://www.example.org/packages/{id}/{version}","@type":"PackageDetailsUriTemplate/5.1.0"}]}"#,
        ),
    );
    up.set(
        "/v3/vulnerabilities/index.json",
        Behavior::json(
            r#"[{"@name":"base","@id":"{base}/v3-vulnerabilities/2026.12.01/vulnerability.base.json","@updated":"2026-12-01T00:00:00Z"},
 {"@name":"update","@id":"{base}/v3-vulnerabilities/2026.12.01/2026.12.02/vulnerability.update.json","@updated":"2026-12-02T00:00:00Z"}]"#,
        ),
    );
    let page = r#"{"contoso.lib":[{"severity":2,"url":"https://github.com/advisories/GHSA-test","versions":"(, 2.0.0)"}]}"#;
    up.set(
        "/v3-vulnerabilities/2026.12.01/vulnerability.base.json",
        Behavior::json(page),
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;

    let (s, _, b) = get(&proxy.url("/v3/index.json")).await;
    assert_eq!(s, 200);
    let index: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let find = |ty: &str| {
        index["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["@type"] == ty)
            .map(|r| r["@id"].as_str().unwrap().to_owned())
    };
    let details = find("PackageDetailsUriTemplate/5.1.0").unwrap();
    assert_eq!(details, "https://www.example.org/packages/{id}/{version}");
    let vuln = find("VulnerabilityInfo/6.7.0").expect("VulnerabilityInfo advertised");
    assert!(vuln.starts_with(&proxy.base), "{vuln}");

    for _ in 0..2 {
        let (s, _, b) = get(&vuln).await;
        assert_eq!(s, 200);
        let text = String::from_utf8(b).unwrap();
        assert!(!text.contains(&up.base()), "upstream URL leaked: {text}");
        let pages: serde_json::Value = serde_json::from_str(&text).unwrap();
        let base_page = pages[0]["@id"].as_str().unwrap().to_owned();
        assert!(base_page.starts_with(&proxy.base), "{base_page}");
        let (s, _, b) = get(&base_page).await;
        assert_eq!((s, b.as_slice()), (200, page.as_bytes()));
    }
    assert_eq!(up.hits("/v3/vulnerabilities/index.json"), 1, "cached");
    assert_eq!(
        up.hits("/v3-vulnerabilities/2026.12.01/vulnerability.base.json"),
        1
    );
}

/// README and icon (issue #10 point 2): cached as immutable per package
/// version with the upstream's type, one entry for every ID and version
/// spelling.
#[tokio::test]
async fn readme_and_icon_are_cached_once_for_every_spelling() {
    let (up, proxy, _dir) = setup(&[]).await;
    let typed = |ty: &str, body: &[u8]| Behavior::Ok {
        status: 200,
        headers: vec![("Content-Type".into(), ty.into())],
        body: body.to_vec(),
    };
    up.set(
        "/v3-flatcontainer/demo.pkg/1.0.0/readme",
        typed("text/markdown", b"# Demo"),
    );
    let png = b"\x89PNG\r\n\x1a\nnot really".to_vec();
    up.set(
        "/v3-flatcontainer/demo.pkg/1.0.0/icon",
        typed("image/png", &png),
    );
    for spelling in ["Demo.Pkg/1.0.0", "demo.pkg/1.0.0.0", "DEMO.PKG/1.0"] {
        let (s, h, b) = get(&proxy.url(&format!("/v3/flatcontainer/{spelling}/readme"))).await;
        assert_eq!(
            (s, h["content-type"].to_str().unwrap()),
            (200, "text/markdown")
        );
        assert_eq!(b, b"# Demo");
        let (s, h, b) = get(&proxy.url(&format!("/v3/flatcontainer/{spelling}/icon"))).await;
        assert_eq!((s, h["content-type"].to_str().unwrap()), (200, "image/png"));
        assert_eq!(b, png);
    }
    assert_eq!(up.hits("/v3-flatcontainer/demo.pkg/1.0.0/readme"), 1);
    assert_eq!(up.hits("/v3-flatcontainer/demo.pkg/1.0.0/icon"), 1);
    // This upstream has no vulnerability data: none is advertised (never a
    // 404 behind an advertised resource).
    let (s, _, b) = get(&proxy.url("/v3/index.json")).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    assert!(!text.contains("VulnerabilityInfo"), "{text}");
}

/// Registration documents keep `listed`, `deprecation` and
/// `vulnerabilities` exactly (issue #10 point 3); only upstream URLs change.
#[tokio::test]
async fn registration_keeps_listed_deprecation_and_vulnerabilities() {
    let (up, proxy, _dir) = setup(&[]).await;
    let leaf = r#"{"@id":"{base}/v3/registration5-semver1/old.pkg/index.json","items":[{"items":[{"catalogEntry":{
 "id":"Old.Pkg","version":"1.0.0","listed":false,
 "deprecation":{"reasons":["Legacy","CriticalBugs"],"message":"use New.Pkg","alternatePackage":{"id":"New.Pkg","range":"[2.0.0, )"}},
 "vulnerabilities":[{"advisoryUrl":"https://github.com/advisories/GHSA-test","severity":"2"}]},
 "packageContent":"{base}/v3-flatcontainer/old.pkg/1.0.0/old.pkg.1.0.0.nupkg"}]}]}"#;
    up.set(
        "/v3/registration5-semver1/old.pkg/index.json",
        Behavior::json(leaf),
    );
    let (s, _, b) =
        get(&proxy.url("/v3/registration/registration5-semver1/old.pkg/index.json")).await;
    assert_eq!(s, 200);
    assert_no_upstream(&b, &up);
    let got: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&leaf.replace("{base}", &up.base())).unwrap();
    let entry = |v: &serde_json::Value| v["items"][0]["items"][0]["catalogEntry"].clone();
    for field in ["listed", "deprecation", "vulnerabilities"] {
        assert_eq!(entry(&got)[field], entry(&want)[field], "{field}");
    }
    assert!(got["items"][0]["items"][0]["packageContent"]
        .as_str()
        .unwrap()
        .starts_with(&proxy.base));
}
