//! Barriers as the runtime asks for them: a [`Trigger`] from outside (the
//! control endpoint, `weir stop`, a swap) becomes a [`BarrierRequest`]
//! when the router sees it due; the source gets only an opaque
//! [`Barrier`] token for it, which it hands back with its position at the
//! next record boundary.

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::swap::Probation;
use crate::checkpoint::manifest::{Kind, Manifest};

pub use crate::source::Barrier;

/// Reply to whoever asked for a savepoint.
pub type Reply = Sender<Result<Manifest, String>>;

/// A request from outside (control endpoint, `weir stop`).
#[derive(Debug)]
pub enum Trigger {
    /// Take a savepoint; with `stop`, end the job right after it. A name
    /// that [`crate::checkpoint::check_savepoint_name`] refuses takes
    /// neither a savepoint nor a stop: the reply says why.
    Savepoint {
        /// Savepoint name (default `sp-<id>`, also for an empty name).
        name: Option<String>,
        /// Stop the job once the barrier is injected.
        stop: bool,
        /// Gets the manifest when the savepoint is complete.
        reply: Option<Reply>,
    },
    /// Take a checkpoint now; with `stop`, end the job right after it
    /// (a group job's partition handed to another process).
    Checkpoint {
        /// Stop the job once the barrier is injected.
        stop: bool,
    },
    /// Swap an operator's plugin at a barrier (pre-flight passed).
    Swap {
        /// The swap, shared with the workers.
        probation: Arc<Probation>,
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
    pub swap: Option<Arc<Probation>>,
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

/// The barriers handed to the source and not yet injected, by token.
/// A source injects a barrier right after it got its token, so this holds
/// at most one in practice.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    next: u64,
    waiting: Vec<(u64, BarrierRequest)>,
}

impl Pending {
    /// Keep `req` until the source hands back the token returned.
    pub fn hand_out(&mut self, req: BarrierRequest) -> Barrier {
        self.next += 1;
        self.waiting.push((self.next, req));
        Barrier::new(self.next)
    }

    /// The request `token` stands for.
    pub fn take(&mut self, token: Barrier) -> Option<BarrierRequest> {
        let at = self.waiting.iter().position(|(n, _)| *n == token.seq())?;
        Some(self.waiting.swap_remove(at).1)
    }
}

/// Per partition, the newest checkpoint whose output its sink has
/// committed (after the checkpoint's manifest was durable). A source that
/// tells the outside world how far it got (a Kafka consumer group's
/// committed offsets) goes by the oldest of them: a group offset past
/// output not yet produced would let a run that starts from the group's
/// offsets skip that output.
#[derive(Debug)]
pub struct Committed(Vec<std::sync::atomic::AtomicU64>);

impl Committed {
    /// Nothing committed yet, for `partitions` partitions.
    pub fn new(partitions: usize) -> Self {
        Self((0..partitions).map(|_| Default::default()).collect())
    }

    /// Partition `p`'s sink committed the output of checkpoint `id`.
    pub fn set(&self, p: usize, id: u64) {
        if let Some(slot) = self.0.get(p) {
            slot.fetch_max(id, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// The newest checkpoint whose output every partition committed (0:
    /// none yet).
    pub fn all(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.load(std::sync::atomic::Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }
}
