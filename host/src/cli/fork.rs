//! `weir fork` and `weir diff`: a what-if run of a job from one of its
//! savepoints with a new plugin ([`crate::job::fork`]), at a lower CPU
//! priority than the live job, and the comparison of two outputs
//! ([`crate::diff`]).

use std::path::Path;

use anyhow::Context;

use super::load_plan;
use super::run::stop_on_signals;
use crate::checkpoint::manifest;
use crate::job::fork::{self, Fork};

/// `weir fork`: the job from a savepoint with a new plugin, into its own
/// output folder.
pub(super) fn fork(
    job: &Path,
    from_savepoint: &str,
    (plugin, operator): (&Path, Option<&str>),
    out: &Path,
    until: Option<&str>,
    (parallelism, nice, overwrite): (usize, i32, bool),
) -> anyhow::Result<()> {
    anyhow::ensure!(parallelism > 0, "--parallelism must be at least 1");
    let live = load_plan(job)?;
    let until = until
        .map(|end| {
            manifest::parse_time(end)
                .ok_or_else(|| anyhow::anyhow!("--until `{end}` is not a time"))
        })
        .transpose()?;
    let spec = Fork {
        from_savepoint: from_savepoint.to_string(),
        plugin: plugin.to_path_buf(),
        operator: operator.map(str::to_string),
        out: out.to_path_buf(),
        until,
        parallelism,
        overwrite,
    };
    // Refused before anything else happens.
    fork::plan(&live, &spec).map_err(|e| match e {
        // A refusal of the fork's own options: said as they are.
        crate::Error::Config(message) => anyhow::anyhow!(message),
        e => e.into(),
    })?;
    // One run of this fork at a time (forks into other folders have other
    // names and run side by side).
    let _lock = crate::runtime::control::lock_job(&fork::name(&live.name, out))?;
    // Threads inherit the niceness: set it before the job starts any.
    // SAFETY: setpriority on this thread only reads its arguments.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice.clamp(0, 19)) } != 0 {
        tracing::warn!("cannot lower the fork's priority");
    }
    let report = fork::run(&live, &spec, stop_on_signals())
        .with_context(|| format!("fork `{}` failed", fork::name(&live.name, out)))?;
    eprintln!(
        "fork `{}` from {}: {} records in, {} out, {} dead letters, {:.2} s; output in {}",
        report.name,
        report.restored_from.as_deref().unwrap_or(from_savepoint),
        report.totals.records_read,
        report.totals.emitted,
        report.dead_letters,
        report.elapsed.as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// `weir diff`: compare two outputs; the report as text or JSON. Exits 0
/// when they are equal, 1 when they differ, 2 when they cannot be read
/// (as `diff` and `cmp` do).
pub(super) fn diff(
    a: &Path,
    b: &Path,
    key: Option<&str>,
    examples: usize,
    json: bool,
) -> anyhow::Result<()> {
    let report = match crate::diff::diff(a, b, key, examples) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if !report.is_equal() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}
