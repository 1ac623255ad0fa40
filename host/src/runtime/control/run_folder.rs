//! The run folder, where a running job tells the CLI how to reach it:
//! `<run dir>/<job>.addr` holds the endpoint's address, a secret token made
//! per run and the job's process id ([`Endpoint`]), in a private file
//! (mode 0600) in a folder only its user can enter ([`check_run_dir`]).

use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::{Error, Result};

/// Largest address file read.
const ADDR_FILE_LIMIT: u64 = 4096;

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
pub(super) fn new_token() -> Result<String> {
    crate::digest::random_hex(32).map_err(Error::io("reading", "/dev/urandom"))
}

/// Compare without leaking where the first difference is.
pub(super) fn same_secret(a: &[u8], b: &[u8]) -> bool {
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
    /// That process's start time (clock ticks since boot, as
    /// `/proc/PID/stat` gives it), so a reader can tell it is the process
    /// the pid names in its own view: not a later one given the same pid,
    /// nor another in a different pid namespace. `None` in address files
    /// written without it.
    pub started: Option<u64>,
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
    /// The address file's JSON.
    pub(super) fn to_json(&self) -> String {
        json!({"addr": self.addr, "token": self.token, "pid": self.pid, "started": self.started})
            .to_string()
    }
}

/// Read an address file: a regular file (not followed if a symbolic link)
/// owned by the effective user and readable by nobody else.
pub(super) fn read_addr_file(file: &Path) -> std::io::Result<Endpoint> {
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
            started: v["started"].as_u64(),
        }),
        _ => Err(invalid("not a control address file")),
    }
}

/// Write `text` to `file` atomically: a new private temp file beside it
/// (never following a link), renamed into place.
pub(super) fn write_private(file: &Path, text: &str) -> Result<()> {
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

/// A lock on a job name held for a run's lifetime (an `flock` on
/// `<run dir>/<job>.lock`, released by the kernel when the process ends,
/// however it ends): one run per job on this host, with or without
/// checkpoints and whatever its state store (a `memory://` store has no
/// lease another process could see). The file is removed when the run
/// ends; a run that locked a file removed meanwhile tries again, so two
/// runs never hold locks on two files of one name.
#[derive(Debug)]
pub struct JobLock {
    /// The locked file, open for the run's lifetime.
    file: std::fs::File,
    /// Its path, removed on drop.
    path: PathBuf,
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiting opener of this file
        // finds it gone and tries again.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Take the lock of `job`, or refuse with the process that holds it.
pub fn lock_job(job: &str) -> Result<JobLock> {
    use std::os::fd::AsRawFd;
    let dir = run_dir();
    prepare_run_dir(&dir)?;
    let path = dir.join(format!("{job}.lock"));
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(Error::io("opening the job's lock", &path))?;
        // SAFETY: flock on a descriptor this function owns; no memory is
        // passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::io("locking", &path)(e));
            }
            let mut pid = String::new();
            let _ = (&file).take(32).read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            return Err(Error::Config(format!(
                "job `{job}` is already running on this host{who}: one run per job; stop it \
                 first (`weir stop JOB_FILE`, or a signal to that process), then run again"
            )));
        }
        if !same_file(&file, &path) {
            // The previous holder removed it as we opened it.
            continue;
        }
        file.set_len(0)
            .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
            .map_err(Error::io("writing", &path))?;
        return Ok(JobLock { file, path });
    }
}

/// Whether a run of `job` holds its lock in [`run_dir`] (see [`lock_job`]):
/// `false` once that process has exited, even before anyone reaps it.
pub fn job_running(job: &str) -> Result<bool> {
    use std::os::fd::AsRawFd;
    let path = run_dir().join(format!("{job}.lock"));
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("opening the job's lock", &path)(e)),
    };
    // SAFETY: flock on a descriptor this function owns; no memory is
    // passed. A shared lock is refused while the run holds its exclusive
    // one, and released when `file` is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return Ok(false);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(true)
    } else {
        Err(Error::io("locking", &path)(e))
    }
}
