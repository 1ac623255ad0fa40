//! Host bindings generated from `wit/weir.wit`, and the per-store host
//! state they run against: the plugin's log import and the memory cap.
//!
//! `operator-plugin` is the world every plugin targets: it exports
//! `weir:plugin/operator` and `weir:plugin/state` and imports only
//! `weir:plugin/host` (a log function). No WASI is linked, so a component
//! that imports any WASI interface is refused at load time.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use weir::plugin::types::Level;

wasmtime::component::bindgen!({
    world: "operator-plugin",
    path: "../wit",
    // The shared types are generated in `batch`, which the rest of the
    // host uses without depending on `plugin`.
    with: {
        "weir:plugin/types": crate::batch::wit::weir::plugin::types,
    },
});

/// Per-store host state.
pub struct PluginCtx {
    pub(crate) plugin: Arc<str>,
    pub(crate) task: usize,
    pub(crate) memory: MemoryCap,
    /// The plugin's last error-level log line (the SDKs log a panic's
    /// message there before trapping), quoted in trap errors.
    pub(crate) last_error: Option<String>,
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

impl weir::plugin::types::Host for PluginCtx {}

impl weir::plugin::host::Host for PluginCtx {
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
