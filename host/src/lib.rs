//! # Weir: a stream processor whose operators are WebAssembly components
//!
//! A job reads records from a source, routes them by key to partitions (the
//! unit of state; each has its own instance of the operator chain), runs
//! each partition's chain of operator plugins (Wasm components) over packed
//! batches on `parallelism` worker threads, and writes what they emit to a
//! sink. Records a source cannot parse or an operator refuses go to the
//! dead-letter output with a reason; nothing is dropped silently.
//!
//! # Layout
//! Arrows point down only: a module uses only modules after it in `cli`,
//! `demo`, `job`, `config`, `runtime`, `checkpoint`, `source`, `sink`,
//! `kafka`, `plugin`, `diff`, then the shared vocabulary (`batch`,
//! `partition`, `error`, `digest`, `codec`, `clock`), `generate` and
//! `failpoint` (test-only failpoints, compiled with the `failpoints`
//! feature the tests crate turns on). A unit test (`layout`, below) checks
//! every `crate::` path against this order and that no file grows past
//! about 600 lines.
//! - [`cli`]: the `weir` command line: clap and dispatch in `cli/mod.rs`,
//!   one file per command group (run, savepoint, plugin, fork and diff,
//!   tools); [`demo`], [`generate`], [`diff`]: its `demo`, `generate` and
//!   `diff` commands.
//! - [`job`]: assembles a plan and runs it: `prepare` (every check before
//!   output or state is touched), `restore_point` (the one selection of the
//!   checkpoint or savepoint a run starts from), `plugins`, `start`
//!   (threads), `progress`, `finish`, `restart` (the `[restart]`
//!   strategies: the steps again from the newest checkpoint after a
//!   failure), and [`job::fork`] (a what-if fork of
//!   another job from its savepoint, as a library function).
//! - [`config`]: the user's job file (TOML): the job-level shape and
//!   tables, dispatching `[source]` and `[sink]` to the connector that owns
//!   the table, and the resolved [`config::Plan`].
//! - [`runtime`]: the same for every connector: the router (partitioning,
//!   batching, watermarks, barrier injection), the barrier and trigger
//!   types, partitions and the worker threads that run them (`task/`), the
//!   checkpoint coordinator, hot swaps (`swap/`: record, log, probation,
//!   pre-flight, restart versions, offline rollbacks), the control endpoint (`control/`:
//!   server, http connections on hyper, access checks, axum routes, status,
//!   metrics exposition, the status page, run folder, client). It sees sources,
//!   sinks and plugins only through traits (`source::Output`/`Source`,
//!   `sink::SinkFactory`/`Sink`, `plugin::Operator`/`OperatorFactory`/
//!   `PluginLoader`); a source gets an opaque [`source::Barrier`] token.
//! - [`checkpoint`]: the state store, manifests (`manifest/`: format 2,
//!   format 1 read, timers), restore, rescale (a file job's restore point
//!   split by key onto another number of partitions), leases, savepoint names.
//! - Connectors, one folder each, owning their job-file table and its
//!   resolution (`config.rs` in the folder): [`source`] (`source/file/`,
//!   `source/kafka/`; `source/resolve.rs` holds what sources share) and
//!   [`sink`] (`sink/file/`, `sink/kafka/`, `sink/stdout.rs`, and the
//!   dead-letter output). The Kafka client helpers both Kafka connectors
//!   use are in `kafka.rs`. rdkafka stays a dependency of this crate, not
//!   a crate of its own: one binary, and its cold build (about 2.5 min) is
//!   a small part of the ~8 min cold build that wasmtime dominates.
//! - [`plugin`]: plugin hosting: the wasmtime engine, sandbox limits,
//!   compiled-component cache, one instance per partition, and the
//!   resolved operator ([`plugin::OperatorSpec`]).
//!
//! The public API is what the `weir` binary, the tests and the benchmarks
//! drive: [`job`], [`config`], [`checkpoint`] (manifests, the store),
//! [`plugin`], [`runtime`] (triggers, the control client and figures),
//! [`Error`]. Connectors, the sink module and the helpers are private
//! (`pub(crate)`); their settings reach users through [`config`].
//! - [`batch`], [`partition`], [`error`], [`digest`], `codec` (the
//!   length-prefixed blobs the host writes), `clock` (wall time, and times
//!   as people write them): shared vocabulary. `batch` holds the WIT types
//!   (generated there) and the WIT versions the host accepts, so `plugin`
//!   uses `batch` and not the reverse.
//!
//! A new connector is a folder under `source/` or `sink/` implementing
//! [`source::Source`] or [`sink::SinkFactory`] + [`sink::Sink`], with its
//! job-file table and resolution in its `config.rs`; then one variant in
//! [`config::SourceSpec`] / [`config::SinkSpec`] (and the match arms the
//! compiler then asks for: the `[source]`/`[sink]` table's dispatch in
//! [`config`], and [`source::open`] / `sink::open`). Its position and
//! commit state are opaque JSON to the runtime.
//!
//! # A checkpoint, step by step
//! 1. The router sees a barrier is due (interval, trigger, event-time
//!    schedule) at a record boundary; the source hands over its position.
//! 2. The router tells the coordinator (`Begin`), flushes every partition's
//!    batch and sends the barrier to every worker behind them.
//! 3. Each worker, on the barrier, snapshots each of its partitions (every
//!    operator's state and timers, the watermark) and calls the sink's
//!    `pre_commit`, then sends it all to the coordinator and goes on.
//! 4. When every partition has reported, the coordinator uploads the blobs
//!    and writes `manifest.json` last: the commit point.
//! 5. The coordinator tells every worker `Commit(id)`; each sink commits what
//!    it pre-committed (the file sink renames its part files). A failed
//!    upload sends `Abort(id)` instead, and what it covered is committed by
//!    the next checkpoint.
//! 6. On restore, the sink factory's `recover` commits what the checkpoint
//!    covers and removes what was written after it, the source resumes at
//!    its recorded position, every partition at its state.

pub mod batch;
pub mod checkpoint;
pub mod cli;
mod clock;
mod codec;
pub mod config;
pub mod demo;
pub mod diff;
mod digest;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
pub mod generate;
pub mod group;
pub mod job;
mod kafka;
pub mod partition;
pub mod plugin;
pub mod runtime;
mod sink;
pub mod source;

pub use error::{Error, Result};
pub(crate) use error::{lock, lock_or_recover};

/// The Weir host version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod layout {
    //! The layout rules above, checked on the sources: each module uses
    //! only modules after it in [`ORDER`], and no file grows past
    //! [`MAX_LINES`] without a reason written here.

    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// Top-level modules, highest first: a module may use the ones after it.
    const ORDER: &[&str] = &[
        "cli",
        "demo",
        "group",
        "job",
        "config",
        "runtime",
        "checkpoint",
        "source",
        "sink",
        "kafka",
        "plugin",
        "diff",
        "batch",
        "partition",
        "error",
        "digest",
        "codec",
        "clock",
        "generate",
        "failpoint",
    ];

    /// Items of the crate root every module may use.
    const ROOT: &[&str] = &["Error", "Result", "lock", "lock_or_recover", "VERSION"];

    /// About how long a file may grow before it is split by concept.
    const MAX_LINES: usize = 600;

    /// Files allowed past [`MAX_LINES`], each with its reason.
    const LONG_FILES: &[(&str, &str)] = &[];

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// The top-level module a file belongs to (`None`: the crate root).
    fn module_of(file: &Path) -> Option<String> {
        let rel = file.strip_prefix(src()).unwrap();
        let first = rel.components().next()?.as_os_str().to_str()?.to_string();
        let name = first.trim_end_matches(".rs").to_string();
        (!matches!(name.as_str(), "lib" | "main")).then_some(name)
    }

    /// Where a `//` comment starts on `line`, outside string literals.
    fn comment_start(line: &str) -> Option<usize> {
        let b = line.as_bytes();
        let mut in_str = false;
        let mut i = 0;
        while i + 1 < b.len() {
            match b[i] {
                b'\\' if in_str => i += 1,
                b'"' => in_str = !in_str,
                b'/' if !in_str && b[i + 1] == b'/' => return Some(i),
                _ => {}
            }
            i += 1;
        }
        None
    }

    /// The top-level modules a file names through `crate::` (in `use`
    /// lines, groups included, and in paths), comments left out.
    fn uses(text: &str) -> BTreeSet<String> {
        let code: String = text
            .lines()
            .map(|l| match comment_start(l) {
                Some(i) => &l[..i],
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut found = BTreeSet::new();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::b, c, d::{e, f}}`: the names at depth 0.
                let mut depth = 0;
                let mut name = String::new();
                let mut at_start = true;
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            if !name.is_empty() {
                                found.insert(std::mem::take(&mut name));
                            }
                            at_start = true;
                        }
                        c if c.is_whitespace() && name.is_empty() => {}
                        c if depth == 0 && at_start && (c.is_alphanumeric() || c == '_') => {
                            name.push(c)
                        }
                        _ if depth == 0 && at_start && !name.is_empty() => {
                            found.insert(std::mem::take(&mut name));
                            at_start = false;
                        }
                        _ => {}
                    }
                }
                if !name.is_empty() {
                    found.insert(name);
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
        found
    }

    #[test]
    fn modules_use_only_modules_below_them() {
        let mut files = Vec::new();
        sources(&src(), &mut files);
        let rank = |m: &str| ORDER.iter().position(|o| *o == m);
        let mut wrong = Vec::new();
        for f in &files {
            let Some(module) = module_of(f) else { continue };
            let me = rank(&module)
                .unwrap_or_else(|| panic!("module `{module}` is not in ORDER: place it"));
            for used in uses(&std::fs::read_to_string(f).unwrap()) {
                if used == module || ROOT.contains(&used.as_str()) {
                    continue;
                }
                match rank(&used) {
                    Some(r) if r > me => {}
                    _ => wrong.push(format!(
                        "{} uses crate::{used}",
                        f.strip_prefix(src()).unwrap().display()
                    )),
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports up the order:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_order_check_sees_groups_and_paths() {
        let found = uses(
            "use crate::{Error, batch::{Batch, Timer},\n plugin::Operator};\n\
             // crate::cli in a comment\nlet x = crate::digest::short(d);\n\
             let u = \"s3://b\"; crate::clock::now_ms(); // crate::job",
        );
        let want: BTreeSet<String> = ["Error", "batch", "plugin", "digest", "clock"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn files_stay_short() {
        let mut files = Vec::new();
        sources(&src(), &mut files);
        let mut long = Vec::new();
        for f in &files {
            let rel = f.strip_prefix(src()).unwrap().display().to_string();
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            if lines > MAX_LINES && !LONG_FILES.iter().any(|(p, _)| *p == rel) {
                long.push(format!("{rel}: {lines} lines"));
            }
        }
        assert!(
            long.is_empty(),
            "split these by concept:\n{}",
            long.join("\n")
        );
    }
}
