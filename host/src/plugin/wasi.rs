//! The deterministic WASI profile: what a plugin that imports WASI (Go,
//! Rust's `wasm32-wasip2`, C with stdio, ...) gets, and nothing more.
//!
//! It is linked only for components that import WASI; the others keep the
//! plain linker. The profile is built with `wasmtime-wasi`'s context builder
//! and keeps a plugin a deterministic function of its input and its state:
//!
//! - **Imports.** Only the interfaces in [`PROFILE`] (any 0.2.x version);
//!   any other import (sockets, HTTP, anything not WASI) is refused when the
//!   plugin is loaded, before the job starts, naming it.
//! - **Files, network, environment, arguments.** None: no preopened
//!   directory (opening a file fails inside the plugin), no socket, an empty
//!   environment and argument list, stdin at end of file.
//! - **Clocks.** The wall clock always reads the Unix epoch
//!   (1970-01-01T00:00:00Z); the monotonic clock starts at 0 for each
//!   instance and advances 1 µs per read. Neither reads the machine's time,
//!   so a plugin that reads the clock gives the same output on every run.
//!   Event time is in the records' timestamps and the watermark.
//! - **Random.** `wasi:random` (secure and insecure, and the insecure seed)
//!   draws from a ChaCha generator seeded by SHA-256 over the job, the
//!   operator and the partition (see [`seed`]): every instance of that
//!   operator and partition draws the same bytes from its start, in every
//!   run, in a run restored from a savepoint, and in a fork of the job
//!   (which uses the forked job's name).
//! - **stdout and stderr** go to the host's log, one line per line, tagged
//!   with the plugin and task (stdout at info level, stderr at warn). At most
//!   [`LOG_BYTES_PER_CALL`] bytes are logged per call into the plugin; the
//!   rest is dropped and counted in one warning after the call.
//! - **Exit.** `exit` (`proc_exit`) ends the call with an error naming the
//!   plugin and the exit code, like a trap: the instance is not used again.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// The WASI interfaces a plugin may import (without their `@version`).
/// `wasi:filesystem` is granted with no directory at all: toolchains import
/// it for their standard library, and opening a file fails.
pub const PROFILE: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Bytes of stdout and stderr logged per call into a plugin; the rest of
/// what the call writes is dropped (and counted in one warning).
pub const LOG_BYTES_PER_CALL: usize = 64 << 10;

/// Longest line logged; a longer one is logged in pieces of this size.
const MAX_LINE: usize = 4 << 10;

/// Whether an import is in the profile: `wasi:<package>/<interface>@0.2.x`
/// with the interface in [`PROFILE`].
pub fn in_profile(import: &str) -> bool {
    let (name, version) = import.split_once('@').unwrap_or((import, ""));
    PROFILE.contains(&name) && (version.is_empty() || version.starts_with("0.2."))
}

/// The 32-byte seed of an instance's random bytes: SHA-256 over a domain
/// tag, the job, the operator and the partition.
pub fn seed(job: &str, operator: &str, partition: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"weir wasi random v1\0");
    h.update(job.as_bytes());
    h.update(b"\0");
    h.update(operator.as_bytes());
    h.update(b"\0");
    h.update((partition as u64).to_le_bytes());
    h.finalize().into()
}

/// One instance's WASI state: the context, its resource table and where
/// its stdout and stderr go.
pub(crate) struct WasiState {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) output: Arc<Mutex<OutputLog>>,
}

impl WasiState {
    /// The profile for `operator`'s instance on `partition` of `job`.
    pub(crate) fn new(job: &str, operator: &Arc<str>, partition: usize) -> Self {
        let seed = seed(job, operator, partition);
        let derive = |tag: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(tag);
            h.finalize().into()
        };
        let insecure_seed = derive(b"insecure-seed");
        let output = Arc::new(Mutex::new(OutputLog::new(operator.clone(), partition)));
        let ctx = WasiCtxBuilder::new()
            .stdout(PluginOutput {
                log: output.clone(),
                stream: Stream::Stdout,
            })
            .stderr(PluginOutput {
                log: output.clone(),
                stream: Stream::Stderr,
            })
            .wall_clock(EpochClock)
            .monotonic_clock(CountingClock::default())
            .secure_random(StdRng::from_seed(derive(b"secure")))
            .insecure_random(StdRng::from_seed(derive(b"insecure")))
            .insecure_random_seed(u128::from_le_bytes(
                insecure_seed[..16].try_into().expect("16 bytes"),
            ))
            .build();
        Self {
            ctx,
            table: ResourceTable::new(),
            output,
        }
    }
}

/// The wall clock of the profile: always the Unix epoch.
struct EpochClock;

impl HostWallClock for EpochClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The monotonic clock of the profile: 0 at the instance's start, then
/// 1 µs more on every read.
#[derive(Default)]
struct CountingClock {
    reads: std::sync::atomic::AtomicU64,
}

impl HostMonotonicClock for CountingClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .saturating_mul(1_000)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Where one instance's stdout and stderr go: lines into the host's log,
/// within a budget per call.
pub(crate) struct OutputLog {
    plugin: Arc<str>,
    task: usize,
    /// The unfinished last line of each stream.
    pending: [Vec<u8>; 2],
    /// Bytes logged in the current call.
    logged: usize,
    /// Bytes dropped in the current call, per stream.
    dropped: [u64; 2],
    /// The last line written to stderr, quoted when the plugin fails.
    pub(crate) last_stderr: Option<String>,
}

impl OutputLog {
    fn new(plugin: Arc<str>, task: usize) -> Self {
        Self {
            plugin,
            task,
            pending: [Vec::new(), Vec::new()],
            logged: 0,
            dropped: [0, 0],
            last_stderr: None,
        }
    }

    fn write(&mut self, stream: Stream, mut bytes: &[u8]) {
        let i = stream as usize;
        let room = LOG_BYTES_PER_CALL.saturating_sub(self.logged);
        if bytes.len() > room {
            self.dropped[i] += (bytes.len() - room) as u64;
            bytes = &bytes[..room];
        }
        self.logged += bytes.len();
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            self.pending[i].extend_from_slice(&bytes[..nl]);
            self.emit(stream);
            bytes = &bytes[nl + 1..];
        }
        self.pending[i].extend_from_slice(bytes);
        while self.pending[i].len() >= MAX_LINE {
            let rest = self.pending[i].split_off(MAX_LINE);
            self.emit(stream);
            self.pending[i] = rest;
        }
    }

    fn emit(&mut self, stream: Stream) {
        let i = stream as usize;
        let line = String::from_utf8_lossy(&self.pending[i]).into_owned();
        self.pending[i].clear();
        let (plugin, task) = (&*self.plugin, self.task);
        match stream {
            Stream::Stdout => tracing::info!(plugin, task, stream = "stdout", "{line}"),
            Stream::Stderr => {
                tracing::warn!(plugin, task, stream = "stderr", "{line}");
                if !line.trim().is_empty() {
                    self.last_stderr = Some(line);
                }
            }
        }
    }

    /// Log what is left of the call's output and what was dropped, and open
    /// the budget of the next call.
    pub(crate) fn end_call(&mut self, call: &str) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let i = stream as usize;
            if !self.pending[i].is_empty() {
                self.emit(stream);
            }
            if self.dropped[i] > 0 {
                tracing::warn!(
                    plugin = &*self.plugin,
                    task = self.task,
                    "plugin `{}` (task {}) wrote {} bytes more to {} during {call} than the {} KiB \
                     per call Weir logs; they were dropped",
                    self.plugin,
                    self.task,
                    self.dropped[i],
                    stream.name(),
                    LOG_BYTES_PER_CALL >> 10
                );
            }
        }
        self.logged = 0;
        self.dropped = [0, 0];
    }
}

/// stdout or stderr of one instance, as `wasmtime-wasi` sees it.
struct PluginOutput {
    log: Arc<Mutex<OutputLog>>,
    stream: Stream,
}

impl PluginOutput {
    fn write(&self, bytes: &[u8]) {
        // A poisoned lock means a log line panicked; keep going without it.
        if let Ok(mut log) = self.log.lock() {
            log.write(self.stream, bytes);
        }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(PluginOutput {
            log: self.log.clone(),
            stream: self.stream,
        })
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(PluginOutput {
            log: self.log.clone(),
            stream: self.stream,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        PluginOutput::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for PluginOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        PluginOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_names_wasi_0_2_interfaces_only() {
        assert!(in_profile("wasi:cli/stdout@0.2.6"));
        assert!(in_profile("wasi:random/random@0.2.0"));
        assert!(!in_profile("wasi:sockets/tcp@0.2.6"));
        assert!(!in_profile("wasi:http/outgoing-handler@0.2.6"));
        assert!(!in_profile("wasi:cli/stdout@0.3.0"));
        assert!(!in_profile("acme:net/dial"));
    }

    #[test]
    fn the_seed_depends_on_job_operator_and_partition() {
        let s = seed("job", "op", 0);
        assert_eq!(s, seed("job", "op", 0));
        assert_ne!(s, seed("job", "op", 1));
        assert_ne!(s, seed("job", "op2", 0));
        assert_ne!(s, seed("job2", "op", 0));
        // The separators keep the fields apart.
        assert_ne!(seed("ab", "c", 0), seed("a", "bc", 0));
    }

    #[test]
    fn output_is_logged_within_its_budget_per_call() {
        let mut log = OutputLog::new("p".into(), 0);
        log.write(Stream::Stdout, &vec![b'x'; LOG_BYTES_PER_CALL + 10]);
        assert_eq!(log.dropped[0], 10);
        log.end_call("process");
        assert_eq!((log.logged, log.dropped), (0, [0, 0]));
        log.write(Stream::Stderr, b"panic: boom\n\n");
        assert_eq!(log.last_stderr.as_deref(), Some("panic: boom"));
    }
}
