//! The library error type. Each variant says who must act: the user (job
//! file, plugin, input), an external system (filesystem), or us (a bug).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the Weir library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job file or a command-line setting is wrong.
    #[error("configuration: {0}")]
    Config(String),

    /// A plugin cannot be loaded or instantiated.
    #[error("plugin `{plugin}`: cannot load: {detail}")]
    PluginLoad {
        /// Plugin name from the job file.
        plugin: String,
        /// What went wrong.
        detail: String,
    },

    /// A plugin trapped, ran past its deadline, hit its memory cap or
    /// returned an error during a call.
    #[error("plugin `{plugin}` failed in task {task} during {call}: {detail}")]
    Plugin {
        /// Plugin name from the job file.
        plugin: String,
        /// Task index.
        task: usize,
        /// The call and batch, e.g. `process (batch 17)`.
        call: String,
        /// What happened.
        detail: String,
    },

    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What Weir was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The state store (object store) failed.
    #[error("state store {url}: {detail}")]
    Store {
        /// The store URL.
        url: String,
        /// What failed.
        detail: String,
    },

    /// A savepoint or checkpoint cannot be used.
    #[error("savepoint {location}: {detail}")]
    Savepoint {
        /// Where it is.
        location: String,
        /// What is wrong with it.
        detail: String,
    },

    /// A system outside Weir failed or refused (a Kafka broker).
    #[error("{0}")]
    External(String),

    /// The job failed, and its restart strategy allows no more restarts.
    #[error(
        "{source}; the job failed for good after {restarts} restarts (restart strategy {strategy})"
    )]
    RestartsExhausted {
        /// The strategy, as the job file sets it.
        strategy: String,
        /// Restarts made before this failure.
        restarts: u64,
        /// The last failure.
        source: Box<Error>,
    },

    /// Another process owns this partition of a group job now: this run's
    /// writes are refused.
    #[error("fenced: {0}")]
    Fenced(String),

    /// A bug: a broken invariant inside Weir.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Io`] builder for `map_err`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

// Poisoned locks, one policy: a lock is poisoned when a thread panicked
// holding it, so what it guards may be half updated.
// - [`lock`] where that matters: state whose consistency the job relies on
//   (the Kafka producers, the dead-letter output). The poison becomes an
//   [`Error::Internal`] and fails the operation.
// - [`lock_or_recover`] where it does not: counters and figures read or
//   bumped for display (reports, `/status`, progress). The value is used
//   as it is; the panic itself is reported where it happened.

/// Lock `m`; a poisoned lock (a thread panicked holding it) is a bug,
/// reported as one naming `what` the lock guards.
pub(crate) fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>> {
    m.lock()
        .map_err(|_| Error::Internal(format!("{what}: lock poisoned by a panicked thread")))
}

/// Lock `m`, taking the value as it is if the lock is poisoned: for
/// counters and figures shown to a user, never for state whose consistency
/// matters (use [`lock`] there).
pub(crate) fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
