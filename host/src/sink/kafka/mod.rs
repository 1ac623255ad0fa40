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
//!   producer (a stable `transactional.id` per job, topic and partition,
//!   length-prefixed so no two jobs share one)
//!   produces each pending epoch in transactions of at most
//!   `transaction_bytes` that also write a progress marker
//!   (`<job>/<lineage>/<partition>` = epoch id, or `id:records` while part
//!   of the epoch is left) to the progress topic;
//! - on restore from checkpoint `k` ([`SinkFactory::recover`], in
//!   `recover.rs`) each partition reads its marker: what the blob holds
//!   past it is produced (it never was), the rest is skipped. A marker
//!   above `k` means the topic already holds output the savepoint would
//!   produce again: the run is refused before anything is written. So is
//!   a checkpoint whose blob does not hold exactly the epochs its sink
//!   state lists (a damaged or mixed-up checkpoint). A restore whose
//!   `[sink]` changed (another topic, or at least once) first settles the
//!   checkpoint's epochs in the topic they were meant for, then the new
//!   sink starts after the checkpoint.
//!
//! The lineage is a random name given to a history of checkpoints when a
//! job starts without a restore, carried by every checkpoint after: ids
//! restart in a new or emptied store, and markers of one history never
//! say anything about the epochs of another.
//!
//! `init_transactions` with the stable id aborts a transaction left open by a
//! crashed run and fences a zombie. Output becomes visible to
//! `read_committed` consumers one checkpoint interval after it was emitted.
//! `delivery = "at-least-once"` produces right away with an idempotent
//! producer and waits for every record's delivery result at each barrier;
//! a record the broker refuses (too large, invalid) goes to the dead-letter
//! output with the reason, any other failed delivery fails the job.
//!
//! The folder: the job-file table and its resolution (`config.rs`), the
//! epoch blob (`epochs.rs`), producing an epoch in a transaction
//! (`transaction.rs`), the progress markers (`progress.rs`), and here the
//! factory and each partition's sink.

mod config;
mod epochs;
mod progress;
mod recover;
mod spill;
mod transaction;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

pub use config::{Delivery, KafkaSinkConfig, KafkaSinkSpec};
use progress::marker_key;
use spill::{EpochBuf, Spiller};
use transaction::{IDS_VERSION, Target, drain, produce_epoch, transactional_id, try_send};

use super::dead_letter::DeadLetters;
use super::{End, RestoredSink, Sink, SinkFactory, SinkSnapshot, Spill};
use crate::batch::Batch;
use crate::kafka::{
    Client, Context, REQUEST_TIMEOUT, Undelivered, client_config, external, partition_count,
    refuses_the_record,
};
use crate::{Error, Result};

/// Makes each partition's producer and settles the output on restore.
pub struct KafkaSinkFactory {
    /// The resolved sink.
    spec: KafkaSinkSpec,
    /// Job name: it names transactional ids and progress markers.
    job: String,
    /// Output waits for checkpoints (asked for, and checkpoints are on).
    exactly_once: bool,
    /// Producers made while recovering, handed on to the partitions.
    producers: Mutex<HashMap<usize, BaseProducer<Context>>>,
    /// The history the run's checkpoints belong to (`Some(None)`: one from
    /// before lineages); set by [`SinkFactory::recover`].
    lineage: OnceLock<Option<String>>,
    /// The job's state store (checkpoints on): spilled epochs go there.
    spill: Option<Arc<dyn Spill>>,
    /// Names this process's spilled segments (random).
    run: String,
}

impl KafkaSinkFactory {
    /// A factory for `spec`; exactly once when asked and checkpoints are on.
    pub fn new(spec: KafkaSinkSpec, job: &str, spill: Option<Arc<dyn Spill>>) -> Result<Self> {
        if spec.delivery == Delivery::ExactlyOnce && spill.is_none() {
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
            lineage: OnceLock::new(),
            spill,
            run: new_lineage(),
        })
    }

    /// The run's lineage: the restored one, or a new one.
    fn lineage(&self) -> Option<String> {
        self.lineage.get_or_init(|| Some(new_lineage())).clone()
    }

    /// How long a drain waits at most for delivery results at least once:
    /// librdkafka reports every record within `message.timeout.ms` (or its
    /// alias `delivery.timeout.ms`; default 300000), then a margin.
    fn delivery_timeout(&self) -> Duration {
        let ms = self
            .spec
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "message.timeout.ms" || k == "delivery.timeout.ms")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(300_000);
        Duration::from_millis(ms) + REQUEST_TIMEOUT
    }

    fn producer(&self, partition: usize) -> Result<BaseProducer<Context>> {
        if let Some(p) = crate::lock(&self.producers, "kafka producers")?.remove(&partition) {
            return Ok(p);
        }
        let id = transactional_id(&self.job, &self.spec.topic, partition);
        self.create_producer(partition, self.exactly_once.then_some(id.as_str()))
    }

    /// A producer, transactional under `id` (its transactions started:
    /// `init_transactions` aborts the one a crashed run left open under the
    /// id and fences a zombie still using it).
    fn create_producer(&self, partition: usize, id: Option<&str>) -> Result<BaseProducer<Context>> {
        self.create_producer_for(&self.spec, partition, id)
    }

    /// [`Self::create_producer`] for the topic and brokers of `spec`.
    fn create_producer_for(
        &self,
        spec: &KafkaSinkSpec,
        partition: usize,
        id: Option<&str>,
    ) -> Result<BaseProducer<Context>> {
        let p: BaseProducer<Context> = client_config(
            &spec.brokers,
            &spec.properties,
            Client::Producer {
                transactional_id: id,
            },
        )
        .create_with_context(Context::default())
        .map_err(external(format!(
            "creating a producer for {}",
            spec.brokers
        )))?;
        if let Some(id) = id {
            p.init_transactions(REQUEST_TIMEOUT).map_err(|e| {
                Error::External(format!(
                    "kafka: starting transactions for partition {partition} (transactional.id \
                     {id}): {e}{}",
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
}

impl SinkFactory for KafkaSinkFactory {
    fn fence(&self, partitions: usize) -> Result<()> {
        if !self.exactly_once {
            return Ok(());
        }
        for p in 0..partitions {
            // `init_transactions` under the partition's id fences the
            // producer of an earlier owner; recovery then uses this one.
            let producer = self.producer(p)?;
            crate::lock(&self.producers, "kafka producers")?.insert(p, producer);
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        let probe: BaseConsumer<Context> = client_config(
            &self.spec.brokers,
            &self.spec.properties,
            Client::Probe { committed: true },
        )
        .create_with_context(Context::default())
        .map_err(external("connecting"))?;
        partition_count(probe.client(), &self.spec.brokers, &self.spec.topic)?;
        if self.exactly_once {
            self.ensure_progress_topic()?;
        }
        Ok(())
    }

    fn recover(
        &self,
        restored: Option<&[Option<RestoredSink>]>,
        dead_letters: &Arc<DeadLetters>,
    ) -> Result<()> {
        self.settle_restored(restored.unwrap_or_default(), dead_letters)
    }

    /// A partition's sink starts with no epoch pending, restored or not:
    /// [`SinkFactory::recover`] already produced every epoch the restored
    /// checkpoint holds above the partition's marker. The restored state the
    /// trait passes is for sinks that continue from it (the file sink's next
    /// part number); this one has nothing left to take from it.
    fn create(
        &self,
        partition: usize,
        _: Option<&RestoredSink>,
        dead_letters: &Arc<DeadLetters>,
    ) -> Result<Box<dyn Sink>> {
        Ok(Box::new(KafkaSink {
            producer: self.producer(partition)?,
            spec: self.spec.clone(),
            job: self.job.clone(),
            partition,
            exactly_once: self.exactly_once,
            lineage: self.lineage(),
            spiller: self.spill.clone().map(|store| Spiller {
                store,
                prefix: format!("jobs/{}/sink-spill/{}/{partition}", self.job, self.run),
                next: 0,
            }),
            epoch: EpochBuf::default(),
            pending: Vec::new(),
            last_id: 0,
            dead_letters: dead_letters.clone(),
            delivery_timeout: self.delivery_timeout(),
        }))
    }

    /// Exactly once, every partition's epochs, progress marker and
    /// transactional id are its own: moved to other partitions, epochs
    /// could be produced twice or not at all.
    fn rescale(
        &self,
        states: &[Option<RestoredSink>],
        partitions: usize,
    ) -> std::result::Result<Vec<Option<RestoredSink>>, String> {
        if states.iter().all(Option::is_none) {
            return Ok(vec![None; partitions]);
        }
        Err(format!(
            "its Kafka sink writes exactly once per partition (each partition's output epochs, \
             progress marker and transactional id are its own, and epochs may still be pending \
             for its {n} partitions), so its partitions cannot change: restore it with \
             `partitions = {n}` (any parallelism)",
            n = states.len()
        ))
    }
}

/// One partition's producer.
pub struct KafkaSink {
    /// The partition's producer (transactional when exactly once).
    producer: BaseProducer<Context>,
    /// The resolved sink.
    spec: KafkaSinkSpec,
    /// Job name, for progress markers.
    job: String,
    /// The partition this sink writes for.
    partition: usize,
    /// Output waits for checkpoints.
    exactly_once: bool,
    /// The history the checkpoints belong to (names the marker).
    lineage: Option<String>,
    /// Where segments spill past the memory budget.
    spiller: Option<Spiller>,
    /// What the partition emitted since the last barrier, in segments of
    /// at most `transaction_bytes`.
    epoch: EpochBuf,
    /// Epochs in checkpoints not yet produced, oldest first.
    pending: Vec<(u64, EpochBuf)>,
    /// The newest checkpoint id seen.
    last_id: u64,
    /// Where records the broker refuses go (at least once).
    dead_letters: Arc<DeadLetters>,
    /// How long librdkafka may take to report a record's delivery
    /// (`message.timeout.ms`), plus a margin: the backstop of a drain.
    delivery_timeout: Duration,
}

impl KafkaSink {
    /// Bytes of output held in memory, pending epochs and the open one.
    fn memory_bytes(&self) -> usize {
        self.pending
            .iter()
            .map(|(_, e)| e)
            .chain([&self.epoch])
            .map(EpochBuf::memory_bytes)
            .sum()
    }

    /// Spill the segments in memory of every pending epoch and (all but
    /// the open one, `keep_open`) of the epoch being written.
    fn spill(&mut self, keep_open: bool) -> Result<()> {
        let Some(spiller) = self.spiller.as_mut() else {
            return Ok(());
        };
        for (_, e) in &mut self.pending {
            spiller.spill(e, false)?;
        }
        spiller.spill(&mut self.epoch, keep_open)
    }

    /// At least once: records the broker refused go to the dead-letter
    /// output with the reason; any other failed delivery fails the job
    /// (the checkpoint is not taken, so a restore produces it again).
    fn settle(&self, undelivered: Vec<Undelivered>) -> Result<()> {
        for u in undelivered {
            if !refuses_the_record(&u.error) {
                return Err(Error::External(format!(
                    "kafka: a record for {} (partition {}) was not delivered: {}",
                    self.spec.topic, self.partition, u.error
                )));
            }
            self.dead_letter(u.key.as_deref(), &u.value, &u.error)?;
        }
        Ok(())
    }

    /// Write a record the broker refuses to the dead-letter output.
    fn dead_letter(&self, key: Option<&[u8]>, value: &[u8], e: &KafkaError) -> Result<()> {
        transaction::dead_letter(
            &self.dead_letters,
            (&self.spec.topic, self.partition),
            key,
            value,
            e,
        )
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &Batch) -> Result<()> {
        if self.exactly_once {
            for r in batch.iter() {
                if self.epoch.push(r, self.spec.transaction_bytes)
                    && self.memory_bytes() > self.spec.epoch_memory_bytes
                {
                    self.spill(true)?;
                }
            }
            return Ok(());
        }
        for r in batch.iter() {
            let rec = BaseRecord::to(&self.spec.topic).key(r.key).payload(r.value);
            match try_send(&self.producer, rec) {
                Ok(()) => {}
                Err(e) if refuses_the_record(&e) => self.dead_letter(Some(r.key), r.value, &e)?,
                Err(e) => return Err(external("producing")(e)),
            }
        }
        self.producer.poll(Duration::ZERO);
        self.settle(self.producer.context().take_undelivered())
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        if self.exactly_once {
            return Ok(());
        }
        self.settle(self.producer.context().take_undelivered())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<SinkSnapshot>> {
        if !self.exactly_once {
            let undelivered = drain(&self.producer, self.delivery_timeout)?;
            self.settle(undelivered)?;
            return Ok(None);
        }
        self.last_id = checkpoint;
        let epoch = std::mem::take(&mut self.epoch);
        self.pending.push((checkpoint, epoch));
        if self.memory_bytes() > self.spec.epoch_memory_bytes {
            self.spill(false)?;
        }
        let ids: Vec<u64> = self.pending.iter().map(|(id, _)| *id).collect();
        let spilled = spill::to_json(
            self.pending
                .iter()
                .map(|(id, e)| (*id, e.spilled.as_slice())),
        );
        let memory: Vec<(u64, &[Batch])> = self
            .pending
            .iter()
            .map(|(id, e)| (*id, e.memory.as_slice()))
            .collect();
        Ok(Some(SinkSnapshot {
            state: json!({
                "topic": self.spec.topic,
                "brokers": self.spec.brokers,
                "progress_topic": self.spec.progress_topic,
                "lineage": self.lineage,
                "epochs": ids,
                "spilled": spilled,
                "ids": IDS_VERSION,
            }),
            blob: Some(epochs::encode(&memory)),
        }))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<()> {
        let done = self
            .pending
            .iter()
            .take_while(|(id, _)| *id <= checkpoint)
            .count();
        let key = marker_key(&self.job, self.lineage.as_deref(), self.partition);
        let target = Target {
            producer: &self.producer,
            spec: &self.spec,
            marker_key: &key,
            partition: self.partition,
            dead_letters: &self.dead_letters,
            spill: self.spiller.as_ref().map(|s| &*s.store),
        };
        for (id, epoch) in self.pending.drain(..done) {
            produce_epoch(&target, id, &epoch.segments(), 0)?;
            spill::forget(target.spill, &epoch.spilled);
        }
        Ok(())
    }

    fn abort(&mut self, _: u64) -> Result<()> {
        // The epoch stays pending: the next checkpoint carries and commits it.
        Ok(())
    }

    fn end(&mut self, end: End) -> Result<()> {
        if !self.exactly_once {
            let undelivered = drain(&self.producer, self.delivery_timeout)?;
            return self.settle(undelivered);
        }
        if end == End::EndOfInput {
            // The final checkpoint at the end of the input committed every
            // epoch. Output left here was not covered by a durable checkpoint
            // (the final one failed): producing it outside a checkpoint could
            // not be undone or skipped on a restore, so say so instead.
            let left: u64 = self
                .pending
                .iter()
                .map(|(_, e)| e)
                .chain([&self.epoch])
                .map(EpochBuf::records)
                .sum();
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

/// A new lineage: random, 16 hex digits.
fn new_lineage() -> String {
    format!("{:016x}", rand::random::<u64>())
}
