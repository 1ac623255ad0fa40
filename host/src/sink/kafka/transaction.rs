//! Producing an epoch: transactions holding the epoch's records and the
//! partition's progress marker, under a stable `transactional.id`.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};

use super::KafkaSinkSpec;
use super::spill::{self, Segment};
use crate::batch::Batch;
use crate::kafka::{Context, REQUEST_TIMEOUT, Undelivered, external, refuses_the_record};
use crate::sink::Spill;
use crate::sink::dead_letter::{DeadLetter, DeadLetters, Stage};
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

/// Send one record, waiting while librdkafka's queue is full; librdkafka's
/// refusal comes back as it is (a record over
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
    drain_until(producer, within, false)
}

/// [`drain`] for a transaction: stops at the first failed delivery, since
/// the transaction can then only be aborted. Waiting on would keep the
/// records queued behind the failure until they time out, and the broker
/// would abort the transaction at its timeout and fence the producer.
fn drain_transaction(
    producer: &BaseProducer<Context>,
    within: Duration,
) -> Result<Vec<Undelivered>> {
    drain_until(producer, within, true)
}

/// [`drain`], stopping at the first failed delivery when `first_failure`.
fn drain_until(
    producer: &BaseProducer<Context>,
    within: Duration,
    first_failure: bool,
) -> Result<Vec<Undelivered>> {
    let deadline = std::time::Instant::now() + within;
    while producer.in_flight_count() > 0 && !(first_failure && producer.context().has_undelivered())
    {
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

/// How long producing an epoch rides out a broker that does not answer
/// (a restart, a network outage) before the job fails: as long as the
/// source waits for it.
pub(super) const OUTAGE: Duration = Duration::from_secs(120);

/// What an epoch is produced with: the partition's transactional producer,
/// where its records and its marker go, and where refused records go.
pub(super) struct Target<'a> {
    /// The partition's transactional producer.
    pub producer: &'a BaseProducer<Context>,
    /// The output topic and its progress topic.
    pub spec: &'a KafkaSinkSpec,
    /// The key of the partition's progress marker.
    pub marker_key: &'a str,
    /// The partition whose output it is.
    pub partition: usize,
    /// Where records the broker or the producer refuses go.
    pub dead_letters: &'a DeadLetters,
    /// Where spilled segments are read from (the job's state store).
    pub spill: Option<&'a dyn Spill>,
}

/// Produce records `from..` of epoch `id` (its segments in order), one
/// transaction per segment, each with the partition's marker saying how
/// far the epoch got (`id:records` while a part is left, `id` once it is
/// whole), so no transaction outgrows the transaction timeout and a
/// restore resumes inside an epoch. A record the producer or the broker
/// refuses as such (too large, invalid) goes to the dead-letter output
/// and the rest is produced; a broker that does not answer is waited for
/// up to [`OUTAGE`], the segment's transaction aborted and produced again.
pub(super) fn produce_epoch(
    t: &Target<'_>,
    id: u64,
    segments: &[Segment<'_>],
    from: u64,
) -> Result<()> {
    let total: u64 = segments.iter().map(Segment::records).sum();
    let mut first = 0u64;
    for segment in segments {
        let end = first + segment.records();
        if end > from {
            let skip = from.saturating_sub(first) as usize;
            let done = (end < total).then_some(end);
            match segment {
                Segment::Memory(b) => produce_segment(t, id, b, skip, done)?,
                Segment::Spilled(s) => {
                    let store = t.spill.ok_or_else(|| {
                        Error::Internal("a spilled segment without a state store".into())
                    })?;
                    produce_segment(t, id, &spill::load(store, s)?, skip, done)?
                }
            }
        }
        first = end;
    }
    Ok(())
}

/// One segment's transaction (records `skip..`), retried while the broker
/// is away; `done`: the records of the epoch produced once it commits
/// (`None`: all of them).
fn produce_segment(
    t: &Target<'_>,
    id: u64,
    segment: &Batch,
    skip: usize,
    done: Option<u64>,
) -> Result<()> {
    let mut refused = vec![false; segment.len()];
    let mut outage: Option<std::time::Instant> = None;
    loop {
        match try_segment(t, id, segment, skip, done, &mut refused) {
            Ok(()) => return Ok(()),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Again(why)) => {
                let since = *outage.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > OUTAGE {
                    return Err(Error::External(format!(
                        "kafka: partition {}, epoch {id}: the broker did not take the output \
                         for {} s ({why}); a restart from `latest` produces it",
                        t.partition,
                        OUTAGE.as_secs()
                    )));
                }
                tracing::warn!(partition = t.partition, epoch = id, "{why}; trying again");
                abort(t.producer, since)?;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Why a transaction did not commit.
enum Attempt {
    /// Aborted or abortable (the broker away, a record it refused): abort
    /// and produce the segment again.
    Again(String),
    /// The producer cannot go on (fenced by a newer run, misconfigured).
    Fatal(Error),
}

fn try_segment(
    t: &Target<'_>,
    id: u64,
    segment: &Batch,
    skip: usize,
    done: Option<u64>,
    refused: &mut [bool],
) -> std::result::Result<(), Attempt> {
    let fail = |what: &str, e: KafkaError| {
        let text = format!("{what} (partition {}, epoch {id}): {e}", t.partition);
        let fatal = match &e {
            KafkaError::Transaction(rd) => rd.is_fatal(),
            _ => matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                )
            ),
        };
        if fatal {
            Attempt::Fatal(Error::External(format!("kafka: {text}")))
        } else {
            Attempt::Again(text)
        }
    };
    t.producer
        .begin_transaction()
        .map_err(|e| fail("beginning a transaction", e))?;
    for (i, r) in segment.iter().enumerate().skip(skip) {
        if refused[i] {
            continue;
        }
        let rec = BaseRecord::to(&t.spec.topic).key(r.key).payload(r.value);
        match try_send(t.producer, rec) {
            Ok(()) => {}
            Err(e) if refuses_the_record(&e) => {
                refused[i] = true;
                dead_letter(
                    t.dead_letters,
                    (&t.spec.topic, t.partition),
                    Some(r.key),
                    r.value,
                    &e,
                )
                .map_err(Attempt::Fatal)?;
            }
            Err(e) => return Err(fail("producing", e)),
        }
    }
    let value = match done {
        Some(n) => format!("{id}:{n}"),
        None => id.to_string(),
    };
    let marker = BaseRecord::to(&t.spec.progress_topic)
        .key(t.marker_key.as_bytes())
        .payload(value.as_bytes());
    try_send(t.producer, marker).map_err(|e| fail("producing the progress marker", e))?;
    let undelivered = drain_transaction(t.producer, OUTAGE).map_err(Attempt::Fatal)?;
    if !undelivered.is_empty() {
        // The broker refused records of this transaction: they go to the
        // dead letters and the segment is produced again without them.
        let mut other = None;
        for u in undelivered {
            if !refuses_the_record(&u.error) {
                other.get_or_insert(u.error.to_string());
                continue;
            }
            let at = segment.iter().enumerate().skip(skip).position(|(i, r)| {
                !refused[i] && r.value == u.value.as_slice() && Some(r.key) == u.key.as_deref()
            });
            if let Some(k) = at {
                refused[skip + k] = true;
                dead_letter(
                    t.dead_letters,
                    (&t.spec.topic, t.partition),
                    u.key.as_deref(),
                    &u.value,
                    &u.error,
                )
                .map_err(Attempt::Fatal)?;
            }
        }
        return Err(Attempt::Again(other.map_or_else(
            || "the broker refused records of the transaction".into(),
            |e| format!("a record was not delivered: {e}"),
        )));
    }
    // Tests abort the process here: the window between a durable manifest
    // and the commit.
    #[cfg(feature = "failpoints")]
    if crate::failpoint::armed("kafka-before-commit") {
        tracing::error!("failpoint kafka-before-commit: aborting the process");
        std::process::abort();
    }
    #[cfg(feature = "failpoints")]
    if let Some(n) = crate::failpoint::armed_at("kafka-before-commit") {
        static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if COMMITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= n {
            tracing::error!("failpoint kafka-before-commit:{n}: aborting the process");
            std::process::abort();
        }
    }
    #[cfg(feature = "failpoints")]
    if crate::failpoint::armed("kafka-before-commit-after-2s") {
        tracing::error!("failpoint kafka-before-commit-after-2s: aborting the process");
        std::thread::sleep(Duration::from_secs(2));
        std::process::abort();
    }
    // A commit that timed out may still be under way: it is asked again
    // (librdkafka then completes it), never aborted and produced twice.
    let since = std::time::Instant::now();
    loop {
        match t.producer.commit_transaction(REQUEST_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(rd)) if rd.is_retriable() && since.elapsed() < OUTAGE => {
                tracing::warn!(
                    partition = t.partition,
                    epoch = id,
                    "committing: {rd}; asking again"
                );
            }
            Err(e) => return Err(fail("committing a transaction", e)),
        }
    }
}

/// Abort the open transaction, if any, waiting for the broker as long as
/// the outage that started at `since` may last.
fn abort(producer: &BaseProducer<Context>, since: std::time::Instant) -> Result<()> {
    // What is still queued or in flight belongs to the transaction being
    // aborted: purge it and serve its reports here, as librdkafka's abort
    // waits for them and nothing else polls this producer meanwhile.
    producer.purge(PurgeConfig::default().queue().inflight());
    let settled = std::time::Instant::now() + Duration::from_secs(5);
    while producer.in_flight_count() > 0 && std::time::Instant::now() < settled {
        producer.poll(Duration::from_millis(1));
    }
    producer.context().take_undelivered();
    loop {
        match producer.abort_transaction(REQUEST_TIMEOUT) {
            Ok(()) => {
                // The abort purged what was still queued: those reports are
                // of the aborted transaction, not of the next one.
                producer.poll(Duration::ZERO);
                producer.context().take_undelivered();
                return Ok(());
            }
            // No transaction open (it failed to begin).
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::State) => return Ok(()),
            Err(e) if since.elapsed() < OUTAGE => {
                tracing::warn!("kafka: aborting a transaction: {e}; trying again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(external("aborting a transaction")(e)),
        }
    }
}

/// Write a record the producer or the broker refuses to `dead_letters`
/// (the one place both delivery modes of the sink do it).
pub(super) fn dead_letter(
    dead_letters: &DeadLetters,
    (topic, partition): (&str, usize),
    key: Option<&[u8]>,
    value: &[u8],
    e: &KafkaError,
) -> Result<()> {
    let reason = format!("kafka topic {topic} refused the record: {e}");
    tracing::warn!(partition, "{reason}");
    dead_letters.write(&DeadLetter {
        stage: Stage::Sink { partition },
        reason: &reason,
        origin: None,
        key,
        value,
    })
}
