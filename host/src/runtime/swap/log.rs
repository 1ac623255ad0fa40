//! The swap log: every swap's record in memory (for `GET /status`) and in
//! the store (`jobs/<job>/swaps/`, for `weir plugin history`), and the
//! version each operator runs now.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::record::{Outcome, SwapRecord};
use crate::Result;
use crate::checkpoint::store::StateStore;
use crate::clock::now_ms;
use crate::lock_or_recover;
use crate::plugin::OperatorFactory;

/// The store folder of a job's swap records.
pub fn history_prefix(job: &str) -> String {
    format!("jobs/{job}/swaps/")
}

/// The store key of a component the job has run, by digest.
pub fn component_key(job: &str, digest: &str) -> String {
    format!("jobs/{job}/plugins/{digest}.wasm")
}

/// The version an operator runs now.
#[derive(Clone)]
pub struct Current {
    /// Component digest.
    pub digest: String,
    /// Its factory.
    pub factory: Arc<dyn OperatorFactory>,
}

/// Every swap of the job: in memory, and in the store.
pub struct SwapLog {
    job: String,
    store: StateStore,
    records: Mutex<Vec<SwapRecord>>,
    /// Each operator's running version, in chain order.
    current: Mutex<Vec<Current>>,
}

impl SwapLog {
    /// The log of `job`, with the records already in the store; operators
    /// run `current`.
    pub fn open(job: &str, store: StateStore, current: Vec<Current>) -> Result<Self> {
        let records = read_history(&store, job)?;
        Ok(Self {
            job: job.to_string(),
            store,
            records: Mutex::new(records),
            current: Mutex::new(current),
        })
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Vec<SwapRecord> {
        lock_or_recover(&self.records).clone()
    }

    /// Each operator's running version.
    pub fn current(&self) -> Vec<Current> {
        lock_or_recover(&self.current).clone()
    }

    pub(super) fn next_seq(&self) -> u64 {
        lock_or_recover(&self.records)
            .iter()
            .map(|r| r.seq)
            .max()
            .unwrap_or(0)
            + 1
    }

    pub(super) fn add(&self, record: SwapRecord) {
        let mut records = lock_or_recover(&self.records);
        self.persist(&record);
        records.push(record);
    }

    /// Change record `seq` and write it to the store (under the lock, so
    /// the store never keeps an older version of a record).
    pub(super) fn update(&self, seq: u64, f: impl FnOnce(&mut SwapRecord)) -> Option<SwapRecord> {
        let mut records = lock_or_recover(&self.records);
        let r = records.iter_mut().find(|r| r.seq == seq)?;
        f(r);
        let updated = r.clone();
        self.persist(&updated);
        Some(updated)
    }

    /// On a restart: a swap the previous run left without an outcome was
    /// promoted if the restored checkpoint runs its version (`running`:
    /// operator name and digest), else it ended with that run. A
    /// scheduled rollback (of a stopped job) is taken when this run starts
    /// on its version.
    pub fn settle_open(&self, running: &[(String, String)]) {
        let open: Vec<SwapRecord> = self
            .records()
            .into_iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    Outcome::Requested | Outcome::Probation | Outcome::Scheduled
                )
            })
            .collect();
        for r in open {
            let promoted = running
                .iter()
                .any(|(name, digest)| *name == r.operator && *digest == r.to_digest);
            if r.outcome == Outcome::Scheduled {
                self.update(r.seq, |r| {
                    if promoted {
                        r.outcome = Outcome::Promoted;
                    } else {
                        r.outcome = Outcome::RolledBack;
                        r.cause = Some(format!(
                            "{}; not taken: the run started on another version (the job file \
                             names one the job never ran)",
                            r.cause.as_deref().unwrap_or("scheduled rollback")
                        ));
                    }
                    r.ended_ms = Some(now_ms());
                });
                continue;
            }
            self.update(r.seq, |r| {
                if promoted {
                    r.outcome = Outcome::Promoted;
                    r.cause = Some("the job stopped after the checkpoint that promoted it".into());
                } else {
                    r.outcome = Outcome::RolledBack;
                    r.cause = Some("the job stopped before the swap was promoted".into());
                }
                r.ended_ms = Some(now_ms());
            });
        }
    }

    fn persist(&self, r: &SwapRecord) {
        if let Err(e) = write_record(&self.store, &self.job, r) {
            tracing::warn!(swap = r.seq, "cannot write the swap record: {e}");
        }
    }

    pub(super) fn set_current(&self, operator: usize, current: Current) {
        if let Some(c) = lock_or_recover(&self.current).get_mut(operator) {
            *c = current;
        }
    }
}

/// Write swap record `r` of `job` to `store` (over its earlier version).
pub(super) fn write_record(store: &StateStore, job: &str, r: &SwapRecord) -> Result<()> {
    let key = format!("{}{:06}.json", history_prefix(job), r.seq);
    // Never an empty record over a good one: encode first.
    let bytes = serde_json::to_vec_pretty(r)
        .map_err(|e| crate::Error::Internal(format!("encoding swap record {}: {e}", r.seq)))?;
    store.put(&key, Bytes::from(bytes))
}

/// The swap records of `job` in `store`, oldest first.
pub fn read_history(store: &StateStore, job: &str) -> Result<Vec<SwapRecord>> {
    let mut keys: Vec<String> = store
        .list(&history_prefix(job))?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".json"))
        .collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(bytes) = store.get(&k)? else {
            continue;
        };
        match serde_json::from_slice::<SwapRecord>(&bytes) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(key = %k, "skipping an unreadable swap record: {e}"),
        }
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}
