//! A NuGet V3 feed's service index: which upstream resources exist, the names
//! feedcache gives them, and the rewritten index clients see.

use bytes::Bytes;
use serde_json::Value;
use url::Url;

use std::collections::HashSet;
use std::sync::Arc;

use crate::keys::FeedRef;
use crate::rawlink::RawSigner;
use crate::rewrite::{Rewriter, MARKER};

/// What feedcache knows about one upstream feed, derived from its service index.
#[derive(Debug, Clone)]
pub struct FeedIndex {
    /// `PackageBaseAddress/3.0.0`, ending in `/`.
    pub flat: Option<Url>,
    /// Registration hives by tag, each base ending in `/`.
    pub registrations: Vec<(String, Url)>,
    /// `SearchQueryService` endpoints by tag.
    pub searches: Vec<(String, Url)>,
    /// `SearchAutocompleteService` endpoints by tag.
    pub autocompletes: Vec<(String, Url)>,
    /// Origins (`scheme://host[:port]`) of the upstream, for `raw/{n}/...`.
    pub origins: Vec<String>,
    /// Maps any upstream URL in a document to feedcache (shared by every
    /// request that rewrites a document of this feed).
    pub rewriter: Arc<Rewriter>,
    /// The service index as clients get it, with `MARKER` as the origin.
    pub template: Bytes,
    /// The same for clients reaching feedcache over plain HTTP: without
    /// `RepositorySignatures`, whose URL NuGet clients before 6.x require
    /// to be HTTPS (NuGet.exe 5.8 fails every install with "Repository
    /// Signatures resource must be served over HTTPS" otherwise).
    pub template_plain: Bytes,
}

/// Largest service index accepted: nuget.org's is ~10 KB, ProGet's less.
/// The index is parsed into a tree, so its size bounds that memory.
pub const MAX_INDEX_SIZE: usize = 1024 * 1024;

/// Most resources one index may list (nuget.org lists ~30). Each distinct
/// host among them becomes a rewrite rule applied to later documents.
pub const MAX_RESOURCES: usize = 1000;

/// Resource types feedcache serves; every other resource is dropped from the
/// index so that no client is sent to the upstream directly.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Flat,
    Registration,
    Search,
    Autocomplete,
    /// JSON documents served as metadata through signed `raw/` links, with
    /// the URLs in them rewritten (vulnerability data for NuGet audit,
    /// repository signatures).
    Document,
    /// `ReadmeUriTemplate`: kept when it points into the flat container,
    /// whose `readme` route feedcache serves.
    Readme,
    /// Links for a browser (package details, owners, abuse reports): kept
    /// exactly as the upstream gives them; clients never fetch them.
    Browser,
}

fn kind_of(t: &str) -> Option<Kind> {
    if t.starts_with("PackageBaseAddress/") {
        Some(Kind::Flat)
    } else if t.starts_with("RegistrationsBaseUrl") {
        Some(Kind::Registration)
    } else if t.starts_with("SearchQueryService") {
        Some(Kind::Search)
    } else if t.starts_with("SearchAutocompleteService") {
        Some(Kind::Autocomplete)
    } else if t.starts_with("VulnerabilityInfo/") || t.starts_with("RepositorySignatures/") {
        Some(Kind::Document)
    } else if t.starts_with("ReadmeUriTemplate/") {
        Some(Kind::Readme)
    } else if [
        "PackageDetailsUriTemplate/",
        "OwnerDetailsUriTemplate/",
        "ReportAbuseUriTemplate/",
    ]
    .iter()
    .any(|p| t.starts_with(p))
    {
        Some(Kind::Browser)
    } else {
        None
    }
}

impl FeedIndex {
    /// Parses an upstream service index fetched from `index_url`; `raw/`
    /// links in documents of this feed are signed with `signer`.
    pub fn build(
        feed: &FeedRef,
        index_url: &Url,
        body: &[u8],
        signer: &Arc<RawSigner>,
    ) -> Result<FeedIndex, String> {
        if body.len() > MAX_INDEX_SIZE {
            return Err(format!(
                "service index larger than {} KiB",
                MAX_INDEX_SIZE / 1024
            ));
        }
        let mut doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("service index is not JSON: {e}"))?;
        let resources = match doc.get_mut("resources").map(Value::take) {
            Some(Value::Array(list)) => list,
            _ => return Err("service index has no resources array".into()),
        };
        if resources.len() > MAX_RESOURCES {
            return Err(format!(
                "service index lists {} resources (at most {MAX_RESOURCES})",
                resources.len()
            ));
        }

        let prefix = format!("{MARKER}{}", feed.public_prefix());
        let mut idx = FeedIndex {
            flat: None,
            registrations: Vec::new(),
            searches: Vec::new(),
            autocompletes: Vec::new(),
            origins: vec![origin_of(index_url)],
            rewriter: Arc::default(),
            template: Bytes::new(),
            template_plain: Bytes::new(),
        };
        let mut rules = Vec::new();
        let mut kept = Vec::new();
        // Resources whose public URL comes from the finished rewriter.
        let mut later = Vec::new();
        for r in resources {
            let (Some(id), Some(t)) = (
                r.get("@id").and_then(Value::as_str),
                r.get("@type").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Ok(url) = Url::parse(id) else { continue };
            if !matches!(url.scheme(), "http" | "https") {
                continue;
            }
            let origin = origin_of(&url);
            if !idx.origins.contains(&origin) {
                idx.origins.push(origin);
            }
            let Some(kind) = kind_of(t) else { continue };
            if matches!(kind, Kind::Document | Kind::Readme | Kind::Browser) {
                let id = id.to_owned();
                later.push((kind, id, r));
                continue;
            }
            let public = match kind {
                Kind::Flat => {
                    let base = with_slash(url);
                    if idx.flat.is_none() {
                        rules.push((base.to_string(), format!("{prefix}/flatcontainer/")));
                        idx.flat = Some(base);
                    }
                    format!("{prefix}/flatcontainer/")
                }
                Kind::Registration => {
                    let base = with_slash(url);
                    let tag = tag_for(&idx.registrations, &base, "registration");
                    let public = format!("{prefix}/registration/{tag}/");
                    if !idx.registrations.iter().any(|(t, _)| *t == tag) {
                        rules.push((base.to_string(), public.clone()));
                        idx.registrations.push((tag, base));
                    }
                    public
                }
                Kind::Search | Kind::Autocomplete => {
                    let (list, what) = if kind == Kind::Search {
                        (&mut idx.searches, "search")
                    } else {
                        (&mut idx.autocompletes, "autocomplete")
                    };
                    let tag = tag_for(list, &url, "query");
                    let public = format!("{prefix}/{what}/{tag}");
                    if !list.iter().any(|(t, _)| *t == tag) {
                        rules.push((url.to_string(), public.clone()));
                        list.push((tag, url));
                    }
                    public
                }
                Kind::Document | Kind::Readme | Kind::Browser => continue,
            };
            let mut r = r;
            if let Some(obj) = r.as_object_mut() {
                obj.insert("@id".into(), Value::String(public));
            }
            kept.push(r);
        }
        // Any other URL on the upstream's own hosts goes through `raw/`,
        // as a signed link (see `rawlink`).
        let raw = (idx.origins.iter().enumerate())
            .map(|(i, o)| (format!("{o}/"), format!("{prefix}/raw/{i}/"), i))
            .collect();
        idx.rewriter =
            Arc::new(Rewriter::new(rules).with_raw(signer.clone(), feed.key_prefix(), raw));

        let mut browser = Vec::new();
        for (kind, id, mut r) in later {
            let public = match (kind, idx.rewriter.map(&id)) {
                (Kind::Browser, _) => {
                    browser.push(r);
                    continue;
                }
                (Kind::Document, Some(p)) => p,
                // A template through `raw/` could not work: the tag signs
                // the path with its placeholders, not the one a client asks.
                (Kind::Readme, Some(p)) if p.starts_with(&format!("{prefix}/flatcontainer/")) => p,
                _ => continue,
            };
            if let Some(obj) = r.as_object_mut() {
                obj.insert("@id".into(), Value::String(public));
            }
            kept.push(r);
        }

        if let Some(obj) = doc.as_object_mut() {
            obj.insert("resources".into(), Value::Array(kept));
            // Everything else in the index (context, version) goes through the
            // rewriter too, so no upstream URL survives anywhere in it...
            let mut rest = Value::Object(std::mem::take(obj));
            idx.rewriter.rewrite_value(&mut rest);
            if let Value::Object(m) = rest {
                *obj = m;
            }
            // ...but links for a browser, which are kept as they are.
            if let Some(Value::Array(list)) = obj.get_mut("resources") {
                list.extend(browser);
            }
        } else {
            return Err("service index is not an object".into());
        }
        idx.template = Bytes::from(serde_json::to_vec(&doc).map_err(|e| e.to_string())?);
        if let Some(Value::Array(list)) = doc.get_mut("resources") {
            list.retain(|r| {
                !r.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("RepositorySignatures/"))
            });
        }
        idx.template_plain = Bytes::from(serde_json::to_vec(&doc).map_err(|e| e.to_string())?);
        Ok(idx)
    }

    /// The registration hive with this tag.
    pub fn registration(&self, tag: &str) -> Option<&Url> {
        find(&self.registrations, tag)
    }

    /// The search endpoint with this tag.
    pub fn search(&self, tag: &str) -> Option<&Url> {
        find(&self.searches, tag)
    }

    /// The autocomplete endpoint with this tag.
    pub fn autocomplete(&self, tag: &str) -> Option<&Url> {
        find(&self.autocompletes, tag)
    }
}

fn find<'a>(list: &'a [(String, Url)], tag: &str) -> Option<&'a Url> {
    list.iter().find(|(t, _)| t == tag).map(|(_, u)| u)
}

fn with_slash(mut u: Url) -> Url {
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    u
}

/// `scheme://host[:port]` without trailing slash.
pub fn origin_of(u: &Url) -> String {
    u.origin().ascii_serialization()
}

/// A stable, readable tag: the URL's last path segment (`registration5-gz-semver2`,
/// `query`), sanitized, made unique within `taken` unless the URL is the same.
fn tag_for(taken: &[(String, Url)], url: &Url, fallback: &str) -> String {
    if let Some((t, _)) = taken.iter().find(|(_, u)| u == url) {
        return t.clone();
    }
    let last = url
        .path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
        .unwrap_or("");
    let mut base: String = last
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(48)
        .collect();
    if base.is_empty() || base.starts_with('.') {
        base = fallback.into();
    }
    // A set, so a hostile index of many same-named resources costs a hash
    // lookup per candidate, not a scan of every tag taken.
    let used: HashSet<&str> = taken.iter().map(|(t, _)| t.as_str()).collect();
    let mut tag = base.clone();
    let mut n = 2;
    while used.contains(tag.as_str()) {
        tag = format!("{base}-{n}");
        n += 1;
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUGET_ORG: &str = r#"{"version":"3.0.0","resources":[
      {"@id":"https://azuresearch-usnc.nuget.org/query","@type":"SearchQueryService","comment":"primary"},
      {"@id":"https://azuresearch-ussc.nuget.org/query","@type":"SearchQueryService","comment":"secondary"},
      {"@id":"https://azuresearch-usnc.nuget.org/autocomplete","@type":"SearchAutocompleteService"},
      {"@id":"https://api.nuget.org/v3/registration5-semver1/","@type":"RegistrationsBaseUrl"},
      {"@id":"https://api.nuget.org/v3/registration5-semver1/","@type":"RegistrationsBaseUrl/3.0.0-rc"},
      {"@id":"https://api.nuget.org/v3/registration5-gz-semver1/","@type":"RegistrationsBaseUrl/3.4.0"},
      {"@id":"https://api.nuget.org/v3/registration5-gz-semver2/","@type":"RegistrationsBaseUrl/3.6.0"},
      {"@id":"https://api.nuget.org/v3-flatcontainer/","@type":"PackageBaseAddress/3.0.0"},
      {"@id":"https://www.nuget.org/api/v2/package","@type":"PackagePublish/2.0.0"},
      {"@id":"https://api.nuget.org/v3/catalog0/index.json","@type":"Catalog/3.0.0"},
      {"@id":"https://www.nuget.org/packages/{id}/{version}/ReportAbuse","@type":"ReportAbuseUriTemplate/3.0.0"},
      {"@id":"https://www.nuget.org/packages/{id}/{version}?_src=template","@type":"PackageDetailsUriTemplate/5.1.0"},
      {"@id":"https://api.nuget.org/v3/vulnerabilities/index.json","@type":"VulnerabilityInfo/6.7.0"},
      {"@id":"https://api.nuget.org/v3-index/repository-signatures/5.0.0/index.json","@type":"RepositorySignatures/5.0.0"},
      {"@id":"https://api.nuget.org/v3-flatcontainer/{lower_id}/{lower_version}/readme","@type":"ReadmeUriTemplate/6.13.0"},
      {"@id":"https://elsewhere.example/{lower_id}/readme","@type":"ReadmeUriTemplate/6.13.0"}
    ],"@context":{"@vocab":"http://schema.nuget.org/services#"}}"#;

    fn signer() -> Arc<RawSigner> {
        Arc::new(RawSigner::with_key(&[3; 32]).unwrap())
    }

    fn build() -> FeedIndex {
        let url = Url::parse("https://api.nuget.org/v3/index.json").unwrap();
        FeedIndex::build(&FeedRef::Default, &url, NUGET_ORG.as_bytes(), &signer()).unwrap()
    }

    #[test]
    fn resources_are_named_and_mapped() {
        let idx = build();
        assert_eq!(
            idx.flat.as_ref().unwrap().as_str(),
            "https://api.nuget.org/v3-flatcontainer/"
        );
        let tags: Vec<&str> = idx.registrations.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            tags,
            [
                "registration5-semver1",
                "registration5-gz-semver1",
                "registration5-gz-semver2"
            ]
        );
        let s: Vec<&str> = idx.searches.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(s, ["query", "query-2"]);
        assert_eq!(
            idx.autocomplete("autocomplete").unwrap().host_str(),
            Some("azuresearch-usnc.nuget.org")
        );
    }

    #[test]
    fn template_leaks_nothing_and_drops_unserved() {
        let idx = build();
        let t = String::from_utf8(idx.template.to_vec()).unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        let resources = v["resources"].as_array().unwrap();
        let id_of = |ty: &str| -> Vec<String> {
            resources
                .iter()
                .filter(|r| r["@type"].as_str().is_some_and(|t| t.starts_with(ty)))
                .map(|r| r["@id"].as_str().unwrap().to_owned())
                .collect()
        };
        // Links for a browser stay exactly as the upstream gave them.
        assert_eq!(
            id_of("PackageDetailsUriTemplate"),
            ["https://www.nuget.org/packages/{id}/{version}?_src=template"]
        );
        assert_eq!(
            id_of("ReportAbuseUriTemplate"),
            ["https://www.nuget.org/packages/{id}/{version}/ReportAbuse"]
        );
        // Nothing a client fetches points at an upstream host.
        let fetched: Vec<&Value> = resources
            .iter()
            .filter(|r| !r["@type"].as_str().unwrap().contains("DetailsUriTemplate"))
            .filter(|r| !r["@type"].as_str().unwrap().starts_with("ReportAbuse"))
            .collect();
        let text = serde_json::to_string(&fetched).unwrap();
        for host in ["api.nuget.org", "azuresearch", "www.nuget.org", "elsewhere"] {
            assert!(!text.contains(host), "{host} in {text}");
        }
        assert!(!t.contains("PackagePublish"), "{t}");
        assert!(!t.contains("Catalog/3.0.0"), "{t}");
        assert!(t.contains(&format!(
            "{MARKER}/v3/registration/registration5-gz-semver2/"
        )));
        assert!(t.contains(&format!("{MARKER}/v3/search/query-2")));
        // Audit data and signatures through signed raw/ links; the README
        // template (placeholders intact) into the flat container only.
        let tag = signer().sign("nuget", 0, "v3/vulnerabilities/index.json", None);
        assert_eq!(
            id_of("VulnerabilityInfo"),
            [format!(
                "{MARKER}/v3/raw/0/{tag}/v3/vulnerabilities/index.json"
            )]
        );
        assert_eq!(id_of("RepositorySignatures").len(), 1);
        assert_eq!(
            id_of("ReadmeUriTemplate"),
            [format!(
                "{MARKER}/v3/flatcontainer/{{lower_id}}/{{lower_version}}/readme"
            )]
        );
        assert_eq!(resources.len(), 13);
        // The plain-HTTP variant is the same index without the signatures.
        let plain: Value = serde_json::from_slice(&idx.template_plain).unwrap();
        let plain = plain["resources"].as_array().unwrap();
        let mut want = resources.clone();
        want.retain(|r| r["@type"] != "RepositorySignatures/5.0.0");
        assert_eq!((plain, want.len()), (&want, 12));
    }

    #[test]
    fn unknown_urls_on_upstream_hosts_go_through_raw() {
        let idx = build();
        let m = idx
            .rewriter
            .map("https://api.nuget.org/v3/catalog0/data/x.json")
            .unwrap();
        let tag = signer().sign("nuget", 0, "v3/catalog0/data/x.json", None);
        assert_eq!(
            m,
            format!("{MARKER}/v3/raw/0/{tag}/v3/catalog0/data/x.json")
        );
        let www = idx
            .origins
            .iter()
            .position(|o| o == "https://www.nuget.org")
            .unwrap();
        assert_eq!(
            idx.rewriter
                .map("https://www.nuget.org/packages/x")
                .unwrap(),
            format!(
                "{MARKER}/v3/raw/{www}/{}/packages/x",
                signer().sign("nuget", www, "packages/x", None)
            )
        );
    }

    #[test]
    fn proget_feed_prefix() {
        let url = Url::parse("http://proget.local/nuget/internal/v3/index.json").unwrap();
        let body = r#"{"version":"3.0.0","resources":[{"@id":"http://proget.local/nuget/internal/v3/flatcontainer/","@type":"PackageBaseAddress/3.0.0"}]}"#;
        let feed = FeedRef::ProGet("internal".into());
        let idx = FeedIndex::build(&feed, &url, body.as_bytes(), &signer()).unwrap();
        let t = String::from_utf8(idx.template.to_vec()).unwrap();
        assert!(
            t.contains(&format!("{MARKER}/nuget/internal/v3/flatcontainer/")),
            "{t}"
        );
    }

    #[test]
    fn rejects_garbage() {
        let url = Url::parse("https://x/v3/index.json").unwrap();
        for body in [&b"<html>"[..], b"{}"] {
            assert!(FeedIndex::build(&FeedRef::Default, &url, body, &signer()).is_err());
        }
    }
}
