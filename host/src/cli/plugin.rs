//! `weir plugin`: swap or roll back an operator of the running job
//! (through its control endpoint, following the swap to its outcome), roll
//! back a stopped job's operator (its next run starts on the previous
//! version), and the job's swap history (read from its state store).

use std::path::Path;

use anyhow::Context;

use super::{PluginCommand, load_plan, open_store};
use crate::checkpoint::manifest;
use crate::runtime::control;

pub(super) fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Swap {
            job,
            operator,
            plugin,
            probation_batches,
            probation_timeout,
            no_wait,
        } => {
            let plugin = std::fs::canonicalize(&plugin)
                .with_context(|| format!("the plugin {}", plugin.display()))?;
            let batches = probation_batches.to_string();
            let timeout = timeout_ms(probation_timeout)?;
            let path = format!(
                "/swap?{}",
                control::query(&[
                    ("operator", &operator),
                    ("plugin", &plugin.to_string_lossy()),
                    ("probation_batches", &batches),
                    ("probation_timeout_ms", &timeout),
                ])
            );
            swap_request(&job, &path, no_wait)
        }
        PluginCommand::Rollback {
            job,
            operator,
            probation_batches,
            probation_timeout,
        } => {
            let plan = load_plan(&job)?;
            if !control::job_running(&plan.name)? {
                // Held while the rollback is written: no run starts meanwhile.
                let _lock = control::lock_job(&plan.name)?;
                return offline_rollback(&plan, &operator);
            }
            let batches = probation_batches.to_string();
            let timeout = timeout_ms(probation_timeout)?;
            let path = format!(
                "/rollback?{}",
                control::query(&[
                    ("operator", &operator),
                    ("probation_batches", &batches),
                    ("probation_timeout_ms", &timeout),
                ])
            );
            swap_request(&job, &path, false)
        }
        PluginCommand::History { job } => plugin_history(&job),
    }
}

/// `--probation-timeout` (seconds) as the endpoint's milliseconds.
fn timeout_ms(secs: f64) -> anyhow::Result<String> {
    anyhow::ensure!(
        secs.is_finite() && secs > 0.0,
        "--probation-timeout must be a positive number of seconds"
    );
    Ok(((secs * 1000.0).ceil() as u64).to_string())
}

/// `plugin rollback` of a job that is not running: its next run starts on
/// the version before the last promoted swap, from the newest checkpoint.
fn offline_rollback(plan: &crate::config::Plan, operator: &str) -> anyhow::Result<()> {
    let store = open_store(plan)?;
    let newest = manifest::list(&store, &plan.name)?.pop().with_context(|| {
        format!(
            "job `{}` is not running and has no complete checkpoint: its next run starts \
                 on the plugins its job file names",
            plan.name
        )
    })?;
    let running = newest
        .manifest
        .partitions
        .first()
        .and_then(|p| p.operators.iter().find(|o| o.name == operator))
        .map(|o| o.plugin_digest.clone())
        .with_context(|| {
            format!(
                "the newest checkpoint of job `{}` ({}) has no operator `{operator}`",
                plan.name, newest.folder
            )
        })?;
    let record = crate::runtime::swap::schedule_rollback(
        &store,
        &plan.name,
        operator,
        &running,
        "asked for with `weir plugin rollback` while the job was stopped",
    )?;
    println!("{}", describe_swap(&serde_json::to_value(&record)?));
    println!(
        "job `{}` is not running: its next run starts operator `{operator}` on {} from {} \
         (the state it holds)",
        plan.name,
        crate::digest::short(&record.to_digest),
        newest.folder
    );
    Ok(())
}

/// Ask the running job for a swap; then, unless `no_wait`, follow its
/// record in `GET /status` until it is promoted or rolled back.
fn swap_request(job: &Path, path: &str, no_wait: bool) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let endpoint = control::find(&plan.name)?;
    let (status, body) = endpoint.request("POST", path)?;
    let record: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 200 {
        let why = record["error"].as_str().unwrap_or(&body);
        anyhow::bail!("swap refused ({status}): {why}");
    }
    let seq = record["seq"].as_u64().unwrap_or_default();
    println!("{}", describe_swap(&record));
    if no_wait {
        return Ok(());
    }
    let mut record = record;
    loop {
        match record_outcome(&record).as_str() {
            "promoted" => return Ok(()),
            "rolled_back" => anyhow::bail!(
                "swap {seq} was rolled back: {}",
                record["cause"].as_str().unwrap_or("?")
            ),
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Ok((200, body)) = endpoint.request("GET", "/status") else {
            anyhow::bail!(
                "the job ended before swap {seq} had an outcome; `weir plugin history` tells \
                 which version its last checkpoint runs"
            );
        };
        let status: serde_json::Value = serde_json::from_str(&body)?;
        let Some(r) = status["swaps"]
            .as_array()
            .and_then(|s| s.iter().find(|r| r["seq"].as_u64() == Some(seq)))
        else {
            anyhow::bail!("swap {seq} is not in the job's status");
        };
        if record_outcome(r) != record_outcome(&record) {
            println!("{}", describe_swap(r));
        }
        record = r.clone();
    }
}

fn record_outcome(r: &serde_json::Value) -> String {
    r["outcome"].as_str().unwrap_or_default().to_string()
}

/// One line for a swap record.
fn describe_swap(r: &serde_json::Value) -> String {
    let short = |k: &str| crate::digest::short(r[k].as_str().unwrap_or(""));
    let mut line = format!(
        "swap {} {} of `{}`: {} -> {} at {} (savepoint {}): {}",
        r["seq"],
        r["kind"].as_str().unwrap_or("swap"),
        r["operator"].as_str().unwrap_or("?"),
        short("from_digest"),
        short("to_digest"),
        r["requested_ms"]
            .as_i64()
            .map(manifest::format_time)
            .unwrap_or_default(),
        r["savepoint"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("none"),
        record_outcome(r).replace('_', " "),
    );
    if matches!(record_outcome(r).as_str(), "promoted" | "rolled_back")
        && r["kind"].as_str() != Some("rollback")
        || r["checked_batches"].as_u64().unwrap_or(0) > 0
    {
        line.push_str(&format!(
            "; checked {} of {} probation batches ({} records)",
            r["checked_batches"].as_u64().unwrap_or(0),
            r["probation_batches"].as_u64().unwrap_or(0),
            r["checked_records"].as_u64().unwrap_or(0)
        ));
    }
    if let Some(p) = r["pause"].as_object() {
        let ms = |k: &str| p.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
        line.push_str(&format!(
            "; pause {:.1} ms (snapshot {:.1}, instantiate {:.1}, restore {:.1})",
            ms("total_ms"),
            ms("snapshot_ms"),
            ms("instantiate_ms"),
            ms("restore_ms")
        ));
    }
    if let Some(c) = r["promoted_at"].as_u64() {
        line.push_str(&format!("; promoted at checkpoint {c}"));
    }
    if let Some(c) = r["cause"].as_str() {
        line.push_str(&format!("; cause: {c}"));
    }
    line
}

/// `plugin history`: every swap of the job, from the state store.
fn plugin_history(job: &Path) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let store = open_store(&plan)?;
    let records = crate::runtime::swap::read_history(&store, &plan.name)?;
    if records.is_empty() {
        println!("job `{}` has no swaps", plan.name);
    }
    for r in records {
        println!("{}", describe_swap(&serde_json::to_value(r)?));
    }
    Ok(())
}
