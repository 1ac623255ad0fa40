//! Dead letters to a Kafka topic (`[dead_letter] type = "kafka"`): with
//! several processes a file per machine is no place for them. Each dead
//! letter is one record: the refused record's value as it was (its key
//! when known), and where it came from and why in headers (`weir.stage`, `weir.reason`,
//! `weir.job`, `weir.operator`, `weir.partition`, and the source's
//! `weir.source.topic` / `.partition` / `.offset`, or `.file` / `.line`).
//! Written at least once: every checkpoint waits for their delivery.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::kafka::{Client, Context, client_config, external, partition_count};
use crate::{Error, Result};

/// A resolved `[dead_letter] type = "kafka"` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Bootstrap brokers, `host:port[,host:port]`.
    pub brokers: String,
    /// The dead-letter topic (it must exist).
    pub topic: String,
    /// librdkafka producer properties (security, compression).
    pub properties: Vec<(String, String)>,
}

/// The producer dead letters go out with.
pub(super) struct TopicOutput {
    /// Idempotent producer (no transactions: dead letters are at least once).
    producer: BaseProducer<Context>,
    /// The resolved table.
    spec: TopicSpec,
    /// The job's name, in the `weir.job` header.
    job: String,
}

/// Longest a checkpoint waits for the dead letters' delivery: librdkafka
/// reports each within its `message.timeout.ms` (300 s unless set), so
/// this is a backstop.
const DELIVERY: Duration = Duration::from_secs(330);

impl TopicOutput {
    /// Connect and check that the topic exists, before any record is read.
    pub(super) fn open(spec: &TopicSpec, job: &str) -> Result<Self> {
        let producer: BaseProducer<Context> = client_config(
            &spec.brokers,
            &spec.properties,
            Client::Producer {
                transactional_id: None,
            },
        )
        .create_with_context(Context::default())
        .map_err(external(format!(
            "creating the dead-letter producer for {}",
            spec.brokers
        )))?;
        partition_count(producer.client(), &spec.brokers, &spec.topic)
            .map_err(|e| Error::Config(format!("[dead_letter] topic {}: {e}", spec.topic)))?;
        Ok(Self {
            producer,
            spec: spec.clone(),
            job: job.to_string(),
        })
    }

    /// Send one dead letter; `headers` are `(name, value)` pairs.
    pub(super) fn send(
        &self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(String, String)],
    ) -> Result<()> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len() + 1).insert(Header {
            key: "weir.job",
            value: Some(self.job.as_bytes()),
        });
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut rec = BaseRecord::<[u8], [u8]>::to(&self.spec.topic)
            .payload(value)
            .headers(h);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(self.failed(&e)),
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Wait until every dead letter sent is delivered; one that was not
    /// fails the call (and with it the checkpoint), so none is lost.
    pub(super) fn flush(&self) -> Result<()> {
        let deadline = Instant::now() + DELIVERY;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                return Err(Error::External(format!(
                    "kafka: {} dead letters to topic {} without a delivery result after {} s",
                    self.producer.in_flight_count(),
                    self.spec.topic,
                    DELIVERY.as_secs()
                )));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        let undelivered = self.producer.context().take_undelivered();
        match undelivered.first() {
            None => Ok(()),
            Some(u) => Err(Error::External(format!(
                "kafka: {} dead letters were not delivered to topic {}: {}",
                undelivered.len(),
                self.spec.topic,
                u.error
            ))),
        }
    }

    fn failed(&self, e: &KafkaError) -> Error {
        Error::External(format!(
            "kafka: writing a dead letter to topic {}: {e}",
            self.spec.topic
        ))
    }
}
