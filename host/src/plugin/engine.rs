//! The wasmtime engine and everything that bounds a plugin: the epoch ticker
//! behind per-call deadlines, the memory cap per instance, the check of the
//! WIT package version and imports, and the on-disk cache of compiled
//! components (keyed by content digest, engine settings and wasmtime version)
//! so a restart does not recompile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::{self, PluginCtx};
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
    /// Compiled-component cache folder (`None`: the default folder).
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

/// The versions of the `weir:plugin` WIT package this host accepts.
pub const ACCEPTED_WIT_VERSIONS: &[&str] = &["0.1.0"];

/// How often the epoch advances; per-call deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(5);

/// The shared wasmtime engine with Weir's sandbox settings.
#[derive(Clone)]
pub struct WeirEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<PluginCtx>,
    settings: EngineSettings,
    cache_dir: PathBuf,
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
    pub pre: bindings::OperatorPluginPre<PluginCtx>,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
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
        bindings::OperatorPlugin::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(
            &mut linker,
            |c| c,
        )
        .map_err(|e| Error::Internal(format!("linking host functions: {e:#}")))?;
        start_ticker(&engine);
        let cache_dir = settings.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                settings,
                cache_dir,
            }),
        })
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

    /// The compiled-component cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.inner.cache_dir
    }

    /// Compile (or fetch from the cache), check and link a component.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin> {
        let load_err = |detail: String| Error::PluginLoad {
            plugin: name.to_string(),
            detail,
        };
        let digest = sha256_hex(bytes);
        let (component, from_cache) = self.compile_cached(&digest, bytes).map_err(load_err)?;
        check_interface(&self.inner.engine, &component).map_err(load_err)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| load_err(format!("{e:#}")))?;
        let pre = bindings::OperatorPluginPre::new(pre).map_err(|e| load_err(format!("{e:#}")))?;
        Ok(LoadedPlugin {
            name: name.into(),
            digest,
            pre,
            from_cache,
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
        let path = self.inner.cache_dir.join(format!("{key}.cwasm"));
        if path.is_file() {
            // SAFETY: files in the cache folder are written only by
            // `Engine::precompile_component` below (atomically, by rename)
            // under a name that includes the engine's compatibility hash;
            // wasmtime still checks the header and refuses a mismatch, in
            // which case we recompile.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached component: {e:#}")
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
        if let Err(e) = write_atomically(&path, &compiled) {
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
/// but `weir:plugin/host`.
fn check_interface(engine: &Engine, component: &Component) -> Result<(), String> {
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
    for (name, _) in ty.imports(engine) {
        if !name.starts_with("weir:plugin/") {
            return Err(format!(
                "it imports `{name}`, which Weir does not grant: plugins get no filesystem, \
                 network, clock, randomness or environment (build Rust plugins for \
                 wasm32-unknown-unknown, or stub WASI out)"
            ));
        }
    }
    Ok(())
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

/// The default compiled-component cache folder.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEIR_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("weir");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("weir");
    }
    std::env::temp_dir().join("weir-cache")
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
