//! The URL layout, pinned by tables: every route, every refusal.

use super::*;

/// The route alone (the query is tested in `query.rs`).
fn route(m: &Method, path: &str, q: Option<&str>) -> Result<Route, RouteError> {
    super::route(m, path, q).map(|(r, _)| r)
}
use http::Method;

fn v3(res: V3Route) -> Result<Route, RouteError> {
    Ok(Route::V3 {
        feed: FeedRef::Default,
        res,
    })
}

fn nupkg(id: &str, v: &str) -> Result<Route, RouteError> {
    v3(V3Route::FlatFile {
        id: id.into(),
        version: v.into(),
        file: FlatFile::Nupkg,
    })
}

#[test]
fn routes_table() {
    let nf = Err(RouteError::NotFound);
    let table: Vec<(&str, Option<&str>, Result<Route, RouteError>)> = vec![
        ("/health", None, Ok(Route::Health)),
        (
            "/feeds/Company/v3/flatcontainer/Contoso.Lib/index.json",
            None,
            Ok(Route::V3 {
                feed: FeedRef::Virtual("company".into()),
                res: V3Route::FlatIndex {
                    id: "contoso.lib".into(),
                },
            }),
        ),
        (
            "/feeds/a b/v3/index.json",
            None,
            Err(bad("invalid feed name")),
        ),
        (
            "/_cluster/fill",
            Some("entry=nuget/flat/x/1.0.0/x.1.0.0.nupkg&url=https%3A%2F%2Fapi.nuget.org%2Fx"),
            Ok(Route::ClusterFill {
                key: "nuget/flat/x/1.0.0/x.1.0.0.nupkg".into(),
                url: url::Url::parse("https://api.nuget.org/x").unwrap(),
            }),
        ),
        (
            "/_cluster/fill",
            Some("entry=k&url=file%3A%2F%2F%2Fetc"),
            Err(bad("an http(s) url is required")),
        ),
        (
            "/_cluster/fill",
            Some("url=http%3A%2F%2Fx%2F"),
            Err(bad("entry required")),
        ),
        ("/v3/index.json", None, v3(V3Route::ServiceIndex)),
        ("/v3/index.json/", None, v3(V3Route::ServiceIndex)),
        (
            "/v3/flatcontainer/Newtonsoft.Json/index.json",
            None,
            v3(V3Route::FlatIndex {
                id: "newtonsoft.json".into(),
            }),
        ),
        (
            "/v3/flatcontainer/newtonsoft.json/13.0.1/newtonsoft.json.13.0.1.nupkg",
            None,
            nupkg("newtonsoft.json", "13.0.1"),
        ),
        (
            "/v3/flatcontainer/Newtonsoft.Json/13.0.1/Newtonsoft.Json.13.0.1.nupkg",
            None,
            nupkg("newtonsoft.json", "13.0.1"),
        ),
        (
            "/v3/flatcontainer/foo/1.0/foo.1.0.nupkg",
            None,
            nupkg("foo", "1.0.0"),
        ),
        (
            "/v3/flatcontainer/foo/1.0/foo.1.0.0.0.nupkg",
            None,
            nupkg("foo", "1.0.0"),
        ),
        (
            "/v3/flatcontainer/foo/1.0.0-Beta/FOO.1.0.0-BETA.nupkg",
            None,
            nupkg("foo", "1.0.0-beta"),
        ),
        (
            "/v3/flatcontainer/foo/1.0.0%2Bmeta/foo.1.0.0.nupkg",
            None,
            nupkg("foo", "1.0.0"),
        ),
        (
            "/v3/flatcontainer/foo/1.0.0/bar.1.0.0.nupkg",
            None,
            nf.clone(),
        ),
        (
            "/v3/flatcontainer/foo/1.0.0/foo.2.0.0.nupkg",
            None,
            nf.clone(),
        ),
        (
            "/v3/flatcontainer/Foo/1.0/foo.nuspec",
            None,
            v3(V3Route::FlatFile {
                id: "foo".into(),
                version: "1.0.0".into(),
                file: FlatFile::Nuspec,
            }),
        ),
        (
            "/v3/flatcontainer/foo/1.0.0/icon",
            None,
            v3(V3Route::FlatFile {
                id: "foo".into(),
                version: "1.0.0".into(),
                file: FlatFile::Icon,
            }),
        ),
        ("/v3/flatcontainer/foo/1.0.0/other.txt", None, nf.clone()),
        (
            "/v3/flatcontainer/foo/not-a-version/foo.nuspec",
            None,
            Err(bad("version part is not a number")),
        ),
        (
            "/v3/flatcontainer/..%2Fetc/index.json",
            None,
            Err(bad("invalid path segment")),
        ),
        (
            "/v3/flatcontainer/../index.json",
            None,
            Err(bad("package id has invalid characters")),
        ),
        (
            "/v3/flatcontainer/a%FFb/index.json",
            None,
            Err(bad("path is not valid UTF-8")),
        ),
        (
            "/v3/registration/semver2/Foo/index.json",
            None,
            v3(V3Route::Registration {
                tag: "semver2".into(),
                id: "foo".into(),
                rest: "index.json".into(),
            }),
        ),
        (
            "/v3/registration/semver2/foo/page/1.0.0/2.0.0.json",
            None,
            v3(V3Route::Registration {
                tag: "semver2".into(),
                id: "foo".into(),
                rest: "page/1.0.0/2.0.0.json".into(),
            }),
        ),
        (
            "/v3/registration/semver2/foo/../x",
            None,
            Err(bad("invalid path segment")),
        ),
        ("/v3/registration/semver2/foo", None, nf.clone()),
        (
            "/v3/search/query",
            Some("q=json&take=5"),
            v3(V3Route::Search {
                tag: "query".into(),
            }),
        ),
        (
            "/v3/autocomplete/autocomplete",
            None,
            v3(V3Route::Autocomplete {
                tag: "autocomplete".into(),
            }),
        ),
        ("/v3/search/UPPER", None, nf.clone()),
        (
            "/v3/raw/0/0123abcd/v3/catalog0/index.json",
            None,
            v3(V3Route::Raw {
                origin: 0,
                tag: "0123abcd".into(),
                path: "v3/catalog0/index.json".into(),
            }),
        ),
        ("/v3/raw/x/y/z", None, nf.clone()),
        ("/v3/raw/0/y", None, nf.clone()),
        ("/v3/raw/0/T@G/z", None, nf.clone()),
        (
            "/nuget/Internal/v3/index.json",
            None,
            Ok(Route::V3 {
                feed: FeedRef::ProGet("internal".into()),
                res: V3Route::ServiceIndex,
            }),
        ),
        (
            "/nuget/.x/v3/index.json",
            None,
            Err(bad("invalid feed name")),
        ),
        ("/", None, nf.clone()),
        ("/v3", None, nf.clone()),
        ("//v3/index.json", None, nf.clone()),
        ("/v3//index.json", None, nf.clone()),
        ("v3/index.json", None, Err(bad("path must start with /"))),
        (
            "/v3/search/query",
            Some("q=a b"),
            Err(bad("malformed query string")),
        ),
    ];
    for (path, query, want) in table {
        assert_eq!(route(&Method::GET, path, query), want, "{path} {query:?}");
    }
}

#[test]
fn methods_and_limits() {
    assert_eq!(
        route(&Method::HEAD, "/v3/index.json", None),
        v3(V3Route::ServiceIndex)
    );
    // (method, path, the methods the 405 names)
    for (method, path, allow) in [
        (Method::POST, "/v3/index.json", "GET, HEAD"),
        (Method::PUT, "/admin/offline", "GET, HEAD, POST"),
        (Method::GET, "/admin/purge", "POST, DELETE"),
    ] {
        assert_eq!(
            route(&method, path, None),
            Err(RouteError::MethodNotAllowed(allow)),
            "{method} {path}"
        );
    }
    assert_eq!(
        route(&Method::DELETE, "/nope", None),
        Err(RouteError::NotFound)
    );
    let long = format!("/v3/flatcontainer/{}/index.json", "a".repeat(MAX_URL_LEN));
    assert_eq!(route(&Method::GET, &long, None), Err(RouteError::TooLong));
    let long_id = format!("/v3/flatcontainer/{}/index.json", "a".repeat(101));
    assert!(matches!(
        route(&Method::GET, &long_id, None),
        Err(RouteError::BadRequest(_))
    ));
}

#[test]
fn segments_decode_or_are_refused() {
    let bad_seg = |m: &str| Err(RouteError::BadRequest(m.into()));
    let table: Vec<(&str, Result<Vec<&str>, RouteError>)> = vec![
        ("/a/b.c-d_e~f", Ok(vec!["a", "b.c-d_e~f"])),
        ("/a/", Ok(vec!["a"])),
        ("/", Ok(vec![])),
        ("/A%2Bb/%41", Ok(vec!["A+b", "A"])),
        ("/caf%C3%A9", Ok(vec!["café"])),
        ("/café", Ok(vec!["café"])),
        ("/a b", Ok(vec!["a b"])),
        ("/a//b", Err(RouteError::NotFound)),
        ("/a%2Fb", bad_seg("invalid path segment")),
        ("/a%5Cb", bad_seg("invalid path segment")),
        ("/a\\b", bad_seg("invalid path segment")),
        ("/a%00b", bad_seg("invalid path segment")),
        ("/a\tb", bad_seg("invalid path segment")),
        ("/a%C2%85b", bad_seg("invalid path segment")),
        ("/a%FFb", bad_seg("path is not valid UTF-8")),
        ("a", bad_seg("path must start with /")),
    ];
    for (path, want) in table {
        let got =
            decode_segments(path).map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let want = want.map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, want, "{path}");
    }
}
