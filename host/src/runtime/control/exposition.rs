//! `GET /metrics`: the job's figures in the Prometheus text format
//! (OpenMetrics, as `prometheus-client` writes it), named by its
//! conventions: base units (seconds, bytes), `_total` counters, labels for
//! partitions, operators, stages and topics, histograms for latencies and
//! sizes, and `_info` metrics for what the job runs. Counters and gauges
//! are read from the job's atomics at each scrape, into a registry made
//! for it; the histograms live with the job and are shared into it.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::server::Served;
use crate::runtime::swap::Outcome;
use crate::sink::dead_letter::STAGES;

/// A label set.
type Labels = Vec<(String, String)>;

/// A label set from pairs.
fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `weir_operator_info`: one sample per operator, with its plugin digest.
#[derive(Debug)]
struct OperatorInfo(Vec<Labels>);

impl Collector for OperatorInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "weir_operator",
            "The operators the job runs, with their plugin digests",
            None,
            MetricType::Info,
        )?;
        for l in &self.0 {
            metric.encode_info(l)?;
        }
        Ok(())
    }
}

/// A counter family from `(labels, value)` pairs.
fn counters(values: impl IntoIterator<Item = (Labels, u64)>) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (l, v) in values {
        family.get_or_create(&l).inc_by(v);
    }
    family
}

/// A gauge family from `(labels, value)` pairs.
fn gauges(
    values: impl IntoIterator<Item = (Labels, f64)>,
) -> Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> {
    let family = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (l, v) in values {
        family.get_or_create(&l).set(v);
    }
    family
}

/// The exposition, ending with `# EOF`.
pub(super) fn encode(served: &Served) -> Result<String, std::fmt::Error> {
    let job = &served.job;
    let (m, c) = job.counters();
    let mut r = Registry::default();
    let total = |r: &mut Registry, name: &str, help: &str, v: u64| {
        r.register(name, help, ConstCounter::new(v));
    };
    total(
        &mut r,
        "weir_records_read",
        "Records the source produced",
        m.records_read,
    );
    r.register_with_unit(
        "weir_read",
        "Bytes the source read",
        Unit::Bytes,
        ConstCounter::new(m.bytes_read),
    );
    total(
        &mut r,
        "weir_files_done",
        "Input files read to the end",
        m.files_done,
    );
    total(
        &mut r,
        "weir_records_emitted",
        "Records written to the sink",
        m.emitted,
    );
    total(
        &mut r,
        "weir_records_malformed",
        "Input lines the source could not parse",
        m.malformed,
    );
    total(
        &mut r,
        "weir_restarts",
        "Restarts of the job in this process by its restart strategy",
        job.metrics.restarts(),
    );
    total(
        &mut r,
        "weir_checkpoints_completed",
        "Checkpoints and savepoints completed",
        c.completed,
    );
    total(
        &mut r,
        "weir_checkpoints_failed",
        "Checkpoints and savepoints that failed",
        c.failed,
    );
    let stages = job.dead_letters.by_stage();
    r.register(
        "weir_dead_letters",
        "Records sent to the dead-letter output, by the stage that refused them",
        counters(
            STAGES
                .iter()
                .zip(stages)
                .map(|(s, n)| (labels(&[("stage", s.to_string())]), n)),
        ),
    );
    let topic = job.metrics.topic().unwrap_or("").to_string();
    let lag = job.metrics.lag();
    r.register(
        "weir_consumer_lag_records",
        "Records between the consumer's position and the end of each input partition",
        gauges(
            lag.iter()
                .enumerate()
                .filter(|(_, l)| **l >= 0)
                .map(|(p, l)| {
                    (
                        labels(&[("topic", topic.clone()), ("partition", p.to_string())]),
                        *l as f64,
                    )
                }),
        ),
    );
    r.register(
        "weir_consumer_lag_seconds",
        "How old the last record read from each input partition is while records are left \
         to read (0 once caught up)",
        gauges(
            job.metrics
                .lag_age_ms()
                .iter()
                .enumerate()
                .filter(|(_, l)| **l >= 0)
                .map(|(p, l)| {
                    (
                        labels(&[("topic", topic.clone()), ("partition", p.to_string())]),
                        *l as f64 / 1000.0,
                    )
                }),
        ),
    );
    let progress = super::progress::now(served, &crate::lock_or_recover(&served.samples));
    if let Some(p) = progress {
        p.register(&mut r);
    }
    if let Some(chain) = job.metrics.chain() {
        let now_ms = crate::clock::now_ms();
        let part = |p: usize| ("partition", p.to_string());
        let per_partition = |f: fn(&crate::runtime::figures::PartitionFigures) -> u64| {
            counters(
                chain
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(p, x)| (labels(&[part(p)]), f(x))),
            )
        };
        r.register(
            "weir_partition_records_in",
            "Records routed to each partition",
            per_partition(|f| f.records_in.load(Ordering::Relaxed)),
        );
        r.register(
            "weir_partition_records_out",
            "Records each partition wrote to the sink",
            per_partition(|f| f.records_out.load(Ordering::Relaxed)),
        );
        r.register_with_unit(
            "weir_watermark_lag",
            "Wall time minus each partition's watermark (event time)",
            Unit::Seconds,
            gauges(chain.partitions.iter().enumerate().filter_map(|(p, f)| {
                let w = f.watermark.load(Ordering::Relaxed);
                (w != i64::MIN && w != i64::MAX)
                    .then(|| (labels(&[part(p)]), now_ms.saturating_sub(w) as f64 / 1e3))
            })),
        );
        let per_op = |f: fn(&crate::runtime::figures::OperatorFigures) -> u64| {
            counters(chain.partitions.iter().enumerate().flat_map(|(p, x)| {
                x.operators.iter().enumerate().map(move |(op, o)| {
                    (
                        labels(&[("operator", chain.operators[op].clone()), part(p)]),
                        f(o),
                    )
                })
            }))
        };
        r.register(
            "weir_operator_records_in",
            "Records given to each operator instance",
            per_op(|f| f.records_in.load(Ordering::Relaxed)),
        );
        r.register(
            "weir_operator_records_out",
            "Records each operator instance emitted",
            per_op(|f| f.records_out.load(Ordering::Relaxed)),
        );
        r.register(
            "weir_operator_rejected",
            "Records each operator instance rejected (to the dead-letter output)",
            per_op(|f| f.rejected.load(Ordering::Relaxed)),
        );
        let busy = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        for (p, x) in chain.partitions.iter().enumerate() {
            for (op, o) in x.operators.iter().enumerate() {
                let l = labels(&[("operator", chain.operators[op].clone()), part(p)]);
                busy.get_or_create(&l)
                    .inc_by(o.busy_ns.load(Ordering::Relaxed) as f64 / 1e9);
            }
        }
        r.register_with_unit(
            "weir_operator_busy",
            "Wall time each operator instance spent in its plugin (rate: the busy share)",
            Unit::Seconds,
            busy,
        );
        r.register_with_unit(
            "weir_batch_call_duration",
            "Latency of one batch call into an operator",
            Unit::Seconds,
            chain.call_family.clone(),
        );
        let digests: Vec<Option<String>> = match &job.swaps {
            Some(s) => s
                .log()
                .current()
                .iter()
                .map(|c| Some(c.digest.clone()))
                .collect(),
            None => chain.digests.clone(),
        };
        r.register_collector(Box::new(OperatorInfo(
            chain
                .operators
                .iter()
                .zip(digests.into_iter().chain(std::iter::repeat(None)))
                .map(|(name, d)| {
                    labels(&[
                        ("job", job.job.clone()),
                        ("operator", name.clone()),
                        ("plugin_digest", d.unwrap_or_else(|| "native".into())),
                    ])
                })
                .collect(),
        )));
    }
    r.register_with_unit(
        "weir_checkpoint_duration",
        "Barrier-to-manifest time of completed checkpoints and savepoints",
        Unit::Seconds,
        c.history.duration_seconds.clone(),
    );
    r.register_with_unit(
        "weir_checkpoint_size",
        "State size of completed checkpoints and savepoints",
        Unit::Bytes,
        c.history.size_bytes.clone(),
    );
    if let Some(s) = &job.swaps {
        let records = s.log().records();
        let count =
            |f: fn(&Outcome) -> bool| records.iter().filter(|r| f(&r.outcome)).count() as u64;
        r.register(
            "weir_swaps",
            "Plugin swaps that ended, by outcome",
            counters([
                (
                    labels(&[("outcome", "promoted".into())]),
                    count(|o| matches!(o, Outcome::Promoted)),
                ),
                (
                    labels(&[("outcome", "rolled_back".into())]),
                    count(|o| matches!(o, Outcome::RolledBack)),
                ),
            ]),
        );
        let in_progress = Gauge::<i64>::default();
        in_progress.set(count(|o| matches!(o, Outcome::Requested | Outcome::Probation)) as i64);
        r.register(
            "weir_swaps_in_progress",
            "Plugin swaps asked for or on probation",
            in_progress,
        );
    }
    r.register(
        "weir",
        "The job and the Weir host version",
        prometheus_client::metrics::info::Info::new(labels(&[
            ("job", job.job.clone()),
            ("version", crate::VERSION.to_string()),
        ])),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r)?;
    Ok(text)
}
