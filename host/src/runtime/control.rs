//! The control endpoint a running job serves on 127.0.0.1: a small HTTP/1.1
//! server (one request per connection) with
//!
//! - `GET /status`: job name, counters, last checkpoint (JSON);
//! - `GET /metrics`: the same counters in Prometheus text format;
//! - `POST /savepoint?name=N`: take a savepoint, answer when it is complete;
//! - `POST /stop` and `POST /stop?savepoint=true&name=N`: stop the job, with
//!   a savepoint first if asked.
//!
//! The bound address is written to `<run dir>/<job>.addr` so `weir savepoint
//! trigger` and `weir stop` find the job by name.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::json;

use super::{CheckpointStats, Metrics};
use crate::checkpoint::Trigger;
use crate::checkpoint::manifest::{Manifest, folder};
use crate::{Error, Result, lock_or_recover};

/// Longest a savepoint request waits for completion.
const SAVEPOINT_WAIT: Duration = Duration::from_secs(600);

/// Folder holding `<job>.addr` files: `$WEIR_RUN_DIR`, else
/// `<temp>/weir-run`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("WEIR_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("weir-run"))
}

/// The address file of `job`.
pub fn addr_file(job: &str) -> PathBuf {
    run_dir().join(format!("{job}.addr"))
}

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
}

impl JobHandle {
    fn counters(&self) -> (super::Snapshot, CheckpointStats) {
        let c = lock_or_recover(&self.checkpoints).clone();
        (self.metrics.snapshot(), c)
    }
}

/// A running control server; stops when dropped.
pub struct ControlServer {
    addr: SocketAddr,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr_file: PathBuf,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ControlServer {
    /// Bind `listen` and serve `job`.
    pub fn start(listen: SocketAddr, job: JobHandle) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .map_err(Error::io("binding control endpoint", listen.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("binding control endpoint", listen.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("configuring control endpoint", addr.to_string()))?;
        let addr_file = addr_file(&job.job);
        if let Some(d) = addr_file.parent() {
            std::fs::create_dir_all(d).map_err(Error::io("creating", d))?;
        }
        std::fs::write(&addr_file, addr.to_string()).map_err(Error::io("writing", &addr_file))?;
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name("weir-control".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            if let Err(e) = serve(conn, &job) {
                                tracing::debug!("control request failed: {e}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => tracing::warn!("control endpoint: {e}"),
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("spawning control thread: {e}")))?;
        tracing::info!(%addr, "control endpoint");
        Ok(Self {
            addr,
            done,
            thread: Some(thread),
            addr_file,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if std::fs::read_to_string(&self.addr_file).ok().as_deref() == Some(&self.addr.to_string())
        {
            let _ = std::fs::remove_file(&self.addr_file);
        }
    }
}

fn query<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    let (_, q) = path.split_once('?')?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

fn manifest_json(job: &str, m: &Manifest) -> serde_json::Value {
    json!({
        "name": m.name,
        "kind": m.kind,
        "id": m.id,
        "folder": folder(job, m.kind, &m.name),
        "wall_time_ms": m.wall_time_ms,
        "watermark": m.watermark,
        "bytes": m.state_bytes(),
    })
}

/// An answer: status, body, content type.
type Answer = (u16, String, &'static str);

fn json_answer(status: u16, body: serde_json::Value) -> Answer {
    (status, body.to_string(), "application/json")
}

/// Read one request, answer it, close.
fn serve(conn: TcpStream, job: &JobHandle) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let route = path.split('?').next().unwrap_or("");
    let (status, body, content_type) = match (method, route) {
        ("GET", "/status") => status(job),
        ("GET", "/metrics") => metrics(job),
        ("POST", "/savepoint") => savepoint(job, path, false),
        ("POST", "/stop") if query(path, "savepoint").is_some_and(|v| v == "true" || v == "1") => {
            savepoint(job, path, true)
        }
        ("POST", "/stop") => {
            job.stop.store(true, Ordering::Relaxed);
            json_answer(200, json!({"stopping": true}))
        }
        _ => json_answer(404, json!({"error": "no such endpoint"})),
    };
    let mut conn = reader.into_inner();
    write!(
        conn,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    )?;
    conn.flush()
}

/// `GET /status`: counters and the last checkpoint, as JSON.
fn status(job: &JobHandle) -> Answer {
    let (m, c) = job.counters();
    json_answer(
        200,
        json!({
            "job": job.job,
            "records_read": m.records_read,
            "bytes_read": m.bytes_read,
            "files_done": m.files_done,
            "emitted": m.emitted,
            "malformed": m.malformed,
            "checkpoints_completed": c.completed,
            "checkpoints_failed": c.failed,
            "consumer_lag": job.metrics.lag(),
            "last_checkpoint": c.last.as_ref().map(|m| manifest_json(&job.job, m)),
        }),
    )
}

/// `GET /metrics`: the counters in Prometheus text format.
fn metrics(job: &JobHandle) -> Answer {
    let (m, c) = job.counters();
    let body = format!(
        "weir_records_read_total {}\nweir_bytes_read_total {}\nweir_files_done_total {}\n\
         weir_records_emitted_total {}\nweir_records_malformed_total {}\n\
         weir_checkpoints_completed_total {}\nweir_checkpoints_failed_total {}\n",
        m.records_read, m.bytes_read, m.files_done, m.emitted, m.malformed, c.completed, c.failed
    );
    let mut body = body;
    for (p, lag) in job.metrics.lag().iter().enumerate() {
        body.push_str(&format!("weir_consumer_lag{{partition=\"{p}\"}} {lag}\n"));
    }
    (200, body, "text/plain; version=0.0.4")
}

/// `POST /savepoint?name=N` and `POST /stop?savepoint=true&name=N`: take
/// a savepoint (then stop), answer when it is complete.
fn savepoint(job: &JobHandle, path: &str, stop: bool) -> Answer {
    if !job.savepoints {
        return json_answer(
            409,
            json!({"error": "this job runs without checkpoints ([checkpoints] enabled = false), \
                             so it cannot take a savepoint; stop it without one (`weir stop JOB_FILE`)"}),
        );
    }
    let name = query(path, "name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if name.as_deref().is_some_and(|n| {
        !n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    }) {
        return json_answer(
            400,
            json!({"error": "a savepoint name may hold letters, digits, - _ ."}),
        );
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let sent = job.triggers.send(Trigger::Savepoint {
        name,
        stop,
        reply: Some(tx),
    });
    match sent
        .ok()
        .and_then(|()| rx.recv_timeout(SAVEPOINT_WAIT).ok())
    {
        Some(Ok(m)) => json_answer(200, manifest_json(&job.job, &m)),
        Some(Err(e)) => json_answer(500, json!({"error": e})),
        None => json_answer(
            503,
            json!({"error": "the job ended before the savepoint completed"}),
        ),
    }
}

/// Send a request to a job's control endpoint; returns status and body.
pub fn request(addr: &str, method: &str, path: &str) -> Result<(u16, String)> {
    let io = |e| Error::io("talking to the control endpoint at", addr.to_string())(e);
    let mut conn = TcpStream::connect(addr).map_err(io)?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = String::new();
    conn.read_to_string(&mut response).map_err(io)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The control address of a running job, from its address file.
pub fn find(job: &str) -> Result<String> {
    let f = addr_file(job);
    std::fs::read_to_string(&f)
        .map(|s| s.trim().to_string())
        .map_err(|_| {
            Error::Config(format!(
                "job `{job}` does not seem to run here (no {})",
                f.display()
            ))
        })
}
