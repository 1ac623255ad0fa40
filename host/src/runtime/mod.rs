//! The runtime: the same for every connector. It knows sources and sinks
//! only through their traits ([`crate::source::Output`],
//! [`crate::sink::Sink`]), plugins only through theirs
//! ([`crate::plugin::Operator`], [`crate::plugin::OperatorFactory`] and
//! [`crate::plugin::PluginLoader`], which loads another version for a swap
//! or a restart), and state only as opaque bytes and JSON values.
//!
//! - `barrier`: what asks for a barrier ([`Trigger`]), the request the
//!   router makes of it ([`BarrierRequest`]), and the opaque token a source
//!   hands back with its position.
//! - `router`: the source's [`crate::source::Output`]: routes records to
//!   partitions by key (Kafka's default partitioner), batches them, tracks
//!   the watermark and injects barriers.
//! - `task`: partitions (operator chain instance, timers, watermark, sink
//!   writer: the unit of state) and the worker threads that run them:
//!   `timers`, `partition`, `snapshot`, `probation`, `worker`.
//! - `coordinator`: collects a barrier's partition snapshots, writes the
//!   checkpoint and tells workers to commit or abort.
//! - [`control`]: the HTTP control endpoint of a running job (server,
//!   connections, access, routes, status, metrics exposition, the status
//!   page, run folder) and its client.
//! - [`swap`]: hot swaps of an operator's plugin: `record`, `log`,
//!   `probation`, `preflight`, `restart` (the version a restart runs).
//! - `metrics`: shared counters; [`figures`]: per partition and operator,
//!   and the recent checkpoints.

mod barrier;
pub mod control;
mod coordinator;
pub mod figures;
pub(crate) mod handoff;
mod metrics;
mod router;
pub mod swap;
mod task;

pub(crate) use barrier::Committed;
pub use barrier::{BarrierRequest, Reply, Trigger};
pub use coordinator::CheckpointStats;
pub(crate) use coordinator::{CoordMsg, Coordinator, Decision};
pub use metrics::{Metrics, Snapshot, process_cpu_time};
pub use router::BatchSettings;
pub(crate) use router::{Barriers, Router};
pub use task::TaskStats;
pub(crate) use task::{Chain, Partition, Shared, TaskMsg, Worker};
