//! Command-line flags, and how they override the configuration file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use url::Url;

use crate::config::{Config, ConfigError};

/// A caching pull-through proxy for NuGet and ProGet feeds.
#[derive(Debug, Parser)]
// The server's flags say nothing to a subcommand; refusing them together
// beats silently ignoring `--listen` in `feedcache --listen X warm`.
#[command(
    name = "feedcache",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Without a subcommand, feedcache serves.
    #[command(subcommand)]
    pub command: Option<Command>,
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

/// What feedcache does other than serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill a running feedcache's cache with the packages that lock files
    /// and package lists name (e.g. before `dotnet restore --locked-mode`).
    Warm(crate::warm::WarmArgs),
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
    fn warm_is_a_subcommand_and_serving_stays_the_default() {
        let cli = Cli::parse_from(["feedcache", "-c", "x.toml", "--listen", "127.0.0.1:0"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.listen.as_deref(), Some("127.0.0.1:0"));

        let cli = Cli::parse_from(["feedcache", "warm", "a.json", "b.txt"]);
        let Some(Command::Warm(w)) = cli.command else {
            panic!("not warm: {cli:?}");
        };
        assert_eq!(w.server.as_str(), crate::warm::DEFAULT_SERVER);
        assert_eq!(w.concurrency, 8);
        assert_eq!(w.files, [PathBuf::from("a.json"), PathBuf::from("b.txt")]);

        let cli = Cli::parse_from([
            "feedcache",
            "warm",
            "--server",
            "http://feedcache:5000/v3/index.json",
            "--concurrency",
            "3",
            "a.json",
        ]);
        let Some(Command::Warm(w)) = cli.command else {
            panic!("not warm: {cli:?}");
        };
        assert_eq!((w.server.host_str(), w.concurrency), (Some("feedcache"), 3));

        // Usage errors: no files, a zero concurrency, server flags with warm.
        for args in [
            &["feedcache", "warm"][..],
            &["feedcache", "warm", "--concurrency", "0", "a"],
            &["feedcache", "warm", "--server", "not a url", "a"],
            &["feedcache", "--listen", "127.0.0.1:0", "warm", "a"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn invalid_flag_value_is_an_error() {
        let cli = Cli::parse_from(["feedcache", "--listen", "nope"]);
        assert!(cli.load_config().is_err());
    }
}
