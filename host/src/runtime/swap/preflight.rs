//! Pre-flight and the swap request: the control endpoint's side of a
//! swap. [`Swapper`] compiles the new component, checks its WIT version and
//! imports, instantiates it once and asks whether it reads the running
//! state (its shape and version), all before anything pauses; only then does it ask the
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
use crate::plugin::{OperatorFactory, OperatorSpec, PluginLoader, StateShape, Takeover};
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

/// Longest deadline a probation may ask for: a day (periodic checkpoints
/// wait while a probation waits for its batches).
pub const MAX_PROBATION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What a swap asks of the new version's probation.
#[derive(Debug, Clone, Copy)]
pub struct ProbationAsk {
    /// Batches it must run before it can be promoted.
    pub batches: u64,
    /// How long to wait for them (the input may be idle) before the swap
    /// is rolled back instead.
    pub timeout: Duration,
}

/// Largest component a swap reads: 256 MiB (the Python SDK's components
/// are about 18 MiB, JavaScript's 12 MiB).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// How often a swap request waiting for its barrier looks whether the job
/// ended meanwhile.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// The bytes of the component file at `path`: a regular file of at most
/// [`MAX_COMPONENT_BYTES`]. Anything else (a FIFO, a device such as
/// `/dev/zero`, a folder) is refused without reading from it: the file is
/// opened without blocking and checked through the handle, so a FIFO put
/// in its place meanwhile does not hang the request.
fn read_component(path: &std::path::Path) -> std::result::Result<Vec<u8>, Refused> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let cannot = |e: std::io::Error| refused(400, format!("cannot read the plugin {shown}: {e}"));
    let not_a_file = |kind: &str| {
        refused(
            400,
            format!("{shown} is {kind}, not a regular file: a plugin is a component file (.wasm)"),
        )
    };
    let kind = |t: std::fs::FileType| {
        use std::os::unix::fs::FileTypeExt;
        if t.is_dir() {
            "a folder"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        }
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_a_file(kind(meta.file_type())));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_a_file(kind(meta.file_type())));
    }
    let too_big = |size: u64| {
        refused(
            400,
            format!(
                "{shown} is {size} bytes, over the {} MiB a plugin component may have",
                MAX_COMPONENT_BYTES >> 20
            ),
        )
    };
    if meta.len() > MAX_COMPONENT_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// One line for a component that does not load; the whole error goes to
/// the log.
fn not_loadable(operator: &str, bytes: &[u8], error: &crate::Error) -> Refused {
    tracing::warn!(operator, "a swap's component does not load: {error}");
    let message = if !bytes.starts_with(b"\0asm") {
        "the file is not a WebAssembly component (it does not start with the Wasm magic \
         bytes); nothing was changed"
            .to_string()
    } else if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        "the file is a core WebAssembly module, not a component: make it one with `weir \
         component new`; nothing was changed"
            .to_string()
    } else {
        let first = error.to_string();
        let first = first
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches(':');
        format!(
            "the component does not load: {first} (details in the job's log); nothing was changed"
        )
    };
    refused(400, message)
}

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
        ask: ProbationAsk,
    ) -> std::result::Result<SwapRecord, Refused> {
        let bytes = read_component(path)?;
        self.swap_bytes(operator, bytes, ask, "swap")
    }

    /// Swap `operator` back to the version it ran before its last promoted
    /// swap (the component is kept in the store).
    pub fn rollback(
        &self,
        operator: &str,
        ask: ProbationAsk,
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
        self.swap_bytes(operator, bytes.to_vec(), ask, "rollback")
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
        ask: ProbationAsk,
        kind: &str,
    ) -> std::result::Result<SwapRecord, Refused> {
        let i = self.operator_index(operator)?;
        if ask.batches > MAX_PROBATION_BATCHES {
            return Err(refused(
                400,
                format!("probation_batches is at most {MAX_PROBATION_BATCHES}"),
            ));
        }
        if ask.timeout > MAX_PROBATION_TIMEOUT || ask.timeout.is_zero() {
            return Err(refused(
                400,
                format!(
                    "the probation timeout is between 1 ms and {} s",
                    MAX_PROBATION_TIMEOUT.as_secs()
                ),
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
        self.refuse_if_stopping()?;
        let current = self.log.current()[i].clone();
        let factory = self.preflight(i, &bytes, &current)?;
        let digest = sha256_hex(&bytes);
        self.keep_components(i, &current.digest, &digest, bytes)?;
        let seq = self.log.next_seq();
        let mut record = SwapRecord::requested(seq, operator, (&current.digest, &digest), kind);
        record.probation_batches = ask.batches;
        self.log.add(record);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let probation = Arc::new(Probation::new(
            SwapOrder {
                seq,
                operator: i,
                factory,
                digest,
                probation_batches: ask.batches,
                probation_timeout: ask.timeout,
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
                "the job is stopping (a stop, a stop with a savepoint, or the end of its input \
                 came first): it ended before the swap barrier; nothing was swapped",
            )
        };
        self.triggers
            .send(Trigger::Swap {
                probation: probation.clone(),
            })
            .map_err(|_| gone())?;
        let deadline = std::time::Instant::now() + SWAP_WAIT;
        loop {
            match rx.recv_timeout(WAIT_SLICE) {
                Ok(Ok(record)) => return Ok(record),
                Ok(Err(e)) if e.is_empty() => {
                    return Err(refused(500, "the swap failed without a reason"));
                }
                Ok(Err(e)) => return Err(refused(500, e)),
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
                    if std::time::Instant::now() < deadline
                        && self.gone.load(std::sync::atomic::Ordering::Acquire) < self.workers => {}
                Err(_) => {
                    // The barrier never came: every worker ended (a stop
                    // came first) or the wait ran out. Nothing was swapped.
                    probation.fail("the job ended before the swap barrier");
                    return Err(gone());
                }
            }
        }
    }

    /// Refuse a swap of a job that is stopping: its workers began to end.
    fn refuse_if_stopping(&self) -> std::result::Result<(), Refused> {
        if self.gone.load(std::sync::atomic::Ordering::Acquire) > 0 {
            return Err(refused(
                409,
                "the job is stopping (its workers are ending): nothing was swapped",
            ));
        }
        Ok(())
    }

    /// Pre-flight: compile (cache), check the WIT version and imports,
    /// instantiate once and ask whether it reads the running state: the
    /// same shape (or one it declares it migrates from) and a state version
    /// it accepts. Nothing has paused yet.
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
            .map_err(|e| not_loadable(name, bytes, &e))?;
        let running = StateShape::of_plugin(current.factory.as_ref(), 0)
            .map_err(|e| refused(500, format!("asking the running version: {e}")))?;
        let new = StateShape::of_plugin(factory.as_ref(), 0)
            .map_err(|e| refused(400, format!("the new component: {e}")))?;
        let cannot = |detail: String| {
            refused(
                409,
                format!(
                    "the new component ({}) cannot read the running state of operator \
                     `{name}`: {detail}. Nothing was changed.",
                    short(&digest)
                ),
            )
        };
        if new.takes_over(&running).map_err(cannot)? == Takeover::Migration {
            return Ok(factory);
        }
        let accepted = factory
            .create(0)
            .and_then(|mut probe| probe.accepted_versions())
            .map_err(|e| refused(400, format!("the new component: {e}")))?;
        if !accepted.contains(&running.version) {
            return Err(cannot(format!(
                "it writes state version {}; the new one writes {} and reads {accepted:?}",
                running.version, new.version
            )));
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
