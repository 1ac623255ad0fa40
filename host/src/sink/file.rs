//! A directory of JSON-lines part files, one sequence per task
//! (`part-TTTT-SSSSSS.jsonl`), so tasks never contend for a lock. Each
//! emitted value is one line; operators emit JSON.
//!
//! Exactly once, as a two-phase commit with checkpoints: a task writes to a
//! hidden in-progress file (`.part-....jsonl.inprogress`); at a barrier it
//! closes the file (flushed and synced) and hands its name to the
//! checkpoint, which renames it to its committed name once the manifest is
//! written. A restore commits what the restored checkpoint covers and
//! deletes everything written after it, so restored plus committed output
//! equals an uninterrupted run. Without checkpoints, files are committed
//! whenever the input is idle and at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::Sink;
use crate::batch::Batch;
use crate::checkpoint::manifest::{SinkState, TaskEntry};
use crate::{Error, Result};

/// The committed name of a task's part file.
pub fn part_name(task: usize, seq: u64) -> String {
    format!("part-{task:04}-{seq:06}.jsonl")
}

fn in_progress(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.inprogress"))
}

/// (task, seq) of a committed or in-progress part file name.
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
pub fn commit(dir: &Path, name: &str) -> Result<()> {
    let from = in_progress(dir, name);
    match std::fs::rename(&from, dir.join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.join(name).exists() => Ok(()),
        Err(e) => Err(Error::io("committing", from)(e)),
    }
}

fn part_files(dir: &Path) -> Result<Vec<(String, usize, u64, bool)>> {
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
        if let Some((t, s, committed)) = parse_name(&name) {
            out.push((name, t, s, committed));
        }
    }
    Ok(out)
}

/// A fresh run: remove every part file (committed or not) from `dir`.
pub fn clear(dir: &Path) -> Result<()> {
    for (name, ..) in part_files(dir)? {
        std::fs::remove_file(dir.join(&name)).map_err(Error::io("removing", dir.join(&name)))?;
    }
    Ok(())
}

/// Commit every in-progress file (the input ended: all output is final).
pub fn commit_all(dir: &Path) -> Result<()> {
    for (_, t, s, committed) in part_files(dir)? {
        if !committed {
            commit(dir, &part_name(t, s))?;
        }
    }
    Ok(())
}

/// Each task's next part-file sequence number recorded in a checkpoint.
pub fn next_seqs(tasks: &[TaskEntry]) -> Vec<u64> {
    let mut next = vec![0u64; tasks.len()];
    for t in tasks {
        next[t.task] = t.sink.as_ref().map_or(0, |s| s.next_seq);
    }
    next
}

/// Bring `dir` to the state of a restored checkpoint: commit what it
/// covers, delete what was written after it. Returns each task's next
/// sequence number.
pub fn recover(dir: &Path, tasks: &[TaskEntry]) -> Result<Vec<u64>> {
    std::fs::create_dir_all(dir).map_err(Error::io("creating sink folder", dir))?;
    for name in tasks
        .iter()
        .flat_map(|t| t.sink.iter().flat_map(|s| &s.pending))
    {
        commit(dir, name)?;
    }
    let next = next_seqs(tasks);
    for (name, t, seq, committed) in part_files(dir)? {
        let after = next.get(t).is_none_or(|&n| seq >= n);
        if !committed || after {
            std::fs::remove_file(dir.join(&name))
                .map_err(Error::io("removing", dir.join(&name)))?;
        }
    }
    Ok(next)
}

/// One task's writer.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    task: usize,
    next_seq: u64,
    current: Option<(String, BufWriter<File>)>,
    pending: Vec<String>,
    exactly_once: bool,
}

impl FileSink {
    /// A writer for `task` in `dir`, starting at part `next_seq`.
    pub fn create(dir: &Path, task: usize, next_seq: u64, exactly_once: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("creating sink folder", dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            task,
            next_seq,
            current: None,
            pending: Vec::new(),
            exactly_once,
        })
    }

    fn open(&mut self) -> Result<&mut BufWriter<File>> {
        if self.current.is_none() {
            let name = part_name(self.task, self.next_seq);
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
        for name in std::mem::take(&mut self.pending) {
            commit(&self.dir, &name)?;
        }
        Ok(())
    }

    fn prepare_commit(&mut self) -> Result<Option<SinkState>> {
        self.close()?;
        Ok(Some(SinkState {
            next_seq: self.next_seq,
            pending: std::mem::take(&mut self.pending),
        }))
    }

    fn end(&mut self) -> Result<()> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(task: usize, next_seq: u64, pending: &[&str]) -> TaskEntry {
        TaskEntry {
            task,
            watermark: 0,
            sink: Some(SinkState {
                next_seq,
                pending: pending.iter().map(|s| s.to_string()).collect(),
            }),
            operators: vec![],
        }
    }

    #[test]
    fn two_phase_commit_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut sink = FileSink::create(d, 0, 0, true).unwrap();
        let mut b = Batch::new();
        b.push(b"k", b"one", 0);
        sink.write(&b).unwrap();
        let cp = sink.prepare_commit().unwrap().unwrap();
        assert_eq!(cp.pending, vec!["part-0000-000000.jsonl".to_string()]);
        assert_eq!(cp.next_seq, 1);
        sink.write(&b).unwrap();
        sink.flush().unwrap();
        // Nothing is visible as committed before the checkpoint completes.
        assert!(!d.join("part-0000-000000.jsonl").exists());
        // Crash; restore from the checkpoint: its file is committed, the
        // later one discarded.
        drop(sink);
        let next = recover(d, &[entry(0, cp.next_seq, &["part-0000-000000.jsonl"])]).unwrap();
        assert_eq!(next, vec![1]);
        let names: Vec<_> = part_files(d).unwrap().into_iter().map(|p| p.0).collect();
        assert_eq!(names, vec!["part-0000-000000.jsonl".to_string()]);
        assert_eq!(
            std::fs::read_to_string(d.join("part-0000-000000.jsonl")).unwrap(),
            "one\n"
        );
        // Restoring an older point removes committed files after it.
        let next = recover(d, &[entry(0, 0, &[])]).unwrap();
        assert_eq!(next, vec![0]);
        assert!(part_files(d).unwrap().is_empty());
    }
}
