//! `[cluster]`: the other nodes (`peers`: the owner of a key fills it once
//! for all) and the shared second tier on S3-compatible object storage
//! (`[cluster.store]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::proget::one_secret;
use super::{check_http_url, invalid, ConfigError};
use crate::secret::Secret;

/// Cluster settings; all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// A bucket every node reads before the upstream and uploads its fills
    /// to. Unset: no shared tier.
    pub store: Option<StoreConfig>,
    /// Every node of the cluster, this one marked `me = true`, the same
    /// list on every node. A key's owner (Ketama ring over the addresses)
    /// fills it; the other nodes ask the owner. Empty: no peers.
    pub peers: Vec<PeerConfig>,
    /// Environment variable holding the secret nodes present to each other.
    pub secret_env: Option<String>,
    /// File holding that secret (alternative to `secret_env`).
    pub secret_file: Option<PathBuf>,
}

/// One node of the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The address other nodes reach it at (`ip:port` of its plain listener).
    pub addr: std::net::SocketAddr,
    /// This node.
    #[serde(default)]
    pub me: bool,
}

impl ClusterConfig {
    /// The secret nodes present to each other.
    pub fn secret(&self) -> Result<Option<Secret>, ConfigError> {
        one_secret(
            &self.secret_env,
            &self.secret_file,
            ("cluster.secret_env", "cluster.secret_file"),
        )
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(store) = &self.store {
            store.validate()?;
        }
        if self.peers.is_empty() {
            return Ok(());
        }
        if self.peers.iter().filter(|p| p.me).count() != 1 {
            return Err(invalid(
                "cluster.peers",
                "mark exactly one peer `me = true`",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if !self.peers.iter().all(|p| seen.insert(p.addr)) {
            return Err(invalid("cluster.peers", "an address is listed twice"));
        }
        if self.secret()?.is_none() {
            return Err(invalid(
                "cluster.secret_env",
                "peers need a shared secret (secret_env or secret_file)",
            ));
        }
        Ok(())
    }
}

/// An S3-compatible bucket (AWS S3, Garage, MinIO, Ceph RGW, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Endpoint URL, e.g. `http://garage.corp.example:3900`; unset means AWS.
    pub endpoint: Option<Url>,
    /// Region name (`garage` for Garage, `us-east-1` for most others).
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket name; the bucket must exist.
    pub bucket: String,
    /// Prefix of every object feedcache writes, e.g. `feedcache/`.
    #[serde(default)]
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), what self-hosted
    /// servers expect; `false` for virtual-hosted style.
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Environment variable holding the access key ID.
    pub access_key_env: Option<String>,
    /// File holding the access key ID (alternative to `access_key_env`).
    pub access_key_file: Option<PathBuf>,
    /// Environment variable holding the secret access key.
    pub secret_key_env: Option<String>,
    /// File holding the secret access key.
    pub secret_key_file: Option<PathBuf>,
    /// Longest wait for one request to the bucket; past it the node goes to
    /// the upstream instead (a slow bucket never fails a request).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Fills waiting for upload; beyond it new fills are not uploaded (and
    /// counted), so a slow bucket never holds memory without bound.
    #[serde(default = "default_queue")]
    pub upload_queue: usize,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_queue() -> usize {
    1024
}

impl StoreConfig {
    /// The access key ID and secret, read from their variables or files.
    pub fn credentials(&self) -> Result<(Secret, Secret), ConfigError> {
        let id = one_secret(
            &self.access_key_env,
            &self.access_key_file,
            (
                "cluster.store.access_key_env",
                "cluster.store.access_key_file",
            ),
        )?;
        let secret = one_secret(
            &self.secret_key_env,
            &self.secret_key_file,
            (
                "cluster.store.secret_key_env",
                "cluster.store.secret_key_file",
            ),
        )?;
        match (id, secret) {
            (Some(i), Some(s)) => Ok((i, s)),
            _ => Err(invalid(
                "cluster.store",
                "needs an access key and a secret key (variables or files)",
            )),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.endpoint {
            check_http_url(e).map_err(|m| invalid("cluster.store.endpoint", m))?;
        }
        if self.bucket.is_empty() {
            return Err(invalid("cluster.store.bucket", "must not be empty"));
        }
        if self.prefix.starts_with('/') || self.prefix.contains("..") {
            return Err(invalid(
                "cluster.store.prefix",
                "must be relative, without `..`",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "cluster.store.timeout",
                "must be greater than zero",
            ));
        }
        if self.upload_queue == 0 {
            return Err(invalid("cluster.store.upload_queue", "must be at least 1"));
        }
        self.credentials().map(|_| ())
    }
}
