//! A resolved operator as the job file names it: its name, where its
//! component comes from and its `init` configuration. The job file's
//! resolution ([`crate::config`]) makes these; the job loads them, and a
//! swap reads the running version's component again to keep it.

use std::path::PathBuf;
use std::sync::Arc;

/// Where a plugin's component comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A `.wasm` file.
    Path(PathBuf),
    /// Component bytes held in memory (the demo's embedded plugin).
    Bytes(Arc<[u8]>),
}

impl PluginSource {
    /// The component's bytes as they are now (a file may have changed since
    /// the job started; callers compare digests).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            PluginSource::Path(p) => std::fs::read(p),
            PluginSource::Bytes(b) => Ok(b.to_vec()),
        }
    }
}

/// A resolved operator.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    /// Name for logs, errors and dead letters.
    pub name: String,
    /// The component.
    pub plugin: PluginSource,
    /// `init` configuration.
    pub config: Vec<(String, String)>,
}
