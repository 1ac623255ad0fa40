//! The source's progress as `GET /status` (its `progress` object, which
//! the status page draws) and `GET /metrics` show it: the phase (`files`,
//! `switching`, `live`), files and bytes read of the total, the largest
//! event time read, records and bytes per second over the last samples,
//! the time left to read the files at that rate, the switch to Kafka, and,
//! live, the consumer lag over every input partition.

use std::collections::VecDeque;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use serde_json::{Value, json};

use super::server::Served;
use super::status::Sample;
use crate::runtime::figures::time_left;
use crate::source::{SourceFigures, SourcePhase};

/// Samples (seconds) the records rate is taken over.
const RECORDS_WINDOW: usize = 10;

/// The source's progress at one moment, with its rates.
#[derive(Debug, Clone)]
pub(super) struct ProgressNow {
    /// The phase.
    phase: SourcePhase,
    /// The source's own figures (`None`: a Kafka source).
    figures: Option<SourceFigures>,
    /// Records read per second over the last [`RECORDS_WINDOW`] samples.
    records_per_s: Option<f64>,
    /// Bytes of files read per second over the samples of the files phase.
    bytes_per_s: Option<f64>,
    /// Seconds left to read the files at that rate.
    eta_s: Option<f64>,
    /// Consumer lag over every input partition, records (live phase).
    lag: Option<i64>,
}

/// The progress now: `None` for a job whose source reports none and reads
/// no topic.
pub(super) fn now(served: &Served, samples: &VecDeque<Sample>) -> Option<ProgressNow> {
    let metrics = &served.job.metrics;
    let figures = metrics.source_figures();
    if figures.is_none() && metrics.topic().is_none() {
        return None;
    }
    let phase = figures.map_or(SourcePhase::Live, |f| f.phase);
    let records_per_s = samples
        .len()
        .checked_sub(RECORDS_WINDOW + 1)
        .or_else(|| (samples.len() >= 2).then_some(0))
        .and_then(|from| {
            let (a, b) = (&samples[from], samples.back()?);
            let secs = b.at.duration_since(a.at).as_secs_f64();
            (secs > 0.0).then(|| b.read.saturating_sub(a.read) as f64 / secs)
        });
    let bytes_per_s = (phase == SourcePhase::Files).then(|| {
        let mut files = samples.iter().filter_map(|s| Some((s.at, s.source_bytes?)));
        files
            .next()
            .zip(samples.back())
            .and_then(|((t0, b0), last)| {
                let b1 = last.source_bytes?;
                let secs = last.at.duration_since(t0).as_secs_f64();
                (secs > 0.0 && b1 > b0).then(|| (b1 - b0) as f64 / secs)
            })
    });
    let bytes_per_s = bytes_per_s.flatten();
    let eta_s = figures
        .as_ref()
        .zip(bytes_per_s)
        .and_then(|(f, r)| time_left(f, r));
    let lag: Vec<i64> = metrics.lag().into_iter().filter(|&l| l >= 0).collect();
    Some(ProgressNow {
        phase,
        figures,
        records_per_s,
        bytes_per_s,
        eta_s,
        lag: (phase == SourcePhase::Live && !lag.is_empty()).then(|| lag.iter().sum()),
    })
}

impl ProgressNow {
    /// The `progress` object of `/status`.
    pub(super) fn json(&self) -> Value {
        let f = self.figures.as_ref();
        json!({
            "phase": self.phase.name(),
            "files_done": f.map(|f| f.files_done),
            "files_total": f.map(|f| f.files_total),
            "bytes_done": f.map(|f| f.bytes_done),
            "bytes_total": f.map(|f| f.bytes_total),
            "event_time": f.and_then(|f| f.event_time),
            "bounded": f.map(|f| f.bounded),
            "records_per_s": self.records_per_s,
            "bytes_per_s": self.bytes_per_s,
            "eta_s": self.eta_s,
            "consumer_lag": self.lag,
            "switch": f.and_then(|f| f.switch),
        })
    }

    /// Its numbers as gauges (rates are left to Prometheus: `rate()` of
    /// `weir_records_read_total` and `weir_read_bytes_total`).
    pub(super) fn register(&self, r: &mut Registry) {
        let phases =
            prometheus_client::metrics::family::Family::<Vec<(String, String)>, Gauge>::default();
        for p in [
            SourcePhase::Files,
            SourcePhase::Switching,
            SourcePhase::Live,
        ] {
            phases
                .get_or_create(&vec![("phase".to_string(), p.name().to_string())])
                .set(i64::from(p == self.phase));
        }
        r.register(
            "weir_source_phase",
            "What the source reads: 1 for the phase it is in (files, switching, live), 0 for \
             the others",
            phases,
        );
        let gauge = |v: i64| {
            let g = Gauge::<i64>::default();
            g.set(v);
            g
        };
        let seconds = |v: f64| {
            let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            g.set(v);
            g
        };
        if let Some(f) = &self.figures
            && f.files_total > 0
        {
            r.register(
                "weir_source_files_listed",
                "Files the file source lists (its folder or prefix)",
                gauge(f.files_total as i64),
            );
            r.register(
                "weir_source_files_done",
                "Files read to the end, those of the checkpoint the run started from included",
                gauge(f.files_done as i64),
            );
            r.register_with_unit(
                "weir_source_listed",
                "Size of the files the file source lists",
                Unit::Bytes,
                gauge(f.bytes_total as i64),
            );
            r.register_with_unit(
                "weir_source_done",
                "Bytes of the files read, those of the checkpoint the run started from included",
                Unit::Bytes,
                gauge(f.bytes_done as i64),
            );
        }
        if let Some(t) = self.figures.and_then(|f| f.event_time) {
            r.register_with_unit(
                "weir_source_event_time",
                "The largest event time the source read, since the epoch",
                Unit::Seconds,
                seconds(t as f64 / 1e3),
            );
        }
        if let Some(eta) = self.eta_s {
            r.register_with_unit(
                "weir_source_time_left",
                "Estimated time left to read the files, at the rate of the last minutes",
                Unit::Seconds,
                seconds(eta),
            );
        }
        if let Some(pause) = self.figures.and_then(|f| f.switch?.pause_ms) {
            r.register_with_unit(
                "weir_source_switch_pause",
                "From the last file read to the first Kafka record read (hybrid source)",
                Unit::Seconds,
                seconds(pause / 1e3),
            );
        }
    }
}
