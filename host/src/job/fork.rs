//! A what-if fork: a second job from a savepoint of a live job, over the
//! same input, with a new plugin for one operator, writing to its own
//! output folder (compare the two with [`crate::diff`]). The live job's
//! output, state and consumer group are left alone: the fork has its own
//! name (`<job>-fork-<8 hex digits of its output folder's path>`, so forks
//! into different folders run side by side), its own output (not the
//! job's sink folder, not a source folder, and empty unless the fork is
//! told to overwrite it) and no sink state from the
//! savepoint, no control endpoint, and a bounded source (a file source
//! reads to the end of its input; a Kafka source to the end offsets at its
//! start, in its own consumer group), or until an event time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{JobReport, RunOptions};
use crate::config::{DeadLetterSpec, FileSinkSpec, Plan, PluginSource, SinkSpec};
use crate::{Error, Result};

/// What a fork changes in the live job, and where it starts.
#[derive(Debug, Clone)]
pub struct Fork {
    /// The savepoint (or checkpoint) of the live job to start from: its
    /// name, `latest`, `before:TIME`.
    pub from_savepoint: String,
    /// The new component.
    pub plugin: PathBuf,
    /// The operator it replaces (`None`: the job's only operator).
    pub operator: Option<String>,
    /// Output folder: part files, as the file sink writes them, and
    /// `dead-letters.jsonl`.
    pub out: PathBuf,
    /// Stop before the first record at or after this event time (ms);
    /// `None`: at the end of the input.
    pub until: Option<i64>,
    /// Worker threads of the fork (its share of the CPU); at least 1.
    pub parallelism: usize,
    /// Write into `out` even if it is not empty (an earlier fork's output
    /// there is replaced; files the fork did not write are kept).
    pub overwrite: bool,
}

/// The name of a fork of job `live` writing into `out`: distinct for
/// each output folder, the same for a fork run again into one.
pub fn name(live: &str, out: &Path) -> String {
    let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let digest = crate::digest::sha256_hex(abs.as_os_str().as_encoded_bytes());
    format!("{live}-fork-{}", &digest[..8])
}

/// `a` and `b` are the same folder or one holds the other (paths made
/// absolute and `..` resolved, without touching the disk).
pub(super) fn overlap(a: &Path, b: &Path) -> bool {
    let normal = |p: &Path| {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    let (a, b) = (normal(a), normal(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// The fork's output folder must not be or overlap the live job's sink
/// folder or its source folder, and must be empty unless `overwrite`.
fn check_out(live: &Plan, fork: &Fork) -> Result<()> {
    let out = &fork.out;
    if let Some(sink) = live.sink.folder()
        && overlap(out, sink)
    {
        return Err(Error::Config(format!(
            "--out {} overlaps the sink folder {} of job `{}`: a fork writes its own output, \
             never into the live job's; choose another folder",
            out.display(),
            sink.display(),
            live.name
        )));
    }
    if let Some(source) = live.source.folder()
        && overlap(out, source)
    {
        return Err(Error::Config(format!(
            "--out {} overlaps the source folder {} of job `{}`: the fork's output would mix \
             with its input; choose another folder",
            out.display(),
            source.display(),
            live.name
        )));
    }
    let entries = match std::fs::read_dir(out) {
        Ok(rd) => rd.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("listing", out)(e)),
    };
    if entries > 0 && !fork.overwrite {
        return Err(Error::Config(format!(
            "--out {} is not empty ({entries} entries): choose an empty or new folder, or pass \
             --overwrite to replace an earlier fork's output there",
            out.display()
        )));
    }
    Ok(())
}

/// The fork's plan: `live`'s, renamed, with the new plugin, a bounded
/// source and its own output. Touches nothing; refuses an output folder
/// that overlaps the job's sink or source folder, or that is not empty
/// (unless `overwrite`).
pub fn plan(live: &Plan, fork: &Fork) -> Result<Plan> {
    if fork.parallelism == 0 {
        return Err(Error::Config(
            "a fork's parallelism must be at least 1".into(),
        ));
    }
    check_out(live, fork)?;
    let mut plan = live.clone();
    plan.name = name(&live.name, &fork.out);
    let i = match &fork.operator {
        Some(name) => plan
            .operators
            .iter()
            .position(|o| &o.name == name)
            .ok_or_else(|| {
                Error::Config(format!("job `{}` has no operator `{name}`", live.name))
            })?,
        None if plan.operators.len() == 1 => 0,
        None => {
            return Err(Error::Config(
                "the job has several operators: name one with --operator".into(),
            ));
        }
    };
    plan.operators[i].plugin = PluginSource::Path(fork.plugin.clone());
    plan.source.bounded_for_fork(fork.until);
    plan.sink = SinkSpec::Files(FileSinkSpec {
        dir: fork.out.clone(),
    });
    plan.dead_letter = Some(DeadLetterSpec::File(fork.out.join("dead-letters.jsonl")));
    plan.control = None;
    plan.parallelism = fork.parallelism;
    Ok(plan)
}

/// Run a fork of `live` to its end (or until `stop` is set): its plan
/// (see [`plan`]), its output folder created, then the run from the live
/// job's savepoint.
pub fn run(live: &Plan, fork: &Fork, stop: Arc<AtomicBool>) -> Result<JobReport> {
    let plan = plan(live, fork)?;
    std::fs::create_dir_all(&fork.out).map_err(Error::io("creating", &fork.out))?;
    super::run(
        &plan,
        RunOptions {
            stop,
            from_savepoint: Some(fork.from_savepoint.clone()),
            fork_of: Some(live.name.clone()),
            ..RunOptions::default()
        },
    )
}
