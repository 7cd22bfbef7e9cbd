//! Property tests: the router, the query parser and the version and ID
//! normalizers never panic on arbitrary input, and normalization is stable.

use feedcache::keys::{normalize_id, normalize_version};
use feedcache::routes::route;
use proptest::prelude::*;

/// Path segments built from characters that matter to the router.
fn segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-zA-Z0-9.%+~_/\\\\-]{0,24}", 0..10)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn router_never_panics_on_anything(path in "\\PC{0,400}", q in prop::option::of("\\PC{0,300}")) {
        let _ = route(&http::Method::GET, &format!("/{path}"), q.as_deref());
        let _ = route(&http::Method::HEAD, &path, q.as_deref());
    }

    #[test]
    fn router_never_panics_on_plausible_paths(
        prefix in prop::sample::select(vec![
            "/v3/flatcontainer", "/v3/registration/x", "/nuget/f/v3/flatcontainer",
            "/api/packages/f/download", "/upack/f/download", "/upack/f/download-file", "/v3/raw/0",
        ]),
        segs in segments(),
        q in prop::option::of("[a-zA-Z0-9=&%+.:/@-]{0,80}"),
    ) {
        let path = format!("{prefix}/{}", segs.join("/"));
        let _ = route(&http::Method::GET, &path, q.as_deref());
    }

    #[test]
    fn version_normalization_is_total_and_idempotent(v in "\\PC{0,40}|[0-9.]{1,20}(-[a-zA-Z0-9.]{0,10})?(\\+[a-z0-9]{0,5})?") {
        if let Ok(n) = normalize_version(&v) {
            prop_assert_eq!(normalize_version(&n).ok(), Some(n.clone()));
        }
    }

    #[test]
    fn id_normalization_is_total_and_idempotent(id in "\\PC{0,120}") {
        if let Ok(n) = normalize_id(&id) {
            prop_assert_eq!(normalize_id(&n).ok(), Some(n.clone()));
        }
    }
}
