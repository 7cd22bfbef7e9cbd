//! The feedcache binary: parse flags, then either run a subcommand
//! (`warm`) or load the config and serve.

use std::process::ExitCode;

/// See Cargo.toml: a per-thread-heap allocator for the request path.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use feedcache::cli::{Cli, Command};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Warm(args)) = cli.command.take() {
        return feedcache::warm::run(args);
    }
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("feedcache: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        if let Err(e) = config.check_cache_dir() {
            eprintln!("feedcache: {e}");
            return ExitCode::from(2);
        }
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    feedcache::logging::init();
    match feedcache::startup::run(config) {
        Ok(never) => match never {},
        Err(e) => {
            feedcache::logging::flush();
            eprintln!("feedcache: {e}");
            ExitCode::FAILURE
        }
    }
}
