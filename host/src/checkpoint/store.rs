//! Where checkpoints and savepoints live: a thin synchronous wrapper over an
//! `object_store` (`file://` folder by default, `memory://` for tests,
//! `s3://bucket/prefix`), addressed by URL. Keys are relative to the URL's
//! prefix; the layout is `jobs/<job>/checkpoints/<id>/...` and
//! `jobs/<job>/savepoints/<name>/...`.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::{Error, Result};

/// Settings of the state store, from the job file's `[state]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSpec {
    /// `file:///abs/path`, a plain path, `memory://`, or `s3://bucket/prefix`.
    pub url: String,
    /// S3 endpoint (else `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    /// S3 region (else `AWS_REGION`).
    pub region: Option<String>,
    /// S3 access key (else `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3 secret key (else `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP to the endpoint (else `AWS_ALLOW_HTTP`).
    pub allow_http: Option<bool>,
}

/// Objects larger than this go up in a multipart upload, in parts of this
/// size (S3 takes parts of 5 MiB to 5 GiB, and single PUTs up to 5 GiB).
pub const MULTIPART_BYTES: usize = 64 << 20;

/// A state store opened at a URL.
#[derive(Clone)]
pub struct StateStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    rt: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("url", &self.url)
            .finish()
    }
}

fn external(url: &str) -> impl Fn(object_store::Error) -> Error + '_ {
    move |e| Error::Store {
        url: url.to_string(),
        detail: e.to_string(),
    }
}

impl StateStore {
    /// Open the store; relative folder paths resolve against `base`.
    pub fn open(spec: &StoreSpec, base: &FsPath) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("tokio runtime: {e}")))?;
        let url = spec.url.trim();
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = if url.starts_with("memory://") {
            (
                Arc::new(object_store::memory::InMemory::new()),
                Path::from(url.trim_start_matches("memory://")),
            )
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(v) = &spec.endpoint {
                b = b.with_endpoint(v);
            }
            if let Some(v) = &spec.region {
                b = b.with_region(v);
            }
            if let Some(v) = &spec.access_key_id {
                b = b.with_access_key_id(v);
            }
            if let Some(v) = &spec.secret_access_key {
                b = b.with_secret_access_key(v);
            }
            if let Some(v) = spec.allow_http {
                b = b.with_allow_http(v);
            }
            let s3 = b
                .build()
                .map_err(|e| Error::Config(format!("state store {url}: {e}")))?;
            (Arc::new(s3), Path::from(prefix))
        } else {
            let path = url.strip_prefix("file://").unwrap_or(url);
            let path = base.join(if path.is_empty() { "weir-state" } else { path });
            std::fs::create_dir_all(&path).map_err(Error::io("creating state folder", &path))?;
            // Automatic cleanup: a pruned or deleted checkpoint leaves no
            // empty folders behind.
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&path)
                .map_err(|e| Error::Config(format!("state store {}: {e}", path.display())))?
                .with_automatic_cleanup(true);
            (Arc::new(fs), Path::default())
        };
        Ok(Self {
            store,
            prefix,
            url: url.to_string(),
            rt: Arc::new(rt),
        })
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// Write `bytes` at `key`.
    pub fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.put_all(vec![(key.to_string(), bytes)])
    }

    /// Write `bytes` at `key` only if nothing is there (an atomic create on
    /// `file://` and S3). `Ok(false)`: something was.
    pub fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let path = self.path(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let r = self
            .rt
            .block_on(self.store.put_opts(&path, PutPayload::from(bytes), opts));
        match r {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(external(&self.url)(e)),
        }
    }

    /// Write several objects concurrently; one larger than
    /// [`MULTIPART_BYTES`] goes up in parts of that size (S3 refuses a
    /// single PUT over 5 GiB, and a failed part is retried alone).
    pub fn put_all(&self, objects: Vec<(String, Bytes)>) -> Result<()> {
        self.put_all_in_parts(objects, MULTIPART_BYTES)
    }

    /// [`Self::put_all`] with objects over `part` bytes in parts of `part`.
    pub fn put_all_in_parts(&self, objects: Vec<(String, Bytes)>, part: usize) -> Result<()> {
        let puts = objects.into_iter().map(|(key, bytes)| {
            let path = self.path(&key);
            let store = self.store.clone();
            async move {
                if bytes.len() <= part {
                    return store.put(&path, PutPayload::from(bytes)).await.map(|_| ());
                }
                let upload = store.put_multipart(&path).await?;
                let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, part);
                w.put(bytes);
                w.finish().await.map(|_| ())
            }
        });
        self.rt
            .block_on(futures::future::try_join_all(puts))
            .map(|_| ())
            .map_err(external(&self.url))
    }

    /// Read `key`; `None` if it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key);
        let r = self.rt.block_on(async {
            match self.store.get(&path).await {
                Ok(g) => g.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map_err(external(&self.url))
    }

    /// Every object under `prefix`: (key relative to the store, size).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = self.path(prefix);
        let base = self.prefix.as_ref().len();
        let r: Result<Vec<_>, _> = self
            .rt
            .block_on(self.store.list(Some(&path)).try_collect::<Vec<_>>());
        let mut out: Vec<(String, u64)> = r
            .map_err(external(&self.url))?
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref();
                let rel = full
                    .get(base..)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_string();
                (rel, m.size)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Delete the object at `key`; nothing there is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        match self.rt.block_on(self.store.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(external(&self.url)(e)),
        }
    }

    /// Delete every object under `prefix`.
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for (key, _) in self.list(prefix)? {
            let path = self.path(&key);
            self.rt
                .block_on(self.store.delete(&path))
                .map_err(external(&self.url))?;
        }
        Ok(())
    }
}

/// Sinks keep what must outlive a crash until a checkpoint covers it (the
/// Kafka sink's spilled epochs) in the job's state store.
impl crate::sink::Spill for StateStore {
    fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        StateStore::put(self, key, bytes)
    }
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        StateStore::get(self, key)
    }
    fn delete(&self, key: &str) -> Result<()> {
        StateStore::delete(self, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_on_a_folder_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        for url in [
            format!("file://{}", dir.path().display()),
            "memory://".to_string(),
            "rel".into(),
        ] {
            let s = StateStore::open(
                &StoreSpec {
                    url,
                    ..Default::default()
                },
                dir.path(),
            )
            .unwrap();
            s.put("jobs/a/x/1", Bytes::from_static(b"one")).unwrap();
            s.put_all(vec![("jobs/a/x/2".into(), Bytes::from_static(b"two!"))])
                .unwrap();
            assert_eq!(s.get("jobs/a/x/1").unwrap().as_deref(), Some(&b"one"[..]));
            assert_eq!(s.get("jobs/a/nope").unwrap(), None);
            assert_eq!(
                s.list("jobs/a").unwrap(),
                vec![("jobs/a/x/1".to_string(), 3), ("jobs/a/x/2".to_string(), 4)]
            );
            s.delete_prefix("jobs/a/x").unwrap();
            assert!(s.list("jobs/a").unwrap().is_empty());
        }
    }
}
