//! Routing records into their partitions' batches, beyond the plain
//! [`Output::record`](crate::source::Output::record): into a partition the
//! source names (Kafka's), and in runs
//! ([`Output::records`](crate::source::Output::records)), batched in one
//! loop without a call per record.

use std::ops::ControlFlow;
use std::time::Instant;

use super::Router;
use super::partition_time::PartitionTime;
use crate::batch::{NO_TIMESTAMP, Origin, append_ranges};
use crate::partition::partition_for_key;
use crate::source::{RecordSpan, record_each};

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
        if self.partitions() == 1 {
            return self.route_spans_to_one(text, spans, unit);
        }
        record_each(self, text, spans, unit)
    }

    /// [`Router::route_spans`] with one partition: the spans go to its
    /// batch in bulk, up to where the batch is full (as
    /// [`Router::push`] would send it), each of the batch's lists filled
    /// in a loop of its own.
    fn route_spans_to_one(
        &mut self,
        text: &[u8],
        mut spans: &[RecordSpan],
        unit: u32,
    ) -> ControlFlow<()> {
        let (max_records, max_bytes) = (self.settings.max_records, self.settings.max_bytes);
        while !spans.is_empty() {
            let batch = &mut self.pending[0];
            let (take, full) = until_full(
                batch.data.len(),
                batch.data.byte_size(),
                spans,
                max_records,
                max_bytes,
            );
            let (now, rest) = spans.split_at(take);
            // The lines' stretch of `text`: a bound on their keys' bytes
            // and on their own, as the source hands them on.
            let hint = match (now.first(), now.last()) {
                (Some(a), Some(b)) => b.end.saturating_sub(a.start) as usize,
                _ => 0,
            };
            let d = &mut batch.data;
            append_ranges(&mut d.keys, &mut d.key_ends, text, now, hint, |s| {
                s.key_start as usize..s.key_end as usize
            });
            append_ranges(&mut d.values, &mut d.value_ends, text, now, hint, |s| {
                s.start as usize..s.end as usize
            });
            d.timestamps
                .resize(d.timestamps.len() + now.len(), NO_TIMESTAMP);
            batch.origins.extend(now.iter().map(|s| s.origin(unit)));
            spans = rest;
            if full {
                self.send(0, true)?;
            }
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
            return self.send(partition, true);
        }
        ControlFlow::Continue(())
    }
}

/// How many of `spans` a batch of `len` records and `bytes` key and value
/// bytes takes before it is full (`len >= max_records` or `bytes >=
/// max_bytes` after a record, as [`Router::push`] checks), and whether it is
/// then full: records are pushed one at a time up to and including the
/// one that fills it.
fn until_full(
    mut len: usize,
    mut bytes: usize,
    spans: &[RecordSpan],
    max_records: usize,
    max_bytes: usize,
) -> (usize, bool) {
    for (i, s) in spans.iter().enumerate() {
        len += 1;
        bytes += (s.key_end - s.key_start + s.end - s.start) as usize;
        if len >= max_records || bytes >= max_bytes {
            return (i + 1, true);
        }
    }
    (spans.len(), false)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::runtime::metrics::Metrics;
    use crate::runtime::router::BatchSettings;
    use crate::runtime::task::TaskMsg;
    use crate::sink::dead_letter::DeadLetters;
    use crate::source::Output;

    type Sent = (
        Vec<u8>,
        Vec<u32>,
        Vec<u8>,
        Vec<u32>,
        Vec<i64>,
        Vec<(u32, u64)>,
    );

    /// Route `f`'s records through a one-partition router with small
    /// batches and return every batch it sent, flushed at the end.
    fn batches(f: impl FnOnce(&mut Router)) -> Vec<Sent> {
        let (tx, rx) = crate::runtime::handoff::channel(4096);
        let (_recycle, recycled) = crossbeam_channel::unbounded();
        let settings = BatchSettings {
            max_records: 7,
            max_bytes: 200,
            linger: Duration::from_secs(60),
        };
        let mut router = Router::new(
            vec![tx],
            1,
            recycled,
            settings,
            0,
            DeadLetters::to_stderr(),
            Arc::new(Metrics::default()),
            ("test", Duration::from_secs(60)),
        );
        f(&mut router);
        let _ = Output::flush(&mut router);
        drop(router);
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|m| match m {
                TaskMsg::Batch { batch, .. } => {
                    let b = batch.data;
                    let origins = batch.origins.iter().map(|o| (o.unit, o.offset)).collect();
                    Some((
                        b.keys,
                        b.key_ends,
                        b.values,
                        b.value_ends,
                        b.timestamps,
                        origins,
                    ))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn spans_in_bulk_make_the_batches_records_one_by_one_do() {
        // Lines of 0 to 40 bytes, keys of up to 20; then lines of 20 bytes
        // keyed by the whole line (40 bytes a record: five fill a batch to
        // exactly its 200 bytes). The last lines end within 16 bytes of the
        // text's end (no 16-byte word to read).
        let mut text = Vec::new();
        let mut spans = Vec::new();
        for i in 0..230u32 {
            let len = if i < 200 { (i * 7 % 41) as usize } else { 20 };
            let start = text.len() as u32;
            text.extend((0..len).map(|j| b'a' + ((i as usize + j) % 26) as u8));
            let key_len = if i < 200 {
                (i % 21).min(len as u32)
            } else {
                20
            };
            spans.push(RecordSpan {
                key_start: start,
                key_end: start + key_len,
                start,
                end: start + len as u32,
                line: u64::from(i) + 1,
            });
            text.push(b'\n');
        }
        let one_by_one = batches(|r| {
            for s in &spans {
                let _ = r.record(
                    Some(s.key(&text)),
                    s.value(&text),
                    NO_TIMESTAMP,
                    s.origin(3),
                );
            }
        });
        // Both limits close batches: some at 7 records, some at 200 bytes.
        let full_by = |b: &Sent| (b.1.len() == 7, b.0.len() + b.2.len() >= 200);
        assert!(one_by_one.iter().any(|b| full_by(b) == (true, false)));
        assert!(one_by_one.iter().any(|b| full_by(b) == (false, true)));
        assert!(one_by_one.iter().any(|b| b.0.len() + b.2.len() == 200));
        // Handed on in runs of several sizes, the one-record run included.
        for run in [1, 2, 5, 7, 13, 230] {
            let bulk = batches(|r| {
                for chunk in spans.chunks(run) {
                    let _ = r.records(&text, chunk, 3);
                }
            });
            assert!(bulk == one_by_one, "runs of {run} differ");
        }
    }
}
