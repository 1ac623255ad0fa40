//! The commands on a group job (`assignment = "group"`), whose partitions
//! run in several processes as runs named `<job>.p<partition>`:
//! - `weir status`: each partition run on this machine (its own control
//!   endpoint): owner pid, records, lag, state size, last checkpoint;
//! - `weir savepoint trigger`: a request in the shared state store that
//!   every owner takes for the partitions it runs (also partitions that
//!   move meanwhile), waited for until each partition has it;
//! - `weir savepoint list`: savepoints by name, with how many partitions
//!   hold each, and each partition's newest checkpoint.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::open_store;
use crate::checkpoint::manifest::{self, Kind};
use crate::config::{Plan, SourceSpec};
use crate::group::{partition_run_name, request_savepoint, savepoint_done};
use crate::runtime::control;

/// How long `weir savepoint trigger` waits for every partition.
const TRIGGER_WAIT: Duration = Duration::from_secs(120);

/// The topic's partition count.
fn partitions(plan: &Plan) -> anyhow::Result<usize> {
    let SourceSpec::Kafka(k) = &plan.source else {
        anyhow::bail!("not a group job");
    };
    Ok(crate::group::topic_partitions(k)?)
}

/// `weir status` of a group job: the partition runs on this machine.
pub(super) fn status(plan: &Plan, as_json: bool) -> anyhow::Result<()> {
    let prefix = format!("{}.p", plan.name);
    let mut rows: Vec<(usize, u32, Value)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(control::run_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(p) = name
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".addr"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let Ok(ep) = control::find(&partition_run_name(&plan.name, p)) else {
                continue;
            };
            if let Ok((200, body)) = ep.request("GET", "/status") {
                rows.push((p, ep.pid, serde_json::from_str(&body)?));
            }
        }
    }
    rows.sort_by_key(|r| r.0);
    let at = |s: &Value, k: &str| s[k].get(0).cloned().unwrap_or(Value::Null);
    if as_json {
        let parts: Vec<Value> = rows
            .iter()
            .map(|(p, pid, s)| {
                json!({
                    "partition": p, "pid": pid, "records_read": s["records_read"],
                    "consumer_lag": at(s, "consumer_lag"),
                    "consumer_lag_ms": at(s, "consumer_lag_ms"),
                    "state_bytes": s["partitions"][0]["state_bytes"],
                    "last_checkpoint": s["last_checkpoint"],
                })
            })
            .collect();
        println!(
            "{}",
            json!({"job": plan.name, "group": true, "running": !rows.is_empty(), "partitions": parts})
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "group job `{}`: no partition of it runs on this machine",
            plan.name
        );
        return Ok(());
    }
    println!(
        "group job `{}`: {} partitions run on this machine",
        plan.name,
        rows.len()
    );
    println!(
        "{:>9} {:>8} {:>12} {:>9} {:>9} {:>12}  last checkpoint",
        "partition", "pid", "records in", "lag", "lag ms", "state bytes"
    );
    for (p, pid, s) in &rows {
        let last = &s["last_checkpoint"];
        println!(
            "{p:>9} {pid:>8} {:>12} {:>9} {:>9} {:>12}  {}",
            s["records_read"],
            at(s, "consumer_lag"),
            at(s, "consumer_lag_ms"),
            s["partitions"][0]["state_bytes"],
            last["name"].as_str().unwrap_or("none yet")
        );
    }
    Ok(())
}

/// `weir savepoint trigger` of a group job: ask every owner through the
/// store, wait until each partition holds the savepoint.
pub(super) fn savepoint_trigger(plan: &Plan, name: Option<String>) -> anyhow::Result<()> {
    let store = open_store(plan)?;
    let name = name.unwrap_or_else(|| format!("sp-{}", crate::clock::now_ms()));
    if let Err(why) = crate::checkpoint::check_savepoint_name(&name) {
        anyhow::bail!("savepoint refused: {why}");
    }
    let n = partitions(plan)?;
    request_savepoint(&store, &plan.name, &name)?;
    let deadline = Instant::now() + TRIGGER_WAIT;
    loop {
        let done = (0..n)
            .filter(|&p| savepoint_done(&store, &plan.name, p, &name).unwrap_or(false))
            .count();
        if done == n {
            println!(
                "savepoint `{name}` of group job `{}`: {n} of {n} partitions",
                plan.name
            );
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "savepoint `{name}`: {done} of {n} partitions hold it after {} s (are processes \
             of the job running for every partition?); the request stays, and owners take it \
             as they run",
            TRIGGER_WAIT.as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `weir savepoint list` of a group job: savepoints by name, then each
/// partition's newest checkpoint.
pub(super) fn savepoint_list(plan: &Plan) -> anyhow::Result<()> {
    let store = open_store(plan)?;
    let n = partitions(plan)?;
    // name -> (partitions holding it, first and last wall time, bytes)
    let mut savepoints: BTreeMap<String, (usize, i64, i64, u64)> = BTreeMap::new();
    let mut newest = Vec::new();
    for p in 0..n {
        let (found, _) = manifest::list_all(&store, &partition_run_name(&plan.name, p))?;
        let mut last: Option<manifest::Manifest> = None;
        for f in found {
            let m = f.manifest;
            if m.kind == Kind::Savepoint {
                let e = savepoints
                    .entry(m.name.clone())
                    .or_insert((0, i64::MAX, i64::MIN, 0));
                e.0 += 1;
                e.1 = e.1.min(m.wall_time_ms);
                e.2 = e.2.max(m.wall_time_ms);
                e.3 += m.state_bytes();
            } else if last.as_ref().is_none_or(|l| m.id > l.id) {
                last = Some(m);
            }
        }
        newest.push((p, last));
    }
    println!("group job `{}`: {n} partitions", plan.name);
    println!(
        "{:<28} {:>10} {:<26} {:<26} {:>12}",
        "savepoint", "partitions", "first taken", "last taken", "bytes"
    );
    for (name, (count, first, last, bytes)) in &savepoints {
        println!(
            "{name:<28} {:>10} {:<26} {:<26} {bytes:>12}",
            format!("{count}/{n}"),
            manifest::format_time(*first),
            manifest::format_time(*last)
        );
    }
    println!("newest checkpoint of each partition:");
    for (p, m) in newest {
        match m {
            Some(m) => println!(
                "  {p:>4}  {} (id {}, generation {}), taken {}, {}",
                m.name,
                m.id,
                m.id / crate::checkpoint::claim::ID_SPAN,
                manifest::format_time(m.wall_time_ms),
                m.partitions
                    .first()
                    .map_or("no position".into(), |e| format!(
                        "offset {}",
                        e.source["offset"]
                    ))
            ),
            None => println!("  {p:>4}  none yet"),
        }
    }
    Ok(())
}
