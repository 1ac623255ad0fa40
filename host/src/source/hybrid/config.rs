//! The hybrid source's job-file table: `[source] type = "hybrid"` with a
//! `[source.files]` table and a `[source.kafka]` table, the same options
//! as each source alone. The Kafka part's `start` may be any start mode;
//! left out, Kafka starts at the first records after the files' last event
//! time.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::HybridSourceSpec;
use crate::source::SourceSpec;
use crate::source::file::FileSourceConfig;
use crate::source::kafka::KafkaSourceConfig;
use crate::source::resolve::ResolvedSource;
use crate::{Error, Result};

/// `[source] type = "hybrid"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridSourceConfig {
    /// The history: a folder of files, read first, whole (no `follow`).
    pub files: FileSourceConfig,
    /// The live part: a Kafka topic, read once every file is read.
    pub kafka: toml::Table,
}

impl HybridSourceConfig {
    /// The resolved source; relative paths resolve against `base`, `job`
    /// names the default consumer group.
    pub(crate) fn resolve(&self, base: &Path, job: &str) -> Result<ResolvedSource> {
        if self.files.follow {
            return Err(Error::Config(
                "[source.files] follow = true: a hybrid source reads its files once, then \
                 follows Kafka"
                    .into(),
            ));
        }
        let kafka: KafkaSourceConfig = toml::Value::Table(self.kafka.clone())
            .try_into()
            .map_err(|e| Error::Config(format!("[source.kafka]: {e}")))?;
        let files = self.files.resolve(base)?;
        let live = kafka.resolve(job)?;
        let (SourceSpec::Files(files_spec), SourceSpec::Kafka(kafka_spec)) =
            (files.spec, live.spec)
        else {
            return Err(Error::Internal(
                "hybrid parts resolved to other sources".into(),
            ));
        };
        if files_spec.format != kafka_spec.format {
            return Err(Error::Config(format!(
                "[source.files] format {:?} and [source.kafka] format {:?} differ: the \
                 operators get one kind of record",
                files_spec.format, kafka_spec.format
            )));
        }
        Ok(ResolvedSource {
            spec: SourceSpec::Hybrid(Box::new(HybridSourceSpec {
                files: files_spec,
                start_after_files: !kafka_spec.start_given,
                kafka: kafka_spec,
            })),
            watermark_delay_ms: live.watermark_delay_ms.max(files.watermark_delay_ms),
            idle_timeout: Duration::max(live.idle_timeout, files.idle_timeout),
            own_partitions: true,
        })
    }
}
