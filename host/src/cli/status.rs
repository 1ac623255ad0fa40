//! `weir status JOB`: what the job is doing, read from its control
//! endpoint while it runs (`GET /status`), else its last checkpoint or
//! savepoint from the store. A table a person reads, or with `--json`
//! the same as JSON for scripts.

use std::path::Path;

use serde_json::{Value, json};

use super::{load_plan, open_store};
use crate::checkpoint::manifest;
use crate::runtime::control;

/// `weir status`.
pub(super) fn status(job: &Path, as_json: bool, addr_file: bool) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    if crate::group::is_group(&plan) && !addr_file {
        return super::group::status(&plan, as_json);
    }
    if addr_file {
        // Where the running job's address and token are (the run folder
        // depends on WEIR_RUN_DIR, XDG_RUNTIME_DIR and the user).
        println!("{}", control::addr_file(&plan.name).display());
        return Ok(());
    }
    let running = match control::find(&plan.name) {
        // An address file left by a job that was killed: not running.
        Ok(ep) => match ep.request("GET", "/status") {
            Ok((200, body)) => Some(serde_json::from_str::<Value>(&body)?),
            Ok((status, body)) => {
                anyhow::bail!("the job's control endpoint answered {status}: {body}")
            }
            Err(_) if crate::checkpoint::lease::process_start(ep.pid).is_none() => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    if let Some(mut s) = running {
        if as_json {
            s["running"] = json!(true);
            println!("{s}");
        } else {
            print!("{}", table(&s));
        }
        return Ok(());
    }
    let last = if plan.checkpoint.is_some() {
        let store = open_store(&plan)?;
        let (found, _) = manifest::list_all(&store, &plan.name)?;
        found
            .into_iter()
            .max_by_key(|f| (f.manifest.id, f.manifest.wall_time_ms))
            .map(|f| f.manifest)
    } else {
        None
    };
    if as_json {
        let last = last.as_ref().map(|m| {
            json!({
                "id": m.id, "name": m.name, "kind": m.kind,
                "wall_time_ms": m.wall_time_ms, "watermark": m.watermark,
                "bytes": m.state_bytes(), "partitions": m.partitions.len(),
                "source": m.source,
            })
        });
        println!(
            "{}",
            json!({"job": plan.name, "running": false, "last_checkpoint": last})
        );
        return Ok(());
    }
    println!("job `{}` is not running", plan.name);
    match (&plan.checkpoint, last) {
        (None, _) => println!("it takes no checkpoints ([checkpoints] is off in its job file)"),
        (Some(_), None) => println!("no checkpoint or savepoint in its store yet"),
        (Some(_), Some(m)) => {
            println!(
                "last {}: {} (id {}), taken {}, event time {}, {} in {} partitions",
                format!("{:?}", m.kind).to_lowercase(),
                m.name,
                m.id,
                manifest::format_time(m.wall_time_ms),
                manifest::format_time(m.watermark),
                bytes(m.state_bytes() as f64),
                m.partitions.len()
            );
            println!("restart from it: weir run JOB_FILE --from-savepoint latest");
        }
    }
    Ok(())
}

/// A figure with thousands separators (`–` when missing).
fn n(v: &Value) -> String {
    let Some(f) = v.as_f64() else {
        return "–".into();
    };
    let digits = format!("{:.0}", f.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if f < 0.0 { format!("-{out}") } else { out }
}

/// Bytes as a person reads them.
fn bytes(mut v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Rows under a header, columns padded to their widest cell.
fn grid(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    if rows.is_empty() {
        out.push_str("(none yet)\n");
    }
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// The running job's `/status` as a person reads it.
fn table(s: &Value) -> String {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| n(v));
    let mut out = format!(
        "job `{}` is {}, up {:.0} s (host {}, {} threads)\n",
        text(&s["job"]),
        text(&s["phase"]),
        s["uptime_s"].as_f64().unwrap_or(0.0),
        text(&s["host_version"]),
        n(&s["parallelism"])
    );
    out += &format!(
        "records read {}, out {}, dead letters {}, malformed {}\n",
        n(&s["records_read"]),
        n(&s["emitted"]),
        n(&s["dead_letters"]),
        n(&s["malformed"])
    );
    let last = &s["last_checkpoint"];
    out += &format!(
        "checkpoints {} completed, {} failed; last: {}\n",
        n(&s["checkpoints_completed"]),
        n(&s["checkpoints_failed"]),
        if last.is_null() {
            "none yet".to_string()
        } else {
            format!(
                "id {} ({} {})",
                n(&last["id"]),
                text(&last["kind"]),
                text(&last["name"])
            )
        }
    );
    let lag = list(&s["consumer_lag"]);
    if !lag.is_empty() {
        out += &format!(
            "consumer lag of `{}` by input partition: {}\n",
            text(&s["topic"]),
            lag.iter().map(n).collect::<Vec<_>>().join(" ")
        );
    }
    out += "\n";
    out += &grid(
        &[
            "PARTITION",
            "THREAD",
            "RECORDS IN",
            "RECORDS OUT",
            "WATERMARK LAG",
            "STATE",
        ],
        list(&s["partitions"])
            .iter()
            .map(|p| {
                vec![
                    n(&p["partition"]),
                    n(&p["thread"]),
                    n(&p["records_in"]),
                    n(&p["records_out"]),
                    p["watermark_lag_ms"]
                        .as_f64()
                        .map_or("–".into(), |ms| format!("{:.1} s", ms / 1e3)),
                    p["state_bytes"].as_f64().map_or("–".into(), bytes),
                ]
            })
            .collect(),
    );
    out += "\n";
    out += &grid(
        &[
            "OPERATOR",
            "PLUGIN",
            "RECORDS IN",
            "RECORDS/S",
            "BUSY",
            "DEAD LETTERS",
        ],
        list(&s["chain"])
            .iter()
            .map(|o| {
                vec![
                    text(&o["operator"]),
                    o["digest"]
                        .as_str()
                        .map_or("native".into(), |d| d.chars().take(12).collect()),
                    n(&o["records_in"]),
                    n(&o["records_per_s"]),
                    o["busy"]
                        .as_f64()
                        .map_or("–".into(), |b| format!("{:.1} %", b * 100.0)),
                    n(&o["dead_letters"]),
                ]
            })
            .collect(),
    );
    out += "\n";
    out += &grid(
        &[
            "CHECKPOINT",
            "NAME",
            "TAKEN",
            "DURATION",
            "SIZE",
            "LONGEST PAUSE",
        ],
        list(&s["checkpoints"])
            .iter()
            .rev()
            .take(5)
            .map(|c| {
                vec![
                    n(&c["id"]),
                    text(&c["name"]),
                    manifest::format_time(c["wall_time_ms"].as_i64().unwrap_or(0)),
                    format!("{:.1} ms", c["duration_ms"].as_f64().unwrap_or(0.0)),
                    bytes(c["bytes"].as_f64().unwrap_or(0.0)),
                    format!("{:.1} ms", c["max_pause_ms"].as_f64().unwrap_or(0.0)),
                ]
            })
            .collect(),
    );
    let swaps = list(&s["swaps"]);
    if !swaps.is_empty() {
        out += "\n";
        out += &grid(
            &["SWAP", "OPERATOR", "KIND", "TO", "OUTCOME"],
            swaps
                .iter()
                .map(|w| {
                    vec![
                        n(&w["seq"]),
                        text(&w["operator"]),
                        text(&w["kind"]),
                        text(&w["to_digest"]).chars().take(12).collect(),
                        text(&w["outcome"]),
                    ]
                })
                .collect(),
        );
    }
    out
}
