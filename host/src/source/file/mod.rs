//! A directory of files read as one ordered stream: files in name order, each
//! line a record. In `follow` mode the source keeps polling the directory and
//! reads each new file once, in name order, until the job is stopped.
//!
//! Files are read in large chunks; lines are sliced out of the chunk without
//! copying, and only the router copies each record, once, into its batch.
//! The source's position is (file name, byte offset after the last line
//! handed on, lines before it); a checkpoint records it and a restored job
//! resumes there: files sorting before it are skipped, that file is read
//! from the offset. One reader feeds every partition, so the position is
//! the reader's, not per partition.

mod config;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::batch::NO_TIMESTAMP;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::format::LineParser;
pub use super::format::{Format, KeySpec};
use super::{Completion, Output, Position, Restored, Source};
use crate::batch::{Origin, Origins};
use crate::{Error, Result};
pub use config::{FileSourceConfig, FileSourceSpec};

/// The connector name in checkpoints.
pub(crate) const CONNECTOR: &str = "files";

/// Where the reader is: the file source's checkpointed position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// File being read (name within the source folder); files sorting
    /// before it are done. `None`: nothing read yet.
    pub file: Option<String>,
    /// Byte offset in `file` after the last record before the barrier.
    pub offset: u64,
    /// Lines of `file` before `offset`.
    pub line: u64,
    /// SHA-256 (hex) of the up to [`TAIL`] bytes of `file` before
    /// `offset`: a restore refuses a file that changed there. Absent in
    /// positions written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    /// Files read to the end, recorded when the source follows a folder: a
    /// file that arrives later with a name sorting before `file` is still
    /// read after a restore. Absent: the files sorting before `file` are
    /// done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Vec<String>>,
}

/// Bytes before a position whose digest a checkpoint records.
const TAIL: u64 = 4096;

/// SHA-256 (hex) of the up to [`TAIL`] bytes of `path` before `offset`.
fn tail_digest(path: &Path, offset: u64) -> std::io::Result<String> {
    let from = offset.saturating_sub(TAIL);
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0; (offset - from) as usize];
    f.read_exact(&mut buf)?;
    Ok(crate::digest::sha256_hex(&buf))
}

impl FilePosition {
    /// Read a position recorded by this source (`null`: the start).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        if v.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(v.clone()).map_err(|e| format!("not a file source position: {e}"))
    }

    fn to_position(&self) -> Position {
        Position {
            reader: json!(self),
            partitions: Vec::new(),
        }
    }
}

/// Names of the files the source has opened, indexed by [`Origin::unit`];
/// describes origins as `file` and `line` in dead letters.
#[derive(Debug, Default)]
struct FileTable(Mutex<Vec<PathBuf>>);

impl FileTable {
    fn add(&self, path: &Path) -> u32 {
        let mut files = crate::lock_or_recover(&self.0);
        files.push(path.to_path_buf());
        (files.len() - 1) as u32
    }
}

impl Origins for FileTable {
    fn describe(&self, origin: Origin, out: &mut Map<String, Value>) {
        let files = crate::lock_or_recover(&self.0);
        if let Some(f) = files.get(origin.unit as usize) {
            out.insert("file".into(), json!(f.display().to_string()));
        }
        out.insert("line".into(), json!(origin.offset));
    }
}

/// Read size; a line longer than this grows the buffer up to [`MAX_LINE`].
const CHUNK: usize = 1 << 20;
/// Longest line accepted; longer lines go to the dead-letter output, cut.
pub const MAX_LINE: usize = 16 << 20;

/// The file source.
pub struct FileSource {
    spec: FileSourceSpec,
    parser: LineParser,
    stop: Arc<AtomicBool>,
    done: HashSet<OsString>,
    files: Arc<FileTable>,
    /// Offset of the current chunk's first byte in the current file.
    position: FilePosition,
    /// Where a restored job resumes.
    start: Option<FilePosition>,
    /// Record the files done in each position: when following a folder,
    /// or when the restored position had them.
    record_done: bool,
    buf: Vec<u8>,
    /// The position before the first record at or after `spec.until`,
    /// once read.
    until_at: std::cell::Cell<Option<Position>>,
}

/// Refuse a restored position in `file` that its input no longer has: the
/// file is gone, shorter than the position, or changed before it.
fn check_restored_file(path: &Path, file: &str, p: &FilePosition) -> Result<(), String> {
    let fix = "put the file back as it was when the savepoint was taken, or run without \
               --from-savepoint";
    let len = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        _ => {
            return Err(format!(
                "the restored position is in file {file}, which is not in the source folder; {fix}"
            ));
        }
    };
    if len < p.offset {
        return Err(format!(
            "file {file} has {len} bytes, fewer than the restored position (byte {}): it was \
             truncated or replaced since the savepoint; {fix}",
            p.offset
        ));
    }
    if let Some(tail) = &p.tail {
        let now = tail_digest(path, p.offset).map_err(|e| format!("reading {file}: {e}"))?;
        if now != *tail {
            return Err(format!(
                "file {file} changed since the savepoint: its bytes before the restored position \
                 (byte {}) differ; {fix}",
                p.offset
            ));
        }
    }
    Ok(())
}

impl FileSource {
    /// A source over `spec.dir`, resuming at `restored`; `stop` ends a
    /// `follow` run. Refuses a missing folder, a key on a `lines` source, a
    /// position written by another connector or in a file that is gone.
    pub fn open(
        spec: FileSourceSpec,
        stop: Arc<AtomicBool>,
        restored: Option<Restored>,
    ) -> Result<Self> {
        check_folder(&spec.dir)?;
        if spec.format == Format::Lines && spec.key != KeySpec::None {
            return Err(Error::Config("lines sources have no key".into()));
        }
        let start = match restored {
            Some(r) => {
                let refuse = |detail: String| Error::Savepoint {
                    location: spec.dir.display().to_string(),
                    detail,
                };
                if r.connector != CONNECTOR {
                    return Err(refuse(format!(
                        "it was taken from a `{}` source; this job reads files",
                        r.connector
                    )));
                }
                let p = FilePosition::from_value(&r.reader).map_err(refuse)?;
                if let Some(file) = &p.file {
                    check_restored_file(&spec.dir.join(file), file, &p).map_err(refuse)?;
                }
                Some(p)
            }
            None => None,
        };
        let parser = LineParser::new(spec.format, spec.key.clone(), spec.timestamp.clone());
        let spec_follow = spec.follow;
        Ok(Self {
            spec,
            parser,
            stop,
            done: HashSet::new(),
            files: Arc::default(),
            // Until a file is read, the position is the restored one (a
            // final checkpoint of a run with nothing new to read keeps it).
            position: start.clone().unwrap_or_default(),
            record_done: spec_follow || start.as_ref().is_some_and(|s| s.done.is_some()),
            start,
            buf: vec![0; CHUNK],
            until_at: std::cell::Cell::new(None),
        })
    }

    /// Files not read yet, in name order. Hidden files (`.name`) are
    /// skipped, so writers can write `.name` and rename when complete;
    /// symbolic links to files are followed.
    fn pending_files(&self) -> Result<Vec<(OsString, PathBuf)>> {
        let dir = &self.spec.dir;
        let entries = std::fs::read_dir(dir).map_err(Error::io("listing source folder", dir))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("listing source folder", dir))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || self.done.contains(&name) {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(Error::io("reading file type in", dir))?;
            // A symbolic link is read as the file it points to; one that
            // points nowhere (or at a folder) is an error, not a silent skip.
            let is_file = if kind.is_symlink() {
                let path = entry.path();
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => true,
                    Ok(_) => {
                        tracing::warn!(link = %path.display(), "symbolic link to a non-file in the source folder: skipped");
                        false
                    }
                    Err(e) => {
                        return Err(Error::Config(format!(
                            "source file {} is a symbolic link that cannot be followed: {e}",
                            path.display()
                        )));
                    }
                }
            } else {
                kind.is_file()
            };
            if is_file {
                files.push((name, entry.path()));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Read one file from `resume` (offset, lines before it) or its start.
    /// Returns how the read ended: `None` when the file was read to the end.
    fn read_file(
        &mut self,
        name: &OsString,
        path: &Path,
        resume: (u64, u64),
        out: &mut dyn Output,
    ) -> Result<Option<Completion>> {
        let file_index = self.files.add(path);
        let mut f = File::open(path).map_err(Error::io("opening", path))?;
        if resume.0 > 0 {
            f.seek(SeekFrom::Start(resume.0))
                .map_err(Error::io("seeking in", path))?;
        }
        self.position = FilePosition {
            file: Some(name.to_string_lossy().into_owned()),
            offset: resume.0,
            line: resume.1,
            ..FilePosition::default()
        };
        let mut line_no = resume.1;
        let mut filled = 0usize;
        let mut skipping_long_line = false;
        loop {
            if self.stop.load(Ordering::Relaxed) || out.is_stopping() {
                return Ok(Some(Completion::Stopped));
            }
            if filled == self.buf.len() {
                if self.buf.len() < MAX_LINE {
                    self.buf.resize((self.buf.len() * 2).min(MAX_LINE), 0);
                } else {
                    // A line longer than MAX_LINE: dead-letter its head, skip the rest.
                    line_no += 1;
                    let head = &self.buf[..1024];
                    let reason = format!(
                        "line longer than {} MiB; value cut to its first KiB",
                        MAX_LINE >> 20
                    );
                    let origin = Origin {
                        unit: file_index,
                        offset: line_no,
                    };
                    out.malformed(origin, &reason, head)?;
                    self.position.offset += filled as u64;
                    filled = 0;
                    skipping_long_line = true;
                }
            }
            let n = f
                .read(&mut self.buf[filled..])
                .map_err(Error::io("reading", path))?;
            out.read_bytes(n as u64);
            let eof = n == 0;
            filled += n;
            let mut start = 0usize;
            while let Some(nl) = memchr::memchr(b'\n', &self.buf[start..filled]) {
                let end = start + nl;
                if skipping_long_line {
                    skipping_long_line = false;
                } else {
                    line_no += 1;
                    if self
                        .handle_line(file_index, line_no, start, end, out)?
                        .is_break()
                    {
                        return Ok(Some(Completion::Stopped));
                    }
                }
                start = end + 1;
            }
            if eof && start < filled {
                if !skipping_long_line {
                    line_no += 1;
                    if self
                        .handle_line(file_index, line_no, start, filled, out)?
                        .is_break()
                    {
                        return Ok(Some(Completion::Stopped));
                    }
                }
                start = filled;
            }
            self.position.offset += start as u64;
            self.position.line = line_no;
            self.buf.copy_within(start..filled, 0);
            filled -= start;
            if out.tick().is_break() || self.barrier_if_due(out).is_break() {
                return Ok(Some(Completion::Stopped));
            }
            if eof {
                out.unit_done();
                return Ok(None);
            }
        }
    }

    /// Inject the barrier due now, if any, at the current position.
    fn barrier_if_due(&self, out: &mut dyn Output) -> ControlFlow<()> {
        match out.barrier_due() {
            Some(req) => out.barrier(
                req,
                self.checkpoint_position(self.position.offset, self.position.line),
            ),
            None => ControlFlow::Continue(()),
        }
    }

    /// The position to record at `offset` (`line` lines) of the current
    /// file: with the digest of the bytes before it and, when following a
    /// folder, the files done.
    fn checkpoint_position(&self, offset: u64, line: u64) -> Position {
        let tail = self.position.file.as_ref().and_then(|f| {
            tail_digest(&self.spec.dir.join(f), offset)
                .inspect_err(|e| tracing::warn!(file = f, "no digest for the position: {e}"))
                .ok()
        });
        let done = self.record_done.then(|| {
            let mut d: Vec<String> = self
                .done
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            d.sort();
            d
        });
        FilePosition {
            file: self.position.file.clone(),
            offset,
            line,
            tail,
            done,
        }
        .to_position()
    }

    /// Route one line; `Break` when the job must stop.
    fn handle_line(
        &self,
        file: u32,
        line_no: u64,
        start: usize,
        end: usize,
        out: &mut dyn Output,
    ) -> Result<ControlFlow<()>> {
        let mut line = &self.buf[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() || (self.spec.header && line_no == 1 && self.spec.format == Format::Csv)
        {
            return Ok(ControlFlow::Continue(()));
        }
        let origin = Origin {
            unit: file,
            offset: line_no,
        };
        match self.parser.parse(line) {
            Ok(p) => {
                if let Some(until) = self.spec.until
                    && p.timestamp != NO_TIMESTAMP
                    && p.timestamp >= until
                {
                    let at =
                        self.checkpoint_position(self.position.offset + start as u64, line_no - 1);
                    self.until_at.set(Some(at));
                    return Ok(ControlFlow::Break(()));
                }
                if let Some(req) = out.event_time_barrier(p.timestamp) {
                    let at =
                        self.checkpoint_position(self.position.offset + start as u64, line_no - 1);
                    if out.barrier(req, at).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(out.record(p.key.as_deref(), line, p.timestamp, origin))
            }
            Err(reason) => out
                .malformed(origin, &reason, line)
                .map(|()| ControlFlow::Continue(())),
        }
    }
}

impl Source for FileSource {
    fn connector(&self) -> &'static str {
        CONNECTOR
    }

    fn origins(&self) -> Arc<dyn Origins> {
        self.files.clone()
    }

    fn run(&mut self, out: &mut dyn Output) -> Result<Completion> {
        let start = self.start.take();
        let recorded_done = start.as_ref().and_then(|s| s.done.clone());
        let mut resume = start.and_then(|s| s.file.map(|f| (OsString::from(f), s.offset, s.line)));
        if let Some(done) = recorded_done {
            // The files the checkpoint recorded as read to the end.
            self.done.extend(done.into_iter().map(OsString::from));
        } else if let Some((file, ..)) = &resume {
            // Files before the restored position were read to the end.
            let before: Vec<OsString> = self
                .pending_files()?
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| n < file)
                .collect();
            self.done.extend(before);
        }
        loop {
            let files = self.pending_files()?;
            let idle = files.is_empty();
            for (name, path) in files {
                let from = match &resume {
                    Some((f, offset, line)) if *f == name => (*offset, *line),
                    _ => (0, 0),
                };
                if let Some(stopped) = self.read_file(&name, &path, from, out)? {
                    if let Some(end) = self.until_at.take() {
                        // `until` reached: the input ends here.
                        if out.end_of_input(end).is_break() {
                            return Ok(Completion::Stopped);
                        }
                        return Ok(Completion::EndOfInput);
                    }
                    return Ok(stopped);
                }
                resume = None;
                tracing::debug!(file = %path.display(), "file done");
                self.done.insert(name);
            }
            if !self.spec.follow {
                let end = self.checkpoint_position(self.position.offset, self.position.line);
                if out.end_of_input(end).is_break() {
                    return Ok(Completion::Stopped);
                }
                return Ok(Completion::EndOfInput);
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Completion::Stopped);
            }
            if idle {
                if out.flush().is_break() || self.barrier_if_due(out).is_break() {
                    return Ok(Completion::Stopped);
                }
                std::thread::sleep(self.spec.poll_interval);
            }
        }
    }
}

/// The source folder is a folder; otherwise say what it is instead.
fn check_folder(dir: &Path) -> Result<()> {
    let what = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => "is not a folder".to_string(),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            "is a symbolic link loop (a link that leads back to itself)".to_string()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_link(dir) {
            Ok(target) => format!(
                "is a symbolic link to {}, which does not exist",
                target.display()
            ),
            Err(_) => "does not exist".to_string(),
        },
        Err(e) => format!("cannot be read: {e}"),
    };
    Err(Error::Config(format!(
        "source folder {} {what}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_source_folder_that_is_not_one_is_named_for_what_it_is() {
        let d = tempfile::tempdir().unwrap();
        let loop_a = d.path().join("a");
        std::os::unix::fs::symlink(d.path().join("b"), &loop_a).unwrap();
        std::os::unix::fs::symlink(&loop_a, d.path().join("b")).unwrap();
        let err = super::check_folder(&loop_a).unwrap_err().to_string();
        assert!(err.contains("symbolic link loop"), "{err}");
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("gone"), &dangling).unwrap();
        let err = super::check_folder(&dangling).unwrap_err().to_string();
        assert!(err.contains("which does not exist"), "{err}");
        let err = super::check_folder(&d.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("does not exist"), "{err}");
        let file = d.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = super::check_folder(&file).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
        assert!(super::check_folder(d.path()).is_ok());
    }
}
