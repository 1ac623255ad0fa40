//! The file source's job-file table (`[source] type = "files"`) and what
//! it resolves to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Format, KeySpec};
use crate::source::resolve::{self, DEFAULT_IDLE_TIMEOUT_MS, ResolvedSource, SourceSpec};
use crate::{Error, Result};

/// A directory of files, read in name order as one stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The directory, relative to the job file, or an object-store prefix
    /// `s3://bucket/prefix` (S3 settings from the `AWS_*` environment
    /// variables). Hidden files (`.name`) are skipped, so a writer can write
    /// `.name` and rename it when complete. Required.
    pub path: String,
    /// Record format: `csv`, `jsonl` or `lines`. Required.
    pub format: Format,
    /// CSV: 0-based column holding the key. Default: no key (round-robin).
    pub key_column: Option<usize>,
    /// JSON lines: top-level field holding the key (a string or a number).
    /// Default: no key.
    pub key_field: Option<String>,
    /// CSV: 0-based column holding the event time in ms. Default: none.
    pub timestamp_column: Option<usize>,
    /// JSON lines: top-level field holding the event time in ms (a number).
    /// Default: none.
    pub timestamp_field: Option<String>,
    /// CSV: skip the first line of every file. Default false.
    #[serde(default)]
    pub header: bool,
    /// Keep watching the directory for new files until stopped. Default false.
    #[serde(default)]
    pub follow: bool,
    /// Start at this event time: epoch ms (an integer) or a UTC time
    /// `YYYY-MM-DDTHH:MM:SSZ`. Files whose events are all earlier are
    /// skipped whole (from the index, `.weir-index.json` beside the files);
    /// the first other file is read from its first record at or after it.
    /// Only for a run that does not resume from a checkpoint. Default: the
    /// first record.
    pub start_at: Option<String>,
    /// How often `follow` looks for new files, in ms. Default 200.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// The watermark trails the largest event time seen by this much (ms):
    /// how out of order events may arrive. Default 0.
    #[serde(default)]
    pub watermark_delay_ms: i64,
}

fn default_poll_ms() -> u64 {
    200
}

/// A resolved file source.
#[derive(Debug, Clone)]
pub struct FileSourceSpec {
    /// Directory to read (when `url` is `None`).
    pub dir: PathBuf,
    /// Object-store prefix to read instead (`s3://bucket/prefix`).
    pub url: Option<String>,
    /// Record format.
    pub format: Format,
    /// Key location.
    pub key: KeySpec,
    /// Event-time location.
    pub timestamp: KeySpec,
    /// Skip each file's first line (CSV).
    pub header: bool,
    /// Watch for new files until stopped.
    pub follow: bool,
    /// Poll interval of `follow`.
    pub poll_interval: Duration,
    /// End the input before the first record at or after this event time
    /// (a fork's `--until`).
    pub until: Option<i64>,
    /// Start at the first record at or after this event time (ms), files
    /// before it skipped whole, unless the run resumes from a checkpoint.
    pub start_at: Option<i64>,
    /// Route each record to the partition its file's Kafka Connect name
    /// carries (`<topic>+<partition>+<offset>`), not by its key: set by a
    /// hybrid source over a Connect-named archive.
    pub partition_from_name: bool,
}

impl FileSourceSpec {
    /// Read to the end of the files there now (or to event time `until`),
    /// not following the folder: what a what-if fork reads.
    pub(crate) fn bounded_for_fork(&mut self, until: Option<i64>) {
        self.follow = false;
        self.until = until;
    }
}

impl FileSourceConfig {
    /// The resolved source; a relative path resolves against `base` (the
    /// job file's folder).
    pub(crate) fn resolve(&self, base: &Path) -> Result<ResolvedSource> {
        let (key, timestamp) = resolve::key_and_time(
            self.format,
            (self.key_column, &self.key_field),
            (self.timestamp_column, &self.timestamp_field),
        )?;
        if self.format == Format::Raw {
            return Err(Error::Config(
                "file sources read csv, jsonl or lines, not raw".into(),
            ));
        }
        let path = self.path.trim();
        let (dir, url) = if path.starts_with("s3://") {
            (
                base.to_path_buf(),
                Some(path.trim_end_matches('/').to_string()),
            )
        } else {
            (
                base.join(path.strip_prefix("file://").unwrap_or(path)),
                None,
            )
        };
        let start_at = match &self.start_at {
            None => None,
            Some(t) => Some(crate::clock::parse_time(t.trim()).ok_or_else(|| {
                Error::Config(format!(
                    "[source] start_at = {t:?}: not a time (epoch ms, or a UTC time \
                     YYYY-MM-DDTHH:MM:SSZ)"
                ))
            })?),
        };
        if start_at.is_some() && timestamp == KeySpec::None {
            return Err(Error::Config(
                "[source] start_at needs the event time of each record: set \
                 timestamp_column (csv) or timestamp_field (jsonl)"
                    .into(),
            ));
        }
        let spec = FileSourceSpec {
            dir,
            url,
            start_at,
            format: self.format,
            key,
            timestamp,
            header: self.header,
            follow: self.follow,
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(1)),
            until: None,
            partition_from_name: false,
        };
        Ok(ResolvedSource {
            spec: SourceSpec::Files(spec),
            watermark_delay_ms: self.watermark_delay_ms.max(0),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            own_partitions: false,
        })
    }
}
