//! Whether a flat-container version list (`{"versions":[...]}`) names a
//! version, read in one pass: the list is never built in memory, so a
//! hostile list of millions of entries costs time linear in its size and
//! no memory beyond the document itself.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::keys::normalize_version;

/// Whether `doc`'s `versions` array holds a version that normalizes to
/// `normalized`; an error when `doc` is not JSON.
pub fn lists(doc: &[u8], normalized: &str) -> Result<bool, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(doc);
    let found = de.deserialize_any(Match {
        want: normalized,
        at: At::Document,
    })?;
    de.end()?;
    Ok(found)
}

/// Where in the document a value stands.
#[derive(Clone, Copy, PartialEq)]
enum At {
    /// The whole document: only its `versions` member is looked at.
    Document,
    /// The `versions` value: its string entries are compared.
    List,
    /// One entry of the list.
    Entry,
}

/// Looks for `want` in one value; anything that is not where a version
/// may stand is read through (so invalid JSON is still an error) and
/// matches nothing.
struct Match<'a> {
    want: &'a str,
    at: At,
}

impl<'de> DeserializeSeed<'de> for Match<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Match<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a version list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.at == At::Document && key == "versions" {
                found |= map.next_value_seed(Match {
                    want: self.want,
                    at: At::List,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        if self.at != At::List {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(false);
        }
        let mut found = false;
        let entry = || Match {
            want: self.want,
            at: At::Entry,
        };
        while let Some(hit) = seq.next_element_seed(entry())? {
            found |= hit;
        }
        Ok(found)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(self.at == At::Entry && normalize_version(v).is_ok_and(|n| n == self.want))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_normalized_versions() {
        let table: [(&str, &str, bool); 7] = [
            (r#"{"versions":["1.0.0","2.0.0-beta"]}"#, "2.0.0-beta", true),
            (r#"{"versions":["1.0"]}"#, "1.0.0", true),
            (r#"{"other":["1.0.0"],"versions":[]}"#, "1.0.0", false),
            (
                r#"{"versions":[1,{"a":"1.0.0"},["1.0.0"],"1.0.0"]}"#,
                "1.0.0",
                true,
            ),
            (
                r#"{"versions":[1,{"a":"1.0.0"},["1.0.0"]]}"#,
                "1.0.0",
                false,
            ),
            (r#"{"versions":"1.0.0"}"#, "1.0.0", false),
            (r#"["1.0.0"]"#, "1.0.0", false),
        ];
        for (doc, want, listed) in table {
            assert_eq!(lists(doc.as_bytes(), want).unwrap(), listed, "{doc}");
        }
    }

    #[test]
    fn invalid_json_is_an_error() {
        for doc in [&b"{not json"[..], b"{\"versions\":[\"1.0.0\"", b"{} []"] {
            assert!(lists(doc, "1.0.0").is_err());
        }
    }
}
