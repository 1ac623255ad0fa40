//! Pre-flight and the swap request: the control endpoint's side of a
//! swap. [`Swapper`] compiles the new component, checks its WIT version and
//! imports, instantiates it once and asks whether it reads the running
//! state version, all before anything pauses; only then does it ask the
//! router for a swap barrier and wait for the workers to swap.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Sender;

use super::log::{Current, SwapLog, component_key};
use super::probation::{Probation, SwapOrder};
use super::record::{Outcome, SwapRecord};
use crate::checkpoint::store::StateStore;
use crate::digest::{sha256_hex, short};
use crate::lock_or_recover;
use crate::plugin::{OperatorFactory, OperatorSpec, PluginLoader};
use crate::runtime::Trigger;

/// How long a swap request waits for the swap barrier.
const SWAP_WAIT: Duration = Duration::from_secs(120);

/// Why a swap was refused (before anything paused).
#[derive(Debug)]
pub struct Refused {
    /// HTTP status for the control endpoint.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

/// The control endpoint's side of swaps.
pub struct Swapper {
    loader: Arc<dyn PluginLoader>,
    store: StateStore,
    job: String,
    operators: Vec<OperatorSpec>,
    log: Arc<SwapLog>,
    triggers: Sender<Trigger>,
    workers: usize,
    /// Worker threads that ended.
    gone: Arc<AtomicUsize>,
    /// The swap under way, if any: one at a time.
    active: Mutex<Option<Arc<Probation>>>,
}

/// Most batches a probation may ask for (held output and kept input grow
/// with it).
pub const MAX_PROBATION_BATCHES: u64 = 100_000;

/// Largest component a swap reads.
const MAX_COMPONENT_BYTES: u64 = 1 << 30;

impl Swapper {
    /// Swaps for `job` (operators `operators`, run by `workers` threads).
    pub fn new(
        loader: Arc<dyn PluginLoader>,
        store: StateStore,
        job: &str,
        operators: Vec<OperatorSpec>,
        log: Arc<SwapLog>,
        (triggers, workers, gone): (Sender<Trigger>, usize, Arc<AtomicUsize>),
    ) -> Self {
        Self {
            loader,
            store,
            job: job.to_string(),
            operators,
            log,
            triggers,
            workers,
            gone,
            active: Mutex::new(None),
        }
    }

    /// The log, for status.
    pub fn log(&self) -> &SwapLog {
        &self.log
    }

    /// Swap `operator` to the component at `path`; answers once every
    /// partition runs it on probation (or rolled back at the barrier).
    pub fn swap(
        &self,
        operator: &str,
        path: &std::path::Path,
        probation_batches: u64,
    ) -> std::result::Result<SwapRecord, Refused> {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_COMPONENT_BYTES {
            return Err(refused(
                400,
                format!("{} is {size} bytes: not a plugin component", path.display()),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            refused(
                400,
                format!("cannot read the plugin {}: {e}", path.display()),
            )
        })?;
        self.swap_bytes(operator, bytes, probation_batches, "swap")
    }

    /// Swap `operator` back to the version it ran before its last promoted
    /// swap (the component is kept in the store).
    pub fn rollback(
        &self,
        operator: &str,
        probation_batches: u64,
    ) -> std::result::Result<SwapRecord, Refused> {
        let i = self.operator_index(operator)?;
        let current = self.log.current()[i].digest.clone();
        let last = self
            .log
            .records()
            .into_iter()
            .rev()
            .find(|r| {
                r.operator == operator && r.outcome == Outcome::Promoted && r.to_digest == current
            })
            .ok_or_else(|| {
                refused(
                    409,
                    format!(
                        "operator `{operator}` runs {}, which no promoted swap brought in: \
                         nothing to roll back to",
                        short(&current)
                    ),
                )
            })?;
        let bytes = self
            .store
            .get(&component_key(&self.job, &last.from_digest))
            .map_err(|e| refused(500, e.to_string()))?
            .ok_or_else(|| {
                refused(
                    409,
                    format!(
                        "the previous version {} is not in the store",
                        short(&last.from_digest)
                    ),
                )
            })?;
        self.swap_bytes(operator, bytes.to_vec(), probation_batches, "rollback")
    }

    fn operator_index(&self, operator: &str) -> std::result::Result<usize, Refused> {
        self.operators
            .iter()
            .position(|o| o.name == operator)
            .ok_or_else(|| {
                let names: Vec<&str> = self.operators.iter().map(|o| o.name.as_str()).collect();
                refused(
                    404,
                    format!("this job has no operator `{operator}` (it has {names:?})"),
                )
            })
    }

    fn swap_bytes(
        &self,
        operator: &str,
        bytes: Vec<u8>,
        probation_batches: u64,
        kind: &str,
    ) -> std::result::Result<SwapRecord, Refused> {
        let i = self.operator_index(operator)?;
        if probation_batches > MAX_PROBATION_BATCHES {
            return Err(refused(
                400,
                format!("probation_batches is at most {MAX_PROBATION_BATCHES}"),
            ));
        }
        let mut active = lock_or_recover(&self.active);
        if let Some(a) = active.as_ref().filter(|a| !a.is_over()) {
            return Err(refused(
                409,
                format!(
                    "swap {} of operator `{}` is still on probation; wait for its outcome",
                    a.order.seq, self.operators[a.order.operator].name
                ),
            ));
        }
        let current = self.log.current()[i].clone();
        let factory = self.preflight(i, &bytes, &current)?;
        let digest = sha256_hex(&bytes);
        self.keep_components(i, &current.digest, &digest, bytes)?;
        let seq = self.log.next_seq();
        self.log.add(SwapRecord::requested(
            seq,
            operator,
            (&current.digest, &digest),
            kind,
        ));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let probation = Arc::new(Probation::new(
            SwapOrder {
                seq,
                operator: i,
                factory,
                digest,
                probation_batches,
            },
            self.log.clone(),
            (self.workers, self.gone.clone()),
            tx,
        ));
        *active = Some(probation.clone());
        drop(active);
        let gone = || {
            refused(
                503,
                "the job ended before the swap barrier; nothing was swapped",
            )
        };
        self.triggers
            .send(Trigger::Swap {
                probation: probation.clone(),
            })
            .map_err(|_| gone())?;
        match rx.recv_timeout(SWAP_WAIT) {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(e)) => Err(refused(500, e)),
            Err(_) => {
                // The barrier never came (the job is ending): the swap did
                // not happen.
                probation.fail("the job ended before the swap barrier");
                Err(gone())
            }
        }
    }

    /// Pre-flight: compile (cache), check the WIT version and imports,
    /// instantiate once and ask whether it reads the running state
    /// version. Nothing has paused yet.
    fn preflight(
        &self,
        i: usize,
        bytes: &[u8],
        current: &Current,
    ) -> std::result::Result<Arc<dyn OperatorFactory>, Refused> {
        let spec = &self.operators[i];
        let name = &spec.name;
        let digest = sha256_hex(bytes);
        if digest == current.digest {
            return Err(refused(
                409,
                format!(
                    "operator `{name}` already runs this component ({})",
                    short(&digest)
                ),
            ));
        }
        let factory = self
            .loader
            .factory(name, bytes, &spec.config)
            .map_err(|e| refused(400, e.to_string()))?;
        let running = current
            .factory
            .create(0)
            .and_then(|mut op| op.state_version())
            .map_err(|e| refused(500, format!("asking the running version: {e}")))?;
        let mut probe = factory
            .create(0)
            .map_err(|e| refused(400, format!("the new component: {e}")))?;
        let accepted = probe
            .accepted_versions()
            .map_err(|e| refused(400, format!("the new component: {e}")))?;
        if !accepted.contains(&running) {
            let writes = probe.state_version().unwrap_or_default();
            return Err(refused(
                409,
                format!(
                    "the new component ({}) cannot read the running state: operator `{name}` \
                     writes state version {running}; the new one writes {writes} and reads \
                     {accepted:?}. Nothing was changed.",
                    short(&digest)
                ),
            ));
        }
        Ok(factory)
    }

    /// Keep the running and the new component in the store by digest, so
    /// that restarts and rollbacks find them.
    fn keep_components(
        &self,
        i: usize,
        running: &str,
        new: &str,
        bytes: Vec<u8>,
    ) -> std::result::Result<(), Refused> {
        let put = |digest: &str, bytes: Vec<u8>| {
            self.store
                .put_new(&component_key(&self.job, digest), Bytes::from(bytes))
                .map(|_| ())
                .map_err(|e| refused(500, format!("storing the component: {e}")))
        };
        put(new, bytes)?;
        let key = component_key(&self.job, running);
        if self.store.get(&key).ok().flatten().is_none() {
            let original = self.operators[i].plugin.read().ok();
            match original.filter(|b| sha256_hex(b) == running) {
                Some(b) => put(running, b)?,
                None => tracing::warn!(
                    operator = %self.operators[i].name,
                    "the running component's file changed since the job started; a rollback \
                     to it will not be possible"
                ),
            }
        }
        Ok(())
    }
}
