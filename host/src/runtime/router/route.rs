//! Routing records into their partitions' batches, beyond the plain
//! [`Output::record`](crate::source::Output::record): into a partition the
//! source names (Kafka's), and in runs
//! ([`Output::records`](crate::source::Output::records)), batched in one
//! loop without a call per record.

use std::ops::ControlFlow;
use std::time::Instant;

use super::Router;
use super::partition_time::PartitionTime;
use crate::batch::{NO_TIMESTAMP, Origin};
use crate::partition::partition_for_key;
use crate::source::RecordSpan;

impl Router {
    /// [`Output::record_in`](crate::source::Output::record_in).
    #[inline(always)]
    pub(super) fn route_in(
        &mut self,
        partition: usize,
        key: &[u8],
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()> {
        let n = self.partitions();
        let idle_timeout = self.idle_timeout;
        let t = self.partition_time.get_or_insert_with(|| PartitionTime {
            max: vec![i64::MIN; n],
            seen: vec![Instant::now(); n],
            fresh: vec![false; n],
            idle_timeout,
        });
        t.fresh[partition] = true;
        if timestamp != NO_TIMESTAMP && timestamp > t.max[partition] {
            t.max[partition] = timestamp;
            self.max_timestamp = self.max_timestamp.max(timestamp);
        }
        self.push(partition, key, value, timestamp, origin)
    }

    /// Route each span of `text` as [`Output::record`](crate::source::Output::record)
    /// would a keyed record without an event time.
    pub(super) fn route_spans(
        &mut self,
        text: &[u8],
        spans: &[RecordSpan],
        unit: u32,
    ) -> ControlFlow<()> {
        for s in spans {
            let key = s.key(text);
            let origin = Origin {
                unit,
                offset: s.line,
            };
            self.push(
                self.key_partition(key),
                key,
                s.value(text),
                NO_TIMESTAMP,
                origin,
            )?;
        }
        ControlFlow::Continue(())
    }

    /// The partition a keyed record goes to (the only one, or by the
    /// key's hash).
    #[inline(always)]
    pub(super) fn key_partition(&self, key: &[u8]) -> usize {
        match self.partitions() {
            n if n > 1 => partition_for_key(key, n as u32) as usize,
            _ => 0,
        }
    }

    /// Append a record to `partition`'s batch, and send the batch once it
    /// is full.
    #[inline(always)]
    pub(super) fn push(
        &mut self,
        partition: usize,
        key: &[u8],
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()> {
        let batch = &mut self.pending[partition];
        batch.push(key, value, timestamp, origin);
        if batch.data.len() >= self.settings.max_records
            || batch.data.byte_size() >= self.settings.max_bytes
        {
            return self.send(partition);
        }
        ControlFlow::Continue(())
    }
}
