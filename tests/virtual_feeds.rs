//! Virtual feeds (issue #11 points 1, 2, 5): one feed over a fake ProGet
//! feed and a fake nuget.org, with package-ID rules against dependency
//! confusion.

mod common;

use common::proget::{setup_full, setup_with, Env, FLAT};
use common::*;

/// `all`: Contoso.* only from the internal ProGet feed, everything else
/// only from nuget.org. `both`: the two side by side, ProGet first.
const FEEDS: &str = r#"
[[feeds]]
name = "all"
upstreams = [
  { source = "proget:internal", include = ["Contoso.*"] },
  { source = "nuget", exclude = ["Contoso.*"] },
]

[[feeds]]
name = "both"
upstreams = [{ source = "proget:internal" }, { source = "nuget" }]
"#;

const NUGET_FLAT: &str = "/v3-flatcontainer/";

fn versions(list: &[&str]) -> Behavior {
    let quoted: Vec<String> = list.iter().map(|v| format!("\"{v}\"")).collect();
    Behavior::json(format!(r#"{{"versions":[{}]}}"#, quoted.join(",")))
}

/// Serves `id` `version` as a package with body `body` on both the list
/// and the file route of one upstream's flat container.
fn nupkg_path(flat: &str, id: &str, version: &str) -> String {
    let l = id.to_lowercase();
    format!("{flat}{l}/{version}/{l}.{version}.nupkg")
}

async fn env() -> Env {
    setup_with(None, FEEDS).await
}

#[tokio::test]
async fn version_lists_merge_and_the_first_upstream_that_lists_a_version_serves_it() {
    let env = env().await;
    env.proget.set(
        &format!("{FLAT}shared.lib/index.json"),
        versions(&["1.0.0", "2.0.0-beta"]),
    );
    env.nuget.set(
        &format!("{NUGET_FLAT}shared.lib/index.json"),
        versions(&["1.0", "1.5.0"]),
    );
    for (up, flat, v, body) in [
        (&env.proget, FLAT, "1.0.0", "internal 1.0.0"),
        (&env.nuget, NUGET_FLAT, "1.0.0", "public 1.0.0"),
        (&env.nuget, NUGET_FLAT, "1.5.0", "public 1.5.0"),
    ] {
        up.set(
            &nupkg_path(flat, "shared.lib", v),
            Behavior::bytes(body.as_bytes().to_vec()),
        );
    }

    let (s, h, b) = get(&env
        .proxy
        .url("/feeds/both/v3/flatcontainer/Shared.Lib/index.json"))
    .await;
    assert_eq!(s, 200);
    assert!(!h.contains_key("x-feedcache-missing"));
    assert_eq!(
        String::from_utf8(b).unwrap(),
        r#"{"versions":["1.0.0","1.5.0","2.0.0-beta"]}"#
    );

    let file = |v: &str| {
        env.proxy.url(&format!(
            "/feeds/both/v3/flatcontainer/shared.lib/{v}/shared.lib.{v}.nupkg"
        ))
    };
    for round in ["MISS", "HIT"] {
        let (s, h, b) = get(&file("1.0.0")).await;
        assert_eq!(
            (s, b.as_slice()),
            (200, &b"internal 1.0.0"[..]),
            "first upstream wins"
        );
        assert_eq!(h["x-cache"], round);
        let (s, _, b) = get(&file("1.5.0")).await;
        assert_eq!((s, b.as_slice()), (200, &b"public 1.5.0"[..]));
    }
    assert_eq!(env.proget.hits(&nupkg_path(FLAT, "shared.lib", "1.0.0")), 1);
    assert_eq!(
        env.nuget
            .hits(&nupkg_path(NUGET_FLAT, "shared.lib", "1.0.0")),
        0
    );
    assert_eq!(
        env.nuget
            .hits(&nupkg_path(NUGET_FLAT, "shared.lib", "1.5.0")),
        1
    );
    let (s, _, _) = get(&file("3.0.0")).await;
    assert_eq!(s, 404, "listed nowhere");
}

#[tokio::test]
async fn an_excluded_id_is_never_asked_of_that_upstream_on_any_route() {
    let env = env().await;
    // nuget.org has a package that squats on the internal prefix.
    env.nuget.set(
        &format!("{NUGET_FLAT}contoso.secret/index.json"),
        versions(&["99.0.0"]),
    );
    env.nuget.set(
        &nupkg_path(NUGET_FLAT, "contoso.secret", "99.0.0"),
        Behavior::bytes(b"malicious".to_vec()),
    );
    env.nuget.set(
        "/v3/registration5-gz-semver2/contoso.secret/index.json",
        Behavior::json(r#"{"count":0,"items":[]}"#),
    );
    env.nuget.set(
        "/query?q=contoso",
        Behavior::json(
            r#"{"totalHits":2,"data":[{"id":"Contoso.Secret","version":"99.0.0"},{"id":"Newtonsoft.Json","version":"13.0.3"}]}"#,
        ),
    );
    env.proget.set(
        "/nuget/internal/v3/search?q=contoso",
        Behavior::json(r#"{"totalHits":1,"data":[{"id":"Contoso.Lib","version":"1.0.0"}]}"#),
    );
    let url = |p: &str| env.proxy.url(&format!("/feeds/all/v3/{p}"));
    for path in [
        "flatcontainer/contoso.secret/index.json",
        "flatcontainer/contoso.secret/99.0.0/contoso.secret.99.0.0.nupkg",
        "registration/merged/contoso.secret/index.json",
        "registration/m1-registration5-gz-semver2/contoso.secret/index.json",
    ] {
        let (s, _, b) = get(&url(path)).await;
        assert_eq!(s, 404, "{path}: {}", String::from_utf8_lossy(&b));
    }
    let (s, _, b) = get(&url("search/merged?q=contoso")).await;
    assert_eq!(s, 200);
    let doc: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let ids: Vec<&str> = doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Contoso.Lib", "Newtonsoft.Json"]);
    for path in env.nuget.paths() {
        assert!(
            !path.contains("contoso.secret"),
            "asked nuget.org for {path}"
        );
    }
}

#[tokio::test]
async fn one_upstream_down_never_fails_the_feed_and_is_named() {
    let env = env().await;
    env.nuget.set(
        &format!("{NUGET_FLAT}serilog/index.json"),
        versions(&["3.1.1"]),
    );
    env.proget.set(
        &format!("{FLAT}serilog/index.json"),
        Behavior::Ok {
            status: 503,
            headers: vec![],
            body: b"down for maintenance".to_vec(),
        },
    );
    let (s, h, b) = get(&env
        .proxy
        .url("/feeds/both/v3/flatcontainer/serilog/index.json"))
    .await;
    assert_eq!(s, 200);
    assert_eq!(String::from_utf8(b).unwrap(), r#"{"versions":["3.1.1"]}"#);
    assert_eq!(h["x-feedcache-missing"], "proget/internal");
}

#[tokio::test]
async fn registration_merges_pages_and_keeps_every_link_under_the_feed() {
    let env = env().await;
    let page = |reg: &str, flat: &str, v: &str| {
        format!(
            r#"{{"count":1,"items":[{{"@id":"{{base}}{reg}shared.lib/index.json#page/{v}/{v}","count":1,"lower":"{v}","upper":"{v}","items":[{{"@id":"{{base}}{reg}shared.lib/{v}.json","catalogEntry":{{"id":"Shared.Lib","version":"{v}"}},"packageContent":"{{base}}{flat}shared.lib/{v}/shared.lib.{v}.nupkg"}}]}}]}}"#
        )
    };
    env.proget.set(
        "/nuget/internal/v3/registrations/shared.lib/index.json",
        Behavior::json(page("/nuget/internal/v3/registrations/", FLAT, "1.0.0")),
    );
    env.nuget.set(
        "/v3/registration5-gz-semver2/shared.lib/index.json",
        Behavior::json(page("/v3/registration5-gz-semver2/", NUGET_FLAT, "1.5.0")),
    );
    let (s, _, b) = get(&env
        .proxy
        .url("/feeds/both/v3/registration/merged/shared.lib/index.json"))
    .await;
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["count"], 2);
    let content: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["items"][0]["packageContent"].as_str().unwrap())
        .collect();
    let base = &env.proxy.base;
    assert_eq!(
        content,
        [
            format!("{base}/feeds/both/v3/flatcontainer/shared.lib/1.0.0/shared.lib.1.0.0.nupkg"),
            format!("{base}/feeds/both/v3/flatcontainer/shared.lib/1.5.0/shared.lib.1.5.0.nupkg"),
        ]
    );
    assert!(
        !text.contains(&env.nuget.base()) && !text.contains(&env.proget.base()),
        "{text}"
    );
    assert!(
        !text.contains("/nuget/internal/v3/"),
        "a link left the feed: {text}"
    );
    // A member's page, through the feed.
    let leaf = doc["items"][1]["items"][0]["@id"].as_str().unwrap();
    assert!(
        leaf.starts_with(&format!("{base}/feeds/both/v3/registration/m1-")),
        "{leaf}"
    );
    env.nuget.set(
        "/v3/registration5-gz-semver2/shared.lib/1.5.0.json",
        Behavior::json(r#"{"listed":true}"#),
    );
    let (s, _, b) = get(leaf).await;
    assert_eq!((s, b.as_slice()), (200, &br#"{"listed":true}"#[..]));

    // The feed's own service index points only at itself.
    let (s, _, b) = get(&env.proxy.url("/feeds/both/v3/index.json")).await;
    assert_eq!(s, 200);
    let index: serde_json::Value = serde_json::from_slice(&b).unwrap();
    for r in index["resources"].as_array().unwrap() {
        let id = r["@id"].as_str().unwrap();
        assert!(id.starts_with(&format!("{base}/feeds/both/v3/")), "{id}");
    }
    let (s, _, _) = get(&env.proxy.url("/feeds/nosuch/v3/index.json")).await;
    assert_eq!(s, 404);
}

/// `default_feed`: the virtual feed at `/v3/` itself, rules included; the
/// `[nuget]` feed is then reached only as its upstream.
#[tokio::test]
async fn the_default_feed_can_be_a_virtual_feed() {
    let env = setup_full(None, "default_feed = \"All\"\n", FEEDS).await;
    env.proget.set(
        &format!("{FLAT}contoso.lib/index.json"),
        versions(&["1.0.0"]),
    );
    env.proget.set(
        &nupkg_path(FLAT, "contoso.lib", "1.0.0"),
        Behavior::bytes(b"internal".to_vec()),
    );
    env.nuget.set(
        &format!("{NUGET_FLAT}contoso.secret/index.json"),
        versions(&["99.0.0"]),
    );
    env.nuget.set(
        &format!("{NUGET_FLAT}serilog/index.json"),
        versions(&["3.1.1"]),
    );
    let (s, _, b) = get(&env.proxy.url("/v3/index.json")).await;
    assert_eq!(s, 200);
    let index: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let base = &env.proxy.base;
    for r in index["resources"].as_array().unwrap() {
        let id = r["@id"].as_str().unwrap();
        assert!(id.starts_with(&format!("{base}/v3/")), "{id}");
    }
    let (s, _, b) = get(&env
        .proxy
        .url("/v3/flatcontainer/contoso.lib/1.0.0/contoso.lib.1.0.0.nupkg"))
    .await;
    assert_eq!((s, b.as_slice()), (200, &b"internal"[..]));
    let (s, _, b) = get(&env.proxy.url("/v3/flatcontainer/serilog/index.json")).await;
    assert_eq!(
        (s, String::from_utf8(b).unwrap().as_str()),
        (200, r#"{"versions":["3.1.1"]}"#)
    );
    let (s, _, _) = get(&env.proxy.url("/v3/flatcontainer/contoso.secret/index.json")).await;
    assert_eq!(s, 404, "the rules hold at /v3/ too");
    assert_eq!(
        env.nuget
            .hits(&format!("{NUGET_FLAT}contoso.secret/index.json")),
        0
    );
}
