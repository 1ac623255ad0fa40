//! What the file sink knows about its output: the record of each part file
//! it closed (name, size, SHA-256), kept in its checkpointed state and in
//! the sink's own folder beside the output, `.weir-sink/`:
//! - `job`: the job whose sink this folder is (another job's sink there,
//!   or overlapping it, is refused);
//! - `written-PPPP.jsonl`: every part file partition `PPPP` closed, one
//!   [`PartRecord`] a line, appended (and synced) before the file is
//!   committed: the proof that a part file in the folder is the sink's own;
//! - `stash/<name>.<sha256>`: committed part files of another timeline (a
//!   restore of an older savepoint moves the later output here), so a
//!   restore of a later savepoint can move them back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The sink's own folder inside its output folder.
pub(super) const OWN_DIR: &str = ".weir-sink";

/// One part file as the sink closed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct PartRecord {
    /// The committed name (`part-PPPP-SSSSSS.jsonl`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of its content.
    pub sha256: String,
}

/// What a partition's file sink records in a checkpoint (its opaque sink
/// state; the same shape manifest format 1 stored per task, plus `files`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileSinkState {
    /// Sequence number of the partition's next part file.
    pub next_seq: u64,
    /// Part files complete at the barrier, committed with the checkpoint.
    pub pending: Vec<String>,
    /// Every part file of the partition the checkpoint covers (committed
    /// or pending), with size and digest: a restore settles the folder to
    /// exactly these. `None` in checkpoints of earlier versions, which
    /// recorded only `next_seq` and `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<PartRecord>>,
}

impl FileSinkState {
    /// The state as a checkpoint holds it.
    pub fn parse(v: &Value) -> Result<Self> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Internal(format!("file sink state in a checkpoint: {e}")))
    }
}

/// SHA-256 and size of what is written, as it is written.
#[derive(Default)]
pub(super) struct Hashing {
    /// The digest so far.
    hasher: Sha256,
    /// Bytes so far.
    size: u64,
}

impl Hashing {
    /// Take `bytes` into the digest.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The record of the file `name` with what was taken.
    pub fn record(self, name: String) -> PartRecord {
        PartRecord {
            name,
            size: self.size,
            sha256: crate::digest::hex(&self.hasher.finalize()),
        }
    }
}

/// Size and SHA-256 of the file at `path`, as a record named `name`.
pub(super) fn digest_file(path: &Path, name: &str) -> Result<PartRecord> {
    let mut f = File::open(path).map_err(Error::io("reading", path))?;
    let mut h = Hashing::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("reading", path))?;
        if n == 0 {
            return Ok(h.record(name.to_string()));
        }
        h.update(&buf[..n]);
    }
}

/// The sink's own folder of the output folder `dir`.
pub(super) fn own_dir(dir: &Path) -> PathBuf {
    dir.join(OWN_DIR)
}

fn ledger(dir: &Path, partition: usize) -> PathBuf {
    own_dir(dir).join(format!("written-{partition:04}.jsonl"))
}

/// Where a part file of another timeline waits in the stash.
pub(super) fn stashed(dir: &Path, r: &PartRecord) -> PathBuf {
    own_dir(dir)
        .join("stash")
        .join(format!("{}.{}", r.name, r.sha256))
}

/// Append `record` to partition `partition`'s list of written files and
/// sync it: done before the file is committed, so every committed part
/// file of the sink is on the list.
pub(super) fn note_written(dir: &Path, partition: usize, record: &PartRecord) -> Result<()> {
    let path = ledger(dir, partition);
    let mut line = serde_json::to_vec(record).map_err(|e| Error::Internal(e.to_string()))?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(Error::io("opening", &path))?;
    f.write_all(&line)
        .and_then(|()| f.sync_data())
        .map_err(Error::io("writing", &path))
}

/// Every part file the sink ever wrote into `dir` (all partitions); lines
/// that do not parse (a crash in the middle of an append) are skipped.
pub(super) fn written(dir: &Path) -> Result<std::collections::HashSet<PartRecord>> {
    let mut out = std::collections::HashSet::new();
    let own = own_dir(dir);
    let rd = match std::fs::read_dir(&own) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("listing", own)(e)),
    };
    for entry in rd {
        let path = entry.map_err(Error::io("listing", &own))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !(name.starts_with("written-") && name.ends_with(".jsonl")) {
            continue;
        }
        let f = File::open(&path).map_err(Error::io("reading", &path))?;
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(Error::io("reading", &path))?;
            if let Ok(r) = serde_json::from_slice::<PartRecord>(&line) {
                out.insert(r);
            }
        }
    }
    Ok(out)
}

/// The job named by the marker of the sink folder `dir`, if it has one.
pub(super) fn marker_job(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(own_dir(dir).join("job")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["job"].as_str().map(str::to_string)
}

/// Write the marker naming `job` as the owner of the sink folder `dir`,
/// and create the stash.
pub(super) fn claim(dir: &Path, job: &str) -> Result<()> {
    let own = own_dir(dir);
    std::fs::create_dir_all(own.join("stash")).map_err(Error::io("creating", &own))?;
    if marker_job(dir).as_deref() == Some(job) {
        return Ok(());
    }
    let path = own.join("job");
    let text = serde_json::json!({ "job": job }).to_string();
    std::fs::write(&path, text).map_err(Error::io("writing", &path))
}
