//! Ownership of one partition of a group job (`assignment = "group"`):
//! an owner generation instead of the job's lease.
//!
//! The consumer group decides who owns a partition; the store only has to
//! make sure that an owner who lost it (a process paused past its session
//! timeout, then resumed) can no longer advance the partition's state. A
//! new owner takes the next generation: it creates
//! `jobs/<run>/generations/<g>` atomically (`PutMode::Create`), the first
//! number above every existing one, so each generation has exactly one
//! owner and a later owner always has a larger one. Generations are never
//! released (a clean stop leaves its number), so they only grow.
//!
//! The generation fences the state twice:
//! - checkpoint ids are `generation × 10⁹ + sequence`
//!   ([`first_id`]): two owners never write the same checkpoint folder,
//!   and a new owner's checkpoints sort after every checkpoint of an older
//!   owner, also ones a paused owner writes late;
//! - before each manifest (the commit point) an owner checks that no newer
//!   generation exists ([`Claim::fence`]); a thread checks the same every
//!   [`CHECK_EVERY`] and stops a run that lost its partition.
//!
//! The output is fenced by the Kafka sink's transactional id per job and
//! partition, which the new owner initialises before it reads any state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use super::store::StateStore;
use crate::{Error, Result};

/// Checkpoint ids of generation `g` start at `g × ID_SPAN + 1`.
pub const ID_SPAN: u64 = 1_000_000_000;
/// How often a holder checks that its partition was not taken.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The first checkpoint id of generation `g`.
pub fn first_id(generation: u64) -> u64 {
    generation.saturating_mul(ID_SPAN) + 1
}

/// A fence check: `Err` once a newer owner holds the partition.
pub type Fence = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// A held generation of one partition's run.
pub struct Claim {
    /// This owner's generation.
    pub generation: u64,
    store: StateStore,
    prefix: String,
    done: Arc<AtomicBool>,
    checker: Option<JoinHandle<()>>,
}

fn newest(store: &StateStore, prefix: &str) -> Result<u64> {
    Ok(store
        .list(prefix)?
        .iter()
        .filter_map(|(k, _)| k.strip_prefix(prefix)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0))
}

impl Claim {
    /// Take the next generation of `run` (the partition's run name); set
    /// `stop` when a newer owner takes it later.
    pub fn take(store: &StateStore, run: &str, stop: Arc<AtomicBool>) -> Result<Self> {
        let prefix = format!("jobs/{run}/generations/");
        let mut g = newest(store, &prefix)? + 1;
        let body = Bytes::from(format!(
            "{{\"host\":\"{}\",\"pid\":{}}}",
            super::lease::host_name(),
            std::process::id()
        ));
        let mut tries = 0;
        while !store.put_new(&format!("{prefix}{g:012}"), body.clone())? {
            tries += 1;
            if tries > 100 {
                return Err(Error::Internal(format!(
                    "{run}: could not take an owner generation after {tries} tries"
                )));
            }
            g = newest(store, &prefix)?.max(g) + 1;
        }
        // Older generations past the last few are of no further use.
        if let Ok(list) = store.list(&prefix) {
            for (k, _) in list {
                if let Some(old) = k.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok())
                    && old + 8 < g
                {
                    let _ = store.delete(&k);
                }
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let checker = std::thread::Builder::new()
            .name("weir-claim".into())
            .spawn({
                let (store, prefix, done, run) =
                    (store.clone(), prefix.clone(), done.clone(), run.to_string());
                move || check(&store, &prefix, g, &done, &stop, &run)
            })
            .ok();
        Ok(Self {
            generation: g,
            store: store.clone(),
            prefix,
            done,
            checker,
        })
    }

    /// The check run before each manifest: refuses once a newer generation
    /// exists.
    pub fn fence(&self) -> Fence {
        let (store, prefix, g) = (self.store.clone(), self.prefix.clone(), self.generation);
        Arc::new(move || {
            let n = newest(&store, &prefix)?;
            if n > g {
                return Err(Error::Fenced(format!(
                    "owner generation {g} of `{prefix}` was superseded by generation {n}: \
                     another process owns this partition now"
                )));
            }
            Ok(())
        })
    }
}

fn check(
    store: &StateStore,
    prefix: &str,
    g: u64,
    done: &AtomicBool,
    stop: &AtomicBool,
    run: &str,
) {
    let mut last = std::time::Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() < CHECK_EVERY {
            continue;
        }
        last = std::time::Instant::now();
        if let Ok(n) = newest(store, prefix)
            && n > g
        {
            tracing::warn!(
                "{run}: another process took this partition (owner generation {n} > {g}): \
                 stopping its run here"
            );
            stop.store(true, Ordering::Relaxed);
            return;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.checker.take() {
            let _ = t.join();
        }
    }
}

/// Refuse to mix group runs and plain runs of job `job` on one store: the
/// state of one is not the other's (`<job>.p<partition>` versus `<job>`),
/// so the other would start over from the source's start and write its
/// output again. `group`: the run about to start is a group job's.
pub fn refuse_mixed(store: &StateStore, job: &str, group: bool) -> Result<()> {
    let (found, other) = if group {
        let plain = super::manifest::list(store, job)?;
        (!plain.is_empty(), format!("jobs/{job}/"))
    } else {
        let p0 = store.list(&format!("jobs/{job}.p0/generations/"))?;
        (!p0.is_empty(), format!("jobs/{job}.p<partition>/"))
    };
    if !found {
        return Ok(());
    }
    let (this, that) = if group {
        (
            "a group job (assignment = \"group\")",
            "a run without group mode",
        )
    } else {
        (
            "a run without group mode",
            "a group job (assignment = \"group\")",
        )
    };
    Err(Error::Config(format!(
        "job `{job}` is started as {this}, but its state store holds checkpoints of {that} \
         ({}{other}); it would not continue them and would write its output again. Give the \
         job another name, or delete those checkpoints if that is what you want",
        store.url().trim_end_matches('/').to_string() + "/"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_owner_gets_a_larger_generation_and_fences_the_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(
            &crate::checkpoint::store::StoreSpec {
                url: dir.path().display().to_string(),
                ..Default::default()
            },
            dir.path(),
        )
        .unwrap();
        let (s1, s2) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let a = Claim::take(&store, "j.p0", s1.clone()).unwrap();
        assert!(a.fence()().is_ok());
        let b = Claim::take(&store, "j.p0", s2).unwrap();
        assert!(b.generation > a.generation);
        assert!(first_id(b.generation) > first_id(a.generation) + ID_SPAN - 2);
        let refused = a.fence()().unwrap_err().to_string();
        assert!(refused.contains("another process owns"), "{refused}");
        assert!(b.fence()().is_ok());
        drop(b);
        let c = Claim::take(&store, "j.p0", Arc::default()).unwrap();
        assert_eq!(c.generation, 3, "a released generation is never reused");
        std::thread::sleep(CHECK_EVERY + Duration::from_millis(300));
        assert!(
            s1.load(Ordering::Relaxed),
            "the superseded owner is told to stop"
        );
        // A plain run of `j` now would not continue `j.p0`'s state.
        let refused = refuse_mixed(&store, "j", false).unwrap_err().to_string();
        assert!(
            refused.contains("holds checkpoints of a group job"),
            "{refused}"
        );
        assert!(
            refuse_mixed(&store, "j", true).is_ok(),
            "no plain run's checkpoints"
        );
        assert!(refuse_mixed(&store, "other", false).is_ok());
    }
}
