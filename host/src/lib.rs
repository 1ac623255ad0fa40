//! # Weir: a stream processor whose operators are WebAssembly components
//!
//! A job reads records from a source, routes them by key to `parallelism`
//! tasks, runs each task's chain of operator plugins (Wasm components, one
//! instance per task) over packed batches, and writes what they emit to a
//! sink. Records a source cannot parse or an operator refuses go to the
//! dead-letter output with a reason; nothing is dropped silently.
//!
//! # Layout
//! - [`config`]: the user's job file (TOML) and its resolution into a plan.
//! - [`engine`]: the wasmtime engine, sandbox limits (epoch deadline per call,
//!   memory cap per instance) and the on-disk compiled-component cache.
//! - [`plugin`]: one loaded operator instance: init, process, timers,
//!   snapshot, restore; maps traps to errors naming the plugin.
//! - [`batch`]: the packed batch that crosses the Wasm boundary.
//! - [`partition`]: Kafka's default partitioner (murmur2), for routing.
//! - [`source`]: sources (`file`) behind the [`source::Source`] trait.
//! - [`sink`]: sinks (`stdout`, `file`) and the dead-letter output.
//! - [`task`]: one pipeline instance: operator chain, timers, sink.
//! - [`checkpoint`]: barriers, the coordinator, manifests, the state store,
//!   restore.
//! - [`control`]: the HTTP control endpoint of a running job.
//! - [`job`]: runs a plan: source thread, task threads, progress, report.
//! - [`generate`]: the state-machine event generator (`weir generate`).
//! - [`demo`]: `weir demo`.
//! - [`cli`]: the `weir` command line.
//! - [`error`]: the library error type, which says who must act.

pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod engine;
pub mod error;
pub mod generate;
pub mod job;
pub mod metrics;
pub mod partition;
pub mod plugin;
pub mod sink;
pub mod source;
pub mod task;

pub use error::{Error, Result};

/// The Weir host version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
