//! The first step of a run: everything that can be refused is checked and
//! opened before output or state is touched (the lease, the restore point,
//! the plugin versions it names, the source, the sink, every operator
//! instantiated and restored); then the output is brought to the restored
//! point and each partition's sink opened.

use std::sync::Arc;

use super::plugins::{self, RestartFrom};
use super::{RunOptions, restore_point};
use crate::checkpoint::claim::{Claim, Fence, first_id};
use crate::checkpoint::lease::Lease;
use crate::checkpoint::rescale;
use crate::checkpoint::restore::Restored;
use crate::checkpoint::store::StateStore;
use crate::config::{KeySpec, Plan, SourceSpec};
use crate::plugin::{OperatorFactory, WeirEngine};
use crate::runtime::control::{Bound, ControlServer};
use crate::runtime::figures::ChainFigures;
use crate::runtime::{Chain, Committed, Metrics, Partition, Shared};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::{self, SinkFactory};
use crate::source::{self, Source};
use crate::{Error, Result};

/// What [`prepare`] checked and opened; nothing of the output or state has
/// been touched yet.
pub(super) struct Prepared {
    /// The plan with the partitions the source imposes.
    pub plan: Plan,
    /// The job's state store (checkpoints on).
    pub store: Option<StateStore>,
    /// The restore point, verified (a run from a savepoint).
    pub restored: Option<Restored>,
    /// The source, opened at the restored position.
    pub source: Box<dyn Source>,
    /// The sink, opened and validated; partitions' sinks come from it.
    pub sinks: Box<dyn SinkFactory>,
    /// What every worker shares: dead letters, metrics.
    pub shared: Shared,
    /// Every partition's operators, instantiated and restored.
    pub chains: Vec<Chain>,
    /// The id the first barrier gets (checkpoints on).
    pub next_id: Option<u64>,
    /// This run's lease on the job (checkpoints on): one run per job.
    pub _lease: Option<Lease>,
    /// A group job's partition: this owner's generation.
    pub _claim: Option<Claim>,
    /// Checked before each manifest (group jobs): refuses once another
    /// owner holds the partition.
    pub fence: Option<Fence>,
    /// The control endpoint's listener, bound before anything is touched.
    pub control: Option<Bound>,
    /// The engine, for plugin swaps (`None`: native operators, no swaps).
    pub engine: Option<WeirEngine>,
    /// The operators' factories as the job starts (the versions the
    /// restore point names).
    pub factories: Vec<Arc<dyn OperatorFactory>>,
}

/// Everything that can be refused is checked before output or state is
/// touched: the savepoint, the source, the sink, every operator. The
/// restore point is selected once, after the lease is taken, and both the
/// plugin versions and the restored state come from it.
pub(super) fn prepare(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    engine: Option<WeirEngine>,
    options: &RunOptions,
) -> Result<Prepared> {
    check_folders(plan)?;
    if let Some(selector) = &options.from_savepoint {
        restore_point::check_url(selector)?;
    }
    // A folder store this run creates is removed again if the run is
    // refused (empty folders only: nothing of anyone's is lost).
    let new_store = plan
        .checkpoint
        .as_ref()
        .and_then(|c| folder_store(&c.store.url))
        .filter(|p| !p.exists());
    let prepared = prepare_inner(plan, factories, engine, options);
    if prepared.is_err()
        && let Some(root) = new_store
    {
        remove_empty_folders(&root);
    }
    prepared
}

/// The folder of a folder (`file://`) state store URL.
fn folder_store(url: &str) -> Option<std::path::PathBuf> {
    if url.contains("://") && !url.starts_with("file://") {
        return None;
    }
    let path = url.trim().strip_prefix("file://").unwrap_or(url.trim());
    Some(std::path::Path::new(".").join(if path.is_empty() { "weir-state" } else { path }))
}

/// Remove `dir` and the folders under it if they hold no files.
fn remove_empty_folders(dir: &std::path::Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_folders(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// [`prepare`], once the checks that need no store passed.
fn prepare_inner(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    engine: Option<WeirEngine>,
    options: &RunOptions,
) -> Result<Prepared> {
    let store = restore_point::open_store(plan)?;
    let had_trace = match &store {
        Some(s) => !s.list(&format!("jobs/{}/", plan.name))?.is_empty(),
        None => false,
    };
    let spill = store.clone().map(|s| Arc::new(s) as Arc<dyn sink::Spill>);
    let sinks = sink::open(&plan.sink, &plan.name, spill)?;
    // A group job's partition: the consumer group decides the owner; the
    // new owner takes the next generation and fences the output of the
    // earlier one before it reads any state. Any other run: one per job.
    let (lease, claim) = match (&store, group_partition(plan)) {
        (Some(s), Some(_)) => {
            let claim = Claim::take(s, &plan.name, options.stop.clone())?;
            // Fenced first, before any state is read.
            sinks.fence(1)?;
            (None, Some(claim))
        }
        (Some(s), None) => {
            crate::checkpoint::claim::refuse_mixed(s, &plan.name, false)?;
            (
                Some(Lease::acquire_or_stop(s, &plan.name, options.stop.clone())?),
                None,
            )
        }
        (None, Some(_)) => {
            return Err(Error::Config(
                "assignment = \"group\" needs [checkpoints]: a partition's state moves to its \
                 next owner through the state store"
                    .into(),
            ));
        }
        (None, None) => (None, None),
    };
    let fork_of = options.fork_of.as_deref();
    let start = restore_point::Start {
        selector: options.from_savepoint.as_deref(),
        resume: options.resume,
        had_trace,
        fork_of,
    };
    let (restored, selector) = restore_point::find(plan, store.as_ref(), &start)?.unzip();
    let from = match (&store, &restored, &selector) {
        (Some(store), Some(restored), Some(selector)) => Some(RestartFrom {
            store,
            restored,
            selector,
            job: fork_of.unwrap_or(&plan.name),
        }),
        _ => None,
    };
    let factories = plugins::restart_versions(engine.as_ref(), plan, from, factories)?;
    let next_id = store
        .as_ref()
        .map(|s| restore_point::next_checkpoint_id(s, plan, restored.as_ref()))
        .transpose()?
        .map(|id| {
            claim
                .as_ref()
                .map_or(id, |c| id.max(first_id(c.generation)))
        });
    let source = source::open(
        &plan.source,
        options.stop.clone(),
        restored.as_ref().map(restore_point::source_position),
    )?;
    let plan = with_source_partitions(plan, source.partitions())?;
    sinks.validate()?;
    let restored = rescaled(&plan, restored, sinks.as_ref())?;
    let shared = Shared {
        dead_letters: Arc::new(DeadLetters::open(
            plan.dead_letter.as_ref(),
            &plan.name,
            source.origins(),
        )?),
        metrics: Arc::new(Metrics::default()),
        workers_gone: Arc::default(),
        committed: Arc::new(Committed::new(plan.partitions)),
    };
    shared.metrics.set_chain(ChainFigures::new(
        factories
            .iter()
            .map(|f| (f.name().to_string(), f.digest().map(str::to_string)))
            .collect(),
        plan.partitions,
        plan.parallelism.min(plan.partitions),
    ));
    match &plan.source {
        SourceSpec::Kafka(k) => shared.metrics.set_topic(&k.topic),
        SourceSpec::Hybrid(h) => shared.metrics.set_topic(&h.kafka.topic),
        SourceSpec::Files(_) => {}
    }
    shared.metrics.set_source_progress(source.progress());
    let control = plan
        .control
        .map(|a| ControlServer::bind(a, &plan.name, group_partition(&plan).is_some()))
        .transpose()?;
    check_instances(&plan)?;
    let chains = build_chains(&plan, &factories, restored.as_ref())?;
    Ok(Prepared {
        plan,
        store,
        restored,
        source,
        sinks,
        shared,
        chains,
        next_id,
        _lease: lease,
        fence: claim.as_ref().map(Claim::fence),
        _claim: claim,
        control,
        engine,
        factories,
    })
}

/// Every operator accepted its state: only now bring the output to the
/// restored point (or clear it for a fresh run), then open each
/// partition's sink.
pub(super) fn settle_output(job: &mut Prepared) -> Result<Vec<Partition>> {
    let sink_states: Option<Vec<_>> = job
        .restored
        .as_ref()
        .map(|r| r.partitions.iter().map(|p| p.sink.clone()).collect());
    job.sinks
        .recover(sink_states.as_deref(), &job.shared.dead_letters)?;
    let chains = std::mem::take(&mut job.chains);
    chains
        .into_iter()
        .enumerate()
        .map(|(p, chain)| {
            let restored = sink_states.as_ref().and_then(|s| s[p].as_ref());
            Ok(chain.with_sink(job.sinks.create(p, restored, &job.shared.dead_letters)?))
        })
        .collect()
}

/// The Kafka partition a group job's run owns, if this is one.
fn group_partition(plan: &Plan) -> Option<usize> {
    match &plan.source {
        crate::config::SourceSpec::Kafka(k) if k.group.is_some() => k.only,
        _ => None,
    }
}

/// The plan with the partitions the source imposes (Kafka: the topic's);
/// `partitions = 0` in a plan means "the source's".
fn with_source_partitions(plan: &Plan, source: Option<usize>) -> Result<Plan> {
    let mut plan = plan.clone();
    match source {
        Some(n) if plan.partitions == 0 || plan.partitions == n => plan.partitions = n,
        Some(n) => {
            return Err(Error::Config(format!(
                "the job sets partitions = {}, but its source has {n} partitions; remove the setting",
                plan.partitions
            )));
        }
        None if plan.partitions == 0 => {
            return Err(Error::Config("partitions must be at least 1".into()));
        }
        None => {}
    }
    Ok(plan)
}

/// The restore point on the plan's partitions: a file job's restore
/// point with another number of partitions is split by key (refused where
/// it cannot be, naming why), before anything is touched.
fn rescaled(
    plan: &Plan,
    restored: Option<Restored>,
    sinks: &dyn SinkFactory,
) -> Result<Option<Restored>> {
    let Some(r) = restored else {
        return Ok(None);
    };
    let from = r.partitions.len();
    if from == plan.partitions {
        return Ok(Some(r));
    }
    let keyed = match &plan.source {
        SourceSpec::Files(f) if !f.partition_from_name => Some(f.key != KeySpec::None),
        _ => None,
    };
    let r = rescale::rescale(r, plan.partitions, keyed, sinks)?;
    tracing::info!(
        "the restore was rescaled from {from} to {} partitions: each key's state and timers \
         went to the partition that routes the key now",
        plan.partitions
    );
    Ok(Some(r))
}

/// Instantiate (and restore) every partition's operators before reading
/// anything, so a broken plugin or savepoint fails the job before any input
/// is consumed or output touched.
fn build_chains(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    restored: Option<&Restored>,
) -> Result<Vec<Chain>> {
    (0..plan.partitions)
        .map(|p| Chain::new(p, factories, restored.and_then(|r| r.partitions.get(p))))
        .collect()
}

/// The sink folder and the source folder must not overlap: the job would
/// read its own output, or settling the output would reach its input
/// (the job file's resolution refuses the sink inside the source; this
/// also covers the source inside the sink, and plans built otherwise).
fn check_folders(plan: &Plan) -> Result<()> {
    if let (Some(sink), Some(source)) = (plan.sink.folder(), plan.source.folder())
        && super::fork::overlap(sink, source)
    {
        return Err(Error::Config(format!(
            "the sink folder {} overlaps the source folder {}: the job would read its own \
             output; give the sink a folder outside the input",
            sink.display(),
            source.display()
        )));
    }
    Ok(())
}

/// Operator instances a job may have: each reserves about 4 GiB of address
/// space for its linear memory (wasmtime's default on 64-bit hosts), and a
/// process has 128 TiB; past half of it the host's own allocations could
/// fail first and abort the process instead of refusing the run.
const MAX_INSTANCES: usize = 16_384;

/// Refuse a plan whose instances could not all be created, before any is.
fn check_instances(plan: &Plan) -> Result<()> {
    let n = plan.partitions.saturating_mul(plan.operators.len());
    if n > MAX_INSTANCES {
        return Err(Error::Config(format!(
            "{n} operator instances ({} partitions x {} operators) would not fit in this \
             process's address space (each reserves about 4 GiB; at most {MAX_INSTANCES}): \
             lower `partitions` (or `parallelism`, when the partitions follow it)",
            plan.partitions,
            plan.operators.len()
        )));
    }
    Ok(())
}
