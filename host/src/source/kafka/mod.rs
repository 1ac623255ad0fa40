//! A Kafka topic as a source. Each Kafka partition is a Weir partition
//! (its own operator chain instance, state, timers and offset); records
//! are not re-hashed, so a partition's state is exactly what arrived through
//! it. One consumer on the source thread reads every partition with manual
//! `assign` and `read_committed` isolation.
//!
//! Positions: the next offset of each partition, recorded per partition in
//! every checkpoint. On restore the offsets come from the checkpoint, never
//! from the consumer group; after each completed checkpoint they are
//! committed to the group so that the usual lag tools work. A restored
//! offset outside a partition's log (deleted by retention) is refused with
//! the partition, the offset and the log's range, unless the job says to
//! start at the earliest or latest offset instead.
//!
//! Bounded runs: `until = "latest"` (the end offsets seen at start) or a
//! time; the source ends when every partition's position reaches its end,
//! which also holds when the last records are followed by transaction
//! markers (the position moves past them; no record arrives).
//!
//! The folder: the job-file table and its resolution (`config.rs`), start,
//! restored and end offsets (`offsets.rs`), the consumer lag (`lag.rs`),
//! reading a batch of messages at a time (`batch.rs`), and here the source
//! itself.

mod batch;
mod config;
mod lag;
pub(super) mod offsets;
mod read;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Map, Value, json};

use super::format::LineParser;
use super::{Completion, Output, Restored, Source};
use crate::batch::{Origin, Origins};
use crate::kafka::{Client, Context, REQUEST_TIMEOUT, client_config, external, partition_count};
use crate::{Error, Result};

/// The connector name in checkpoints.
pub(crate) const CONNECTOR: &str = "kafka";
/// Records between two checks for a due barrier or linger flush.
const CHECK_EVERY: u32 = 1024;
/// Poll wait when no record is buffered.
const POLL: Duration = Duration::from_millis(50);
/// How often the consumer lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(2);
/// How long the source rides out a broker it cannot reach (a restart)
/// before the job fails.
const BROKER_OUTAGE: Duration = Duration::from_secs(120);
/// Transient errors further apart than this belong to separate outages.
const OUTAGE_GAP: Duration = Duration::from_secs(30);
/// How long a finished bounded run waits for its final checkpoint before
/// committing its offsets to the group (it ends either way).
const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(60);

use batch::BatchQueue;
pub use config::{GroupProtocol, KafkaSourceConfig, KafkaSourceSpec, OutOfRange, Start, Until};
use lag::LogEnds;
use offsets::{end_offsets, position, restored_offsets, start_offsets};

/// Describes origins as `topic`, `partition` and `offset` in dead letters.
#[derive(Debug)]
struct KafkaOrigins {
    /// The topic read.
    topic: String,
}

impl Origins for KafkaOrigins {
    fn describe(&self, origin: Origin, out: &mut Map<String, Value>) {
        out.insert("topic".into(), json!(self.topic));
        out.insert("partition".into(), json!(origin.unit));
        out.insert("offset".into(), json!(origin.offset));
    }
}

/// The Kafka source.
pub struct KafkaSource {
    /// The resolved source.
    spec: KafkaSourceSpec,
    /// The queue every assigned partition is forwarded to, read a batch at
    /// a time (`None`: a message per `poll`). Dropped before the consumer.
    batches: Option<BatchQueue>,
    /// One consumer, assigned every partition.
    consumer: BaseConsumer<Context>,
    /// Finds key and event time in record values.
    parser: LineParser,
    /// Set when the job is stopped.
    stop: Arc<AtomicBool>,
    /// Describes origins in dead letters.
    origins: Arc<KafkaOrigins>,
    /// Next offset to read, per partition.
    next: Vec<i64>,
    /// End offset (exclusive) per partition of a bounded run.
    end: Option<Vec<i64>>,
    /// Offsets at barriers not yet committed to the group, by checkpoint.
    to_commit: Vec<(u64, Vec<i64>)>,
    /// The end of each partition's log, refreshed off the source thread.
    ends: LogEnds,
    /// Kafka timestamp (ms) of the last record read, per partition (`-1`:
    /// none yet).
    last_time: Vec<i64>,
}

/// A partition's lag in time: how old the last record read is (now minus
/// its Kafka timestamp) while records are left to read, 0 once caught up,
/// `-1` when unknown (the lag not measured yet, or nothing read yet).
fn lag_age_ms(records: i64, last_time: i64, now_ms: i64) -> i64 {
    match (records, last_time) {
        (r, _) if r < 0 => -1,
        (0, _) => 0,
        (_, t) if t < 0 => -1,
        (_, t) => (now_ms - t).max(0),
    }
}

/// Errors librdkafka recovers from by itself (it reconnects and retries).
fn is_transient(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
        )
    )
}
impl KafkaSource {
    /// Connect, find the partitions and every start offset (restored, or
    /// from the start mode), check restored offsets against each log, and
    /// assign. Nothing is read yet.
    pub fn open(
        spec: KafkaSourceSpec,
        stop: Arc<AtomicBool>,
        restored: Option<Restored>,
    ) -> Result<Self> {
        let config = client_config(
            &spec.brokers,
            &spec.properties,
            Client::Source {
                group: &spec.group_id,
            },
        );
        let consumer: BaseConsumer<Context> = config
            .create_with_context(Context::default())
            .map_err(external(format!(
                "creating a consumer for {}",
                spec.brokers
            )))?;
        let in_topic = partition_count(consumer.client(), &spec.brokers, &spec.topic)?;
        let n = match spec.only {
            Some(p) if p >= in_topic => {
                return Err(Error::Config(format!(
                    "topic `{}` has {in_topic} partitions, not partition {p}",
                    spec.topic
                )));
            }
            Some(_) => 1,
            None => in_topic,
        };
        let mut ranges = Vec::with_capacity(n);
        for p in 0..n {
            let (lo, hi) = consumer
                .fetch_watermarks(&spec.topic, spec.kafka_id(p), REQUEST_TIMEOUT)
                .map_err(external(format!(
                    "reading the offsets of {}/{p}",
                    spec.topic
                )))?;
            ranges.push((lo, hi));
        }
        let next = match &restored {
            Some(r) => restored_offsets(&spec, r, &ranges)?,
            None => start_offsets(&spec, &consumer, &ranges)?,
        };
        let end = end_offsets(&spec, &consumer, &ranges)?;
        // Forwarded before `assign`: no message reaches the consumer's
        // queue first.
        let batches = match batch::batched() {
            true => Some(BatchQueue::forward(
                &consumer,
                &spec.topic,
                (0..n).map(|p| spec.kafka_id(p)),
            )?),
            false => None,
        };
        let mut tpl = TopicPartitionList::new();
        for (p, &o) in next.iter().enumerate() {
            tpl.add_partition_offset(&spec.topic, spec.kafka_id(p), Offset::Offset(o))
                .map_err(external("assigning partitions"))?;
        }
        consumer.assign(&tpl).map_err(external(format!(
            "assigning the partitions of {}",
            spec.topic
        )))?;
        tracing::info!(topic = %spec.topic, partitions = n, start = ?next, end = ?end, "kafka source");
        let parser = LineParser::new(spec.format, spec.key.clone(), spec.timestamp.clone());
        let ends = LogEnds::start(&spec, n)?;
        Ok(Self {
            ends,
            origins: Arc::new(KafkaOrigins {
                topic: spec.topic.clone(),
            }),
            spec,
            batches,
            consumer,
            parser,
            stop,
            last_time: vec![-1; next.len()],
            next,
            end,
            to_commit: Vec::new(),
        })
    }

    /// Whether every partition reached its end (bounded runs). The
    /// consumer's position moves past transaction markers, so this holds
    /// even when no record follows the last one read.
    fn at_end(&mut self) -> bool {
        let Some(end) = &self.end else {
            return false;
        };
        if self.next.iter().zip(end).all(|(n, e)| n >= e) {
            return true;
        }
        if let Ok(pos) = self.consumer.position() {
            for e in pos.elements() {
                if let Offset::Offset(o) = e.offset()
                    && let Some(n) = self
                        .spec
                        .local(e.partition())
                        .and_then(|p| self.next.get_mut(p))
                    && o > *n
                {
                    *n = o;
                }
            }
        }
        self.next.iter().zip(end).all(|(n, e)| n >= e)
    }

    fn barrier_if_due(&mut self, out: &mut dyn Output) -> ControlFlow<()> {
        if let Some(req) = out.barrier_due() {
            let position = position(&self.spec.topic, &self.next);
            if let Some(id) = out.next_barrier_id() {
                self.to_commit.push((id, self.next.clone()));
            }
            return out.barrier(req, position);
        }
        ControlFlow::Continue(())
    }

    /// Each partition's lag: the end of its log (last stable offset, as
    /// the lag thread last saw it) minus the next offset to read, and in
    /// time ([`lag_age_ms`]).
    fn report_lag(&self, out: &mut dyn Output) {
        let ends = self.ends.ends();
        let lag: Vec<i64> = self
            .next
            .iter()
            .zip(&ends)
            .map(|(next, end)| if *end < 0 { -1 } else { (end - next).max(0) })
            .collect();
        let now = crate::clock::now_ms();
        let age: Vec<i64> = lag
            .iter()
            .zip(&self.last_time)
            .map(|(&records, &last)| lag_age_ms(records, last, now))
            .collect();
        out.report_lag(&lag, &age);
    }

    /// A bounded run read everything: hand over the end position (the
    /// runtime takes its final checkpoint there) and, once that checkpoint
    /// is durable, commit its offsets to the group, so lag tools show the
    /// run done.
    fn finish(&mut self, out: &mut dyn Output) -> Completion {
        let before = out.next_barrier_id();
        if out
            .end_of_input(position(&self.spec.topic, &self.next))
            .is_break()
        {
            return Completion::Stopped;
        }
        if let Some(id) = before.filter(|&id| out.next_barrier_id() > Some(id)) {
            self.to_commit.push((id, self.next.clone()));
            let deadline = Instant::now() + FINAL_COMMIT_WAIT;
            while out.committed_checkpoint().unwrap_or(0) < id
                && !out.is_stopping()
                && !self.stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.commit_completed(out, CommitMode::Sync);
        }
        Completion::EndOfInput
    }

    /// Commit the offsets of the newest completed checkpoint to the group.
    fn commit_completed(&mut self, out: &mut dyn Output, mode: CommitMode) {
        if self.spec.only.is_some() {
            // A group member's run: the member commits, not this consumer
            // (outside the group's generation, the broker refuses it).
            self.to_commit.clear();
            return;
        }
        let Some(done) = out.committed_checkpoint() else {
            return;
        };
        let Some(i) = self.to_commit.iter().rposition(|(id, _)| *id <= done) else {
            return;
        };
        let (_, offsets) = self.to_commit.swap_remove(i);
        self.to_commit.retain(|(id, _)| *id > done);
        let mut tpl = TopicPartitionList::new();
        for (p, &o) in offsets.iter().enumerate() {
            let _ = tpl.add_partition_offset(&self.spec.topic, p as i32, Offset::Offset(o));
        }
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::warn!("committing offsets to group {}: {e}", self.spec.group_id);
        }
    }
}

impl Source for KafkaSource {
    fn connector(&self) -> &'static str {
        CONNECTOR
    }

    fn partitions(&self) -> Option<usize> {
        Some(self.next.len())
    }

    fn origins(&self) -> Arc<dyn Origins> {
        self.origins.clone()
    }

    fn run(&mut self, out: &mut dyn Output) -> Result<Completion> {
        let mut since_check = 0u32;
        let mut last_check = Instant::now();
        let mut last_lag = Instant::now() - LAG_EVERY;
        // Since when, and last seen: transient errors reading the topic.
        let mut outage: Option<(Instant, Instant)> = None;
        // After a batch, the next read does not wait: records already
        // fetched come back to back, and the clock is read only when the
        // fetched records run out, after an error, or every CHECK_EVERY
        // records. The checks below then run whenever the consumer has
        // nothing more at hand, or after a burst.
        let mut wait = POLL;
        loop {
            if self.stop.load(Ordering::Relaxed) || out.is_stopping() {
                return Ok(Completion::Stopped);
            }
            let read = self.read(wait, out)?;
            if read.stopped {
                return Ok(Completion::Stopped);
            }
            let idle = read.messages == 0 && wait == POLL;
            let record = read.messages > 0 && read.error.is_none();
            wait = if record { Duration::ZERO } else { POLL };
            since_check += read.messages as u32;
            if record {
                outage = None;
            }
            match read.error {
                Some(e) if is_transient(&e) => {
                    // librdkafka reconnects by itself: ride out a broker
                    // that restarts, up to BROKER_OUTAGE.
                    // Errors long apart are separate outages.
                    if outage
                        .is_some_and(|(_, last): (Instant, Instant)| last.elapsed() > OUTAGE_GAP)
                    {
                        outage = None;
                    }
                    if outage.is_none() {
                        tracing::warn!(
                            "kafka: reading topic {}: {e}; retrying for up to {} s",
                            self.spec.topic,
                            BROKER_OUTAGE.as_secs()
                        );
                    }
                    let since = outage.map_or_else(Instant::now, |(since, _)| since);
                    outage = Some((since, Instant::now()));
                    if since.elapsed() > BROKER_OUTAGE {
                        return Err(Error::External(format!(
                            "kafka: reading topic {}: {e}, for {} s: is the broker up?",
                            self.spec.topic,
                            BROKER_OUTAGE.as_secs()
                        )));
                    }
                }
                Some(e) => {
                    return Err(Error::External(format!(
                        "kafka: reading topic {}: {e}",
                        self.spec.topic
                    )));
                }
                None => {}
            }
            if idle || since_check >= CHECK_EVERY || (!record && last_check.elapsed() >= POLL) {
                since_check = 0;
                last_check = Instant::now();
                let flow = if idle { out.flush() } else { out.tick() };
                if flow.is_break() || self.barrier_if_due(out).is_break() {
                    return Ok(Completion::Stopped);
                }
                self.commit_completed(out, CommitMode::Async);
                if last_lag.elapsed() >= LAG_EVERY {
                    last_lag = Instant::now();
                    self.report_lag(out);
                }
                if (idle || self.end.is_some()) && self.at_end() {
                    return Ok(self.finish(out));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lag_age_ms;

    #[test]
    fn lag_in_time_is_the_age_of_the_last_record_while_records_are_left() {
        assert_eq!(lag_age_ms(120, 9_000, 10_000), 1_000);
        assert_eq!(lag_age_ms(0, 9_000, 10_000), 0, "caught up");
        assert_eq!(lag_age_ms(-1, 9_000, 10_000), -1, "not measured yet");
        assert_eq!(lag_age_ms(5, -1, 10_000), -1, "nothing read yet");
        assert_eq!(lag_age_ms(5, 11_000, 10_000), 0, "a clock ahead");
    }
}
