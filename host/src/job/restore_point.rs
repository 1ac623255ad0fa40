//! The restore point of a run: the job's state store, the one selection of
//! the checkpoint or savepoint to start from (made once, after the lease is
//! taken; the plugin versions and the restored state both come from it),
//! its checks against the plan, and the ids new checkpoints continue from.

use crate::checkpoint::manifest;
use crate::checkpoint::restore::{self, Restored};
use crate::checkpoint::store::StateStore;
use crate::config::Plan;
use crate::source;
use crate::{Error, Result};

/// The job's state store, when checkpoints are on (`None`: they are off).
pub fn open_store(plan: &Plan) -> Result<Option<StateStore>> {
    plan.checkpoint
        .as_ref()
        .map(|c| StateStore::open(&c.store, std::path::Path::new(".")))
        .transpose()
}

/// How a run chose where to start.
pub(super) struct Start<'a> {
    /// `--from-savepoint`: a name, `latest`, `before:TIME` or a URL.
    pub selector: Option<&'a str>,
    /// With no selector: resume from the newest complete checkpoint or
    /// savepoint when the store has one (`weir run`); `false` starts over.
    pub resume: bool,
    /// The store held something of the job before this run took its lease
    /// (a lease, a checkpoint folder): a run of it was here before.
    pub had_trace: bool,
    /// A fork: the job whose savepoint `selector` names.
    pub fork_of: Option<&'a str>,
}

/// Find and verify the checkpoint or savepoint to start from, if any, and
/// the selector it was found by. A job whose store holds a trace of an
/// earlier run but no complete checkpoint (it stopped before its first:
/// nothing was committed) starts from its configured start, `latest` asked
/// or not; a store without any trace of the job refuses `latest`.
pub(super) fn find(
    plan: &Plan,
    store: Option<&StateStore>,
    start: &Start<'_>,
) -> Result<Option<(Restored, String)>> {
    let Some(store) = store else {
        return match start.selector {
            Some(_) => Err(Error::Config(
                "--from-savepoint needs checkpoints enabled (a [state] store)".into(),
            )),
            None => Ok(None),
        };
    };
    if let Some(job) = start.fork_of {
        let Some(sel) = start.selector else {
            return Ok(None);
        };
        let mut r = load_checked(store, plan, job, sel)?;
        // A fork writes its own output: none of the job's sink state.
        for p in &mut r.partitions {
            p.sink = None;
        }
        return Ok(Some((r, sel.to_string())));
    }
    let wants_latest = match start.selector {
        Some("latest") => true,
        Some(sel) => return Ok(Some((load_for_plan(store, plan, sel)?, sel.to_string()))),
        None => start.resume,
    };
    let (complete, corrupt) = manifest::list_all(store, &plan.name)?;
    let newest = complete.last().map(|f| f.folder.clone());
    match (wants_latest, newest) {
        (true, Some(folder)) => {
            let r = load_for_plan(store, plan, "latest")?;
            tracing::info!(
                "resuming job `{}` from {folder} (its newest complete checkpoint or savepoint; \
                 `--fresh` starts over)",
                plan.name
            );
            Ok(Some((r, "latest".into())))
        }
        (true, None) if !corrupt.is_empty() => Err(Error::Savepoint {
            location: format!("{}/jobs/{}", store.url(), plan.name),
            detail: format!(
                "no complete checkpoint to resume from: the manifest of {} is corrupt; delete it \
                 with `weir savepoint delete`, or start over with `--fresh`",
                corrupt[0].folder
            ),
        }),
        (true, None) if start.had_trace => {
            tracing::warn!(
                "job `{}` has no complete checkpoint in {} (its previous run stopped before the \
                 first one, so nothing was committed): starting from the source's configured start",
                plan.name,
                store.url()
            );
            Ok(None)
        }
        // No trace of the job: `latest` asked for is refused (a wrong store
        // URL, most likely); a plain run starts the job for the first time.
        (true, None) if start.selector.is_some() => {
            load_for_plan(store, plan, "latest").map(|r| Some((r, "latest".into())))
        }
        (true, None) => Ok(None),
        (false, Some(folder)) => {
            tracing::warn!(
                "job `{}` starts over from the source's configured start (--fresh): its newest \
                 checkpoint {folder} is not restored, and the sink's earlier output is replaced",
                plan.name
            );
            Ok(None)
        }
        (false, None) => Ok(None),
    }
}

/// Whether a selector is looked up in the job's own store (a name,
/// `latest`, `before:TIME`), not the URL of a savepoint folder elsewhere
/// (see [`restore::load`]).
pub(super) fn in_job_store(selector: &str) -> bool {
    !selector.contains("://")
}

/// Load `selector` for `plan` and check it fits: the same operator chain.
/// The parallelism may differ (partitions move between threads), and so
/// may the number of partitions: the run then rescales it when it is
/// prepared (a file job's, split by key) or refuses it, once the source
/// and sink are known.
pub fn load_for_plan(store: &StateStore, plan: &Plan, selector: &str) -> Result<Restored> {
    load_checked(store, plan, &plan.name, selector)
}

/// [`load_for_plan`] for a savepoint of job `job` (a fork's is another
/// job's).
fn load_checked(store: &StateStore, plan: &Plan, job: &str, selector: &str) -> Result<Restored> {
    check_url(selector)?;
    let r =
        restore::load(store, job, selector).map_err(|e| another_jobs(store, job, selector, e))?;
    let theirs = r.manifest.partitions.len();
    if theirs == 0 {
        return Err(r.error(
            "its manifest lists no partitions (a checkpoint always holds at least one): it is \
             damaged; restore another savepoint, or start over with `--fresh`",
        ));
    }
    let theirs: Vec<&str> = r
        .manifest
        .partitions
        .first()
        .map(|p| p.operators.iter().map(|o| o.name.as_str()).collect())
        .unwrap_or_default();
    let ours: Vec<&str> = plan.operators.iter().map(|o| o.name.as_str()).collect();
    if theirs != ours {
        return Err(r.error(format!(
            "it holds operators {theirs:?}; this job has {ours:?}"
        )));
    }
    Ok(r)
}

/// A `file://` savepoint URL must name a folder holding `manifest.json`;
/// checked on the disk before any store is opened, so a wrong URL creates
/// nothing (opening a folder store creates its folder).
pub(super) fn check_url(selector: &str) -> Result<()> {
    let Some(path) = selector.strip_prefix("file://") else {
        return Ok(());
    };
    let path = std::path::Path::new(path.trim_end_matches("/manifest.json"));
    if path.join("manifest.json").is_file() {
        return Ok(());
    }
    let what = if path.is_dir() {
        "no manifest.json there (an incomplete checkpoint, or not a savepoint)"
    } else {
        "no such folder"
    };
    Err(Error::Savepoint {
        location: selector.to_string(),
        detail: format!("{what}; nothing was created or changed"),
    })
}

/// A savepoint name of `job` that is not found: say so with the job it
/// belongs to when another job in the store has a savepoint of that name.
fn another_jobs(store: &StateStore, job: &str, selector: &str, e: Error) -> Error {
    let plain = !selector.contains("://") && selector != "latest" && !selector.contains(':');
    if !plain || !matches!(e, Error::Savepoint { .. }) {
        return e;
    }
    let suffix = format!("/savepoints/{selector}/manifest.json");
    let owner = store.list("jobs/").ok().and_then(|keys| {
        keys.into_iter().find_map(|(k, _)| {
            let other = k.strip_prefix("jobs/")?.strip_suffix(&suffix)?;
            (other != job && !other.contains('/')).then(|| other.to_string())
        })
    });
    match owner {
        Some(other) => Error::Savepoint {
            location: format!("{}/jobs/{other}/savepoints/{selector}", store.url()),
            detail: format!(
                "savepoint `{selector}` belongs to job `{other}`, not `{job}`: a job restores \
                 only its own savepoints (a what-if run from another job's is `weir fork`)"
            ),
        },
        None => e,
    }
}

/// What the source recorded in a restored checkpoint.
pub(super) fn source_position(r: &Restored) -> source::Restored {
    source::Restored {
        connector: r.manifest.source.connector.clone(),
        reader: r.manifest.source.position.clone(),
        partitions: r.partitions.iter().map(|p| p.source.clone()).collect(),
    }
}

/// Ids continue after every complete checkpoint or savepoint of the job
/// (not only the restored one), so a new checkpoint never reuses the folder
/// of an existing one.
pub(super) fn next_checkpoint_id(
    store: &StateStore,
    plan: &Plan,
    restored: Option<&Restored>,
) -> Result<u64> {
    // Every id in use: complete manifests, and checkpoint folders whose
    // manifest is missing or corrupt (never written into again).
    let newest = manifest::list(store, &plan.name)?
        .iter()
        .map(|f| f.manifest.id)
        .chain(manifest::checkpoint_folder_ids(store, &plan.name)?)
        .max()
        .unwrap_or(0);
    Ok(newest.max(restored.map_or(0, |r| r.manifest.id)) + 1)
}
