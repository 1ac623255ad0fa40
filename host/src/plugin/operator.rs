//! What the runtime sees of an operator: [`Operator`] (one instance, one
//! partition) and [`OperatorFactory`] (makes one per partition). Wasm
//! plugins implement both through [`WasmOperatorFactory`]; the benchmark's
//! native build of the same logic implements them directly.

use std::sync::Arc;

use super::engine::{LoadedPlugin, WeirEngine};
use super::instance::PluginInstance;
use crate::Result;
use crate::batch::{Batch, Outcome, Timer};

/// An operator instance as a partition's pipeline sees it.
pub trait Operator: Send {
    /// Name for errors and dead letters.
    fn name(&self) -> &str;
    /// Process one batch.
    fn process(&mut self, batch: &Batch, watermark: i64) -> Result<Outcome>;
    /// Handle fired timers.
    fn on_timers(&mut self, fired: &[Timer], watermark: i64) -> Result<Outcome>;
    /// Serialize the state.
    fn snapshot(&mut self) -> Result<Vec<u8>>;
    /// Start a chunked snapshot: freeze the state as it is now.
    /// `Ok(false)`: the operator has none (use [`Operator::snapshot`]).
    fn snapshot_begin(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// The next chunk (about `max_bytes`) of the open chunked snapshot;
    /// `None` once it is complete. `process` and `on_timers` may run in
    /// between; the chunks hold the state as of `snapshot_begin`.
    fn snapshot_next(&mut self, _max_bytes: u32) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Restore a snapshot written by state version `from_version`.
    fn restore(&mut self, bytes: &[u8], from_version: u32) -> Result<()>;
    /// Call the operator's `init` with its configuration.
    fn init_with(&mut self, config: &[(String, String)]) -> Result<()>;
    /// Identity of the code (component digest), recorded in checkpoints.
    fn digest(&self) -> &str;
    /// The state schema version `snapshot` writes.
    fn state_version(&mut self) -> Result<u32>;
    /// The state schema versions `restore` accepts.
    fn accepted_versions(&mut self) -> Result<Vec<u32>>;
}

/// Makes one [`Operator`] per partition.
pub trait OperatorFactory: Send + Sync {
    /// Name of the operator.
    fn name(&self) -> &str;
    /// A new instance for `partition`, without state; `init` not yet called.
    fn create(&self, partition: usize) -> Result<Box<dyn Operator>>;
    /// Call `init` on an instance with the job's configuration.
    fn init(&self, op: &mut dyn Operator) -> Result<()>;
    /// Digest of the component its instances run (`None`: not a Wasm
    /// component).
    fn digest(&self) -> Option<&str> {
        None
    }
}

impl Operator for PluginInstance {
    fn name(&self) -> &str {
        PluginInstance::name(self)
    }
    fn process(&mut self, batch: &Batch, watermark: i64) -> Result<Outcome> {
        PluginInstance::process(self, batch, watermark)
    }
    fn on_timers(&mut self, fired: &[Timer], watermark: i64) -> Result<Outcome> {
        PluginInstance::on_timers(self, fired, watermark)
    }
    fn snapshot(&mut self) -> Result<Vec<u8>> {
        PluginInstance::snapshot(self)
    }
    fn snapshot_begin(&mut self) -> Result<bool> {
        if !self.has_chunked_snapshot() {
            return Ok(false);
        }
        PluginInstance::snapshot_begin(self).map(|()| true)
    }
    fn snapshot_next(&mut self, max_bytes: u32) -> Result<Option<Vec<u8>>> {
        PluginInstance::snapshot_next(self, max_bytes)
    }
    fn restore(&mut self, bytes: &[u8], from_version: u32) -> Result<()> {
        PluginInstance::restore(self, bytes, from_version)
    }
    fn init_with(&mut self, config: &[(String, String)]) -> Result<()> {
        PluginInstance::init(self, config)
    }
    fn digest(&self) -> &str {
        PluginInstance::digest(self)
    }
    fn state_version(&mut self) -> Result<u32> {
        PluginInstance::state_version(self)
    }
    fn accepted_versions(&mut self) -> Result<Vec<u32>> {
        PluginInstance::accepted_versions(self)
    }
}

/// Instantiates a loaded Wasm plugin per partition and calls `init`.
pub struct WasmOperatorFactory {
    engine: WeirEngine,
    plugin: LoadedPlugin,
    config: Vec<(String, String)>,
}

impl WasmOperatorFactory {
    /// A factory for `plugin` with its `init` configuration.
    pub fn new(engine: WeirEngine, plugin: LoadedPlugin, config: Vec<(String, String)>) -> Self {
        Self {
            engine,
            plugin,
            config,
        }
    }
}

impl OperatorFactory for WasmOperatorFactory {
    fn name(&self) -> &str {
        &self.plugin.name
    }
    fn create(&self, partition: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(PluginInstance::new(
            &self.engine,
            &self.plugin,
            partition,
        )?))
    }
    fn init(&self, op: &mut dyn Operator) -> Result<()> {
        op.init_with(&self.config)
    }
    fn digest(&self) -> Option<&str> {
        Some(&self.plugin.digest)
    }
}

/// Makes operator factories from component bytes: how the runtime loads
/// another version of a plugin (a swap, a restart on a swapped-in
/// version) without knowing how plugins run.
pub trait PluginLoader: Send + Sync {
    /// Compile and check `bytes` as operator `name`'s plugin, whose
    /// instances get `config` at `init`.
    fn factory(
        &self,
        name: &str,
        bytes: &[u8],
        config: &[(String, String)],
    ) -> Result<Arc<dyn OperatorFactory>>;
}

impl PluginLoader for WeirEngine {
    fn factory(
        &self,
        name: &str,
        bytes: &[u8],
        config: &[(String, String)],
    ) -> Result<Arc<dyn OperatorFactory>> {
        let loaded = self.load(name, bytes)?;
        Ok(Arc::new(WasmOperatorFactory::new(
            self.clone(),
            loaded,
            config.to_vec(),
        )))
    }
}
