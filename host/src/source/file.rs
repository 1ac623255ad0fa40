//! A directory of files read as one ordered stream: files in name order, each
//! line a record. In `follow` mode the source keeps polling the directory and
//! reads each new file once, in name order, until the job is stopped.
//!
//! Files are read in large chunks; lines are sliced out of the chunk without
//! copying, and only the router copies each record, once, into its batch.
//! The source's position is (file name, byte offset after the last line
//! handed on, lines before it); a checkpoint records it and a restored job
//! resumes there: files sorting before it are skipped, that file is read
//! from the offset.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::format::LineParser;
use super::{Completion, Router, Source};
use crate::batch::Origin;
use crate::checkpoint::manifest::SourcePosition;
use crate::config::{FileSourceSpec, Format, KeySpec};
use crate::{Error, Result};

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
    /// Offset of the current chunk's first byte in the current file.
    position: SourcePosition,
    /// Where a restored job resumes.
    start: Option<SourcePosition>,
    buf: Vec<u8>,
}

impl FileSource {
    /// A source over `spec.dir`; `stop` ends a `follow` run.
    pub fn new(spec: FileSourceSpec, stop: Arc<AtomicBool>, start: Option<SourcePosition>) -> Self {
        let parser = LineParser::new(spec.format, spec.key.clone(), spec.timestamp.clone());
        Self {
            spec,
            parser,
            stop,
            done: HashSet::new(),
            position: SourcePosition::default(),
            start,
            buf: vec![0; CHUNK],
        }
    }

    /// The position of the chunk being read.
    pub fn position(&self) -> &SourcePosition {
        &self.position
    }

    /// Files not read yet, in name order. Hidden files (`.name`) are
    /// skipped, so writers can write `.name` and rename when complete.
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
            let is_file = entry
                .file_type()
                .map_err(Error::io("reading file type in", dir))?
                .is_file();
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
        router: &mut Router,
    ) -> Result<Option<Completion>> {
        let file_index = {
            let mut files = router
                .files()
                .write()
                .map_err(|_| Error::Internal("file table lock poisoned".into()))?;
            files.push(path.to_path_buf());
            (files.len() - 1) as u32
        };
        let mut f = File::open(path).map_err(Error::io("opening", path))?;
        if resume.0 > 0 {
            f.seek(SeekFrom::Start(resume.0))
                .map_err(Error::io("seeking in", path))?;
        }
        self.position = SourcePosition {
            file: Some(name.to_string_lossy().into_owned()),
            offset: resume.0,
            line: resume.1,
        };
        let mut line_no = resume.1;
        let mut filled = 0usize;
        let mut skipping_long_line = false;
        loop {
            if self.stop.load(Ordering::Relaxed) || router.is_disconnected() {
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
                    router.malformed(file_index, line_no, &reason, head)?;
                    self.position.offset += filled as u64;
                    filled = 0;
                    skipping_long_line = true;
                }
            }
            let n = f
                .read(&mut self.buf[filled..])
                .map_err(Error::io("reading", path))?;
            router.metrics().add_read(0, n as u64);
            let eof = n == 0;
            filled += n;
            let mut start = 0usize;
            while let Some(nl) = memchr::memchr(b'\n', &self.buf[start..filled]) {
                let end = start + nl;
                if skipping_long_line {
                    skipping_long_line = false;
                } else {
                    line_no += 1;
                    if self.handle_line(file_index, line_no, start, end, router)? {
                        return Ok(Some(Completion::Stopped));
                    }
                }
                start = end + 1;
            }
            if eof && start < filled {
                if !skipping_long_line {
                    line_no += 1;
                    if self.handle_line(file_index, line_no, start, filled, router)? {
                        return Ok(Some(Completion::Stopped));
                    }
                }
                start = filled;
            }
            self.position.offset += start as u64;
            self.position.line = line_no;
            self.buf.copy_within(start..filled, 0);
            filled -= start;
            if router.tick().is_err() {
                return Ok(Some(Completion::Stopped));
            }
            if router.barrier_if_due(&self.position) {
                return Ok(Some(Completion::Stopped));
            }
            if eof {
                router.metrics().add_file();
                return Ok(None);
            }
        }
    }

    /// Route one line. Returns true when the job must stop (a savepoint
    /// with stop was taken, or the tasks hung up).
    fn handle_line(
        &self,
        file: u32,
        line_no: u64,
        start: usize,
        end: usize,
        router: &mut Router,
    ) -> Result<bool> {
        let mut line = &self.buf[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() || (self.spec.header && line_no == 1 && self.spec.format == Format::Csv)
        {
            return Ok(false);
        }
        let origin = Origin {
            file,
            line: line_no,
        };
        match self.parser.parse(line) {
            Ok(p) => {
                if let Some(req) = router.event_time_barrier(p.timestamp) {
                    let at = SourcePosition {
                        file: self.position.file.clone(),
                        offset: self.position.offset + start as u64,
                        line: line_no - 1,
                    };
                    if router.barrier(req, at).unwrap_or(true) {
                        return Ok(true);
                    }
                }
                Ok(router
                    .record(p.key.as_deref(), line, p.timestamp, origin)
                    .is_err())
            }
            Err(reason) => router
                .malformed(file, line_no, &reason, line)
                .map(|()| false),
        }
    }
}

impl Source for FileSource {
    fn run(&mut self, router: &mut Router) -> Result<Completion> {
        if !self.spec.dir.is_dir() {
            return Err(Error::Config(format!(
                "source folder {} does not exist",
                self.spec.dir.display()
            )));
        }
        if self.spec.format == Format::Lines && self.spec.key != KeySpec::None {
            return Err(Error::Config("lines sources have no key".into()));
        }
        let mut resume = self
            .start
            .take()
            .and_then(|s| s.file.map(|f| (OsString::from(f), s.offset, s.line)));
        if let Some((file, ..)) = &resume {
            // Files before the restored position were read to the end.
            let before: Vec<OsString> = self
                .pending_files()?
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| n < file)
                .collect();
            self.done.extend(before);
            if !self.spec.dir.join(file).is_file() {
                return Err(Error::Savepoint {
                    location: self.spec.dir.display().to_string(),
                    detail: format!(
                        "the restored position is in file {}, which is not in the source folder",
                        file.to_string_lossy()
                    ),
                });
            }
        }
        loop {
            let files = self.pending_files()?;
            let idle = files.is_empty();
            for (name, path) in files {
                let from = match &resume {
                    Some((f, offset, line)) if *f == name => (*offset, *line),
                    _ => (0, 0),
                };
                if let Some(stopped) = self.read_file(&name, &path, from, router)? {
                    return Ok(stopped);
                }
                resume = None;
                tracing::debug!(file = %path.display(), "file done");
                self.done.insert(name);
            }
            if !self.spec.follow {
                return Ok(Completion::EndOfInput);
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Completion::Stopped);
            }
            if idle {
                if router.flush().is_err() {
                    return Ok(Completion::Stopped);
                }
                if router.barrier_if_due(&self.position) {
                    return Ok(Completion::Stopped);
                }
                std::thread::sleep(self.spec.poll_interval);
            }
        }
    }
}
