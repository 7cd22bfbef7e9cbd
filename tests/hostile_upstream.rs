//! A hostile or broken upstream (issue #13, rows 10 and 11): what it sends
//! never runs as a page of feedcache's origin, and a broken document is an
//! error, not a cached 200.

mod common;

use common::*;

#[tokio::test]
async fn packages_are_never_served_as_html_and_every_response_says_nosniff() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let path = "/v3-flatcontainer/evil/1.0.0/evil.1.0.0.nupkg";
    up.set(
        path,
        Behavior::Ok {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<script>alert(1)</script>".to_vec(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    for _ in 0..2 {
        // MISS, then HIT: both with the safe type.
        let (s, h, _) = get(&proxy.url("/v3/flatcontainer/evil/1.0.0/evil.1.0.0.nupkg")).await;
        assert_eq!(s, 200);
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let (s, h, _) = get(&proxy.url("/v3/flatcontainer/nope/1.0.0/nope.1.0.0.nupkg")).await;
    assert_eq!(s, 404);
    assert_eq!(h["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn invalid_json_metadata_is_a_502_and_not_cached() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let path = "/v3-flatcontainer/broken/index.json";
    up.set(path, Behavior::json("{not json"));
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let url = proxy.url("/v3/flatcontainer/broken/index.json");
    for _ in 0..2 {
        let (s, _, _) = get(&url).await;
        assert_eq!(s, 502);
    }
    assert_eq!(up.hits(path), 2, "the broken document was not cached");
    up.set(path, Behavior::json(r#"{"versions":["1.0.0"]}"#));
    let (s, h, b) = get(&url).await;
    assert_eq!((s, b.as_slice()), (200, &br#"{"versions":["1.0.0"]}"#[..]));
    assert_eq!(h["content-type"], "application/json");
}

/// A zip of `n` stored bytes: a stand-in `.nupkg`.
fn nupkg(n: usize) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("lib/x.dll", opts).unwrap();
    w.write_all(&blob(n, 5)).unwrap();
    w.finish().unwrap().into_inner()
}

/// Bodies without a Content-Length (issue #13, rows 4 and 5): a package is
/// kept only if it reads as a whole zip, anything else unverifiable is
/// passed through uncached, and no body may exceed max_package_size.
#[tokio::test]
async fn bodies_without_a_length_are_kept_only_when_they_prove_whole() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let whole = nupkg(300_000);
    let cut = whole[..whole.len() / 2].to_vec();
    let cases = [
        ("whole", whole.clone()),
        ("cut", cut),
        ("huge", nupkg(3_000_000)),
    ];
    for (name, body) in &cases {
        up.set(
            &format!("/v3-flatcontainer/{name}/1.0.0/{name}.1.0.0.nupkg"),
            Behavior::CloseDelimited(body.clone()),
        );
    }
    up.set(
        "/v3-flatcontainer/whole/1.0.0/whole.nuspec",
        Behavior::CloseDelimited(b"<package/>".to_vec()),
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = "[cache]\nmax_package_size = \"1MiB\"\n";
    let proxy = Proxy::start_with_conf(&up.index_url(), dir.path(), "cache", conf).await;
    let fetch = |name: &str| {
        let url = proxy.url(&format!(
            "/v3/flatcontainer/{name}/1.0.0/{name}.1.0.0.nupkg"
        ));
        async move {
            let r = within(client().get(&url).send()).await.unwrap();
            let status = r.status().as_u16();
            let cache = r
                .headers()
                .get("x-cache")
                .map(|v| v.to_str().unwrap().to_owned());
            (
                status,
                cache,
                within(r.bytes()).await.ok().map(|b| b.to_vec()),
            )
        }
    };
    let hits = |name: &str| {
        up.hits(&format!(
            "/v3-flatcontainer/{name}/1.0.0/{name}.1.0.0.nupkg"
        ))
    };

    // A whole zip is served, verified and kept.
    assert_eq!(fetch("whole").await.2.as_deref(), Some(whole.as_slice()));
    let (s, cache, body) = fetch("whole").await;
    assert_eq!((s, cache.as_deref()), (200, Some("HIT")));
    assert_eq!(body.as_deref(), Some(whole.as_slice()));
    assert_eq!(hits("whole"), 1);

    // A cut one never arrives as a complete body, and is never kept; nor is
    // a body above the cap.
    for name in ["cut", "huge"] {
        for _ in 0..2 {
            let (s, _, body) = fetch(name).await;
            assert!(s != 200 || body.is_none(), "{name}: served as complete");
        }
        assert_eq!(hits(name), 2, "{name} was cached");
    }

    // A manifest cannot be verified: passed through, fetched each time.
    let url = proxy.url("/v3/flatcontainer/whole/1.0.0/whole.nuspec");
    for _ in 0..2 {
        let (s, _, b) = get(&url).await;
        assert_eq!((s, b.as_slice()), (200, &b"<package/>"[..]));
    }
    assert_eq!(up.hits("/v3-flatcontainer/whole/1.0.0/whole.nuspec"), 2);
}
