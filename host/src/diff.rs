//! `weir diff A B`: compare two outputs (folders of part files, as the file
//! sink writes them) record by record, per key.
//!
//! A record's key is the value of a JSON field (`--key FIELD`), as JSON
//! text (so the number `1` and the string `"1"` are two keys, printed
//! apart), or the whole line. Per key, the n-th record of A is compared
//! with the n-th of B (a key's records keep their order: one key is one
//! partition's, in order): same text is `equal`, other text `changed`;
//! records only A has are `missing` (from B), only B has `extra`. Lines
//! that have no key (not a JSON object, no such field) or are not UTF-8
//! are `malformed`, counted per side and listed with their file and line
//! number; the outputs are equal only if those are the same too. The
//! report lists keys in order (numbers by value), so the same inputs give
//! the same report.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::{Error, Result};

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// The key.
    pub key: String,
    /// The record in A (`None`: extra).
    pub a: Option<String>,
    /// The record in B (`None`: missing).
    pub b: Option<String>,
}

/// A line without a key, or not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Malformed {
    /// `A` or `B`.
    pub side: String,
    /// Where: `file:line` (1-based), or `line N` for records given in
    /// memory.
    pub at: String,
    /// Why it has no key.
    pub reason: String,
    /// The line (invalid UTF-8 replaced).
    pub line: String,
}

/// One record of an output: its text, or why it cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text (invalid UTF-8 replaced).
    pub text: String,
    /// Where it is: `file:line`.
    pub at: String,
    /// Whether it is valid UTF-8.
    pub utf8: bool,
}

/// The comparison of two outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    /// Records in A and in B.
    pub records_a: u64,
    /// Records in B.
    pub records_b: u64,
    /// Distinct keys in A or B.
    pub keys: u64,
    /// Keys whose records differ in any way.
    pub keys_differing: u64,
    /// Records the same in both.
    pub equal: u64,
    /// Records that differ.
    pub changed: u64,
    /// Records of A that B lacks.
    pub missing: u64,
    /// Records of B that A lacks.
    pub extra: u64,
    /// The first changed records, in key order.
    pub changed_examples: Vec<Example>,
    /// The first missing ones.
    pub missing_examples: Vec<Example>,
    /// The first extra ones.
    pub extra_examples: Vec<Example>,
    /// Lines of A without a key (or not UTF-8).
    pub malformed_a: u64,
    /// Lines of B without a key (or not UTF-8).
    pub malformed_b: u64,
    /// Whether the malformed lines of A and B differ (count or text).
    pub malformed_differ: bool,
    /// The first malformed lines of each side, with where they are.
    pub malformed_examples: Vec<Malformed>,
}

impl DiffReport {
    /// Whether the outputs are the same, record for record.
    pub fn is_equal(&self) -> bool {
        self.changed == 0 && self.missing == 0 && self.extra == 0 && !self.malformed_differ
    }
}

impl std::fmt::Display for DiffReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "records: {} in A, {} in B; keys: {} ({} differ)",
            self.records_a, self.records_b, self.keys, self.keys_differing
        )?;
        writeln!(
            f,
            "equal {}  changed {}  missing {}  extra {}  malformed {} in A, {} in B{}",
            self.equal,
            self.changed,
            self.missing,
            self.extra,
            self.malformed_a,
            self.malformed_b,
            if self.malformed_differ {
                " (they differ)"
            } else {
                ""
            }
        )?;
        for (what, examples) in [
            ("changed", &self.changed_examples),
            ("missing", &self.missing_examples),
            ("extra", &self.extra_examples),
        ] {
            for e in examples {
                write!(f, "{what} key {}:", e.key)?;
                if let Some(a) = &e.a {
                    write!(f, " A {a}")?;
                }
                if let Some(b) = &e.b {
                    write!(f, " B {b}")?;
                }
                writeln!(f)?;
            }
        }
        for m in &self.malformed_examples {
            writeln!(
                f,
                "malformed in {} at {} ({}): {}",
                m.side, m.at, m.reason, m.line
            )?;
        }
        Ok(())
    }
}

/// Sort order of keys: numbers by value first, then text.
#[derive(Debug, Clone)]
enum KeyOrder {
    Number(f64),
    Text(String),
}

impl PartialEq for KeyOrder {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for KeyOrder {}

impl PartialOrd for KeyOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::{Greater, Less};
        match (self, other) {
            (KeyOrder::Number(a), KeyOrder::Number(b)) => a.total_cmp(b),
            (KeyOrder::Number(_), KeyOrder::Text(_)) => Less,
            (KeyOrder::Text(_), KeyOrder::Number(_)) => Greater,
            (KeyOrder::Text(a), KeyOrder::Text(b)) => a.cmp(b),
        }
    }
}

/// The key of `line`: the JSON field `field`'s value as JSON text (`1`
/// and `"1"` stay apart), or the line; `Err` with why a line has none.
pub fn key_of(line: &str, field: Option<&str>) -> std::result::Result<String, String> {
    let Some(field) = field else {
        return Ok(line.to_string());
    };
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(m)) => match m.get(field) {
            Some(v) => Ok(v.to_string()),
            None => Err(format!("no field `{field}`")),
        },
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Compare records `a` and `b` (each in output order) by key; up to
/// `examples` examples of each kind.
pub fn diff_records(
    a: &[String],
    b: &[String],
    field: Option<&str>,
    examples: usize,
) -> DiffReport {
    let lines = |v: &[String]| -> Vec<Line> {
        v.iter()
            .enumerate()
            .map(|(i, t)| Line {
                text: t.clone(),
                at: format!("line {}", i + 1),
                utf8: true,
            })
            .collect()
    };
    diff_lines(&lines(a), &lines(b), field, examples)
}

/// [`diff_records`] over lines that know where they are.
pub fn diff_lines(a: &[Line], b: &[Line], field: Option<&str>, examples: usize) -> DiffReport {
    type Sides<'a> = (Vec<&'a str>, Vec<&'a str>);
    let mut by_key: BTreeMap<(KeyOrder, String), Sides<'_>> = BTreeMap::new();
    let order = |k: &str| match k.parse::<f64>() {
        Ok(n) if n.is_finite() => KeyOrder::Number(n),
        _ => KeyOrder::Text(k.to_string()),
    };
    let mut malformed: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
    let mut malformed_examples = Vec::new();
    for (side, lines) in [(0, a), (1, b)] {
        for l in lines {
            let key = if l.utf8 {
                key_of(&l.text, field)
            } else {
                Err("not UTF-8".into())
            };
            let k = match key {
                Ok(k) => k,
                Err(reason) => {
                    malformed[side].push(&l.text);
                    if malformed_examples.len() < examples * 2 {
                        malformed_examples.push(Malformed {
                            side: ["A", "B"][side].into(),
                            at: l.at.clone(),
                            reason,
                            line: l.text.clone(),
                        });
                    }
                    continue;
                }
            };
            let e = by_key.entry((order(&k), k)).or_default();
            if side == 0 {
                e.0.push(&l.text);
            } else {
                e.1.push(&l.text);
            }
        }
    }
    let mut r = DiffReport {
        records_a: a.len() as u64,
        records_b: b.len() as u64,
        keys: by_key.len() as u64,
        malformed_a: malformed[0].len() as u64,
        malformed_b: malformed[1].len() as u64,
        malformed_differ: malformed[0] != malformed[1],
        malformed_examples,
        ..DiffReport::default()
    };
    let example = |key: &str, a: Option<&str>, b: Option<&str>| Example {
        key: key.to_string(),
        a: a.map(str::to_string),
        b: b.map(str::to_string),
    };
    for ((_, key), (xs, ys)) in &by_key {
        let mut differs = false;
        for i in 0..xs.len().max(ys.len()) {
            match (xs.get(i), ys.get(i)) {
                (Some(x), Some(y)) if x == y => r.equal += 1,
                (Some(x), Some(y)) => {
                    r.changed += 1;
                    differs = true;
                    if r.changed_examples.len() < examples {
                        r.changed_examples.push(example(key, Some(x), Some(y)));
                    }
                }
                (Some(x), None) => {
                    r.missing += 1;
                    differs = true;
                    if r.missing_examples.len() < examples {
                        r.missing_examples.push(example(key, Some(x), None));
                    }
                }
                (None, Some(y)) => {
                    r.extra += 1;
                    differs = true;
                    if r.extra_examples.len() < examples {
                        r.extra_examples.push(example(key, None, Some(y)));
                    }
                }
                (None, None) => {}
            }
        }
        r.keys_differing += u64::from(differs);
    }
    r
}

/// Every record of an output folder: its `part-*` files in name order
/// (in-progress files, which start with `.`, are not output yet), each
/// line in order with its file and line number; or the lines of a single
/// file. A line that is not UTF-8 is kept, marked.
pub fn read_output(path: &Path) -> Result<Vec<Line>> {
    let read = |p: &Path, out: &mut Vec<Line>| -> Result<()> {
        let bytes = std::fs::read(p).map_err(|e| Error::io("reading output", p)(e))?;
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if bytes.is_empty() {
            return Ok(());
        }
        for (i, l) in bytes.split(|&b| b == b'\n').enumerate() {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let (text, utf8) = match std::str::from_utf8(l) {
                Ok(t) => (t.to_string(), true),
                Err(_) => (String::from_utf8_lossy(l).into_owned(), false),
            };
            out.push(Line {
                text,
                at: format!("{}:{}", p.display(), i + 1),
                utf8,
            });
        }
        Ok(())
    };
    let mut lines = Vec::new();
    if path.is_file() {
        read(path, &mut lines)?;
        return Ok(lines);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| Error::io("reading output folder", path)(e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    files.sort();
    for f in files {
        read(&f, &mut lines)?;
    }
    Ok(lines)
}

/// Compare the outputs at `a` and `b`.
pub fn diff(a: &Path, b: &Path, field: Option<&str>, examples: usize) -> Result<DiffReport> {
    Ok(diff_lines(
        &read_output(a)?,
        &read_output(b)?,
        field,
        examples,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classifies_records_per_key_in_order() {
        let a = lines(&[
            r#"{"k":2,"v":"x"}"#,
            r#"{"k":10,"v":"a"}"#,
            r#"{"k":2,"v":"y"}"#,
            r#"{"k":3,"v":"gone"}"#,
        ]);
        let b = lines(&[
            r#"{"k":10,"v":"a"}"#,
            r#"{"k":2,"v":"x"}"#,
            r#"{"k":2,"v":"Y"}"#,
            r#"{"k":4,"v":"new"}"#,
        ]);
        let r = diff_records(&a, &b, Some("k"), 5);
        assert_eq!((r.equal, r.changed, r.missing, r.extra), (2, 1, 1, 1));
        assert_eq!((r.keys, r.keys_differing), (4, 3));
        assert_eq!(r.changed_examples[0].key, "2");
        assert_eq!(r.malformed_a + r.malformed_b, 0);
        assert_eq!(
            r.changed_examples[0].b.as_deref(),
            Some(r#"{"k":2,"v":"Y"}"#)
        );
        assert_eq!(r.missing_examples[0].key, "3");
        assert_eq!(r.extra_examples[0].key, "4");
        assert!(!r.is_equal());
        assert!(diff_records(&a, &a, Some("k"), 5).is_equal());
    }

    #[test]
    fn numbers_sort_by_value_and_examples_are_capped() {
        let a: Vec<String> = (0..20).map(|i| format!(r#"{{"k":{i},"v":0}}"#)).collect();
        let b: Vec<String> = (0..20).map(|i| format!(r#"{{"k":{i},"v":1}}"#)).collect();
        let r = diff_records(&a, &b, Some("k"), 3);
        assert_eq!(r.changed, 20);
        let keys: Vec<&str> = r.changed_examples.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["0", "1", "2"]);
    }

    #[test]
    fn without_a_key_field_lines_are_their_own_keys() {
        let r = diff_records(&lines(&["a", "b"]), &lines(&["b", "c"]), None, 5);
        assert_eq!((r.equal, r.changed, r.missing, r.extra), (1, 0, 1, 1));
    }

    #[test]
    fn number_and_string_keys_stay_apart_and_print_apart() {
        let a = lines(&[r#"{"k":1,"v":0}"#, r#"{"k":"1","v":0}"#]);
        let b = lines(&[r#"{"k":1,"v":0}"#, r#"{"k":"1","v":1}"#]);
        let r = diff_records(&a, &b, Some("k"), 5);
        assert_eq!((r.keys, r.equal, r.changed), (2, 1, 1));
        assert_eq!(r.changed_examples[0].key, r#""1""#);
        assert!(r.to_string().contains(r#"changed key "1":"#), "{r}");
    }

    #[test]
    fn lines_without_a_key_are_malformed_with_their_line_numbers() {
        let a = lines(&[r#"{"k":1}"#, "oops", r#"{"x":2}"#]);
        let b = lines(&[r#"{"k":1}"#, "oops", r#"{"x":2}"#]);
        let r = diff_records(&a, &b, Some("k"), 5);
        assert_eq!(
            (r.keys, r.equal, r.malformed_a, r.malformed_b),
            (1, 1, 2, 2)
        );
        assert!(r.is_equal(), "the same malformed lines on both sides");
        assert_eq!(r.malformed_examples[0].at, "line 2");
        assert!(r.malformed_examples[0].reason.contains("not JSON"));
        assert_eq!(r.malformed_examples[1].reason, "no field `k`");
        let r = diff_records(&a, &lines(&[r#"{"k":1}"#]), Some("k"), 5);
        assert!(!r.is_equal() && r.malformed_differ);
        assert!(
            r.to_string()
                .contains("malformed 2 in A, 0 in B (they differ)"),
            "{r}"
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_named_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("part-0000-000000.jsonl");
        std::fs::write(&f, b"{\"k\":1}\n{\"k\":\xff}\n{\"k\":2}\n").unwrap();
        let r = diff(dir.path(), dir.path(), Some("k"), 5).unwrap();
        assert_eq!((r.equal, r.malformed_a), (2, 1));
        let m = &r.malformed_examples[0];
        assert_eq!(
            (
                m.reason.as_str(),
                m.at.ends_with("part-0000-000000.jsonl:2")
            ),
            ("not UTF-8", true)
        );
    }
}
