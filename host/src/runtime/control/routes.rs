//! What the endpoint answers, once a request is let in: `GET /status`,
//! `GET /metrics`, `POST /savepoint`, `POST /swap`, `POST /rollback` and
//! `POST /stop`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde_json::json;

use super::SAVEPOINT_WAIT;
use super::http::{Answer, Head, error, json_answer, query};
use super::percent::percent_decode;
use super::server::{JobHandle, Served};
use crate::checkpoint::check_savepoint_name;
use crate::checkpoint::manifest::{Manifest, folder};
use crate::runtime::Trigger;
use crate::runtime::swap::DEFAULT_PROBATION_BATCHES;

/// Answer an authorized request.
pub(super) fn route(head: &Head, served: &Served) -> Answer {
    let job = &served.job;
    let path = head.target.as_str();
    let route = path.split('?').next().unwrap_or("");
    match (head.method.as_str(), route) {
        ("GET", "/status") => status(job),
        ("GET", "/metrics") => metrics(job),
        ("POST", "/savepoint") => savepoint(served, path, false),
        ("POST", "/stop") if query(path, "savepoint").is_some_and(|v| v == "true" || v == "1") => {
            savepoint(served, path, true)
        }
        ("POST", "/swap") => swap(job, path, false),
        ("POST", "/rollback") => swap(job, path, true),
        ("POST", "/stop") => {
            job.stop.store(true, Ordering::Relaxed);
            json_answer(200, json!({"stopping": true}))
        }
        _ => error(404, "no such endpoint"),
    }
}

/// `GET /status`: counters and the last checkpoint, as JSON.
fn status(job: &JobHandle) -> Answer {
    let (m, c) = job.counters();
    json_answer(
        200,
        json!({
            "job": job.job,
            "records_read": m.records_read,
            "bytes_read": m.bytes_read,
            "files_done": m.files_done,
            "emitted": m.emitted,
            "malformed": m.malformed,
            "checkpoints_completed": c.completed,
            "checkpoints_failed": c.failed,
            "consumer_lag": job.metrics.lag(),
            "last_checkpoint": c.last.as_ref().map(|m| manifest_json(&job.job, m)),
            "operators": job.swaps.as_ref().map(|s| s.log().current().iter().map(|c| c.digest.clone()).collect::<Vec<_>>()),
            "swaps": job.swaps.as_ref().map(|s| s.log().records()),
        }),
    )
}

/// `POST /swap?operator=NAME&plugin=PATH[&probation_batches=N]`: swap an
/// operator's plugin (answers once the new version runs on probation, or
/// with why it was refused: nothing changed then);
/// `POST /rollback?operator=NAME`: swap back to the version before the
/// last promoted swap.
fn swap(job: &JobHandle, path: &str, rollback: bool) -> Answer {
    let Some(swaps) = &job.swaps else {
        return error(
            409,
            "this job cannot swap plugins: swaps need checkpoints ([checkpoints] enabled) and \
             Wasm plugins",
        );
    };
    let Some(operator) = query(path, "operator").map(percent_decode) else {
        return error(400, "name the operator: ?operator=NAME");
    };
    let batches = match query(path, "probation_batches").map(str::parse::<u64>) {
        None => DEFAULT_PROBATION_BATCHES,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(400, "probation_batches must be a number"),
    };
    let result = if rollback {
        swaps.rollback(&operator, batches)
    } else {
        let Some(plugin) = query(path, "plugin").map(percent_decode) else {
            return error(400, "name the new component: ?plugin=PATH");
        };
        swaps.swap(&operator, std::path::Path::new(&plugin), batches)
    };
    match result {
        Ok(record) => json_answer(200, serde_json::to_value(record).unwrap_or_default()),
        Err(r) => error(r.status, &r.message),
    }
}

/// `GET /metrics`: the counters in Prometheus text format.
fn metrics(job: &JobHandle) -> Answer {
    let (m, c) = job.counters();
    let body = format!(
        "weir_records_read_total {}\nweir_bytes_read_total {}\nweir_files_done_total {}\n\
         weir_records_emitted_total {}\nweir_records_malformed_total {}\n\
         weir_checkpoints_completed_total {}\nweir_checkpoints_failed_total {}\n",
        m.records_read, m.bytes_read, m.files_done, m.emitted, m.malformed, c.completed, c.failed
    );
    let mut body = body;
    for (p, lag) in job.metrics.lag().iter().enumerate() {
        body.push_str(&format!("weir_consumer_lag{{partition=\"{p}\"}} {lag}\n"));
    }
    (200, body, "text/plain; version=0.0.4")
}

/// `POST /savepoint?name=N` and `POST /stop?savepoint=true&name=N`: take
/// a savepoint (then stop), answer when it is complete.
fn savepoint(served: &Served, path: &str, stop: bool) -> Answer {
    let job = &served.job;
    if !job.savepoints {
        return json_answer(
            409,
            json!({"error": "this job runs without checkpoints ([checkpoints] enabled = false), \
                             so it cannot take a savepoint; stop it without one (`weir stop JOB_FILE`)"}),
        );
    }
    let name = query(path, "name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if let Some(refused) = name.as_deref().and_then(|n| check_savepoint_name(n).err()) {
        return error(400, refused);
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let sent = job.triggers.send(Trigger::Savepoint {
        name,
        stop,
        reply: Some(tx),
    });
    let deadline = Instant::now() + SAVEPOINT_WAIT;
    let mut reply = None;
    if sent.is_ok() {
        // Until answered, the job ends (its coordinator drops the reply),
        // or the server stops (the coordinator has ended by then).
        while reply.is_none() && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => reply = Some(r),
                Err(RecvTimeoutError::Timeout) if !served.done.load(Ordering::SeqCst) => {}
                Err(_) => break,
            }
        }
        if reply.is_none() {
            reply = rx.try_recv().ok();
        }
    }
    match reply {
        Some(Ok(m)) => json_answer(200, manifest_json(&job.job, &m)),
        Some(Err(e)) => json_answer(500, json!({"error": e})),
        None => json_answer(
            503,
            json!({"error": "the job ended before the savepoint completed"}),
        ),
    }
}

fn manifest_json(job: &str, m: &Manifest) -> serde_json::Value {
    json!({
        "name": m.name,
        "kind": m.kind,
        "id": m.id,
        "folder": folder(job, m.kind, &m.name),
        "wall_time_ms": m.wall_time_ms,
        "watermark": m.watermark,
        "bytes": m.state_bytes(),
    })
}
