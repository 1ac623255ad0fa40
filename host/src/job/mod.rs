//! Running a job: resolve its source, sink and plugins and check them,
//! restore its partitions, settle the output, start the coordinator and one
//! worker thread per unit of parallelism, run the source on the calling
//! thread, then join everything and report.
//!
//! [`run`] and [`run_with`] call the steps in that order, one file each:
//! - `prepare`: every check, before output or state is touched: the lease,
//!   the one selection of the restore point (`restore_point`), the plugin
//!   versions it names (`plugins`), the source, the sink, every operator;
//!   then `settle_output` brings the output to the restored point;
//! - `start`: the coordinator, the workers, the control endpoint, and the
//!   router the source writes to;
//! - the source runs on the calling thread;
//! - `finish`: join every thread and report.
//!
//! `restart` runs those steps again from the newest checkpoint after a
//! failure, as the job's `[restart]` strategy allows; `progress` is the
//! optional progress reporter; [`fork`] is a what-if run of a job from one
//! of its savepoints, with a new plugin.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::Result;
use crate::config::Plan;
use crate::plugin::{OperatorFactory, WeirEngine};
// Barrier requests (savepoints, stops, swaps) sent to a running job: the
// one place `job` names the type's module (its submodules use `super::Trigger`).
use crate::runtime::Trigger;
use crate::runtime::{CheckpointStats, Router, Snapshot, TaskStats, process_cpu_time};
use crate::source::{Completion, Source};

mod finish;
pub mod fork;
mod plugins;
mod prepare;
mod progress;
mod restart;
mod restore_point;
mod start;

pub use plugins::load_operators;
pub use progress::{Progress, ProgressFn};
pub use restore_point::{load_for_plan, open_store};

/// How a run is driven from outside.
#[derive(Default)]
pub struct RunOptions {
    /// Set to stop a `follow` run; the job then drains and ends cleanly.
    pub stop: Arc<AtomicBool>,
    /// Called about once per `progress_every` with the counters so far.
    pub progress: Option<ProgressFn>,
    /// Interval of `progress`. Default one second.
    pub progress_every: Option<Duration>,
    /// Start from this checkpoint or savepoint: a name, `latest`,
    /// `before:TIME`, or the URL of a savepoint folder.
    pub from_savepoint: Option<String>,
    /// Without `from_savepoint`: resume from the job's newest complete
    /// checkpoint or savepoint when its store has one (what `weir run`
    /// does); `false` (the default here, `--fresh` on the command line)
    /// starts from the source's configured start and replaces the output.
    pub resume: bool,
    /// Extra source of barrier requests (tests, embedding programs); the
    /// control endpoint has its own.
    pub triggers: Option<Receiver<Trigger>>,
    /// A what-if fork of this job: `from_savepoint` names a savepoint of
    /// the job called this, and the run starts from its state and source
    /// positions with a fresh output (none of the job's sink state).
    pub fork_of: Option<String>,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Job name.
    pub name: String,
    /// Final counters.
    pub totals: Snapshot,
    /// Dead letters written (malformed plus rejected).
    pub dead_letters: u64,
    /// Per worker thread statistics.
    pub tasks: Vec<TaskStats>,
    /// Wall time.
    pub elapsed: Duration,
    /// CPU time of the process during the run.
    pub cpu: Duration,
    /// How the source ended.
    pub completion: Completion,
    /// Checkpoint figures.
    pub checkpoints: CheckpointStats,
    /// Where the run was restored from, if it was.
    pub restored_from: Option<String>,
    /// Restarts by the job's restart strategy (in this process).
    pub restarts: u64,
}

impl JobReport {
    /// Records read per wall-clock second.
    pub fn records_per_sec(&self) -> f64 {
        self.totals.records_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Records read per CPU second.
    pub fn records_per_cpu_sec(&self) -> f64 {
        self.totals.records_read as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// Run `plan` with its Wasm plugins. A restart from a checkpoint runs the
/// plugin versions the checkpoint names where a swap brought them in; the
/// control endpoint can swap plugins while the job runs.
pub fn run(plan: &Plan, options: RunOptions) -> Result<JobReport> {
    // A fork's plugins draw the random bytes of the job it forks.
    let engine = WeirEngine::new(plan.engine.clone())?
        .for_job(options.fork_of.as_deref().unwrap_or(&plan.name));
    let factories = load_operators(&engine, plan)?;
    restart::run_restarting(plan, &factories, Some(engine), options)
}

/// Run `plan` with the given operator chain (the benchmark passes native
/// operators here); no plugin swaps.
pub fn run_with(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    options: RunOptions,
) -> Result<JobReport> {
    restart::run_restarting(plan, factories, None, options)
}

/// The steps of a run, in order; `engine` is `None` for native operators
/// (no plugin swaps, no versions from the swap log). `restarts`: the
/// restarts before this attempt. A failure says whether the job had
/// started (a refusal before anything ran is never restarted) and the
/// first checkpoint id the attempt used.
fn run_inner(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    engine: Option<WeirEngine>,
    options: &mut RunOptions,
    restarts: u64,
) -> std::result::Result<JobReport, restart::Failed> {
    let refused = |error| restart::Failed {
        error,
        started: false,
        first_id: None,
    };
    let clock = (Instant::now(), process_cpu_time());
    let mut job = prepare::prepare(plan, factories, engine, options).map_err(refused)?;
    job.shared.metrics.set_restarts(restarts);
    let first_id = job.next_id;
    let failed = |error| restart::Failed {
        error,
        started: true,
        first_id,
    };
    let partitions = prepare::settle_output(&mut job).map_err(failed)?;
    let (router, running) = start::start(&mut job, partitions, options, clock.0).map_err(failed)?;
    let source_result = run_source(job.source.as_mut(), router);
    finish::finish(job, running, source_result, clock).map_err(failed)
}

/// Run the source on this thread until its input ends, it is stopped or it
/// fails; then flush the router and hang up, so the workers drain.
fn run_source(source: &mut dyn Source, mut router: Router) -> Result<Completion> {
    let result = source.run(&mut router);
    let _ = router.finish(*result.as_ref().unwrap_or(&Completion::Stopped));
    result
}
