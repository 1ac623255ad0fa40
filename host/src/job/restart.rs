//! Restarts inside the process: a job that fails while running (a plugin
//! trap, a sink or store error) runs again from its newest complete
//! checkpoint, as its `[restart]` strategy allows (Flink's `fixed-delay`
//! and `failure-rate`; `none` fails the job, as before).
//!
//! What a restart keeps exactly once: every attempt is a whole run (the
//! lease, the control endpoint, the sinks' recovery), so the output is
//! brought back to the checkpoint the attempt restores (the file sink
//! removes what no checkpoint covers; the Kafka sink produces an epoch
//! again only when its marker says it was not), exactly as a new process
//! would. An attempt that completed no checkpoint of its own starts the
//! way the first one did (from the same savepoint, or over again with
//! `--fresh`), so a restart never goes back to a timeline the run left.
//!
//! A failure in a version a swap promoted during this run is taken out:
//! the restart starts on the version before it (a scheduled rollback in
//! the swap log), so a bad version does not fail the job in a loop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{JobReport, RunOptions, run_inner};
use crate::checkpoint::manifest;
use crate::clock::now_ms;
use crate::config::{Plan, RestartStrategy};
use crate::digest::short;
use crate::plugin::{OperatorFactory, WeirEngine};
use crate::runtime::swap;
use crate::{Error, Result};

/// How often the wait before a restart looks whether the job was told to
/// stop.
const STOP_POLL: Duration = Duration::from_millis(50);

/// An attempt that failed.
pub(super) struct Failed {
    /// Why.
    pub error: Error,
    /// Whether the job had started (every check passed): a run refused
    /// before that is never restarted.
    pub started: bool,
    /// The first checkpoint id the attempt used (checkpoints on).
    pub first_id: Option<u64>,
}

/// The strategy's verdict on one failure.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Restart after this wait.
    Restart(Duration),
    /// The job fails.
    Fail,
}

/// The failures the strategy has seen.
#[derive(Debug)]
struct Failures {
    /// The strategy.
    strategy: RestartStrategy,
    /// Restarts so far.
    restarts: u64,
    /// Times of the recent failures (failure-rate).
    recent: VecDeque<Instant>,
}

impl Failures {
    fn new(strategy: RestartStrategy) -> Self {
        Self {
            strategy,
            restarts: 0,
            recent: VecDeque::new(),
        }
    }

    /// A failure at `now`: restart (after the strategy's delay) or fail.
    fn failed(&mut self, now: Instant) -> Verdict {
        let verdict = match self.strategy {
            RestartStrategy::None => Verdict::Fail,
            RestartStrategy::FixedDelay { attempts, delay } => {
                if self.restarts < u64::from(attempts) {
                    Verdict::Restart(delay)
                } else {
                    Verdict::Fail
                }
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                self.recent.push_back(now);
                while self
                    .recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > interval)
                {
                    self.recent.pop_front();
                }
                if self.recent.len() <= max_failures as usize {
                    Verdict::Restart(delay)
                } else {
                    Verdict::Fail
                }
            }
        };
        if matches!(verdict, Verdict::Restart(_)) {
            self.restarts += 1;
        }
        verdict
    }
}

/// Run `plan`, restarting after failures as its strategy allows. Forks
/// never restart (they write a one-off output).
pub(super) fn run_restarting(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    engine: Option<WeirEngine>,
    mut options: RunOptions,
) -> Result<JobReport> {
    let strategy = if options.fork_of.is_some() {
        RestartStrategy::None
    } else {
        plan.restart
    };
    let started_ms = now_ms();
    // One progress callback for every attempt.
    let progress = options.progress.take().map(|f| Arc::new(Mutex::new(f)));
    let mut failures = Failures::new(strategy);
    // Whether an attempt completed a checkpoint: restarts then resume
    // from the newest one.
    let mut checkpointed = false;
    loop {
        if let Some(p) = &progress {
            let p = p.clone();
            options.progress = Some(Box::new(move |tick| {
                (crate::lock_or_recover(&p))(tick);
            }));
        }
        let restarts = failures.restarts;
        let failed = match run_inner(plan, factories, engine.clone(), &mut options, restarts) {
            Ok(mut report) => {
                report.restarts = restarts;
                return Ok(report);
            }
            Err(f) => f,
        };
        // A refusal of the first attempt is the user's to fix; a stop
        // asked for is not restarted.
        let stopping = options.stop.load(std::sync::atomic::Ordering::Relaxed);
        if (!failed.started && restarts == 0) || stopping {
            return Err(failed.error);
        }
        let delay = match failures.failed(Instant::now()) {
            Verdict::Restart(d) => d,
            Verdict::Fail if strategy == RestartStrategy::None => return Err(failed.error),
            Verdict::Fail => {
                return Err(Error::RestartsExhausted {
                    strategy: strategy.to_string(),
                    restarts,
                    source: Box::new(failed.error),
                });
            }
        };
        checkpointed |= completed_since(plan, failed.first_id);
        tracing::error!(
            restart = failures.restarts, strategy = %strategy,
            "job `{}` failed: {}; restarting in {} ms from {}",
            plan.name,
            failed.error,
            delay.as_millis(),
            if checkpointed { "its newest checkpoint" } else { "where this run started" }
        );
        if engine.is_some() {
            roll_back_new_version(plan, &failed.error, started_ms);
        }
        if !wait(delay, &options) {
            return Err(failed.error);
        }
        if checkpointed {
            options.from_savepoint = None;
            options.resume = true;
        }
    }
}

/// Whether the job's store holds a complete checkpoint with an id of at
/// least `first_id` (one the failed attempt took).
fn completed_since(plan: &Plan, first_id: Option<u64>) -> bool {
    let Some(first) = first_id else {
        return false;
    };
    let Ok(Some(store)) = super::restore_point::open_store(plan) else {
        return false;
    };
    manifest::list(&store, &plan.name)
        .map(|all| all.iter().any(|f| f.manifest.id >= first))
        .unwrap_or(false)
}

/// Wait `delay` before a restart; false if the job was told to stop
/// meanwhile.
fn wait(delay: Duration, options: &RunOptions) -> bool {
    let until = Instant::now() + delay;
    loop {
        if options.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(STOP_POLL.min(until - now));
    }
}

/// After a failure in operator `plugin` (named by `error`): if the
/// version the restart would run was promoted by a swap during this run
/// (since `since_ms`), schedule a rollback to the version before it.
fn roll_back_new_version(plan: &Plan, error: &Error, since_ms: i64) {
    let Error::Plugin { plugin, .. } = error else {
        return;
    };
    let Ok(Some(store)) = super::restore_point::open_store(plan) else {
        return;
    };
    let newest = manifest::list(&store, &plan.name)
        .ok()
        .and_then(|mut all| all.pop());
    let Some(running) = newest.and_then(|f| {
        f.manifest
            .partitions
            .first()?
            .operators
            .iter()
            .find(|o| o.name == *plugin)
            .map(|o| o.plugin_digest.clone())
    }) else {
        return;
    };
    match swap::promoted_since(&store, &plan.name, plugin, &running, since_ms) {
        Ok(Some(swap)) => {
            let cause = format!(
                "the restart strategy: version {} (promoted by swap {}) failed: {error}",
                short(&running),
                swap.seq
            );
            match swap::schedule_rollback(&store, &plan.name, plugin, &running, &cause) {
                Ok(r) => tracing::warn!(
                    operator = %plugin, from = %short(&running), to = %short(&r.to_digest),
                    "the failing version was promoted during this run: the restart runs the \
                     version before it"
                ),
                Err(e) => tracing::warn!(
                    operator = %plugin,
                    "cannot roll back the newly promoted version: {e}"
                ),
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("reading the swap history: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_restarts_its_attempts_then_fails() {
        let d = Duration::from_millis(5);
        let mut f = Failures::new(RestartStrategy::FixedDelay {
            attempts: 2,
            delay: d,
        });
        let now = Instant::now();
        assert_eq!(f.failed(now), Verdict::Restart(d));
        assert_eq!(f.failed(now), Verdict::Restart(d));
        assert_eq!(f.failed(now), Verdict::Fail);
        assert_eq!(f.restarts, 2);
    }

    #[test]
    fn failure_rate_counts_the_failures_inside_its_interval() {
        let d = Duration::from_millis(5);
        let interval = Duration::from_secs(10);
        let mut f = Failures::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval,
            delay: d,
        });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(f.failed(at(0)), Verdict::Restart(d));
        // The first one left the interval: one inside it.
        assert_eq!(f.failed(at(11)), Verdict::Restart(d));
        assert_eq!(f.failed(at(12)), Verdict::Restart(d));
        // Three inside the interval.
        assert_eq!(f.failed(at(13)), Verdict::Fail);
    }

    #[test]
    fn none_fails_at_once() {
        let mut f = Failures::new(RestartStrategy::None);
        assert_eq!(f.failed(Instant::now()), Verdict::Fail);
        assert_eq!(f.restarts, 0);
    }
}
