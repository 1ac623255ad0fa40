//! The end of a run: join every thread (workers, coordinator, control
//! endpoint, progress reporter), flush the dead letters, and report; the
//! source's error comes first, then the first worker's.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::JobReport;
use super::prepare::Prepared;
use super::start::Running;
use crate::runtime::{CheckpointStats, TaskStats, process_cpu_time};
use crate::source::Completion;
use crate::{Error, Result, lock_or_recover};

/// Join every thread and report; the source's error comes first, then the
/// first worker's.
pub(super) fn finish(
    job: Prepared,
    running: Running,
    source_result: Result<Completion>,
    (started, cpu_start): (Instant, Duration),
) -> Result<JobReport> {
    let Running {
        workers,
        coordinator,
        control,
        progress,
        stats,
        unread_triggers: _unread_triggers,
    } = running;
    let completion = *source_result.as_ref().unwrap_or(&Completion::Stopped);
    let mut first_error = source_result.err();
    let task_stats = join_workers(workers, &mut first_error);
    // Every sender is gone now: the coordinator finishes what is in flight.
    if let Some(c) = coordinator {
        let _ = c.join();
    }
    drop(control);
    progress.stop();
    job.shared.dead_letters.flush()?;
    if let Some(e) = first_error {
        return Err(e);
    }
    let checkpoints = lock_or_recover(&stats).clone();
    if task_stats.iter().any(|s| s.final_checkpoint_failed) {
        return Err(final_checkpoint_failed(&job, &checkpoints));
    }
    Ok(JobReport {
        name: job.plan.name.clone(),
        totals: job.shared.metrics.snapshot(),
        dead_letters: job.shared.dead_letters.count(),
        tasks: task_stats,
        elapsed: started.elapsed(),
        cpu: process_cpu_time().saturating_sub(cpu_start),
        completion,
        checkpoints,
        restored_from: job.restored.map(|r| r.location),
        restarts: 0,
    })
}

/// The input ended but its final checkpoint failed: the run did not
/// finish its work (its last output is uncommitted), so it fails.
fn final_checkpoint_failed(job: &Prepared, c: &CheckpointStats) -> Error {
    let newest = match &c.last {
        Some(m) => format!("checkpoint {}", m.id),
        None => "none of this run".into(),
    };
    Error::Store {
        url: job.store.as_ref().map_or("", |s| s.url()).to_string(),
        detail: format!(
            "the input ended, but its final checkpoint failed ({} of this run's checkpoints \
             failed, the reasons are in the log; newest complete: {newest}): the output after \
             the newest complete checkpoint is not committed. Make the state store writable \
             again and run the job again: it resumes from its newest complete checkpoint",
            c.failed
        ),
    }
}

/// Join the workers; the first error (after the source's) is kept.
fn join_workers(
    workers: Vec<JoinHandle<Result<TaskStats>>>,
    first_error: &mut Option<Error>,
) -> Vec<TaskStats> {
    let mut stats = Vec::with_capacity(workers.len());
    for h in workers {
        match h.join() {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(Error::Internal("a task thread panicked".into()));
            }
        }
    }
    stats
}
