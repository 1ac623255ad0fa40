//! A what-if fork: a second job from a savepoint of a live job, over the
//! same input, with a new plugin for one operator, writing to its own
//! output folder (compare the two with [`crate::diff`]). The live job's
//! output, state and consumer group are left alone: the fork has its own
//! name (`<job>-fork`), its own output and no sink state from the
//! savepoint, no control endpoint, and a bounded source (a file source
//! reads to the end of its input; a Kafka source to the end offsets at its
//! start, in its own consumer group), or until an event time.

use std::path::PathBuf;
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
}

/// The name of a fork of job `live`.
pub fn name(live: &str) -> String {
    format!("{live}-fork")
}

/// The fork's plan: `live`'s, renamed, with the new plugin, a bounded
/// source and its own output. Touches nothing.
pub fn plan(live: &Plan, fork: &Fork) -> Result<Plan> {
    if fork.parallelism == 0 {
        return Err(Error::Config(
            "a fork's parallelism must be at least 1".into(),
        ));
    }
    let mut plan = live.clone();
    plan.name = name(&live.name);
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
