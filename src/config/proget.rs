//! Configuration of the ProGet upstream, client authentication and package
//! extraction limits; secrets are named here and read at startup.

use std::path::PathBuf;

use bytesize::ByteSize;
use serde::Deserialize;
use url::Url;

use super::{check_http_url, invalid, ConfigError};
use crate::secret::Secret;

/// A ProGet server feedcache fronts at `/nuget/{feed}/v3/`, `/api/packages/`
/// and `/upack/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProGetConfig {
    /// Base URL of the ProGet server, e.g. `https://proget.corp.example/`.
    /// Unset: the ProGet routes answer 404.
    pub url: Option<Url>,
    /// Environment variable holding the API key sent upstream as `X-ApiKey`.
    pub api_key_env: Option<String>,
    /// File holding that API key (alternative to `api_key_env`).
    pub api_key_file: Option<PathBuf>,
}

impl ProGetConfig {
    /// The upstream API key, read from its environment variable or file.
    pub fn api_key(&self) -> Result<Option<Secret>, ConfigError> {
        one_secret(
            &self.api_key_env,
            &self.api_key_file,
            ("proget.api_key_env", "proget.api_key_file"),
        )
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(u) = &self.url {
            check_http_url(u).map_err(|m| invalid("proget.url", m))?;
            if u.query().is_some() || u.fragment().is_some() {
                return Err(invalid("proget.url", "must not have a query or fragment"));
            }
        } else if self.api_key_env.is_some() || self.api_key_file.is_some() {
            return Err(invalid("proget.url", "an API key is set but no url"));
        }
        self.api_key().map(|_| ())
    }
}

/// Client authentication. With no keys configured, every client is served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Environment variable holding client API keys, separated by commas.
    pub api_keys_env: Option<String>,
    /// File of client API keys, one per line (`#` starts a comment).
    pub api_keys_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Every configured client key; empty means authentication is off.
    pub fn keys(&self) -> Result<Vec<Secret>, ConfigError> {
        let mut keys = Vec::new();
        if let Some(var) = &self.api_keys_env {
            let text = std::env::var(var).map_err(|_| {
                invalid(
                    "auth.api_keys_env",
                    format!("environment variable {var} is not set"),
                )
            })?;
            let found = Secret::list(&text);
            if found.is_empty() {
                return Err(invalid("auth.api_keys_env", format!("{var} holds no key")));
            }
            keys.extend(found);
        }
        if let Some(path) = &self.api_keys_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "auth.api_keys_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let found = Secret::list(&text);
            if found.is_empty() {
                return Err(invalid(
                    "auth.api_keys_file",
                    format!("{} holds no key", path.display()),
                ));
            }
            keys.extend(found);
        }
        Ok(keys)
    }
}

/// The admin API (`/admin/stats`, `/admin/purge`). Without a key it is off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Environment variable holding the admin key.
    pub api_key_env: Option<String>,
    /// File holding the admin key.
    pub api_key_file: Option<PathBuf>,
}

impl AdminConfig {
    /// The admin key, if configured.
    pub fn key(&self) -> Result<Option<Secret>, ConfigError> {
        one_secret(
            &self.api_key_env,
            &self.api_key_file,
            ("admin.api_key_env", "admin.api_key_file"),
        )
    }
}

/// A secret given by an environment variable or a file (not both); `fields`
/// name the two settings in error messages.
pub(super) fn one_secret(
    env: &Option<String>,
    file: &Option<PathBuf>,
    fields: (&'static str, &'static str),
) -> Result<Option<Secret>, ConfigError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(invalid(
            fields.0,
            "set either the variable or the file, not both",
        )),
        (Some(var), None) => Secret::from_env(var)
            .map(Some)
            .map_err(|m| invalid(fields.0, m)),
        (None, Some(path)) => Secret::from_file(path)
            .map(Some)
            .map_err(|m| invalid(fields.1, m)),
        (None, None) => Ok(None),
    }
}

/// Limits on reading entries out of cached packages (`download-file`), so a
/// hostile package cannot exhaust memory, disk or CPU.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    /// Largest uncompressed file served out of a package.
    pub max_file_size: ByteSize,
    /// Largest ratio of uncompressed to compressed size of one entry.
    pub max_ratio: u64,
    /// Most entries a package's central directory may list.
    pub max_entries: u64,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            max_file_size: ByteSize::gib(1),
            max_ratio: 200,
            max_entries: 100_000,
        }
    }
}

impl ExtractConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_file_size.as_u64() == 0 {
            return Err(invalid(
                "extract.max_file_size",
                "must be greater than zero",
            ));
        }
        if self.max_ratio == 0 {
            return Err(invalid("extract.max_ratio", "must be greater than zero"));
        }
        if self.max_entries == 0 {
            return Err(invalid("extract.max_entries", "must be greater than zero"));
        }
        Ok(())
    }
}
