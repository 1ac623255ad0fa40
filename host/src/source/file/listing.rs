//! Where a file source's files are: a [`Listing`] of named files, each
//! read as a stream from a byte offset. A local folder and an object-store
//! prefix (`s3://bucket/prefix`, `file:///abs/path` through the store, or
//! any other URL `object_store` resolves) both provide one, so the reader,
//! its position and its restore checks are the same for both.
//!
//! Names are relative to the folder or prefix (an object under the prefix
//! keeps its `/`-separated rest as its name) and sort the order files are
//! read in. Hidden files (a name part starting with `.`) are left out, so a
//! writer can write `.name` and rename it when complete; that is also where
//! the source keeps its index.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

use super::FileSourceSpec;
use crate::{Error, Result};

/// One file of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Name within the folder or prefix.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The object's ETag (object stores), which changes with its content;
    /// `None` for local files.
    pub etag: Option<String>,
    /// Last modification time, ms since the epoch (0 if unknown).
    pub modified_ms: i64,
}

/// Files to read, by name, from a local folder or an object store.
pub(crate) trait Listing: Send + Sync {
    /// The folder or URL, for messages.
    fn location(&self) -> &str;
    /// A file's full path or URL, for messages and dead letters.
    fn describe(&self, name: &str) -> String;
    /// Every file that is not hidden, in name order.
    fn list(&self) -> Result<Vec<Entry>>;
    /// One file's entry now (`None`: gone).
    fn stat(&self, name: &str) -> Result<Option<Entry>>;
    /// A stream of `entry`'s bytes from `offset` (object stores: only while
    /// its ETag is still `entry.etag`).
    fn open(&self, entry: &Entry, offset: u64) -> Result<Box<dyn Read + Send>>;
    /// The bytes `from..to` of `name`.
    fn read_range(&self, name: &str, from: u64, to: u64) -> Result<Vec<u8>>;
    /// Read a hidden file of the source's own (its index); `None`: absent.
    fn get_own(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Write a hidden file of the source's own.
    fn put_own(&self, name: &str, bytes: Vec<u8>) -> Result<()>;
}

/// Whether `name` (or one of its folders) is hidden.
fn hidden(name: &str) -> bool {
    name.split('/').any(|p| p.starts_with('.'))
}

/// A local folder and its sub-folders (a link to a folder is not followed).
pub(crate) struct Folder {
    /// The folder.
    dir: PathBuf,
    /// `dir` as text.
    shown: String,
}

impl Folder {
    /// The folder `dir` (checked by the caller).
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            shown: dir.display().to_string(),
        }
    }

    fn entry(&self, name: &str, meta: &std::fs::Metadata) -> Entry {
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        Entry {
            name: name.to_string(),
            size: meta.len(),
            etag: None,
            modified_ms,
        }
    }
}

impl Listing for Folder {
    fn location(&self) -> &str {
        &self.shown
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn list(&self) -> Result<Vec<Entry>> {
        let mut files = Vec::new();
        // Sub-folders are read too (as an object-store prefix is): names
        // are paths within the folder, such as Kafka Connect's
        // `partition=<p>/<topic>+<p>+<offset>.json`.
        let mut folders = vec![String::new()];
        while let Some(sub) = folders.pop() {
            let dir = &self.dir.join(&sub);
            let entries =
                std::fs::read_dir(dir).map_err(Error::io("listing source folder", dir))?;
            for entry in entries {
                let entry = entry.map_err(Error::io("listing source folder", dir))?;
                let path = entry.path();
                let Some(base) = entry.file_name().to_str().map(str::to_string) else {
                    return Err(Error::Config(format!(
                        "source file {} has a name that is not UTF-8: rename it",
                        path.display()
                    )));
                };
                let name = if sub.is_empty() {
                    base
                } else {
                    format!("{sub}/{base}")
                };
                if hidden(&name) {
                    continue;
                }
                let kind = entry
                    .file_type()
                    .map_err(Error::io("reading file type in", dir))?;
                if kind.is_dir() {
                    folders.push(name);
                    continue;
                }
                // A symbolic link is read as the file it points to; one
                // that points nowhere is an error, not a silent skip.
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if kind.is_symlink() => {
                        return Err(Error::Config(format!(
                            "source file {} is a symbolic link that cannot be followed: {e}",
                            path.display()
                        )));
                    }
                    Err(e) => return Err(Error::io("reading", &path)(e)),
                };
                if meta.is_file() {
                    files.push(self.entry(&name, &meta));
                } else if kind.is_symlink() {
                    tracing::warn!(link = %path.display(), "symbolic link to a non-file in the source folder: skipped");
                }
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    fn stat(&self, name: &str) -> Result<Option<Entry>> {
        let path = self.dir.join(name);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(self.entry(name, &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path)(e)),
        }
    }

    fn open(&self, entry: &Entry, offset: u64) -> Result<Box<dyn Read + Send>> {
        let path = self.dir.join(&entry.name);
        let mut f = File::open(&path).map_err(Error::io("opening", &path))?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .map_err(Error::io("seeking in", &path))?;
        }
        Ok(Box::new(f))
    }

    fn read_range(&self, name: &str, from: u64, to: u64) -> Result<Vec<u8>> {
        let path = self.dir.join(name);
        let mut f = File::open(&path).map_err(Error::io("opening", &path))?;
        f.seek(SeekFrom::Start(from))
            .map_err(Error::io("seeking in", &path))?;
        let mut buf = vec![0; (to - from) as usize];
        f.read_exact(&mut buf)
            .map_err(Error::io("reading", &path))?;
        Ok(buf)
    }

    fn get_own(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path)(e)),
        }
    }

    fn put_own(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(Error::io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming", &path))
    }
}

/// Objects under a prefix of an object store (S3 or any `object_store`
/// URL), read by streaming.
pub(crate) struct Objects {
    /// The store.
    store: Arc<dyn ObjectStore>,
    /// The prefix the names are relative to.
    prefix: ObjectPath,
    /// The URL as the user wrote it.
    url: String,
    /// Runs the store's requests for this synchronous reader.
    rt: Arc<tokio::runtime::Runtime>,
}

impl Objects {
    /// The objects under `url` (`s3://bucket/prefix`), with the S3
    /// settings of the `AWS_*` environment variables, as the state store
    /// reads them (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`).
    pub(crate) fn open(url: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("tokio runtime: {e}")))?;
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(Error::Config(format!(
                "source path {url}: a folder, file:///folder or s3://bucket/prefix"
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::Config(format!("source {url}: {e}")))?;
        Ok(Self {
            store: Arc::new(s3),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            url: url.trim_end_matches('/').to_string(),
            rt: Arc::new(rt),
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    fn err(&self) -> impl Fn(object_store::Error) -> Error + '_ {
        move |e| Error::Store {
            url: self.url.clone(),
            detail: e.to_string(),
        }
    }

    fn entry(&self, meta: &object_store::ObjectMeta) -> Option<Entry> {
        let full = meta.location.as_ref();
        let base = self.prefix.as_ref();
        let rel = if base.is_empty() {
            full
        } else {
            full.strip_prefix(base)?.strip_prefix('/')?
        };
        Some(Entry {
            name: rel.to_string(),
            size: meta.size,
            etag: meta.e_tag.clone(),
            modified_ms: meta.last_modified.timestamp_millis(),
        })
    }
}

impl Listing for Objects {
    fn location(&self) -> &str {
        &self.url
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn list(&self) -> Result<Vec<Entry>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<_> = self
            .rt
            .block_on(self.store.list(prefix).try_collect())
            .map_err(self.err())?;
        let mut out: Vec<Entry> = metas
            .iter()
            .filter_map(|m| self.entry(m))
            .filter(|e| !hidden(&e.name))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn stat(&self, name: &str) -> Result<Option<Entry>> {
        match self.rt.block_on(self.store.head(&self.path(name))) {
            Ok(m) => Ok(self.entry(&m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err()(e)),
        }
    }

    fn open(&self, entry: &Entry, offset: u64) -> Result<Box<dyn Read + Send>> {
        if offset >= entry.size {
            return Ok(Box::new(std::io::empty()));
        }
        let opts = GetOptions {
            range: Some(GetRange::Offset(offset)),
            if_match: entry.etag.clone(),
            ..GetOptions::default()
        };
        let got = self
            .rt
            .block_on(self.store.get_opts(&self.path(&entry.name), opts))
            .map_err(self.err())?;
        Ok(Box::new(ObjectReader {
            stream: got.into_stream(),
            chunk: Bytes::new(),
            rt: self.rt.clone(),
        }))
    }

    fn read_range(&self, name: &str, from: u64, to: u64) -> Result<Vec<u8>> {
        if from == to {
            return Ok(Vec::new());
        }
        self.rt
            .block_on(self.store.get_range(&self.path(name), from..to))
            .map(|b| b.to_vec())
            .map_err(self.err())
    }

    fn get_own(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let r = self.rt.block_on(async {
            match self.store.get(&self.path(name)).await {
                Ok(g) => g.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map(|b| b.map(|b| b.to_vec())).map_err(self.err())
    }

    fn put_own(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.rt
            .block_on(self.store.put(&self.path(name), PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(self.err())
    }
}

/// An object's bytes as a blocking reader over its download stream: one
/// chunk at a time, never the whole object.
struct ObjectReader {
    /// The download.
    stream: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    /// The part of the current chunk not read yet.
    chunk: Bytes,
    /// Drives the download.
    rt: Arc<tokio::runtime::Runtime>,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = self.chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// The listing `spec` reads: its object-store URL or its local folder.
pub(crate) fn open_listing(spec: &FileSourceSpec) -> Result<Arc<dyn Listing>> {
    Ok(match &spec.url {
        Some(url) => {
            let objects = Objects::open(url)?;
            // Reach the store now: a wrong URL or credentials are refused
            // before the job touches anything.
            objects.list()?;
            Arc::new(objects)
        }
        None => {
            check_folder(&spec.dir)?;
            Arc::new(Folder::new(&spec.dir))
        }
    })
}

/// The source folder is a folder; otherwise say what it is instead.
fn check_folder(dir: &Path) -> Result<()> {
    let what = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => "is not a folder".to_string(),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            "is a symbolic link loop (a link that leads back to itself)".to_string()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_link(dir) {
            Ok(target) => format!(
                "is a symbolic link to {}, which does not exist",
                target.display()
            ),
            Err(_) => "does not exist".to_string(),
        },
        Err(e) => format!("cannot be read: {e}"),
    };
    Err(Error::Config(format!(
        "source folder {} {what}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_source_folder_that_is_not_one_is_named_for_what_it_is() {
        let d = tempfile::tempdir().unwrap();
        let loop_a = d.path().join("a");
        std::os::unix::fs::symlink(d.path().join("b"), &loop_a).unwrap();
        std::os::unix::fs::symlink(&loop_a, d.path().join("b")).unwrap();
        let err = super::check_folder(&loop_a).unwrap_err().to_string();
        assert!(err.contains("symbolic link loop"), "{err}");
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("gone"), &dangling).unwrap();
        let err = super::check_folder(&dangling).unwrap_err().to_string();
        assert!(err.contains("which does not exist"), "{err}");
        let err = super::check_folder(&d.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("does not exist"), "{err}");
        let file = d.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = super::check_folder(&file).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
        assert!(super::check_folder(d.path()).is_ok());
    }
}
