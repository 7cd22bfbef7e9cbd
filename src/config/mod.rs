//! Configuration: serde structs with embedded defaults, loading from TOML and validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;
use url::Url;

mod cluster;
mod connections;
mod feeds;
mod proget;
mod sendfile;
mod tls;
pub use cluster::{ClusterConfig, PeerConfig, StoreConfig};
pub use connections::ConnectionsConfig;
pub use feeds::{Member, VirtualFeed};
pub use proget::{AdminConfig, AuthConfig, ExtractConfig, ProGetConfig};
pub use sendfile::SendfilePolicy;
pub use tls::TlsConfig;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the plain-HTTP listener binds, `host:port`. Port 0 picks a free port
    /// and prints it on stdout. Empty: no plain listener (needs `tls.listen`).
    pub listen: String,
    /// Base URL clients reach feedcache by (e.g. `https://nuget.corp.example/`).
    /// When unset, rewritten URLs use the request's X-Forwarded-Proto/-Host or Host.
    pub public_url: Option<Url>,
    /// Addresses (CIDR ranges) of reverse proxies whose `X-Forwarded-Proto`
    /// and `X-Forwarded-Host` are believed; from anyone else they are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Transparent mode: host names (e.g. `api.nuget.org`) whose requests are
    /// answered in nuget.org's own URL layout (`/v3-flatcontainer/...`,
    /// `/v3/registration5-gz-semver2/...`), for DNS pointed at feedcache.
    pub transparent_hosts: Vec<String>,
    /// Worker threads for the HTTP front end; 0 means one per CPU.
    pub threads: usize,
    /// Which cached bodies of 64 KiB or more on plain HTTP/1.1 go by
    /// `sendfile(2)`, from either tier:
    /// `"auto"` (the default) to clients on other hosts, `true` to all,
    /// `false` only those too large to be held mapped (`sendfile.rs`).
    pub sendfile: SendfilePolicy,
    /// Limits on client connections.
    pub connections: ConnectionsConfig,
    /// Cache tiers and freshness.
    pub cache: CacheConfig,
    /// How feedcache talks to upstreams (timeouts, TLS).
    pub upstream: UpstreamConfig,
    /// The default NuGet V3 feed, served under `/v3/`.
    pub nuget: NugetConfig,
    /// A ProGet server, served under `/nuget/{feed}/v3/`, `/api/packages/`, `/upack/`.
    pub proget: ProGetConfig,
    /// Client API keys; none configured means no authentication.
    pub auth: AuthConfig,
    /// Limits on serving single files out of cached packages.
    pub extract: ExtractConfig,
    /// The HTTPS listener.
    pub tls: TlsConfig,
    /// The admin API (purge, statistics).
    pub admin: AdminConfig,
    /// Virtual feeds (`[[feeds]]`): one feed over several upstreams with
    /// package-ID rules, served at `/feeds/{name}/v3/`.
    pub feeds: Vec<VirtualFeed>,
    /// A `[[feeds]]` name to serve at `/v3/` instead of the `[nuget]` feed
    /// (which is then reached only as an upstream of virtual feeds), so
    /// clients keep one source URL and get the feed's ID rules there too.
    #[serde(deserialize_with = "feeds::opt_feed_name")]
    pub default_feed: Option<String>,
    /// Sharing with other nodes: the bucket tier (`[cluster.store]`).
    pub cluster: ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".into(),
            public_url: None,
            trusted_proxies: Vec::new(),
            transparent_hosts: Vec::new(),
            threads: 0,
            sendfile: SendfilePolicy::Auto,
            connections: ConnectionsConfig::default(),
            cache: CacheConfig::default(),
            upstream: UpstreamConfig::default(),
            nuget: NugetConfig::default(),
            proget: ProGetConfig::default(),
            auth: AuthConfig::default(),
            extract: ExtractConfig::default(),
            tls: TlsConfig::default(),
            admin: AdminConfig::default(),
            feeds: Vec::new(),
            default_feed: None,
            cluster: ClusterConfig::default(),
        }
    }
}

/// Cache tiers and freshness.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Directory of the disk tier; created when missing. Survives restarts.
    pub dir: PathBuf,
    /// Cap of the disk tier; least recently used entries are evicted in the
    /// background above it (down to 90%). 0 means no cap.
    pub disk_size: ByteSize,
    /// Capacity of the in-memory tier, counted in body bytes.
    pub memory_size: ByteSize,
    /// Entries larger than this are served from disk only, so one big package
    /// cannot flush the memory tier.
    pub memory_max_entry: ByteSize,
    /// How long metadata (service index, version lists, registration, search) is
    /// served without asking the upstream again. Packages never expire.
    #[serde(with = "humantime_serde")]
    pub metadata_ttl: Duration,
    /// Largest metadata document accepted from an upstream (after decompression);
    /// bigger ones are refused with 502 rather than buffered.
    pub max_metadata_size: ByteSize,
    /// Largest package (or other file) accepted from an upstream, enforced
    /// while it streams: an endless or oversized body is cut off with an
    /// error and never cached.
    pub max_package_size: ByteSize,
    /// How long past its TTL metadata is still served (marked `X-Cache: STALE`)
    /// while it is refreshed in the background or the upstream is down.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    /// How long an upstream 404 is remembered (negative caching). A version
    /// the cached version list does not know is revalidated before a 404.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: PathBuf::from("./cache"),
            disk_size: ByteSize::gib(20),
            memory_size: ByteSize::mib(256),
            memory_max_entry: ByteSize::mib(4),
            metadata_ttl: Duration::from_secs(120),
            max_metadata_size: ByteSize::mib(64),
            max_package_size: ByteSize::gib(2),
            max_stale: Duration::from_secs(7 * 24 * 3600),
            negative_ttl: Duration::from_secs(30),
        }
    }
}

/// How feedcache talks to upstreams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Time allowed to open a connection (TCP and TLS) to an upstream.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest silence allowed while reading an upstream response.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Extra PEM file of CA certificates trusted besides the system roots
    /// (a corporate TLS-inspecting proxy or an internal ProGet).
    pub ca_file: Option<PathBuf>,
    /// Consecutive failures (connect errors, timeouts, 5xx) after which an
    /// upstream host is considered down and requests to it fail fast.
    pub breaker_failures: u32,
    /// How long a host considered down is left alone before one probe request.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Offline mode: serve only what is cached and never contact an
    /// upstream; a miss is a 503. Switchable at runtime (`/admin/offline`).
    pub offline: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            ca_file: None,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(15),
            offline: false,
        }
    }
}

/// The default NuGet V3 feed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NugetConfig {
    /// The upstream's service index; every resource URL is read from it.
    pub service_index: Url,
}

impl Default for NugetConfig {
    fn default() -> Self {
        NugetConfig {
            // A constant that parses; covered by the `defaults_are_valid` test.
            service_index: Url::parse("https://api.nuget.org/v3/index.json")
                .unwrap_or_else(|_| unreachable!()),
        }
    }
}

impl Config {
    /// Whether forwarded headers from `peer` are believed.
    pub fn trusts(&self, peer: Option<std::net::IpAddr>) -> bool {
        peer.is_some_and(|ip| self.trusted_proxies.iter().any(|n| n.contains(&ip)))
    }

    /// What `--check` adds to `validate`: the cache directory can be created
    /// and written (it is created if missing, as a start would).
    pub fn check_cache_dir(&self) -> Result<(), ConfigError> {
        let dir = &self.cache.dir;
        let usable =
            std::fs::create_dir_all(dir).and_then(|_| tempfile::tempfile_in(dir).map(drop));
        usable.map_err(|e| invalid("cache.dir", format!("{} is not usable: {e}", dir.display())))
    }

    /// Reads and parses a TOML file; unknown keys are errors.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks what serde cannot: URL schemes, non-zero sizes and timeouts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() {
            crate::listen::parse_listen(&self.listen).map_err(|m| invalid("listen", m))?;
        }
        self.tls.validate(&self.listen)?;
        for h in &self.transparent_hosts {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(invalid(
                    "transparent_hosts",
                    format!("`{h}` is not a host name"),
                ));
            }
        }
        if let Some(u) = &self.public_url {
            check_http_url(u).map_err(|m| invalid("public_url", m))?;
            if u.query().is_some() || u.fragment().is_some() {
                return Err(invalid("public_url", "must not have a query or fragment"));
            }
        }
        check_http_url(&self.nuget.service_index).map_err(|m| invalid("nuget.service_index", m))?;
        feeds::validate(
            &self.feeds,
            self.default_feed.as_deref(),
            self.proget.url.is_some(),
        )
        .map_err(|m| invalid("feeds", m))?;
        self.cluster.validate()?;
        if self.cache.dir.as_os_str().is_empty() {
            return Err(invalid("cache.dir", "must not be empty"));
        }
        if self.cache.memory_size.as_u64() == 0 {
            return Err(invalid("cache.memory_size", "must be greater than zero"));
        }
        if self.cache.memory_max_entry.as_u64() == 0 {
            return Err(invalid(
                "cache.memory_max_entry",
                "must be greater than zero",
            ));
        }
        if self.cache.memory_max_entry > self.cache.memory_size {
            return Err(invalid(
                "cache.memory_max_entry",
                "must not exceed cache.memory_size",
            ));
        }
        if self.cache.max_metadata_size.as_u64() == 0 {
            return Err(invalid(
                "cache.max_metadata_size",
                "must be greater than zero",
            ));
        }
        if self.cache.max_package_size.as_u64() == 0 {
            return Err(invalid(
                "cache.max_package_size",
                "must be greater than zero",
            ));
        }
        if self.cache.metadata_ttl.is_zero() {
            return Err(invalid("cache.metadata_ttl", "must be greater than zero"));
        }
        if self.upstream.breaker_failures == 0 {
            return Err(invalid(
                "upstream.breaker_failures",
                "must be greater than zero",
            ));
        }
        if self.cache.negative_ttl.is_zero() {
            return Err(invalid("cache.negative_ttl", "must be greater than zero"));
        }
        if self.upstream.connect_timeout.is_zero() {
            return Err(invalid(
                "upstream.connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.upstream.read_timeout.is_zero() {
            return Err(invalid(
                "upstream.read_timeout",
                "must be greater than zero",
            ));
        }
        self.connections.validate()?;
        self.proget.validate()?;
        self.auth.keys()?;
        self.admin.key()?;
        if self.cache.disk_size.as_u64() != 0 && self.cache.disk_size < self.cache.memory_max_entry
        {
            return Err(invalid(
                "cache.disk_size",
                "must be 0 (no cap) or at least cache.memory_max_entry",
            ));
        }
        self.extract.validate()?;
        if let Some(ca) = &self.upstream.ca_file {
            if !ca.is_file() {
                return Err(invalid(
                    "upstream.ca_file",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn check_http_url(u: &Url) -> Result<(), String> {
    match u.scheme() {
        "http" | "https" => {}
        other => return Err(format!("scheme `{other}` is not http or https")),
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
        assert_eq!(Config::default().listen, "127.0.0.1:5000");
    }

    #[test]
    fn shipped_file_parses_and_validates() {
        let text = include_str!("../../conf/feedcache.toml");
        let c = Config::parse(text).expect("conf/feedcache.toml parses");
        c.validate().expect("conf/feedcache.toml validates");
    }

    #[test]
    fn rejects_bad_input() {
        let cases = [
            ("bogus = 1", "unknown field"),
            ("[cache]\nmemory_size = \"0B\"", "memory_size"),
            ("[nuget]\nservice_index = \"ftp://x/index.json\"", "scheme"),
            ("[nuget]\nservice_index = \"not a url\"", "relative URL"),
            ("[cache]\nmetadata_ttl = \"0s\"", "metadata_ttl"),
            ("listen = \"nowhere\"", "listen"),
            ("[upstream]\nca_file = \"/nonexistent.pem\"", "ca_file"),
            ("[proget]\nurl = \"ftp://p/\"", "proget.url"),
            ("[proget]\napi_key_env = \"X\"", "no url"),
            (
                "[proget]\nurl = \"http://p/\"\napi_key_env = \"FEEDCACHE_TEST_UNSET_VAR\"",
                "not set",
            ),
            ("[auth]\napi_keys_file = \"/nonexistent\"", "api_keys_file"),
            ("[extract]\nmax_ratio = 0", "max_ratio"),
            ("[connections]\nheader_timeout = \"0s\"", "header_timeout"),
            ("[connections]\nsend_timeout = \"0s\"", "send_timeout"),
            ("[connections]\nsend_buffer = \"1KiB\"", "send_buffer"),
            ("[connections]\nsend_buffer = \"256MiB\"", "send_buffer"),
        ];
        for (text, want) in cases {
            let err = match Config::parse(text) {
                Err(e) => e,
                Ok(c) => c.validate().expect_err(text).to_string(),
            };
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn forwarded_headers_are_trusted_only_from_configured_proxies() {
        let c = Config::parse("trusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]").unwrap();
        let table = [
            (Some("10.1.2.3"), true),
            (Some("::1"), true),
            (Some("192.168.0.1"), false),
            (Some("127.0.0.1"), false),
            (None, false),
        ];
        for (peer, want) in table {
            let ip = peer.map(|p| p.parse().unwrap());
            assert_eq!(c.trusts(ip), want, "{peer:?}");
        }
        assert!(!Config::default().trusts(Some("127.0.0.1".parse().unwrap())));
        assert!(Config::parse("trusted_proxies = [\"not-an-ip\"]").is_err());
    }

    #[test]
    fn sizes_and_durations_are_human() {
        let c = Config::parse("[cache]\nmemory_size = \"64MiB\"\nmetadata_ttl = \"5m\"").unwrap();
        assert_eq!(c.cache.memory_size.as_u64(), 64 << 20);
        assert_eq!(c.cache.metadata_ttl, Duration::from_secs(300));
    }
}
