//! Start-up: logging, cache tiers, upstream client, then the pingora server.

use std::io::Write;
use std::sync::Arc;

use crate::app::App;
use crate::cache::{Cache, DiskTier, MemoryTier};
use crate::config::Config;
use crate::listen::{parse_listen, reserve, Reserved};
use crate::upstream::Upstream;

/// Why feedcache could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listen address: {0}")]
    Listen(String),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::cluster::StoreError),
}

/// How often the disk tier is checked against its cap.
const EVICT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps the disk tier under its cap from a thread of its own (file removal
/// is blocking work and must not wait for a request).
fn spawn_evictor(cache: Arc<Cache>) -> Result<(), StartError> {
    crate::background::every("evict", EVICT_EVERY, move || {
        cache.evict();
    })
    .map_err(StartError::Thread)
}

/// Builds everything and serves until a signal stops the process.
pub fn run(config: Config) -> Result<std::convert::Infallible, StartError> {
    // Reservations held until the process ends (`run_forever` does not
    // return), so no other socket takes a port before pingora has bound it.
    let mut held: Vec<Reserved> = Vec::new();
    let mut resolve = |s: &str| -> Result<std::net::SocketAddr, StartError> {
        let a = parse_listen(s).map_err(StartError::Listen)?;
        let r = reserve(a).map_err(|e| StartError::Listen(e.to_string()))?;
        let addr = r.addr;
        held.push(r);
        Ok(addr)
    };
    let plain = match config.listen.as_str() {
        "" => None,
        s => Some(resolve(s)?),
    };
    let tls = match (&config.tls.listen, &config.tls.cert, &config.tls.key) {
        (Some(l), Some(cert), Some(key)) => Some(crate::server::TlsListener {
            addr: resolve(l)?,
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    // Every client connection is a descriptor: take what the hard limit
    // allows (as nginx's worker_rlimit_nofile does) and size the cap from it.
    let fd_limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let max_connections = config.connections.cap(fd_limit);
    tracing::info!(max_connections, fd_limit, "connection limits");
    let disk = DiskTier::open_capped(&config.cache.dir, config.cache.disk_size.as_u64())?;
    let memory = MemoryTier::new(
        config.cache.memory_size.as_u64(),
        config.cache.memory_max_entry.as_u64(),
    );
    // Secrets are read once, here; nothing else sees where they came from.
    let proget_key = config.proget.api_key()?;
    let client_keys = config.auth.keys()?;
    let admin_key = config.admin.key()?;
    let credential = config.proget.url.as_ref().zip(proget_key.as_ref());
    let upstream = Upstream::new(&config.upstream, credential)?;
    let mut cache = Cache::new(memory, disk, config.cache.negative_ttl)
        .with_max_body(config.cache.max_package_size.as_u64())
        .with_max_entries(config.extract.max_entries)
        // Connections take at most half the descriptors (`connections.cap`);
        // memory entries kept open for `sendfile` at most a quarter.
        .with_held_files(usize::try_from(fd_limit / 4).unwrap_or(usize::MAX));
    if let Some(store) = &config.cluster.store {
        cache = cache.with_shared(crate::cluster::Store::start(store)?);
    }
    let cluster_secret = config.cluster.secret()?;
    if let Some(secret) = cluster_secret.clone() {
        if let Some(peers) = crate::cluster::Peers::new(&config.cluster.peers, secret) {
            cache = cache.with_owners(Arc::new(peers));
        }
    }
    let cache = Arc::new(cache);
    tracing::info!(
        listen = ?plain,
        tls = ?tls.as_ref().map(|t| t.addr),
        upstream = %config.nuget.service_index,
        proget = config.proget.url.as_ref().map(|u| u.as_str()),
        client_auth = !client_keys.is_empty(),
        cache_dir = %config.cache.dir.display(),
        "starting feedcache"
    );
    if config.cache.disk_size.as_u64() > 0 {
        spawn_evictor(cache.clone())?;
    }
    // Past a file-size limit (ulimit -f) a write must fail with EFBIG, which
    // the disk tier handles by serving uncached, rather than SIGXFSZ
    // killing the process.
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let auth = crate::auth::Auth::new(client_keys)
        .with_admin(admin_key)
        .with_cluster(cluster_secret);
    let signer = crate::rawlink::RawSigner::load_or_create(&config.cache.dir).map_err(|e| {
        StartError::Cache(crate::cache::CacheError::Io {
            path: config
                .cache
                .dir
                .join(crate::rawlink::KEY_FILE)
                .display()
                .to_string(),
            msg: e.to_string(),
        })
    })?;
    let app = App::new(config, cache, upstream, auth, signer);
    let addrs = (plain, tls.as_ref().map(|t| t.addr));
    let server =
        crate::server::build(app, plain, tls, max_connections).map_err(StartError::Listen)?;
    // Tests and scripts read the real ports from these lines (port 0 = any free).
    // Written, not println!: a closed stdout must not bring the server down.
    let mut out = std::io::stdout();
    if let Some(a) = addrs.0 {
        let _ = writeln!(out, "feedcache listening on http://{a}");
    }
    if let Some(a) = addrs.1 {
        let _ = writeln!(out, "feedcache listening on https://{a}");
    }
    let _ = std::io::stdout().flush();
    server.run_forever()
}
