//! Versions for a restart: a job restored from a checkpoint that names a
//! version a swap brought in runs that version again (the component is
//! kept in the store by digest).

use std::sync::Arc;

use super::log::{component_key, read_history};
use super::offline::scheduled_target;
use super::record::Outcome;
use crate::checkpoint::store::StateStore;
use crate::digest::short;
use crate::plugin::{OperatorFactory, OperatorSpec, PluginLoader};
use crate::{Error, Result};

/// The factories `operators` of a job that restarts from a checkpoint
/// naming `digests`: an operator whose checkpoint names a version a swap
/// brought in (kept in the store) runs that version again, unless the job
/// file names a version the job never ran (an upgrade at restart); a
/// scheduled rollback from the version the checkpoint names runs the one
/// before it instead.
pub fn versions_for_restart(
    loader: &dyn PluginLoader,
    store: &StateStore,
    job: &str,
    operators: &[OperatorSpec],
    factories: &mut [Arc<dyn OperatorFactory>],
    digests: &[String],
) -> Result<()> {
    let history = read_history(store, job)?;
    for (i, spec) in operators.iter().enumerate() {
        let (Some(named), Some(configured)) = (digests.get(i), factories[i].digest()) else {
            continue;
        };
        // Versions this job ran: the ones swaps started from, and the ones
        // they brought in, unless rolled back (a checkpoint never holds
        // those; a job file naming one asks for it on purpose).
        let ran = |d: &str| {
            history.iter().any(|r| {
                r.operator == spec.name
                    && (r.from_digest == d
                        || (r.to_digest == d && r.outcome != Outcome::RolledBack))
            })
        };
        // A job file naming a version the job never ran asks for it (an
        // upgrade at restart); otherwise a scheduled rollback decides, then
        // the checkpoint.
        let upgrade = named != configured && !ran(configured);
        let scheduled = scheduled_target(&history, &spec.name, named).filter(|_| !upgrade);
        let target = match &scheduled {
            Some(t) => t,
            None if named == configured || upgrade || !ran(named) => continue,
            None => named,
        };
        if target == configured {
            continue;
        }
        let Some(bytes) = store.get(&component_key(job, target))? else {
            return Err(Error::Savepoint {
                location: format!("{}/{}", store.url(), component_key(job, named)),
                detail: format!(
                    "the run starts operator `{}` on plugin {} (swapped in, or rolled back \
                     to), but the store no longer holds that component",
                    spec.name,
                    short(target),
                ),
            });
        };
        if scheduled.is_some() {
            tracing::info!(
                operator = %spec.name, from = %short(named), to = %short(target),
                "rolling back: starting on the version before the last promoted swap (a \
                 scheduled rollback), from the newest checkpoint's state"
            );
        } else {
            tracing::info!(
                operator = %spec.name, digest = %short(named),
                "resuming on the plugin version the checkpoint names (swapped in earlier)"
            );
        }
        factories[i] = loader.factory(&spec.name, &bytes, &spec.config)?;
    }
    Ok(())
}
