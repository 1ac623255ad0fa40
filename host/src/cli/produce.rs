//! `weir generate --kafka BROKERS --topic TOPIC`: the generator's events
//! produced to a Kafka topic, keyed by address (Kafka's murmur2
//! partitioner, as the Java client), with the event time as the record's
//! timestamp, so a Kafka job gets the same input as a file job.

use std::time::Duration;

use anyhow::{Context as _, bail};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::generate::{GenerateConfig, each_event};
use crate::kafka::{Client, Context, client_config, partition_count};

/// Produce the events of `cfg` to `topic` on `brokers`; the topic must
/// exist. Waits until every record is acknowledged, or fails naming how
/// many were not.
pub(super) fn generate_to_kafka(
    brokers: &str,
    topic: &str,
    cfg: &GenerateConfig,
) -> anyhow::Result<()> {
    let producer: BaseProducer<Context> = client_config(
        brokers,
        &[],
        Client::Producer {
            transactional_id: None,
        },
    )
    .create_with_context(Context::default())
    .with_context(|| format!("connecting to Kafka at {brokers}"))?;
    let partitions = partition_count(producer.client(), brokers, topic)?;
    let mut key = String::new();
    let mut value = String::new();
    let injected = each_event(cfg, |address, letter, timestamp| {
        use std::fmt::Write;
        key.clear();
        value.clear();
        let _ = write!(key, "{address}");
        let _ = write!(value, "{address},{},{timestamp}", letter as char);
        let mut record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(value.as_bytes())
            .timestamp(timestamp);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => return Err(std::io::Error::other(e)),
            }
        }
        producer.poll(Duration::ZERO);
        Ok(())
    })
    .with_context(|| format!("producing to topic `{topic}` on {brokers}"))?;
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("waiting for {brokers} to acknowledge the events"))?;
    let failed = producer.context().take_undelivered();
    if let Some(first) = failed.first() {
        bail!(
            "{} of {} events were not delivered to topic `{topic}` (first: {})",
            failed.len(),
            cfg.events,
            first.error
        );
    }
    println!(
        "produced {} events ({injected} injected errors) to topic `{topic}` ({partitions} \
         partitions) on {brokers}, keyed by address",
        cfg.events
    );
    Ok(())
}
