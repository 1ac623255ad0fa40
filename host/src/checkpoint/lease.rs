//! One run per job: a lease object in the state store
//! (`jobs/<job>/lease.json`), created atomically (`PutMode::Create`, which
//! `file://` and S3 both honour) before a run touches any output or state,
//! refreshed while it runs and deleted when it ends.
//!
//! A second run of the same job finds the lease and is refused with its
//! owner (host, pid, start time). A lease whose owner is gone can be taken
//! over: on the same host when its process no longer exists (or the pid
//! now belongs to another process), on another host when it has not been
//! refreshed for [`STALE_AFTER`]. Two runs taking over the same stale lease
//! at once are told apart by another atomic create
//! (`lease-takeover/<old run id>`): only the one that creates it replaces
//! the lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::store::StateStore;
use crate::clock::now_ms;
use crate::{Error, Result};

/// How often a running job refreshes its lease.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// A lease of another host not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Who holds a job's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Random id of the run, to tell it from a later run of the same pid.
    pub run_id: String,
    /// Host name.
    pub host: String,
    /// Process id on `host`.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (Linux), to tell
    /// a reused pid from the owner.
    pub process_start: u64,
    /// When the run started (ms since the Unix epoch).
    pub started_ms: i64,
    /// When the lease was last refreshed (ms since the Unix epoch).
    pub refreshed_ms: i64,
}

impl Owner {
    fn me() -> Result<Self> {
        let pid = std::process::id();
        let now = now_ms();
        Ok(Self {
            run_id: crate::digest::random_hex(16).map_err(Error::io("reading", "/dev/urandom"))?,
            host: host_name(),
            pid,
            process_start: process_start(pid).unwrap_or(0),
            started_ms: now,
            refreshed_ms: now,
        })
    }

    /// Why this lease no longer holds, if it does not.
    fn stale(&self) -> Option<String> {
        if self.host == host_name() {
            return match process_start(self.pid) {
                None => Some(format!("process {} no longer exists", self.pid)),
                Some(t) if self.process_start != 0 && t != self.process_start => Some(format!(
                    "process {} is another process now (the owner exited)",
                    self.pid
                )),
                Some(_) => None,
            };
        }
        let idle = now_ms().saturating_sub(self.refreshed_ms);
        (idle > STALE_AFTER.as_millis() as i64)
            .then(|| format!("not refreshed for {} s", idle / 1000))
    }

    fn describe(&self) -> String {
        format!(
            "host {}, pid {}, started {}",
            self.host,
            self.pid,
            crate::checkpoint::manifest::format_time(self.started_ms)
        )
    }
}

/// A held lease: refreshed by a thread while it lives, deleted on drop
/// (only if it is still this run's).
pub struct Lease {
    store: StateStore,
    key: String,
    owner: Owner,
    done: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

fn lease_key(job: &str) -> String {
    format!("jobs/{job}/lease.json")
}

impl Lease {
    /// Take the lease of `job`, or refuse with who holds it.
    #[cfg(test)]
    pub fn acquire(store: &StateStore, job: &str) -> Result<Self> {
        Self::acquire_or_stop(store, job, Arc::new(AtomicBool::new(false)))
    }

    /// [`Lease::acquire`]; if the lease is later found taken by another
    /// run, `stop` is set, so this run stops rather than run beside it.
    pub fn acquire_or_stop(store: &StateStore, job: &str, stop: Arc<AtomicBool>) -> Result<Self> {
        let key = lease_key(job);
        let owner = Owner::me()?;
        if !store.put_new(&key, encode(&owner)?)? {
            Self::take_over(store, job, &key, &owner)?;
        }
        Ok(Self::hold(store.clone(), key, owner, stop))
    }

    /// The lease exists: take it over if its owner is gone, else refuse.
    fn take_over(store: &StateStore, job: &str, key: &str, me: &Owner) -> Result<()> {
        let refuse = |detail: String| Error::Config(format!("job `{job}`: {detail}"));
        let Some(bytes) = store.get(key)? else {
            // Released meanwhile.
            return if store.put_new(key, encode(me)?)? {
                Ok(())
            } else {
                Err(refuse("another run took the lease just now".into()))
            };
        };
        let Ok(old) = serde_json::from_slice::<Owner>(&bytes) else {
            return Err(refuse(format!(
                "its lease {}/{key} does not parse; if no run of this job is running, delete it",
                store.url()
            )));
        };
        let Some(why) = old.stale() else {
            return Err(refuse(format!(
                "it is already running ({}); stop that run first (`weir stop JOB_FILE`), or \
                 if that process is gone on another host, wait {} s or delete {}/{key}",
                old.describe(),
                STALE_AFTER.as_secs(),
                store.url()
            )));
        };
        let marker = format!("jobs/{job}/lease-takeover/{}", old.run_id);
        if !store.put_new(&marker, Bytes::from(me.run_id.clone()))? {
            return Err(refuse(format!(
                "another run is taking over the stale lease of {} at the same time",
                old.describe()
            )));
        }
        tracing::warn!(owner = %old.describe(), "taking over the lease of a run that is gone: {why}");
        // The marker stays: deleting it would let a run that read the same
        // old lease take it over again after this one.
        store.put(key, encode(me)?)
    }

    fn hold(store: StateStore, key: String, owner: Owner, stop: Arc<AtomicBool>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let refresher = std::thread::Builder::new()
            .name("weir-lease".into())
            .spawn({
                let (store, key, owner, done) =
                    (store.clone(), key.clone(), owner.clone(), done.clone());
                move || refresh(&store, &key, owner, &done, &stop)
            })
            .ok();
        Self {
            store,
            key,
            owner,
            done,
            refresher,
        }
    }
}

/// Rewrite the lease every [`REFRESH_EVERY`] while it is still ours; if
/// another run holds it now, stop this one. A store that cannot be read
/// is retried at the next refresh.
fn refresh(store: &StateStore, key: &str, mut owner: Owner, done: &AtomicBool, stop: &AtomicBool) {
    let mut last = std::time::Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < REFRESH_EVERY {
            continue;
        }
        last = std::time::Instant::now();
        match owner_of(store, key) {
            Ok(Some(o)) if o.run_id == owner.run_id => {}
            Ok(other) => {
                tracing::error!(
                    holder = other
                        .map(|o| o.describe())
                        .unwrap_or_else(|| "nobody".into()),
                    "this run's lease was taken or removed: stopping the run"
                );
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!("reading the job's lease: {e}; retrying");
                continue;
            }
        }
        owner.refreshed_ms = now_ms();
        if let Ok(b) = encode(&owner)
            && let Err(e) = store.put(key, b)
        {
            tracing::warn!("refreshing the job's lease: {e}");
        }
    }
}

/// Who holds the lease now (`None`: nobody, or it does not parse).
fn owner_of(store: &StateStore, key: &str) -> Result<Option<Owner>> {
    Ok(store
        .get(key)?
        .and_then(|b| serde_json::from_slice::<Owner>(&b).ok()))
}

fn still_ours(store: &StateStore, key: &str, run_id: &str) -> bool {
    matches!(owner_of(store, key), Ok(Some(o)) if o.run_id == run_id)
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if still_ours(&self.store, &self.key, &self.owner.run_id)
            && let Err(e) = self.store.delete(&self.key)
        {
            tracing::warn!("releasing the job's lease: {e}");
        }
    }
}

fn encode(owner: &Owner) -> Result<Bytes> {
    serde_json::to_vec_pretty(owner)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encoding the lease: {e}")))
}

pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A process's start time (clock ticks since boot), `None` if it does not
/// exist or has exited (a zombie not yet reaped by its parent).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    match process_state(pid)? {
        (b'Z' | b'X', _) => None,
        (_, start) => Some(start),
    }
}

/// A process's state letter (`R`, `S`, `Z`, ...) and start time (clock
/// ticks since boot), as `/proc/PID/stat` gives them; `None` if there is
/// no such process.
pub(crate) fn process_state(pid: u32) -> Option<(u8, u64)> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = *fields.next()?.as_bytes().first()?;
    // Field 22 of the whole line: 20 after the state.
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Whether the process `pid` that started at `start` has exited so that its
/// parent can reap it: gone, replaced by a later process with its pid, or
/// a zombie with no thread of it still exiting (while one is, the zombie
/// leader is not reported to its parent yet).
pub(crate) fn process_exited(pid: u32, start: u64) -> bool {
    match process_state(pid) {
        None => true,
        Some((_, s)) if s != start => true,
        Some((b'Z' | b'X', _)) => std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_or(true, |threads| threads.count() <= 1),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::StoreSpec;

    fn store(dir: &std::path::Path) -> StateStore {
        StateStore::open(
            &StoreSpec {
                url: format!("file://{}", dir.display()),
                ..StoreSpec::default()
            },
            dir,
        )
        .unwrap()
    }

    #[test]
    fn a_process_has_exited_once_its_parent_can_reap_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = process_start(pid).expect("a running child has a start time");
        assert!(!process_exited(pid, start), "running");
        assert!(
            process_exited(pid, start + 1),
            "another process with its pid"
        );
        child.kill().unwrap();
        // Killed, not reaped yet: a zombie, which the parent can reap.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !process_exited(pid, start) {
            assert!(std::time::Instant::now() < deadline, "the child exits");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(process_state(pid).map(|(s, _)| s), Some(b'Z'));
        assert_eq!(process_start(pid), None, "a zombie has no start time");
        child.wait().unwrap();
        assert!(process_exited(pid, start), "reaped");
        assert!(process_exited(0, start), "no pid 0");
    }

    #[test]
    fn one_holder_then_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let first = Lease::acquire(&s, "j").unwrap();
        let err = Lease::acquire(&s, "j").err().unwrap().to_string();
        assert!(err.contains("already running"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(s.get(&lease_key("j")).unwrap().is_none(), "released");
        let again = Lease::acquire(&s, "j").unwrap();
        drop(again);
    }

    #[test]
    fn a_lease_of_a_process_that_is_gone_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Owner {
            pid,
            process_start: 1,
            ..Owner::me().unwrap()
        };
        s.put(&lease_key("j"), encode(&gone).unwrap()).unwrap();
        let lease = Lease::acquire(&s, "j").unwrap();
        assert_eq!(lease.owner.pid, std::process::id());
        // Another host's lease, refreshed long ago, is stale too.
        drop(lease);
        let far = Owner {
            host: "elsewhere".into(),
            refreshed_ms: now_ms() - STALE_AFTER.as_millis() as i64 - 1000,
            ..Owner::me().unwrap()
        };
        s.put(&lease_key("j"), encode(&far).unwrap()).unwrap();
        drop(Lease::acquire(&s, "j").unwrap());
        // A fresh one is not.
        let near = Owner {
            host: "elsewhere".into(),
            ..Owner::me().unwrap()
        };
        s.put(&lease_key("j"), encode(&near).unwrap()).unwrap();
        let err = Lease::acquire(&s, "j").err().unwrap().to_string();
        assert!(err.contains("host elsewhere"), "{err}");
        // A second takeover of the same old lease is refused.
        let gone_again = Owner {
            pid,
            process_start: 1,
            ..Owner::me().unwrap()
        };
        s.put(&lease_key("k"), encode(&gone_again).unwrap())
            .unwrap();
        let marker = format!("jobs/k/lease-takeover/{}", gone_again.run_id);
        s.put_new(&marker, Bytes::from("another run")).unwrap();
        let err = Lease::acquire(&s, "k").err().unwrap().to_string();
        assert!(err.contains("at the same time"), "{err}");
    }
}
