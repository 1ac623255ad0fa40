//! Hot swaps: a new version of one operator's plugin taken into a running
//! job, with probation and rollback.
//!
//! - [`Swapper`] (the control endpoint's side) runs the pre-flight before
//!   anything pauses: compile the new component (cache), check its WIT
//!   version and imports, instantiate it once and ask whether it reads the
//!   running state version. Only then does it ask the router for a swap
//!   barrier (a savepoint named `swap-N`, kept like any savepoint).
//! - At that barrier every worker snapshots its partitions (the savepoint,
//!   old version), creates the new instance in its own store and restores
//!   the snapshot into it. The old instance and the barrier's state stay.
//! - [`Probation`] is what the workers share until the new version has
//!   passed: `probation_batches` batches, then the next barrier (which the
//!   router brings forward once those batches are sent). Until then each
//!   partition holds back its output and keeps its input; any failure of
//!   the new version (trap, error, deadline, memory cap) anywhere rolls
//!   every partition back to the old instance and replays the kept input,
//!   so no record is lost or written twice. The workers meet at each
//!   barrier of the swap ([`Probation::round`]) so that all of them decide
//!   the same.
//! - A rollback with no version running ([`schedule_rollback`]: `weir
//!   plugin rollback` of a stopped job, or a restart strategy after a newly
//!   promoted version failed) is a scheduled record; the next run starts
//!   on the previous version from the newest checkpoint.
//! - [`SwapLog`] keeps every swap's record (times, digests, pause, outcome)
//!   in memory for `GET /status` and in the store (`jobs/<job>/swaps/`)
//!   for `weir plugin history`; the components swapped in are stored by
//!   digest (`jobs/<job>/plugins/<digest>.wasm`), so a restart from a
//!   checkpoint runs the version that checkpoint names.
//!
//! Its parts: [`record`](SwapRecord) (what a swap records), the swap
//! [`log`](SwapLog), [`probation`](Probation) (what the workers share),
//! [`preflight`](Swapper) (the control endpoint's side) and
//! [`restart`](versions_for_restart) (which version a restart runs).

mod log;
mod offline;
mod preflight;
mod probation;
mod record;
mod restart;

pub use log::{Current, SwapLog, component_key, history_prefix, read_history};
pub use offline::{promoted_since, schedule_rollback};
pub use preflight::{MAX_PROBATION_BATCHES, MAX_PROBATION_TIMEOUT, ProbationAsk, Refused, Swapper};
pub use probation::{Probation, SwapOrder};
pub use record::{Outcome, Pause, SwapRecord};
pub use restart::versions_for_restart;

/// Default number of batches a new version runs on probation.
pub const DEFAULT_PROBATION_BATCHES: u64 = 16;

/// Default deadline of a probation: the new version must have run its
/// batches within ten minutes of the swap, or it is rolled back.
pub const DEFAULT_PROBATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::checkpoint::store::{StateStore, StoreSpec};
    use crate::plugin::{Operator, OperatorFactory};
    use crate::{Error, Result};

    /// A factory that is never called: the rendezvous does not create
    /// instances.
    struct Unused;
    impl OperatorFactory for Unused {
        fn name(&self) -> &str {
            "op"
        }
        fn create(&self, _: usize) -> Result<Box<dyn Operator>> {
            Err(Error::Internal("not in this test".into()))
        }
        fn init(&self, _: &mut dyn Operator) -> Result<()> {
            Ok(())
        }
    }

    fn probation(workers: usize) -> (Arc<Probation>, Arc<AtomicUsize>, Arc<SwapLog>) {
        let spec = StoreSpec {
            url: "memory://".into(),
            ..Default::default()
        };
        let store = StateStore::open(&spec, std::path::Path::new(".")).unwrap();
        let log = Arc::new(SwapLog::open("job", store, Vec::new()).unwrap());
        log.add(SwapRecord::requested(1, "op", ("a", "b"), "swap"));
        let gone = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let p = Probation::new(
            SwapOrder {
                seq: 1,
                operator: 0,
                factory: Arc::new(Unused),
                digest: "b".into(),
                probation_batches: 1,
                probation_timeout: Duration::from_secs(60),
            },
            log.clone(),
            (workers, gone.clone()),
            tx,
        );
        (Arc::new(p), gone, log)
    }

    fn meet(p: &Arc<Probation>, id: u64) -> std::thread::JoinHandle<bool> {
        let p = p.clone();
        std::thread::spawn(move || p.round(id))
    }

    #[test]
    fn every_worker_gets_the_same_verdict() {
        let (p, _, log) = probation(3);
        let a = meet(&p, 7);
        let b = meet(&p, 7);
        std::thread::sleep(Duration::from_millis(20));
        p.fail("trap in partition 2");
        let c = meet(&p, 7);
        assert_eq!(
            [a.join().unwrap(), b.join().unwrap(), c.join().unwrap()],
            [false; 3]
        );
        let r = &log.records()[0];
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert_eq!(r.cause.as_deref(), Some("trap in partition 2"));
        // A later failure does not change the first cause.
        p.fail("another");
        assert_eq!(
            log.records()[0].cause.as_deref(),
            Some("trap in partition 2")
        );
    }

    #[test]
    fn a_worker_that_ended_is_not_waited_for() {
        let (p, gone, _) = probation(3);
        let a = meet(&p, 7);
        let b = meet(&p, 7);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!a.is_finished(), "waits for the third worker");
        gone.fetch_add(1, Ordering::AcqRel);
        assert!(a.join().unwrap() && b.join().unwrap(), "passed");
    }

    #[test]
    fn the_end_of_a_run_joins_the_barrier_being_met() {
        let (p, _, _) = probation(2);
        let a = meet(&p, 9);
        std::thread::sleep(Duration::from_millis(20));
        // The other worker's input ended (it never saw barrier 9).
        let b = meet(&p, u64::MAX);
        assert!(a.join().unwrap() && b.join().unwrap());
        // Rounds after a decided one start afresh.
        let c = meet(&p, 10);
        let d = meet(&p, 10);
        assert!(c.join().unwrap() && d.join().unwrap());
    }

    #[test]
    fn a_restart_settles_open_swaps_by_the_version_it_runs() {
        let (_, _, log) = probation(1);
        log.settle_open(&[("op".into(), "b".into())]);
        assert_eq!(log.records()[0].outcome, Outcome::Promoted);
        let (_, _, log) = probation(1);
        log.settle_open(&[("op".into(), "a".into())]);
        assert_eq!(log.records()[0].outcome, Outcome::RolledBack);
    }
}
