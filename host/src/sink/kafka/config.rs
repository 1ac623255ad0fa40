//! The Kafka sink's job-file table (`[sink] type = "kafka"`) and what it
//! resolves to.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Error, Result};

/// A Kafka topic as a sink (it must exist).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers. Required.
    pub brokers: String,
    /// The output topic. Required.
    pub topic: String,
    /// `exactly-once` (default with checkpoints on: output is produced
    /// in a transaction once the checkpoint covering it is durable) or
    /// `at-least-once` (produced right away, repeated after a restore).
    pub delivery: Option<String>,
    /// Topic for the exactly-once progress markers (created if
    /// missing). Default `<topic>.weir-progress`.
    pub progress_topic: Option<String>,
    /// librdkafka properties for every client the sink makes (producers,
    /// the validation probe, the progress-marker readers, the admin
    /// client): security (`security.protocol`, `sasl.*`, `ssl.*`) and
    /// tuning (`compression.type`, `linger.ms`, `transaction.timeout.ms`).
    /// The keys Weir owns (`transactional.id`, `enable.idempotence`,
    /// `partitioner`, ...) are refused. Default none.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Exactly once: the most bytes of output one transaction holds. An
    /// epoch larger than this is produced in several transactions, each
    /// with a marker saying how far the epoch got, so no transaction
    /// outgrows `transaction.timeout.ms` and a restore resumes inside the
    /// epoch. Default 16 MiB.
    pub transaction_bytes: Option<u64>,
    /// Exactly once: the most bytes of output a partition holds in memory
    /// until its checkpoint is durable and the output produced; past it,
    /// whole segments go to the job's state store. Default 64 MiB.
    pub epoch_memory_bytes: Option<u64>,
}

/// Default of `epoch_memory_bytes`.
const EPOCH_MEMORY_BYTES: u64 = 64 << 20;

/// Default of `transaction_bytes`.
const TRANSACTION_BYTES: u64 = 16 << 20;

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
    /// The most bytes of output one transaction holds (exactly once).
    pub transaction_bytes: usize,
    /// The most bytes of output a partition holds in memory (exactly once).
    pub epoch_memory_bytes: usize,
}

impl KafkaSinkConfig {
    /// The resolved sink; `checkpoints` says whether the job takes
    /// checkpoints, which decides the default delivery.
    pub(crate) fn resolve(&self, checkpoints: bool) -> Result<KafkaSinkSpec> {
        crate::kafka::refuse_owned("[sink]", self.properties.keys())?;
        let transaction_bytes = self.transaction_bytes.unwrap_or(TRANSACTION_BYTES);
        if !(1024..=1 << 30).contains(&transaction_bytes) {
            return Err(Error::Config(format!(
                "[sink] transaction_bytes = {transaction_bytes}: use 1024 to 1073741824 (1 GiB)"
            )));
        }
        let delivery = match self.delivery.as_deref() {
            // Exactly once commits at checkpoints: the default only when
            // there are checkpoints.
            None if checkpoints => Delivery::ExactlyOnce,
            None => Delivery::AtLeastOnce,
            Some("exactly-once") => Delivery::ExactlyOnce,
            Some("at-least-once") => Delivery::AtLeastOnce,
            Some(other) => {
                return Err(Error::Config(format!(
                    "sink delivery `{other}`: use `exactly-once` or `at-least-once`"
                )));
            }
        };
        Ok(KafkaSinkSpec {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            delivery,
            progress_topic: self
                .progress_topic
                .clone()
                .unwrap_or_else(|| format!("{}.weir-progress", self.topic)),
            properties: self
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            transaction_bytes: transaction_bytes as usize,
            epoch_memory_bytes: self.epoch_memory_bytes.unwrap_or(EPOCH_MEMORY_BYTES) as usize,
        })
    }
}
