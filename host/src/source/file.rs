//! A directory of files read as one ordered stream: files in name order, each
//! line a record. In `follow` mode the source keeps polling the directory and
//! reads each new file once, in name order, until the job is stopped.
//!
//! Files are read in large chunks; lines are sliced out of the chunk without
//! copying, and only the router copies each record, once, into its batch.
//! The source's position is (file name, byte offset after the last line
//! handed on), so a checkpoint can record it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::format::LineParser;
use super::{Router, Source};
use crate::batch::Origin;
use crate::config::{FileSourceSpec, Format, KeySpec};
use crate::{Error, Result};

/// Read size; a line longer than this grows the buffer up to [`MAX_LINE`].
const CHUNK: usize = 1 << 20;
/// Longest line accepted; longer lines go to the dead-letter output, cut.
pub const MAX_LINE: usize = 16 << 20;

/// Where the source is: the file and the byte offset after the last line
/// handed to the router.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilePosition {
    /// File name within the directory (`None` before the first file).
    pub file: Option<OsString>,
    /// Byte offset in that file.
    pub offset: u64,
}

/// The file source.
pub struct FileSource {
    spec: FileSourceSpec,
    parser: LineParser,
    stop: Arc<AtomicBool>,
    done: HashSet<OsString>,
    position: FilePosition,
    buf: Vec<u8>,
}

impl FileSource {
    /// A source over `spec.dir`; `stop` ends a `follow` run.
    pub fn new(spec: FileSourceSpec, stop: Arc<AtomicBool>) -> Self {
        let parser = LineParser::new(spec.format, spec.key.clone(), spec.timestamp.clone());
        Self {
            spec,
            parser,
            stop,
            done: HashSet::new(),
            position: FilePosition::default(),
            buf: vec![0; CHUNK],
        }
    }

    /// The current position.
    pub fn position(&self) -> &FilePosition {
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

    fn read_file(&mut self, name: &OsString, path: &Path, router: &mut Router) -> Result<bool> {
        let file_index = {
            let mut files = router
                .files()
                .write()
                .map_err(|_| Error::Internal("file table lock poisoned".into()))?;
            files.push(path.to_path_buf());
            (files.len() - 1) as u32
        };
        let mut f = File::open(path).map_err(Error::io("opening", path))?;
        self.position = FilePosition {
            file: Some(name.clone()),
            offset: 0,
        };
        let mut line_no = 0u64;
        let mut filled = 0usize;
        let mut skipping_long_line = false;
        loop {
            if self.stop.load(Ordering::Relaxed) || router.is_disconnected() {
                return Ok(false);
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
                    self.handle_line(file_index, line_no, start, end, router)?;
                }
                start = end + 1;
            }
            if eof && start < filled {
                if !skipping_long_line {
                    line_no += 1;
                    self.handle_line(file_index, line_no, start, filled, router)?;
                }
                start = filled;
            }
            self.position.offset += start as u64;
            self.buf.copy_within(start..filled, 0);
            filled -= start;
            if router.tick().is_err() {
                return Ok(false);
            }
            if eof {
                router.metrics().add_file();
                return Ok(true);
            }
        }
    }

    fn handle_line(
        &self,
        file: u32,
        line_no: u64,
        start: usize,
        end: usize,
        router: &mut Router,
    ) -> Result<()> {
        let mut line = &self.buf[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() || (self.spec.header && line_no == 1 && self.spec.format == Format::Csv)
        {
            return Ok(());
        }
        let origin = Origin {
            file,
            line: line_no,
        };
        match self.parser.parse(line) {
            Ok(p) => {
                // A disconnected router is noticed by the read loop.
                let _ = router.record(p.key.as_deref(), line, p.timestamp, origin);
                Ok(())
            }
            Err(reason) => router.malformed(file, line_no, &reason, line),
        }
    }
}

impl Source for FileSource {
    fn run(&mut self, router: &mut Router) -> Result<()> {
        if !self.spec.dir.is_dir() {
            return Err(Error::Config(format!(
                "source folder {} does not exist",
                self.spec.dir.display()
            )));
        }
        if self.spec.format == Format::Lines && self.spec.key != KeySpec::None {
            return Err(Error::Config("lines sources have no key".into()));
        }
        loop {
            let files = self.pending_files()?;
            let idle = files.is_empty();
            for (name, path) in files {
                if !self.read_file(&name, &path, router)? {
                    return Ok(());
                }
                tracing::debug!(file = %path.display(), "file done");
                self.done.insert(name);
            }
            if !self.spec.follow || self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if idle {
                if router.flush().is_err() {
                    return Ok(());
                }
                std::thread::sleep(self.spec.poll_interval);
            }
        }
    }
}
