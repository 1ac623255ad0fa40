//! A directory of JSON-lines part files, one sequence per partition
//! (`part-PPPP-SSSSSS.jsonl`), so partitions never contend for a lock. Each
//! emitted value is one line; operators emit JSON.
//!
//! Exactly once, as a two-phase commit with checkpoints: a partition writes
//! to a hidden in-progress file (`.part-....jsonl.inprogress`); at a barrier
//! it closes the file (flushed and synced) and records its name in the
//! checkpoint ([`Sink::pre_commit`]); once the manifest is durable the task
//! renames it to its committed name ([`Sink::commit`]). A restore commits
//! what the restored checkpoint covers and deletes everything written after
//! it, so restored plus committed output equals an uninterrupted run.
//! Without checkpoints, files are committed whenever the input is idle and
//! at the end.

mod config;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use config::{FileSinkConfig, FileSinkSpec};

use super::dead_letter::DeadLetters;
use super::{End, RestoredSink, Sink, SinkFactory, SinkSnapshot};
use crate::batch::Batch;
use crate::{Error, Result};

/// What a partition's file sink records in a checkpoint (its opaque sink
/// state; the same shape manifest format 1 stored per task).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FileSinkState {
    /// Sequence number of the partition's next part file.
    next_seq: u64,
    /// Part files complete at the barrier, committed with the checkpoint.
    pending: Vec<String>,
}

impl FileSinkState {
    fn parse(v: &Value) -> Result<Self> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Internal(format!("file sink state in a checkpoint: {e}")))
    }
}

/// The committed name of a partition's part file.
pub fn part_name(partition: usize, seq: u64) -> String {
    format!("part-{partition:04}-{seq:06}.jsonl")
}

fn in_progress(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.inprogress"))
}

/// (partition, seq, committed) of a committed or in-progress part file name.
fn parse_name(file: &str) -> Option<(usize, u64, bool)> {
    let (name, committed) = match file
        .strip_prefix('.')
        .and_then(|f| f.strip_suffix(".inprogress"))
    {
        Some(n) => (n, false),
        None => (file, true),
    };
    let rest = name.strip_prefix("part-")?.strip_suffix(".jsonl")?;
    let (t, s) = rest.split_once('-')?;
    Some((t.parse().ok()?, s.parse().ok()?, committed))
}

/// Commit one part file: rename it from in-progress to its name. A file
/// already committed (a retried commit) is fine.
fn commit(dir: &Path, name: &str) -> Result<()> {
    let from = in_progress(dir, name);
    match std::fs::rename(&from, dir.join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.join(name).exists() => Ok(()),
        Err(e) => Err(Error::io("committing", from)(e)),
    }
}

struct PartFile {
    name: String,
    partition: usize,
    seq: u64,
    committed: bool,
}

fn part_files(dir: &Path) -> Result<Vec<PartFile>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("listing sink folder", dir)(e)),
    };
    for entry in rd {
        let name = entry
            .map_err(Error::io("listing sink folder", dir))?
            .file_name();
        let name = name.to_string_lossy().into_owned();
        if let Some((partition, seq, committed)) = parse_name(&name) {
            out.push(PartFile {
                name,
                partition,
                seq,
                committed,
            });
        }
    }
    Ok(out)
}

fn remove(dir: &Path, name: &str) -> Result<()> {
    std::fs::remove_file(dir.join(name)).map_err(Error::io("removing", dir.join(name)))
}

/// Makes the partitions' [`FileSink`]s and settles the folder on start.
#[derive(Debug)]
pub struct FileSinkFactory {
    spec: FileSinkSpec,
    exactly_once: bool,
}

impl FileSinkFactory {
    /// A factory writing into `spec.dir`.
    pub fn new(spec: FileSinkSpec, exactly_once: bool) -> Self {
        Self { spec, exactly_once }
    }
}

impl SinkFactory for FileSinkFactory {
    fn validate(&self) -> Result<()> {
        let dir = &self.spec.dir;
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Config(format!(
                "sink path {} exists and is not a folder",
                dir.display()
            )));
        }
        Ok(())
    }

    /// A restore commits what the checkpoint covers and deletes what was
    /// written after it (committed or not); a fresh run removes every part
    /// file.
    fn recover(
        &self,
        restored: Option<&[Option<RestoredSink>]>,
        _: &Arc<DeadLetters>,
    ) -> Result<()> {
        let dir = &self.spec.dir;
        let Some(states) = restored else {
            for f in part_files(dir)? {
                remove(dir, &f.name)?;
            }
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(Error::io("creating sink folder", dir))?;
        let mut next = Vec::with_capacity(states.len());
        for state in states {
            let s = state
                .as_ref()
                .map(|s| FileSinkState::parse(&s.state))
                .transpose()?;
            let s = s.unwrap_or_default();
            for name in &s.pending {
                commit(dir, name)?;
            }
            next.push(s.next_seq);
        }
        for f in part_files(dir)? {
            let after = next.get(f.partition).is_none_or(|&n| f.seq >= n);
            if !f.committed || after {
                remove(dir, &f.name)?;
            }
        }
        Ok(())
    }

    fn create(
        &self,
        partition: usize,
        restored: Option<&RestoredSink>,
        _: &Arc<DeadLetters>,
    ) -> Result<Box<dyn Sink>> {
        let next_seq = restored
            .map(|r| FileSinkState::parse(&r.state))
            .transpose()?
            .map_or(0, |s| s.next_seq);
        Ok(Box::new(FileSink::create(
            &self.spec.dir,
            partition,
            next_seq,
            self.exactly_once,
        )?))
    }
}

/// One partition's writer.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    partition: usize,
    next_seq: u64,
    current: Option<(String, BufWriter<File>)>,
    /// Closed files no checkpoint covers yet (including those of a failed
    /// checkpoint, which the next one commits).
    pending: Vec<String>,
    /// Files recorded in checkpoints not yet committed, by checkpoint id.
    pre_committed: Vec<(u64, Vec<String>)>,
    exactly_once: bool,
}

impl FileSink {
    /// A writer for `partition` in `dir`, starting at part `next_seq`.
    fn create(dir: &Path, partition: usize, next_seq: u64, exactly_once: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("creating sink folder", dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            partition,
            next_seq,
            current: None,
            pending: Vec::new(),
            pre_committed: Vec::new(),
            exactly_once,
        })
    }

    fn open(&mut self) -> Result<&mut BufWriter<File>> {
        if self.current.is_none() {
            let name = part_name(self.partition, self.next_seq);
            let path = in_progress(&self.dir, &name);
            let file = File::create(&path).map_err(Error::io("creating", &path))?;
            self.next_seq += 1;
            self.current = Some((name, BufWriter::with_capacity(1 << 20, file)));
        }
        Ok(&mut self.current.as_mut().expect("just opened").1)
    }

    /// Close the current file (flushed, synced) into the pending list.
    fn close(&mut self) -> Result<()> {
        if let Some((name, mut w)) = self.current.take() {
            let path = in_progress(&self.dir, &name);
            w.flush().map_err(Error::io("flushing", &path))?;
            w.get_ref()
                .sync_data()
                .map_err(Error::io("syncing", &path))?;
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
        let out = self.open()?;
        for r in batch.iter() {
            out.write_all(r.value)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(Error::io("writing part file in", &dir))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.exactly_once {
            if let Some((name, w)) = &mut self.current {
                w.flush()
                    .map_err(Error::io("flushing", in_progress(&self.dir, name)))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(next_seq: u64, pending: &[&str]) -> Option<SinkSnapshot> {
        Some(SinkSnapshot {
            state: serde_json::to_value(FileSinkState {
                next_seq,
                pending: pending.iter().map(|s| s.to_string()).collect(),
            })
            .unwrap(),
            blob: None,
        })
    }

    fn restored(s: Option<SinkSnapshot>) -> Option<RestoredSink> {
        s.map(|s| RestoredSink {
            checkpoint: 1,
            state: s.state,
            blob: None,
        })
    }

    fn names(d: &Path) -> Vec<String> {
        let mut n: Vec<_> = part_files(d).unwrap().into_iter().map(|p| p.name).collect();
        n.sort();
        n
    }

    #[test]
    fn two_phase_commit_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let factory = FileSinkFactory::new(FileSinkSpec { dir: d.into() }, true);
        let mut sink = factory.create(0, None, &DeadLetters::to_stderr()).unwrap();
        let mut b = Batch::new();
        b.push(b"k", b"one", 0);
        sink.write(&b).unwrap();
        let cp = sink.pre_commit(1).unwrap();
        assert_eq!(cp, state(1, &["part-0000-000000.jsonl"]));
        sink.write(&b).unwrap();
        sink.flush().unwrap();
        // Nothing is visible as committed before the checkpoint completes.
        assert!(!d.join("part-0000-000000.jsonl").exists());
        // Crash; restore from the checkpoint: its file is committed, the
        // later one discarded.
        drop(sink);
        factory
            .recover(Some(&[restored(cp)]), &DeadLetters::to_stderr())
            .unwrap();
        assert_eq!(names(d), vec!["part-0000-000000.jsonl".to_string()]);
        assert_eq!(
            std::fs::read_to_string(d.join("part-0000-000000.jsonl")).unwrap(),
            "one\n"
        );
        // Restoring an older point removes committed files after it.
        factory
            .recover(Some(&[restored(state(0, &[]))]), &DeadLetters::to_stderr())
            .unwrap();
        assert!(names(d).is_empty());
    }

    #[test]
    fn an_aborted_checkpoint_is_committed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let factory = FileSinkFactory::new(FileSinkSpec { dir: d.into() }, true);
        let mut sink = factory.create(3, None, &DeadLetters::to_stderr()).unwrap();
        let mut b = Batch::new();
        b.push(b"k", b"one", 0);
        sink.write(&b).unwrap();
        sink.pre_commit(1).unwrap();
        sink.abort(1).unwrap();
        assert!(names(d).iter().all(|n| n.starts_with('.')));
        sink.write(&b).unwrap();
        let cp = sink.pre_commit(2).unwrap();
        assert_eq!(
            cp,
            state(2, &["part-0003-000000.jsonl", "part-0003-000001.jsonl"])
        );
        sink.commit(2).unwrap();
        assert_eq!(
            names(d),
            vec!["part-0003-000000.jsonl", "part-0003-000001.jsonl"]
        );
    }
}
