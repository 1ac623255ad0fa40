//! Cutting a file's bytes into records, as tools write them: lines ending
//! in `\n` or `\r\n` (a last line without one is still a record), a UTF-8
//! byte order mark at the start skipped, and, for CSV, a newline inside a
//! quoted field kept inside the record (RFC 4180), so a record may span
//! several lines. Records are sliced out of a large buffer without copying.
//!
//! A record longer than [`MAX_LINE`] is not buffered: the splitter skips it
//! to its end and reports it once, with its first line number, its length
//! and its first KiB, so later line numbers stay right. While it skips one,
//! there is no record boundary ([`Splitter::boundary`] is `None`): a
//! checkpoint never lands inside such a record.

use std::io::Read;

use super::scan;

/// Read size; a longer record grows the buffer up to [`MAX_LINE`].
pub(crate) const CHUNK: usize = 1 << 20;
/// Longest record accepted; longer ones go to the dead-letter output, cut.
pub const MAX_LINE: usize = 16 << 20;
/// How much of an over-long record its dead letter keeps.
pub(crate) const LONG_HEAD: usize = 1024;

/// The UTF-8 byte order mark some tools (spreadsheets, Windows editors)
/// write at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// One record (without its final line end).
    Record {
        /// Its bytes, internal newlines of quoted CSV fields included.
        bytes: &'a [u8],
        /// Its first line's number (1-based, lines of the file).
        line: u64,
        /// Byte offset of its first byte in the file.
        offset: u64,
    },
    /// Whole CSV lines without a quote, in a run (with [`Splitter::runs`]):
    /// each line is one record, as if handed on one by one.
    Run {
        /// The lines, each with its line end (the last one's included).
        bytes: &'a [u8],
        /// The first line's number (1-based).
        line: u64,
        /// Byte offset of `bytes[0]` in the file.
        offset: u64,
    },
    /// A record longer than [`MAX_LINE`], skipped to its end.
    TooLong {
        /// Its first line's number.
        line: u64,
        /// Its length in bytes, without the line end.
        len: u64,
        /// Its first [`LONG_HEAD`] bytes.
        head: &'a [u8],
    },
}

/// How a file's text is encoded, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// UTF-8 (with or without a byte order mark): read.
    Utf8,
    /// UTF-16 with a byte order mark (little or big endian): not read.
    Utf16 {
        /// Little endian (`FF FE`), else big endian (`FE FF`).
        little: bool,
    },
}

/// Where a CSV record's scan is, byte by byte, for newlines inside quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csv {
    /// At the start of a field.
    FieldStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field: a newline here belongs to the field.
    Quoted,
    /// Just after a quote inside a quoted field (closing, or the first of
    /// a doubled quote).
    QuoteInQuoted,
}

impl Csv {
    fn step(self, b: u8) -> Self {
        match (self, b) {
            (Csv::FieldStart, b'"') => Csv::Quoted,
            (Csv::FieldStart | Csv::Unquoted | Csv::QuoteInQuoted, b',') => Csv::FieldStart,
            (Csv::Quoted, b'"') => Csv::QuoteInQuoted,
            (Csv::Quoted, _) => Csv::Quoted,
            (Csv::QuoteInQuoted, b'"') => Csv::Quoted,
            _ => Csv::Unquoted,
        }
    }
}

/// An over-long record being skipped.
#[derive(Debug)]
struct Skipping {
    /// Byte offset of its first byte.
    offset: u64,
    /// Its first line's number.
    line: u64,
    /// Bytes of it skipped so far.
    len: u64,
    /// Newlines inside it (quoted CSV fields) skipped so far.
    newlines: u64,
    /// Its first bytes.
    head: Vec<u8>,
}

/// Cuts one file into records, chunk by chunk.
pub(crate) struct Splitter {
    /// Read buffer; `buf[..filled]` holds bytes not yet handed on.
    buf: Vec<u8>,
    /// Bytes in `buf`.
    filled: usize,
    /// Bytes at the start of `buf` already scanned as part of the
    /// unfinished record (CSV: the quote state covers them).
    scanned: usize,
    /// File offset of `buf[0]`.
    base: u64,
    /// Lines of the file before `buf[0]`.
    lines: u64,
    /// Newlines inside the unfinished record scanned so far.
    newlines: u64,
    /// Whether newlines inside quoted fields stay in the record (CSV).
    csv: bool,
    /// The CSV quote state at `scanned`.
    state: Csv,
    /// During one [`Splitter::split`]: where the last search for a quote
    /// began in `buf`, and the first quote at or after it (`filled` if
    /// none), so a chunk without quotes is searched once, not line by line.
    next_quote: Option<(usize, usize)>,
    /// The over-long record being skipped, if any.
    skipping: Option<Skipping>,
    /// A quote opened on an earlier line of the record closed followed by
    /// text: a stray quote, not a field spanning lines.
    bad_close: bool,
    /// Nothing read yet: the first bytes decide the encoding.
    at_start: bool,
    /// Whether a last record without a line end is handed on at the end of
    /// the file (`false` while following a folder: its writer may not have
    /// finished the line, so it waits for its line end).
    last_unended: bool,
    /// Hand on runs of whole unquoted CSV lines as one [`Piece::Run`].
    runs: bool,
}

impl Splitter {
    /// A splitter for a file read from `offset`, after `lines` lines; `csv`
    /// keeps newlines inside quoted fields in their record.
    pub(crate) fn new(offset: u64, lines: u64, csv: bool, last_unended: bool) -> Self {
        Self {
            buf: vec![0; CHUNK],
            filled: 0,
            scanned: 0,
            base: offset,
            lines,
            newlines: 0,
            csv,
            state: Csv::FieldStart,
            next_quote: None,
            skipping: None,
            bad_close: false,
            at_start: offset == 0,
            last_unended,
            runs: false,
        }
    }

    /// Hand on the lines between quotes in runs ([`Piece::Run`]) instead of
    /// one by one (CSV only: the runs are what a quote cannot change).
    pub(crate) fn runs(mut self, on: bool) -> Self {
        self.runs = on && self.csv;
        self
    }

    /// At a record's start in `buf[start..]`: the whole lines before the
    /// next quote, `(end of the last one's line end, lines)`, if any.
    fn run_at(&mut self, start: usize) -> Option<(usize, u64)> {
        let quote = self.quote_from(start);
        let run = &self.buf[start..quote];
        let last = memchr::memrchr(b'\n', run)?;
        let lines = scan::count::<b'\n'>(&run[..=last]);
        Some((start + last + 1, lines as u64))
    }

    /// The record boundary after everything handed on: (byte offset, lines
    /// before it); `None` inside an over-long record being skipped.
    pub(crate) fn boundary(&self) -> Option<(u64, u64)> {
        self.skipping.is_none().then_some((self.base, self.lines))
    }

    /// Where the records handed on end: (byte offset, lines before it),
    /// before an over-long record still being skipped.
    pub(crate) fn end(&self) -> (u64, u64) {
        match &self.skipping {
            Some(s) => (s.offset, s.line - 1),
            None => (self.base, self.lines),
        }
    }

    /// Read one chunk from `r` and hand every record it completes to
    /// `emit` (which may stop the file with `Ok(false)`). Returns the bytes
    /// read (0: end of file, every record handed on) and the encoding if
    /// this was the first chunk of the file.
    pub(crate) fn fill<R: Read + ?Sized, E>(
        &mut self,
        r: &mut R,
        emit: &mut dyn FnMut(Piece<'_>) -> Result<bool, E>,
    ) -> Result<Fill, FillError<E>> {
        if self.filled == self.buf.len() {
            if self.buf.len() < MAX_LINE {
                self.buf.resize((self.buf.len() * 2).min(MAX_LINE), 0);
            } else {
                self.skip_buffered();
            }
        }
        let n = read_some(r, &mut self.buf[self.filled..]).map_err(FillError::Io)?;
        self.filled += n;
        let mut encoding = None;
        let mut start = 0usize;
        if self.at_start && (self.filled >= 3 || n == 0) {
            self.at_start = false;
            let head = &self.buf[..self.filled];
            if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
                return Ok(Fill {
                    read: n,
                    encoding: Some(Encoding::Utf16 {
                        little: head[0] == 0xFF,
                    }),
                });
            }
            encoding = Some(Encoding::Utf8);
            if head.starts_with(UTF8_BOM) {
                start = UTF8_BOM.len();
            }
        } else if self.at_start {
            // Fewer than three bytes so far: wait for more (or the end).
            return Ok(Fill {
                read: n,
                encoding: None,
            });
        }
        let stopped = self.split(start, n == 0, emit)?;
        Ok(Fill {
            read: if stopped { usize::MAX } else { n },
            encoding,
        })
    }

    /// The first quote at or after `from` in `buf[..filled]` (`filled` if
    /// none), searched once per stretch without quotes ([`Splitter::next_quote`]).
    #[inline(always)]
    fn quote_from(&mut self, from: usize) -> usize {
        match self.next_quote {
            Some((at, q)) if at <= from && from <= q => q,
            _ => {
                let rest = &self.buf[from..self.filled];
                let q = memchr::memchr(b'"', rest).map_or(self.filled, |i| from + i);
                self.next_quote = Some((from, q));
                q
            }
        }
    }

    /// Run the CSV quote state over `buf[from..to]` (no line end inside).
    #[inline(always)]
    fn fold(&mut self, from: usize, to: usize) {
        if matches!(self.state, Csv::FieldStart | Csv::Unquoted) && to <= self.quote_from(from) {
            // Without quotes only its last byte matters.
            match self.buf[from..to].last() {
                Some(b',') => self.state = Csv::FieldStart,
                Some(_) => self.state = Csv::Unquoted,
                None => {}
            }
            return;
        }
        self.fold_quoted(from, to);
    }

    /// [`Splitter::fold`] over a segment with quotes, byte by byte.
    #[inline(never)]
    fn fold_quoted(&mut self, from: usize, to: usize) {
        for &b in &self.buf[from..to] {
            self.bad_close |= self.newlines > 0
                && self.state == Csv::QuoteInQuoted
                && !matches!(b, b'"' | b',' | b'\r');
            self.state = self.state.step(b);
        }
    }

    /// The buffer is full of one unfinished record: skip it from here on.
    fn skip_buffered(&mut self) {
        let s = self.skipping.get_or_insert_with(|| Skipping {
            offset: self.base,
            line: self.lines + 1,
            len: 0,
            newlines: 0,
            head: self.buf[..LONG_HEAD].to_vec(),
        });
        s.len += self.filled as u64;
        s.newlines += self.newlines;
        self.base += self.filled as u64;
        self.newlines = 0;
        self.filled = 0;
        self.scanned = 0;
        self.state = Csv::FieldStart;
        self.bad_close = false;
    }

    /// Hand on the complete records in `buf[start..filled]` (and at the end
    /// of the file the last one); keep the unfinished rest at the front.
    /// `Ok(true)`: `emit` stopped the file.
    fn split<E>(
        &mut self,
        mut start: usize,
        eof: bool,
        emit: &mut dyn FnMut(Piece<'_>) -> Result<bool, E>,
    ) -> Result<bool, FillError<E>> {
        let mut scan = (start + self.scanned).min(self.filled);
        let mut stopped = false;
        self.next_quote = None;
        let mut newlines = scan::Newlines::new();
        loop {
            loop {
                if self.runs
                    && scan == start
                    && self.skipping.is_none()
                    && self.newlines == 0
                    && self.state == Csv::FieldStart
                    && let Some((end, lines)) = self.run_at(start)
                {
                    let piece = Piece::Run {
                        bytes: &self.buf[start..end],
                        line: self.lines + 1,
                        offset: self.base + start as u64,
                    };
                    let go_on = emit(piece).map_err(FillError::Emit)?;
                    self.lines += lines;
                    start = end;
                    scan = start;
                    if !go_on {
                        stopped = true;
                        break;
                    }
                }
                let Some(nl) = newlines.next(&self.buf[..self.filled], scan) else {
                    break;
                };
                if let Some(s) = self.skipping.take() {
                    // The end of an over-long record.
                    let piece = Piece::TooLong {
                        line: s.line,
                        len: s.len + trim_cr(&self.buf[start..nl]).len() as u64,
                        head: &s.head,
                    };
                    let go_on = emit(piece).map_err(FillError::Emit)?;
                    self.lines += s.newlines + self.newlines + 1;
                    self.newlines = 0;
                    self.state = Csv::FieldStart;
                    self.bad_close = false;
                    start = nl + 1;
                    scan = start;
                    if !go_on {
                        stopped = true;
                        break;
                    }
                    continue;
                }
                if self.csv {
                    self.fold(scan, nl);
                    if self.bad_close {
                        // A quote that opened on an earlier line closes
                        // here followed by text: it was a stray quote, not a
                        // field spanning lines. Its first line is the
                        // record; the lines after it are split again.
                        let first = start
                            + memchr::memchr(b'\n', &self.buf[start..nl]).unwrap_or(nl - start);
                        let piece = Piece::Record {
                            bytes: trim_cr(&self.buf[start..first]),
                            line: self.lines + 1,
                            offset: self.base + start as u64,
                        };
                        let go_on = emit(piece).map_err(FillError::Emit)?;
                        self.lines += 1;
                        self.newlines = 0;
                        self.state = Csv::FieldStart;
                        self.bad_close = false;
                        start = first + 1;
                        scan = start;
                        if !go_on {
                            stopped = true;
                            break;
                        }
                        continue;
                    }
                    if self.state == Csv::Quoted {
                        // A newline inside a quoted field: the record goes on.
                        self.newlines += 1;
                        scan = nl + 1;
                        continue;
                    }
                }
                let piece = Piece::Record {
                    bytes: trim_cr(&self.buf[start..nl]),
                    line: self.lines + 1,
                    offset: self.base + start as u64,
                };
                let go_on = emit(piece).map_err(FillError::Emit)?;
                self.lines += self.newlines + 1;
                self.newlines = 0;
                self.state = Csv::FieldStart;
                self.bad_close = false;
                start = nl + 1;
                scan = start;
                if !go_on {
                    stopped = true;
                    break;
                }
            }
            // An unterminated quote (at the end of the file, or filling the
            // whole buffer) does not swallow the lines after it: its first
            // line is the record (a dead letter for the parser), and the
            // rest is split again.
            let whole = start == 0 && self.filled == MAX_LINE;
            if stopped || !self.csv || self.skipping.is_some() || !(eof || whole) {
                break;
            }
            let tail = &self.buf[scan..self.filled];
            if tail.iter().fold(self.state, |s, &b| s.step(b)) != Csv::Quoted {
                break;
            }
            let Some(nl) = memchr::memchr(b'\n', &self.buf[start..self.filled]).map(|i| start + i)
            else {
                break;
            };
            let piece = Piece::Record {
                bytes: trim_cr(&self.buf[start..nl]),
                line: self.lines + 1,
                offset: self.base + start as u64,
            };
            let go_on = emit(piece).map_err(FillError::Emit)?;
            self.lines += 1;
            self.newlines = 0;
            self.state = Csv::FieldStart;
            self.bad_close = false;
            start = nl + 1;
            scan = start;
            if !go_on {
                stopped = true;
                break;
            }
        }
        if !stopped && eof && self.last_unended && start < self.filled {
            // The last record, without a line end.
            let skipped = self.skipping.take();
            let piece = match &skipped {
                Some(s) => Piece::TooLong {
                    line: s.line,
                    len: s.len + (self.filled - start) as u64,
                    head: &s.head,
                },
                None => Piece::Record {
                    bytes: trim_cr(&self.buf[start..self.filled]),
                    line: self.lines + 1,
                    offset: self.base + start as u64,
                },
            };
            stopped = !emit(piece).map_err(FillError::Emit)?;
            self.lines += skipped.map_or(0, |s| s.newlines) + self.newlines + 1;
            self.newlines = 0;
            start = self.filled;
            scan = start;
        }
        if stopped {
            scan = start;
        } else {
            // The unfinished rest has no line end: keep its scan (and for
            // CSV its quote state) so the next chunk goes on from there.
            if self.csv && self.skipping.is_none() {
                self.fold(scan, self.filled);
            }
            scan = self.filled;
        }
        self.base += start as u64;
        self.buf.copy_within(start..self.filled, 0);
        self.filled -= start;
        self.scanned = scan - start;
        Ok(stopped)
    }
}

/// What one [`Splitter::fill`] did.
#[derive(Debug)]
pub(crate) struct Fill {
    /// Bytes read: 0 at the end of the file; `usize::MAX` when the emitter
    /// stopped the file.
    pub read: usize,
    /// The file's encoding, once known (on its first chunk).
    pub encoding: Option<Encoding>,
}

/// Why a [`Splitter::fill`] failed.
#[derive(Debug)]
pub(crate) enum FillError<E> {
    /// Reading the file.
    Io(std::io::Error),
    /// The emitter's error.
    Emit(E),
}

/// `line` without a final `\r` (CRLF line ends).
fn trim_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

/// Read into `buf`, retrying on interrupts.
fn read_some<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
