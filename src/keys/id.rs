//! NuGet package IDs: validation and .NET `ToLowerInvariant` lowercasing.

/// Why a string is not a valid package ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("package id is empty")]
    Empty,
    #[error("package id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    #[error("package id has invalid characters")]
    Invalid,
}

/// NuGet's limit on ID length, in characters.
pub const MAX_ID_LEN: usize = 100;

/// .NET's `\w`: letters, digits, marks and connector punctuation. Rust has no
/// category lookup for marks/connectors, so letters, digits and `_` are accepted,
/// which is what real package IDs use.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Checks `^\w+([.-]\w+)*$` and the length limit.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    let mut prev_sep = true; // start behaves like "after a separator"
    for c in id.chars() {
        if c == '.' || c == '-' {
            if prev_sep {
                return Err(IdError::Invalid);
            }
            prev_sep = true;
        } else if is_word(c) {
            prev_sep = false;
        } else {
            return Err(IdError::Invalid);
        }
    }
    if prev_sep {
        return Err(IdError::Invalid);
    }
    Ok(())
}

/// Per-character simple case mapping, like .NET's `ToLowerInvariant`. Rust's
/// `str::to_lowercase` applies final-sigma and multi-character rules instead,
/// which would give a different key for the same package.
pub fn lower_invariant(s: &str) -> String {
    // Nearly every ID is ASCII, where both mappings agree: one pass over
    // bytes instead of a char-by-char case lookup on every request.
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Validates and lowercases an ID: the form used in URLs and cache keys.
pub fn normalize_id(id: &str) -> Result<String, IdError> {
    validate_id(id)?;
    Ok(lower_invariant(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_like_dotnet() {
        let table = [
            ("Newtonsoft.Json", "newtonsoft.json"),
            ("newtonsoft.json", "newtonsoft.json"),
            ("NEWTONSOFT.JSON", "newtonsoft.json"),
            (
                "Microsoft.Extensions.Logging-Abstractions",
                "microsoft.extensions.logging-abstractions",
            ),
            ("My_Package1", "my_package1"),
            // Final sigma: .NET maps Σ to σ everywhere; str::to_lowercase would give ς.
            ("ΟΔΟΣ", "οδοσ"),
            // U+0130 has a two-character full lowercase; the simple mapping is 'i'.
            ("İpsum", "ipsum"),
        ];
        for (input, want) in table {
            assert_eq!(normalize_id(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn validates_shape_and_length() {
        let table = [
            ("", Err(IdError::Empty)),
            ("a", Ok(())),
            ("a.b-c_d", Ok(())),
            (".a", Err(IdError::Invalid)),
            ("a.", Err(IdError::Invalid)),
            ("a..b", Err(IdError::Invalid)),
            ("a.-b", Err(IdError::Invalid)),
            ("..", Err(IdError::Invalid)),
            ("a/b", Err(IdError::Invalid)),
            ("a b", Err(IdError::Invalid)),
            ("a%2Fb", Err(IdError::Invalid)),
            ("a\\b", Err(IdError::Invalid)),
            ("a\0b", Err(IdError::Invalid)),
        ];
        for (input, want) in table {
            assert_eq!(validate_id(input), want, "{input:?}");
        }
        assert_eq!(validate_id(&"a".repeat(100)), Ok(()));
        assert_eq!(validate_id(&"a".repeat(101)), Err(IdError::TooLong));
    }
}
