//! Plugin hosting: operators compiled to Wasm components, run in a sandbox.
//!
//! - [`bindings`](self): the host side of the WIT contract (`wit/weir.wit`)
//!   and the per-store context (log import, memory cap).
//! - [`WeirEngine`]: the wasmtime engine, epoch deadlines, the check of the
//!   WIT version and imports; [`cache`]: the compiled-component cache (its
//!   checks, its size bound, `weir cache clean`).
//! - [`wasi`]: the deterministic WASI profile, linked only for plugins
//!   that import WASI.
//! - [`PluginInstance`]: one instance in its own store, called per batch.
//! - [`Operator`] / [`OperatorFactory`] / [`PluginLoader`]: what the
//!   runtime sees of an operator and of the engine that makes them; Wasm
//!   plugins implement them, and so does the benchmark's native build of
//!   the same logic.
//! - [`OperatorSpec`] / [`PluginSource`]: a resolved operator of a job.
//! - [`StateShape`]: the identity of an operator's state (its shape's
//!   name and version, and the shapes it migrates from), which swaps and
//!   restores into another plugin compare.
//!
//! Arrows point down only: `shape` -> `operator` -> `instance` ->
//! `engine` -> `cache` -> `bindings` -> `wasi`.

mod bindings;
pub mod cache;
mod engine;
mod instance;
mod operator;
mod shape;
mod spec;
pub mod wasi;

pub use crate::batch::ACCEPTED_WIT_VERSIONS;
pub use cache::default_cache_dir;
pub use engine::{EngineSettings, LoadedPlugin, WeirEngine};
pub use instance::PluginInstance;
pub use operator::{Operator, OperatorFactory, PluginLoader, WasmOperatorFactory};
pub use shape::{StateShape, Takeover};
pub use spec::{OperatorSpec, PluginSource};
