//! What `feedcache warm` reads: NuGet lock files (`packages.lock.json`) and
//! plain package lists, turned into packages keyed the way the server keys
//! them. Pure: the caller reads the files, so every format rule is
//! table-tested here without a disk or a network.

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use crate::keys::{normalize_id, normalize_version};

/// One package to warm: as the file spelled it (for messages) and as the
/// server keys it (for the URL and for de-duplication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub id: String,
    pub version: String,
    /// .NET `ToLowerInvariant` of the id, as `keys::id` computes it.
    pub lower_id: String,
    /// NuGet-normalized, lowercased version, as `keys::version` computes it.
    pub lower_version: String,
}

impl Package {
    /// Validates and normalizes an id and a version; the error names what
    /// is wrong in words a person can act on.
    pub fn new(id: &str, version: &str) -> Result<Package, String> {
        let lower_id = normalize_id(id).map_err(|e| format!("invalid package id {id:?}: {e}"))?;
        let lower_version =
            normalize_version(version).map_err(|e| format!("invalid version {version:?}: {e}"))?;
        Ok(Package {
            id: id.to_owned(),
            version: version.to_owned(),
            lower_id,
            lower_version,
        })
    }

    /// The flat container path of the package below `PackageBaseAddress`.
    pub fn nupkg_path(&self) -> String {
        let (id, v) = (&self.lower_id, &self.lower_version);
        format!("{id}/{v}/{id}.{v}.nupkg")
    }
}

/// Where in a file a problem is: a line of a plain list, or an entry of a
/// lock file (serde_json's tree has no line numbers, the entry's path does
/// the same job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Line(usize),
    Entry(String),
}

/// A line or entry that names no usable package, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub place: Place,
    pub reason: String,
}

impl fmt::Display for Problem {
    /// `3: reason` or `dependencies/net8.0/Foo: reason`, to follow `file:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Line(n) => write!(f, "{n}: {}", self.reason),
            Place::Entry(path) => write!(f, " {path}: {}", self.reason),
        }
    }
}

/// Everything one file yielded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub packages: Vec<Package>,
    pub problems: Vec<Problem>,
}

/// Reads one file's text: a lock file when it is JSON with a `dependencies`
/// object, else a plain list.
pub fn parse(text: &str) -> Parsed {
    // Editors on Windows may save either kind with a byte-order mark, which
    // serde_json (rightly) refuses as JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match serde_json::from_str::<Value>(text) {
        Ok(doc) => match doc.get("dependencies").and_then(Value::as_object) {
            Some(deps) => lock_file(deps),
            None => not_a_lock_file(text, "JSON without a \"dependencies\" object"),
        },
        // A truncated or hand-broken lock file would otherwise be read as a
        // list and reported line by line with a misleading reason.
        Err(e) if looks_like_json(text) => Parsed {
            packages: Vec::new(),
            problems: vec![Problem {
                place: Place::Line(e.line()),
                reason: format!("not a valid lock file: {e}"),
            }],
        },
        Err(_) => plain_list(text),
    }
}

/// A list line never starts with `{` (ids start with a letter or digit),
/// so such a file was meant as JSON.
fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// JSON that is not a lock file: still read as a list (the rule is "a lock
/// file, else a list"), which reports its lines; but a JSON object can only
/// be a wrong file, so it is reported as one.
fn not_a_lock_file(text: &str, why: &str) -> Parsed {
    if looks_like_json(text) {
        return Parsed {
            packages: Vec::new(),
            problems: vec![Problem {
                place: Place::Line(1),
                reason: format!("not a lock file: {why}"),
            }],
        };
    }
    plain_list(text)
}

/// `{"dependencies": {tfm: {id: {"type": .., "resolved": ..}}}}`. Every
/// entry with a resolved version counts, transitive ones included (a locked
/// restore downloads them all); `Project` entries are project references.
fn lock_file(deps: &serde_json::Map<String, Value>) -> Parsed {
    let mut out = Parsed::default();
    for (tfm, entries) in deps {
        let Some(entries) = entries.as_object() else {
            out.problems.push(Problem {
                place: Place::Entry(format!("dependencies/{tfm}")),
                reason: "not an object".into(),
            });
            continue;
        };
        for (id, entry) in entries {
            let place = || Place::Entry(format!("dependencies/{tfm}/{id}"));
            if entry.get("type").and_then(Value::as_str) == Some("Project") {
                continue;
            }
            let result = match entry.get("resolved") {
                Some(Value::String(v)) => Package::new(id, v),
                Some(_) => Err("\"resolved\" is not a string".into()),
                None => Err("no \"resolved\" version".into()),
            };
            match result {
                Ok(p) => out.packages.push(p),
                Err(reason) => out.problems.push(Problem {
                    place: place(),
                    reason,
                }),
            }
        }
    }
    out
}

/// One package per line, `Id Version` or `pkg:nuget/Id@Version`; `#`
/// starts a comment, blank lines are skipped.
fn plain_list(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match list_line(line) {
            Ok(p) => out.packages.push(p),
            Err(reason) => out.problems.push(Problem {
                place: Place::Line(i + 1),
                reason,
            }),
        }
    }
    out
}

fn list_line(line: &str) -> Result<Package, String> {
    let is_purl = line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("pkg:"));
    if is_purl {
        return purl_line(line);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [id, version] => Package::new(id, version),
        _ => Err(format!(
            "expected `Id Version` or `pkg:nuget/Id@Version`, got {line:?}"
        )),
    }
}

/// A purl, through the parser the ProGet packages API uses.
fn purl_line(line: &str) -> Result<Package, String> {
    let purl = crate::proget::purl::parse(line)?;
    if purl.kind != "nuget" {
        return Err(format!("not a NuGet purl (type {:?})", purl.kind));
    }
    if purl.namespace.is_some() {
        return Err("a NuGet purl has no namespace".into());
    }
    let version = purl.version.ok_or("purl has no version")?;
    Package::new(&purl.name, &version)
}

/// The packages in first-seen order, each server key once: lock files for
/// several target frameworks list most packages several times, in
/// spellings that differ only in case or version form.
pub fn dedup(packages: Vec<Package>) -> Vec<Package> {
    let mut seen = HashSet::new();
    packages
        .into_iter()
        .filter(|p| seen.insert((p.lower_id.clone(), p.lower_version.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packages as written, (id, version).
    type Names<'a> = &'a [(&'a str, &'a str)];

    /// (id, version) as written, for compact tables.
    fn names(p: &Parsed) -> Vec<(&str, &str)> {
        p.packages
            .iter()
            .map(|p| (p.id.as_str(), p.version.as_str()))
            .collect()
    }

    fn lines_of(p: &Parsed) -> Vec<usize> {
        p.problems
            .iter()
            .map(|p| match p.place {
                Place::Line(n) => n,
                Place::Entry(_) => 0,
            })
            .collect()
    }

    #[test]
    fn plain_lists() {
        // (text, packages as written, lines with problems)
        let table: &[(&str, Names, &[usize])] = &[
            ("", &[], &[]),
            ("# only a comment\n\n   \n", &[], &[]),
            (
                "Newtonsoft.Json 13.0.3\n",
                &[("Newtonsoft.Json", "13.0.3")],
                &[],
            ),
            ("  Foo\t1.0  # pinned\r\n", &[("Foo", "1.0")], &[]),
            ("pkg:nuget/Foo@1.0.0-Beta\n", &[("Foo", "1.0.0-Beta")], &[]),
            ("PKG:NuGet/Foo@1.0%2Bmeta\n", &[("Foo", "1.0+meta")], &[]),
            ("\u{feff}Foo 1.0\n", &[("Foo", "1.0")], &[]),
            ("Foo\nBar 1.0\nBaz 1.0 extra\n", &[("Bar", "1.0")], &[1, 3]),
            ("Foo not.a.version\n", &[], &[1]),
            ("../etc 1.0\n", &[], &[1]),
            ("pkg:npm/left-pad@1.0.0\n", &[], &[1]),
            ("pkg:nuget/Foo\n", &[], &[1]),
            ("pkg:nuget/ns/Foo@1.0\n", &[], &[1]),
            ("pkg:\n", &[], &[1]),
            ("#\nA 1\n# B 2\nC 3 # D 4\n", &[("A", "1"), ("C", "3")], &[]),
        ];
        for (text, want, bad) in table {
            let got = parse(text);
            assert_eq!(names(&got), *want, "{text:?}");
            assert_eq!(lines_of(&got), *bad, "{text:?}");
        }
    }

    const LOCK: &str = r#"{
      "version": 1,
      "dependencies": {
        "net8.0": {
          "Newtonsoft.Json": {
            "type": "Direct", "requested": "[13.0.3, )", "resolved": "13.0.3",
            "contentHash": "abc"
          },
          "System.Memory": { "type": "Transitive", "resolved": "4.5.5" },
          "Central.Pkg": { "type": "CentralTransitive", "requested": "[1.0.0, )", "resolved": "1.0.0" },
          "MyLib": { "type": "Project", "dependencies": { "Newtonsoft.Json": "[13.0.3, )" } }
        },
        "net8.0/linux-x64": {
          "System.Memory": { "type": "Transitive", "resolved": "4.5.5" }
        }
      }
    }"#;

    #[test]
    fn lock_file_counts_every_resolved_entry_and_skips_projects() {
        let got = parse(LOCK);
        assert_eq!(
            names(&got),
            [
                ("Newtonsoft.Json", "13.0.3"),
                ("System.Memory", "4.5.5"),
                ("Central.Pkg", "1.0.0"),
                ("System.Memory", "4.5.5"),
            ]
        );
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        assert_eq!(dedup(got.packages).len(), 3);
    }

    #[test]
    fn lock_file_problems_name_the_entry() {
        // (text, packages, entry paths with problems)
        let table: &[(&str, Names, &[&str])] = &[
            (r#"{"version":2,"dependencies":{}}"#, &[], &[]),
            (
                r#"{"dependencies":{"net8.0":{"A":{"type":"Direct"},"B":{"resolved":"2.0"}}}}"#,
                &[("B", "2.0")],
                &["dependencies/net8.0/A"],
            ),
            (
                r#"{"dependencies":{"net8.0":{"A":{"resolved":1},"B b":{"resolved":"1.0"}}}}"#,
                &[],
                &["dependencies/net8.0/A", "dependencies/net8.0/B b"],
            ),
            (
                r#"{"dependencies":{"net8.0":[],"net48":{"C":{"resolved":"1.0.x"}}}}"#,
                &[],
                &["dependencies/net8.0", "dependencies/net48/C"],
            ),
        ];
        for (text, want, bad) in table {
            let got = parse(text);
            assert_eq!(names(&got), *want, "{text}");
            let places: Vec<String> = got
                .problems
                .iter()
                .map(|p| match &p.place {
                    Place::Entry(e) => e.clone(),
                    Place::Line(n) => format!("line {n}"),
                })
                .collect();
            assert_eq!(places, *bad, "{text}");
        }
    }

    #[test]
    fn broken_json_is_one_problem_not_a_list() {
        // (text, line reported)
        let table = [
            ("{\n  \"dependencies\": {\n    \"net8.0\": \n", 4),
            ("{\"version\": 1}", 1),
            ("  {\"dependencies\": []}", 1),
        ];
        for (text, line) in table {
            let got = parse(text);
            assert!(got.packages.is_empty(), "{text:?}");
            assert_eq!(lines_of(&got), [line], "{text:?}: {:?}", got.problems);
        }
        // JSON that is not an object is a (bad) list line, not a lock file.
        assert_eq!(lines_of(&parse("[1, 2]")), [1]);
    }

    #[test]
    fn keys_match_the_servers() {
        let table = [
            (("Newtonsoft.Json", "13.0.3"), ("newtonsoft.json", "13.0.3")),
            (("Foo", "1.0"), ("foo", "1.0.0")),
            (("Foo", "1.00.0.0"), ("foo", "1.0.0")),
            (("Foo", "1.0.0-Beta+Build"), ("foo", "1.0.0-beta")),
            (("ΟΔΟΣ", "2.0.0.1"), ("οδοσ", "2.0.0.1")),
        ];
        for ((id, v), (lid, lv)) in table {
            let p = Package::new(id, v).unwrap();
            assert_eq!((p.lower_id.as_str(), p.lower_version.as_str()), (lid, lv));
            assert_eq!(p.nupkg_path(), format!("{lid}/{lv}/{lid}.{lv}.nupkg"));
        }
    }

    #[test]
    fn dedup_keeps_the_first_spelling_of_each_key() {
        let ps = [
            "Foo 1.0",
            "foo 1.0.0",
            "FOO 1.0.0.0",
            "Foo 1.0.1",
            "Bar 1.0",
        ]
        .iter()
        .map(|l| list_line(l).unwrap())
        .collect();
        let got: Vec<(String, String)> = dedup(ps).into_iter().map(|p| (p.id, p.version)).collect();
        assert_eq!(
            got,
            [
                ("Foo".to_owned(), "1.0".to_owned()),
                ("Foo".into(), "1.0.1".into()),
                ("Bar".into(), "1.0".into()),
            ]
        );
    }

    #[test]
    fn problems_read_as_file_positions() {
        let p = Problem {
            place: Place::Line(3),
            reason: "bad".into(),
        };
        assert_eq!(format!("list.txt:{p}"), "list.txt:3: bad");
        let p = Problem {
            place: Place::Entry("dependencies/net8.0/A".into()),
            reason: "bad".into(),
        };
        assert_eq!(
            format!("packages.lock.json:{p}"),
            "packages.lock.json: dependencies/net8.0/A: bad"
        );
    }
}
