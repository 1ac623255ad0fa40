//! The wasmtime engine and everything that bounds a plugin: the epoch ticker
//! behind per-call deadlines, the memory cap per instance, the check of the
//! WIT package version and imports, and the on-disk cache of compiled
//! components (keyed by content digest, engine settings and wasmtime version)
//! so a restart does not recompile.
//!
//! # The compiled-component cache
//!
//! A cached entry is native code that wasmtime maps and runs *outside* the
//! sandbox, so an entry is only loaded after these checks:
//!
//! - The folder is the configured one (`cache_dir`, else `$WEIR_CACHE_DIR`),
//!   else `$XDG_CACHE_HOME/weir/components`, else
//!   `$HOME/.cache/weir/components`; there is no shared temp fallback. With
//!   no folder, components are compiled in memory on every start.
//! - The folder is created with mode 0700 and, before use, must be a real
//!   directory (not a symbolic link) owned by the effective user and not
//!   writable by group or others. A folder that fails is not used: Weir
//!   warns and compiles in memory.
//! - An entry is opened without following symbolic links and must be a
//!   regular file owned by the effective user and not writable by group or
//!   others. It starts with a header holding a SHA-256 over the cache key
//!   (which names the component's digest) and the compiled bytes; the bytes
//!   are read once, checked against it, and only those verified bytes are
//!   handed to wasmtime (never a path that could be swapped after the
//!   check). An entry that fails, or that has no header (written by an older
//!   Weir), is recompiled from the component and rewritten; entries are
//!   written to a fresh 0600 temp file and renamed into place.
//!
//! The digest sits beside the code it covers, so it only detects accidental
//! corruption, truncation, an entry copied from another component, or a
//! naive replacement by someone who cannot also rewrite the header. What
//! stops another local user from planting code is the ownership and
//! permission checks on the folder and the entries; anyone who can write
//! files as the user running Weir can already run code as that user.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::{self, PluginCtx};
use crate::batch::ACCEPTED_WIT_VERSIONS;
use crate::digest::sha256_hex;
use crate::{Error, Result};

fn ticks(d: Duration) -> u64 {
    let t = d.as_micros() / TICK.as_micros();
    (t as u64).max(1) + 1
}

/// Resolved sandbox settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Deadline of one call into a plugin.
    pub call_timeout: Duration,
    /// Deadline of one `snapshot` or `restore` call.
    pub state_call_timeout: Duration,
    /// Memory cap per plugin instance.
    pub memory_bytes: usize,
    /// Compiled-component cache folder (`None`: the default folder, see
    /// [`default_cache_dir`]). It is created with mode 0700 and not used
    /// unless it is a real directory owned by the effective user and not
    /// writable by group or others.
    pub cache_dir: Option<PathBuf>,
}

impl EngineSettings {
    /// Default deadline of one call into a plugin, in ms.
    pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 10_000;
    /// Default deadline of one `snapshot` or `restore` call, in ms (10
    /// minutes: they serialize a whole state).
    pub const DEFAULT_STATE_CALL_TIMEOUT_MS: u64 = 600_000;
    /// Default memory cap per plugin instance, in MiB.
    pub const DEFAULT_MEMORY_MB: u64 = 1024;
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(Self::DEFAULT_CALL_TIMEOUT_MS),
            state_call_timeout: Duration::from_millis(Self::DEFAULT_STATE_CALL_TIMEOUT_MS),
            memory_bytes: (Self::DEFAULT_MEMORY_MB << 20) as usize,
            cache_dir: None,
        }
    }
}

/// How often the epoch advances; per-call deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(5);

/// The shared wasmtime engine with Weir's sandbox settings.
#[derive(Clone)]
pub struct WeirEngine {
    inner: Arc<Inner>,
    /// The job whose instances this engine runs: part of the seed of the
    /// WASI profile's random bytes (see [`super::wasi::seed`]).
    job: Arc<str>,
}

struct Inner {
    engine: Engine,
    /// The host functions only: for plugins that import no WASI.
    linker: Linker<PluginCtx>,
    /// The host functions and the deterministic WASI profile.
    wasi_linker: Linker<PluginCtx>,
    settings: EngineSettings,
    /// The checked cache folder; `None`: compile in memory.
    cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for WeirEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeirEngine")
            .field("settings", &self.inner.settings)
            .field("cache_dir", &self.inner.cache_dir)
            .finish()
    }
}

/// A component compiled and linked, ready to instantiate once per task.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Plugin name from the job.
    pub name: Arc<str>,
    /// Hex SHA-256 of the component bytes.
    pub digest: String,
    /// The pre-linked component.
    pub pre: bindings::PluginPre,
    /// The `weir:plugin` version it was built against.
    pub wit_version: String,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// Whether it imports WASI (then its instances get the deterministic
    /// WASI profile).
    pub wasi: bool,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

impl WeirEngine {
    /// Build an engine and start its epoch ticker.
    pub fn new(settings: EngineSettings) -> Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed);
        let engine =
            Engine::new(&config).map_err(|e| Error::Internal(format!("wasmtime engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        bindings::v2::OperatorPlugin::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(
            &mut linker,
            |c| c,
        )
        .and_then(|()| {
            bindings::v1::OperatorPlugin::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(
                &mut linker,
                |c| c,
            )
        })
        .map_err(|e| Error::Internal(format!("linking host functions: {e:#}")))?;
        let mut wasi_linker = linker.clone();
        wasmtime_wasi::p2::add_to_linker_sync(&mut wasi_linker)
            .map_err(|e| Error::Internal(format!("linking WASI: {e:#}")))?;
        start_ticker(&engine);
        let cache_dir = resolve_cache_dir(settings.cache_dir.as_deref());
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                wasi_linker,
                settings,
                cache_dir,
            }),
            job: "".into(),
        })
    }

    /// This engine for the instances of `job`: the job's name (a fork's is
    /// the name of the job it forks) seeds the WASI profile's random bytes.
    pub fn for_job(mut self, job: &str) -> Self {
        self.job = job.into();
        self
    }

    /// The job this engine's instances belong to.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The sandbox settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// Deadline of one call, in epoch ticks.
    pub fn deadline_ticks(&self) -> u64 {
        ticks(self.inner.settings.call_timeout)
    }

    /// Deadline of one `snapshot` or `restore` call, in epoch ticks: these
    /// serialize a whole state, so they have their own, longer deadline.
    pub fn state_deadline_ticks(&self) -> u64 {
        ticks(self.inner.settings.state_call_timeout)
    }

    /// The compiled-component cache folder in use; `None` when components
    /// are compiled in memory (no folder available, or the folder failed
    /// its ownership and permission check).
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache_dir.as_deref()
    }

    /// Compile (or fetch from the cache), check and link a component.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin> {
        let load_err = |detail: String| Error::PluginLoad {
            plugin: name.to_string(),
            detail,
        };
        let digest = sha256_hex(bytes);
        let (component, from_cache) = self.compile_cached(&digest, bytes).map_err(load_err)?;
        let (wit_version, wasi) =
            check_interface(&self.inner.engine, &component).map_err(load_err)?;
        let linker = if wasi {
            &self.inner.wasi_linker
        } else {
            &self.inner.linker
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| load_err(format!("{e:#}")))?;
        let pre = if wit_version == "0.1.0" {
            bindings::v1::OperatorPluginPre::new(pre).map(bindings::PluginPre::V1)
        } else {
            bindings::v2::OperatorPluginPre::new(pre).map(bindings::PluginPre::V2)
        }
        .map_err(|e| load_err(format!("{e:#}")))?;
        Ok(LoadedPlugin {
            name: name.into(),
            digest,
            pre,
            wit_version,
            from_cache,
            wasi,
        })
    }

    /// Load a component from a file.
    pub fn load_file(&self, name: &str, path: &Path) -> Result<LoadedPlugin> {
        let bytes = std::fs::read(path).map_err(|e| Error::PluginLoad {
            plugin: name.to_string(),
            detail: format!("cannot read {}: {e}", path.display()),
        })?;
        self.load(name, &bytes)
    }

    fn compile_cached(&self, digest: &str, bytes: &[u8]) -> Result<(Component, bool), String> {
        let engine = &self.inner.engine;
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let key = format!("{digest}-{}-{:016x}", wasmtime_version(), h.finish());
        // Check the folder again: it may have been replaced since `new`.
        let dir = self
            .inner
            .cache_dir
            .as_deref()
            .filter(|dir| match check_cache_dir(dir) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "not using the compiled-component cache: {e}; compiling in memory");
                    false
                }
            });
        let path = dir.map(|dir| dir.join(format!("{key}.cwasm")));
        if let Some(path) = &path {
            match read_entry(path, &key) {
                Ok(None) => {}
                Ok(Some(compiled)) => {
                    // SAFETY: `compiled` are the bytes of an entry that is a
                    // regular file owned by this user in a folder only this
                    // user can write, and whose SHA-256 over the cache key
                    // and the bytes matches its header: they were written by
                    // `Engine::precompile_component` below, for this very
                    // component and engine configuration (see the module
                    // docs for what this does and does not protect against).
                    // The bytes are in memory, so the file cannot be swapped
                    // after the check; wasmtime also checks its own header
                    // and refuses a mismatch, in which case we recompile.
                    match unsafe { Component::deserialize(engine, &compiled) } {
                        Ok(c) => return Ok((c, true)),
                        Err(e) => tracing::warn!(
                            path = %path.display(),
                            "ignoring unusable cached component; recompiling: {e:#}"
                        ),
                    }
                }
                Err(EntryError::NoDigest) => tracing::info!(
                    path = %path.display(),
                    "cached component has no digest (written by an older version); recompiling"
                ),
                Err(EntryError::Rejected(why)) => {
                    tracing::warn!(
                        path = %path.display(),
                        "ignoring cached component: {why}; recompiling and rewriting it"
                    );
                    // The rename below replaces it; removing it first also
                    // clears an entry the rename cannot replace.
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| format!("not a valid component: {e:#}"))?;
        // SAFETY: the bytes were produced by this engine's
        // `precompile_component` just above.
        let component = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| format!("cannot load compiled component: {e:#}"))?;
        if let Some(path) = &path
            && let Err(e) = write_entry(path, &key, &compiled)
        {
            tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
        }
        Ok((component, false))
    }
}

fn wasmtime_version() -> &'static str {
    // The wasmtime crate is pinned in the workspace; keep this in step.
    "48.0.8"
}

/// Check the component's WIT package version and that it imports nothing
/// but `weir:plugin/host` and the WASI profile; returns the version and
/// whether it imports WASI.
fn check_interface(engine: &Engine, component: &Component) -> Result<(String, bool), String> {
    let ty = component.component_type();
    let mut version = None;
    for (name, _) in ty.exports(engine) {
        if let Some(rest) = name.strip_prefix("weir:plugin/") {
            version = rest.split_once('@').map(|(_, v)| v.to_string());
        }
    }
    let Some(version) = version else {
        return Err(
            "it exports no `weir:plugin` interface: build it against the world \
                    `weir:plugin/operator-plugin` in wit/"
                .into(),
        );
    };
    if !ACCEPTED_WIT_VERSIONS.contains(&version.as_str()) {
        return Err(format!(
            "it was built against weir:plugin@{version}; this host accepts weir:plugin@{}",
            ACCEPTED_WIT_VERSIONS.join(", @")
        ));
    }
    let mut wasi = false;
    for (name, _) in ty.imports(engine) {
        if name.starts_with("weir:plugin/") {
            continue;
        }
        if super::wasi::in_profile(name) {
            wasi = true;
            continue;
        }
        return Err(format!(
            "it imports `{name}`, which is outside what Weir grants: `weir:plugin/host` and \
             the deterministic WASI 0.2 profile ({}); no network, no files, no environment",
            super::wasi::PROFILE.join(", ")
        ));
    }
    Ok((version, wasi))
}

fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The default compiled-component cache folder: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/components`, else `$HOME/.cache/weir/components`
/// (empty or relative values are skipped). `None` when none is set: then
/// components are compiled in memory, never cached in a shared temp folder.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(d) = var("WEIR_CACHE_DIR") {
        return Some(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(d.join("weir").join("components"));
    }
    var("HOME").map(|h| h.join(".cache").join("weir").join("components"))
}

/// The cache folder to use: the configured one, else the default; created
/// (mode 0700) if missing, then checked. `None`: compile in memory.
fn resolve_cache_dir(configured: Option<&Path>) -> Option<PathBuf> {
    static NO_DIR_LOGGED: AtomicBool = AtomicBool::new(false);
    let Some(dir) = configured.map(Path::to_path_buf).or_else(default_cache_dir) else {
        if !NO_DIR_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no compiled-component cache folder (set engine.cache_dir, WEIR_CACHE_DIR, \
                 XDG_CACHE_HOME or HOME): compiling plugins in memory on every start"
            );
        }
        return None;
    };
    let ready = match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create it: {e}"))
            .and_then(|()| check_cache_dir(&dir)),
        _ => check_cache_dir(&dir),
    };
    match ready {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                "not using the compiled-component cache: {e}; compiling plugins in memory"
            );
            None
        }
    }
}

fn euid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Check that `dir` is a real directory (not a symbolic link), owned by the
/// effective user and not writable by group or others.
fn check_cache_dir(dir: &Path) -> Result<(), String> {
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect it: {e}"))?;
    if md.file_type().is_symlink() {
        return Err("it is a symbolic link".into());
    }
    if !md.is_dir() {
        return Err("it is not a directory".into());
    }
    check_owner_and_mode(&md)
}

fn check_owner_and_mode(md: &std::fs::Metadata) -> Result<(), String> {
    let euid = euid();
    if md.uid() != euid {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {euid})",
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {:o})",
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

/// First bytes of a cache entry; the SHA-256 of [`entry_digest`] follows,
/// then the compiled component.
const ENTRY_MAGIC: &[u8; 8] = b"WEIRCW\x00\x01";
const ENTRY_HEADER_LEN: usize = ENTRY_MAGIC.len() + 32;

/// SHA-256 over the cache key (component digest, wasmtime version, engine
/// compatibility hash) and the compiled bytes: an entry copied over the name
/// of another component does not match.
fn entry_digest(key: &str, compiled: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"weir compiled component v1\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(compiled);
    h.finalize().into()
}

enum EntryError {
    /// No header: written by an older version.
    NoDigest,
    /// Not a safe file, unreadable, or the digest does not match.
    Rejected(String),
}

/// Read and verify the cache entry at `path`: `Ok(None)` if there is none,
/// else the verified compiled bytes (without the header).
fn read_entry(path: &Path, key: &str) -> Result<Option<Vec<u8>>, EntryError> {
    let file = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(EntryError::Rejected("it is a symbolic link".into()));
        }
        Err(e) => return Err(EntryError::Rejected(format!("cannot open it: {e}"))),
    };
    // Checked on the open file, so what is checked is what is read.
    let md = file
        .metadata()
        .map_err(|e| EntryError::Rejected(format!("cannot inspect it: {e}")))?;
    if !md.is_file() {
        return Err(EntryError::Rejected("it is not a regular file".into()));
    }
    check_owner_and_mode(&md).map_err(EntryError::Rejected)?;
    let mut bytes = Vec::with_capacity(md.len() as usize);
    (&file)
        .read_to_end(&mut bytes)
        .map_err(|e| EntryError::Rejected(format!("cannot read it: {e}")))?;
    if !bytes.starts_with(ENTRY_MAGIC) {
        return Err(EntryError::NoDigest);
    }
    if bytes.len() < ENTRY_HEADER_LEN {
        return Err(EntryError::Rejected("it is truncated".into()));
    }
    let compiled = &bytes[ENTRY_HEADER_LEN..];
    if bytes[ENTRY_MAGIC.len()..ENTRY_HEADER_LEN] != entry_digest(key, compiled) {
        return Err(EntryError::Rejected(
            "its SHA-256 does not match its header (corrupted or replaced)".into(),
        ));
    }
    bytes.drain(..ENTRY_HEADER_LEN);
    Ok(Some(bytes))
}

/// Write a cache entry (header with digest, then the compiled bytes) to a
/// fresh temp file created with mode 0600 beside it, then rename it into
/// place atomically.
fn write_entry(path: &Path, key: &str, compiled: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{key}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(ENTRY_MAGIC)?;
        f.write_all(&entry_digest(key, compiled))?;
        f.write_all(compiled)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
