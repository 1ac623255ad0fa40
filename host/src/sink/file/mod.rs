//! A directory of JSON-lines part files, one sequence per partition
//! (`part-PPPP-SSSSSS.jsonl`), so partitions never contend for a lock. Each
//! emitted value is one line; operators emit JSON.
//!
//! Exactly once, as a two-phase commit with checkpoints: a partition writes
//! to a hidden in-progress file (`.part-....jsonl.inprogress`); at a barrier
//! it closes the file (flushed and synced), notes its size and SHA-256 on
//! the sink's list of written files, and records it in the checkpoint
//! ([`Sink::pre_commit`]) with every earlier file of the partition; once
//! the manifest is durable the task renames it to its committed name
//! ([`Sink::commit`]). Without checkpoints, files are committed whenever
//! the input is idle and at the end.
//!
//! A run starts by settling the folder to exactly the output its restore
//! point committed (nothing, for a fresh run), whichever timeline wrote
//! since: the sink's files it does not cover go to a stash, the ones it
//! covers come back from it, and files the sink did not write are never
//! touched (`settle.rs`). So restored plus committed output equals an
//! uninterrupted run, for a restore of any savepoint. The sink's own
//! records (the folder's owner, the list of written files, the stash)
//! are in `.weir-sink/` (`record.rs`); `writer.rs` is one partition's
//! writer.

mod config;
mod record;
mod rescale;
mod settle;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{FileSinkConfig, FileSinkSpec};

use super::dead_letter::DeadLetters;
use super::{RestoredSink, Sink, SinkFactory};
use crate::{Error, Result};
use record::FileSinkState;
use writer::FileSink;

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

/// A committed or in-progress part file found in the folder.
struct PartFile {
    /// Its file name.
    name: String,
    /// The partition in its name.
    partition: usize,
    /// The sequence number in its name.
    seq: u64,
    /// Committed (else in-progress).
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
        let entry = entry.map_err(Error::io("listing sink folder", dir))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
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

/// Makes the partitions' [`FileSink`]s and settles the folder on start.
#[derive(Debug)]
pub struct FileSinkFactory {
    /// Where the part files go.
    spec: FileSinkSpec,
    /// The job writing them (named in the folder's marker).
    job: String,
    /// Whether output waits for checkpoints.
    exactly_once: bool,
}

impl FileSinkFactory {
    /// A factory writing `job`'s output into `spec.dir`.
    pub fn new(spec: FileSinkSpec, job: &str, exactly_once: bool) -> Self {
        Self {
            spec,
            job: job.to_string(),
            exactly_once,
        }
    }
}

/// Sub-folders looked into for another job's sink below this one.
const NESTED_LOOK: usize = 10_000;

/// Another job's sink folder at, above or below `dir` (by the marker each
/// file sink writes into its folder), if there is one: (folder, job).
fn other_sink(dir: &Path, job: &str) -> Option<(PathBuf, String)> {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let theirs = |d: &Path| record::marker_job(d).filter(|j| j != job);
    for d in abs.ancestors() {
        if let Some(j) = theirs(d) {
            return Some((d.to_path_buf(), j));
        }
    }
    // Below: a bounded walk (the sink's own folder and symbolic links are
    // not followed).
    let mut todo = vec![abs];
    let mut seen = 0;
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > NESTED_LOOK {
                return None;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || e.file_name() == record::OWN_DIR {
                continue;
            }
            let p = e.path();
            if let Some(j) = theirs(&p) {
                return Some((p, j));
            }
            todo.push(p);
        }
    }
    None
}

impl SinkFactory for FileSinkFactory {
    /// The folder is a folder (or missing), and no other job's sink
    /// folder is it, holds it or lies inside it.
    fn validate(&self) -> Result<()> {
        let dir = &self.spec.dir;
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Config(format!(
                "sink path {} exists and is not a folder",
                dir.display()
            )));
        }
        if let Some((theirs, job)) = other_sink(dir, &self.job) {
            return Err(Error::Config(format!(
                "the sink folder {} overlaps {}, the sink folder of job `{job}` (its marker {}/job \
                 says so): two jobs' outputs would mix, and each would settle the other's files. \
                 Give this job another folder (nothing was changed)",
                dir.display(),
                theirs.display(),
                record::OWN_DIR
            )));
        }
        Ok(())
    }

    /// Settles the folder to exactly what the restore point committed
    /// (nothing, for a fresh run), touching only the sink's own files (see
    /// `settle.rs`); then marks the folder as this job's.
    fn recover(
        &self,
        restored: Option<&[Option<RestoredSink>]>,
        _: &Arc<DeadLetters>,
    ) -> Result<()> {
        let dir = &self.spec.dir;
        let states = restored
            .unwrap_or_default()
            .iter()
            .map(|s| {
                s.as_ref()
                    .map(|s| FileSinkState::parse(&s.state))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        if dir.exists() {
            settle::settle(dir, &states, self.exactly_once)?;
        }
        std::fs::create_dir_all(dir).map_err(Error::io("creating sink folder", dir))?;
        record::claim(dir, &self.job)
    }

    fn create(
        &self,
        partition: usize,
        restored: Option<&RestoredSink>,
        _: &Arc<DeadLetters>,
    ) -> Result<Box<dyn Sink>> {
        let restored = restored
            .map(|r| FileSinkState::parse(&r.state))
            .transpose()?;
        Ok(Box::new(FileSink::create(
            &self.spec.dir,
            partition,
            restored,
            self.exactly_once,
        )?))
    }

    /// Old partitions' part files are covered by new partition
    /// `p % partitions` (see `rescale.rs`).
    fn rescale(
        &self,
        states: &[Option<RestoredSink>],
        partitions: usize,
    ) -> std::result::Result<Vec<Option<RestoredSink>>, String> {
        let Some(checkpoint) = states.iter().flatten().map(|s| s.checkpoint).next() else {
            return Ok(vec![None; partitions]);
        };
        let parsed = states
            .iter()
            .map(|s| {
                s.as_ref()
                    .map(|s| FileSinkState::parse(&s.state))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        rescale::rescale(&parsed, partitions)?
            .into_iter()
            .map(|s| {
                let state = serde_json::to_value(s).map_err(|e| e.to_string())?;
                Ok(Some(RestoredSink {
                    checkpoint,
                    state,
                    blob: None,
                }))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::sink::SinkSnapshot;

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

    fn batch(value: &str) -> Batch {
        let mut b = Batch::new();
        b.push(b"k", value.as_bytes(), 0);
        b
    }

    fn dl() -> Arc<DeadLetters> {
        DeadLetters::to_stderr()
    }

    fn factory(d: &Path) -> FileSinkFactory {
        FileSinkFactory::new(FileSinkSpec { dir: d.into() }, "job", true)
    }

    fn read(d: &Path, name: &str) -> String {
        std::fs::read_to_string(d.join(name)).unwrap()
    }

    #[test]
    fn two_phase_commit_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let factory = factory(d);
        factory.recover(None, &dl()).unwrap();
        let mut sink = factory.create(0, None, &dl()).unwrap();
        sink.write(&batch("one")).unwrap();
        let cp = sink.pre_commit(1).unwrap();
        let s = FileSinkState::parse(&cp.as_ref().unwrap().state).unwrap();
        assert_eq!((s.next_seq, s.pending.clone()), (1, vec![part_name(0, 0)]));
        assert_eq!(
            s.files.unwrap(),
            vec![record::digest_file(&in_progress(d, &part_name(0, 0)), &part_name(0, 0)).unwrap()]
        );
        sink.write(&batch("two")).unwrap();
        sink.flush().unwrap();
        // Nothing is visible as committed before the checkpoint completes.
        assert!(!d.join("part-0000-000000.jsonl").exists());
        // Crash; restore from the checkpoint: its file is committed, the
        // later one discarded.
        drop(sink);
        factory.recover(Some(&[restored(cp)]), &dl()).unwrap();
        assert_eq!(names(d), vec!["part-0000-000000.jsonl".to_string()]);
        assert_eq!(read(d, "part-0000-000000.jsonl"), "one\n");
        // Restoring a point before it moves the committed file away.
        factory.recover(Some(&[None]), &dl()).unwrap();
        assert!(names(d).is_empty());
    }

    #[test]
    fn an_aborted_checkpoint_is_committed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let factory = factory(d);
        let mut sink = factory.create(3, None, &dl()).unwrap();
        sink.write(&batch("one")).unwrap();
        sink.pre_commit(1).unwrap();
        sink.abort(1).unwrap();
        assert!(names(d).iter().all(|n| n.starts_with('.')));
        sink.write(&batch("one")).unwrap();
        let cp = sink.pre_commit(2).unwrap().unwrap();
        let s = FileSinkState::parse(&cp.state).unwrap();
        assert_eq!(
            s.pending,
            vec!["part-0003-000000.jsonl", "part-0003-000001.jsonl"]
        );
        sink.commit(2).unwrap();
        assert_eq!(
            names(d),
            vec!["part-0003-000000.jsonl", "part-0003-000001.jsonl"]
        );
    }

    /// Write `values` as one part file each, a checkpoint after each;
    /// returns the state of the last checkpoint.
    fn epochs(
        factory: &FileSinkFactory,
        from: Option<SinkSnapshot>,
        values: &[&str],
    ) -> SinkSnapshot {
        let r = restored(from);
        factory
            .recover(Some(std::slice::from_ref(&r)), &dl())
            .unwrap();
        let mut sink = factory.create(0, r.as_ref(), &dl()).unwrap();
        let mut last = None;
        for (i, v) in values.iter().enumerate() {
            sink.write(&batch(v)).unwrap();
            last = sink.pre_commit(i as u64 + 1).unwrap();
            sink.commit(i as u64 + 1).unwrap();
        }
        last.unwrap()
    }

    fn all(d: &Path) -> Vec<String> {
        names(d).iter().map(|n| read(d, n)).collect()
    }

    #[test]
    fn a_restore_of_any_timeline_gives_exactly_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let factory = factory(d);
        let before = epochs(&factory, None, &["a"]);
        // Timeline one goes on from `before`; timeline two from it too.
        let one = epochs(&factory, Some(before.clone()), &["b", "c"]);
        let two = epochs(&factory, Some(before.clone()), &["x"]);
        assert_eq!(all(d), ["a\n", "x\n"]);
        // Back to timeline one: its files come back from the stash.
        factory
            .recover(Some(&[restored(Some(one.clone()))]), &dl())
            .unwrap();
        assert_eq!(all(d), ["a\n", "b\n", "c\n"]);
        factory
            .recover(Some(&[restored(Some(two))]), &dl())
            .unwrap();
        assert_eq!(all(d), ["a\n", "x\n"]);
        factory
            .recover(Some(&[restored(Some(one))]), &dl())
            .unwrap();
        assert_eq!(all(d), ["a\n", "b\n", "c\n"]);
        factory
            .recover(Some(&[restored(Some(before))]), &dl())
            .unwrap();
        assert_eq!(all(d), ["a\n"]);
    }

    #[test]
    fn files_the_sink_did_not_write_are_never_touched() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let factory = factory(d);
        let cp = epochs(&factory, None, &["a"]);
        // Someone else's file under a name the sink will not use again.
        std::fs::write(d.join("part-0000-000000.jsonl.bak"), "theirs").unwrap();
        std::fs::write(d.join("part-0007-000000.txt"), "theirs").unwrap();
        factory.recover(None, &dl()).unwrap();
        assert!(names(d).is_empty());
        assert_eq!(read(d, "part-0000-000000.jsonl.bak"), "theirs");
        // A foreign part file where the sink must write: refused, nothing
        // changed.
        let _ = epochs(&factory, None, &["a"]);
        std::fs::write(d.join("part-0000-000001.jsonl"), "theirs\n").unwrap();
        let err = factory.recover(None, &dl()).unwrap_err().to_string();
        assert!(
            err.contains("part-0000-000001.jsonl") && err.contains("did not write"),
            "{err}"
        );
        assert_eq!(all(d), ["a\n", "theirs\n"]);
        // Replacing a committed file of the sink: its restore is refused.
        std::fs::remove_file(d.join("part-0000-000001.jsonl")).unwrap();
        std::fs::write(d.join("part-0000-000000.jsonl"), "changed\n").unwrap();
        let err = factory
            .recover(Some(&[restored(Some(cp))]), &dl())
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not write"), "{err}");
        assert_eq!(all(d), ["changed\n"]);
    }

    #[test]
    fn another_jobs_sink_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let theirs = FileSinkFactory::new(FileSinkSpec { dir: d.join("a") }, "other", true);
        theirs.validate().unwrap();
        theirs.recover(None, &dl()).unwrap();
        theirs.validate().unwrap();
        for dir in [d.join("a"), d.join("a/b"), d.to_path_buf()] {
            let f = FileSinkFactory::new(FileSinkSpec { dir: dir.clone() }, "job", true);
            let err = f.validate().unwrap_err().to_string();
            assert!(err.contains("job `other`"), "{}: {err}", dir.display());
        }
        FileSinkFactory::new(FileSinkSpec { dir: d.join("c") }, "job", true)
            .validate()
            .unwrap();
    }
}
