//! A directory of JSON-lines part files, one per task (`part-0000.jsonl`,
//! ...), so tasks never contend for a lock. Each emitted value is one line;
//! operators emit JSON.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::Sink;
use crate::batch::Batch;
use crate::{Error, Result};

/// One task's part file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
}

/// The part file name of `task`.
pub fn part_name(task: usize) -> String {
    format!("part-{task:04}.jsonl")
}

impl FileSink {
    /// Create (truncate) the part file of `task` in `dir`.
    pub fn create(dir: &Path, task: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("creating sink folder", dir))?;
        let path = dir.join(part_name(task));
        let file = File::create(&path).map_err(Error::io("creating", &path))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
        })
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> Result<()> {
        for r in batch.iter() {
            self.out
                .write_all(r.value)
                .and_then(|()| self.out.write_all(b"\n"))
                .map_err(Error::io("writing", &self.path))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(Error::io("flushing", &self.path))
    }
}
