//! Virtual feeds (`[[feeds]]`): one NuGet feed at `/feeds/{name}/v3/` over
//! an ordered list of upstream feeds. Each member is asked through its own
//! routes (so it keeps its caching, revalidation, stale and breaker rules)
//! and only about IDs its rules allow; the answers are merged here
//! (`merge.rs`). A member that fails is left out and named in
//! `X-Feedcache-Missing`; the feed fails only when no member answers.
//!
//! Layout under the feed's prefix: `flatcontainer/` (version lists merged;
//! a package version from the first member that lists it, cached under the
//! virtual feed's own key), `registration/merged/{id}/index.json` (the
//! members' pages side by side) with each member's pages at
//! `registration/m{n}-{tag}/`, and `search/merged`. Member documents are
//! rewritten so every link stays under the virtual feed's prefix.

mod merge;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use memchr::memmem;

use crate::app::{generated, App, Body, Reply};
use crate::config::{Member, VirtualFeed};
use crate::error::AppError;
use crate::keys::{CacheKey, FeedRef, FlatFile, IdRules};
use crate::rewrite::MARKER;
use crate::routes::V3Route;

/// Tag of the merged registration hive and search endpoint.
const MERGED: &str = "merged";

/// What one member said.
enum Answer {
    /// A document, and whether it came from the cache.
    Doc(Bytes, bool),
    /// The member does not have it (404).
    Absent,
    /// The member failed (down, slow, refused).
    Failed(AppError),
}

impl App {
    /// Answers a V3 route of the virtual feed `name`, served at
    /// `/feeds/{name}/v3/`, or at `/v3/` (`root`) when it is `default_feed`.
    pub(crate) async fn group_v3(
        &self,
        name: &str,
        res: &V3Route,
        query: Option<&str>,
        root: bool,
    ) -> Result<Reply, AppError> {
        let feed = (self.config.feeds.iter())
            .find(|f| f.name == name)
            .ok_or(AppError::NotFound)?;
        // Keys are the virtual feed's wherever it is served; links follow
        // the prefix the client came by.
        let me = FeedRef::Virtual(name.to_owned());
        let prefix = if root {
            FeedRef::Default.public_prefix()
        } else {
            me.public_prefix()
        };
        let prefix = prefix.as_str();
        match res {
            V3Route::ServiceIndex => Ok(service_index(prefix)),
            V3Route::FlatIndex { id } => {
                let route = V3Route::FlatIndex { id: id.clone() };
                let answers = self.ask(feed, id, &route, None).await;
                let (docs, cache, missing) = gather(feed, answers)?;
                let docs: Vec<Vec<u8>> = docs.into_iter().map(|(_, d)| d.to_vec()).collect();
                let body = merged(docs, |d| merge::versions(&d)).await?;
                Ok(reply(body, "application/json", false, cache, missing))
            }
            V3Route::FlatFile { id, version, file } => {
                self.group_file(feed, &me, id, version, *file).await
            }
            V3Route::Registration { tag, id, rest } if tag == MERGED => {
                if rest != "index.json" {
                    return Err(AppError::NotFound);
                }
                let mut docs = Vec::new();
                let mut failed = Vec::new();
                for (n, m) in allowed(feed, id) {
                    match self.member_hive(m).await {
                        Ok(Some(hive)) => docs.push((n, hive)),
                        Ok(None) => {}
                        Err(e) => failed.push((n, e)),
                    }
                }
                let asks = docs.iter().map(|(n, hive)| {
                    let route = V3Route::Registration {
                        tag: hive.clone(),
                        id: id.clone(),
                        rest: rest.clone(),
                    };
                    self.ask_one(*n, &feed.upstreams[*n], route, None)
                });
                let mut answers = join_all(asks).await;
                answers.extend(failed.into_iter().map(|(n, e)| (n, Answer::Failed(e))));
                answers.sort_by_key(|(n, _)| *n);
                let (docs, cache, missing) = gather(feed, answers)?;
                let docs: Vec<Vec<u8>> = (docs.iter())
                    .map(|(n, d)| relink(d, &feed.upstreams[*n].feed, *n, prefix))
                    .collect();
                let body = merged(docs, |d| merge::registration(&d)).await?;
                Ok(reply(body, "application/json", true, cache, missing))
            }
            V3Route::Registration { tag, id, rest } => {
                // A member's own page, under `m{n}-{tag}`.
                let (n, m, hive) = member_tag(feed, tag).ok_or(AppError::NotFound)?;
                if !m.rules.allows(id) {
                    return Err(AppError::NotFound);
                }
                let route = V3Route::Registration {
                    tag: hive.to_owned(),
                    id: id.clone(),
                    rest: rest.clone(),
                };
                let r = self.v3_member(&m.feed, &route, None).await?;
                let cache = r.cache;
                let body = relink(&body_of(r)?, &m.feed, n, prefix);
                Ok(reply(body, "application/json", true, cache, None))
            }
            V3Route::Search { tag } if tag == MERGED => {
                let asks = feed.upstreams.iter().enumerate().map(|(n, m)| async move {
                    match self.member_search(m).await {
                        Ok(Some(tag)) => self.ask_one(n, m, V3Route::Search { tag }, query).await,
                        Ok(None) => (n, Answer::Absent),
                        Err(e) => (n, Answer::Failed(e)),
                    }
                });
                let answers = join_all(asks).await;
                let (docs, cache, missing) = gather(feed, answers)?;
                let rules: Vec<IdRules> = (docs.iter())
                    .map(|(n, _)| feed.upstreams[*n].rules.clone())
                    .collect();
                let docs: Vec<Vec<u8>> = (docs.iter())
                    .map(|(n, d)| relink(d, &feed.upstreams[*n].feed, *n, prefix))
                    .collect();
                let body = merged(docs, move |d| {
                    let pairs: Vec<_> = d.iter().zip(&rules).map(|(b, r)| (*b, r)).collect();
                    merge::search(&pairs)
                })
                .await?;
                Ok(reply(body, "application/json", true, cache, missing))
            }
            // At `/v3/`, the `[nuget]` feed's own `raw/` links (which its
            // documents carry, signed for it) stay where they are.
            V3Route::Raw { .. } if root => self.v3_member(&FeedRef::Default, res, query).await,
            _ => Err(AppError::NotFound),
        }
    }

    /// A package file: cached under the virtual feed's key, else from the
    /// first member, in order, whose version list has that version.
    async fn group_file(
        &self,
        feed: &VirtualFeed,
        me: &FeedRef,
        id: &str,
        version: &str,
        file: FlatFile,
    ) -> Result<Reply, AppError> {
        let key = CacheKey::flat_file(me, id, version, file);
        if let Some(reply) = self.cached_blob(&key).await? {
            return Ok(reply);
        }
        let mut missing = Vec::new();
        let mut first_error = None;
        for (_, m) in allowed(feed, id) {
            match self.version_listed(&m.feed, id, version, false).await {
                Ok(true) => {
                    let url = self.flat_url(&m.feed, id, version, file).await?;
                    let mut r = self.fill_reply(&key, url, None).await?;
                    r.missing = names(&missing);
                    return Ok(r);
                }
                Ok(false) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(feed = %feed.name, member = %m.feed.key_prefix(), error = %e, "upstream of a virtual feed failed");
                    missing.push(m.feed.key_prefix());
                    first_error.get_or_insert(e);
                }
            }
        }
        // Nobody lists it: absent, unless a member that might have it failed.
        Err(first_error.unwrap_or(AppError::NotFound))
    }

    /// Asks every member whose rules allow `id` for `route`, concurrently.
    async fn ask(
        &self,
        feed: &VirtualFeed,
        id: &str,
        route: &V3Route,
        query: Option<&str>,
    ) -> Vec<(usize, Answer)> {
        let asks = allowed(feed, id).map(|(n, m)| self.ask_one(n, m, route.clone(), query));
        join_all(asks).await
    }

    async fn ask_one(
        &self,
        n: usize,
        m: &Member,
        route: V3Route,
        query: Option<&str>,
    ) -> (usize, Answer) {
        let answer = match self.v3_member(&m.feed, &route, query).await {
            Ok(r) => {
                let cached = r.cache == "HIT";
                match body_of(r) {
                    Ok(b) => Answer::Doc(b, cached),
                    Err(e) => Answer::Failed(e),
                }
            }
            Err(e) if e.is_not_found() => Answer::Absent,
            Err(e) => Answer::Failed(e),
        };
        (n, answer)
    }

    /// The registration hive a member is read from: its SemVer 2 hive when
    /// it has one (it lists every version), else its first.
    async fn member_hive(&self, m: &Member) -> Result<Option<String>, AppError> {
        let (idx, _, _) = self.feed_index(&m.feed).await?;
        let tags = idx.registrations.iter().map(|(t, _)| t);
        let semver2 = tags.clone().find(|t| t.contains("semver2"));
        Ok(semver2.or(tags.clone().next()).cloned())
    }

    /// The search endpoint a member is asked: its first.
    async fn member_search(&self, m: &Member) -> Result<Option<String>, AppError> {
        let (idx, _, _) = self.feed_index(&m.feed).await?;
        Ok(idx.searches.first().map(|(t, _)| t.clone()))
    }
}

/// The members allowed to be asked about `id`, with their positions.
fn allowed<'a>(feed: &'a VirtualFeed, id: &'a str) -> impl Iterator<Item = (usize, &'a Member)> {
    (feed.upstreams.iter().enumerate()).filter(move |(_, m)| m.rules.allows(id))
}

/// `m{n}-{tag}` back to the member and its own tag.
fn member_tag<'a>(feed: &'a VirtualFeed, tag: &'a str) -> Option<(usize, &'a Member, &'a str)> {
    let (n, hive) = tag.strip_prefix('m')?.split_once('-')?;
    let n: usize = n.parse().ok()?;
    Some((n, feed.upstreams.get(n)?, hive))
}

/// The documents of the members that answered (in member order), the
/// `X-Cache` of the whole (`HIT` only if every part was), and the members
/// that failed. Fails when every asked member failed.
type Gathered = (Vec<(usize, Bytes)>, &'static str, Option<String>);

fn gather(feed: &VirtualFeed, mut answers: Vec<(usize, Answer)>) -> Result<Gathered, AppError> {
    answers.sort_by_key(|(n, _)| *n);
    let (mut docs, mut missing, mut all_cached) = (Vec::new(), Vec::new(), true);
    let mut first_error = None;
    for (n, a) in answers {
        match a {
            Answer::Doc(b, cached) => {
                all_cached &= cached;
                docs.push((n, b));
            }
            Answer::Absent => {}
            Answer::Failed(e) => {
                let member = feed.upstreams[n].feed.key_prefix();
                tracing::warn!(feed = %feed.name, member = %member, error = %e, "upstream of a virtual feed failed");
                missing.push(member);
                first_error.get_or_insert(e);
            }
        }
    }
    if docs.is_empty() {
        // Nobody had it and nobody failed: absent. Had any member failed,
        // it may exist where we could not look: that member's error.
        return Err(first_error.unwrap_or(AppError::NotFound));
    }
    let cache = if all_cached { "HIT" } else { "MISS" };
    Ok((docs, cache, names(&missing)))
}

fn names(missing: &[String]) -> Option<String> {
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// A member's document as bytes (metadata is always in memory).
fn body_of(r: Reply) -> Result<Bytes, AppError> {
    match r.body {
        Body::Bytes(b) | Body::Held { body: b, .. } => Ok(b),
        _ => Err(AppError::Internal(
            "a member document is not in memory".into(),
        )),
    }
}

/// Rewrites a member's links into the virtual feed: its flat container to
/// the feed's, its registration hives to `m{n}-{tag}`, so that a client
/// stays under one prefix (and one set of credentials, and the rules).
fn relink(doc: &[u8], member: &FeedRef, n: usize, prefix: &str) -> Vec<u8> {
    let from = format!("{MARKER}{}/", member.public_prefix());
    let to = format!("{MARKER}{prefix}/");
    let mut out = Vec::with_capacity(doc.len() + doc.len() / 16);
    let mut last = 0;
    for at in memmem::find_iter(doc, from.as_bytes()) {
        if at < last {
            continue;
        }
        let rest = &doc[at + from.len()..];
        // Other links (`raw/` documents) stay with the member, which signed them.
        let skip = if rest.starts_with(b"registration/") {
            "registration/".len()
        } else if rest.starts_with(b"flatcontainer/") {
            0
        } else {
            continue;
        };
        out.extend_from_slice(&doc[last..at]);
        out.extend_from_slice(to.as_bytes());
        if skip > 0 {
            out.extend_from_slice(format!("registration/m{n}-").as_bytes());
        }
        last = at + from.len() + skip;
    }
    out.extend_from_slice(&doc[last..]);
    out
}

/// The virtual feed's own service index (a template: `MARKER` becomes the
/// request's public base).
fn service_index(prefix: &str) -> Reply {
    let p = format!("{MARKER}{prefix}");
    let res = |id: String, ty: &str| serde_json::json!({ "@id": id, "@type": ty });
    let mut resources = vec![res(
        format!("{p}/flatcontainer/"),
        "PackageBaseAddress/3.0.0",
    )];
    for ty in ["", "/3.0.0-beta", "/3.0.0-rc", "/3.4.0", "/3.6.0"] {
        let ty = format!("RegistrationsBaseUrl{ty}");
        resources.push(res(format!("{p}/registration/{MERGED}/"), &ty));
    }
    for ty in ["", "/3.0.0-beta", "/3.0.0-rc", "/3.5.0"] {
        let ty = format!("SearchQueryService{ty}");
        resources.push(res(format!("{p}/search/{MERGED}"), &ty));
    }
    let doc = serde_json::json!({ "version": "3.0.0", "resources": resources });
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    reply(body, "application/json; charset=utf-8", true, "HIT", None)
}

fn reply(
    body: Vec<u8>,
    content_type: &str,
    templated: bool,
    cache: &'static str,
    missing: Option<String>,
) -> Reply {
    let mut r = generated(Bytes::from(body), content_type);
    if templated {
        Arc::make_mut(&mut r.meta).templated = true;
    }
    r.cache = cache;
    r.missing = missing;
    r
}

/// Runs a merge of `docs`, off the async workers when they are large.
async fn merged(
    docs: Vec<Vec<u8>>,
    f: impl FnOnce(Vec<&[u8]>) -> Result<Vec<u8>, String> + Send + 'static,
) -> Result<Vec<u8>, AppError> {
    let size = docs.iter().map(Vec::len).sum();
    crate::offload::cpu_bound(size, move || f(docs.iter().map(Vec::as_slice).collect()))
        .await?
        .map_err(AppError::BadUpstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_links_move_under_the_virtual_feed() {
        let member = FeedRef::ProGet("internal".into());
        let me = "/feeds/all/v3";
        let doc = format!(
            r#"{{"a":"{MARKER}/nuget/internal/v3/registration/hive/x/index.json","b":"{MARKER}/nuget/internal/v3/flatcontainer/x/1.0.0/x.1.0.0.nupkg","c":"{MARKER}/v3/flatcontainer/","d":"{MARKER}/nuget/internal/v3/raw/0/t/x"}}"#
        );
        let out = String::from_utf8(relink(doc.as_bytes(), &member, 1, me)).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"a":"{MARKER}/feeds/all/v3/registration/m1-hive/x/index.json","b":"{MARKER}/feeds/all/v3/flatcontainer/x/1.0.0/x.1.0.0.nupkg","c":"{MARKER}/v3/flatcontainer/","d":"{MARKER}/nuget/internal/v3/raw/0/t/x"}}"#
            )
        );
    }
}
