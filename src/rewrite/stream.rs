//! One-pass rewriting of a JSON document: serde_json's parser drives a
//! visitor that writes each value to the output as it is read, with string
//! values passed through the `Rewriter`. Nothing is built in memory but the
//! output, so memory is about the document's size whatever its shape: a
//! 63 MB page of tiny values once took 3.4 GB as a `serde_json::Value` tree.
//!
//! Limits: serde_json refuses nesting deeper than 128 levels, and
//! `MAX_NODES` bounds the values (and so the CPU) one document may cost.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Rewriter;

/// Most values (strings, numbers, objects, ...) one document may hold.
/// nuget.org's largest registration indexes hold a few hundred thousand.
pub const MAX_NODES: u64 = 8_000_000;

/// Rewrites `body` into a new document; errors on invalid JSON or limits.
pub fn rewrite(rw: &Rewriter, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Out {
        rw,
        buf: Vec::with_capacity(body.len() + body.len() / 8),
        nodes: 0,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    Value {
        out: &mut out,
        comma: false,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(out.buf)
}

/// The document written so far.
struct Out<'r> {
    rw: &'r Rewriter,
    buf: Vec<u8>,
    nodes: u64,
}

impl Out<'_> {
    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(E::custom(format!("more than {MAX_NODES} values")));
        }
        Ok(())
    }

    /// A JSON string literal, escaped as serde_json escapes.
    fn string<E: de::Error>(&mut self, s: &str) -> Result<(), E> {
        serde_json::to_writer(&mut self.buf, s).map_err(E::custom)
    }

    fn number<E: de::Error, N: serde::Serialize>(&mut self, n: N) -> Result<(), E> {
        self.count()?;
        serde_json::to_writer(&mut self.buf, &n).map_err(E::custom)
    }
}

/// One value, written where it stands; `comma` when it follows another
/// element (the seed only runs when there is an element, so it knows).
struct Value<'a, 'r> {
    out: &'a mut Out<'r>,
    comma: bool,
}

impl<'de> DeserializeSeed<'de> for Value<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.comma {
            self.out.buf.push(b',');
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out.count()?;
        let text: &[u8] = if v { b"true" } else { b"false" };
        self.out.buf.extend_from_slice(text);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.out.number(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.out.number(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.out.number(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.count()?;
        self.out.buf.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.count()?;
        match self.out.rw.map(v) {
            Some(new) => self.out.string(&new),
            None => self.out.string(v),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.count()?;
        self.out.buf.push(b'[');
        let mut comma = false;
        while seq
            .next_element_seed(Value {
                out: &mut *self.out,
                comma,
            })?
            .is_some()
        {
            comma = true;
        }
        self.out.buf.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.count()?;
        self.out.buf.push(b'{');
        let mut comma = false;
        while map
            .next_key_seed(Key {
                out: &mut *self.out,
                comma,
            })?
            .is_some()
        {
            map.next_value_seed(Value {
                out: &mut *self.out,
                comma: false,
            })?;
            comma = true;
        }
        self.out.buf.push(b'}');
        Ok(())
    }
}

/// An object key: written as it is (keys are never rewritten), then `:`.
struct Key<'a, 'r> {
    out: &'a mut Out<'r>,
    comma: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.comma {
            self.out.buf.push(b',');
        }
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.string(v)?;
        self.out.buf.push(b':');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::MARKER;

    fn rw() -> Rewriter {
        Rewriter::new(vec![(
            "https://up.example/flat/".into(),
            format!("{MARKER}/v3/flatcontainer/"),
        )])
    }

    /// Output equals what parsing to a tree, rewriting and printing gives.
    #[test]
    fn same_as_a_tree_rewrite() {
        let docs = [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":[1,-2,3.5,1e3,true,false,null,"x"],"b":{"c":{}}}"#,
            r#" { "@id" : "https://up.example/flat/a/index.json" , "k":"\u00e9\"\\/" } "#,
            r#"["https:\/\/up.example\/flat\/x", "https://up.example/other"]"#,
            r#"{"https://up.example/flat/key":"https://up.example/flat/v"}"#,
            r#"18446744073709551615"#,
            r#""just a string""#,
        ];
        for doc in docs {
            let mut tree: serde_json::Value = serde_json::from_str(doc).unwrap();
            rw().rewrite_value(&mut tree);
            let want = serde_json::to_vec(&tree).unwrap();
            let got = rewrite(&rw(), doc.as_bytes()).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap(),
                "{doc}"
            );
        }
    }

    #[test]
    fn refuses_bad_documents() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let table: [(&str, &[u8]); 5] = [
            ("not json", b"{not json"),
            ("trailing", b"{} {}"),
            ("truncated", b"[1,2"),
            ("too deep", deep.as_bytes()),
            ("empty", b""),
        ];
        for (what, doc) in table {
            assert!(rewrite(&rw(), doc).is_err(), "{what}");
        }
    }

    #[test]
    fn counts_values() {
        let mut out = Out {
            rw: &rw(),
            buf: Vec::new(),
            nodes: MAX_NODES,
        };
        let r: Result<(), serde_json::Error> = out.count();
        assert!(r.is_err());
        // A document of many small values stays about its own size.
        let doc = format!("[{}0]", "0,".repeat(100_000));
        let got = rewrite(&rw(), doc.as_bytes()).unwrap();
        assert_eq!(got, doc.as_bytes());
    }
}
