//! Secrets (API keys) that must never reach a log line, an error or a response.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A secret string. `Debug` and `Display` print a placeholder, so a secret
/// that ends up in a formatted message or a `{:?}` of a config shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from an environment variable.
    pub fn from_env(var: &str) -> Result<Secret, String> {
        match std::env::var(var) {
            Ok(v) => Self::checked(v.trim().to_owned(), &format!("environment variable {var}")),
            Err(_) => Err(format!("environment variable {var} is not set")),
        }
    }

    /// Reads a secret from a file (trailing newline ignored).
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::checked(text.trim().to_owned(), &path.display().to_string())
    }

    /// Several secrets, one per line (or separated by commas); blank lines and
    /// `#` comments are skipped.
    pub fn list(text: &str) -> Vec<Secret> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Secret(s.to_owned()))
            .collect()
    }

    fn checked(s: String, origin: &str) -> Result<Secret, String> {
        if s.is_empty() {
            return Err(format!("{origin} is empty"));
        }
        // Header values cannot carry control characters; catch it at startup.
        if s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("{origin} contains spaces or control characters"));
        }
        Ok(Secret(s))
    }

    /// Compares in time independent of where the inputs differ, by comparing
    /// fixed-length digests.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(candidate.as_bytes());
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formatted() {
        let s = Secret("hunter2".into());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches(""));
    }

    #[test]
    fn lists_and_files() {
        let l = Secret::list("a1, b2\n# comment\n\nc3 # trailing\n");
        let got: Vec<&str> = l.iter().map(Secret::expose).collect();
        assert_eq!(got, ["a1", "b2", "c3"]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "key-1\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "key-1");
        std::fs::write(&p, "\n").unwrap();
        assert!(Secret::from_file(&p).unwrap_err().contains("empty"));
        std::fs::write(&p, "a b").unwrap();
        assert!(Secret::from_file(&p).is_err());
    }
}
