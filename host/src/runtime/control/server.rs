//! The server: [`ControlServer::bind`] checks the run folder and binds the
//! listener before the job starts; [`ControlServer::serve`] writes the
//! address file and serves connections (see `http.rs`) on a tokio runtime
//! of its own thread, sampling the job's counters every second, until
//! dropped.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tokio::sync::watch;

use super::client::find_in;
use super::http::{Slots, connection};
use super::run_folder::{
    Endpoint, new_token, prepare_run_dir, read_addr_file, run_dir, same_secret, write_private,
};
use super::status::{Sample, sample};
use crate::checkpoint::store::StateStore;
use crate::lock_or_recover;
use crate::runtime::Trigger;
use crate::runtime::swap::Swapper;
use crate::runtime::{CheckpointStats, Metrics, Snapshot};
use crate::sink::dead_letter::DeadLetters;
use crate::{Error, Result};

/// How long [`ControlServer`]'s drop waits for requests in progress.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// What the server needs from the job.
#[derive(Clone)]
pub struct JobHandle {
    /// Job name.
    pub job: String,
    /// Barrier requests to the source.
    pub triggers: Sender<Trigger>,
    /// Stop flag.
    pub stop: Arc<AtomicBool>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The dead-letter output (counts by stage, the last few).
    pub(crate) dead_letters: Arc<DeadLetters>,
    /// Checkpoint figures.
    pub checkpoints: Arc<Mutex<CheckpointStats>>,
    /// When the job started (for its uptime).
    pub started: Instant,
    /// Worker threads.
    pub parallelism: usize,
    /// Whether the job takes checkpoints (and so can take savepoints).
    pub savepoints: bool,
    /// The job's state store, where a savepoint name is checked before the
    /// barrier is asked for (`None`: no checkpoints).
    pub store: Option<StateStore>,
    /// Plugin swaps (`None`: the job cannot swap: no checkpoints, or
    /// native operators).
    pub swaps: Option<Arc<Swapper>>,
}

impl JobHandle {
    /// The counters and the checkpoint figures, as of now.
    pub(super) fn counters(&self) -> (Snapshot, CheckpointStats) {
        let c = lock_or_recover(&self.checkpoints).clone();
        (self.metrics.snapshot(), c)
    }
}

/// What the connections share.
pub(super) struct Served {
    /// The job served.
    pub(super) job: JobHandle,
    /// The token requests must carry.
    pub(super) token: String,
    /// The bound address (the only `Host` accepted).
    pub(super) addr: SocketAddr,
    /// Set when the server stops.
    pub(super) done: AtomicBool,
    /// Connection slots and requests in progress.
    pub(super) slots: Slots,
    /// The counters every second, for rates (see `status.rs`).
    pub(super) samples: Mutex<VecDeque<Sample>>,
}

/// A running control server; stops when dropped.
pub struct ControlServer {
    /// What the connections share.
    served: Arc<Served>,
    /// Tells the runtime's thread to stop.
    stop: watch::Sender<bool>,
    /// The runtime's thread, joined on drop.
    thread: Option<std::thread::JoinHandle<()>>,
    /// The address file written, removed on drop if still ours.
    addr_file: PathBuf,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("addr", &self.served.addr)
            .finish_non_exhaustive()
    }
}

/// A control endpoint's listener, bound (and its run folder checked)
/// before the job touches anything, not yet serving.
pub struct Bound {
    /// The listener, non-blocking.
    listener: TcpListener,
    /// The address it is bound to.
    addr: SocketAddr,
    /// The run folder, checked.
    dir: PathBuf,
}

impl ControlServer {
    /// Check the run folder and bind `listen`: what can fail about the
    /// endpoint fails here, before a run touches output or state.
    /// A job whose endpoint is still served by a live process is refused
    /// (a second run of it, also without checkpoints and so without a
    /// lease): its address file is not replaced.
    /// `replace`: a group job's partition run, whose owner the consumer
    /// group decides: an earlier owner's address file is replaced.
    pub fn bind(listen: SocketAddr, job: &str, replace: bool) -> Result<Bound> {
        let dir = run_dir();
        prepare_run_dir(&dir)?;
        if !replace
            && let Ok(ep) = find_in(&dir, job)
            && ep.pid != std::process::id()
            && crate::checkpoint::lease::process_start(ep.pid).is_some()
        {
            return Err(Error::Config(format!(
                "job `{job}` is already running here (pid {}, control endpoint {}); stop it \
                 first (`weir stop JOB_FILE`)",
                ep.pid, ep.addr
            )));
        }
        let listener = TcpListener::bind(listen)
            .map_err(Error::io("binding control endpoint", listen.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("binding control endpoint", listen.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("configuring control endpoint", addr.to_string()))?;
        Ok(Bound {
            listener,
            addr,
            dir,
        })
    }

    /// Bind `listen` and serve `job` (see [`ControlServer::serve`]).
    pub fn start(listen: SocketAddr, job: JobHandle) -> Result<Self> {
        Self::serve(Self::bind(listen, &job.job, false)?, job)
    }

    /// Serve `job` on `bound`; write its address and a new token to
    /// `<run dir>/<job>.addr`, and say where the status page is.
    pub fn serve(bound: Bound, job: JobHandle) -> Result<Self> {
        let Bound {
            listener,
            addr,
            dir,
        } = bound;
        let endpoint = Endpoint {
            addr: addr.to_string(),
            token: new_token()?,
            pid: std::process::id(),
            started: crate::checkpoint::lease::process_start(std::process::id()),
        };
        let addr_file = dir.join(format!("{}.addr", job.job));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("weir-control")
            .build()
            .map_err(|e| Error::Internal(format!("starting the control runtime: {e}")))?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(Error::io("configuring control endpoint", addr.to_string()))?
        };
        write_private(&addr_file, &endpoint.to_json())?;
        let served = Arc::new(Served {
            job,
            token: endpoint.token,
            addr,
            done: AtomicBool::new(false),
            slots: Slots::default(),
            samples: Mutex::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let thread = {
            let served = served.clone();
            std::thread::Builder::new()
                .name("weir-control".into())
                .spawn(move || {
                    runtime.block_on(serve(listener, &served, stopped));
                    runtime.shutdown_timeout(Duration::from_millis(200));
                })
                .map_err(|e| Error::Internal(format!("spawning control thread: {e}")))?
        };
        tracing::info!(%addr, "control endpoint");
        tracing::info!("status page: http://{addr}/?token={}", served.token);
        Ok(Self {
            served,
            stop,
            thread: Some(thread),
            addr_file,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// The token requests must carry.
    pub fn token(&self) -> &str {
        &self.served.token
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.served.done.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if read_addr_file(&self.addr_file)
            .is_ok_and(|e| same_secret(e.token.as_bytes(), self.served.token.as_bytes()))
        {
            let _ = std::fs::remove_file(&self.addr_file);
        }
    }
}

/// Accept connections and sample the counters until told to stop; then
/// let answers in progress (a savepoint before stopping) go out.
async fn serve(
    listener: tokio::net::TcpListener,
    served: &Arc<Served>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let for_connections = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    tokio::spawn(connection(conn, served.clone(), for_connections.clone()));
                }
                Err(e) => {
                    tracing::warn!("control endpoint: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = tick.tick() => sample(served),
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    let deadline = Instant::now() + DRAIN_WAIT;
    while served.slots.answering.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The answers' lingers.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
