//! Tools that map files to times: an index of each file's event times
//! (first, last, earliest, latest), record count and size, kept as the
//! hidden file [`INDEX_FILE`] beside the files, so that a second look is
//! instant and a job can start at a time, skipping whole files.
//!
//! An entry is rebuilt when its file changed (size, modification time or
//! ETag differ) or when the index was built with other record settings
//! (format, timestamp location, header). Where the files cannot be written
//! to (a read-only archive), the caller keeps the index elsewhere through
//! [`IndexStore`] (`weir files index` uses the state store).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::listing::{Entry, Listing};
use super::split::{Encoding, FillError, Piece, Splitter};
use super::{FileSourceSpec, Format, KeySpec};
use crate::batch::NO_TIMESTAMP;
use crate::source::format::LineParser;
use crate::{Error, Result};

/// The index's name beside the files (hidden: the source does not read it).
pub const INDEX_FILE: &str = ".weir-index.json";

/// Where an index is kept when it cannot be written beside the files.
pub trait IndexStore {
    /// The stored index of `location`, if any.
    fn get(&self, location: &str) -> Result<Option<Vec<u8>>>;
    /// Store the index of `location`.
    fn put(&self, location: &str, bytes: Vec<u8>) -> Result<()>;
}

/// One file's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIndex {
    /// The file's name.
    pub name: String,
    /// Its size when indexed.
    pub size: u64,
    /// Its modification time when indexed (ms).
    pub modified_ms: i64,
    /// Its ETag when indexed (object stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Records with an event time.
    pub records: u64,
    /// Event time of the first record (ms); `None`: no records.
    pub first_ms: Option<i64>,
    /// Event time of the last record.
    pub last_ms: Option<i64>,
    /// Earliest event time in the file.
    pub min_ms: Option<i64>,
    /// Latest event time in the file.
    pub max_ms: Option<i64>,
}

/// The stored index.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// The record settings the index was built with.
    settings: String,
    /// Entries by file name.
    files: BTreeMap<String, FileIndex>,
}

/// What an index call did, for the user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexReport {
    /// Every file's entry, in name order.
    pub files: Vec<FileIndex>,
    /// Files (re)indexed in this call.
    pub rebuilt: usize,
    /// Where the index is kept: beside the files, or the fallback store.
    pub kept: String,
}

/// The record settings an index depends on.
fn settings(spec: &FileSourceSpec) -> String {
    format!(
        "{:?} ts={:?} header={}",
        spec.format, spec.timestamp, spec.header
    )
}

/// Whether `i` still describes `e`.
fn fresh(i: &FileIndex, e: &Entry) -> bool {
    i.size == e.size && i.modified_ms == e.modified_ms && i.etag == e.etag
}

/// Scan one file for its event times.
fn scan(listing: &dyn Listing, spec: &FileSourceSpec, e: &Entry) -> Result<FileIndex> {
    let parser = LineParser::new(spec.format, KeySpec::None, spec.timestamp.clone());
    let mut out = FileIndex {
        name: e.name.clone(),
        size: e.size,
        modified_ms: e.modified_ms,
        etag: e.etag.clone(),
        records: 0,
        first_ms: None,
        last_ms: None,
        min_ms: None,
        max_ms: None,
    };
    walk(
        listing,
        spec,
        e,
        &mut |_, _, ts| {
            out.records += 1;
            out.first_ms.get_or_insert(ts);
            out.last_ms = Some(ts);
            out.min_ms = Some(out.min_ms.map_or(ts, |m| m.min(ts)));
            out.max_ms = Some(out.max_ms.map_or(ts, |m| m.max(ts)));
            true
        },
        &parser,
    )?;
    Ok(out)
}

/// Every record of `e` with an event time, in order: `f(offset, lines
/// before, time)`, until `f` returns false.
fn walk(
    listing: &dyn Listing,
    spec: &FileSourceSpec,
    e: &Entry,
    f: &mut dyn FnMut(u64, u64, i64) -> bool,
    parser: &LineParser,
) -> Result<()> {
    let mut reader = listing.open(e, 0)?;
    let csv = spec.format == Format::Csv;
    let mut split = Splitter::new(0, 0, csv, true);
    loop {
        let mut emit = |p: Piece<'_>| -> Result<bool, ()> {
            let Piece::Record {
                bytes,
                line,
                offset,
            } = p
            else {
                return Ok(true);
            };
            if bytes.is_empty() || (spec.header && csv && line == 1) {
                return Ok(true);
            }
            match parser.parse(bytes) {
                Ok(p) if p.timestamp != NO_TIMESTAMP => Ok(f(offset, line - 1, p.timestamp)),
                _ => Ok(true),
            }
        };
        let fill = split
            .fill(&mut *reader, &mut emit)
            .map_err(|err| match err {
                FillError::Io(err) => {
                    Error::Config(format!("reading {}: {err}", listing.describe(&e.name)))
                }
                FillError::Emit(()) => Error::Internal("index scan".into()),
            })?;
        let utf16 = matches!(fill.encoding, Some(Encoding::Utf16 { .. }));
        if fill.read == 0 || fill.read == usize::MAX || utf16 {
            return Ok(());
        }
    }
}

/// The index of `listing` for `spec`'s record settings: loaded, with the
/// entries of new or changed files rebuilt, and stored again if anything
/// changed (beside the files, else in `fallback`).
pub fn index(
    listing: &dyn Listing,
    spec: &FileSourceSpec,
    fallback: Option<&dyn IndexStore>,
) -> Result<IndexReport> {
    if spec.timestamp == KeySpec::None {
        return Err(Error::Config(
            "an index maps files to event times: say where the event time is \
             (timestamp_column or timestamp_field)"
                .into(),
        ));
    }
    let want = settings(spec);
    let beside = listing.get_own(INDEX_FILE).ok().flatten();
    let stored = match (beside, fallback) {
        (Some(b), _) => Some(b),
        (None, Some(s)) => s.get(listing.location())?,
        (None, None) => None,
    };
    let mut stored: Stored = stored
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &Stored| s.settings == want)
        .unwrap_or_else(|| Stored {
            settings: want,
            files: BTreeMap::new(),
        });
    let entries = listing.list()?;
    let mut rebuilt = 0;
    let mut files = Vec::new();
    for e in &entries {
        let i = match stored.files.get(&e.name) {
            Some(i) if fresh(i, e) => i.clone(),
            _ => {
                rebuilt += 1;
                scan(listing, spec, e)?
            }
        };
        files.push(i);
    }
    let changed = rebuilt > 0 || stored.files.len() != files.len();
    stored.files = files.iter().map(|i| (i.name.clone(), i.clone())).collect();
    let mut kept = listing.describe(INDEX_FILE);
    if changed {
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|e| Error::Internal(format!("index: {e}")))?;
        if let Err(e) = listing.put_own(INDEX_FILE, bytes.clone()) {
            match fallback {
                Some(s) => {
                    s.put(listing.location(), bytes)?;
                    kept = "the state store".into();
                }
                None => {
                    tracing::warn!(
                        "the index could not be kept beside the files ({e}): built for this run only"
                    );
                    kept = "nowhere (built for this run)".into();
                }
            }
        }
    }
    Ok(IndexReport {
        files,
        rebuilt,
        kept,
    })
}

/// Where a run with `start_at = at` begins.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StartAt {
    /// Files skipped whole: every event in them is before `at`.
    pub skip: Vec<String>,
    /// (file, offset, lines before) of the first record at or after `at`
    /// in the first file that has one; `None`: no file has one.
    pub at: Option<(String, u64, u64)>,
}

/// Find where a run that starts at event time `at` begins: files whose
/// latest event is before `at` are skipped whole (from the index), and the
/// first other file is read from its first record at or after `at`.
pub(crate) fn start_at(listing: &dyn Listing, spec: &FileSourceSpec, at: i64) -> Result<StartAt> {
    let report = index(listing, spec, None)?;
    let entries: BTreeMap<String, Entry> = listing
        .list()?
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let parser = LineParser::new(spec.format, KeySpec::None, spec.timestamp.clone());
    let mut found = StartAt::default();
    for i in report.files {
        if i.max_ms.is_none_or(|m| m < at) {
            found.skip.push(i.name);
            continue;
        }
        let Some(e) = entries.get(&i.name) else {
            continue;
        };
        let mut hit = None;
        walk(
            listing,
            spec,
            e,
            &mut |offset, lines, ts| {
                if ts >= at {
                    hit = Some((offset, lines));
                    false
                } else {
                    true
                }
            },
            &parser,
        )?;
        if let Some((offset, lines)) = hit {
            found.at = Some((i.name, offset, lines));
            return Ok(found);
        }
        found.skip.push(i.name);
    }
    Ok(found)
}
