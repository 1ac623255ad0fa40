//! The file source's checkpointed position, and the checks that a restored
//! position still fits its input: the file being read is still there, at
//! least as long and unchanged before the position; each file read to the
//! end is unchanged up to where it was read (it may have grown: the lines
//! appended are read from there), or gone.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::listing::{Entry, Listing};
use crate::Result;
use crate::source::Position;

/// Bytes before a position whose digest a checkpoint records.
pub(crate) const TAIL: u64 = 4096;

/// Where the reader is: the file source's checkpointed position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// File being read (name within the source folder or prefix); `None`:
    /// nothing read yet.
    pub file: Option<String>,
    /// Byte offset in `file` after the last record before the barrier.
    pub offset: u64,
    /// Lines of `file` before `offset`.
    pub line: u64,
    /// SHA-256 (hex) of the up to [`TAIL`] bytes of `file` before
    /// `offset`: a restore refuses a file that changed there. Absent in
    /// positions written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    /// Files read to the end (as far as they had complete records). Absent
    /// (positions of older versions without `follow`): the files sorting
    /// before `file` are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Vec<DoneFile>>,
    /// The largest event time (ms) of the records handed on before this
    /// position, if any carried one: where a Kafka job started from this
    /// position begins by time. Absent in positions written before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<i64>,
}

/// A file read to the end, as a checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DoneFile {
    /// What a run records: how far the file was read, and a digest of the
    /// bytes before that, so a restore can tell an append (read on) from a
    /// change (refused).
    Read {
        /// The file's name.
        name: String,
        /// Bytes read: the offset after its last record.
        size: u64,
        /// Lines before `size`.
        lines: u64,
        /// SHA-256 (hex) of the up to [`TAIL`] bytes before `size`.
        tail: String,
        /// The object's ETag when it was read (object stores).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        etag: Option<String>,
    },
    /// A name only (positions of older versions): done, never checked.
    Name(String),
}

impl DoneFile {
    /// The file's name.
    pub fn name(&self) -> &str {
        match self {
            DoneFile::Read { name, .. } | DoneFile::Name(name) => name,
        }
    }
}

impl FilePosition {
    /// Read a position recorded by this source (`null`: the start).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        if v.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(v.clone()).map_err(|e| format!("not a file source position: {e}"))
    }

    /// As the runtime carries it.
    pub(crate) fn to_position(&self) -> Position {
        Position {
            reader: json!(self),
            partitions: Vec::new(),
        }
    }
}

/// SHA-256 (hex) of the up to [`TAIL`] bytes of `name` before `offset`.
pub(crate) fn tail_digest(listing: &dyn Listing, name: &str, offset: u64) -> Result<String> {
    let bytes = listing.read_range(name, offset.saturating_sub(TAIL), offset)?;
    Ok(crate::digest::sha256_hex(&bytes))
}

/// What became of a file read to the end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Since {
    /// As it was read (or gone: nothing to read).
    Same,
    /// Grown with its read part unchanged: read on from (offset, lines).
    Appended(u64, u64),
    /// Changed in the part already read: the reason.
    Changed(String),
}

/// Compare a file read to the end with `now`, its entry today.
pub(crate) fn since(listing: &dyn Listing, done: &DoneFile, now: Option<&Entry>) -> Result<Since> {
    let (
        DoneFile::Read {
            name,
            size,
            lines,
            tail,
            etag,
        },
        Some(now),
    ) = (done, now)
    else {
        return Ok(Since::Same);
    };
    if now.size < *size {
        return Ok(Since::Changed(format!(
            "{} was read to byte {size} and now has {} bytes (truncated or replaced)",
            listing.describe(name),
            now.size
        )));
    }
    if now.size == *size && etag.is_some() && now.etag == *etag {
        return Ok(Since::Same);
    }
    if tail_digest(listing, name, *size)? != *tail {
        return Ok(Since::Changed(format!(
            "the bytes of {} before byte {size}, where it was read to, changed since",
            listing.describe(name)
        )));
    }
    Ok(if now.size == *size {
        Since::Same
    } else {
        Since::Appended(*size, *lines)
    })
}

/// Refuse a restored position in `file` that its input no longer has: the
/// file is gone, shorter than the position, or changed before it.
pub(crate) fn check_current(
    listing: &dyn Listing,
    file: &str,
    p: &FilePosition,
) -> Result<(), String> {
    let fix = "put the file back as it was when the savepoint or checkpoint was taken, or run with --fresh";
    let len = match listing.stat(file) {
        Ok(Some(e)) => e.size,
        Ok(None) => {
            return Err(format!(
                "the restored position is in file {}, which is not in the source folder (or prefix) any more; {fix}",
                listing.describe(file)
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    if len < p.offset {
        return Err(format!(
            "file {} has {len} bytes, fewer than the restored position (byte {}): it was \
             truncated or replaced since the checkpoint; {fix}",
            listing.describe(file),
            p.offset
        ));
    }
    if let Some(tail) = &p.tail {
        let now = tail_digest(listing, file, p.offset).map_err(|e| e.to_string())?;
        if now != *tail {
            return Err(format!(
                "file {} changed since the savepoint or checkpoint: its bytes before the restored \
                 position (byte {}) differ; {fix}",
                listing.describe(file),
                p.offset
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_files_of_every_version_read_back() {
        let v = json!({"file": "b", "offset": 3, "line": 1, "done": [
            "a",
            {"name": "b", "size": 3, "lines": 1, "tail": "x"},
        ]});
        let p = FilePosition::from_value(&v).unwrap();
        let done = p.done.unwrap();
        assert_eq!(done[0], DoneFile::Name("a".into()));
        assert_eq!(done[1].name(), "b");
        assert!(matches!(done[1], DoneFile::Read { size: 3, .. }));
    }
}
