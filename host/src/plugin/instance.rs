//! One operator instance: a wasmtime store holding the plugin's linear
//! memory, called once per batch. Every call runs under an epoch deadline and
//! a memory cap; a trap, a timeout or a cap hit becomes an [`Error::Plugin`]
//! naming the plugin, the task and the call, and leaves the instance unusable
//! (the host process itself is never at risk).

use std::sync::Arc;

use wasmtime::{Store, Trap};

use super::bindings::{MemoryCap, Plugin, PluginCtx, each};
use super::engine::{LoadedPlugin, WeirEngine};
use super::wasi::WasiState;
use crate::batch::wit::weir::plugin::types::Error as WitError;
use crate::batch::{Batch, Outcome, Timer};
use crate::{Error, Result};

/// A live plugin instance for one task.
pub struct PluginInstance {
    plugin: Arc<str>,
    digest: String,
    task: usize,
    store: Store<PluginCtx>,
    bindings: Plugin,
    deadline_ticks: u64,
    timeout_ms: u128,
    /// `snapshot` and `restore` serialize a whole state: their own deadline.
    state_deadline_ticks: u64,
    state_timeout_ms: u128,
    batches: u64,
    failed: bool,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin)
            .field("task", &self.task)
            .field("batches", &self.batches)
            .finish()
    }
}

impl PluginInstance {
    /// Instantiate `loaded` for `task`. `init` is not called yet.
    pub fn new(engine: &WeirEngine, loaded: &LoadedPlugin, task: usize) -> Result<Self> {
        let ctx = PluginCtx {
            plugin: loaded.name.clone(),
            task,
            memory: MemoryCap {
                max_bytes: engine.settings().memory_bytes,
                hit: None,
                peak: 0,
            },
            last_error: None,
            wasi: loaded
                .wasi
                .then(|| Box::new(WasiState::new(engine.job(), &loaded.name, task))),
        };
        let mut store = Store::new(engine.engine(), ctx);
        store.limiter(|c| &mut c.memory);
        // Results a plugin returns (a snapshot can be large) are bounded by
        // its memory cap, not by wasmtime's 128 MiB default.
        store.set_hostcall_fuel(engine.settings().memory_bytes.max(128 << 20));
        store.epoch_deadline_trap();
        store.set_epoch_deadline(engine.deadline_ticks());
        let bindings = loaded
            .pre
            .instantiate(&mut store)
            .map_err(|e| Error::Plugin {
                plugin: loaded.name.to_string(),
                task,
                call: "instantiate".into(),
                detail: describe(&e, store.data(), engine.settings().call_timeout.as_millis()),
            })?;
        Ok(Self {
            plugin: loaded.name.clone(),
            digest: loaded.digest.clone(),
            task,
            store,
            bindings,
            deadline_ticks: engine.deadline_ticks(),
            timeout_ms: engine.settings().call_timeout.as_millis(),
            state_deadline_ticks: engine.state_deadline_ticks(),
            state_timeout_ms: engine.settings().state_call_timeout.as_millis(),
            batches: 0,
            failed: false,
        })
    }

    /// The plugin name.
    pub fn name(&self) -> &str {
        &self.plugin
    }

    /// Hex SHA-256 of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Largest linear memory the instance has had, in bytes.
    pub fn memory_peak(&self) -> usize {
        self.store.data().memory.peak
    }

    /// Number of `process` calls so far.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Call `init`.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<()> {
        let call = "init".to_string();
        self.call(
            call,
            |b, s| each!(b, b => b.weir_plugin_operator().call_init(&mut *s, config)),
        )
    }

    /// Call `process` with one batch.
    pub fn process(&mut self, batch: &Batch, watermark: i64) -> Result<Outcome> {
        self.batches += 1;
        let call = format!("process (batch {}, {} records)", self.batches, batch.len());
        let out = self.call(
            call.clone(),
            |b, s| each!(b, b => b.weir_plugin_operator().call_process(&mut *s, batch, watermark)),
        )?;
        self.check_outcome(out, call, batch.len())
    }

    /// Call `on-timers`.
    pub fn on_timers(&mut self, fired: &[Timer], watermark: i64) -> Result<Outcome> {
        let call = format!("on-timers ({} timers, watermark {watermark})", fired.len());
        let out = self.call(call.clone(), |b, s| {
            each!(b, b => b.weir_plugin_operator().call_on_timers(&mut *s, fired, watermark))
        })?;
        self.check_outcome(out, call, 0)
    }

    /// The state schema version the plugin writes.
    pub fn state_version(&mut self) -> Result<u32> {
        self.call(
            "state version".into(),
            |b, s| each!(b, b => b.weir_plugin_state().call_version(&mut *s).map(Ok)),
        )
    }

    /// The state schema versions the plugin restores.
    pub fn accepted_versions(&mut self) -> Result<Vec<u32>> {
        self.call(
            "state accepts".into(),
            |b, s| each!(b, b => b.weir_plugin_state().call_accepts(&mut *s).map(Ok)),
        )
    }

    /// Serialize the plugin's state.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        self.state_call(
            "snapshot".into(),
            |b, s| each!(b, b => b.weir_plugin_state().call_snapshot(&mut *s)),
        )
    }

    /// Whether the plugin has the chunked snapshot (weir:plugin@0.2.0).
    pub fn has_chunked_snapshot(&self) -> bool {
        matches!(self.bindings, Plugin::V2(_))
    }

    /// Start a chunked snapshot (freeze the state). Only for plugins that
    /// [`have one`](Self::has_chunked_snapshot).
    pub fn snapshot_begin(&mut self) -> Result<()> {
        self.call("snapshot-begin".into(), |b, s| match b {
            Plugin::V2(b) => b.weir_plugin_state().call_snapshot_begin(s),
            Plugin::V1(_) => no_chunked_snapshot(),
        })
    }

    /// The next chunk of the open chunked snapshot, about `max_bytes` long;
    /// `None` when it is complete.
    pub fn snapshot_next(&mut self, max_bytes: u32) -> Result<Option<Vec<u8>>> {
        self.call("snapshot-next".into(), |b, s| match b {
            Plugin::V2(b) => b.weir_plugin_state().call_snapshot_next(s, max_bytes),
            Plugin::V1(_) => no_chunked_snapshot(),
        })
    }

    /// Restore the plugin's state.
    pub fn restore(&mut self, bytes: &[u8], from_version: u32) -> Result<()> {
        self.state_call(
            "restore".into(),
            |b, s| each!(b, b => b.weir_plugin_state().call_restore(&mut *s, bytes, from_version)),
        )
    }

    fn call<T>(
        &mut self,
        call: String,
        f: impl FnOnce(&Plugin, &mut Store<PluginCtx>) -> wasmtime::Result<Result<T, WitError>>,
    ) -> Result<T> {
        let deadline = (self.deadline_ticks, self.timeout_ms);
        self.call_with(deadline, call, f)
    }

    /// A call under the state deadline (`snapshot`, `restore`).
    fn state_call<T>(
        &mut self,
        call: String,
        f: impl FnOnce(&Plugin, &mut Store<PluginCtx>) -> wasmtime::Result<Result<T, WitError>>,
    ) -> Result<T> {
        let deadline = (self.state_deadline_ticks, self.state_timeout_ms);
        self.call_with(deadline, call, f)
    }

    fn call_with<T>(
        &mut self,
        (ticks, timeout_ms): (u64, u128),
        call: String,
        f: impl FnOnce(&Plugin, &mut Store<PluginCtx>) -> wasmtime::Result<Result<T, WitError>>,
    ) -> Result<T> {
        if self.failed {
            return Err(self.error(
                call,
                "the instance failed earlier and cannot be called again".into(),
            ));
        }
        self.store.set_epoch_deadline(ticks);
        let result = f(&self.bindings, &mut self.store);
        if let Some(wasi) = &self.store.data().wasi
            && let Ok(mut output) = wasi.output.lock()
        {
            output.end_call(&call);
        }
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(call, format!("returned an error: {}", wit_error(&e)))),
            Err(e) => {
                self.failed = true;
                let detail = describe(&e, self.store.data(), timeout_ms);
                Err(self.error(call, detail))
            }
        }
    }

    fn check_outcome(&mut self, out: Outcome, call: String, inputs: usize) -> Result<Outcome> {
        if !out.emitted.is_well_formed() {
            return Err(self.error(
                call,
                "returned a malformed batch (offsets out of range)".into(),
            ));
        }
        if let Some(r) = out.rejected.iter().find(|r| r.index as usize >= inputs) {
            return Err(self.error(
                call,
                format!("rejected record {} of a batch of {inputs}", r.index),
            ));
        }
        Ok(out)
    }

    fn error(&self, call: String, detail: String) -> Error {
        Error::Plugin {
            plugin: self.plugin.to_string(),
            task: self.task,
            call,
            detail,
        }
    }
}

/// What a chunked-snapshot call answers for a 0.1.0 plugin, which has none.
fn no_chunked_snapshot<T>() -> wasmtime::Result<std::result::Result<T, WitError>> {
    Ok(Err(WitError::Other(
        "built against weir:plugin@0.1.0, which has no chunked snapshot".into(),
    )))
}

fn wit_error(e: &WitError) -> String {
    match e {
        WitError::Config(m) => format!("configuration: {m}"),
        WitError::State(m) => format!("state: {m}"),
        WitError::Other(m) => m.clone(),
    }
}

/// A readable account of a wasmtime error: deadline, memory cap or trap.
fn describe(e: &wasmtime::Error, ctx: &PluginCtx, timeout_ms: u128) -> String {
    if let Some(asked) = ctx.memory.hit {
        return format!(
            "exceeded its memory cap of {} MiB (asked for {} MiB)",
            ctx.memory.max_bytes >> 20,
            asked >> 20
        );
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        let said = ctx
            .last_error
            .clone()
            .or_else(|| {
                let wasi = ctx.wasi.as_deref()?;
                let output = wasi.output.lock().ok()?;
                output.last_stderr.clone()
            })
            .map(|s| format!("; the plugin said: {s}"))
            .unwrap_or_default();
        return format!(
            "called exit({}) (a plugin may not exit; the instance was stopped){said}",
            exit.0
        );
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            format!("ran past its deadline of {timeout_ms} ms per call and was stopped")
        }
        Some(trap) if ctx.last_error.is_some() => {
            format!(
                "trapped: {trap}; the plugin said: {}",
                ctx.last_error.as_deref().unwrap_or_default()
            )
        }
        Some(trap) => {
            let frames = e
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .map(|bt| {
                    bt.frames()
                        .iter()
                        .take(4)
                        .filter_map(|f| f.func_name().map(str::to_string))
                        .collect::<Vec<_>>()
                        .join(" <- ")
                })
                .filter(|s| !s.is_empty())
                .map(|s| format!(" in {s}"))
                .unwrap_or_default();
            format!("trapped: {trap}{frames}")
        }
        None => format!("{e:#}"),
    }
}
