//! Event time per partition, for sources that route records to their own
//! partitions (Kafka): the largest event time of each, and whether it is
//! idle, without a clock read per record.

use std::time::{Duration, Instant};

/// Event time kept per partition, for sources that route records to their
/// own partitions (Kafka): each partition's watermark trails its own
/// largest event time; a partition without records for `idle_timeout`
/// follows the slowest active one, so it does not stall its timers.
///
/// A record only sets its partition's `fresh` flag (a clock read per record
/// cost the Kafka path more than routing it); the flags become times in
/// [`PartitionTime::settle`], once per tick or flush, so a partition counts
/// as seen at most one tick later than its last record.
pub(super) struct PartitionTime {
    /// Largest event time per partition.
    pub(super) max: Vec<i64>,
    /// When each partition last had a record, as of the last settle.
    pub(super) seen: Vec<Instant>,
    /// Partitions that had a record since the last settle.
    pub(super) fresh: Vec<bool>,
    /// A partition without records for this long is idle.
    pub(super) idle_timeout: Duration,
}

impl PartitionTime {
    /// Turn the `fresh` flags into times (one clock read).
    pub(super) fn settle(&mut self) {
        if self.fresh.contains(&true) {
            let now = Instant::now();
            for (seen, fresh) in self.seen.iter_mut().zip(&mut self.fresh) {
                if std::mem::take(fresh) {
                    *seen = now;
                }
            }
        }
    }

    /// Whether partition `p` has been without records for the idle timeout.
    pub(super) fn is_idle(&self, p: usize) -> bool {
        !self.fresh[p] && self.seen[p].elapsed() >= self.idle_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_idle_only_after_the_timeout_without_records() {
        let long_ago = Instant::now() - Duration::from_secs(10);
        let mut t = PartitionTime {
            max: vec![0; 2],
            seen: vec![long_ago; 2],
            fresh: vec![false; 2],
            idle_timeout: Duration::from_millis(200),
        };
        assert!(t.is_idle(0) && t.is_idle(1));
        // A record marks its partition; it is not idle before the settle...
        t.fresh[0] = true;
        assert!(!t.is_idle(0));
        assert!(t.is_idle(1));
        // ...nor after it, which dates it now.
        t.settle();
        assert!(!t.fresh[0]);
        assert!(!t.is_idle(0));
        assert!(t.is_idle(1));
        assert_eq!(
            t.seen[1], long_ago,
            "a partition without records keeps its time"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.is_idle(0), "idle once the timeout passed without records");
    }
}
