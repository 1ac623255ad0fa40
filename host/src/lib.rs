//! # Weir: a stream processor whose operators are WebAssembly components
//!
//! A job reads records from a source, routes them by key to partitions (the
//! unit of state; each has its own instance of the operator chain), runs
//! each partition's chain of operator plugins (Wasm components) over packed
//! batches on `parallelism` worker threads, and writes what they emit to a
//! sink. Records a source cannot parse or an operator refuses go to the
//! dead-letter output with a reason; nothing is dropped silently.
//!
//! # Layout
//! Arrows point down only: a module uses only modules after it in `cli`,
//! `demo`, `job`, `runtime`, `config`, `source`, `checkpoint`, `sink`,
//! `kafka`, `plugin`, then the shared vocabulary (`batch`, `partition`,
//! `error`, `digest`) and `generate`.
//! - [`cli`]: the `weir` command line; [`demo`], [`generate`], [`diff`]:
//!   its `demo`, `generate` and `diff` commands.
//! - [`config`]: the user's job file (TOML) and its resolution into a
//!   [`config::Plan`].
//! - [`job`]: assembles a plan (connectors, plugins, state) and runs it.
//! - [`runtime`]: the same for every connector: the router (partitioning,
//!   batching, watermarks, barrier injection), partitions and the worker
//!   threads that run them, the checkpoint coordinator, the control
//!   endpoint. It sees sources, sinks and plugins only through traits.
//! - [`plugin`]: plugin hosting: the wasmtime engine, sandbox limits,
//!   compiled-component cache, one instance per partition.
//! - Connectors, one module each: [`source`] (`source/file/`,
//!   `source/kafka.rs`) and [`sink`] (`sink/file.rs`, `sink/kafka.rs`,
//!   `sink/stdout.rs`, and the dead-letter output). The Kafka client
//!   helpers both Kafka connectors use are in `kafka.rs`. rdkafka stays a
//!   dependency of this crate, not a crate of its own: one binary, and its
//!   cold build (about 2.5 min) is a small part of the ~15 min cold build
//!   that wasmtime dominates.
//! - [`checkpoint`]: the state store, manifests, restore.
//!
//! The public API is what the `weir` binary, the tests and the benchmarks
//! drive: [`job`], [`config`], [`checkpoint`] (triggers, manifests, the
//! store), [`plugin`], [`runtime`] (the control client and figures),
//! [`Error`]. Connectors, the sink module and the helpers are private
//! (`pub(crate)`); their settings reach users through [`config`].
//! - [`batch`], [`partition`], [`error`], [`digest`]: shared vocabulary.
//!   `batch` holds the WIT types (generated there), so `plugin` uses
//!   `batch` and not the reverse.
//!
//! A new connector is a module under `source/` or `sink/` implementing
//! [`source::Source`] or [`sink::SinkFactory`] + [`sink::Sink`], a variant
//! of [`config::SourceSpec`] / [`config::SinkSpec`], and one arm in
//! [`source::open`] / [`sink::open`]. Its position and commit state are
//! opaque JSON to the runtime.
//!
//! # A checkpoint, step by step
//! 1. The router sees a barrier is due (interval, trigger, event-time
//!    schedule) at a record boundary; the source hands over its position.
//! 2. The router tells the coordinator (`Begin`), flushes every partition's
//!    batch and sends the barrier to every worker behind them.
//! 3. Each worker, on the barrier, snapshots each of its partitions (every
//!    operator's state and timers, the watermark) and calls the sink's
//!    `pre_commit`, then sends it all to the coordinator and goes on.
//! 4. When every partition has reported, the coordinator uploads the blobs
//!    and writes `manifest.json` last: the commit point.
//! 5. The coordinator tells every worker `Commit(id)`; each sink commits what
//!    it pre-committed (the file sink renames its part files). A failed
//!    upload sends `Abort(id)` instead, and what it covered is committed by
//!    the next checkpoint.
//! 6. On restore, the sink factory's `recover` commits what the checkpoint
//!    covers and removes what was written after it, the source resumes at
//!    its recorded position, every partition at its state.

pub mod batch;
pub mod checkpoint;
pub mod cli;
mod codec;
pub mod config;
pub mod demo;
pub mod diff;
mod digest;
mod error;
pub mod generate;
pub mod job;
mod kafka;
pub mod partition;
pub mod plugin;
pub mod runtime;
mod sink;
pub mod source;

pub use error::{Error, Result};
pub(crate) use error::{lock, lock_or_recover};

/// The Weir host version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
