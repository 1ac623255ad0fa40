//! Files read as one ordered stream: the files of a local folder or of an
//! object-store prefix (a [`Listing`]), in name order, each cut into
//! records as tools write them (`split.rs`). In `follow` mode the source
//! keeps polling the listing: it reads each new file once, and the lines
//! appended to a file it already read, until the job is stopped.
//!
//! Files are read in large chunks; records are sliced out of the chunk
//! without copying, and only the router copies each record, once, into its
//! batch. The source's position (`position.rs`) is the file being read,
//! the byte offset after the last record handed on and the lines before
//! it, plus each file read to the end with how far it was read and a digest
//! of its bytes there: a restored job resumes at the offset, reads on in a
//! file that has grown since, and refuses one that changed. One reader
//! feeds every partition, so the position is the reader's, not per
//! partition.

mod config;
pub(crate) mod index;
mod listing;
mod position;
mod progress;
mod run;
mod scan;
mod split;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::format::LineParser;
pub use super::format::{Format, KeySpec};
use super::{Completion, Output, Position, Restored, Source, SourceProgress};
use crate::batch::{NO_TIMESTAMP, Origin, Origins};
use crate::{Error, Result};
pub use config::{FileSourceConfig, FileSourceSpec};
pub(crate) use listing::{Entry, Listing, open_listing};
pub use position::{DoneFile, FilePosition};
use position::{Since, check_current, since, tail_digest};
pub use split::MAX_LINE;
use split::{Encoding, FillError, LONG_HEAD, Piece, Splitter};

/// The connector name in checkpoints.
pub(crate) const CONNECTOR: &str = "files";

/// Names of the files the source has opened, indexed by [`Origin::unit`];
/// describes origins as `file` and `line` in dead letters.
#[derive(Debug, Default)]
struct FileTable(Mutex<Vec<String>>);

impl FileTable {
    fn add(&self, file: String) -> u32 {
        let mut files = crate::lock_or_recover(&self.0);
        files.push(file);
        (files.len() - 1) as u32
    }
}

impl Origins for FileTable {
    fn describe(&self, origin: Origin, out: &mut Map<String, Value>) {
        let files = crate::lock_or_recover(&self.0);
        if let Some(f) = files.get(origin.unit as usize) {
            out.insert("file".into(), json!(f));
        }
        out.insert("line".into(), json!(origin.offset));
    }
}

/// The file source.
pub struct FileSource {
    /// Its settings.
    spec: FileSourceSpec,
    /// Finds keys and event times in records.
    parser: LineParser,
    /// Set to end a `follow` run.
    stop: Arc<AtomicBool>,
    /// The folder or prefix.
    listing: Arc<dyn Listing>,
    /// Files opened, for dead letters.
    files: Arc<FileTable>,
    /// Files read to the end, by name.
    done: BTreeMap<String, DoneFile>,
    /// Sizes of files whose growth since they were read is not to be read
    /// (a line without its end yet, or a change already reported), so a
    /// poll looks at them again only once they change again.
    seen: HashMap<String, u64>,
    /// The file being read, the offset after its last record handed on
    /// and the lines before it.
    current: FilePosition,
    /// Where a restored job resumes.
    start: Option<FilePosition>,
    /// The position before the first record at or after `spec.until`,
    /// once read.
    until_at: Cell<Option<Position>>,
    /// Files and bytes read of the total, event time: for progress.
    progress: Arc<SourceProgress>,
    /// The largest event time handed on ([`NO_TIMESTAMP`]: none yet).
    max_time: Cell<i64>,
    /// Lines may come in runs where they mean the same (off in tests that
    /// compare the two ways).
    runs: bool,
}

impl FileSource {
    /// A source over `spec`'s folder or prefix, resuming at `restored`;
    /// `stop` ends a `follow` run. Refuses a missing folder, a key on a
    /// `lines` source, a position written by another connector, or one
    /// whose input changed: the file being read is gone or changed before
    /// the position, or a file read to the end changed in the part read.
    pub fn open(
        spec: FileSourceSpec,
        stop: Arc<AtomicBool>,
        restored: Option<Restored>,
    ) -> Result<Self> {
        if spec.format == Format::Lines && spec.key != KeySpec::None {
            return Err(Error::Config("lines sources have no key".into()));
        }
        let listing = open_listing(&spec)?;
        let start = match restored {
            Some(r) => Some(check_restored(&*listing, r)?),
            None => None,
        };
        let parser = LineParser::new(spec.format, spec.key.clone(), spec.timestamp.clone());
        let progress = Arc::new(SourceProgress::new(!spec.follow));
        Ok(Self {
            spec,
            parser,
            stop,
            listing,
            files: Arc::default(),
            done: BTreeMap::new(),
            seen: HashMap::new(),
            // Until a file is read, the position is the restored one (a
            // final checkpoint of a run with nothing new to read keeps it).
            current: start.clone().unwrap_or_default(),
            max_time: Cell::new(
                start
                    .as_ref()
                    .and_then(|s| s.max_time)
                    .unwrap_or(NO_TIMESTAMP),
            ),
            start,
            until_at: Cell::new(None),
            progress,
            runs: true,
        })
    }

    /// Read one file from `from` (offset, lines before it). Returns how the
    /// read ended: `None` when the file was read to the end.
    fn read_file(
        &mut self,
        entry: &Entry,
        from: (u64, u64),
        out: &mut dyn Output,
    ) -> Result<Option<Completion>> {
        let unit = self.files.add(self.listing.describe(&entry.name));
        let mut reader = self.listing.open(entry, from.0)?;
        self.current = FilePosition {
            file: Some(entry.name.clone()),
            offset: from.0,
            line: from.1,
            ..FilePosition::default()
        };
        let csv = self.spec.format == Format::Csv;
        let route = if self.spec.partition_from_name {
            crate::source::hybrid::archive::connect_name(&entry.name).map(|c| c.partition)
        } else {
            None
        };
        let column = self.run_column(route);
        let mut split =
            Splitter::new(from.0, from.1, csv, !self.spec.follow).runs(column.is_some());
        loop {
            if self.stop.load(Ordering::Relaxed) || out.is_stopping() {
                return Ok(Some(Completion::Stopped));
            }
            let fill = {
                let this = &*self;
                let mut emit = |piece: Piece<'_>| match (piece, column) {
                    (
                        Piece::Run {
                            bytes,
                            line,
                            offset,
                        },
                        Some(c),
                    ) => this.handle_run((unit, c), (bytes, line, offset), out),
                    (piece, _) => this.handle((unit, route), piece, out),
                };
                split.fill(&mut *reader, &mut emit)
            };
            let fill = match fill {
                Ok(f) => f,
                Err(FillError::Io(e)) => {
                    return Err(Error::Config(format!(
                        "reading {}: {e}",
                        self.listing.describe(&entry.name)
                    )));
                }
                Err(FillError::Emit(e)) => return Err(e),
            };
            if fill.read == usize::MAX {
                return Ok(Some(Completion::Stopped));
            }
            if let Some(Encoding::Utf16 { little }) = fill.encoding {
                self.refuse_utf16(unit, entry, little, out)?;
                return Ok(None);
            }
            (self.current.offset, self.current.line) = split.end();
            out.read_bytes(fill.read as u64);
            self.progress.read(fill.read as u64);
            if out.tick().is_break() {
                return Ok(Some(Completion::Stopped));
            }
            if split.boundary().is_some() && self.barrier_if_due(out).is_break() {
                return Ok(Some(Completion::Stopped));
            }
            if fill.read == 0 {
                self.finish_file(&entry.name)?;
                out.unit_done();
                return Ok(None);
            }
        }
    }

    /// Record `name` as read to the current position.
    fn finish_file(&mut self, name: &str) -> Result<()> {
        let (size, lines) = (self.current.offset, self.current.line);
        let tail = tail_digest(&*self.listing, name, size)?;
        let etag = self.listing.stat(name)?.and_then(|e| e.etag);
        self.done.insert(
            name.to_string(),
            DoneFile::Read {
                name: name.to_string(),
                size,
                lines,
                tail,
                etag,
            },
        );
        self.progress.files_done(self.done.len() as u64);
        Ok(())
    }

    /// A UTF-16 file: one dead letter that says so, and the file counts as
    /// read (its bytes stay where they are; the dead letter names it).
    fn refuse_utf16(
        &mut self,
        unit: u32,
        entry: &Entry,
        little: bool,
        out: &mut dyn Output,
    ) -> Result<()> {
        let (order, bom) = if little {
            ("little", "FF FE")
        } else {
            ("big", "FE FF")
        };
        let reason = format!(
            "the file is UTF-16 ({order} endian: it starts with the byte order mark {bom}); \
             the file source reads UTF-8, so none of it was read: convert it (for example \
             `iconv -f UTF-16 -t UTF-8`) and add it under a new name"
        );
        let head = self
            .listing
            .read_range(&entry.name, 0, entry.size.min(LONG_HEAD as u64))?;
        out.malformed(Origin { unit, offset: 0 }, &reason, &head)?;
        self.current.offset = entry.size;
        self.current.line = 0;
        self.finish_file(&entry.name)?;
        out.unit_done();
        Ok(())
    }

    /// Inject the barrier due now, if any, at the current position.
    fn barrier_if_due(&self, out: &mut dyn Output) -> ControlFlow<()> {
        match out.barrier_due() {
            Some(req) => out.barrier(
                req,
                self.checkpoint_position(self.current.offset, self.current.line),
            ),
            None => ControlFlow::Continue(()),
        }
    }

    /// The position to record at `offset` (`line` lines) of the current
    /// file: with the digest of the bytes before it and the files done.
    fn checkpoint_position(&self, offset: u64, line: u64) -> Position {
        let tail = self.current.file.as_ref().and_then(|f| {
            tail_digest(&*self.listing, f, offset)
                .inspect_err(|e| tracing::warn!(file = f, "no digest for the position: {e}"))
                .ok()
        });
        FilePosition {
            file: self.current.file.clone(),
            offset,
            line,
            tail,
            done: Some(self.done.values().cloned().collect()),
            max_time: Some(self.max_time.get()).filter(|&t| t != NO_TIMESTAMP),
        }
        .to_position()
    }

    /// Route one piece of input of file `unit` (to `partition` when its
    /// name carries one); `Ok(false)` when the job must stop.
    fn handle(
        &self,
        (unit, partition): (u32, Option<usize>),
        piece: Piece<'_>,
        out: &mut dyn Output,
    ) -> Result<bool> {
        let (line, line_no, offset) = match piece {
            Piece::Run { .. } => {
                return Err(crate::Error::Internal(
                    "a run of lines where records were due".into(),
                ));
            }
            Piece::TooLong { line, len, head } => {
                let reason = format!(
                    "line {line} is {len} bytes long, over the limit of {} MiB; the dead letter \
                     holds its first KiB",
                    MAX_LINE >> 20
                );
                out.malformed(Origin { unit, offset: line }, &reason, head)?;
                return Ok(true);
            }
            Piece::Record {
                bytes,
                line,
                offset,
            } => (bytes, line, offset),
        };
        if line.is_empty() || (self.spec.header && line_no == 1 && self.spec.format == Format::Csv)
        {
            return Ok(true);
        }
        let origin = Origin {
            unit,
            offset: line_no,
        };
        match self.parser.parse(line) {
            Ok(p) => {
                if let Some(until) = self.spec.until
                    && p.timestamp != NO_TIMESTAMP
                    && p.timestamp >= until
                {
                    self.until_at
                        .set(Some(self.checkpoint_position(offset, line_no - 1)));
                    return Ok(false);
                }
                self.progress.saw_time(p.timestamp);
                if p.timestamp != NO_TIMESTAMP
                    && let Some(req) = out.event_time_barrier(p.timestamp)
                {
                    let at = self.checkpoint_position(offset, line_no - 1);
                    if out.barrier(req, at).is_break() {
                        return Ok(false);
                    }
                }
                if p.timestamp > self.max_time.get() {
                    self.max_time.set(p.timestamp);
                }
                let routed = match partition {
                    Some(to) => out.record_in(
                        to,
                        p.key.as_deref().unwrap_or_default(),
                        line,
                        p.timestamp,
                        origin,
                    ),
                    None => out.record(p.key.as_deref(), line, p.timestamp, origin),
                };
                Ok(routed.is_continue())
            }
            Err(reason) => out.malformed(origin, &reason, line).map(|()| true),
        }
    }

    /// Where to read `entry` from in this pass: `None` to leave it.
    fn read_from(
        &mut self,
        entry: &Entry,
        resume: &Option<(String, u64, u64)>,
    ) -> Result<Option<(u64, u64)>> {
        if let Some((f, offset, line)) = resume
            && *f == entry.name
        {
            return Ok(Some((*offset, *line)));
        }
        let Some(done) = self.done.get(&entry.name) else {
            return Ok(Some((0, 0)));
        };
        if self.seen.get(&entry.name) == Some(&entry.size) {
            return Ok(None);
        }
        match since(&*self.listing, done, Some(entry))? {
            Since::Same => Ok(None),
            Since::Appended(offset, lines) => {
                // Read on from there; while it is read, the file is the
                // current one, not done.
                self.done.remove(&entry.name);
                Ok(Some((offset, lines)))
            }
            Since::Changed(reason) => {
                tracing::warn!("{reason}: its new content is not read");
                self.seen.insert(entry.name.clone(), entry.size);
                Ok(None)
            }
        }
    }

    /// At the end of a bounded run: report the files that grew after they
    /// were read (this run reads the files as it found them).
    fn report_growth(&self) -> Result<()> {
        for entry in self.listing.list()? {
            if let Some(DoneFile::Read { size, .. }) = self.done.get(&entry.name)
                && entry.size > *size
                && self.seen.get(&entry.name) != Some(&entry.size)
            {
                tracing::warn!(
                    "{} grew by {} bytes after it was read (to byte {size}): this run does not \
                     read them; a run resumed from its last checkpoint (`weir run` without \
                     --fresh), or `follow = true`, reads them",
                    self.listing.describe(&entry.name),
                    entry.size - size
                );
            }
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn connector(&self) -> &'static str {
        CONNECTOR
    }

    fn origins(&self) -> Arc<dyn Origins> {
        self.files.clone()
    }

    fn progress(&self) -> Option<Arc<SourceProgress>> {
        Some(self.progress.clone())
    }

    fn run(&mut self, out: &mut dyn Output) -> Result<Completion> {
        let mut resume = None;
        if let Some(start) = self.start.take() {
            match start.done {
                Some(done) => {
                    self.done = done
                        .into_iter()
                        .map(|d| (d.name().to_string(), d))
                        .collect();
                }
                None => {
                    // Older positions: files before the restored one are done.
                    if let Some(file) = &start.file {
                        for e in self.listing.list()? {
                            if e.name < *file {
                                self.done.insert(e.name.clone(), DoneFile::Name(e.name));
                            }
                        }
                    }
                }
            }
            if let Some(file) = start.file
                && !self.done.contains_key(&file)
            {
                resume = Some((file, start.offset, start.line));
            }
        } else if let Some(at) = self.spec.start_at {
            // Files wholly before `start_at` count as read; the run starts
            // inside the first file with a record at or after it.
            let found = index::start_at(&*self.listing, &self.spec, at)?;
            for name in found.skip {
                self.done.insert(name.clone(), DoneFile::Name(name));
            }
            resume = found.at;
        }
        let mut first_pass = true;
        loop {
            let mut read_any = false;
            let entries = self.listing.list()?;
            self.publish_listing(&entries, resume.as_ref(), first_pass);
            first_pass = false;
            for entry in entries {
                let Some(from) = self.read_from(&entry, &resume)? else {
                    continue;
                };
                if resume.as_ref().is_some_and(|(f, ..)| *f == entry.name) {
                    resume = None;
                }
                read_any = true;
                if let Some(stopped) = self.read_file(&entry, from, out)? {
                    if let Some(end) = self.until_at.take() {
                        // `until` reached: the input ends here.
                        if out.end_of_input(end).is_break() {
                            return Ok(Completion::Stopped);
                        }
                        return Ok(Completion::EndOfInput);
                    }
                    return Ok(stopped);
                }
                if let Some(DoneFile::Read { size, .. }) = self.done.get(&entry.name)
                    && *size < entry.size
                {
                    // A last line without its end (follow): wait for more.
                    self.seen.insert(entry.name.clone(), entry.size);
                }
                tracing::debug!(file = entry.name, "file done");
            }
            if !self.spec.follow {
                self.report_growth()?;
                let end = self.checkpoint_position(self.current.offset, self.current.line);
                if out.end_of_input(end).is_break() {
                    return Ok(Completion::Stopped);
                }
                return Ok(Completion::EndOfInput);
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Completion::Stopped);
            }
            if !read_any {
                if out.flush().is_break() || self.barrier_if_due(out).is_break() {
                    return Ok(Completion::Stopped);
                }
                std::thread::sleep(self.spec.poll_interval);
            }
        }
    }
}

/// The restored position, checked against the input as it is now.
fn check_restored(listing: &dyn Listing, r: Restored) -> Result<FilePosition> {
    let refuse = |detail: String| Error::Savepoint {
        location: listing.location().to_string(),
        detail,
    };
    if r.connector != CONNECTOR {
        return Err(refuse(format!(
            "it was taken from a `{}` source; this job reads files",
            r.connector
        )));
    }
    let p = FilePosition::from_value(&r.reader).map_err(refuse)?;
    let done = p.done.as_deref().unwrap_or_default();
    if let Some(file) = &p.file
        && !done.iter().any(|d| d.name() == file)
    {
        check_current(listing, file, &p).map_err(refuse)?;
    }
    if !done.is_empty() {
        let now: HashMap<String, Entry> = listing
            .list()?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        for d in done {
            if let Since::Changed(reason) = since(listing, d, now.get(d.name()))? {
                return Err(refuse(format!(
                    "{reason}: a file read to the end may grow (the lines appended are read), \
                     not change; put it back as it was, add the new content as a new file, or \
                     run with --fresh"
                )));
            }
        }
    }
    Ok(p)
}
