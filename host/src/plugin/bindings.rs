//! Host bindings generated from `wit/weir.wit` (weir:plugin@0.2.0) and
//! `wit/v0.1.0/weir.wit` (0.1.0, still accepted), and the per-store host
//! state they run against: the plugin's log import and the memory cap.
//!
//! `operator-plugin` is the world every plugin targets: it exports
//! `weir:plugin/operator` and `weir:plugin/state` and imports
//! `weir:plugin/host` (a log function). A component may also import the
//! deterministic WASI profile (`super::wasi`); its store then carries a
//! WASI context, and the others carry none. Both versions
//! share one set of types (generated in `batch`: the records are the same),
//! so the rest of the host does not see which version a plugin speaks,
//! except for the chunked snapshot only 0.2.0 has.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::wasi::WasiState;
use crate::batch::wit::weir::plugin::types::Level;

/// weir:plugin@0.2.0.
pub(crate) mod v2 {
    wasmtime::component::bindgen!({
        world: "operator-plugin",
        path: "../wit",
        // The shared types are generated in `batch`, which the rest of the
        // host uses without depending on `plugin`.
        with: {
            "weir:plugin/types": crate::batch::wit::weir::plugin::types,
        },
    });
}

/// weir:plugin@0.1.0: no chunked snapshot.
pub(crate) mod v1 {
    wasmtime::component::bindgen!({
        world: "operator-plugin",
        path: "../wit/v0.1.0",
        with: {
            "weir:plugin/types": crate::batch::wit::weir::plugin::types,
        },
    });
}

/// A linked component, of either version.
#[derive(Clone)]
pub enum PluginPre {
    /// weir:plugin@0.1.0.
    V1(v1::OperatorPluginPre<PluginCtx>),
    /// weir:plugin@0.2.0.
    V2(v2::OperatorPluginPre<PluginCtx>),
}

/// An instance's exports, of either version.
pub(crate) enum Plugin {
    V1(v1::OperatorPlugin),
    V2(v2::OperatorPlugin),
}

impl PluginPre {
    /// Instantiate into `store`.
    pub(crate) fn instantiate(
        &self,
        store: &mut wasmtime::Store<PluginCtx>,
    ) -> wasmtime::Result<Plugin> {
        Ok(match self {
            PluginPre::V1(p) => Plugin::V1(p.instantiate(store)?),
            PluginPre::V2(p) => Plugin::V2(p.instantiate(store)?),
        })
    }
}

/// Run the same call on the bindings of either version: `each!(plugin, b
/// => b.weir_plugin_operator().call_init(store, config))`.
macro_rules! each {
    ($plugin:expr, $b:ident => $call:expr) => {
        match $plugin {
            $crate::plugin::bindings::Plugin::V1($b) => $call,
            $crate::plugin::bindings::Plugin::V2($b) => $call,
        }
    };
}
pub(crate) use each;

/// Per-store host state.
pub struct PluginCtx {
    pub(crate) plugin: Arc<str>,
    pub(crate) task: usize,
    pub(crate) memory: MemoryCap,
    /// The plugin's last error-level log line (the SDKs log a panic's
    /// message there before trapping), quoted in trap errors.
    pub(crate) last_error: Option<String>,
    /// The WASI profile's state, for plugins that import WASI only.
    pub(crate) wasi: Option<Box<WasiState>>,
}

impl wasmtime_wasi::WasiView for PluginCtx {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        let wasi = self
            .wasi
            .as_deref_mut()
            .expect("WASI is linked only for plugins whose store has a WASI state");
        wasmtime_wasi::WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// Caps the linear memory (and tables) of one instance, remembering a hit
/// so the error can say so.
pub(crate) struct MemoryCap {
    pub(crate) max_bytes: usize,
    pub(crate) hit: Option<usize>,
    /// Largest linear memory granted so far.
    pub(crate) peak: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = Some(desired);
            return Err(wasmtime::Error::msg(format!(
                "memory cap of {} MiB reached (asked for {} MiB)",
                self.max_bytes >> 20,
                desired >> 20
            )));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

impl crate::batch::wit::weir::plugin::types::Host for PluginCtx {}

impl v1::weir::plugin::host::Host for PluginCtx {
    fn log(&mut self, level: Level, message: String) {
        v2::weir::plugin::host::Host::log(self, level, message);
    }
}

impl v2::weir::plugin::host::Host for PluginCtx {
    fn log(&mut self, level: Level, message: String) {
        let (plugin, task) = (&*self.plugin, self.task);
        match level {
            Level::Trace => tracing::trace!(plugin, task, "{message}"),
            Level::Debug => tracing::debug!(plugin, task, "{message}"),
            Level::Info => tracing::info!(plugin, task, "{message}"),
            Level::Warn => tracing::warn!(plugin, task, "{message}"),
            Level::Error => tracing::error!(plugin, task, "{message}"),
        }
        if level == Level::Error {
            self.last_error = Some(message);
        }
    }
}
