//! Command-line flags, and how they override the configuration file.

use std::path::PathBuf;

use clap::Parser;
use url::Url;

use crate::config::{Config, ConfigError};

/// A caching pull-through proxy for NuGet and ProGet feeds.
#[derive(Debug, Parser)]
#[command(name = "feedcache", version, about)]
pub struct Cli {
    /// Configuration file (TOML); without it the embedded defaults are used.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub check: bool,
    /// Listen address, e.g. 127.0.0.1:5000 (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Cache directory.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Service index URL of the default NuGet upstream.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<Url>,
    /// Base URL of a ProGet server to front.
    #[arg(long, value_name = "URL")]
    pub proget_url: Option<Url>,
    /// Public base URL clients use to reach feedcache.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<Url>,
    /// Metadata TTL, e.g. 2m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub metadata_ttl: Option<std::time::Duration>,
    /// Worker threads (0 = one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Serve only what is cached; never contact an upstream (a miss is a 503).
    #[arg(long)]
    pub offline: bool,
}

impl Cli {
    /// The file (or defaults) with flags applied on top, validated.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.listen {
            c.listen = v.clone();
        }
        if let Some(v) = &self.cache_dir {
            c.cache.dir = v.clone();
        }
        if let Some(v) = &self.upstream {
            c.nuget.service_index = v.clone();
        }
        if let Some(v) = &self.proget_url {
            c.proget.url = Some(v.clone());
        }
        if let Some(v) = &self.public_url {
            c.public_url = Some(v.clone());
        }
        if let Some(v) = self.metadata_ttl {
            c.cache.metadata_ttl = v;
        }
        if let Some(v) = self.threads {
            c.threads = v;
        }
        if self.offline {
            c.upstream.offline = true;
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:7000\"\n[cache]\ndir = \"/var/x\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "feedcache",
            "-c",
            f.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9/v3/index.json",
        ]);
        let c = cli.load_config().unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.cache.dir, PathBuf::from("/var/x"));
        assert_eq!(
            c.nuget.service_index.as_str(),
            "http://127.0.0.1:9/v3/index.json"
        );
    }

    #[test]
    fn invalid_flag_value_is_an_error() {
        let cli = Cli::parse_from(["feedcache", "--listen", "nope"]);
        assert!(cli.load_config().is_err());
    }
}
