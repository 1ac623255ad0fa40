//! Offsets: the position a checkpoint records, where a fresh run starts
//! (its start mode, then explicit offsets), a restored position checked
//! against each partition's log, and where a bounded run ends.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::{CONNECTOR, KafkaSourceSpec, OutOfRange, Start, Until};
use crate::kafka::{Context, REQUEST_TIMEOUT, external};
use crate::source::{Position, Restored};
use crate::{Error, Result};

/// The partition's next offset as recorded in a checkpoint.
fn offset_of(v: &Value) -> Option<i64> {
    v.get("offset").and_then(Value::as_i64)
}

/// The position at next offsets `next`.
pub(super) fn position(topic: &str, next: &[i64]) -> Position {
    Position {
        reader: json!({ "topic": topic }),
        partitions: next
            .iter()
            .enumerate()
            .map(|(p, o)| (p, json!({ "offset": o })))
            .collect(),
    }
}

/// Start offsets of a fresh run: the start mode, then explicit offsets.
pub(in crate::source) fn start_offsets(
    spec: &KafkaSourceSpec,
    consumer: &BaseConsumer<Context>,
    ranges: &[(i64, i64)],
) -> Result<Vec<i64>> {
    let n = ranges.len();
    let mut next: Vec<i64> = match &spec.start {
        Start::Earliest => ranges.iter().map(|r| r.0).collect(),
        Start::Latest => ranges.iter().map(|r| r.1).collect(),
        Start::Timestamp(t) => offsets_at_time(consumer, spec, *t, ranges)?,
        Start::Committed => {
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition(&spec.topic, spec.kafka_id(p));
            }
            let committed = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(external(format!(
                    "reading group {}'s offsets",
                    spec.group_id
                )))?;
            (0..n)
                .map(|p| {
                    match committed
                        .find_partition(&spec.topic, spec.kafka_id(p))
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(o)) => o.clamp(ranges[p].0, ranges[p].1),
                        _ => ranges[p].0,
                    }
                })
                .collect()
        }
    };
    for &(id, o) in &spec.start_offsets {
        let p = match spec.only {
            Some(only) if only != id => continue,
            Some(_) => 0,
            None => id,
        };
        let Some((lo, hi)) = ranges.get(p).copied() else {
            return Err(Error::Config(format!(
                "start_offsets names partition {id}; topic `{}` has {n} partitions",
                spec.topic
            )));
        };
        if o < lo || o > hi {
            return Err(Error::Config(format!(
                "start offset {o} of partition {id} is outside its log [{lo}, {hi})"
            )));
        }
        next[p] = o;
    }
    Ok(next)
}

/// Offsets recorded in a checkpoint, checked against each partition's log.
pub(super) fn restored_offsets(
    spec: &KafkaSourceSpec,
    r: &Restored,
    ranges: &[(i64, i64)],
) -> Result<Vec<i64>> {
    let refuse = |detail: String| Error::Savepoint {
        location: format!("kafka topic {}", spec.topic),
        detail,
    };
    if r.connector != CONNECTOR {
        return Err(refuse(format!(
            "it was taken from a `{}` source; this job reads Kafka",
            r.connector
        )));
    }
    let theirs = r.reader.get("topic").and_then(Value::as_str).unwrap_or("");
    if theirs != spec.topic {
        return Err(refuse(format!(
            "it was taken reading topic `{theirs}`, not `{}`",
            spec.topic
        )));
    }
    if r.partitions.len() != ranges.len() {
        return Err(refuse(format!(
            "it holds {n} partitions; the topic has {} now: a Kafka job's partitions are the \
             topic's, so its state cannot move to other partitions (only a files job's \
             savepoint is rescaled): restore it reading a topic with {n} partitions (any \
             parallelism), or start over with `--fresh`",
            ranges.len(),
            n = r.partitions.len()
        )));
    }
    r.partitions
        .iter()
        .zip(ranges)
        .enumerate()
        .map(|(p, (v, &(lo, hi)))| {
            let o = offset_of(v)
                .ok_or_else(|| refuse(format!("partition {p} has no offset recorded")))?;
            if (lo..=hi).contains(&o) {
                return Ok(o);
            }
            match spec.out_of_range {
                OutOfRange::Earliest => Ok(lo),
                OutOfRange::Latest => Ok(hi),
                OutOfRange::Fail => Err(refuse(format!(
                    "partition {p}: the restored offset {o} is outside the log, which holds \
                     offsets [{lo}, {hi}) (records deleted by retention?); set \
                     `on_offset_out_of_range = \"earliest\"` or `\"latest\"` to start there"
                ))),
            }
        })
        .collect()
}

/// End offsets (exclusive) of a bounded run; `None`: unbounded.
pub(super) fn end_offsets(
    spec: &KafkaSourceSpec,
    consumer: &BaseConsumer<Context>,
    ranges: &[(i64, i64)],
) -> Result<Option<Vec<i64>>> {
    Ok(match &spec.until {
        None => None,
        Some(Until::Latest) => Some(ranges.iter().map(|r| r.1).collect()),
        Some(Until::Timestamp(t)) => Some(offsets_at_time(consumer, spec, *t, ranges)?),
    })
}

/// The first offset at or after `time` in each partition; the end of the
/// partition's log where no record is that late.
fn offsets_at_time(
    consumer: &BaseConsumer<Context>,
    spec: &KafkaSourceSpec,
    time: i64,
    ranges: &[(i64, i64)],
) -> Result<Vec<i64>> {
    let topic = spec.topic.as_str();
    let mut tpl = TopicPartitionList::new();
    for p in 0..ranges.len() {
        tpl.add_partition_offset(topic, spec.kafka_id(p), Offset::Offset(time))
            .map_err(external("offsets for a time"))?;
    }
    let found = consumer
        .offsets_for_times(tpl, REQUEST_TIMEOUT)
        .map_err(external(format!(
            "finding offsets of time {time} in {topic}"
        )))?;
    Ok(ranges
        .iter()
        .enumerate()
        .map(|(p, r)| {
            match found
                .find_partition(topic, spec.kafka_id(p))
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => r.1,
            }
        })
        .collect())
}
