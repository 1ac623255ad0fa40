//! `weir savepoint`: trigger a savepoint of the running job (through its
//! control endpoint), and list, show and delete a job's savepoints (read
//! from its state store; the job need not run).

use std::path::Path;

use super::{SavepointCommand, load_plan, open_store};
use crate::checkpoint::{manifest, restore};
use crate::runtime::control;

pub(super) fn savepoint(command: SavepointCommand) -> anyhow::Result<()> {
    match command {
        SavepointCommand::Trigger { job, name } => savepoint_trigger(&job, name),
        SavepointCommand::List { job } => savepoint_list(&job),
        SavepointCommand::Show {
            job,
            name,
            keys,
            limit,
        } => savepoint_show(&job, &name, keys.then_some(limit)),
        SavepointCommand::Delete { job, name } => savepoint_delete(&job, &name),
    }
}

/// `savepoint trigger`: ask the running job, wait until it is complete.
fn savepoint_trigger(job: &Path, name: Option<String>) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    if crate::group::is_group(&plan) {
        return super::group::savepoint_trigger(&plan, name);
    }
    let endpoint = control::find(&plan.name)?;
    let path = match name {
        Some(n) => format!("/savepoint?{}", control::query(&[("name", &n)])),
        None => "/savepoint".into(),
    };
    let (status, body) = endpoint.request("POST", &path)?;
    if status == 409 {
        anyhow::bail!("savepoint refused: {}", error_of(&body));
    }
    anyhow::ensure!(status == 200, "savepoint failed ({status}): {body}");
    println!("{body}");
    Ok(())
}

/// The message of an endpoint's `{"error": ...}` answer, or the answer.
fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

/// `savepoint list`: one line per checkpoint and savepoint, oldest first.
fn savepoint_list(job: &Path) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    if crate::group::is_group(&plan) {
        return super::group::savepoint_list(&plan);
    }
    let store = open_store(&plan)?;
    println!(
        "{:<12} {:<28} {:<26} {:<26} {:>12}  position",
        "kind", "name", "wall time", "event time (watermark)", "bytes"
    );
    let (found, corrupt) = manifest::list_all(&store, &plan.name)?;
    for c in &corrupt {
        let name = c.folder.rsplit('/').next().unwrap_or_default();
        println!(
            "{:<12} {:<28} {}",
            "CORRUPT",
            name,
            format_args!(
                "{} (restore skips it; `weir savepoint delete` removes it)",
                c.detail
            )
        );
    }
    for f in found {
        let m = &f.manifest;
        let pos = describe_position(m);
        println!(
            "{:<12} {:<28} {:<26} {:<26} {:>12}  {pos}",
            format!("{:?}", m.kind).to_lowercase(),
            m.name,
            manifest::format_time(m.wall_time_ms),
            manifest::format_time(m.watermark),
            m.state_bytes()
        );
    }
    Ok(())
}

/// `savepoint show`: the manifest, or with `keys_limit` each partition's
/// key count and its first keys.
fn savepoint_show(job: &Path, name: &str, keys_limit: Option<usize>) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let store = open_store(&plan)?;
    let Some(limit) = keys_limit else {
        let f = manifest::select(&store, &plan.name, name)?;
        println!("{}", serde_json::to_string_pretty(&f.manifest)?);
        return Ok(());
    };
    let restored = restore::load(&store, &plan.name, name)?;
    for (t, task) in restored.partitions.iter().enumerate() {
        for op in &task.operators {
            print_keys(t, op, limit)?;
        }
    }
    Ok(())
}

/// Partition `t`'s state of `op`, read from the keyed state envelope
/// without the plugin: counts, then the `limit` smallest keys.
fn print_keys(t: usize, op: &restore::RestoredOperator, limit: usize) -> anyhow::Result<()> {
    let env = weir_envelope::Envelope::parse(&op.state).map_err(|e| {
        anyhow::anyhow!(
            "partition {t}, operator `{}`: not a keyed state envelope: {e}",
            op.name
        )
    })?;
    println!(
        "partition {t} operator `{}`: state version {}, {} keys, {} operator bytes, {} timers",
        op.name,
        env.state_version,
        env.count,
        env.operator.len(),
        op.timers.len()
    );
    // The smallest keys, whatever order the snapshot wrote them in (a
    // chunked snapshot writes them in its map's order); reading them all
    // also checks the whole envelope.
    let mut entries = env
        .entries()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("partition {t}: {e}"))?;
    if entries.len() > limit {
        entries.select_nth_unstable_by(limit, |a, b| a.0.cmp(b.0));
        entries.truncate(limit);
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, value) in entries {
        println!(
            "  {:<24} {} bytes: {}",
            String::from_utf8_lossy(key),
            value.len(),
            crate::digest::hex(value)
        );
    }
    Ok(())
}

/// `savepoint delete`: a savepoint (never a checkpoint) of the job.
fn savepoint_delete(job: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let plan = load_plan(job)?;
    let store = open_store(&plan)?;
    let folder = manifest::folder(&plan.name, manifest::Kind::Savepoint, name);
    // Whatever its manifest says (also a corrupt or missing one): a
    // savepoint is its folder.
    anyhow::ensure!(
        !store.list(&format!("{folder}/"))?.is_empty(),
        "no savepoint named `{name}` for job `{}`",
        plan.name
    );
    store.delete_prefix(&format!("{folder}/"))?;
    println!("deleted savepoint {name}");
    Ok(())
}

/// A savepoint name names one folder: not empty, no `/` or `\\`, not `.`
/// or `..` (an empty name or `/` would otherwise name every savepoint of
/// the job).
fn check_name(name: &str) -> anyhow::Result<()> {
    let bad = name.trim().is_empty()
        || name.contains(['/', '\\'])
        || name == "."
        || name == ".."
        || name.chars().any(char::is_control);
    anyhow::ensure!(
        !bad,
        "`{}` is not a savepoint name (one name as `weir savepoint list` shows it; no `/`); \
         nothing deleted",
        name.escape_debug()
    );
    Ok(())
}

/// A source position for `savepoint list`: the file source's as
/// `file@offset (line n)`, Kafka's as `kafka topic p:offset ...`, others as
/// their JSON.
fn describe_position(m: &manifest::Manifest) -> String {
    let p = &m.source;
    let file = crate::source::file::FilePosition::from_value(&p.position);
    match (p.connector.as_str(), file) {
        ("files", Ok(f)) => match f.file {
            Some(file) => format!("{file}@{} (line {})", f.offset, f.line),
            None => "start".into(),
        },
        ("kafka", _) => {
            let topic = p.position["topic"].as_str().unwrap_or("?");
            format!("kafka {topic} {}", m.partition_offsets())
        }
        _ => format!("{}: {}", p.connector, p.position),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_one_folder_is_a_savepoint_name() {
        for bad in ["", " ", "/", "a/b", "..", ".", "a\\b", "\n"] {
            assert!(super::check_name(bad).is_err(), "{bad:?} refused");
        }
        for good in ["mid", "swap-3", "before.release", "2026-12-06T10:00"] {
            assert!(super::check_name(good).is_ok(), "{good:?} accepted");
        }
    }
}
