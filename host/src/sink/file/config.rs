//! The file sink's job-file table (`[sink] type = "file"`) and what it
//! resolves to.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A directory with JSON-lines part files per partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The directory (created if missing), relative to the job file.
    /// Required.
    pub path: PathBuf,
}

/// A resolved file sink.
#[derive(Debug, Clone)]
pub struct FileSinkSpec {
    /// The directory.
    pub dir: PathBuf,
}

impl FileSinkConfig {
    /// The resolved sink; a relative path resolves against `base` (the
    /// job file's folder).
    pub(crate) fn resolve(&self, base: &Path) -> FileSinkSpec {
        FileSinkSpec {
            dir: base.join(&self.path),
        }
    }
}
