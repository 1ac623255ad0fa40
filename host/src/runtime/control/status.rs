//! The figures of `GET /status` (and so of the status page and `weir
//! status`): the job's counters, its partitions and operators, throughput
//! over the last minutes (from a sample taken every second), recent
//! checkpoints and swaps, and the last dead letters.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use super::server::Served;
use crate::checkpoint::manifest::{Manifest, folder};
use crate::runtime::swap::Outcome;
use crate::sink::dead_letter::STAGES;

/// Samples kept: five minutes, one a second.
pub(super) const SAMPLES: usize = 301;

/// The counters at one moment, for rates.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    /// When it was taken.
    pub(super) at: Instant,
    /// The same as wall time (ms since the epoch).
    wall_ms: i64,
    /// Records read.
    pub(super) read: u64,
    /// Records written to the sink.
    emitted: u64,
    /// Per operator: records in and busy ns, over all partitions.
    operators: Vec<(u64, u64)>,
    /// Bytes of files read, once the source listed them (see
    /// `progress.rs`).
    pub(super) source_bytes: Option<u64>,
}

/// Take a sample (every second, from the server's runtime).
pub(super) fn sample(served: &Served) {
    let m = served.job.metrics.snapshot();
    let operators = served
        .job
        .metrics
        .chain()
        .map(|c| {
            (0..c.operators.len())
                .map(|op| {
                    c.partitions.iter().fold((0, 0), |(n, b), p| {
                        let f = &p.operators[op];
                        (
                            n + f.records_in.load(Ordering::Relaxed),
                            b + f.busy_ns.load(Ordering::Relaxed),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut samples = crate::lock_or_recover(&served.samples);
    if samples.len() == SAMPLES {
        samples.pop_front();
    }
    samples.push_back(Sample {
        at: Instant::now(),
        wall_ms: crate::clock::now_ms(),
        read: m.records_read,
        emitted: m.emitted,
        operators,
        source_bytes: served
            .job
            .metrics
            .source_figures()
            .filter(|f| f.files_total > 0)
            .map(|f| f.bytes_done),
    });
}

/// Records per second in and out between consecutive samples.
fn throughput(samples: &VecDeque<Sample>) -> Vec<Value> {
    samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(a, b)| {
            let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
            json!({
                "time_ms": b.wall_ms,
                "in_per_s": (b.read - a.read) as f64 / secs,
                "out_per_s": (b.emitted - a.emitted) as f64 / secs,
            })
        })
        .collect()
}

/// What the job is doing.
fn phase(served: &Served) -> &'static str {
    let job = &served.job;
    if job.stop.load(Ordering::Relaxed) {
        return "stopping";
    }
    let swapping = job.swaps.as_ref().is_some_and(|s| {
        s.log()
            .records()
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Requested | Outcome::Probation))
    });
    if swapping { "swapping" } else { "running" }
}

/// `GET /status`.
pub(super) fn status(served: &Served) -> Value {
    let job = &served.job;
    let (m, c) = job.counters();
    let samples = crate::lock_or_recover(&served.samples).clone();
    let digests: Vec<Option<String>> = match &job.swaps {
        Some(s) => s
            .log()
            .current()
            .iter()
            .map(|c| Some(c.digest.clone()))
            .collect(),
        None => job
            .metrics
            .chain()
            .map(|c| c.digests.clone())
            .unwrap_or_default(),
    };
    let now_ms = crate::clock::now_ms();
    let state_bytes = |p: usize| {
        c.last.as_ref().and_then(|m| m.partitions.get(p)).map(|e| {
            e.operators
                .iter()
                .map(|o| o.state.size + o.timers.size)
                .sum::<u64>()
        })
    };
    let (partitions, operators) = match job.metrics.chain() {
        None => (vec![], vec![]),
        Some(chain) => {
            let partitions = chain
                .partitions
                .iter()
                .enumerate()
                .map(|(p, f)| {
                    let w = f.watermark.load(Ordering::Relaxed);
                    let known = w != i64::MIN && w != i64::MAX;
                    json!({
                        "partition": p,
                        "thread": p % chain.threads,
                        "records_in": f.records_in.load(Ordering::Relaxed),
                        "records_out": f.records_out.load(Ordering::Relaxed),
                        "watermark": known.then_some(w),
                        "watermark_lag_ms": known.then(|| now_ms.saturating_sub(w)),
                        "state_bytes": state_bytes(p),
                    })
                })
                .collect::<Vec<_>>();
            let rates = |op: usize| {
                let (a, b) = (samples.len().checked_sub(2)?, samples.len() - 1);
                let (a, b) = (&samples[a], &samples[b]);
                let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
                let (n0, busy0) = *a.operators.get(op)?;
                let (n1, busy1) = *b.operators.get(op)?;
                Some((
                    (n1 - n0) as f64 / secs,
                    (busy1 - busy0) as f64 / 1e9 / secs / chain.threads as f64,
                ))
            };
            let operators = chain
                .operators
                .iter()
                .enumerate()
                .map(|(op, name)| {
                    let sum = |f: fn(&crate::runtime::figures::OperatorFigures) -> u64| {
                        chain
                            .partitions
                            .iter()
                            .map(|p| f(&p.operators[op]))
                            .sum::<u64>()
                    };
                    let (per_s, busy) = rates(op).unzip();
                    json!({
                        "operator": name,
                        "digest": digests.get(op).cloned().flatten(),
                        "records_in": sum(|f| f.records_in.load(Ordering::Relaxed)),
                        "records_out": sum(|f| f.records_out.load(Ordering::Relaxed)),
                        "dead_letters": sum(|f| f.rejected.load(Ordering::Relaxed)),
                        "busy_seconds": sum(|f| f.busy_ns.load(Ordering::Relaxed)) as f64 / 1e9,
                        "records_per_s": per_s,
                        "busy": busy,
                    })
                })
                .collect();
            (partitions, operators)
        }
    };
    let by_stage = job.dead_letters.by_stage();
    let progress = super::progress::now(served, &samples).map(|p| p.json());
    json!({
        "job": job.job,
        "phase": phase(served),
        "host_version": crate::VERSION,
        "uptime_s": job.started.elapsed().as_secs_f64(),
        "parallelism": job.parallelism,
        "records_read": m.records_read,
        "bytes_read": m.bytes_read,
        "files_done": m.files_done,
        "emitted": m.emitted,
        "malformed": m.malformed,
        "dead_letters": by_stage.iter().sum::<u64>(),
        "dead_letters_by_stage": STAGES.iter().zip(by_stage).map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "checkpoints_completed": c.completed,
        "checkpoints_failed": c.failed,
        "restarts": job.metrics.restarts(),
        "consumer_lag": job.metrics.lag(),
        "consumer_lag_ms": job.metrics.lag_age_ms(),
        "topic": job.metrics.topic(),
        "progress": progress,
        "last_checkpoint": c.last.as_ref().map(|m| manifest_json(&job.job, m)),
        "checkpoints": c.history.recent,
        "operators": job.swaps.as_ref().map(|_| digests.iter().flatten().cloned().collect::<Vec<_>>()),
        "chain": operators,
        "partitions": partitions,
        "throughput": throughput(&samples),
        "swaps": job.swaps.as_ref().map(|s| s.log().records()),
        "recent_dead_letters": job.dead_letters.recent(),
    })
}

/// A checkpoint's manifest as `/status` and the savepoint answers show it.
pub(super) fn manifest_json(job: &str, m: &Manifest) -> Value {
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
