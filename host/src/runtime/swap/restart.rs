//! Versions for a restart: a job restored from a checkpoint that names a
//! version a swap brought in runs that version again (the component is
//! kept in the store by digest).

use std::sync::Arc;

use super::log::{component_key, read_history};
use super::record::Outcome;
use crate::checkpoint::store::StateStore;
use crate::digest::short;
use crate::plugin::{OperatorFactory, OperatorSpec, PluginLoader};
use crate::{Error, Result};

/// The factories `operators` of a job that restarts from a checkpoint
/// naming `digests`: an operator whose checkpoint names a version a swap
/// brought in (kept in the store) runs that version again, unless the job
/// file names a version the job never ran (an upgrade at restart).
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
        if named == configured {
            continue;
        }
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
        if !ran(configured) || !ran(named) {
            continue;
        }
        let Some(bytes) = store.get(&component_key(job, named))? else {
            return Err(Error::Savepoint {
                location: format!("{}/{}", store.url(), component_key(job, named)),
                detail: format!(
                    "the checkpoint names plugin {} for operator `{}` (swapped in), but the \
                     store no longer holds that component",
                    short(named),
                    spec.name
                ),
            });
        };

        tracing::info!(
            operator = %spec.name, digest = %short(named),
            "resuming on the plugin version the checkpoint names (swapped in earlier)"
        );
        factories[i] = loader.factory(&spec.name, &bytes, &spec.config)?;
    }
    Ok(())
}
