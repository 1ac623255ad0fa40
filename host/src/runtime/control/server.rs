//! The server: [`ControlServer::bind`] checks the run folder and binds the
//! listener before the job starts; [`ControlServer::serve`] writes the
//! address file and accepts connections, one thread each, until dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::access::refuse;
use super::client::find_in;
use super::http::{Head, HeadError, MAX_CONNECTIONS, busy, error, linger, read_head, write_answer};
use super::routes::route;
use super::run_folder::{
    Endpoint, new_token, prepare_run_dir, read_addr_file, run_dir, same_secret, write_private,
};
use crate::lock_or_recover;
use crate::runtime::Trigger;
use crate::runtime::swap::Swapper;
use crate::runtime::{CheckpointStats, Metrics, Snapshot};
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
    /// Checkpoint figures.
    pub checkpoints: Arc<Mutex<CheckpointStats>>,
    /// Whether the job takes checkpoints (and so can take savepoints).
    pub savepoints: bool,
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

/// What the connection threads share.
pub(super) struct Served {
    /// The job served.
    pub(super) job: JobHandle,
    /// The token requests must carry.
    pub(super) token: String,
    /// The bound address (the only `Host` accepted).
    pub(super) addr: SocketAddr,
    /// Set when the server stops.
    pub(super) done: AtomicBool,
    /// Connections being served.
    active: AtomicUsize,
}

/// Counts a connection as active while alive.
struct Active(
    /// The server the connection belongs to.
    Arc<Served>,
);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running control server; stops when dropped.
pub struct ControlServer {
    /// What the connection threads share.
    served: Arc<Served>,
    /// The accept loop, joined on drop.
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
    pub fn bind(listen: SocketAddr, job: &str) -> Result<Bound> {
        let dir = run_dir();
        prepare_run_dir(&dir)?;
        if let Ok(ep) = find_in(&dir, job)
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
        Self::serve(Self::bind(listen, &job.job)?, job)
    }

    /// Serve `job` on `bound`; write its address and a new token to
    /// `<run dir>/<job>.addr`.
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
        };
        let addr_file = dir.join(format!("{}.addr", job.job));
        write_private(&addr_file, &endpoint.to_json())?;
        let served = Arc::new(Served {
            job,
            token: endpoint.token,
            addr,
            done: AtomicBool::new(false),
            active: AtomicUsize::new(0),
        });
        let mut server = Self {
            served: served.clone(),
            thread: None,
            addr_file,
        };
        let thread = std::thread::Builder::new()
            .name("weir-control".into())
            .spawn(move || accept_loop(&listener, &served))
            .map_err(|e| Error::Internal(format!("spawning control thread: {e}")))?;
        server.thread = Some(thread);
        tracing::info!(%addr, "control endpoint");
        Ok(server)
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
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Let answers in progress (a savepoint before stopping) go out.
        let deadline = Instant::now() + DRAIN_WAIT;
        while self.served.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if read_addr_file(&self.addr_file)
            .is_ok_and(|e| same_secret(e.token.as_bytes(), self.served.token.as_bytes()))
        {
            let _ = std::fs::remove_file(&self.addr_file);
        }
    }
}

/// Accept connections until the server stops; one thread each.
fn accept_loop(listener: &TcpListener, served: &Arc<Served>) {
    while !served.done.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                if served.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    served.active.fetch_sub(1, Ordering::SeqCst);
                    busy(conn);
                    continue;
                }
                let active = Active(served.clone());
                let spawned = std::thread::Builder::new()
                    .name("weir-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve(conn, &active.0) {
                            tracing::debug!("control request failed: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("control endpoint: spawning a thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                tracing::warn!("control endpoint: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Read one request, answer it, close.
fn serve(mut conn: TcpStream, served: &Served) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let answer = match read_head(&mut conn, &served.done) {
        Ok(bytes) => match Head::parse(&bytes) {
            Some(head) => refuse(&head, served).unwrap_or_else(|| route(&head, served)),
            None => error(400, "malformed request"),
        },
        Err(HeadError::Gone) => return Ok(()),
        Err(HeadError::Io(e)) => return Err(e),
        Err(HeadError::Slow) => error(408, "the request head took too long"),
        Err(HeadError::TooLarge) => error(431, "the request head is too large"),
    };
    write_answer(&mut conn, &answer)?;
    linger(conn);
    Ok(())
}
