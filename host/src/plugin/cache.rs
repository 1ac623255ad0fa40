//! The on-disk cache of compiled components: native code for a component,
//! keyed by its content digest, the engine settings and the wasmtime
//! version, so a restart does not recompile. It is bounded in size (the
//! entries used least recently go first) and `weir cache clean` empties it.
//!
//! # What is checked before an entry is loaded
//!
//! A cached entry is native code that wasmtime maps and runs *outside* the
//! sandbox, so an entry is only loaded after these checks:
//!
//! - The folder is the configured one (`cache_dir`, else `$WEIR_CACHE_DIR`),
//!   else `$XDG_CACHE_HOME/weir/components`, else
//!   `$HOME/.cache/weir/components`; there is no shared temp fallback. With
//!   no folder, components are compiled in memory on every start.
//! - The folder is created with mode 0700 and, before use, must be a real
//!   directory (not a symbolic link) owned by the effective user and not
//!   writable by group or others. A folder that fails is not used: Weir
//!   warns and compiles in memory.
//! - An entry is opened without following symbolic links and must be a
//!   regular file owned by the effective user and not writable by group or
//!   others. It starts with a header holding a SHA-256 over the cache key
//!   (which names the component's digest) and the compiled bytes; the bytes
//!   are read once, checked against it, and only those verified bytes are
//!   handed to wasmtime (never a path that could be swapped after the
//!   check). An entry that fails, or that has no header (written by an older
//!   Weir), is recompiled from the component and rewritten; entries are
//!   written to a fresh 0600 temp file and renamed into place.
//!
//! The digest sits beside the code it covers, so it only detects accidental
//! corruption, truncation, an entry copied from another component, or a
//! naive replacement by someone who cannot also rewrite the header. What
//! stops another local user from planting code is the ownership and
//! permission checks on the folder and the entries; anyone who can write
//! files as the user running Weir can already run code as that user.

//!
//! # Size
//!
//! After each entry it writes, the cache removes the entries used least
//! recently (by modification time: a cache hit touches its entry) until the
//! folder's entries fit in the bound ([`DEFAULT_MAX_MB`], `[engine]
//! cache_max_mb`). The entry just written is never removed, even when it
//! alone is larger; an entry another process is loading is read into memory
//! first, so removing it does no harm.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Default bound of the cache folder, in MiB: a Rust or C component
/// compiles to under 1 MiB, a Python or JavaScript one to 30-60 MiB.
pub const DEFAULT_MAX_MB: u64 = 1024;

/// What [`clean`] or an eviction removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Entries (and leftover temp files) removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The entries of the cache folder `dir`: path, size and modification
/// time (leftover temp files of an interrupted write are not entries).
fn entries(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".cwasm") {
            continue;
        }
        let md = e.metadata()?;
        if md.is_file() {
            out.push((e.path(), md.len(), md.modified()?));
        }
    }
    Ok(out)
}

/// Mark the entry at `path` as just used, so an eviction keeps it longer.
pub(super) fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Remove the least recently used entries of `dir` until the others fit
/// in `max_bytes`; `keep` (the entry just written) stays.
pub(super) fn evict(dir: &Path, max_bytes: u64, keep: &Path) -> std::io::Result<Removed> {
    let mut all = entries(dir)?;
    let mut total: u64 = all.iter().map(|e| e.1).sum();
    let mut removed = Removed::default();
    all.sort_by_key(|e| e.2);
    for (path, size, _) in all {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                removed.files += 1;
                removed.bytes += size;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        total -= size;
    }
    Ok(removed)
}

/// Empty the cache folder `dir`: every entry and any temp file an
/// interrupted write left. Nothing else in the folder is touched; a folder
/// that does not exist is empty.
pub fn clean(dir: &Path) -> std::io::Result<Removed> {
    let mut removed = Removed::default();
    let list = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for e in list {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ours = name.ends_with(".cwasm") || (name.starts_with('.') && name.contains(".tmp-"));
        let md = e.metadata()?;
        if !ours || !md.is_file() {
            continue;
        }
        std::fs::remove_file(e.path())?;
        removed.files += 1;
        removed.bytes += md.len();
    }
    Ok(removed)
}

/// The entries of the cache folder `dir` and their bytes.
pub fn usage(dir: &Path) -> std::io::Result<Removed> {
    match entries(dir) {
        Ok(all) => Ok(Removed {
            files: all.len() as u64,
            bytes: all.iter().map(|e| e.1).sum(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removed::default()),
        Err(e) => Err(e),
    }
}

/// The default compiled-component cache folder: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/components`, else `$HOME/.cache/weir/components`
/// (empty or relative values are skipped). `None` when none is set: then
/// components are compiled in memory, never cached in a shared temp folder.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(d) = var("WEIR_CACHE_DIR") {
        return Some(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(d.join("weir").join("components"));
    }
    var("HOME").map(|h| h.join(".cache").join("weir").join("components"))
}

/// The cache folder to use: the configured one, else the default; created
/// (mode 0700) if missing, then checked. `None`: compile in memory.
pub(super) fn resolve_cache_dir(configured: Option<&Path>) -> Option<PathBuf> {
    static NO_DIR_LOGGED: AtomicBool = AtomicBool::new(false);
    let Some(dir) = configured.map(Path::to_path_buf).or_else(default_cache_dir) else {
        if !NO_DIR_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no compiled-component cache folder (set engine.cache_dir, WEIR_CACHE_DIR, \
                 XDG_CACHE_HOME or HOME): compiling plugins in memory on every start"
            );
        }
        return None;
    };
    let ready = match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create it: {e}"))
            .and_then(|()| check_cache_dir(&dir)),
        _ => check_cache_dir(&dir),
    };
    match ready {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                "not using the compiled-component cache: {e}; compiling plugins in memory"
            );
            None
        }
    }
}

fn euid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Check that `dir` is a real directory (not a symbolic link), owned by the
/// effective user and not writable by group or others.
pub(super) fn check_cache_dir(dir: &Path) -> Result<(), String> {
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect it: {e}"))?;
    if md.file_type().is_symlink() {
        return Err("it is a symbolic link".into());
    }
    if !md.is_dir() {
        return Err("it is not a directory".into());
    }
    check_owner_and_mode(&md)
}

fn check_owner_and_mode(md: &std::fs::Metadata) -> Result<(), String> {
    let euid = euid();
    if md.uid() != euid {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {euid})",
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {:o})",
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

/// First bytes of a cache entry; the SHA-256 of [`entry_digest`] follows,
/// then the compiled component.
const ENTRY_MAGIC: &[u8; 8] = b"WEIRCW\x00\x01";
const ENTRY_HEADER_LEN: usize = ENTRY_MAGIC.len() + 32;

/// SHA-256 over the cache key (component digest, wasmtime version, engine
/// compatibility hash) and the compiled bytes: an entry copied over the name
/// of another component does not match.
fn entry_digest(key: &str, compiled: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"weir compiled component v1\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(compiled);
    h.finalize().into()
}

pub(super) enum EntryError {
    /// No header: written by an older version.
    NoDigest,
    /// Not a safe file, unreadable, or the digest does not match.
    Rejected(String),
}

/// Read and verify the cache entry at `path`: `Ok(None)` if there is none,
/// else the verified compiled bytes (without the header).
pub(super) fn read_entry(path: &Path, key: &str) -> Result<Option<Vec<u8>>, EntryError> {
    let file = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(EntryError::Rejected("it is a symbolic link".into()));
        }
        Err(e) => return Err(EntryError::Rejected(format!("cannot open it: {e}"))),
    };
    // Checked on the open file, so what is checked is what is read.
    let md = file
        .metadata()
        .map_err(|e| EntryError::Rejected(format!("cannot inspect it: {e}")))?;
    if !md.is_file() {
        return Err(EntryError::Rejected("it is not a regular file".into()));
    }
    check_owner_and_mode(&md).map_err(EntryError::Rejected)?;
    let mut bytes = Vec::with_capacity(md.len() as usize);
    (&file)
        .read_to_end(&mut bytes)
        .map_err(|e| EntryError::Rejected(format!("cannot read it: {e}")))?;
    if !bytes.starts_with(ENTRY_MAGIC) {
        return Err(EntryError::NoDigest);
    }
    if bytes.len() < ENTRY_HEADER_LEN {
        return Err(EntryError::Rejected("it is truncated".into()));
    }
    let compiled = &bytes[ENTRY_HEADER_LEN..];
    if bytes[ENTRY_MAGIC.len()..ENTRY_HEADER_LEN] != entry_digest(key, compiled) {
        return Err(EntryError::Rejected(
            "its SHA-256 does not match its header (corrupted or replaced)".into(),
        ));
    }
    bytes.drain(..ENTRY_HEADER_LEN);
    Ok(Some(bytes))
}

/// Write a cache entry (header with digest, then the compiled bytes) to a
/// fresh temp file created with mode 0600 beside it, then rename it into
/// place atomically.
pub(super) fn write_entry(path: &Path, key: &str, compiled: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{key}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(ENTRY_MAGIC)?;
        f.write_all(&entry_digest(key, compiled))?;
        f.write_all(compiled)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
