//! Runs of whole CSV lines without a quote ([`Piece::Run`]): keys found with
//! bit masks of the run's commas and non-ASCII bytes, 64 bytes at a time,
//! and the records handed to the output together
//! ([`Output::records`]), not one call each.
//!
//! A run is taken only where it means the same as the records one by one:
//! CSV keyed by a column, without event times, on a source that routes by
//! key. A line a run cannot take (a byte outside ASCII, which the parser
//! checks as UTF-8, or too few columns, a dead letter) goes the way of a
//! single record, in its place.

use std::borrow::Cow;
use std::ops::Range;

use super::super::format::Parsed;
use super::scan::LineMasks;
use super::split::Piece;
use super::{FileSource, Format, KeySpec};
use crate::Result;
use crate::source::{Output, RecordSpan};

/// Records handed to the output at a time: their spans stay in the cache.
const SPANS: usize = 1024;

impl FileSource {
    /// The key column, when this file's lines may come in runs (with
    /// `route`, the partition its name gives, they may not).
    pub(super) fn run_column(&self, route: Option<usize>) -> Option<usize> {
        match self.spec.key {
            KeySpec::Column(c)
                if self.runs
                    && self.spec.format == Format::Csv
                    && self.spec.timestamp == KeySpec::None
                    && route.is_none() =>
            {
                Some(c)
            }
            _ => None,
        }
    }

    /// The key the parser finds in the line `bytes[line]` (one over two
    /// blocks or more), as a range of `bytes`; `None` when the parser
    /// refuses the line, which then goes the way of a single record.
    fn parsed_key(&self, bytes: &[u8], line: Range<usize>) -> Option<(usize, usize)> {
        match self.parser.parse(&bytes[line]) {
            // Without quotes in a run, the key is a slice of the line.
            Ok(Parsed {
                key: Some(Cow::Borrowed(key)),
                ..
            }) => {
                let start = key.as_ptr() as usize - bytes.as_ptr() as usize;
                Some((start, start + key.len()))
            }
            _ => None,
        }
    }

    /// Route a run of lines of file `unit` (the first is line `first`, at
    /// byte `offset`), keyed by `column`; `Ok(false)` when the job must stop.
    pub(super) fn handle_run(
        &self,
        (unit, column): (u32, usize),
        (bytes, first, offset): (&[u8], u64, u64),
        out: &mut dyn Output,
    ) -> Result<bool> {
        let mut spans = Vec::with_capacity(SPANS.min(bytes.len() / 4 + 1));
        let (mut start, mut line) = (0usize, first);
        // The header is line 1 of its file; no line has number 0.
        let header = if self.spec.header { 1 } else { 0 };
        let mut block = LineMasks::of(bytes, 0);
        // The block's newlines not yet taken: each line takes the lowest,
        // so the next line's end is one bit operation away, not a mask
        // built again from the line's start.
        let mut m = block.newlines;
        while start < bytes.len() {
            // The line's end: a run ends with a newline, so there is one.
            while m == 0 {
                block = LineMasks::of(bytes, block.at + 64);
                m = block.newlines;
            }
            let nl = block.at + m.trailing_zeros() as usize;
            m &= m - 1;
            let end = if nl > start && bytes[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end > start && line != header {
                let key = if start >= block.at {
                    // The line is inside this block: its bits say it all.
                    let bits = (!0u64 << (start - block.at)) & ((1u64 << (nl - block.at)) - 1);
                    if block.non_ascii & bits != 0 {
                        None
                    } else {
                        key_in(block.commas & bits, block.at, start..end, column)
                    }
                } else {
                    self.parsed_key(bytes, start..end)
                };
                match key {
                    Some((key_start, key_end)) => spans.push(RecordSpan {
                        key_start: key_start as u32,
                        key_end: key_end as u32,
                        start: start as u32,
                        end: end as u32,
                        line,
                    }),
                    None => {
                        if out.records(bytes, &spans, unit).is_break() {
                            return Ok(false);
                        }
                        spans.clear();
                        let piece = Piece::Record {
                            bytes: &bytes[start..end],
                            line,
                            offset: offset + start as u64,
                        };
                        if !self.handle((unit, None), piece, out)? {
                            return Ok(false);
                        }
                    }
                }
                if spans.len() == SPANS {
                    if out.records(bytes, &spans, unit).is_break() {
                        return Ok(false);
                    }
                    spans.clear();
                }
            }
            start = nl + 1;
            line += 1;
        }
        Ok(out.records(bytes, &spans, unit).is_continue())
    }
}

/// Column `column`'s range in the line `line` whose commas are the bits of
/// `commas` (bit `i`: byte `at + i`); `None` if it has fewer columns.
#[inline(always)]
fn key_in(mut commas: u64, at: usize, line: Range<usize>, column: usize) -> Option<(usize, usize)> {
    let mut start = line.start;
    for _ in 0..column {
        if commas == 0 {
            return None;
        }
        start = at + commas.trailing_zeros() as usize + 1;
        commas &= commas - 1;
    }
    let end = if commas != 0 {
        at + commas.trailing_zeros() as usize
    } else {
        line.end
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;
    use crate::batch::Origin;
    use crate::source::file::FileSourceSpec;
    use crate::source::{Barrier, Position, Source};

    /// What a source handed on, in order: records and dead letters.
    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Output for Seen {
        fn record(&mut self, k: Option<&[u8]>, v: &[u8], t: i64, o: Origin) -> ControlFlow<()> {
            let k = k.map(String::from_utf8_lossy);
            let v = String::from_utf8_lossy(v);
            self.0
                .push(format!("{}:{} {k:?} {v:?} {t}", o.unit, o.offset));
            ControlFlow::Continue(())
        }
        fn record_in(
            &mut self,
            _: usize,
            k: &[u8],
            v: &[u8],
            t: i64,
            o: Origin,
        ) -> ControlFlow<()> {
            self.record(Some(k), v, t, o)
        }
        fn malformed(&mut self, o: Origin, reason: &str, raw: &[u8]) -> Result<()> {
            let raw = String::from_utf8_lossy(raw);
            self.0
                .push(format!("{}:{} dead {reason} {raw:?}", o.unit, o.offset));
            Ok(())
        }
        fn tick(&mut self) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
        fn flush(&mut self) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
        fn barrier_due(&mut self) -> Option<Barrier> {
            None
        }
        fn event_time_barrier(&mut self, _: i64) -> Option<Barrier> {
            None
        }
        fn barrier(&mut self, _: Barrier, _: Position) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
        fn end_of_input(&mut self, _: Position) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
        fn next_barrier_id(&self) -> Option<u64> {
            None
        }
        fn committed_checkpoint(&self) -> Option<u64> {
            None
        }
        fn is_stopping(&self) -> bool {
            false
        }
        fn read_bytes(&mut self, _: u64) {}
        fn unit_done(&mut self) {}
        fn report_lag(&mut self, _: &[i64], _: &[i64]) {}
    }

    fn read(dir: &std::path::Path, column: usize, header: bool, runs: bool) -> Vec<String> {
        let spec = FileSourceSpec {
            dir: dir.into(),
            url: None,
            format: Format::Csv,
            key: KeySpec::Column(column),
            timestamp: KeySpec::None,
            header,
            follow: false,
            poll_interval: Duration::from_millis(10),
            until: None,
            start_at: None,
            partition_from_name: false,
        };
        let mut source = FileSource::open(spec, Arc::new(AtomicBool::new(false)), None).unwrap();
        source.runs = runs;
        let mut seen = Seen::default();
        source.run(&mut seen).unwrap();
        seen.0
    }

    /// Lines of every kind a run meets or leaves to the records' own path,
    /// over more than one read chunk.
    fn tricky_lines() -> Vec<u8> {
        let kinds: [&[u8]; 14] = [
            b"12345,a,x",
            b"7,b",
            b"",
            b"\r",
            b"99,c,y\r",
            b"lonely",
            b",,",
            b"k\xC3\xA9,d",
            b"bad\xFF,e",
            b"\"q,1\",z",
            b"\"open,\nstill open\",w",
            b"a\rb,c",
            b"x,\"y\"\"z\",w",
            b"a-much-longer-line-that-spans-more-than-one-block-of-sixty-four-bytes,f,g",
        ];
        let mut out = Vec::new();
        let mut x = 7u64;
        while out.len() < 2_300_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Mostly plain lines, so runs are long; the rest now and then.
            let k = if x >> 61 == 0 {
                (x >> 20) as usize % kinds.len()
            } else {
                (x >> 40) as usize % 3
            };
            out.extend_from_slice(kinds[k]);
            out.push(b'\n');
        }
        out.extend_from_slice(b"last,line,without,end");
        out
    }

    #[test]
    fn runs_hand_on_what_the_lines_one_by_one_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), tricky_lines()).unwrap();
        std::fs::write(dir.path().join("b.csv"), b"h,1\n2,x\n\"3\",y\n4,z\n").unwrap();
        for (column, header) in [(0, false), (1, false), (0, true), (2, true)] {
            let one_by_one = read(dir.path(), column, header, false);
            let runs = read(dir.path(), column, header, true);
            assert!(one_by_one.len() > 200_000, "{}", one_by_one.len());
            assert!(one_by_one.iter().any(|r| r.contains(" dead ")));
            assert_eq!(
                runs.len(),
                one_by_one.len(),
                "column {column}, header {header}"
            );
            for (i, (a, b)) in runs.iter().zip(&one_by_one).enumerate() {
                assert_eq!(a, b, "record {i}, column {column}, header {header}");
            }
        }
    }
}
