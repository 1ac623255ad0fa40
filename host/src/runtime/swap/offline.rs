//! Rollbacks decided while no version runs: `weir plugin rollback` of a
//! stopped job, and a restart strategy taking a newly promoted version
//! out after it failed. Either writes a [`Outcome::Scheduled`] record; the
//! next run (or restart) starts on the previous version from the newest
//! checkpoint (see [`super::versions_for_restart`]), and settles the
//! record when it does.

use super::log::{component_key, read_history, write_record};
use super::record::{Outcome, SwapRecord};
use crate::checkpoint::store::StateStore;
use crate::digest::short;
use crate::{Error, Result};

/// Schedule a rollback of `operator` of `job`, which its newest checkpoint
/// runs at digest `running`, to the version before the promoted swap that
/// brought `running` in (the component is kept in the store). `cause` says
/// who asked and why. A rollback already scheduled from `running` is
/// answered as it is.
pub fn schedule_rollback(
    store: &StateStore,
    job: &str,
    operator: &str,
    running: &str,
    cause: &str,
) -> Result<SwapRecord> {
    let history = read_history(store, job)?;
    if let Some(r) = history.iter().rev().find(|r| {
        r.operator == operator && r.outcome == Outcome::Scheduled && r.from_digest == running
    }) {
        return Ok(r.clone());
    }
    let last = history
        .iter()
        .rev()
        .find(|r| {
            r.operator == operator && r.outcome == Outcome::Promoted && r.to_digest == running
        })
        .ok_or_else(|| {
            Error::Config(format!(
                "operator `{operator}` of job `{job}` runs {} (its newest checkpoint says so), \
                 which no promoted swap brought in: nothing to roll back to",
                short(running)
            ))
        })?;
    let previous = &last.from_digest;
    if store.get(&component_key(job, previous))?.is_none() {
        return Err(Error::Store {
            url: store.url().to_string(),
            detail: format!(
                "the version before {} of operator `{operator}` ({}) is not in the store \
                 ({}): it cannot be rolled back to",
                short(running),
                short(previous),
                component_key(job, previous)
            ),
        });
    }
    let seq = history.iter().map(|r| r.seq).max().unwrap_or(0) + 1;
    let mut record = SwapRecord::requested(seq, operator, (running, previous), "rollback");
    record.savepoint = String::new();
    record.outcome = Outcome::Scheduled;
    record.cause = Some(cause.to_string());
    write_record(store, job, &record)?;
    Ok(record)
}

/// The version a scheduled rollback of `operator` from `named` (the
/// digest the restore point names) asks for, if one is scheduled.
pub(super) fn scheduled_target(
    history: &[SwapRecord],
    operator: &str,
    named: &str,
) -> Option<String> {
    history
        .iter()
        .rev()
        .find(|r| {
            r.operator == operator && r.outcome == Outcome::Scheduled && r.from_digest == named
        })
        .map(|r| r.to_digest.clone())
}

/// The swap that brought `digest` of `operator` in, if it was promoted at
/// or after `since_ms` (ms since the epoch): a newly promoted version.
pub fn promoted_since(
    store: &StateStore,
    job: &str,
    operator: &str,
    digest: &str,
    since_ms: i64,
) -> Result<Option<SwapRecord>> {
    let history = read_history(store, job)?;
    Ok(history.into_iter().rev().find(|r| {
        r.operator == operator
            && r.outcome == Outcome::Promoted
            && r.to_digest == digest
            && r.kind == "swap"
            && r.ended_ms.is_some_and(|t| t >= since_ms)
    }))
}
