//! feedcache: a caching pull-through proxy for NuGet and ProGet package feeds.

pub mod admin;
pub mod app;
pub mod auth;
pub mod background;
pub mod breaker;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod feeds;
pub mod keys;
pub mod listen;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod offload;
pub mod proget;
pub mod rawlink;
pub mod rewrite;
pub mod routes;
pub mod secret;
pub mod server;
pub mod startup;
pub mod upstream;
pub mod versions;
