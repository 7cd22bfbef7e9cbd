//! Client authentication: which key a request presents, and whether the
//! route lets it through. Off when no client keys are configured.

use std::borrow::Cow;

use base64::Engine;

use crate::error::AppError;
use crate::routes::AuthClass;
use crate::secret::Secret;

/// The configured client keys.
pub struct Auth {
    keys: Vec<Secret>,
    admin: Option<Secret>,
    /// The secret cluster nodes present to each other.
    cluster: Option<Secret>,
}

impl Auth {
    pub fn new(keys: Vec<Secret>) -> Self {
        Auth {
            keys,
            admin: None,
            cluster: None,
        }
    }

    /// With a cluster secret, the peers' route exists.
    pub fn with_cluster(mut self, secret: Option<Secret>) -> Self {
        self.cluster = secret;
        self
    }

    /// With an admin key, the admin API exists.
    pub fn with_admin(mut self, admin: Option<Secret>) -> Self {
        self.admin = admin;
        self
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Lets a request through, or says how to refuse it: 401 with a Basic
    /// challenge for NuGet clients (they only send stored credentials after
    /// one), 403 for ProGet's APIs, as ProGet itself answers. `headers` is
    /// asked for only when a key is to be checked: a request read in place
    /// has no header map to lend until one is built for it.
    pub fn check<'h>(
        &self,
        class: AuthClass,
        headers: impl FnOnce() -> Cow<'h, http::HeaderMap>,
        query_key: Option<&str>,
    ) -> Result<(), AppError> {
        if class == AuthClass::Admin {
            let Some(admin) = &self.admin else {
                return Err(AppError::NotFound);
            };
            let ok = presented(&headers(), query_key)
                .iter()
                .any(|p| admin.matches(p));
            return if ok { Ok(()) } else { Err(AppError::Forbidden) };
        }
        if class == AuthClass::Cluster {
            let Some(secret) = &self.cluster else {
                return Err(AppError::NotFound);
            };
            let headers = headers();
            let shown = headers
                .get(crate::upstream::CLUSTER_HEADER)
                .and_then(|v| v.to_str().ok());
            return match shown {
                Some(s) if secret.matches(s) => Ok(()),
                _ => Err(AppError::Forbidden),
            };
        }
        if !self.enabled() || class == AuthClass::Public {
            return Ok(());
        }
        let ok = presented(&headers(), query_key)
            .iter()
            .any(|p| self.keys.iter().any(|k| k.matches(p)));
        match (ok, class) {
            (true, _) | (_, AuthClass::Public) => Ok(()),
            (false, AuthClass::Challenge) => Err(AppError::Unauthorized),
            (false, AuthClass::Forbidden | AuthClass::Admin | AuthClass::Cluster) => {
                Err(AppError::Forbidden)
            }
        }
    }
}

/// Every key a request offers: `X-ApiKey`, `X-NuGet-ApiKey`, the password of
/// HTTP Basic (ProGet's user is `api`; any user name is accepted, since the
/// key alone is the secret), and `key=` in the query (`query_key`).
fn presented(headers: &http::HeaderMap, query_key: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["x-apikey", "x-nuget-apikey"] {
        for v in headers.get_all(name) {
            if let Ok(s) = v.to_str() {
                out.push(s.trim().to_owned());
            }
        }
    }
    for v in headers.get_all(http::header::AUTHORIZATION) {
        if let Some(pass) = v.to_str().ok().and_then(basic_password) {
            out.push(pass);
        }
    }
    if let Some(k) = query_key {
        out.push(k.to_owned());
    }
    out
}

fn basic_password(h: &str) -> Option<String> {
    let (scheme, b64) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.split_once(':').map(|(_, p)| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(Secret::list("good-key"))
    }

    /// `check` with a header map at hand.
    fn chk(a: &Auth, c: AuthClass, h: &http::HeaderMap, q: Option<&str>) -> Result<(), AppError> {
        a.check(c, || Cow::Borrowed(h), q)
    }

    fn h(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn every_way_to_present_a_key() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("api:good-key")
        );
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("api:bad")
        );
        let a = auth();
        let c = AuthClass::Forbidden;
        assert!(chk(&a, c, &h(&[("x-apikey", "good-key")]), None).is_ok());
        assert!(chk(&a, c, &h(&[("x-nuget-apikey", "good-key")]), None).is_ok());
        assert!(chk(&a, c, &h(&[("authorization", &basic)]), None).is_ok());
        // The query's credential, as `Query::credential` found it.
        assert!(chk(&a, c, &h(&[]), Some("good-key")).is_ok());
        let refused = [
            (h(&[]), None),
            (h(&[("x-apikey", "bad")]), None),
            (h(&[("authorization", &wrong)]), None),
            (h(&[("authorization", "Bearer good-key")]), None),
            (h(&[]), Some("bad")),
        ];
        for (headers, q) in refused {
            assert!(matches!(chk(&a, c, &headers, q), Err(AppError::Forbidden)));
            assert!(matches!(
                chk(&a, AuthClass::Challenge, &headers, q),
                Err(AppError::Unauthorized)
            ));
            assert!(chk(&a, AuthClass::Public, &headers, q).is_ok());
        }
        assert!(chk(&Auth::new(vec![]), c, &h(&[]), None).is_ok());
    }
}
