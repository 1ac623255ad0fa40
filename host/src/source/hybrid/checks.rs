//! What the hybrid source checks about its topic: before anything is read,
//! that the topic's producers put a key in the partition the files' records
//! of that key go to; at the switch, that retention has not deleted records
//! between the files' end and the topic's first record.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{Client, Context, REQUEST_TIMEOUT, client_config, external, partition_count};
use crate::source::file::KeySpec;
use crate::source::format::LineParser;
use crate::source::kafka::KafkaSourceSpec;
use crate::source::kafka::offsets::start_offsets;
use crate::{Error, Result};

/// Records sampled per partition.
const SAMPLE: usize = 200;

/// Longest the sample takes.
const SAMPLE_TIME: Duration = Duration::from_secs(5);

/// Each partition's log range: first and next offset.
type Ranges = Vec<(i64, i64)>;

/// A consumer that reads without joining or committing, and each
/// partition's log range.
pub(super) fn reader(spec: &KafkaSourceSpec) -> Result<(BaseConsumer<Context>, Ranges)> {
    let group = format!("{}-hybrid-check", spec.group_id);
    let consumer: BaseConsumer<Context> = client_config(
        &spec.brokers,
        &spec.properties,
        Client::MarkerReader { group: &group },
    )
    .create_with_context(Context::default())
    .map_err(external("connecting"))?;
    let n = partition_count(consumer.client(), &spec.brokers, &spec.topic)?;
    let ranges = (0..n)
        .map(|p| {
            consumer
                .fetch_watermarks(&spec.topic, p as i32, REQUEST_TIMEOUT)
                .map_err(external(format!("offsets of {} partition {p}", spec.topic)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((consumer, ranges))
}

/// Sample the first records of each partition and refuse when a record's
/// key (found as the files' keys are found) hashes to another partition
/// than the one its producer put it in: the files' records of that key
/// would meet its live records in another partition's state.
pub(super) fn same_partitioning(spec: &KafkaSourceSpec) -> Result<()> {
    if spec.key == KeySpec::None {
        // Keyless records go round-robin in the files: nothing to agree on.
        return Ok(());
    }
    let (consumer, ranges) = reader(spec)?;
    let n = ranges.len();
    let mut tpl = TopicPartitionList::new();
    let mut left = vec![0usize; n];
    for (p, &(lo, hi)) in ranges.iter().enumerate() {
        left[p] = usize::try_from(hi - lo).unwrap_or(0).min(SAMPLE);
        tpl.add_partition_offset(&spec.topic, p as i32, Offset::Offset(lo))
            .map_err(external("assigning a partition"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(external(format!("reading {}", spec.topic)))?;
    let parser = LineParser::new(spec.format, spec.key.clone(), spec.timestamp.clone());
    let deadline = Instant::now() + SAMPLE_TIME;
    while left.iter().any(|&l| l > 0) && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let p = m.partition() as usize;
        if p >= n || left[p] == 0 {
            continue;
        }
        left[p] -= 1;
        let Ok(parsed) = parser.parse(m.payload().unwrap_or_default()) else {
            continue;
        };
        let Some(key) = parsed.key else { continue };
        let routed = crate::partition::partition_for_key(&key, n as u32) as usize;
        if routed != p {
            return Err(Error::Config(format!(
                "[source] hybrid: topic {} holds key `{}` in partition {p} (offset {}), but \
                 the files' records of that key go to partition {routed} (murmur2 of the key, \
                 as Kafka's Java producer and Weir's sink partition): the topic's producers \
                 partition another way (librdkafka's default is CRC32; set its \
                 `partitioner` to `murmur2_random`), so a key's history and its live records \
                 would not meet in one state",
                spec.topic,
                String::from_utf8_lossy(&key),
                m.offset()
            )));
        }
    }
    Ok(())
}

/// At the switch, with Kafka to start after the files' last event time:
/// refuse when a partition's first retained record is already after that
/// time (its log does not start at 0), since the records between the end
/// of the files and it may have been deleted by retention while the
/// history was read.
pub(super) fn nothing_deleted_since_the_files(spec: &KafkaSourceSpec) -> Result<()> {
    let (consumer, ranges) = reader(spec)?;
    let start = start_offsets(spec, &consumer, &ranges)?;
    for (p, (&(lo, hi), &s)) in ranges.iter().zip(&start).enumerate() {
        if lo > 0 && s == lo && lo < hi {
            return Err(Error::Config(format!(
                "[source] hybrid: partition {p} of topic {} starts at offset {lo}, already \
                 after the files' last event time: records between the end of the files and \
                 that offset may have been deleted by retention. Archive them, or set \
                 [source.kafka] start or start_offsets to accept the gap",
                spec.topic
            )));
        }
    }
    Ok(())
}
