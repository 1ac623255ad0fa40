//! Producing an epoch: one transaction holding the epoch's records and
//! the partition's progress marker, under a stable `transactional.id`.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::KafkaSinkSpec;
use crate::batch::Batch;
use crate::kafka::{Context, REQUEST_TIMEOUT, Undelivered, external};
use crate::{Error, Result};

/// The stable `transactional.id` of a partition's producer: per job,
/// topic and partition, so a restarted run fences the one before it.
/// The job and topic are length-prefixed (`weir:<bytes>:<job>:<bytes>:
/// <topic>:<partition>`), so two jobs never share an id whatever their
/// names hold.
pub(super) fn transactional_id(job: &str, topic: &str, partition: usize) -> String {
    format!(
        "weir:{}:{job}:{}:{topic}:{partition}",
        job.len(),
        topic.len()
    )
}

/// The id before the length prefixes (`weir-<job>-<topic>-<partition>`,
/// ambiguous: job `a-b` topic `c` equals job `a` topic `b-c`). A restore
/// from a checkpoint written with it fences it once (see
/// [`super::KafkaSinkFactory::recover`]), so a transaction an older run
/// left open is aborted and that run, if still alive, is fenced.
pub(super) fn legacy_transactional_id(job: &str, topic: &str, partition: usize) -> String {
    format!("weir-{job}-{topic}-{partition}")
}

/// The version of transactional ids a checkpoint's sink state records
/// (`ids`); a state without it was written with the legacy ids.
pub(super) const IDS_VERSION: u64 = 2;

/// Send one record, waiting while librdkafka's queue is full.
pub(super) fn send(
    producer: &BaseProducer<Context>,
    rec: BaseRecord<'_, [u8], [u8]>,
) -> Result<()> {
    try_send(producer, rec).map_err(external("producing"))
}

/// [`send`], returning librdkafka's refusal as it is (a record over
/// `message.max.bytes` is refused here, before it is sent).
pub(super) fn try_send(
    producer: &BaseProducer<Context>,
    mut rec: BaseRecord<'_, [u8], [u8]>,
) -> std::result::Result<(), KafkaError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Wait until every sent record has its delivery result (librdkafka
/// reports each within `message.timeout.ms`; `within` is a backstop) and
/// return the records whose delivery failed. A plain `flush` waits in
/// 100 ms steps.
pub(super) fn drain(
    producer: &BaseProducer<Context>,
    within: Duration,
) -> Result<Vec<Undelivered>> {
    let deadline = std::time::Instant::now() + within;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() > deadline {
            return Err(Error::External(format!(
                "kafka: {} records without a delivery result after {} s",
                producer.in_flight_count(),
                within.as_secs()
            )));
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(producer.context().take_undelivered())
}

/// Produce epoch `id` of `partition` in one transaction with its marker.
pub(super) fn produce_epoch(
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
    // A record not delivered fails the transaction's commit anyway; say
    // which and why.
    if let Some(u) = drain(producer, REQUEST_TIMEOUT)?.first() {
        return Err(Error::External(format!(
            "kafka: a record of partition {partition}, epoch {id} was not delivered: {}",
            u.error
        )));
    }
    // Tests abort the process here: the window between a durable manifest
    // and the commit.
    #[cfg(feature = "failpoints")]
    if crate::failpoint::armed("kafka-before-commit") {
        tracing::error!("failpoint kafka-before-commit: aborting the process");
        std::process::abort();
    }
    producer
        .commit_transaction(REQUEST_TIMEOUT)
        .map_err(fail("committing a transaction"))
}
