//! `[[feeds]]`: virtual feeds, each one NuGet feed over an ordered list of
//! upstreams with package-ID rules (see `group/`).

use serde::Deserialize;

use crate::keys::{normalize_feed_name, FeedRef, IdRules};

/// One virtual feed, served at `/feeds/{name}/v3/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualFeed {
    /// The feed's name in its URL (`[A-Za-z0-9._-]`, lowercased).
    #[serde(deserialize_with = "feed_name")]
    pub name: String,
    /// Upstreams in order of preference: a package version comes from the
    /// first one that lists it.
    pub upstreams: Vec<Member>,
}

/// One upstream of a virtual feed, with the IDs it may be asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "MemberToml")]
pub struct Member {
    pub feed: FeedRef,
    pub rules: IdRules,
}

/// `Member` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberToml {
    /// `nuget` (the `[nuget]` upstream) or `proget:{feed}` (a NuGet feed of
    /// the `[proget]` server).
    source: String,
    /// ID patterns (`Contoso.*`, exact IDs; case-insensitive) asked of this
    /// upstream; empty means every ID.
    #[serde(default)]
    include: Vec<String>,
    /// ID patterns never asked of this upstream; exclusion wins.
    #[serde(default)]
    exclude: Vec<String>,
}

impl TryFrom<MemberToml> for Member {
    type Error = String;

    fn try_from(m: MemberToml) -> Result<Member, String> {
        let feed = match m.source.split_once(':') {
            None if m.source == "nuget" => FeedRef::Default,
            Some(("proget", f)) => FeedRef::ProGet(
                normalize_feed_name(f).ok_or_else(|| format!("invalid ProGet feed name `{f}`"))?,
            ),
            _ => {
                return Err(format!(
                    "source `{}` is neither `nuget` nor `proget:FEED`",
                    m.source
                ))
            }
        };
        let rules = IdRules::new(&m.include, &m.exclude)?;
        Ok(Member { feed, rules })
    }
}

/// `default_feed`: a feed name, lowercased like `[[feeds]]` names.
pub(super) fn opt_feed_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    feed_name(d).map(Some)
}

fn feed_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    normalize_feed_name(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid feed name `{s}`")))
}

/// Checks what the types cannot: unique names, at least one upstream, each
/// upstream once, a ProGet server for ProGet members, and that the default
/// feed is one of them.
pub fn validate(
    feeds: &[VirtualFeed],
    default: Option<&str>,
    has_proget: bool,
) -> Result<(), String> {
    if let Some(d) = default {
        if !feeds.iter().any(|f| f.name == d) {
            return Err(format!("default_feed `{d}` is not a [[feeds]] name"));
        }
    }
    let mut names = std::collections::HashSet::new();
    for f in feeds {
        if !names.insert(&f.name) {
            return Err(format!("feed `{}` is declared twice", f.name));
        }
        if f.upstreams.is_empty() {
            return Err(format!("feed `{}` has no upstreams", f.name));
        }
        let mut seen = std::collections::HashSet::new();
        for m in &f.upstreams {
            if !seen.insert(&m.feed) {
                return Err(format!("feed `{}` lists an upstream twice", f.name));
            }
            if matches!(m.feed, FeedRef::ProGet(_)) && !has_proget {
                return Err(format!(
                    "feed `{}` has a ProGet upstream but `proget.url` is not set",
                    f.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        feeds: Vec<VirtualFeed>,
    }

    fn parse(s: &str) -> Result<Vec<VirtualFeed>, String> {
        toml::from_str::<Doc>(s)
            .map(|d| d.feeds)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn members_and_their_rules() {
        let feeds = parse(
            r#"
[[feeds]]
name = "All"
upstreams = [
  { source = "proget:Internal", include = ["Contoso.*"] },
  { source = "nuget", exclude = ["Contoso.*"] },
]"#,
        )
        .unwrap();
        assert_eq!(feeds[0].name, "all");
        let m = &feeds[0].upstreams;
        assert_eq!(m[0].feed, FeedRef::ProGet("internal".into()));
        assert_eq!(m[1].feed, FeedRef::Default);
        assert!(m[0].rules.allows("Contoso.Secret") && !m[1].rules.allows("Contoso.Secret"));
        assert!(validate(&feeds, None, true).is_ok());
        assert!(validate(&feeds, None, false)
            .unwrap_err()
            .contains("proget.url"));
        assert!(validate(&feeds, Some("all"), true).is_ok());
        assert!(validate(&feeds, Some("other"), true)
            .unwrap_err()
            .contains("default_feed"));
    }

    #[test]
    fn refusals() {
        let table = [
            (
                r#"name = "a b""#,
                r#"{ source = "nuget" }"#,
                "invalid feed name",
            ),
            (r#"name = "a""#, r#"{ source = "npm" }"#, "neither"),
            (
                r#"name = "a""#,
                r#"{ source = "nuget", include = ["x/y"] }"#,
                "not an ID pattern",
            ),
            (
                r#"name = "a""#,
                r#"{ source = "proget:" }"#,
                "invalid ProGet feed",
            ),
        ];
        for (name, member, want) in table {
            let e = parse(&format!("[[feeds]]\n{name}\nupstreams = [{member}]"));
            let e = e.err().unwrap_or_default();
            assert!(e.contains(want), "{name} {member}: {e}");
        }
        let twice = parse(
            "[[feeds]]\nname = \"a\"\nupstreams = [{ source = \"nuget\" }, { source = \"nuget\" }]",
        )
        .unwrap();
        assert!(validate(&twice, None, true).unwrap_err().contains("twice"));
        let empty = parse("[[feeds]]\nname = \"a\"\nupstreams = []").unwrap();
        assert!(validate(&empty, None, true)
            .unwrap_err()
            .contains("no upstreams"));
    }
}
