//! `feedcache warm`: fills the cache of a running feedcache with every
//! package that lock files and package lists name, through its public HTTP
//! API, so that a later `dotnet restore --locked-mode` finds them all cached
//! (and a build never waits on, or fails with, the upstream).
//!
//! It is an ordinary client of the server: it asks the service index for
//! `PackageBaseAddress/3.0.0` and downloads each `.nupkg` once, reading and
//! discarding the body. The server's `X-Cache` header tells "already cached"
//! from "fetched now".

pub mod list;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use url::Url;

use list::Package;
use progress::Progress;

/// Where `feedcache` listens on its embedded defaults.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:5000/v3/index.json";
/// Connecting to the server: it is on the build network, so anything slower
/// is a wrong address or a dead server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The service index is small and usually cached.
const INDEX_TIMEOUT: Duration = Duration::from_secs(60);
/// One package, headers to last byte: a cold fill of a large package from a
/// slow upstream takes minutes; a hung one must still end.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(600);
/// The most of a service index read: the server itself refuses larger ones.
const MAX_INDEX: usize = 4 << 20;

/// `feedcache warm`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct WarmArgs {
    /// Service index URL of the running feedcache to fill.
    #[arg(long, value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: Url,
    /// Packages downloaded at the same time.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// packages.lock.json files and package lists (`Id Version` or
    /// `pkg:nuget/Id@Version` per line, `#` comments).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
}

/// Why warming could not start at all (exit code 2). Failures of single
/// packages are outcomes, not errors: the run goes on and counts them.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("service index {url}: {reason}")]
    Index { url: Url, reason: String },
    #[error("service index {0} lists no PackageBaseAddress/3.0.0 resource")]
    NoPackageBase(Url),
}

/// What became of one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server had to download it (`X-Cache` other than `HIT`).
    Fetched,
    /// The server answered from its cache.
    Cached,
    /// Not in the cache now, and why.
    Failed(String),
}

/// Counts over the whole run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub fetched: usize,
    pub cached: usize,
    /// Packages that failed plus lines and entries that named no package.
    pub failed: usize,
}

impl Summary {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Fetched => self.fetched += 1,
            Outcome::Cached => self.cached += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    /// `N fetched, M already cached, K failed`.
    pub fn counts(&self) -> String {
        format!(
            "{} fetched, {} already cached, {} failed",
            self.fetched, self.cached, self.failed
        )
    }
}

/// Runs `feedcache warm`: 0 when every package is cached now, 1 when some
/// failed, 2 when the run could not start (files, server, index).
pub fn run(args: WarmArgs) -> ExitCode {
    match warm(&args) {
        Ok(summary) => {
            println!("warm: {}", summary.counts());
            if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("feedcache warm: {e}");
            ExitCode::from(2)
        }
    }
}

fn warm(args: &WarmArgs) -> Result<Summary, WarmError> {
    let mut summary = Summary::default();
    let mut packages = Vec::new();
    // Every file is read before anything is fetched, so a typo in a path
    // fails the run at once rather than after minutes of downloads.
    for path in &args.files {
        let text = std::fs::read_to_string(path).map_err(|source| WarmError::Read {
            path: path.clone(),
            source,
        })?;
        let parsed = list::parse(&text);
        for problem in &parsed.problems {
            eprintln!("failed {}:{problem}", path.display());
        }
        summary.failed += parsed.problems.len();
        packages.extend(parsed.packages);
    }
    let packages = list::dedup(packages);
    // One thread: the work is waiting on sockets, and reading bodies to
    // discard them costs next to nothing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WarmError::Runtime)?;
    rt.block_on(fetch_all(args, &packages, summary))
}

async fn fetch_all(
    args: &WarmArgs,
    packages: &[Package],
    mut summary: Summary,
) -> Result<Summary, WarmError> {
    let client = client()?;
    let base = package_base(&client, &args.server).await?;
    let progress = Progress::new(packages.len());
    let mut done = futures_util::stream::iter(packages)
        .map(|p| {
            let (client, base) = (&client, &base);
            async move { (p, fetch(client, base, p).await) }
        })
        .buffer_unordered(usize::from(args.concurrency));
    while let Some((p, outcome)) = done.next().await {
        summary.add(&outcome);
        progress.report(p, &outcome, &summary);
    }
    progress.finish();
    Ok(summary)
}

/// The client: the crate's rustls setup (reqwest is built without a crypto
/// provider of its own), used for `https` servers; plain `http` needs none.
fn client() -> Result<reqwest::Client, WarmError> {
    let tls = crate::upstream::tls_config(None).map_err(|e| WarmError::Client(e.to_string()))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("feedcache-warm/", env!("CARGO_PKG_VERSION")))
        // feedcache is the build network's package proxy: going through an
        // HTTP proxy from the environment to reach it would be a detour
        // at best, like for feedcache's own upstream client.
        .no_proxy()
        .build()
        .map_err(|e| WarmError::Client(describe(&e)))
}

/// The `PackageBaseAddress/3.0.0` URL the service index at `server` lists.
async fn package_base(client: &reqwest::Client, server: &Url) -> Result<Url, WarmError> {
    let index_err = |reason: String| WarmError::Index {
        url: server.clone(),
        reason,
    };
    let mut resp = client
        .get(server.clone())
        .timeout(INDEX_TIMEOUT)
        .send()
        .await
        .map_err(|e| index_err(describe(&e)))?;
    if !resp.status().is_success() {
        return Err(index_err(format!("HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| index_err(describe(&e)))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_INDEX {
            return Err(index_err(format!("larger than {MAX_INDEX} bytes")));
        }
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| index_err(format!("not JSON: {e}")))?;
    let id = find_package_base(&doc).ok_or_else(|| WarmError::NoPackageBase(server.clone()))?;
    // `@id`s are absolute in practice; a relative one is read against the
    // index's own URL, as a browser would.
    let mut base = server
        .join(id)
        .map_err(|e| index_err(format!("bad PackageBaseAddress {id:?}: {e}")))?;
    // The package paths are joined below it, which needs a directory URL.
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    Ok(base)
}

/// The `@id` of the first resource whose `@type` (a string, or a list of
/// them) is `PackageBaseAddress/3.0.0`.
fn find_package_base(doc: &serde_json::Value) -> Option<&str> {
    const WANTED: &str = "PackageBaseAddress/3.0.0";
    doc.get("resources")?
        .as_array()?
        .iter()
        .find(|r| match r.get("@type") {
            Some(serde_json::Value::String(t)) => t == WANTED,
            Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == WANTED),
            _ => false,
        })?
        .get("@id")?
        .as_str()
}

/// Downloads one package through the server, streaming the body to nowhere:
/// only the server's copy matters, and a package can be hundreds of MiB.
async fn fetch(client: &reqwest::Client, base: &Url, p: &Package) -> Outcome {
    let url = match base.join(&p.nupkg_path()) {
        Ok(u) => u,
        Err(e) => return Outcome::Failed(format!("bad package URL: {e}")),
    };
    let resp = match client.get(url).timeout(PACKAGE_TIMEOUT).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(describe(&e)),
    };
    let status = resp.status();
    if !status.is_success() {
        // feedcache says why in plain text (e.g. the upstream's 404); an
        // HTML error page's first line would say nothing.
        let plain = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"));
        let message = if plain {
            first_line(resp).await
        } else {
            String::new()
        };
        return Outcome::Failed(if message.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {message}")
        });
    }
    let hit = resp
        .headers()
        .get("x-cache")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"HIT"));
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            // A cut body means the server's fill may have failed too: not
            // known to be cached, so it counts as a failure.
            Err(e) => return Outcome::Failed(describe(&e)),
        }
    }
    if hit {
        Outcome::Cached
    } else {
        Outcome::Fetched
    }
}

/// The first line of a refusal's plain-text body, as feedcache itself
/// passes an upstream's on (`upstream::first_line`, over this client's type).
async fn first_line(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < crate::upstream::REFUSAL_READ {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    crate::upstream::first_line_of(&body)
}

/// A reqwest error with its causes: its own message ("error sending request
/// for url ...") hides whether it was a refused connection or a reset.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    // reqwest's own message ends with the URL, which the caller names already.
    let mut out = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else if e.is_redirect() {
        "bad redirect"
    } else {
        "request failed"
    }
    .to_owned();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_package_base_address() {
        // (service index, @id found)
        let table = [
            (
                r#"{"resources":[{"@id":"http://a/q","@type":"SearchQueryService"},
                   {"@id":"http://a/flat/","@type":"PackageBaseAddress/3.0.0"}]}"#,
                Some("http://a/flat/"),
            ),
            (
                r#"{"resources":[{"@id":"http://a/f/","@type":["X","PackageBaseAddress/3.0.0"]}]}"#,
                Some("http://a/f/"),
            ),
            (
                r#"{"resources":[{"@id":"http://a/f/","@type":"PackageBaseAddress/2.0.0"}]}"#,
                None,
            ),
            (
                r#"{"resources":[{"@type":"PackageBaseAddress/3.0.0"}]}"#,
                None,
            ),
            (r#"{"resources":{}}"#, None),
            (r#"[]"#, None),
        ];
        for (doc, want) in table {
            let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert_eq!(find_package_base(&doc), want, "{doc}");
        }
    }

    #[test]
    fn summary_counts_each_outcome() {
        let mut s = Summary::default();
        for o in [
            Outcome::Fetched,
            Outcome::Cached,
            Outcome::Cached,
            Outcome::Failed("x".into()),
        ] {
            s.add(&o);
        }
        assert_eq!(s.counts(), "1 fetched, 2 already cached, 1 failed");
    }
}
