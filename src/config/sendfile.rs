//! `sendfile`: which large cached bodies leave by `sendfile(2)` instead of
//! being written from their mapping. Written `"auto"` (the default),
//! `true` or `false`.

use serde::Deserialize;

/// Which large cached bodies on plain HTTP/1.1 leave by `sendfile(2)`.
/// Bodies too large to be held mapped (over 64 MiB) always do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum SendfilePolicy {
    /// `"auto"`: by `sendfile` to a client on another host, from the
    /// mapping to one on this host. Over a network `sendfile` saves the
    /// server the copy through user space (half the server CPU per 50 MB
    /// hit at 64 connections, BENCHMARKS.md) and costs the client nothing;
    /// a client on this host (a local reverse proxy, the load harness)
    /// reads the data itself, and reads the pages the server's copy just
    /// brought into the shared CPU cache faster than cold page-cache
    /// pages.
    #[default]
    Auto,
    /// `true`: to every client.
    Always,
    /// `false`: mapped bodies are written from the mapping to every
    /// client.
    Mapped,
}

impl TryFrom<toml::Value> for SendfilePolicy {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Boolean(true) => Ok(Self::Always),
            toml::Value::Boolean(false) => Ok(Self::Mapped),
            toml::Value::String(s) if s == "auto" => Ok(Self::Auto),
            other => Err(format!("expected \"auto\", true or false, not {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SendfilePolicy;

    #[derive(serde::Deserialize)]
    struct Top {
        sendfile: SendfilePolicy,
    }

    #[test]
    fn the_three_spellings_are_read_and_others_refused() {
        let cases = [
            ("sendfile = \"auto\"", Some(SendfilePolicy::Auto)),
            ("sendfile = true", Some(SendfilePolicy::Always)),
            ("sendfile = false", Some(SendfilePolicy::Mapped)),
            ("sendfile = \"yes\"", None),
            ("sendfile = 1", None),
        ];
        for (text, want) in cases {
            let got = toml::from_str::<Top>(text).ok().map(|t| t.sendfile);
            assert_eq!(got, want, "{text}");
        }
    }
}
