//! One read of the consumer: a batch of messages (or one, a message per
//! `poll`), each decoded and routed to its partition.

use std::ops::ControlFlow;
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;

use super::batch::View;
use super::offsets::position;
use super::{KafkaSource, KafkaSourceSpec};
use crate::Result;
use crate::batch::{NO_TIMESTAMP, Origin};
use crate::source::Output;
use crate::source::format::{KeySpec, LineParser};

/// The parts of the source a record needs while a batch lends it.
pub(super) struct Reading<'a> {
    /// The resolved source.
    spec: &'a KafkaSourceSpec,
    /// Finds key and event time in record values.
    parser: &'a LineParser,
    /// Next offset to read, per partition.
    next: &'a mut [i64],
    /// End offset (exclusive) per partition of a bounded run.
    end: Option<&'a [i64]>,
    /// Kafka timestamp of the last record read, per partition.
    last_time: &'a mut [i64],
    /// Offsets at barriers not yet committed to the group.
    to_commit: &'a mut Vec<(u64, Vec<i64>)>,
}

impl Reading<'_> {
    /// Decode one message and route it to its partition; a message of no
    /// assigned partition, before the next offset or past the end is
    /// skipped.
    fn take(&mut self, m: View<'_>, out: &mut dyn Output) -> Result<ControlFlow<()>> {
        let Some(partition) = self.spec.local(m.partition) else {
            return Ok(ControlFlow::Continue(()));
        };
        if partition >= self.next.len() || m.offset < self.next[partition] {
            return Ok(ControlFlow::Continue(()));
        }
        if self.end.is_some_and(|e| m.offset >= e[partition]) {
            return Ok(ControlFlow::Continue(()));
        }
        out.read_bytes(m.payload.len() as u64);
        let flow = self.handle(partition, &m, out)?;
        self.next[partition] = m.offset + 1;
        if let Some(t) = m.time {
            self.last_time[partition] = t;
        }
        Ok(flow)
    }

    fn handle(
        &mut self,
        partition: usize,
        m: &View<'_>,
        out: &mut dyn Output,
    ) -> Result<ControlFlow<()>> {
        let origin = Origin {
            unit: self.spec.kafka_id(partition) as u32,
            offset: m.offset as u64,
        };
        let parsed = match self.parser.parse(m.payload) {
            Ok(p) => p,
            Err(reason) => {
                out.malformed(origin, &reason, m.payload)?;
                return Ok(ControlFlow::Continue(()));
            }
        };
        let timestamp = match self.spec.timestamp {
            KeySpec::None => m.time.unwrap_or(NO_TIMESTAMP),
            _ => parsed.timestamp,
        };
        if let Some(req) = out.event_time_barrier(timestamp) {
            // The barrier goes before this record: its offset is next.
            let mut at: Vec<i64> = self.next.to_vec();
            at[partition] = m.offset;
            if let Some(id) = out.next_barrier_id() {
                self.to_commit.push((id, at.clone()));
            }
            if out.barrier(req, position(&self.spec.topic, &at)).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        let key: &[u8] = match (&self.spec.key, &parsed.key) {
            (KeySpec::None, _) => m.key.unwrap_or_default(),
            (_, Some(k)) => k,
            (_, None) => &[],
        };
        Ok(out.record_in(partition, key, m.payload, timestamp, origin))
    }
}

/// A message `poll` returned, as a batch's message.
fn view<'a>(m: &'a rdkafka::message::BorrowedMessage<'_>) -> View<'a> {
    View {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        payload: m.payload().unwrap_or_default(),
        time: m.timestamp().to_millis(),
    }
}

/// What one read of the consumer brought.
pub(super) struct Read {
    /// Messages read (records, and messages skipped).
    pub messages: usize,
    /// The first error librdkafka reported (end of a partition aside).
    pub error: Option<KafkaError>,
    /// A record's barrier stopped the job.
    pub stopped: bool,
}

impl KafkaSource {
    /// Read one batch (one message with `WEIR_KAFKA_CONSUME=message`),
    /// waiting up to `wait` for the first, and hand its records on; then
    /// serve the consumer's own queue (errors, commit results).
    pub(super) fn read(&mut self, wait: Duration, out: &mut dyn Output) -> Result<Read> {
        let Self {
            spec,
            consumer,
            batches,
            parser,
            next,
            end,
            last_time,
            to_commit,
            ..
        } = self;
        let mut reading = Reading {
            spec,
            parser,
            next,
            end: end.as_deref(),
            last_time,
            to_commit,
        };
        let mut read = Read {
            messages: 0,
            error: None,
            stopped: false,
        };
        let mut took = |m: KafkaResult<View<'_>>, read: &mut Read| -> Result<bool> {
            read.messages += 1;
            match m {
                Ok(v) => {
                    if reading.take(v, out)?.is_break() {
                        read.stopped = true;
                        return Ok(false);
                    }
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::PartitionEOF)) => {}
                Err(e) => {
                    read.error.get_or_insert(e);
                }
            }
            Ok(true)
        };
        let own_wait = match batches {
            Some(b) => {
                for i in 0..b.fill(wait) {
                    if !took(b.get(i), &mut read)? {
                        return Ok(read);
                    }
                }
                Duration::ZERO
            }
            None => wait,
        };
        match consumer.poll(own_wait) {
            Some(Ok(m)) => {
                took(Ok(view(&m)), &mut read)?;
            }
            Some(Err(e)) => {
                took(Err(e), &mut read)?;
            }
            None => {}
        }
        Ok(read)
    }
}
