//! Savepoints that move between job kinds: a files job's savepoint starts
//! a Kafka job or a hybrid job on the topic the files hold, when the job's
//! partitions are the topic's. The state carries over; Kafka starts where
//! the files end, as at a hybrid's switch: per partition after the last
//! archived record of a Kafka Connect-named archive, otherwise at the first
//! records after the files' last event time, unless the job file says where
//! (`start` or `start_offsets`). What cannot carry over is refused, saying
//! what to do.

use serde_json::{Value, json};

use super::archive::{archive_ends, next_offsets};
use super::checks;
use crate::source::Restored;
use crate::source::file::{self, FilePosition};
use crate::source::kafka::{KafkaSourceSpec, Start};
use crate::{Error, Result};

/// The refusal of a files job's savepoint by a job reading `topic`.
fn refusal(topic: &str, detail: String) -> Error {
    Error::Savepoint {
        location: format!("kafka topic {topic}"),
        detail,
    }
}

/// A files job's savepoint must hold the topic's partitions: its records
/// were routed to `partitions` by key as Kafka's producer routes them.
fn same_partitions(r: &Restored, topic: &str, partitions: usize) -> Result<()> {
    if r.partitions.len() == partitions {
        return Ok(());
    }
    Err(refusal(
        topic,
        format!(
            "it was taken by a files job with {} partitions; topic `{topic}` has \
             {partitions}: the state of a key would be in another partition than its records. \
             Run the files job with `partitions = {partitions}` and take the savepoint again",
            r.partitions.len()
        ),
    ))
}

/// What a Kafka job restores from `r`: a files job's savepoint becomes a
/// fresh Kafka start where the files end (the state comes from the
/// savepoint, as always); other positions pass through unchanged.
pub(crate) fn kafka_from_files(
    spec: &KafkaSourceSpec,
    r: Restored,
) -> Result<(KafkaSourceSpec, Option<Restored>)> {
    if r.connector != file::CONNECTOR {
        return Ok((spec.clone(), Some(r)));
    }
    let topic = &spec.topic;
    let (_, ranges) = checks::reader(spec)?;
    same_partitions(&r, topic, ranges.len())?;
    let position = FilePosition::from_value(&r.reader).map_err(|e| refusal(topic, e))?;
    let mut spec = spec.clone();
    if spec.start_given {
        tracing::info!(
            topic = %topic,
            "a files job's savepoint: Kafka starts where the job file says"
        );
        return Ok((spec, None));
    }
    match archive_ends(&position, topic).map_err(|e| refusal(topic, e))? {
        Some(ends) => {
            spec.start_offsets = next_offsets(&spec, &ends)?
                .into_iter()
                .enumerate()
                .collect();
        }
        None => {
            let Some(t) = position.max_time else {
                return Err(refusal(
                    topic,
                    "it was taken by a files job whose records carried no event time (or by \
                     an older version that did not record it), and its files are not named as \
                     Kafka Connect names an archive: nothing says where Kafka starts. Set \
                     [source] start or start_offsets"
                        .into(),
                ));
            };
            spec.start = Start::Timestamp(t.saturating_add(1));
            checks::nothing_deleted_since_the_files(&spec)?;
        }
    }
    // The files job routed records by key: the topic's producers must too.
    checks::same_partitioning(&spec)?;
    tracing::info!(
        topic = %topic,
        start = ?spec.start,
        start_offsets = ?spec.start_offsets,
        "a files job's savepoint: Kafka starts where its files end"
    );
    Ok((spec, None))
}

/// What a hybrid job restores from `r`: a files job's savepoint continues
/// the hybrid's files from its position (the files phase), then switches
/// as the hybrid does; other positions pass through unchanged.
pub(crate) fn hybrid_from_files(r: Restored, topic: &str, partitions: usize) -> Result<Restored> {
    if r.connector != file::CONNECTOR {
        return Ok(r);
    }
    same_partitions(&r, topic, partitions)?;
    let max_time = FilePosition::from_value(&r.reader)
        .map_err(|e| refusal(topic, e))?
        .max_time
        .map_or(Value::Null, |t| json!(t));
    Ok(Restored {
        connector: super::CONNECTOR.into(),
        reader: json!({ "phase": "files", "files": r.reader, "files_max_time": max_time }),
        partitions: r.partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_savepoint(partitions: usize) -> Restored {
        Restored {
            connector: file::CONNECTOR.into(),
            reader: json!({"file": "b.csv", "offset": 10, "line": 2, "max_time": 1700}),
            partitions: vec![Value::Null; partitions],
        }
    }

    #[test]
    fn a_files_savepoint_continues_in_a_hybrid_jobs_files_phase() {
        let r = hybrid_from_files(files_savepoint(4), "t", 4).unwrap();
        assert_eq!(r.connector, super::super::CONNECTOR);
        assert_eq!(r.reader["phase"], "files");
        assert_eq!(r.reader["files"]["file"], "b.csv");
        assert_eq!(r.reader["files_max_time"], 1700);
        assert_eq!(r.partitions.len(), 4);
        let kafka = Restored {
            connector: "kafka".into(),
            ..Restored::default()
        };
        assert_eq!(hybrid_from_files(kafka, "t", 4).unwrap().connector, "kafka");
    }

    #[test]
    fn a_files_savepoint_with_other_partitions_than_the_topic_is_refused() {
        let err = hybrid_from_files(files_savepoint(8), "t", 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("with 8 partitions"), "{err}");
        assert!(err.contains("`partitions = 4`"), "{err}");
    }
}
