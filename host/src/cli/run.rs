//! `weir run` and `weir stop`: run a job until its input ends or it is
//! stopped (Ctrl-C, SIGTERM, or `weir stop` through its control endpoint),
//! with progress in the log and a summary at the end.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context;

use super::{load_job, load_plan};
use crate::job::{RunOptions, run};
use crate::runtime::control;
use crate::source::Completion;

/// `weir run`: run a job until its input ends or it is stopped; without
/// `--fresh` or `--from-savepoint` it resumes from the newest complete
/// checkpoint or savepoint of the job.
pub(super) fn run_job(
    job: &Path,
    parallelism: Option<usize>,
    from_savepoint: Option<String>,
    fresh: bool,
) -> anyhow::Result<()> {
    let (file, mut plan) = load_job(job)?;
    if let Some(p) = parallelism {
        anyhow::ensure!(p > 0, "--parallelism must be at least 1");
        // Partitions follow the parallelism unless the job file sets them.
        if plan.partitions == plan.parallelism && file.partitions.is_none() {
            plan.partitions = p;
        }
        plan.parallelism = p;
    }
    if crate::group::is_group(&plan) {
        return run_group(&plan, from_savepoint, fresh);
    }
    // One run per job on this host, held until the process ends: taken
    // before anything else is opened.
    let _lock = control::lock_job(&plan.name)?;
    let report = run(
        &plan,
        RunOptions {
            stop: stop_on_signals(),
            progress: Some(super::progress::reporter()),
            progress_every: Some(super::progress::every()),
            from_savepoint,
            resume: !fresh,
            triggers: None,
            fork_of: None,
        },
    )
    .with_context(|| format!("job `{}` failed", plan.name))?;
    if let Some(from) = &report.restored_from {
        eprintln!("restored from {from}");
    }
    if report.dead_letters > 0
        && report.dead_letters >= report.totals.records_read + report.totals.malformed
    {
        eprintln!(
            "WARNING: every record of this run went to the dead-letter output ({} records): \
             check the source's format, key and timestamp settings, and why the operator \
             rejects them (the reasons are in the dead-letter output)",
            report.dead_letters
        );
    }
    eprintln!(
        "job `{}` {}: {} records in, {} out, {} dead letters, {} checkpoints, {} savepoints, {:.2} s ({:.0} records/s, {:.0} per CPU-second)",
        report.name,
        match report.completion {
            Completion::EndOfInput => "done",
            Completion::Stopped => "stopped",
        },
        report.totals.records_read,
        report.totals.emitted,
        report.dead_letters,
        report
            .checkpoints
            .completed
            .saturating_sub(report.checkpoints.savepoints),
        report.checkpoints.savepoints,
        report.elapsed.as_secs_f64(),
        report.records_per_sec(),
        report.records_per_cpu_sec()
    );
    Ok(())
}

/// How long `weir stop` waits for the job to exit (its drain and final
/// checkpoint) before it gives up saying so.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `weir stop`: stop a running job, with a savepoint first if asked; with
/// `wait`, return once the job's process has exited.
pub(super) fn stop_job(
    job: &Path,
    (savepoint, name): (bool, Option<String>),
    wait: bool,
) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let endpoint = control::find(&plan.name)?;
    let mut path = format!("/stop?savepoint={savepoint}");
    if let Some(n) = name {
        path.push('&');
        path.push_str(&control::query(&[("name", &n)]));
    }
    // The job's process, if the pid it published names it here (the same
    // start time): not a later process given that pid, nor one in another
    // pid namespace. Otherwise only the job's lock is waited for.
    let started = endpoint
        .started
        .filter(|&s| crate::checkpoint::lease::process_start(endpoint.pid) == Some(s));
    let (status, body) = endpoint.request("POST", &path)?;
    anyhow::ensure!(
        status == 200,
        "stop refused ({status}), the job keeps running: {body}"
    );
    println!("{body}");
    if !wait {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + STOP_WAIT;
    // The run gives up its lock before its process has finished exiting
    // (threads joined, memory unmapped): wait for both, so that a caller
    // that reaps the process finds it exited.
    let exited =
        || started.is_none_or(|s| crate::checkpoint::lease::process_exited(endpoint.pid, s));
    while control::job_running(&plan.name)? || !exited() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "job `{}` (pid {}) was told to stop but has not exited after {} s; it may still \
             be draining to its final checkpoint",
            plan.name,
            endpoint.pid,
            STOP_WAIT.as_secs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("job `{}` has exited", plan.name);
    Ok(())
}

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// `weir run` of a group job: this process joins the consumer group and
/// runs the partitions it is assigned until it is stopped.
fn run_group(plan: &crate::config::Plan, from: Option<String>, fresh: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        from.is_none() && !fresh,
        "job `{}` is a group job (assignment = \"group\"): each partition resumes from its own \
         newest checkpoint; --from-savepoint and --fresh are not taken",
        plan.name
    );
    let report = crate::group::run(plan, stop_on_signals())
        .with_context(|| format!("group job `{}` failed", plan.name))?;
    let (read, out) = report.runs.iter().fold((0, 0), |(r, o), (_, j)| {
        (r + j.totals.records_read, o + j.totals.emitted)
    });
    eprintln!(
        "group job `{}` stopped: {} partition runs here, {read} records in, {out} out",
        plan.name,
        report.runs.len()
    );
    Ok(())
}

/// Signals received so far (SIGINT or SIGTERM).
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Write `msg` to stderr from a signal handler (`write` is
/// async-signal-safe; nothing is allocated).
fn say(msg: &str) {
    // SAFETY: `msg` is a valid buffer of its length; stderr may be closed,
    // in which case nothing is written.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
        if let Some(stop) = STOP.get() {
            stop.store(true, Ordering::SeqCst);
        }
        say(
            "weir: stopping: draining to a final checkpoint (signal again to stop at once; \
             the job then restarts from its latest checkpoint)\n",
        );
        return;
    }
    say("weir: second signal: stopping at once; the next run resumes from the latest checkpoint\n");
    // SAFETY: `_exit` is async-signal-safe. Output committed so far is
    // covered by a checkpoint (sinks commit only after one completes);
    // what is in flight is discarded and recomputed by the next run.
    unsafe { libc::_exit(128 + signal) }
}

/// SIGINT (Ctrl-C) and SIGTERM drain the job to a clean stop: a final
/// checkpoint, then exit 0. A second one of either, even while a plugin
/// call runs, ends the process at once with status 128 + the signal's
/// number; its committed output is the latest checkpoint's.
pub(super) fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = STOP.get_or_init(Arc::default).clone();
    // SAFETY: the handler only touches atomics, `write` and `_exit`.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    stop
}
