//! The hybrid source: history from a folder of files, then live records
//! from a Kafka topic, as one job with one state (Flink's HybridSource,
//! without its lost start positions). The files are read first, whole,
//! routed to the topic's partitions by the same hash Kafka's producer
//! uses; when the last one is read the source switches to Kafka, by
//! default at the first records whose Kafka timestamp is after the files'
//! last event time (records sharing that millisecond are taken to be in
//! the files), or where `[source.kafka] start` / `start_offsets` say.
//!
//! Every checkpoint holds the phase and both positions: in the files
//! phase the files' position and the largest event time read so far, in
//! the Kafka phase the files' final position and the Kafka offsets. A
//! restore never recomputes a switch it already made; a restore before
//! the switch recomputes it from the same files, to the same offsets.
//! The end of the files is not the end of the input: no timer fires and
//! no final checkpoint is taken there.

pub(crate) mod archive;
mod carry;
mod checks;
mod config;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

pub(crate) use carry::kafka_from_files;
pub use config::HybridSourceConfig;

use super::file::{FilePosition, FileSource, FileSourceSpec};
use super::kafka::{KafkaSource, KafkaSourceSpec, Start};
use super::{Barrier, Completion, Output, Position, Restored, Source, SourceProgress};
use crate::batch::{NO_TIMESTAMP, Origin, Origins};
use crate::{Error, Result};

/// The connector name in checkpoints.
pub(crate) const CONNECTOR: &str = "hybrid";

/// A resolved hybrid source.
#[derive(Debug, Clone)]
pub struct HybridSourceSpec {
    /// The history.
    pub files: FileSourceSpec,
    /// The live part.
    pub kafka: KafkaSourceSpec,
    /// Kafka starts after the files' last event time (no `start` or
    /// `start_offsets` set).
    pub start_after_files: bool,
}

/// The part being read.
enum Phase {
    /// The files, before the switch.
    Files(FileSource),
    /// Kafka, after it.
    Kafka(KafkaSource),
}

/// The hybrid source.
pub struct HybridSource {
    /// The resolved source.
    spec: HybridSourceSpec,
    /// Set to stop the run.
    stop: Arc<AtomicBool>,
    /// The part being read.
    phase: Phase,
    /// The topic's partition count: the job's partitions.
    partitions: usize,
    /// The files' position at their end, once read.
    files_end: Value,
    /// The largest event time read from the files ([`NO_TIMESTAMP`]: none).
    files_max_time: i64,
    /// Where records came from, in either phase.
    origins: Arc<HybridOrigins>,
    /// The phase, the files' figures and the switch's times: for progress.
    progress: Arc<SourceProgress>,
    /// The files are a Kafka Connect-named archive of the topic: the
    /// hand-off is per partition, right after the last archived record.
    archive: bool,
}

/// Dead letters say which phase a record came from.
struct HybridOrigins {
    /// The file source's table of files.
    files: Arc<dyn Origins>,
    /// The topic.
    topic: String,
    /// Switched to Kafka.
    live: AtomicBool,
}

impl Origins for HybridOrigins {
    fn describe(&self, origin: Origin, out: &mut Map<String, Value>) {
        if self.live.load(Ordering::Relaxed) {
            out.insert("phase".into(), json!("kafka"));
            out.insert("topic".into(), json!(self.topic));
            out.insert("partition".into(), json!(origin.unit));
            out.insert("offset".into(), json!(origin.offset));
        } else {
            out.insert("phase".into(), json!("files"));
            self.files.describe(origin, out);
        }
    }
}

impl HybridSource {
    /// Check both parts and open the one to read: the files, or, restored
    /// after the switch, Kafka at the restored offsets. The topic must
    /// exist (its partitions are the job's) before anything is read.
    pub fn open(
        spec: HybridSourceSpec,
        stop: Arc<AtomicBool>,
        restored: Option<Restored>,
    ) -> Result<Self> {
        let partitions = topic_partitions(&spec.kafka)?;
        let mut spec = spec;
        let restored = restored
            .map(|r| carry::hybrid_from_files(r, &spec.kafka.topic, partitions))
            .transpose()?;
        let live = restored
            .as_ref()
            .is_some_and(|r| r.reader.get("phase").and_then(Value::as_str) == Some("kafka"));
        // Before the switch the files decide the routing: a Connect-named
        // archive carries each file's partition.
        let archive = !live && {
            let names: Vec<String> = super::file::open_listing(&spec.files)?
                .list()?
                .into_iter()
                .map(|e| e.name)
                .collect();
            archive::naming(&names, &spec.kafka.topic, partitions)? == archive::Naming::Connect
        };
        spec.files.partition_from_name = archive;
        if !archive {
            checks::same_partitioning(&spec.kafka)?;
        }
        let refuse = |detail: String| Error::Savepoint {
            location: format!(
                "{} then kafka topic {}",
                spec.files.dir.display(),
                spec.kafka.topic
            ),
            detail,
        };
        let (phase, files_end, files_max_time) = match restored {
            None => (
                Phase::Files(FileSource::open(spec.files.clone(), stop.clone(), None)?),
                Value::Null,
                NO_TIMESTAMP,
            ),
            Some(r) => {
                if r.connector != CONNECTOR {
                    return Err(refuse(format!(
                        "it was taken from a `{}` source; this job reads files, then Kafka",
                        r.connector
                    )));
                }
                let max_time = r
                    .reader
                    .get("files_max_time")
                    .and_then(Value::as_i64)
                    .unwrap_or(NO_TIMESTAMP);
                let files = r.reader.get("files").cloned().unwrap_or(Value::Null);
                match r.reader.get("phase").and_then(Value::as_str) {
                    Some("files") => {
                        let restored = Restored {
                            connector: super::file::CONNECTOR.into(),
                            reader: files,
                            partitions: Vec::new(),
                        };
                        let f = FileSource::open(spec.files.clone(), stop.clone(), Some(restored))?;
                        (Phase::Files(f), Value::Null, max_time)
                    }
                    Some("kafka") => {
                        let restored = Restored {
                            connector: super::kafka::CONNECTOR.into(),
                            reader: r.reader.get("kafka").cloned().unwrap_or(Value::Null),
                            partitions: r.partitions,
                        };
                        let k =
                            KafkaSource::open(spec.kafka.clone(), stop.clone(), Some(restored))?;
                        (Phase::Kafka(k), files, max_time)
                    }
                    other => {
                        return Err(refuse(format!(
                            "its hybrid position has no phase `files` or `kafka` ({other:?})"
                        )));
                    }
                }
            }
        };
        let files_origins = match &phase {
            Phase::Files(f) => f.origins(),
            // The files are done: only Kafka origins are described.
            Phase::Kafka(_) => Arc::new(NoFiles),
        };
        let progress = match &phase {
            Phase::Files(f) => f.progress().unwrap_or_default(),
            Phase::Kafka(_) => {
                let p = Arc::new(SourceProgress::new(true));
                p.live();
                p
            }
        };
        let origins = Arc::new(HybridOrigins {
            files: files_origins,
            topic: spec.kafka.topic.clone(),
            live: AtomicBool::new(matches!(phase, Phase::Kafka(_))),
        });
        Ok(Self {
            spec,
            stop,
            phase,
            partitions,
            files_end,
            files_max_time,
            origins,
            progress,
            archive,
        })
    }

    /// Open Kafka where the history ends.
    fn switch(&mut self) -> Result<()> {
        self.progress.switching();
        let mut kafka = self.spec.kafka.clone();
        if self.spec.start_after_files && self.archive {
            let position = FilePosition::from_value(&self.files_end).map_err(Error::Internal)?;
            let ends = archive::archive_ends(&position, &kafka.topic)
                .map_err(|e| Error::Config(format!("[source] hybrid: the archive: {e}")))?
                .unwrap_or_default();
            kafka.start_offsets = archive::next_offsets(&kafka, &ends)?
                .into_iter()
                .enumerate()
                .collect();
        } else if self.spec.start_after_files && self.files_max_time != NO_TIMESTAMP {
            kafka.start = Start::Timestamp(self.files_max_time.saturating_add(1));
            checks::nothing_deleted_since_the_files(&kafka)?;
        }
        tracing::info!(
            topic = %kafka.topic,
            start = ?kafka.start,
            start_offsets = ?kafka.start_offsets,
            archive = self.archive,
            files_last_event_time = self.files_max_time,
            "hybrid source: every file is read; switching to Kafka"
        );
        let k = KafkaSource::open(kafka, self.stop.clone(), None)?;
        self.origins.live.store(true, Ordering::Relaxed);
        self.phase = Phase::Kafka(k);
        self.progress.live();
        // Tests abort the process here: every file read, no Kafka
        // checkpoint yet.
        #[cfg(feature = "failpoints")]
        if crate::failpoint::armed("hybrid-after-switch") {
            tracing::error!("failpoint hybrid-after-switch: aborting the process");
            std::process::abort();
        }
        Ok(())
    }
}

/// What a Kafka job restores from a savepoint of a hybrid job: its Kafka
/// part, when it was taken after the switch. One taken in the files phase
/// is refused (its Kafka start is not decided yet). Positions of other
/// sources pass through unchanged.
pub(crate) fn live_part(r: Restored, topic: &str) -> Result<Restored> {
    if r.connector != CONNECTOR {
        return Ok(r);
    }
    match r.reader.get("phase").and_then(Value::as_str) {
        Some("kafka") => Ok(Restored {
            connector: super::kafka::CONNECTOR.into(),
            reader: r.reader.get("kafka").cloned().unwrap_or(Value::Null),
            partitions: r.partitions,
        }),
        _ => Err(Error::Savepoint {
            location: format!("kafka topic {topic}"),
            detail: "it was taken while a hybrid job was still reading its files: restore \
                     it into the hybrid job, or take one after the switch to Kafka"
                .into(),
        }),
    }
}

/// No files to describe (restored after the switch).
struct NoFiles;

impl Origins for NoFiles {
    fn describe(&self, _: Origin, _: &mut Map<String, Value>) {}
}

/// The topic's partition count, asked before anything is read.
fn topic_partitions(spec: &KafkaSourceSpec) -> Result<usize> {
    use rdkafka::consumer::BaseConsumer;
    let probe: BaseConsumer<crate::kafka::Context> = crate::kafka::client_config(
        &spec.brokers,
        &spec.properties,
        crate::kafka::Client::Probe { committed: true },
    )
    .create_with_context(crate::kafka::Context::default())
    .map_err(crate::kafka::external("connecting"))?;
    crate::kafka::partition_count(
        rdkafka::consumer::Consumer::client(&probe),
        &spec.brokers,
        &spec.topic,
    )
}

impl Source for HybridSource {
    fn connector(&self) -> &'static str {
        CONNECTOR
    }

    fn partitions(&self) -> Option<usize> {
        Some(self.partitions)
    }

    fn origins(&self) -> Arc<dyn Origins> {
        self.origins.clone()
    }

    fn progress(&self) -> Option<Arc<SourceProgress>> {
        Some(self.progress.clone())
    }

    fn run(&mut self, out: &mut dyn Output) -> Result<Completion> {
        if let Phase::Files(files) = &mut self.phase {
            let mut history = FilesPhase {
                out,
                max_time: &mut self.files_max_time,
                ended: None,
            };
            let completion = files.run(&mut history)?;
            let Some(end) = history.ended.take() else {
                return Ok(completion);
            };
            self.files_end = end.reader;
            self.switch()?;
        }
        let Phase::Kafka(kafka) = &mut self.phase else {
            return Err(Error::Internal(
                "hybrid source: no Kafka after the switch".into(),
            ));
        };
        let mut live = KafkaPhase {
            out,
            files_end: &self.files_end,
            files_max_time: self.files_max_time,
            progress: &self.progress,
        };
        kafka.run(&mut live)
    }
}

/// The output as the file source sees it in the files phase: positions
/// wrapped with the phase, the end of the files caught (it is not the end
/// of the input).
struct FilesPhase<'a> {
    /// The runtime's output.
    out: &'a mut dyn Output,
    /// The largest event time read so far.
    max_time: &'a mut i64,
    /// The files' position at their end, once reached.
    ended: Option<Position>,
}

impl FilesPhase<'_> {
    /// The file source reports its own progress.
    fn saw(&self, _: i64) {}

    fn wrap(&self, p: Position) -> Position {
        Position {
            reader: json!({
                "phase": "files",
                "files": p.reader,
                "files_max_time": *self.max_time,
            }),
            partitions: Vec::new(),
        }
    }
}

/// The output as the Kafka source sees it after the switch.
struct KafkaPhase<'a> {
    /// The runtime's output.
    out: &'a mut dyn Output,
    /// The files' position at their end.
    files_end: &'a Value,
    /// The files' last event time.
    files_max_time: i64,
    /// Event time and the first record after the switch, for progress.
    progress: &'a SourceProgress,
}

impl KafkaPhase<'_> {
    /// A Kafka record with event time `timestamp` was read.
    #[inline]
    fn saw(&self, timestamp: i64) {
        self.progress.saw_time(timestamp);
        if self.progress.awaits_live_record() {
            self.progress.first_live_record();
            if let Some(pause) = self.progress.figures().switch.and_then(|s| s.pause_ms) {
                tracing::info!(
                    pause_ms = format!("{pause:.1}"),
                    "hybrid source: the first Kafka record came {pause:.1} ms after the last file"
                );
            }
        }
    }

    fn wrap(&self, p: Position) -> Position {
        Position {
            reader: json!({
                "phase": "kafka",
                "files": self.files_end,
                "files_max_time": self.files_max_time,
                "kafka": p.reader,
            }),
            partitions: p.partitions,
        }
    }
}

/// The [`Output`] methods both phases pass through unchanged.
macro_rules! pass_through {
    () => {
        fn record_in(
            &mut self,
            partition: usize,
            key: &[u8],
            value: &[u8],
            timestamp: i64,
            origin: Origin,
        ) -> ControlFlow<()> {
            self.saw(timestamp);
            self.out.record_in(partition, key, value, timestamp, origin)
        }
        fn malformed(&mut self, origin: Origin, reason: &str, raw: &[u8]) -> Result<()> {
            self.out.malformed(origin, reason, raw)
        }
        fn tick(&mut self) -> ControlFlow<()> {
            self.out.tick()
        }
        fn flush(&mut self) -> ControlFlow<()> {
            self.out.flush()
        }
        fn barrier_due(&mut self) -> Option<Barrier> {
            self.out.barrier_due()
        }
        fn event_time_barrier(&mut self, timestamp: i64) -> Option<Barrier> {
            self.out.event_time_barrier(timestamp)
        }
        fn barrier(&mut self, token: Barrier, position: Position) -> ControlFlow<()> {
            let position = self.wrap(position);
            self.out.barrier(token, position)
        }
        fn next_barrier_id(&self) -> Option<u64> {
            self.out.next_barrier_id()
        }
        fn committed_checkpoint(&self) -> Option<u64> {
            self.out.committed_checkpoint()
        }
        fn is_stopping(&self) -> bool {
            self.out.is_stopping()
        }
        fn read_bytes(&mut self, n: u64) {
            self.out.read_bytes(n)
        }
        fn report_lag(&mut self, lag: &[i64], age_ms: &[i64]) {
            self.out.report_lag(lag, age_ms)
        }
    };
}

impl Output for FilesPhase<'_> {
    fn record(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()> {
        if timestamp != NO_TIMESTAMP {
            *self.max_time = (*self.max_time).max(timestamp);
        }
        self.out.record(key, value, timestamp, origin)
    }

    fn records(
        &mut self,
        text: &[u8],
        spans: &[crate::source::RecordSpan],
        unit: u32,
    ) -> ControlFlow<()> {
        // Without event times: nothing to add to the largest one.
        self.out.records(text, spans, unit)
    }

    fn unit_done(&mut self) {
        self.out.unit_done();
        #[cfg(feature = "failpoints")]
        if let Some(ms) = crate::failpoint::armed_at("hybrid-file-ms") {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    fn end_of_input(&mut self, position: Position) -> ControlFlow<()> {
        // The end of the history: the source switches to Kafka here.
        self.ended = Some(position);
        ControlFlow::Break(())
    }

    pass_through!();
}

impl Output for KafkaPhase<'_> {
    fn record(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()> {
        self.out.record(key, value, timestamp, origin)
    }

    fn end_of_input(&mut self, position: Position) -> ControlFlow<()> {
        let position = self.wrap(position);
        self.out.end_of_input(position)
    }

    fn unit_done(&mut self) {
        self.out.unit_done()
    }

    pass_through!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restored(phase: &str) -> Restored {
        Restored {
            connector: CONNECTOR.into(),
            reader: json!({"phase": phase, "files": {"file": "a.csv"}, "kafka": {"topic": "t"}}),
            partitions: vec![json!(5), json!(7)],
        }
    }

    #[test]
    fn a_kafka_job_takes_the_live_part_of_a_hybrid_savepoint_only_after_the_switch() {
        let live = live_part(restored("kafka"), "t").unwrap();
        assert_eq!(live.connector, "kafka");
        assert_eq!(live.reader, json!({"topic": "t"}));
        assert_eq!(live.partitions, vec![json!(5), json!(7)]);
        let err = live_part(restored("files"), "t").unwrap_err().to_string();
        assert!(err.contains("still reading its files"), "{err}");
        let plain = Restored {
            connector: "kafka".into(),
            ..Restored::default()
        };
        assert_eq!(live_part(plain, "t").unwrap().connector, "kafka");
    }
}
