//! Package URLs (`pkg:type/namespace/name@version?qualifiers#subpath`), as the
//! ProGet packages API accepts them in `purl=`.

use percent_encoding::percent_decode_str;

/// A parsed package URL; components are percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    /// Package type, lowercased (`nuget`, `npm`, `upack`...).
    pub kind: String,
    /// Namespace (`group` in ProGet terms), when present.
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    /// Qualifiers, still encoded, passed through as they came.
    pub qualifiers: Option<String>,
}

/// Parses a package URL; the error says what is wrong with it.
pub fn parse(s: &str) -> Result<Purl, String> {
    let rest = s
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("pkg:"))
        .map(|_| &s[4..])
        .ok_or("purl must start with pkg:")?;
    let rest = rest.trim_start_matches('/');
    let rest = rest.split('#').next().unwrap_or("");
    let (rest, qualifiers) = match rest.split_once('?') {
        Some((r, q)) => (r, (!q.is_empty()).then(|| q.to_owned())),
        None => (rest, None),
    };
    let slash = rest.rfind('/').ok_or("purl has no package name")?;
    let (rest, version) = match rest.rfind('@') {
        Some(at) if at > slash => (&rest[..at], Some(decode(&rest[at + 1..])?)),
        _ => (rest, None),
    };
    let mut segs = rest.split('/').filter(|s| !s.is_empty());
    let kind = segs.next().ok_or("purl has no type")?.to_ascii_lowercase();
    if !kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
    {
        return Err("purl type is invalid".into());
    }
    let mut parts: Vec<String> = segs.map(decode).collect::<Result<_, _>>()?;
    let name = parts
        .pop()
        .filter(|n| !n.is_empty())
        .ok_or("purl has no package name")?;
    let namespace = (!parts.is_empty()).then(|| parts.join("/"));
    Ok(Purl {
        kind,
        namespace,
        name,
        version: version.filter(|v| !v.is_empty()),
        qualifiers,
    })
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "purl is not valid UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: &str, ns: Option<&str>, name: &str, v: Option<&str>) -> Purl {
        Purl {
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
            version: v.map(Into::into),
            qualifiers: None,
        }
    }

    #[test]
    fn purls_table() {
        let table = [
            (
                "pkg:nuget/Newtonsoft.Json@13.0.1",
                Ok(p("nuget", None, "Newtonsoft.Json", Some("13.0.1"))),
            ),
            (
                "PKG:NuGet/Foo@1.0.0+meta",
                Ok(p("nuget", None, "Foo", Some("1.0.0+meta"))),
            ),
            ("pkg:nuget/Foo", Ok(p("nuget", None, "Foo", None))),
            ("pkg:nuget/Foo@", Ok(p("nuget", None, "Foo", None))),
            (
                "pkg:npm/%40scope/pkg@1.2.3",
                Ok(p("npm", Some("@scope"), "pkg", Some("1.2.3"))),
            ),
            (
                "pkg:npm/@scope/pkg",
                Ok(p("npm", Some("@scope"), "pkg", None)),
            ),
            (
                "pkg:upack/a/b/tool@2.0.0#sub",
                Ok(p("upack", Some("a/b"), "tool", Some("2.0.0"))),
            ),
            (
                "pkg:nuget/Foo@1%2E0",
                Ok(p("nuget", None, "Foo", Some("1.0"))),
            ),
            ("nuget/Foo@1.0", Err(())),
            ("pkg:", Err(())),
            ("pkg:nuget", Err(())),
            ("pkg:nu get/Foo@1", Err(())),
            ("pkg:nuget/Foo@%FF", Err(())),
        ];
        for (input, want) in table {
            let got = parse(input).map_err(|_| ());
            assert_eq!(got, want, "{input}");
        }
        let q = parse("pkg:pypi/foo@1.0?filename=foo-1.0.tar.gz").unwrap();
        assert_eq!(q.qualifiers.as_deref(), Some("filename=foo-1.0.tar.gz"));
    }
}
