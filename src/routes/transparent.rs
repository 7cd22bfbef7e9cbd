//! Transparent mode: requests addressed to nuget.org's own host name (DNS
//! pointed at feedcache) use nuget.org's URL layout, which is mapped onto
//! feedcache's `/v3/` layout here before routing.

use std::borrow::Cow;

/// The path in feedcache's layout for a path in nuget.org's layout:
/// `/v3-flatcontainer/...` → `/v3/flatcontainer/...`,
/// `/v3/registration5-gz-semver2/...` → `/v3/registration/registration5-gz-semver2/...`.
/// Paths already in feedcache's layout (and `/v3/index.json`) pass unchanged.
pub fn map_path(path: &str) -> Cow<'_, str> {
    if let Some(rest) = path.strip_prefix("/v3-flatcontainer/") {
        return Cow::Owned(format!("/v3/flatcontainer/{rest}"));
    }
    if let Some(rest) = path.strip_prefix("/v3/") {
        if rest.starts_with("registration") && !rest.starts_with("registration/") {
            return Cow::Owned(format!("/v3/registration/{rest}"));
        }
    }
    Cow::Borrowed(path)
}

/// Whether `host` (a Host header or :authority, maybe with a port) is one of
/// the configured transparent host names.
pub fn is_transparent(host: Option<&str>, names: &[String]) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nuget_org_layout_table() {
        let table = [
            ("/v3/index.json", "/v3/index.json"),
            (
                "/v3-flatcontainer/newtonsoft.json/13.0.1/newtonsoft.json.13.0.1.nupkg",
                "/v3/flatcontainer/newtonsoft.json/13.0.1/newtonsoft.json.13.0.1.nupkg",
            ),
            (
                "/v3-flatcontainer/foo/index.json",
                "/v3/flatcontainer/foo/index.json",
            ),
            (
                "/v3/registration5-gz-semver2/foo/index.json",
                "/v3/registration/registration5-gz-semver2/foo/index.json",
            ),
            (
                "/v3/registration/registration5-semver1/foo/index.json",
                "/v3/registration/registration5-semver1/foo/index.json",
            ),
            (
                "/v3/flatcontainer/foo/index.json",
                "/v3/flatcontainer/foo/index.json",
            ),
            ("/health", "/health"),
        ];
        for (input, want) in table {
            assert_eq!(map_path(input), want, "{input}");
        }
    }

    #[test]
    fn host_matching() {
        let names = vec!["api.nuget.org".to_string()];
        assert!(is_transparent(Some("api.nuget.org"), &names));
        assert!(is_transparent(Some("API.NuGet.org:443"), &names));
        assert!(!is_transparent(Some("api.nuget.org.evil"), &names));
        assert!(!is_transparent(Some("feedcache:5000"), &names));
        assert!(!is_transparent(None, &names));
        assert!(!is_transparent(Some("api.nuget.org"), &[]));
    }
}
