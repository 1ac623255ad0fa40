//! Settling the output folder on start to exactly what the restore point
//! committed (nothing, for a fresh run), touching only files the sink can
//! prove it wrote: its committed part files are on its list of written
//! files with their digest ([`super::record`]); in-progress files carry its
//! hidden naming. Everything is planned and checked first, so a refusal
//! leaves the folder as it was:
//! - a committed part file the restore point covers, with its recorded
//!   size and digest, stays;
//! - one of the sink's own files the restore point does not cover (written
//!   after it, or by another timeline) moves to the stash (with
//!   checkpoints; deleted without: no restore can ask for it);
//! - a file the restore point covers but the folder lacks is taken from
//!   the in-progress file of its checkpoint or from the stash; if it is in
//!   neither, the run is refused;
//! - a `part-*` file the sink did not write is left alone, unless it holds
//!   a name the sink needs (covered by the restore point, or one it will
//!   write next): then the run is refused.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::record::{self, FileSinkState, PartRecord};
use super::{in_progress, part_files};
use crate::{Error, Result};

/// One step of settling the folder.
#[derive(Debug)]
enum Step {
    /// A committed part file of the sink that the restore point does not
    /// cover: to the stash (or deleted).
    Stash(PartRecord),
    /// A file the restore point covers, back from the stash.
    Unstash(PartRecord),
    /// A file the restore point covers, committed from its in-progress
    /// file.
    Commit(String),
    /// An in-progress file nothing covers.
    Remove(PathBuf),
}

/// What one partition's restore point covers.
struct Covered {
    /// Its next part file's sequence number.
    next_seq: u64,
    /// Each covered file's record; `None` for a checkpoint of an earlier
    /// version, which kept no digests (any content under the name is
    /// taken).
    files: HashMap<String, Option<PartRecord>>,
}

/// Bring `dir` to what `states` cover (one per partition; `None` for a
/// partition with no sink state: nothing). `stash`: keep the sink's files
/// that are not covered, for a later restore of another timeline.
pub(super) fn settle(dir: &Path, states: &[Option<FileSinkState>], stash: bool) -> Result<()> {
    let present = part_files(dir)?;
    let covered: Vec<Covered> = states
        .iter()
        .enumerate()
        .map(|(p, s)| covered(p, s.as_ref(), &present))
        .collect();
    let wanted: HashMap<&str, &Option<PartRecord>> = covered
        .iter()
        .flat_map(|c| c.files.iter().map(|(n, r)| (n.as_str(), r)))
        .collect();
    let needed = |name: &str, partition: usize, seq: u64| {
        wanted.contains_key(name) || covered.get(partition).is_none_or(|c| seq >= c.next_seq)
    };
    let written = record::written(dir)?;
    let mut steps = Vec::new();
    let mut in_place = HashSet::new();
    let mut uncommitted = HashMap::new();
    for f in &present {
        let path = dir.join(&f.name);
        if !f.committed {
            let name = f
                .name
                .trim_start_matches('.')
                .trim_end_matches(".inprogress");
            uncommitted.insert(name.to_string(), path);
            continue;
        }
        let have = record::digest_file(&path, &f.name)?;
        match wanted.get(f.name.as_str()) {
            Some(None) => {
                in_place.insert(f.name.clone());
                continue;
            }
            Some(Some(want)) if *want == have => {
                in_place.insert(f.name.clone());
                continue;
            }
            _ => {}
        }
        if written.contains(&have) {
            steps.push(Step::Stash(have));
        } else if needed(&f.name, f.partition, f.seq) {
            return Err(foreign(dir, &f.name));
        }
    }
    let mut committing = HashSet::new();
    for (name, want) in &wanted {
        if in_place.contains(*name) {
            continue;
        }
        let name = name.to_string();
        let from_progress = uncommitted
            .get(&name)
            .map(|p| record::digest_file(p, &name))
            .transpose()?;
        match want {
            Some(want) if from_progress.as_ref() == Some(want) => {
                committing.insert(name.clone());
                steps.push(Step::Commit(name));
            }
            None if from_progress.is_some() => {
                committing.insert(name.clone());
                steps.push(Step::Commit(name));
            }
            Some(want) if record::stashed(dir, want).is_file() => {
                steps.push(Step::Unstash(want.clone()))
            }
            _ => return Err(missing(dir, &name, want.as_ref())),
        }
    }
    for (name, path) in uncommitted {
        if !committing.contains(&name) {
            steps.push(Step::Remove(path));
        }
    }
    run(dir, steps, stash)
}

/// What partition `p`'s state covers; a state of an earlier version (no
/// digests) covers its pending files and the committed ones below its
/// next sequence number.
fn covered(p: usize, state: Option<&FileSinkState>, present: &[super::PartFile]) -> Covered {
    let Some(s) = state else {
        return Covered {
            next_seq: 0,
            files: HashMap::new(),
        };
    };
    let files = match &s.files {
        Some(files) => files
            .iter()
            .map(|r| (r.name.clone(), Some(r.clone())))
            .collect(),
        None => present
            .iter()
            .filter(|f| f.committed && f.partition == p && f.seq < s.next_seq)
            .map(|f| f.name.clone())
            .chain(s.pending.iter().cloned())
            .map(|n| (n, None))
            .collect(),
    };
    Covered {
        next_seq: s.next_seq,
        files,
    }
}

/// Carry out the planned steps: the sink's uncovered files leave first, so
/// the names are free for what comes back.
fn run(dir: &Path, mut steps: Vec<Step>, stash: bool) -> Result<()> {
    steps.sort_by_key(|s| match s {
        Step::Stash(_) => 0,
        _ => 1,
    });
    for step in steps {
        match step {
            Step::Stash(r) => {
                let from = dir.join(&r.name);
                let to = record::stashed(dir, &r);
                if stash && !to.exists() {
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
                    }
                    std::fs::rename(&from, &to).map_err(Error::io("moving to the stash", &from))?;
                } else {
                    std::fs::remove_file(&from).map_err(Error::io("removing", &from))?;
                }
            }
            Step::Unstash(r) => {
                let from = record::stashed(dir, &r);
                std::fs::rename(&from, dir.join(&r.name))
                    .map_err(Error::io("moving back from the stash", &from))?;
            }
            Step::Commit(name) => super::commit(dir, &name)?,
            Step::Remove(path) => {
                std::fs::remove_file(&path).map_err(Error::io("removing", &path))?
            }
        }
    }
    Ok(())
}

fn foreign(dir: &Path, name: &str) -> Error {
    Error::Config(format!(
        "the sink folder {} holds {name}, which this job's sink did not write (it is not on its \
         list of written files, {}/written-*.jsonl) and whose name the sink needs: move it away \
         (nothing was changed)",
        dir.display(),
        record::OWN_DIR
    ))
}

fn missing(dir: &Path, name: &str, want: Option<&PartRecord>) -> Error {
    let what = match want {
        Some(r) => format!(
            "{name} ({} bytes, sha256 {})",
            r.size,
            crate::digest::short(&r.sha256)
        ),
        None => name.to_string(),
    };
    Error::Config(format!(
        "the restore point committed {what} to the sink folder {}, and it is neither there nor \
         in-progress ({}) nor in the sink's stash ({}/stash): it was removed or changed outside \
         Weir. Restore another savepoint, or start over with `--fresh` (nothing was changed)",
        dir.display(),
        in_progress(dir, name).display(),
        record::OWN_DIR
    ))
}
