//! `weir files index`: which event times each file of a folder or an
//! object-store prefix holds (first, last, earliest, latest), with its
//! record count and size. The index is kept beside the files
//! (`.weir-index.json`), or in a state store when the files cannot be
//! written to, so a second call reads it back and rescans only the files
//! that changed.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Subcommand;

use crate::checkpoint::store::{StateStore, StoreSpec};
use crate::config::{FileSourceSpec, Format, KeySpec};
use crate::source::file::index::{IndexStore, index};

/// `weir files ...`.
#[derive(Subcommand)]
pub(super) enum FilesCommand {
    /// Print each file's first and last event time, record count and size
    /// (building or refreshing the index of the folder or prefix).
    Index {
        /// A folder, or an object-store prefix `s3://bucket/prefix` (S3
        /// settings from the `AWS_*` environment variables).
        location: String,
        /// Record format: `csv` or `jsonl`.
        #[arg(long)]
        format: String,
        /// CSV: 0-based column of the event time (ms).
        #[arg(long, conflicts_with = "timestamp_field")]
        timestamp_column: Option<usize>,
        /// JSON lines: top-level field of the event time (ms).
        #[arg(long)]
        timestamp_field: Option<String>,
        /// CSV: each file's first line is a header.
        #[arg(long)]
        header: bool,
        /// Where to keep the index when the files cannot be written to: a
        /// state store URL (a folder, `file:///...`, `s3://bucket/prefix`).
        #[arg(long, default_value = "weir-state")]
        state: String,
        /// Print JSON lines (for scripts) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Indexes kept in a state store, under `indexes/<digest of the location>`:
/// the store's URL, opened when first needed (a folder is created only to
/// write an index there).
struct InStore(String);

impl InStore {
    fn open(&self) -> crate::Result<StateStore> {
        let cwd = std::env::current_dir()
            .map_err(|e| crate::Error::Internal(format!("the current folder: {e}")))?;
        StateStore::open(
            &StoreSpec {
                url: self.0.clone(),
                ..StoreSpec::default()
            },
            &cwd,
        )
    }

    /// A local store folder that does not exist holds no index.
    fn absent(&self) -> bool {
        let url = self.0.trim();
        let local = !url.contains("://") || url.starts_with("file://");
        local && !std::path::Path::new(url.strip_prefix("file://").unwrap_or(url)).exists()
    }

    fn key(location: &str) -> String {
        format!(
            "indexes/{}.json",
            crate::digest::sha256_hex(location.as_bytes())
        )
    }
}

impl IndexStore for InStore {
    fn get(&self, location: &str) -> crate::Result<Option<Vec<u8>>> {
        if self.absent() {
            return Ok(None);
        }
        Ok(self.open()?.get(&Self::key(location))?.map(|b| b.to_vec()))
    }

    fn put(&self, location: &str, bytes: Vec<u8>) -> crate::Result<()> {
        self.open()?.put(&Self::key(location), Bytes::from(bytes))
    }
}

/// Run a `weir files` command.
pub(super) fn files(command: FilesCommand) -> anyhow::Result<()> {
    let FilesCommand::Index {
        location,
        format,
        timestamp_column,
        timestamp_field,
        header,
        state,
        json,
    } = command;
    let format = match format.as_str() {
        "csv" => Format::Csv,
        "jsonl" => Format::Jsonl,
        other => anyhow::bail!("--format {other}: csv or jsonl"),
    };
    let timestamp = match (format, timestamp_column, timestamp_field) {
        (Format::Csv, Some(c), None) => KeySpec::Column(c),
        (Format::Jsonl, None, Some(f)) => KeySpec::Field(f),
        _ => anyhow::bail!(
            "say where the event time is: --timestamp-column N for csv, --timestamp-field NAME \
             for jsonl"
        ),
    };
    let url = location.starts_with("s3://").then(|| location.clone());
    let spec = FileSourceSpec {
        dir: PathBuf::from(location.strip_prefix("file://").unwrap_or(&location)),
        url,
        format,
        key: KeySpec::None,
        timestamp,
        header,
        follow: false,
        poll_interval: Duration::from_millis(200),
        until: None,
        start_at: None,
        partition_from_name: false,
    };
    let listing = crate::source::file::open_listing(&spec)?;
    let report = index(&*listing, &spec, Some(&InStore(state)))?;
    let time = |t: Option<i64>| t.map_or("-".to_string(), crate::clock::format_time);
    eprintln!(
        "{} files, {} indexed now, the others from the index; index kept in {}",
        report.files.len(),
        report.rebuilt,
        report.kept
    );
    if json {
        for f in &report.files {
            println!("{}", serde_json::to_string(f)?);
        }
        return Ok(());
    }
    println!(
        "{:<40} {:<24} {:<24} {:>10} {:>12}",
        "file", "first event", "last event", "records", "bytes"
    );
    for f in &report.files {
        println!(
            "{:<40} {:<24} {:<24} {:>10} {:>12}",
            f.name,
            time(f.first_ms),
            time(f.last_ms),
            f.records,
            f.size
        );
    }
    Ok(())
}
