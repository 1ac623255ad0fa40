//! `weir diff A B`: compare two outputs (folders of part files, as the file
//! sink writes them) record by record, per key.
//!
//! A record's key is the value of a JSON field (`--key FIELD`), or the
//! whole line. Per key, the n-th record of A is compared with the n-th of
//! B (a key's records keep their order: one key is one partition's, in
//! order): same text is `equal`, other text `changed`; records only A has
//! are `missing` (from B), only B has `extra`. The report lists keys in
//! order (numbers by value), so the same inputs give the same report.

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
}

impl DiffReport {
    /// Whether the outputs are the same, record for record.
    pub fn is_equal(&self) -> bool {
        self.changed == 0 && self.missing == 0 && self.extra == 0
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
            "equal {}  changed {}  missing {}  extra {}",
            self.equal, self.changed, self.missing, self.extra
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

/// The key of `line`: the JSON field `field`'s value (as JSON text; a
/// string without quotes), or the line.
pub fn key_of(line: &str, field: Option<&str>) -> String {
    let Some(field) = field else {
        return line.to_string();
    };
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(m)) => match m.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        },
        _ => String::new(),
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
    type Sides<'a> = (Vec<&'a str>, Vec<&'a str>);
    let mut by_key: BTreeMap<(KeyOrder, String), Sides<'_>> = BTreeMap::new();
    let order = |k: &str| match k.parse::<f64>() {
        Ok(n) if n.is_finite() => KeyOrder::Number(n),
        _ => KeyOrder::Text(k.to_string()),
    };
    for (side, lines) in [(0, a), (1, b)] {
        for l in lines {
            let k = key_of(l, field);
            let e = by_key.entry((order(&k), k)).or_default();
            if side == 0 {
                e.0.push(l);
            } else {
                e.1.push(l);
            }
        }
    }
    let mut r = DiffReport {
        records_a: a.len() as u64,
        records_b: b.len() as u64,
        keys: by_key.len() as u64,
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
/// line in order; or the lines of a single file.
pub fn read_output(path: &Path) -> Result<Vec<String>> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io("reading output", p)(e));
    if path.is_file() {
        return Ok(read(path)?.lines().map(str::to_string).collect());
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| Error::io("reading output folder", path)(e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        lines.extend(read(&f)?.lines().map(str::to_string));
    }
    Ok(lines)
}

/// Compare the outputs at `a` and `b`.
pub fn diff(a: &Path, b: &Path, field: Option<&str>, examples: usize) -> Result<DiffReport> {
    Ok(diff_records(
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
}
