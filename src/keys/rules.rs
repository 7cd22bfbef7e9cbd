//! Package-ID rules of one upstream of a virtual feed: which IDs may be
//! asked of it. The guard against dependency confusion: with `Contoso.*`
//! included only on the internal feed and excluded on nuget.org, a public
//! `Contoso.Secret` is never requested, listed or downloaded.

/// One pattern: an exact ID, or a prefix ending in `*` (`Contoso.*`);
/// compared case-insensitively, as NuGet compares IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        let lower = s.trim().to_lowercase();
        let (body, prefix) = match lower.strip_suffix('*') {
            Some(b) => (b, true),
            None => (lower.as_str(), false),
        };
        // What may precede the `*`: the characters of a NuGet ID.
        let ok = body
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok || (body.is_empty() && !prefix) {
            return Err(format!(
                "`{s}` is not an ID pattern (an ID, or an ID prefix ending in `*`)"
            ));
        }
        Ok(if prefix {
            Pattern::Prefix(body.to_owned())
        } else {
            Pattern::Exact(body.to_owned())
        })
    }

    /// `id` is lowercased already.
    fn matches(&self, id: &str) -> bool {
        match self {
            Pattern::Exact(p) => id == p,
            Pattern::Prefix(p) => id.starts_with(p.as_str()),
        }
    }
}

/// Include and exclude lists of one upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRules {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl IdRules {
    /// Parses the lists; an empty `include` means every ID.
    pub fn new(include: &[String], exclude: &[String]) -> Result<IdRules, String> {
        let parse = |l: &[String]| -> Result<Vec<Pattern>, String> {
            l.iter().map(|p| Pattern::parse(p)).collect()
        };
        Ok(IdRules {
            include: parse(include)?,
            exclude: parse(exclude)?,
        })
    }

    /// Whether `id` may be asked of this upstream: included (or no include
    /// list) and not excluded. Exclusion wins.
    pub fn allows(&self, id: &str) -> bool {
        let id = id.to_lowercase();
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(&id)))
            && !self.exclude.iter().any(|p| p.matches(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(include: &[&str], exclude: &[&str]) -> IdRules {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        IdRules::new(&own(include), &own(exclude)).unwrap()
    }

    #[test]
    fn include_exclude_table() {
        let internal = rules(&["Contoso.*", "Fabrikam.Tools"], &[]);
        let public = rules(&[], &["contoso.*", "FABRIKAM.TOOLS"]);
        let table = [
            ("Contoso.Secret", true, false),
            ("contoso.secret", true, false),
            ("CONTOSO.LIB.CORE", true, false),
            ("Fabrikam.Tools", true, false),
            ("Fabrikam.Tools.Extra", false, true),
            ("Contoso", false, true),
            ("Newtonsoft.Json", false, true),
            ("ContosoX", false, true),
        ];
        for (id, inside, outside) in table {
            assert_eq!(internal.allows(id), inside, "internal {id}");
            assert_eq!(public.allows(id), outside, "public {id}");
        }
        // Exclusion wins over inclusion; `*` alone is every ID.
        let both = rules(&["*"], &["Contoso.Secret"]);
        assert!(both.allows("Contoso.Other") && !both.allows("contoso.secret"));
        assert!(IdRules::default().allows("anything"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "Con*oso", "a/b", "x y", "Contoso.**"] {
            assert!(IdRules::new(&[bad.to_string()], &[]).is_err(), "{bad:?}");
        }
    }
}
