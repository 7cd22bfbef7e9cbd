//! Normalization of the `path` a client asks for inside a package: the only
//! input that names a file, so everything that could escape is refused here.

/// Longest entry path accepted.
pub const MAX_PATH: usize = 1024;

/// Checks a requested entry path (already percent-decoded once, as every
/// query value is) and returns it as it must appear in the zip's directory.
/// The result is only ever looked up in the archive, never on the file system;
/// refusing `..`, absolute and drive paths, backslashes, NULs and anything
/// still percent-encoded makes the refusal explicit instead of a silent miss.
pub fn entry_path(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("path is empty".into());
    }
    if raw.len() > MAX_PATH {
        return Err("path is too long".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("path contains control characters".into());
    }
    if raw.contains('\\') {
        return Err("path contains a backslash".into());
    }
    if looks_encoded(raw) {
        return Err("path is still percent-encoded".into());
    }
    if raw.starts_with('/') || raw.as_bytes().get(1) == Some(&b':') {
        return Err("path must be relative".into());
    }
    for seg in raw.split('/') {
        match seg {
            "" => return Err("path has an empty segment".into()),
            "." | ".." => return Err("path must not contain . or ..".into()),
            _ => {}
        }
    }
    Ok(raw.to_owned())
}

/// A `%` followed by two hex digits: a second layer of encoding.
fn looks_encoded(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_table() {
        let ok = [
            ("upack.json", "upack.json"),
            ("package/a b/c d.txt", "package/a b/c d.txt"),
            ("package/deep/er/file.bin", "package/deep/er/file.bin"),
            ("package/100%.txt", "package/100%.txt"),
            ("package/..hidden", "package/..hidden"),
        ];
        for (input, want) in ok {
            assert_eq!(entry_path(input).as_deref(), Ok(want), "{input}");
        }
        let long = "a/".repeat(600) + "b";
        let refused = [
            "",
            "../upack.json",
            "package/../../etc/passwd",
            "package/./x",
            "/etc/passwd",
            "C:/Windows/win.ini",
            "c:x",
            "package\\..\\x",
            "package/%2e%2e/x",
            "%2e%2e%2fetc%2fpasswd",
            "package/%252e%252e/x",
            "package/x\0.txt",
            "package//x",
            "package/",
            "package/x\n",
            long.as_str(),
        ];
        for input in refused {
            assert!(entry_path(input).is_err(), "{input:?} accepted");
        }
    }
}
