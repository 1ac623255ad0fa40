//! State on the object store: the [`store`] (a thin wrapper over
//! `object_store`), [`manifest`]s (the commit point of a checkpoint or
//! savepoint, format 2, format 1 read) and [`restore`] (find and verify one
//! before a job starts from it). The barrier requests that make them are
//! here too; the runtime's coordinator writes them
//! (see [`crate::runtime`]).

pub(crate) mod lease;
pub mod manifest;
pub(crate) mod restore;
pub mod store;

use crossbeam_channel::Sender;

use manifest::{Kind, Manifest, checkpoint_name};

/// Reply to whoever asked for a savepoint.
pub type Reply = Sender<Result<Manifest, String>>;

/// A request from outside (control endpoint, `weir stop`).
#[derive(Debug)]
pub enum Trigger {
    /// Take a savepoint; with `stop`, end the job right after it.
    Savepoint {
        /// Savepoint name (default `sp-<id>`).
        name: Option<String>,
        /// Stop the job once the barrier is injected.
        stop: bool,
        /// Gets the manifest when the savepoint is complete.
        reply: Option<Reply>,
    },
    /// Swap an operator's plugin at a barrier (pre-flight passed).
    Swap {
        /// The swap, shared with the workers.
        probation: std::sync::Arc<crate::runtime::swap::Probation>,
    },
}

/// A barrier due now, which the source injects at its next record boundary
/// with its position.
#[derive(Debug)]
pub struct BarrierRequest {
    /// Checkpoint or savepoint.
    pub kind: Kind,
    /// Savepoint name, if given.
    pub name: Option<String>,
    /// Stop the job right after it.
    pub stop: bool,
    /// Who to tell when it completes.
    pub reply: Option<Reply>,
    /// A plugin swap at this barrier.
    pub swap: Option<std::sync::Arc<crate::runtime::swap::Probation>>,
}

impl BarrierRequest {
    /// A checkpoint, nobody to tell.
    pub fn checkpoint() -> Self {
        Self {
            kind: Kind::Checkpoint,
            name: None,
            stop: false,
            reply: None,
            swap: None,
        }
    }
}

/// Default name of a triggered savepoint.
pub fn savepoint_name(id: u64) -> String {
    format!("sp-{}", checkpoint_name(id))
}

/// Prefix of the savepoints the event-time schedule takes.
pub const EVENT_TIME_PREFIX: &str = "et-";

/// Name of the savepoint taken when the watermark reaches `boundary`.
pub fn event_time_savepoint_name(boundary: i64) -> String {
    let t = manifest::format_time(boundary);
    format!("{EVENT_TIME_PREFIX}{}", t.replace([':', '.'], "-"))
}
