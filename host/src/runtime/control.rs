//! The control endpoint a running job serves on 127.0.0.1: a small HTTP/1.1
//! server (one request per connection) with
//!
//! - `GET /status`: job name, counters, last checkpoint (JSON);
//! - `GET /metrics`: the same counters in Prometheus text format;
//! - `POST /savepoint?name=N`: take a savepoint, answer when it is complete;
//! - `POST /stop` and `POST /stop?savepoint=true&name=N`: stop the job, with
//!   a savepoint first if asked.
//!
//! Access: the job makes a secret token per run and writes it, with the
//! bound address and its process id, to `<run dir>/<job>.addr` as JSON
//! `{"addr": "127.0.0.1:PORT", "token": "HEX", "pid": N}` (mode 0600, in a
//! folder only its user can enter, see [`run_dir`]). `weir savepoint
//! trigger` and `weir stop` find the job by name there ([`find`]) and send
//! `Authorization: Bearer TOKEN`; any request without it gets 401. A
//! request carrying `Origin` or `Sec-Fetch-*` (sent by browsers, never by
//! the CLI) or a `Host` other than this endpoint's address (DNS rebinding)
//! gets 403.
//!
//! Each connection has its own thread (at most [`MAX_CONNECTIONS`] at a
//! time, then 503), [`HEAD_DEADLINE`] in all to send its request head and
//! at most [`HEAD_LIMIT`] bytes of it (else 408 or 431): a slow or silent
//! client does not hold up other requests.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde_json::json;

use super::Trigger;
use super::swap::{DEFAULT_PROBATION_BATCHES, Swapper};
use super::{CheckpointStats, Metrics};
use crate::checkpoint::manifest::{Manifest, folder};
use crate::{Error, Result, lock_or_recover};

/// Longest a savepoint request waits for completion.
const SAVEPOINT_WAIT: Duration = Duration::from_secs(600);

/// Connections served at the same time; more are answered 503.
pub const MAX_CONNECTIONS: usize = 16;

/// Time a client has, in all, to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);

/// Largest request head (request line and headers) accepted.
pub const HEAD_LIMIT: usize = 8 * 1024;

/// Largest address file read.
const ADDR_FILE_LIMIT: u64 = 4096;

/// How long [`ControlServer`]'s drop waits for requests in progress.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// The effective user id of this process.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The per-user folder holding `<job>.addr` files: `$WEIR_RUN_DIR` if
/// set, else `$XDG_RUNTIME_DIR/weir`, else `<temp>/weir-<euid>`. It must be
/// a real directory owned by the user, with no group or other permissions
/// ([`check_run_dir`]).
pub fn run_dir() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(d) = var("WEIR_RUN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = var("XDG_RUNTIME_DIR").map(PathBuf::from)
        && d.is_absolute()
    {
        return d.join("weir");
    }
    std::env::temp_dir().join(format!("weir-{}", euid()))
}

/// The address file of `job` in [`run_dir`].
pub fn addr_file(job: &str) -> PathBuf {
    run_dir().join(format!("{job}.addr"))
}

fn refuse_run_dir(dir: &Path, why: String) -> Error {
    Error::Config(format!(
        "run folder {}: {why}; refusing to keep or read a control endpoint's address and token \
         there (fix the folder, or set WEIR_RUN_DIR to a private one)",
        dir.display()
    ))
}

/// Refuse `dir` as a run folder unless it is a directory (not a symbolic
/// link), owned by the effective user, with no group or other permissions.
pub fn check_run_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir).map_err(Error::io("inspecting run folder", dir))?;
    if meta.file_type().is_symlink() {
        return Err(refuse_run_dir(dir, "it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse_run_dir(dir, "it is not a directory".into()));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(refuse_run_dir(
            dir,
            format!("it is owned by uid {}, not by you (uid {me})", meta.uid()),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refuse_run_dir(
            dir,
            format!("its mode is {mode:o}: other users may enter it (it needs 700)"),
        ));
    }
    Ok(())
}

/// Create `dir` (mode 0700) if missing, then [`check_run_dir`] it.
pub fn prepare_run_dir(dir: &Path) -> Result<()> {
    let created = DirBuilder::new().recursive(true).mode(0o700).create(dir);
    // A symbolic link or a file in the way is reported by the check.
    if let Err(e) = created
        && std::fs::symlink_metadata(dir).is_err()
    {
        return Err(Error::io("creating run folder", dir)(e));
    }
    check_run_dir(dir)
}

/// A hex token of 32 random bytes.
fn new_token() -> Result<String> {
    crate::digest::random_hex(32).map_err(Error::io("reading", "/dev/urandom"))
}

/// Compare without leaking where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Where a running job's control endpoint is, and its token.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The bearer token every request must carry.
    pub token: String,
    /// Process id of the job.
    pub pid: u32,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Send a request with this endpoint's token; see [`request`].
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, String)> {
        request(&self.addr, &self.token, method, path)
    }

    fn to_json(&self) -> String {
        json!({"addr": self.addr, "token": self.token, "pid": self.pid}).to_string()
    }
}

/// Read an address file: a regular file (not followed if a symbolic link)
/// owned by the effective user and readable by nobody else.
fn read_addr_file(file: &Path) -> std::io::Result<Endpoint> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(invalid(
            "not a private file of yours (it must be a regular file with mode 600)",
        ));
    }
    let mut text = String::new();
    f.take(ADDR_FILE_LIMIT).read_to_string(&mut text)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| invalid("not a control address file"))?;
    let field = |k: &str| v[k].as_str().map(str::to_string);
    match (field("addr"), field("token"), v["pid"].as_u64()) {
        (Some(addr), Some(token), Some(pid)) => Ok(Endpoint {
            addr,
            token,
            pid: u32::try_from(pid).unwrap_or(0),
        }),
        _ => Err(invalid("not a control address file")),
    }
}

/// Write `text` to `file` atomically: a new private temp file beside it
/// (never following a link), renamed into place.
fn write_private(file: &Path, text: &str) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("addr");
    let tmp = file.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(Error::io("writing", file))
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
    /// Plugin swaps (`None`: the job cannot swap: no checkpoints, or
    /// native operators).
    pub swaps: Option<Arc<Swapper>>,
}

impl JobHandle {
    fn counters(&self) -> (super::Snapshot, CheckpointStats) {
        let c = lock_or_recover(&self.checkpoints).clone();
        (self.metrics.snapshot(), c)
    }
}

/// What the connection threads share.
struct Served {
    job: JobHandle,
    token: String,
    addr: SocketAddr,
    /// Set when the server stops.
    done: AtomicBool,
    /// Connections being served.
    active: AtomicUsize,
}

/// Counts a connection as active while alive.
struct Active(Arc<Served>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running control server; stops when dropped.
pub struct ControlServer {
    served: Arc<Served>,
    thread: Option<std::thread::JoinHandle<()>>,
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
    listener: TcpListener,
    addr: SocketAddr,
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

/// Too many connections: answer 503 without reading, close. The write
/// does not block (a short answer fits a new connection's send buffer).
fn busy(mut conn: TcpStream) {
    let _ = conn.set_nonblocking(true);
    let _ = write_answer(
        &mut conn,
        &json_answer(503, json!({"error": "too many control connections"})),
    );
    let _ = conn.shutdown(Shutdown::Both);
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

fn error(status: u16, message: &str) -> Answer {
    json_answer(status, json!({ "error": message }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn write_answer(
    conn: &mut TcpStream,
    (status, body, content_type): &Answer,
) -> std::io::Result<()> {
    let auth = if *status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    write!(
        conn,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{auth}Connection: close\r\n\r\n{body}",
        reason(*status),
        body.len()
    )?;
    conn.flush()
}

/// Why no request head was read.
enum HeadError {
    /// The client closed, or the server stops: nothing to answer.
    Gone,
    /// [`HEAD_DEADLINE`] passed.
    Slow,
    /// Over [`HEAD_LIMIT`].
    TooLarge,
    /// A socket error.
    Io(std::io::Error),
}

/// End of the head in `buf` (after the blank line), if there.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Read the request head: at most [`HEAD_LIMIT`] bytes within
/// [`HEAD_DEADLINE`] in all (each read waits only for the time left).
fn read_head(conn: &mut TcpStream, done: &AtomicBool) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = head_end(&buf) {
            if end > HEAD_LIMIT {
                return Err(HeadError::TooLarge);
            }
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > HEAD_LIMIT {
            return Err(HeadError::TooLarge);
        }
        if done.load(Ordering::SeqCst) {
            return Err(HeadError::Gone);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Slow);
        }
        // Wake up now and then to notice the server stopping.
        conn.set_read_timeout(Some(left.min(Duration::from_millis(100))))
            .map_err(HeadError::Io)?;
        let room = (HEAD_LIMIT + 4 - buf.len()).min(chunk.len());
        match conn.read(&mut chunk[..room]) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let mut first = lines.next()?.split(' ');
        let (method, target, version) = (first.next()?, first.next()?, first.next()?);
        if first.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
            return None;
        }
        let mut headers = Vec::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
                return None;
            }
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Some(Self {
            method: method.into(),
            target: target.into(),
            headers,
        })
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `host` names this endpoint (not another name resolving to it).
fn host_ok(host: &str, addr: SocketAddr) -> bool {
    let port = addr.port();
    host == addr.to_string()
        || host.eq_ignore_ascii_case(&format!("localhost:{port}"))
        || host == format!("127.0.0.1:{port}")
}

/// Refuse what is not ours to answer: browsers, other host names, no
/// token. `None` when the request may go on.
fn refuse(head: &Head, served: &Served) -> Option<Answer> {
    if head.all("origin").next().is_some()
        || head
            .headers
            .iter()
            .any(|(n, _)| n.starts_with("sec-fetch-"))
    {
        return Some(error(
            403,
            "requests from web pages are refused (the request carries an Origin or Sec-Fetch header)",
        ));
    }
    let hosts: Vec<_> = head.all("host").collect();
    match hosts[..] {
        [host] if host_ok(host, served.addr) => {}
        [] => return Some(error(400, "a Host header is required")),
        _ => {
            return Some(error(
                403,
                "the Host header does not name this endpoint (127.0.0.1:PORT or localhost:PORT)",
            ));
        }
    }
    let auth: Vec<_> = head.all("authorization").collect();
    let token = match auth[..] {
        [value] => value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim()),
        _ => None,
    };
    if !token.is_some_and(|t| same_secret(t.as_bytes(), served.token.as_bytes())) {
        return Some(error(
            401,
            "missing or wrong token: send `Authorization: Bearer TOKEN`, TOKEN from the job's \
             address file in the run folder",
        ));
    }
    None
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

/// Close after the answer without resetting the connection: stop sending,
/// then read (and drop) what the client still sends, briefly.
fn linger(mut conn: TcpStream) {
    let _ = conn.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    let mut left = 64 * 1024usize;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || conn.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match conn.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Answer an authorized request.
fn route(head: &Head, served: &Served) -> Answer {
    let job = &served.job;
    let path = head.target.as_str();
    let route = path.split('?').next().unwrap_or("");
    match (head.method.as_str(), route) {
        ("GET", "/status") => status(job),
        ("GET", "/metrics") => metrics(job),
        ("POST", "/savepoint") => savepoint(served, path, false),
        ("POST", "/stop") if query(path, "savepoint").is_some_and(|v| v == "true" || v == "1") => {
            savepoint(served, path, true)
        }
        ("POST", "/swap") => swap(job, path, false),
        ("POST", "/rollback") => swap(job, path, true),
        ("POST", "/stop") => {
            job.stop.store(true, Ordering::Relaxed);
            json_answer(200, json!({"stopping": true}))
        }
        _ => error(404, "no such endpoint"),
    }
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
            "operators": job.swaps.as_ref().map(|s| s.log().current().iter().map(|c| c.digest.clone()).collect::<Vec<_>>()),
            "swaps": job.swaps.as_ref().map(|s| s.log().records()),
        }),
    )
}

/// `POST /swap?operator=NAME&plugin=PATH[&probation_batches=N]`: swap an
/// operator's plugin (answers once the new version runs on probation, or
/// with why it was refused: nothing changed then);
/// `POST /rollback?operator=NAME`: swap back to the version before the
/// last promoted swap.
fn swap(job: &JobHandle, path: &str, rollback: bool) -> Answer {
    let Some(swaps) = &job.swaps else {
        return error(
            409,
            "this job cannot swap plugins: swaps need checkpoints ([checkpoints] enabled) and \
             Wasm plugins",
        );
    };
    let Some(operator) = query(path, "operator").map(percent_decode) else {
        return error(400, "name the operator: ?operator=NAME");
    };
    let batches = match query(path, "probation_batches").map(str::parse::<u64>) {
        None => DEFAULT_PROBATION_BATCHES,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(400, "probation_batches must be a number"),
    };
    let result = if rollback {
        swaps.rollback(&operator, batches)
    } else {
        let Some(plugin) = query(path, "plugin").map(percent_decode) else {
            return error(400, "name the new component: ?plugin=PATH");
        };
        swaps.swap(&operator, std::path::Path::new(&plugin), batches)
    };
    match result {
        Ok(record) => json_answer(200, serde_json::to_value(record).unwrap_or_default()),
        Err(r) => error(r.status, &r.message),
    }
}

/// Decode `%XX` escapes and `+` (a query value).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encode a query value (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~/".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
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
fn savepoint(served: &Served, path: &str, stop: bool) -> Answer {
    let job = &served.job;
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
            || n.chars().all(|c| c == '.')
            || n.len() > 200
    }) {
        return error(
            400,
            "a savepoint name may hold letters, digits, - _ . (not only dots; at most 200)",
        );
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let sent = job.triggers.send(Trigger::Savepoint {
        name,
        stop,
        reply: Some(tx),
    });
    let deadline = Instant::now() + SAVEPOINT_WAIT;
    let mut reply = None;
    if sent.is_ok() {
        // Until answered, the job ends (its coordinator drops the reply),
        // or the server stops (the coordinator has ended by then).
        while reply.is_none() && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => reply = Some(r),
                Err(RecvTimeoutError::Timeout) if !served.done.load(Ordering::SeqCst) => {}
                Err(_) => break,
            }
        }
        if reply.is_none() {
            reply = rx.try_recv().ok();
        }
    }
    match reply {
        Some(Ok(m)) => json_answer(200, manifest_json(&job.job, &m)),
        Some(Err(e)) => json_answer(500, json!({"error": e})),
        None => json_answer(
            503,
            json!({"error": "the job ended before the savepoint completed"}),
        ),
    }
}

/// Send a request with `token` to the control endpoint at `addr`; returns
/// status and body.
pub fn request(addr: &str, token: &str, method: &str, path: &str) -> Result<(u16, String)> {
    let io = |e| Error::io("talking to the control endpoint at", addr.to_string())(e);
    let target =
        addr.to_socket_addrs().map_err(io)?.next().ok_or_else(|| {
            Error::Config(format!("control address `{addr}` resolves to nothing"))
        })?;
    let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(10)).map_err(io)?;
    // A savepoint is answered when it is complete.
    conn.set_read_timeout(Some(SAVEPOINT_WAIT + Duration::from_secs(60)))
        .map_err(io)?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
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

/// The control endpoint of running job `job`, from its address file in
/// [`run_dir`].
pub fn find(job: &str) -> Result<Endpoint> {
    find_in(&run_dir(), job)
}

/// The control endpoint of running job `job`, from its address file in
/// run folder `dir` (which must pass [`check_run_dir`]).
pub fn find_in(dir: &Path, job: &str) -> Result<Endpoint> {
    let f = dir.join(format!("{job}.addr"));
    let not_here = || {
        Error::Config(format!(
            "job `{job}` does not seem to run here (no {})",
            f.display()
        ))
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_here()),
        _ => check_run_dir(dir)?,
    }
    read_addr_file(&f).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            not_here()
        } else {
            Error::io("reading control address file", &f)(e)
        }
    })
}
