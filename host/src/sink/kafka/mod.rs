//! A Kafka topic as a sink: key = the emitted record's key, value = its
//! value, partitioned as Kafka's Java client does (murmur2 of the key, sign
//! bit masked, modulo the partitions: librdkafka's `murmur2_random`).
//!
//! **Exactly once without resuming transactions.** librdkafka cannot resume
//! or commit another process's open transaction, so a two-phase commit over
//! a crash does not carry over. Instead each partition writes ahead:
//! - between barriers it buffers what it emits (the epoch);
//! - at barrier `k` ([`Sink::pre_commit`]) the epoch goes into checkpoint `k`
//!   as a blob, with every earlier epoch not yet produced;
//! - once checkpoint `k` is durable ([`Sink::commit`]) the partition's
//!   producer (a stable `transactional.id` per job, topic and partition)
//!   produces each pending epoch in one transaction that also writes a
//!   progress marker (`<job>/<partition>` = epoch id) to the progress topic;
//! - on restore from checkpoint `k` ([`SinkFactory::recover`]) each
//!   partition reads its marker: epochs in the blob above it are produced
//!   again (they never were), those at or below it are skipped. A marker
//!   above `k` means the topic already holds output the savepoint would
//!   produce again: the run is refused before anything is written. A
//!   restore into another topic (the job's `[sink] topic` changed) starts
//!   after the checkpoint: its epochs went to the old topic.
//!
//! `init_transactions` with the stable id aborts a transaction left open by a
//! crashed run and fences a zombie. Output becomes visible to
//! `read_committed` consumers one checkpoint interval after it was emitted.
//! `delivery = "at-least-once"` produces right away with an idempotent
//! producer and flushes at each barrier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

use super::{End, RestoredSink, Sink, SinkFactory, SinkSnapshot};
use crate::batch::Batch;
use crate::kafka::{Context, REQUEST_TIMEOUT, client_config, external, partition_count};
use crate::{Error, Result};

/// Whether output waits for checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Produced in a transaction once the checkpoint covering it is durable.
    ExactlyOnce,
    /// Produced right away (idempotent producer); repeated after a restore.
    AtLeastOnce,
}

/// A resolved Kafka sink.
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    /// Bootstrap servers.
    pub brokers: String,
    /// The output topic.
    pub topic: String,
    /// Delivery guarantee.
    pub delivery: Delivery,
    /// Where progress markers go (exactly once).
    pub progress_topic: String,
    /// librdkafka producer properties, passed through (compression,
    /// batching).
    pub properties: Vec<(String, String)>,
}

/// Transaction timeout unless the job sets `transaction.timeout.ms`.
const TRANSACTION_TIMEOUT_MS: &str = "60000";
/// Test-only failpoint: abort the process just before a transaction
/// commit (the window between a durable manifest and the commit).
const FAILPOINT_ENV: &str = "WEIR_FAILPOINT";

/// Makes each partition's producer and settles the output on restore.
pub struct KafkaSinkFactory {
    spec: KafkaSinkSpec,
    job: String,
    exactly_once: bool,
    /// Producers made while recovering, handed on to the partitions.
    producers: Mutex<HashMap<usize, BaseProducer<Context>>>,
}

impl KafkaSinkFactory {
    /// A factory for `spec`; exactly once when asked and checkpoints are on.
    pub fn new(spec: KafkaSinkSpec, job: &str, checkpoints: bool) -> Result<Self> {
        if spec.delivery == Delivery::ExactlyOnce && !checkpoints {
            return Err(Error::Config(
                "kafka sink: delivery = \"exactly-once\" needs checkpoints (it commits at each \
                 one); enable [checkpoints] or set delivery = \"at-least-once\""
                    .into(),
            ));
        }
        Ok(Self {
            exactly_once: spec.delivery == Delivery::ExactlyOnce,
            spec,
            job: job.to_string(),
            producers: Mutex::new(HashMap::new()),
        })
    }

    fn producer(&self, partition: usize) -> Result<BaseProducer<Context>> {
        if let Some(p) = crate::lock(&self.producers, "kafka producers")?.remove(&partition) {
            return Ok(p);
        }
        let mut c = client_config(&self.spec.brokers, &[]);
        c.set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        if self.exactly_once {
            c.set(
                "transactional.id",
                transactional_id(&self.job, &self.spec.topic, partition),
            )
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS);
        }
        for (k, v) in &self.spec.properties {
            c.set(k, v);
        }
        let p: BaseProducer<Context> = c.create_with_context(Context).map_err(external(
            format!("creating a producer for {}", self.spec.brokers),
        ))?;
        if self.exactly_once {
            // Aborts a transaction a crashed run left open, fences zombies.
            p.init_transactions(REQUEST_TIMEOUT).map_err(|e| {
                Error::External(format!(
                    "kafka: starting transactions for partition {partition} (transactional.id \
                     {}): {e}{}",
                    transactional_id(&self.job, &self.spec.topic, partition),
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidTransactionTimeout) {
                        "; transaction.timeout.ms must not exceed the broker's \
                         transaction.max.timeout.ms"
                    } else {
                        ""
                    }
                ))
            })?;
        }
        Ok(p)
    }

    /// The latest epoch each partition of this job committed to the topic.
    fn markers(&self) -> Result<HashMap<usize, u64>> {
        let mut c = client_config(&self.spec.brokers, &[]);
        c.set("group.id", format!("weir-{}-progress-reader", self.job))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<Context> = c
            .create_with_context(Context)
            .map_err(external("creating a progress reader"))?;
        let topic = &self.spec.progress_topic;
        let (lo, hi) = self.stable_watermarks(&consumer)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(lo))
            .map_err(external("assigning the progress topic"))?;
        consumer
            .assign(&tpl)
            .map_err(external("assigning the progress topic"))?;
        let prefix = format!("{}/", self.job);
        let mut markers = HashMap::new();
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        let mut position = lo;
        while position < hi {
            if std::time::Instant::now() > deadline {
                return Err(Error::External(format!(
                    "kafka: reading progress markers from {topic} timed out at offset {position} of {hi}"
                )));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    position = m.offset() + 1;
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    let value = std::str::from_utf8(m.payload().unwrap_or_default())
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok());
                    if let (Some(p), Some(id)) = (
                        key.strip_prefix(&prefix)
                            .and_then(|p| p.parse::<usize>().ok()),
                        value,
                    ) {
                        let e = markers.entry(p).or_insert(id);
                        *e = (*e).max(id);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(external(format!("reading {topic}"))(e)),
                None => {
                    if let Ok(pos) = consumer.position()
                        && let Some(Offset::Offset(o)) =
                            pos.find_partition(topic, 0).map(|e| e.offset())
                    {
                        position = position.max(o);
                    }
                }
            }
        }
        Ok(markers)
    }

    /// The progress topic's offsets once no open transaction holds back its
    /// end: `read_committed` reads only up to the last stable offset, and a
    /// marker behind another producer's open transaction (another job
    /// sharing the topic, a zombie) would be missed. Such a transaction ends
    /// within the transaction timeout, committed or aborted by the broker.
    fn stable_watermarks(&self, committed: &BaseConsumer<Context>) -> Result<(i64, i64)> {
        let topic = &self.spec.progress_topic;
        let plain: BaseConsumer<Context> = client_config(&self.spec.brokers, &[])
            .set("isolation.level", "read_uncommitted")
            .create_with_context(Context)
            .map_err(external("creating a progress reader"))?;
        let timeout = self
            .spec
            .properties
            .iter()
            .find(|(k, _)| k == "transaction.timeout.ms")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(TRANSACTION_TIMEOUT_MS.parse().unwrap_or(60_000));
        let deadline = std::time::Instant::now() + Duration::from_millis(timeout + 5_000);
        let read = |c: &BaseConsumer<Context>| {
            c.fetch_watermarks(topic, 0, REQUEST_TIMEOUT)
                .map_err(external(format!("reading the offsets of {topic}")))
        };
        // The end now; the last stable offset only moves forward and
        // reaches it once the transactions open now have ended.
        let (_, end) = read(&plain)?;
        loop {
            let (lo, stable) = read(committed)?;
            if stable >= end {
                return Ok((lo, stable));
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::External(format!(
                    "kafka: an open transaction on {topic} (last stable offset {stable}, end \
                     {end}) did not end within the transaction timeout; another run of this \
                     job may be producing: stop it and retry"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Create the progress topic if it is missing (one partition,
    /// compacted: only the newest marker per key matters).
    fn ensure_progress_topic(&self) -> Result<()> {
        let admin: AdminClient<Context> = client_config(&self.spec.brokers, &self.spec.properties)
            .create_with_context(Context)
            .map_err(external("creating an admin client"))?;
        let topic = NewTopic::new(&self.spec.progress_topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
            .map_err(external("creating the progress topic"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => {
                    return Err(Error::External(format!(
                        "kafka: creating progress topic {t}: {e}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn transactional_id(job: &str, topic: &str, partition: usize) -> String {
    format!("weir-{job}-{topic}-{partition}")
}

impl SinkFactory for KafkaSinkFactory {
    fn validate(&self) -> Result<()> {
        let probe: BaseConsumer<Context> = client_config(&self.spec.brokers, &[])
            .create_with_context(Context)
            .map_err(external("connecting"))?;
        partition_count(probe.client(), &self.spec.brokers, &self.spec.topic)?;
        if self.exactly_once {
            self.ensure_progress_topic()?;
        }
        Ok(())
    }

    fn recover(&self, restored: Option<&[Option<RestoredSink>]>) -> Result<()> {
        let (true, Some(states)) = (self.exactly_once, restored) else {
            return Ok(());
        };
        let same_topic = |s: &RestoredSink| {
            // Restored into another topic: what the checkpoint holds went to
            // the old one; this one starts after it.
            s.state.get("topic").and_then(|t| t.as_str()) == Some(self.spec.topic.as_str())
        };
        // Every partition's producer first: `init_transactions` aborts the
        // transaction a crashed run left open. Until then that transaction
        // holds back what `read_committed` reads of the progress topic (its
        // last stable offset), hiding markers other partitions committed
        // after it, which would then be produced twice.
        for (p, _) in states
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(same_topic))
        {
            let producer = self.producer(p)?;
            crate::lock(&self.producers, "kafka producers")?.insert(p, producer);
        }
        let markers = self.markers()?;
        let mut plans = Vec::new();
        for (p, s) in states.iter().enumerate() {
            let Some(s) = s.as_ref().filter(|s| same_topic(s)) else {
                continue;
            };
            let marker = markers.get(&p).copied().unwrap_or(0);
            if marker > s.checkpoint {
                return Err(Error::Savepoint {
                    location: format!("kafka topic {}", self.spec.topic),
                    detail: format!(
                        "partition {p} already committed the output of checkpoint {marker} to \
                         the topic, after this one ({}): restoring it would write that output \
                         twice. Restore the newest checkpoint (`latest`), or send this run to \
                         another topic ([sink] topic)",
                        s.checkpoint
                    ),
                });
            }
            let epochs = decode_epochs(s.blob.as_deref().unwrap_or_default())?;
            plans.push((p, marker, epochs));
        }
        for (p, marker, epochs) in plans {
            let redo: Vec<_> = epochs.into_iter().filter(|(id, _)| *id > marker).collect();
            if redo.is_empty() {
                continue;
            }
            let producers = crate::lock(&self.producers, "kafka producers")?;
            let producer = producers
                .get(&p)
                .ok_or_else(|| Error::Internal(format!("no producer for partition {p}")))?;
            for (id, batch) in &redo {
                produce_epoch(producer, &self.spec, &self.job, p, *id, batch)?;
            }
            tracing::info!(
                partition = p,
                epochs = redo.len(),
                "re-produced output the restored checkpoint covers"
            );
        }
        Ok(())
    }

    fn commits_only_at_checkpoints(&self) -> bool {
        self.exactly_once
    }

    fn create(&self, partition: usize, _: Option<&RestoredSink>) -> Result<Box<dyn Sink>> {
        Ok(Box::new(KafkaSink {
            producer: self.producer(partition)?,
            spec: self.spec.clone(),
            job: self.job.clone(),
            partition,
            exactly_once: self.exactly_once,
            epoch: Batch::new(),
            pending: Vec::new(),
            last_id: 0,
        }))
    }
}

/// One partition's producer.
pub struct KafkaSink {
    producer: BaseProducer<Context>,
    spec: KafkaSinkSpec,
    job: String,
    partition: usize,
    exactly_once: bool,
    /// What the partition emitted since the last barrier.
    epoch: Batch,
    /// Epochs in checkpoints not yet produced, oldest first.
    pending: Vec<(u64, Batch)>,
    /// The newest checkpoint id seen.
    last_id: u64,
}

/// Send one record, waiting while librdkafka's queue is full.
fn send(producer: &BaseProducer<Context>, mut rec: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(external("producing")(e)),
        }
    }
}

/// Wait until every sent record is acknowledged (a plain `flush` waits in
/// 100 ms steps).
fn drain(producer: &BaseProducer<Context>) -> Result<()> {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() > deadline {
            return Err(Error::External(
                "kafka: records not acknowledged in time".into(),
            ));
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Produce epoch `id` of `partition` in one transaction with its marker.
fn produce_epoch(
    producer: &BaseProducer<Context>,
    spec: &KafkaSinkSpec,
    job: &str,
    partition: usize,
    id: u64,
    batch: &Batch,
) -> Result<()> {
    let fail = |what: &str| external(format!("{what} (partition {partition}, epoch {id})"));
    producer
        .begin_transaction()
        .map_err(fail("beginning a transaction"))?;
    for r in batch.iter() {
        send(
            producer,
            BaseRecord::to(&spec.topic).key(r.key).payload(r.value),
        )?;
    }
    let key = format!("{job}/{partition}");
    let value = id.to_string();
    send(
        producer,
        BaseRecord::to(&spec.progress_topic)
            .key(key.as_bytes())
            .payload(value.as_bytes()),
    )?;
    drain(producer)?;
    if std::env::var(FAILPOINT_ENV).is_ok_and(|v| v == "kafka-before-commit") {
        tracing::error!("failpoint kafka-before-commit: aborting the process");
        std::process::abort();
    }
    producer
        .commit_transaction(REQUEST_TIMEOUT)
        .map_err(fail("committing a transaction"))
}

/// Epochs as a blob: per epoch its id (u64 LE), record count (u32 LE), then
/// per record key length (u32 LE), key, value length (u32 LE), value.
fn encode_epochs(epochs: &[(u64, Batch)]) -> Vec<u8> {
    let size: usize = epochs
        .iter()
        .map(|(_, b)| 12 + b.len() * 8 + b.keys.len() + b.values.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for (id, b) in epochs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        for r in b.iter() {
            out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
            out.extend_from_slice(r.key);
            out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
            out.extend_from_slice(r.value);
        }
    }
    out
}

/// The next `n` bytes of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if rest.len() < n {
        return Err(Error::Internal(
            "kafka sink blob in a checkpoint is truncated".into(),
        ));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32> {
    let b = take(rest, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn decode_epochs(bytes: &[u8]) -> Result<Vec<(u64, Batch)>> {
    let mut rest = bytes;
    let mut epochs = Vec::new();
    while !rest.is_empty() {
        let lo = u64::from(take_u32(&mut rest)?);
        let hi = u64::from(take_u32(&mut rest)?);
        let count = take_u32(&mut rest)?;
        let mut b = Batch::new();
        for _ in 0..count {
            let kl = take_u32(&mut rest)? as usize;
            let key = take(&mut rest, kl)?;
            let vl = take_u32(&mut rest)? as usize;
            let value = take(&mut rest, vl)?;
            b.push(key, value, crate::batch::NO_TIMESTAMP);
        }
        epochs.push((lo | hi << 32, b));
    }
    Ok(epochs)
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &Batch) -> Result<()> {
        if self.exactly_once {
            for r in batch.iter() {
                self.epoch.push(r.key, r.value, r.timestamp);
            }
            return Ok(());
        }
        for r in batch.iter() {
            send(
                &self.producer,
                BaseRecord::to(&self.spec.topic).key(r.key).payload(r.value),
            )?;
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<SinkSnapshot>> {
        if !self.exactly_once {
            drain(&self.producer)?;
            return Ok(None);
        }
        self.last_id = checkpoint;
        let epoch = std::mem::take(&mut self.epoch);
        self.pending.push((checkpoint, epoch));
        let ids: Vec<u64> = self.pending.iter().map(|(id, _)| *id).collect();
        Ok(Some(SinkSnapshot {
            state: json!({ "topic": self.spec.topic, "epochs": ids }),
            blob: Some(encode_epochs(&self.pending)),
        }))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<()> {
        let done = self
            .pending
            .iter()
            .take_while(|(id, _)| *id <= checkpoint)
            .count();
        for (id, batch) in self.pending.drain(..done) {
            produce_epoch(
                &self.producer,
                &self.spec,
                &self.job,
                self.partition,
                id,
                &batch,
            )?;
        }
        Ok(())
    }

    fn abort(&mut self, _: u64) -> Result<()> {
        // The epoch stays pending: the next checkpoint carries and commits it.
        Ok(())
    }

    fn end(&mut self, end: End) -> Result<()> {
        if !self.exactly_once {
            return drain(&self.producer);
        }
        if end == End::EndOfInput {
            // The final checkpoint at the end of the input committed every
            // epoch. Output left here was not covered by a durable checkpoint
            // (the final one failed): producing it outside a checkpoint could
            // not be undone or skipped on a restore, so say so instead.
            let left: usize =
                self.pending.iter().map(|(_, b)| b.len()).sum::<usize>() + self.epoch.len();
            if left > 0 {
                return Err(Error::External(format!(
                    "kafka sink: partition {}: {left} records after checkpoint {} were not \
                     produced because the final checkpoint did not complete; run the job \
                     again with --from-savepoint latest to produce them",
                    self.partition, self.last_id
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_round_trip_and_refuse_truncation() {
        let mut a = Batch::new();
        a.push(b"k1", b"v1", 0);
        a.push(b"", b"value two", 0);
        let epochs = vec![(3u64, a), (4u64, Batch::new())];
        let bytes = encode_epochs(&epochs);
        let back = decode_epochs(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, 3);
        let recs: Vec<_> = back[0].1.iter().map(|r| (r.key, r.value)).collect();
        assert_eq!(
            recs,
            vec![(&b"k1"[..], &b"v1"[..]), (&b""[..], &b"value two"[..])]
        );
        assert_eq!((back[1].0, back[1].1.len()), (4, 0));
        assert!(decode_epochs(&bytes[..bytes.len() - 1]).is_err());
    }
}
