//! Probation: what the workers share from a swap's barrier until the new
//! version has passed (or failed): the rendezvous at each barrier of the
//! swap, so every worker decides the same, the pause, the evidence (the
//! batches and records the new version ran, and the deadline by which it
//! must have run its batches), and the promotion once the checkpoint after
//! the probation completes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::log::{Current, SwapLog};
use super::record::{Outcome, Pause, SwapRecord};
use crate::clock::now_ms;
use crate::digest::short;
use crate::lock_or_recover;
use crate::plugin::OperatorFactory;

/// What the workers are told to do at a swap barrier.
pub struct SwapOrder {
    /// The swap's number.
    pub seq: u64,
    /// Index of the operator in the chain.
    pub operator: usize,
    /// The new version.
    pub factory: Arc<dyn OperatorFactory>,
    /// Its digest.
    pub digest: String,
    /// Batches the new version must run before the probation can end.
    pub probation_batches: u64,
    /// How long the probation may wait for those batches (input may be
    /// idle) before the swap is rolled back.
    pub probation_timeout: Duration,
}

/// Rendezvous of the workers at the barriers of a swap.
#[derive(Default)]
struct Meet {
    /// The barrier being met at.
    id: u64,
    /// Workers arrived at it so far.
    arrived: usize,
    /// Decided barriers: (id, passed).
    decided: Vec<(u64, bool)>,
}

/// How often a worker waiting at a swap's barrier looks whether another
/// one ended.
const MEET_POLL: Duration = Duration::from_millis(50);

/// What the workers share while a swap is on.
pub struct Probation {
    /// The swap.
    pub order: SwapOrder,
    log: Arc<SwapLog>,
    workers: usize,
    /// Worker threads of the job that ended (for any reason): they no
    /// longer come to a barrier.
    gone: Arc<AtomicUsize>,
    failed: AtomicBool,
    meet: Mutex<Meet>,
    met: Condvar,
    pause: Mutex<Pause>,
    reply: Mutex<Option<Sender<std::result::Result<SwapRecord, String>>>>,
    /// The checkpoint whose completion promotes the new version (0: none).
    promote_at: AtomicU64,
    /// The outcome is final (promoted or rolled back).
    ended: AtomicBool,
    /// When the swap barrier was injected (the probation's clock).
    started: Mutex<Option<Instant>>,
    /// Batches the new version ran, over every partition.
    checked_batches: AtomicU64,
    /// Records in them.
    checked_records: AtomicU64,
}

impl std::fmt::Debug for Probation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probation")
            .field("seq", &self.order.seq)
            .field("operator", &self.order.operator)
            .field("digest", &self.order.digest)
            .field("failed", &self.has_failed())
            .finish()
    }
}

impl Probation {
    /// A swap run by `workers` worker threads.
    pub fn new(
        order: SwapOrder,
        log: Arc<SwapLog>,
        (workers, gone): (usize, Arc<AtomicUsize>),
        reply: Sender<std::result::Result<SwapRecord, String>>,
    ) -> Self {
        Self {
            order,
            log,
            workers,
            gone,
            failed: AtomicBool::new(false),
            meet: Mutex::new(Meet::default()),
            met: Condvar::new(),
            pause: Mutex::new(Pause::default()),
            reply: Mutex::new(Some(reply)),
            promote_at: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            started: Mutex::new(None),
            checked_batches: AtomicU64::new(0),
            checked_records: AtomicU64::new(0),
        }
    }

    /// A batch of `records` records ran through the new version.
    pub fn checked(&self, records: usize) {
        self.checked_batches.fetch_add(1, Ordering::AcqRel);
        self.checked_records
            .fetch_add(records as u64, Ordering::AcqRel);
    }

    /// Batches and records the new version ran so far.
    pub fn evidence(&self) -> (u64, u64) {
        (
            self.checked_batches.load(Ordering::Acquire),
            self.checked_records.load(Ordering::Acquire),
        )
    }

    /// Whether the barrier that ends the probation is due, with `sent`
    /// batches sent to the new version since the swap barrier: once they
    /// reach the probation's batches. Past the probation's deadline with
    /// fewer, the swap is rolled back (not promoted): an idle input is no
    /// evidence.
    pub fn end_due(&self, sent: u64) -> bool {
        let batches = self.order.probation_batches;
        if sent >= batches {
            return true;
        }
        let started = *lock_or_recover(&self.started);
        if started.is_some_and(|t| t.elapsed() >= self.order.probation_timeout) {
            self.fail(&format!(
                "the probation's deadline ({} s) passed after {sent} of its {batches} batches                  (the input was idle): not promoted without that evidence",
                self.order.probation_timeout.as_secs_f64()
            ));
        }
        false
    }

    /// At the barrier that ends the probation (every worker arrived, so
    /// the figures are final): why the new version may not be promoted
    /// though it failed nowhere, if it ran fewer batches than asked (a
    /// savepoint, a stop or the end of the input came first).
    pub fn short_of_evidence(&self) -> Option<String> {
        let (batches, _) = self.evidence();
        let asked = self.order.probation_batches;
        (batches < asked).then(|| {
            format!(
                "the probation ended (a savepoint, a stop or the end of the input) after \
                 {batches} of its {asked} batches: not promoted without that evidence"
            )
        })
    }

    /// Whether the new version failed somewhere.
    #[inline]
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The new version failed (`cause`): every partition rolls back. The
    /// first cause is the one recorded.
    pub fn fail(&self, cause: &str) {
        if self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(
            swap = self.order.seq, to = %short(&self.order.digest),
            "rolling back the swap: {cause}"
        );
        self.end(Outcome::RolledBack, Some(cause.to_string()), None);
    }

    /// A partition's pause at the swap barrier.
    pub fn add_pause(&self, p: &Pause) {
        lock_or_recover(&self.pause).max(p);
    }

    /// The swap barrier `id` was injected.
    pub fn injected(&self, id: u64) {
        *lock_or_recover(&self.started) = Some(Instant::now());
        self.log.update(self.order.seq, |r| r.checkpoint = Some(id));
    }

    /// Meet the other workers at barrier `id` of the swap; true when the
    /// new version failed nowhere (every worker gets the same answer).
    /// Workers that ended are not waited for; `u64::MAX` (a worker's end of
    /// input) joins the barrier the others are meeting at, if any.
    pub fn round(&self, id: u64) -> bool {
        let mut m = lock_or_recover(&self.meet);
        let open = m.arrived > 0 && !m.decided.iter().any(|(d, _)| *d == m.id);
        let id = if id == u64::MAX && open { m.id } else { id };
        if let Some(&(_, passed)) = m.decided.iter().find(|(d, _)| *d == id) {
            return passed;
        }
        if m.id != id {
            m.id = id;
            m.arrived = 0;
        }
        m.arrived += 1;
        loop {
            if let Some(&(_, passed)) = m.decided.iter().find(|(d, _)| *d == id) {
                return passed;
            }
            if m.arrived + self.gone.load(Ordering::Acquire) >= self.workers {
                let passed = !self.has_failed();
                m.decided.push((id, passed));
                self.met.notify_all();
                return passed;
            }
            m = self
                .met
                .wait_timeout(m, MEET_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every worker swapped at the barrier (or rolled back): answer the
    /// request.
    pub fn swapped(&self) {
        let Some(reply) = lock_or_recover(&self.reply).take() else {
            return;
        };
        let pause = *lock_or_recover(&self.pause);
        let record = if self.has_failed() {
            self.log.update(self.order.seq, |r| r.pause = Some(pause))
        } else {
            tracing::info!(
                swap = self.order.seq, to = %short(&self.order.digest),
                pause_ms = pause.total_ms, "swapped; the new version is on probation"
            );
            self.log.update(self.order.seq, |r| {
                r.pause = Some(pause);
                // Not over an outcome a failure recorded meanwhile.
                if r.outcome == Outcome::Requested {
                    r.outcome = Outcome::Probation;
                }
            })
        };
        let _ = reply.send(record.ok_or_else(|| "the swap record is gone".to_string()));
    }

    /// The probation passed at barrier `id`: the new version is promoted
    /// when that checkpoint completes.
    pub fn passed(&self, id: u64) {
        self.promote_at.store(id, Ordering::Release);
    }

    /// Checkpoint `id` completed: promote the new version if it was the
    /// one its probation waited for.
    pub fn committed(&self, id: u64) {
        let at = self.promote_at.load(Ordering::Acquire);
        if at == 0 || id < at || self.has_failed() {
            return;
        }
        self.log.set_current(
            self.order.operator,
            Current {
                digest: self.order.digest.clone(),
                factory: self.order.factory.clone(),
            },
        );
        tracing::info!(
            swap = self.order.seq, to = %short(&self.order.digest), checkpoint = id,
            "the new version passed probation: promoted"
        );
        // `id`, not `at`: if the checkpoint that ended the probation
        // failed, the next one that completes holds the new version.
        self.end(Outcome::Promoted, None, Some(id));
    }

    /// Whether the outcome is final.
    pub fn is_over(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn end(&self, outcome: Outcome, cause: Option<String>, promoted_at: Option<u64>) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let (batches, records) = self.evidence();
        self.log.update(self.order.seq, |r| {
            r.checked_batches = batches;
            r.checked_records = records;
            r.outcome = outcome;
            r.cause = cause;
            r.promoted_at = promoted_at;
            r.ended_ms = Some(now_ms());
        });
    }
}
