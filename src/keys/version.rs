//! NuGet version normalization: every spelling of a version maps to one string.
//!
//! Follows NuGet.Versioning's `VersionFormatter` "N" format as described in
//! protocol-notes.md: 1–4 numeric parts, missing parts 0, leading zeros dropped,
//! `.Revision` only when non-zero, prerelease kept (lowercased), metadata dropped.

/// Why a string is not a NuGet version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version is empty")]
    Empty,
    #[error("version is too long")]
    TooLong,
    #[error("version has {0} numeric parts (1 to 4 allowed)")]
    PartCount(usize),
    #[error("version part is not a number")]
    NotNumeric,
    #[error("version part is out of range")]
    OutOfRange,
    #[error("invalid prerelease label")]
    BadPrerelease,
    #[error("invalid build metadata")]
    BadMetadata,
}

/// Longest version string accepted; NuGet itself has no hard limit, but nothing
/// legitimate comes near this and it bounds work on hostile input.
pub const MAX_VERSION_LEN: usize = 256;

/// A parsed version, comparable by its normalized form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NuGetVersion {
    parts: [u32; 4],
    /// Prerelease labels, lowercased, without the leading `-`.
    prerelease: Option<String>,
}

impl NuGetVersion {
    /// Parses any spelling NuGet accepts.
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if s.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        let (rest, metadata) = match s.split_once('+') {
            Some((r, m)) => (r, Some(m)),
            None => (s, None),
        };
        if let Some(m) = metadata {
            if !labels_ok(m) {
                return Err(VersionError::BadMetadata);
            }
        }
        let (numbers, prerelease) = match rest.split_once('-') {
            Some((n, p)) => (n, Some(p)),
            None => (rest, None),
        };
        if let Some(p) = prerelease {
            if !labels_ok(p) {
                return Err(VersionError::BadPrerelease);
            }
        }
        let mut parts = [0u32; 4];
        let count = numbers.split('.').count();
        if count > 4 {
            return Err(VersionError::PartCount(count));
        }
        for (i, piece) in numbers.split('.').enumerate() {
            if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::NotNumeric);
            }
            // NuGet stores parts as Int32.
            let v: u32 = piece.parse().map_err(|_| VersionError::OutOfRange)?;
            if v > i32::MAX as u32 {
                return Err(VersionError::OutOfRange);
            }
            parts[i] = v;
        }
        Ok(NuGetVersion {
            parts,
            prerelease: prerelease.map(lower_ascii),
        })
    }

    /// The normalized, lowercased form used in URLs and cache keys.
    pub fn normalized(&self) -> String {
        // Numbers by `itoa`, not `write!`: this runs for every package
        // request's key, and the formatting machinery was most of its cost.
        let mut num = itoa::Buffer::new();
        let [a, b, c, d] = self.parts;
        let mut out = String::with_capacity(16 + self.prerelease.as_ref().map_or(0, |p| p.len()));
        for (i, part) in [a, b, c, d].into_iter().enumerate() {
            if i == 3 && part == 0 {
                break;
            }
            if i > 0 {
                out.push('.');
            }
            out.push_str(num.format(part));
        }
        if let Some(p) = &self.prerelease {
            out.push('-');
            out.push_str(p);
        }
        out
    }

    /// Whether this is a prerelease version.
    pub fn is_prerelease(&self) -> bool {
        self.prerelease.is_some()
    }
}

/// NuGet's order (SemVer 2 precedence over the four numeric parts): a
/// release sorts after its prereleases; prerelease labels compare one by
/// one, numeric ones as numbers and below alphanumeric ones, which compare
/// case-insensitively (they are lowercased already); more labels sort
/// after fewer when the shared ones are equal.
impl Ord for NuGetVersion {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        self.parts
            .cmp(&other.parts)
            .then_with(|| match (&self.prerelease, &other.prerelease) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => {
                    let (mut a, mut b) = (a.split('.'), b.split('.'));
                    loop {
                        match (a.next(), b.next()) {
                            (None, None) => return Ordering::Equal,
                            (None, Some(_)) => return Ordering::Less,
                            (Some(_), None) => return Ordering::Greater,
                            (Some(x), Some(y)) => {
                                let o = label_cmp(x, y);
                                if o != Ordering::Equal {
                                    return o;
                                }
                            }
                        }
                    }
                }
            })
    }
}

impl PartialOrd for NuGetVersion {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One prerelease label against another (see `Ord for NuGetVersion`).
fn label_cmp(x: &str, y: &str) -> std::cmp::Ordering {
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match (numeric(x), numeric(y)) {
        // Longer digit strings are larger numbers (leading zeros aside).
        (true, true) => {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

/// Normalizes a version string in one step.
pub fn normalize_version(s: &str) -> Result<String, VersionError> {
    NuGetVersion::parse(s).map(|v| v.normalized())
}

/// Dot-separated, non-empty labels of `[0-9A-Za-z-]`.
fn labels_ok(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn lower_ascii(s: &str) -> String {
    s.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_as_nuget_sorts() {
        let sorted = [
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-Beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.0.1",
            "1.0.1",
            "1.10.0",
            "2.0.0-0",
            "2.0.0-9",
            "2.0.0-10",
            "2.0.0-a",
        ];
        let v: Vec<NuGetVersion> = sorted
            .iter()
            .map(|s| NuGetVersion::parse(s).unwrap())
            .collect();
        for w in v.windows(2) {
            assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
        }
        let same = |a: &str, b: &str| {
            NuGetVersion::parse(a)
                .unwrap()
                .cmp(&NuGetVersion::parse(b).unwrap())
        };
        assert_eq!(same("1.0", "1.0.0.0+meta"), std::cmp::Ordering::Equal);
        assert_eq!(same("1.0.0-RC", "1.0.0-rc"), std::cmp::Ordering::Equal);
    }

    #[test]
    fn normalizes_every_spelling_from_the_notes() {
        let table = [
            ("1.0", "1.0.0"),
            ("1", "1.0.0"),
            ("1.00", "1.0.0"),
            ("1.01.1", "1.1.1"),
            ("1.0.0.0", "1.0.0"),
            ("1.00.0.1", "1.0.0.1"),
            ("1.0.01.0", "1.0.1"),
            ("1.0.7+r3456", "1.0.7"),
            ("1.0.0-Beta.1", "1.0.0-beta.1"),
            ("1.00.0", "1.0.0"),
            ("1.0.0+metadata", "1.0.0"),
            ("1.0.0-Beta", "1.0.0-beta"),
            ("1.0.0-BETA+Build.5", "1.0.0-beta"),
            ("13.0.1", "13.0.1"),
            ("2.1.0-preview1-final", "2.1.0-preview1-final"),
            ("0.0.0.0", "0.0.0"),
            ("4.0.0.5-rc.1", "4.0.0.5-rc.1"),
            ("2147483647.0.0", "2147483647.0.0"),
        ];
        for (input, want) in table {
            assert_eq!(normalize_version(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_what_nuget_rejects() {
        let table = [
            ("", VersionError::Empty),
            ("1.0.0.0.0", VersionError::PartCount(5)),
            ("a.b", VersionError::NotNumeric),
            ("1..0", VersionError::NotNumeric),
            ("1.0.", VersionError::NotNumeric),
            (".1", VersionError::NotNumeric),
            ("-1.0", VersionError::NotNumeric),
            ("1.0.0-", VersionError::BadPrerelease),
            ("1.0.0-beta..1", VersionError::BadPrerelease),
            ("1.0.0-be_ta", VersionError::BadPrerelease),
            ("1.0.0+", VersionError::BadMetadata),
            ("1.0.0+a+b", VersionError::BadMetadata),
            ("2147483648.0.0", VersionError::OutOfRange),
            ("99999999999999999999.0", VersionError::OutOfRange),
            ("1.0 ", VersionError::NotNumeric),
            ("1.0/../x", VersionError::NotNumeric),
        ];
        for (input, want) in table {
            assert_eq!(normalize_version(input), Err(want), "{input:?}");
        }
        assert_eq!(
            normalize_version(&"1".repeat(300)),
            Err(VersionError::TooLong)
        );
    }

    #[test]
    fn normalized_output_is_a_fixed_point() {
        for v in ["1.0.0", "1.0.0.1", "1.0.0-beta.1", "10.20.30-rc-1"] {
            assert_eq!(normalize_version(v).unwrap(), v);
        }
    }
}
