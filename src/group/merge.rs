//! Merging the answers of a virtual feed's upstreams into one document:
//! version lists, registration indexes, search results. Pure functions on
//! the members' (already rewritten) JSON, table-tested below.

use serde_json::{Map, Value};

use crate::keys::{IdRules, NuGetVersion};

/// The union of flat-container version lists (`{"versions":[...]}`),
/// one entry per normalized version, sorted as NuGet sorts.
pub fn versions(lists: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut all: Vec<NuGetVersion> = Vec::new();
    for body in lists {
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("version list: {e}"))?;
        let Some(list) = doc.get("versions").and_then(Value::as_array) else {
            return Err("version list without `versions`".into());
        };
        // An unparsable entry is the upstream's problem, not a reason to
        // hide the versions the other upstreams list.
        all.extend(
            list.iter()
                .filter_map(Value::as_str)
                .filter_map(|v| NuGetVersion::parse(v).ok()),
        );
    }
    all.sort();
    all.dedup_by(|a, b| Ord::cmp(&*a, &*b).is_eq());
    let versions: Vec<Value> = all.iter().map(|v| Value::String(v.normalized())).collect();
    serde_json::to_vec(&serde_json::json!({ "versions": versions })).map_err(|e| e.to_string())
}

/// One registration index from the members' indexes: their pages, in
/// member order (a client reads every page whose range it needs).
pub fn registration(docs: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut out: Option<Map<String, Value>> = None;
    let mut pages = Vec::new();
    for body in docs {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("registration index: {e}"))?;
        let Value::Object(mut doc) = doc else {
            return Err("registration index is not an object".into());
        };
        if let Some(Value::Array(items)) = doc.remove("items") {
            pages.extend(items);
        }
        // The first member's other fields (`@id`, context) stand for all.
        out.get_or_insert(doc);
    }
    let mut out = out.unwrap_or_default();
    out.insert("count".into(), Value::from(pages.len()));
    out.insert("items".into(), Value::Array(pages));
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

/// One search result from the members' results: each member's hits
/// filtered by its ID rules, the first member's hit kept for an ID found in
/// several, `totalHits` the sum less what was dropped here.
pub fn search(docs: &[(&[u8], &IdRules)]) -> Result<Vec<u8>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut data = Vec::new();
    let mut total: u64 = 0;
    let mut context = None;
    for (body, rules) in docs {
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("search: {e}"))?;
        total += doc.get("totalHits").and_then(Value::as_u64).unwrap_or(0);
        if context.is_none() {
            context = doc.get("@context").cloned();
        }
        let hits = doc.get("data").and_then(Value::as_array).cloned();
        for hit in hits.unwrap_or_default() {
            let id = hit.get("id").and_then(Value::as_str).unwrap_or_default();
            if rules.allows(id) && seen.insert(id.to_lowercase()) {
                data.push(hit);
            } else {
                total = total.saturating_sub(1);
            }
        }
    }
    let mut out = Map::new();
    if let Some(c) = context {
        out.insert("@context".into(), c);
    }
    out.insert("totalHits".into(), Value::from(total));
    out.insert("data".into(), Value::Array(data));
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_are_united_and_sorted() {
        let table: [(&[&str], &str); 4] = [
            (
                &[
                    r#"{"versions":["1.0.0","2.0.0-beta"]}"#,
                    r#"{"versions":["1.0","1.5.0","2.0.0"]}"#,
                ],
                r#"{"versions":["1.0.0","1.5.0","2.0.0-beta","2.0.0"]}"#,
            ),
            (
                &[r#"{"versions":["10.0.0","9.0.0","1.0.0.1"]}"#],
                r#"{"versions":["1.0.0.1","9.0.0","10.0.0"]}"#,
            ),
            (
                &[
                    r#"{"versions":["1.0.0-RC.1","not a version"]}"#,
                    r#"{"versions":["1.0.0-rc.1"]}"#,
                ],
                r#"{"versions":["1.0.0-rc.1"]}"#,
            ),
            (&[], r#"{"versions":[]}"#),
        ];
        for (lists, want) in table {
            let lists: Vec<&[u8]> = lists.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(String::from_utf8(versions(&lists).unwrap()).unwrap(), want);
        }
        assert!(versions(&[b"{}"]).is_err());
    }

    #[test]
    fn registration_pages_are_concatenated() {
        let a =
            br#"{"@id":"a","count":1,"items":[{"@id":"a/p1","lower":"1.0.0","upper":"1.0.0"}]}"#;
        let b = br#"{"@id":"b","count":2,"items":[{"@id":"b/p1"},{"@id":"b/p2"}]}"#;
        let out: Value = serde_json::from_slice(&registration(&[a, b]).unwrap()).unwrap();
        assert_eq!(out["@id"], "a");
        assert_eq!(out["count"], 3);
        let ids: Vec<&str> = out["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["@id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a/p1", "b/p1", "b/p2"]);
    }

    #[test]
    fn search_hits_follow_the_rules_and_the_first_member() {
        let contoso_only = IdRules::new(&["Contoso.*".into()], &[]).unwrap();
        let not_contoso = IdRules::new(&[], &["Contoso.*".into()]).unwrap();
        let internal = br#"{"totalHits":2,"data":[{"id":"Contoso.Lib"},{"id":"Newtonsoft.Json","v":"internal"}]}"#;
        let public = br#"{"totalHits":3,"data":[{"id":"Contoso.Secret"},{"id":"newtonsoft.json","v":"public"},{"id":"Serilog"}]}"#;
        let out: Value = serde_json::from_slice(
            &search(&[(internal, &contoso_only), (public, &not_contoso)]).unwrap(),
        )
        .unwrap();
        let ids: Vec<&str> = out["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        // Newtonsoft.Json is not the internal feed's to give; Contoso.Secret
        // is not nuget.org's.
        assert_eq!(ids, ["Contoso.Lib", "newtonsoft.json", "Serilog"]);
        assert_eq!(out["totalHits"], 3);
    }
}
