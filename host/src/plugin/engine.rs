//! The wasmtime engine and everything that bounds a plugin: the epoch ticker
//! behind per-call deadlines, the memory cap per instance, the check of the
//! WIT package version and imports, and the use of the on-disk cache of
//! compiled components (`super::cache`: what it checks, its size bound), so
//! a restart does not recompile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::{self, PluginCtx};
use super::cache::{self, EntryError, check_cache_dir, read_entry, resolve_cache_dir, write_entry};
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
    /// [`super::default_cache_dir`]). It is created with mode 0700 and not
    /// used unless it is a real directory owned by the effective user and
    /// not writable by group or others.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache folder's entries may hold; past it, the
    /// entries used least recently are removed.
    pub cache_max_bytes: u64,
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
            cache_max_bytes: cache::DEFAULT_MAX_MB << 20,
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
        // `WEIR_WASM_PROFILE=perfmap` writes /tmp/perf-PID.map, so `perf
        // report` names the plugins' compiled functions (README, "Profiles").
        if std::env::var("WEIR_WASM_PROFILE").as_deref() == Ok("perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
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
        let (component, from_cache) = self
            .compile_cached(name, &digest, bytes)
            .map_err(load_err)?;
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

    fn compile_cached(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), String> {
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
                        Ok(c) => {
                            cache::touch(path);
                            return Ok((c, true));
                        }
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
        // Large components (Python, JavaScript) take seconds: say so first.
        tracing::info!(
            "compiling plugin `{name}` ({:.1} MiB) to native code{}",
            bytes.len() as f64 / (1 << 20) as f64,
            match &path {
                Some(p) => format!("; cached for later runs in {}", p.display()),
                None => " (no cache folder: every run compiles it again)".into(),
            }
        );
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
        } else if let (Some(dir), Some(path)) = (dir, &path) {
            match cache::evict(dir, self.inner.settings.cache_max_bytes, path) {
                Ok(r) if r.files > 0 => tracing::info!(
                    dir = %dir.display(),
                    "compiled-component cache over its bound of {} MiB: removed the {} entries \
                     used least recently ({} MiB)",
                    self.inner.settings.cache_max_bytes >> 20,
                    r.files,
                    r.bytes >> 20
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(dir = %dir.display(), "cannot bound the cache: {e}"),
            }
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
