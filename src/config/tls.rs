//! The HTTPS listener: address, certificate chain and key (PEM).

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// TLS to clients (rustls; HTTP/2 and HTTP/1.1 by ALPN).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Address of the HTTPS listener, `host:port`; unset = no HTTPS listener.
    pub listen: Option<String>,
    /// Certificate chain, PEM (leaf first).
    pub cert: Option<PathBuf>,
    /// Private key of the leaf certificate, PEM.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    pub(super) fn validate(&self, plain_listen: &str) -> Result<(), ConfigError> {
        let Some(listen) = &self.listen else {
            if self.cert.is_some() || self.key.is_some() {
                return Err(invalid(
                    "tls.listen",
                    "a certificate is set but no listen address",
                ));
            }
            if plain_listen.is_empty() {
                return Err(invalid("listen", "is empty and no tls.listen is set"));
            }
            return Ok(());
        };
        crate::listen::parse_listen(listen).map_err(|m| invalid("tls.listen", m))?;
        for (field, path) in [("tls.cert", &self.cert), ("tls.key", &self.key)] {
            match path {
                None => return Err(invalid(field, "is required with tls.listen")),
                Some(p) if !p.is_file() => {
                    return Err(invalid(
                        field,
                        format!("{} is not a readable file", p.display()),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
