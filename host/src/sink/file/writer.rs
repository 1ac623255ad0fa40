//! One partition's writer: part files written in-progress, closed (synced,
//! recorded with size and digest on the sink's list of written files) at
//! a barrier, committed by renaming once the checkpoint is durable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::record::{self, FileSinkState, Hashing, PartRecord};
use super::{commit, in_progress, part_name};
use crate::batch::Batch;
use crate::sink::{End, Sink, SinkSnapshot};
use crate::{Error, Result};

/// The part file being written.
struct Current {
    /// Its committed name.
    name: String,
    /// The in-progress file.
    out: BufWriter<File>,
    /// Size and digest of what was written.
    hash: Hashing,
}

/// One partition's writer.
pub(super) struct FileSink {
    /// The output folder.
    dir: PathBuf,
    /// The partition written.
    partition: usize,
    /// Sequence number of the next part file.
    next_seq: u64,
    /// The part file being written, if one is open.
    current: Option<Current>,
    /// Closed files no checkpoint covers yet (including those of a failed
    /// checkpoint, which the next one commits).
    pending: Vec<String>,
    /// Files recorded in checkpoints not yet committed, by checkpoint id.
    pre_committed: Vec<(u64, Vec<String>)>,
    /// Every part file of this timeline of the partition, closed so far
    /// (restored ones first): what a checkpoint covers. Empty without
    /// checkpoints.
    files: Vec<PartRecord>,
    /// Whether output waits for checkpoints (else it is committed whenever
    /// flushed).
    exactly_once: bool,
}

impl FileSink {
    /// A writer for `partition` in `dir`, continuing from `restored`.
    pub fn create(
        dir: &Path,
        partition: usize,
        restored: Option<FileSinkState>,
        exactly_once: bool,
    ) -> Result<Self> {
        let own = record::own_dir(dir);
        std::fs::create_dir_all(&own).map_err(Error::io("creating sink folder", &own))?;
        let restored = restored.unwrap_or_default();
        let files = match restored.files {
            Some(files) => files,
            // A checkpoint of an earlier version: the committed files
            // below its next sequence number, as they are now.
            None => (0..restored.next_seq)
                .map(|seq| part_name(partition, seq))
                .filter(|n| dir.join(n).is_file())
                .map(|n| record::digest_file(&dir.join(&n), &n))
                .collect::<Result<_>>()?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            partition,
            next_seq: restored.next_seq,
            current: None,
            pending: Vec::new(),
            pre_committed: Vec::new(),
            files,
            exactly_once,
        })
    }

    fn open(&mut self) -> Result<&mut Current> {
        if self.current.is_none() {
            let name = part_name(self.partition, self.next_seq);
            let path = in_progress(&self.dir, &name);
            let file = File::create(&path).map_err(Error::io("creating", &path))?;
            self.next_seq += 1;
            self.current = Some(Current {
                name,
                out: BufWriter::with_capacity(1 << 20, file),
                hash: Hashing::default(),
            });
        }
        Ok(self.current.as_mut().expect("just opened"))
    }

    /// Close the current file (flushed, synced, on the list of written
    /// files) into the pending list.
    fn close(&mut self) -> Result<()> {
        if let Some(Current {
            name,
            mut out,
            hash,
        }) = self.current.take()
        {
            let path = in_progress(&self.dir, &name);
            out.flush().map_err(Error::io("flushing", &path))?;
            out.get_ref()
                .sync_data()
                .map_err(Error::io("syncing", &path))?;
            let r = hash.record(name.clone());
            record::note_written(&self.dir, self.partition, &r)?;
            // Without checkpoints no state records them (and a job that
            // runs for months must not hold a record per file in memory).
            if self.exactly_once {
                self.files.push(r);
            }
            self.pending.push(name);
        }
        Ok(())
    }

    fn commit_pending(&mut self) -> Result<()> {
        for name in std::mem::take(&mut self.pending) {
            commit(&self.dir, &name)?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> Result<()> {
        let dir = self.dir.clone();
        let cur = self.open()?;
        for r in batch.iter() {
            cur.out
                .write_all(r.value)
                .and_then(|()| cur.out.write_all(b"\n"))
                .map_err(Error::io("writing part file in", &dir))?;
            cur.hash.update(r.value);
            cur.hash.update(b"\n");
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.exactly_once {
            if let Some(cur) = &mut self.current {
                cur.out
                    .flush()
                    .map_err(Error::io("flushing", in_progress(&self.dir, &cur.name)))?;
            }
            return Ok(());
        }
        self.close()?;
        self.commit_pending()
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<SinkSnapshot>> {
        self.close()?;
        let pending = std::mem::take(&mut self.pending);
        let state = FileSinkState {
            next_seq: self.next_seq,
            pending: pending.clone(),
            files: Some(self.files.clone()),
        };
        self.pre_committed.push((checkpoint, pending));
        let state = serde_json::to_value(state).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Some(SinkSnapshot { state, blob: None }))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<()> {
        let done = self
            .pre_committed
            .iter()
            .filter(|(id, _)| *id <= checkpoint)
            .count();
        for (_, names) in self.pre_committed.drain(..done) {
            for name in names {
                commit(&self.dir, &name)?;
            }
        }
        Ok(())
    }

    fn abort(&mut self, checkpoint: u64) -> Result<()> {
        if let Some(i) = self
            .pre_committed
            .iter()
            .position(|(id, _)| *id == checkpoint)
        {
            let (_, mut names) = self.pre_committed.remove(i);
            names.append(&mut self.pending);
            self.pending = names;
        }
        Ok(())
    }

    fn end(&mut self, end: End) -> Result<()> {
        self.close()?;
        if end == End::EndOfInput {
            // All input is processed: everything written is final.
            for (_, names) in std::mem::take(&mut self.pre_committed) {
                for name in names {
                    commit(&self.dir, &name)?;
                }
            }
            self.commit_pending()?;
        }
        Ok(())
    }
}
