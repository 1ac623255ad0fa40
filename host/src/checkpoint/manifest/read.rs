//! Reading manifests from the store: one by folder ([`read`], [`parse`]),
//! every one of a job ([`list`], [`list_all`], corrupt ones apart), and the
//! one a selector names ([`select`]: a savepoint name, a checkpoint id,
//! `latest` or `before:TIME`).

use serde::Deserialize;

use super::{Kind, MANIFEST_FORMAT, Manifest, v1};
use crate::checkpoint::store::StateStore;
use crate::clock::parse_time;
use crate::{Error, Result};

/// A manifest with the folder it was found in.
#[derive(Debug, Clone)]
pub struct Found {
    /// Folder (key prefix) in the store.
    pub folder: String,
    /// The manifest.
    pub manifest: Manifest,
}

/// Read and parse a manifest at `folder/manifest.json`.
pub fn read(store: &StateStore, folder: &str) -> Result<Option<Manifest>> {
    let Some(bytes) = store.get(&format!("{folder}/manifest.json"))? else {
        return Ok(None);
    };
    let location = || format!("{}/{folder}", store.url());
    let m = parse(&bytes).map_err(|detail| Error::Savepoint {
        location: location(),
        detail,
    })?;
    Ok(Some(m))
}

/// Parse a manifest of format 1 or 2 (format 1 converted on read).
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let Format { format } =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest.json does not parse: {e}"))?;
    let parsed = match format {
        1 => serde_json::from_slice::<v1::Manifest>(bytes).map(v1::Manifest::convert),
        MANIFEST_FORMAT => serde_json::from_slice::<Manifest>(bytes),
        other => {
            return Err(format!(
                "manifest format {other} (this host reads formats 1 and {MANIFEST_FORMAT})"
            ));
        }
    };
    parsed.map_err(|e| format!("manifest.json does not parse: {e}"))
}

/// Every complete checkpoint and savepoint of `job`, oldest first. A folder
/// without a manifest is an incomplete checkpoint and is not listed.
pub fn list(store: &StateStore, job: &str) -> Result<Vec<Found>> {
    let (found, corrupt) = list_all(store, job)?;
    for c in &corrupt {
        tracing::warn!(folder = %c.folder, "skipping a corrupt manifest: {}", c.detail);
    }
    Ok(found)
}

/// A checkpoint or savepoint whose manifest does not parse: listed as
/// corrupt, skipped by `latest`, and deletable.
#[derive(Debug, Clone)]
pub struct Corrupt {
    /// Its folder in the store.
    pub folder: String,
    /// What is wrong.
    pub detail: String,
}

/// Every checkpoint and savepoint of `job`, oldest first, and those whose
/// manifest is corrupt.
pub fn list_all(store: &StateStore, job: &str) -> Result<(Vec<Found>, Vec<Corrupt>)> {
    let mut found = Vec::new();
    let mut corrupt = Vec::new();
    for (key, _) in store.list(&format!("jobs/{job}"))? {
        let Some(folder) = key.strip_suffix("/manifest.json") else {
            continue;
        };
        match read(store, folder) {
            Ok(Some(m)) => found.push(Found {
                folder: folder.to_string(),
                manifest: m,
            }),
            Ok(None) => {}
            Err(Error::Savepoint { detail, .. }) => corrupt.push(Corrupt {
                folder: folder.to_string(),
                detail,
            }),
            Err(e) => return Err(e),
        }
    }
    found.sort_by_key(|f| (f.manifest.id, f.manifest.wall_time_ms));
    Ok((found, corrupt))
}

/// The ids of every checkpoint folder of `job`, complete or not.
pub fn checkpoint_folder_ids(store: &StateStore, job: &str) -> Result<Vec<u64>> {
    let prefix = format!("jobs/{job}/checkpoints/");
    Ok(store
        .list(&prefix)?
        .iter()
        .filter_map(|(key, _)| key.strip_prefix(&prefix)?.split('/').next()?.parse().ok())
        .collect())
}

/// Pick a checkpoint or savepoint of `job`: a savepoint name, a checkpoint
/// id, `latest` (newest complete one of either kind) or `before:TIME`
/// (newest whose watermark is before TIME: ms since the epoch or
/// `YYYY-MM-DDTHH:MM:SS[Z]`).
pub fn select(store: &StateStore, job: &str, selector: &str) -> Result<Found> {
    let (all, corrupt) = list_all(store, job)?;
    if let Some(c) = corrupt.iter().find(|c| {
        c.folder.ends_with(&format!("/savepoints/{selector}"))
            || c.folder.ends_with(&format!("/checkpoints/{selector}"))
    }) {
        return Err(Error::Savepoint {
            location: format!("{}/{}", store.url(), c.folder),
            detail: format!(
                "its manifest is corrupt ({}); restore another one, or delete it with \
                 `weir savepoint delete`",
                c.detail
            ),
        });
    }
    for c in &corrupt {
        tracing::warn!(folder = %c.folder, "skipping a corrupt manifest: {}", c.detail);
    }
    let none = |what: String| Error::Savepoint {
        location: format!("{}/jobs/{job}", store.url()),
        detail: what,
    };
    if selector == "latest" {
        return all
            .into_iter()
            .last()
            .ok_or_else(|| none("no complete checkpoint or savepoint".into()));
    }
    if let Some(t) = selector.strip_prefix("before:") {
        let time = parse_time(t)
            .ok_or_else(|| none(format!("`{t}` is not a time (ms or YYYY-MM-DDTHH:MM:SSZ)")))?;
        return all
            .into_iter()
            .filter(|f| f.manifest.watermark < time)
            .max_by_key(|f| (f.manifest.watermark, f.manifest.id))
            .ok_or_else(|| {
                none(format!(
                    "no checkpoint or savepoint with event time before {t}"
                ))
            });
    }
    let mut named: Vec<Found> = all
        .into_iter()
        .filter(|f| {
            (f.manifest.kind == Kind::Savepoint && f.manifest.name == selector)
                || (f.manifest.kind == Kind::Checkpoint
                    && selector.parse::<u64>().ok() == Some(f.manifest.id))
        })
        .collect();
    named.sort_by_key(|f| f.manifest.kind == Kind::Savepoint);
    named
        .pop()
        .ok_or_else(|| none(format!("no savepoint or checkpoint named `{selector}`")))
}
