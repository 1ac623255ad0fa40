//! Registered event-time timers of one operator.

use std::collections::BTreeSet;

use crate::batch::Timer;
use crate::checkpoint::manifest::encode_timers;

/// Registered timers of one operator, ordered by time, deduplicated.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    set: BTreeSet<(i64, Vec<u8>)>,
}

impl Timers {
    /// Register a timer (idempotent).
    pub fn register(&mut self, t: Timer) {
        self.set.insert((t.time, t.key));
    }

    /// Remove and return every timer at or before `watermark`, in order.
    pub fn due(&mut self, watermark: i64) -> Vec<Timer> {
        let later = match watermark.checked_add(1) {
            Some(next) => self.set.split_off(&(next, Vec::new())),
            None => BTreeSet::new(),
        };
        std::mem::replace(&mut self.set, later)
            .into_iter()
            .map(|(time, key)| Timer { key, time })
            .collect()
    }

    /// Encode for a checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        encode_timers(self.set.iter().map(|(time, key)| (*time, &key[..])))
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_once() {
        let mut t = Timers::default();
        for (k, time) in [("b", 20), ("a", 10), ("a", 10), ("c", 30)] {
            t.register(Timer {
                key: k.into(),
                time,
            });
        }
        assert_eq!(t.len(), 3);
        let due: Vec<_> = t.due(20).into_iter().map(|t| (t.key, t.time)).collect();
        assert_eq!(due, vec![(b"a".to_vec(), 10), (b"b".to_vec(), 20)]);
        assert!(t.due(29).is_empty());
        assert_eq!(t.due(i64::MAX).len(), 1);
        assert_eq!(t.len(), 0);
    }
}
