//! A job's Wasm plugins: loading each operator's component, the versions a
//! restart runs (those the restore point names, where a swap brought them
//! in), and the swapper the control endpoint drives. The runtime's plugin
//! and swap constructors are called here and nowhere else in `job`.

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::Trigger;
use super::prepare::Prepared;
use super::restore_point;
use crate::Result;
use crate::checkpoint::restore::Restored;
use crate::checkpoint::store::StateStore;
use crate::config::{Plan, PluginSource};
use crate::plugin::{OperatorFactory, WasmOperatorFactory, WeirEngine};
use crate::runtime::swap::{self, Current, SwapLog, Swapper};

/// Load each operator's component (through the compiled-component cache).
pub fn load_operators(engine: &WeirEngine, plan: &Plan) -> Result<Vec<Arc<dyn OperatorFactory>>> {
    plan.operators
        .iter()
        .map(|op| {
            let loaded = match &op.plugin {
                PluginSource::Path(p) => engine.load_file(&op.name, p)?,
                PluginSource::Bytes(b) => engine.load(&op.name, b)?,
            };
            tracing::debug!(plugin = %op.name, digest = %loaded.digest, cached = loaded.from_cache, "plugin loaded");
            Ok(Arc::new(WasmOperatorFactory::new(engine.clone(), loaded, op.config.clone())) as Arc<dyn OperatorFactory>)
        })
        .collect()
}

/// Where a run restarts from, as [`restart_versions`] needs it.
pub(super) struct RestartFrom<'a> {
    /// The job's state store (checkpoints on).
    pub store: &'a StateStore,
    /// The restore point, selected once (after the lease is taken).
    pub restored: &'a Restored,
    /// The selector it was found by.
    pub selector: &'a str,
    /// The job whose restore point it is (another one for a fork).
    pub job: &'a str,
}

/// The factories a restart from `from` runs: `factories`, with the version
/// the restore point names wherever a swap brought it in (see
/// [`swap::versions_for_restart`]). Native operators (no `engine`) and a
/// savepoint folder given by URL (not in the job's store) run `factories`.
pub(super) fn restart_versions(
    engine: Option<&WeirEngine>,
    plan: &Plan,
    from: Option<RestartFrom<'_>>,
    factories: &[Arc<dyn OperatorFactory>],
) -> Result<Vec<Arc<dyn OperatorFactory>>> {
    let mut factories = factories.to_vec();
    let (Some(engine), Some(from)) = (engine, from) else {
        return Ok(factories);
    };
    if !restore_point::in_job_store(from.selector) {
        return Ok(factories);
    }
    let digests: Vec<String> = from
        .restored
        .manifest
        .partitions
        .first()
        .map(|p| {
            p.operators
                .iter()
                .map(|o| o.plugin_digest.clone())
                .collect()
        })
        .unwrap_or_default();
    swap::versions_for_restart(
        engine,
        from.store,
        from.job,
        &plan.operators,
        &mut factories,
        &digests,
    )?;
    Ok(factories)
}

/// Plugin swaps, when the job runs Wasm plugins with checkpoints.
pub(super) fn swapper(
    job: &Prepared,
    triggers: Sender<Trigger>,
    threads: usize,
) -> Result<Option<Arc<Swapper>>> {
    let (Some(engine), Some(store), Some(_)) = (&job.engine, &job.store, &job.plan.checkpoint)
    else {
        return Ok(None);
    };
    let current: Vec<Current> = job
        .factories
        .iter()
        .map(|f| Current {
            digest: f.digest().unwrap_or_default().to_string(),
            factory: f.clone(),
        })
        .collect();
    let running: Vec<(String, String)> = job
        .plan
        .operators
        .iter()
        .zip(&current)
        .map(|(o, c)| (o.name.clone(), c.digest.clone()))
        .collect();
    let log = Arc::new(SwapLog::open(&job.plan.name, store.clone(), current)?);
    log.settle_open(&running);
    Ok(Some(Arc::new(Swapper::new(
        Arc::new(engine.clone()),
        store.clone(),
        &job.plan.name,
        job.plan.operators.clone(),
        log,
        (triggers, threads, job.shared.workers_gone.clone()),
    ))))
}
