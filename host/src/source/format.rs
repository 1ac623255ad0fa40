//! Parsing one record (a line of a file, the value of a Kafka record): find
//! the key and the event time in a `csv`, `jsonl`, `lines` or `raw` record. The record value is always the whole
//! line; only the key is copied out, and only when CSV quoting forces it.

pub(crate) mod words;

use std::borrow::Cow;

use serde::Deserialize;
use words::{parse_ms, zero_bytes};

use crate::batch::NO_TIMESTAMP;

/// Record format of a file source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values (RFC 4180 quoting); the value is the whole line.
    Csv,
    /// One JSON object per line; the value is the whole line.
    Jsonl,
    /// Plain lines; no key (records are spread round-robin) and no timestamp.
    Lines,
    /// Any bytes, not parsed (Kafka: the key is the record's key).
    Raw,
}

/// Which part of a record holds the key or the timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// Not present.
    None,
    /// A CSV column (0-based).
    Column(usize),
    /// A top-level JSON field.
    Field(String),
}

/// Key and event time of one line.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The key, or `None` for keyless records.
    pub key: Option<Cow<'a, [u8]>>,
    /// Event time in ms, [`NO_TIMESTAMP`] if none.
    pub timestamp: i64,
}

/// Extracts keys and timestamps from lines of one format.
#[derive(Debug, Clone)]
pub struct LineParser {
    format: Format,
    key: KeySpec,
    timestamp: KeySpec,
}

impl LineParser {
    /// A parser for `format` with the given key and timestamp locations.
    pub fn new(format: Format, key: KeySpec, timestamp: KeySpec) -> Self {
        Self {
            format,
            key,
            timestamp,
        }
    }

    /// Parse a line (without its line terminator). The error is the reason
    /// the line goes to the dead-letter output.
    #[inline(always)]
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Parsed<'a>, String> {
        if self.format == Format::Csv
            && let Some(parsed) = self.csv_ascii_unquoted(line)
        {
            return parsed;
        }
        self.parse_general(line)
    }

    /// [`LineParser::parse`] past the CSV fast path, out of line so the
    /// fast path inlines into the caller's record loop.
    #[inline(never)]
    fn parse_general<'a>(&self, line: &'a [u8]) -> Result<Parsed<'a>, String> {
        if self.format == Format::Raw {
            return Ok(Parsed {
                key: None,
                timestamp: NO_TIMESTAMP,
            });
        }
        let text = std::str::from_utf8(line).map_err(|e| {
            format!(
                "not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )
        })?;
        match self.format {
            Format::Lines | Format::Raw => Ok(Parsed {
                key: None,
                timestamp: NO_TIMESTAMP,
            }),
            Format::Csv => self.csv(text),
            Format::Jsonl => self.json(text),
        }
    }

    /// The common case in one pass: an ASCII line without quotes. `None`
    /// when the line needs the general path (quotes or non-ASCII bytes).
    #[inline(always)]
    fn csv_ascii_unquoted<'a>(&self, line: &'a [u8]) -> Option<Result<Parsed<'a>, String>> {
        let key_col = match self.key {
            KeySpec::Column(c) => c,
            _ => usize::MAX,
        };
        let ts_col = match self.timestamp {
            KeySpec::Column(c) => c,
            _ => usize::MAX,
        };
        let mut key = None;
        let mut ts_field: Option<&[u8]> = None;
        let mut col = 0usize;
        let mut start = 0usize;
        let mut comma = |i: usize| {
            if col == key_col {
                key = Some(Cow::Borrowed(&line[start..i]));
            } else if col == ts_col {
                ts_field = Some(&line[start..i]);
            }
            col += 1;
            start = i + 1;
        };
        // Eight bytes at a time: one test for a quote or a non-ASCII byte,
        // then the commas by their bits.
        let mut words = line.chunks_exact(8);
        let mut at = 0usize;
        for chunk in &mut words {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if w & 0x8080_8080_8080_8080 | zero_bytes(w ^ 0x2222_2222_2222_2222) != 0 {
                return None;
            }
            let mut commas = zero_bytes(w ^ 0x2C2C_2C2C_2C2C_2C2C);
            while commas != 0 {
                comma(at + (commas.trailing_zeros() / 8) as usize);
                commas &= commas - 1;
            }
            at += 8;
        }
        for (i, &b) in words.remainder().iter().enumerate() {
            if b == b',' {
                comma(at + i);
            } else if b == b'"' || b >= 0x80 {
                return None;
            }
        }
        if col == key_col {
            key = Some(Cow::Borrowed(&line[start..]));
        } else if col == ts_col {
            ts_field = Some(&line[start..]);
        }
        let columns = col + 1;
        let mut timestamp = NO_TIMESTAMP;
        if ts_col != usize::MAX {
            let Some(field) = ts_field else {
                return Some(Err(format!(
                    "timestamp column {ts_col} missing: the line has {columns} column(s)"
                )));
            };
            match parse_ms(field) {
                Some(NO_TIMESTAMP) => {
                    return Some(Err(reserved(&format!("timestamp column {ts_col}"))));
                }
                Some(t) => timestamp = t,
                None => {
                    return Some(Err(format!(
                        "timestamp column {ts_col}: {:?} is not an integer (ms)",
                        String::from_utf8_lossy(field)
                    )));
                }
            }
        }
        if key_col != usize::MAX && key.is_none() {
            return Some(Err(format!(
                "key column {key_col} missing: the line has {columns} column(s)"
            )));
        }
        Some(Ok(Parsed { key, timestamp }))
    }

    fn csv<'a>(&self, text: &'a str) -> Result<Parsed<'a>, String> {
        let key_col = match self.key {
            KeySpec::Column(c) => Some(c),
            _ => None,
        };
        let ts_col = match self.timestamp {
            KeySpec::Column(c) => Some(c),
            _ => None,
        };
        let mut key = None;
        let mut timestamp = NO_TIMESTAMP;
        let mut columns = 0;
        for (i, field) in CsvFields::new(text.as_bytes()).enumerate() {
            let field = field?;
            columns = i + 1;
            if Some(i) == key_col {
                key = Some(field.clone());
            }
            if Some(i) == ts_col {
                timestamp = parse_ms(&field).ok_or_else(|| {
                    format!(
                        "timestamp column {i}: {:?} is not an integer (ms)",
                        String::from_utf8_lossy(&field)
                    )
                })?;
                if timestamp == NO_TIMESTAMP {
                    return Err(reserved(&format!("timestamp column {i}")));
                }
            }
        }
        for (what, col) in [("key", key_col), ("timestamp", ts_col)] {
            if let Some(c) = col.filter(|&c| c >= columns) {
                return Err(format!(
                    "{what} column {c} missing: the line has {columns} column(s)"
                ));
            }
        }
        Ok(Parsed { key, timestamp })
    }

    fn json<'a>(&self, text: &'a str) -> Result<Parsed<'a>, String> {
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
        let key = match &self.key {
            KeySpec::Field(f) => Some(Cow::Owned(match obj.get(f) {
                Some(serde_json::Value::String(s)) => s.as_bytes().to_vec(),
                Some(n @ serde_json::Value::Number(_)) => n.to_string().into_bytes(),
                Some(other) => {
                    return Err(format!(
                        "key field `{f}` is {other}, not a string or number"
                    ));
                }
                None => return Err(format!("key field `{f}` missing")),
            })),
            _ => None,
        };
        let timestamp = match &self.timestamp {
            KeySpec::Field(f) => obj
                .get(f)
                .ok_or_else(|| format!("timestamp field `{f}` missing"))?
                .as_i64()
                .ok_or_else(|| format!("timestamp field `{f}` is not an integer (ms)"))
                .and_then(|t| match t {
                    NO_TIMESTAMP => Err(reserved(&format!("timestamp field `{f}`"))),
                    t => Ok(t),
                })?,
            _ => NO_TIMESTAMP,
        };
        Ok(Parsed { key, timestamp })
    }
}

/// Why a record whose event time is `i64::MIN` is refused: that value
/// stands for "no timestamp" between the host and its plugins.
fn reserved(what: &str) -> String {
    format!(
        "{what}: {NO_TIMESTAMP} is out of range (the smallest 64-bit integer stands for \
         \"no timestamp\")"
    )
}

/// Iterator over the fields of one CSV line (RFC 4180 quoting: a quoted
/// field may hold commas and doubled quotes).
struct CsvFields<'a> {
    line: &'a [u8],
    at: usize,
    done: bool,
}

impl<'a> CsvFields<'a> {
    fn new(line: &'a [u8]) -> Self {
        Self {
            line,
            at: 0,
            done: false,
        }
    }

    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, String> {
        let start = self.at + 1;
        let mut i = start;
        let mut owned: Option<Vec<u8>> = None;
        let mut seg = start;
        loop {
            match memchr::memchr(b'"', &self.line[i..]) {
                None => {
                    return Err(format!(
                        "unterminated quoted field starting at byte {}",
                        self.at
                    ));
                }
                Some(off) => {
                    let q = i + off;
                    if self.line.get(q + 1) == Some(&b'"') {
                        let buf = owned.get_or_insert_with(Vec::new);
                        buf.extend_from_slice(&self.line[seg..=q]);
                        i = q + 2;
                        seg = i;
                        continue;
                    }
                    let field = match owned {
                        Some(mut buf) => {
                            buf.extend_from_slice(&self.line[seg..q]);
                            Cow::Owned(buf)
                        }
                        None => Cow::Borrowed(&self.line[start..q]),
                    };
                    match self.line.get(q + 1) {
                        None => self.done = true,
                        Some(b',') => self.at = q + 2,
                        Some(_) => {
                            return Err(format!(
                                "unexpected character after closing quote at byte {}",
                                q + 1
                            ));
                        }
                    }
                    return Ok(field);
                }
            }
        }
    }
}

impl<'a> Iterator for CsvFields<'a> {
    type Item = Result<Cow<'a, [u8]>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.line.get(self.at) == Some(&b'"') {
            let r = self.quoted();
            if r.is_err() {
                self.done = true;
            }
            return Some(r);
        }
        let rest = &self.line[self.at..];
        let (field, next) = match memchr::memchr(b',', rest) {
            Some(i) => (&rest[..i], Some(self.at + i + 1)),
            None => (rest, None),
        };
        if let Some(q) = memchr::memchr(b'"', field) {
            self.done = true;
            return Some(Err(format!(
                "quote inside an unquoted field at byte {}",
                self.at + q
            )));
        }
        match next {
            Some(n) => self.at = n,
            None => self.done = true,
        }
        Some(Ok(Cow::Borrowed(field)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(key: usize, ts: Option<usize>) -> LineParser {
        LineParser::new(
            Format::Csv,
            KeySpec::Column(key),
            ts.map_or(KeySpec::None, KeySpec::Column),
        )
    }

    #[test]
    fn csv_key_and_timestamp() {
        let p = csv(0, Some(2)).parse(b"42,a,1700000000000").unwrap();
        assert_eq!(p.key.as_deref(), Some(&b"42"[..]));
        assert_eq!(p.timestamp, 1_700_000_000_000);
        let p = csv(1, None).parse(br#"x,"a ""quoted"", key",z"#).unwrap();
        assert_eq!(p.key.as_deref(), Some(&br#"a "quoted", key"#[..]));
        assert_eq!(p.timestamp, NO_TIMESTAMP);
    }

    #[test]
    fn the_smallest_timestamp_is_refused_not_taken_as_none() {
        let line = b"42,a,-9223372036854775808";
        let err = csv(0, Some(2)).parse(line).unwrap_err();
        assert!(err.contains("timestamp column 2"), "{err}");
        assert!(err.contains("out of range"), "{err}");
        // The general path (a quoted field) says the same.
        let err = csv(0, Some(2))
            .parse(b"\"42\",a,-9223372036854775808")
            .unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        let json = LineParser::new(Format::Jsonl, KeySpec::None, KeySpec::Field("ts".into()));
        let err = json.parse(br#"{"ts": -9223372036854775808}"#).unwrap_err();
        assert!(err.contains("timestamp field `ts`"), "{err}");
        // One above it is an ordinary (very old) time.
        let p = csv(0, Some(2)).parse(b"42,a,-9223372036854775807").unwrap();
        assert_eq!(p.timestamp, i64::MIN + 1);
    }

    #[test]
    fn digits_eight_at_a_time_agree_with_std() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut samples: Vec<String> = (0..=20).map(|n| "9".repeat(n)).collect();
        samples
            .extend(["0", "00000000", "1700000000000", "012345678", "99999999"].map(String::from));
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (x % 10u64.pow((x >> 59) as u32 % 19 + 1)).to_string();
            samples.push(format!("{s:0>width$}", width = (x >> 40) as usize % 20));
        }
        for s in &samples {
            let want: Option<i64> = s.parse().ok();
            assert_eq!(parse_ms(s.as_bytes()), want, "{s}");
            let neg = format!("-{s}");
            assert_eq!(parse_ms(neg.as_bytes()), neg.parse().ok(), "{neg}");
        }
        for bad in [
            "1700000000x00",
            "17000000/0000",
            "1:00000000000",
            "12345678 9",
            "+1",
            "",
        ] {
            assert_eq!(parse_ms(bad.as_bytes()), bad.parse().ok(), "{bad}");
        }
        // Every non-digit byte in every position of an eight-digit chunk.
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut s = *b"12345678";
                s[pos] = b;
                // Whitespace at either end is trimmed, as before.
                let want = std::str::from_utf8(&s)
                    .ok()
                    .and_then(|t| t.trim_ascii().parse::<i64>().ok());
                assert_eq!(parse_ms(&s), want, "{s:?}");
            }
        }
    }

    #[test]
    fn csv_errors_say_why() {
        let p = csv(0, Some(2));
        assert!(
            p.parse(b"42,a")
                .unwrap_err()
                .contains("timestamp column 2 missing")
        );
        assert!(
            p.parse(b"42,a,soon")
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(p.parse(b"\"42,a,1").unwrap_err().contains("unterminated"));
        assert!(p.parse(b"4\"2,a,1").unwrap_err().contains("quote inside"));
        assert!(p.parse(b"\xff42,a,1").unwrap_err().contains("UTF-8"));
        assert!(
            csv(3, None)
                .parse(b"1,2")
                .unwrap_err()
                .contains("key column 3 missing")
        );
    }

    #[test]
    fn fast_and_general_csv_paths_agree() {
        let p = csv(1, Some(0));
        for line in [
            &b"5,k,x"[..],
            b"5,k",
            b"-7,,",
            b"5",
            b"x,k",
            b"99999999999999999999,k",
            b" 12 ,k",
        ] {
            let text = std::str::from_utf8(line).unwrap();
            let fast = p.csv_ascii_unquoted(line).expect("ascii, unquoted");
            assert_eq!(fast, p.csv(text), "{text}");
        }
        assert!(p.csv_ascii_unquoted(b"\"5\",k").is_none());
        // Lines longer than a word, commas at every position of a word.
        for line in [
            "1700000000000,key-number-one,extra,fields,here",
            "1700000000000,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,",
            ",,,,,,,,",
            "1234567,12345678,1,1234567890123456,x",
            "12345678,1234567",
        ] {
            for cut in 0..line.len() {
                let line = &line[cut..];
                for p in [csv(1, Some(0)), csv(0, Some(3)), csv(4, None)] {
                    let fast = p
                        .csv_ascii_unquoted(line.as_bytes())
                        .expect("ascii, unquoted");
                    assert_eq!(fast, p.csv(line), "{line}");
                }
            }
        }
        // A quote or a non-ASCII byte anywhere sends the line the general way.
        let base = b"1700000000000,key-number-one,x".to_vec();
        for i in 0..base.len() {
            for b in [b'"', 0x80, 0xC3, 0xFF] {
                let mut line = base.clone();
                line[i] = b;
                assert!(p.csv_ascii_unquoted(&line).is_none(), "{line:?}");
            }
        }
    }

    #[test]
    fn json_lines() {
        let p = LineParser::new(
            Format::Jsonl,
            KeySpec::Field("address".into()),
            KeySpec::Field("ts".into()),
        );
        let r = p.parse(br#"{"address":7,"event":"a","ts":5}"#).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"7"[..]));
        assert_eq!(r.timestamp, 5);
        assert!(
            p.parse(br#"{"event":"a","ts":5}"#)
                .unwrap_err()
                .contains("missing")
        );
        assert!(p.parse(b"{oops").unwrap_err().contains("JSON"));
    }

    #[test]
    fn lines_are_keyless() {
        let p = LineParser::new(Format::Lines, KeySpec::None, KeySpec::None);
        assert_eq!(
            p.parse(b"anything, really").unwrap(),
            Parsed {
                key: None,
                timestamp: NO_TIMESTAMP
            }
        );
    }
}
