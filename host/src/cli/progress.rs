//! The progress of `weir run` on standard error. At a terminal, a bar
//! (`indicatif`): the phase, bytes of the files read of the total, files,
//! records/s, the event time reached and the time left; live, the consumer
//! lag. Otherwise (a file, a pipe, journald) the same figures as a log line
//! every few seconds. Log lines written while the bar is drawn go above it
//! ([`LogWriter`]), so neither garbles the other.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::job::{Progress, ProgressFn};
use crate::source::{SourceFigures, SourcePhase};

/// The bar being drawn, if any: log lines are written around it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How often the figures are taken: `WEIR_PROGRESS_EVERY` (seconds,
/// fractions allowed), else four times a second for a bar and every five
/// seconds for log lines.
pub(super) fn every() -> Duration {
    if let Ok(v) = std::env::var("WEIR_PROGRESS_EVERY") {
        match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => return Duration::from_secs_f64(s.max(0.05)),
            _ => tracing::warn!(
                "WEIR_PROGRESS_EVERY={v:?} is not a number of seconds above 0; progress is \
                 shown at the default interval"
            ),
        }
    }
    if std::io::stderr().is_terminal() {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    }
}

/// The progress reporter of `weir run`: a bar at a terminal, else log
/// lines.
pub(super) fn reporter() -> ProgressFn {
    if !std::io::stderr().is_terminal() {
        return Box::new(log_line);
    }
    let mut bar = Bar::default();
    Box::new(move |p| bar.draw(p))
}

/// One progress log line: what a person reading a log file checks.
fn log_line(p: &Progress) {
    let f = p.source.as_ref();
    tracing::info!(
        phase = phase(p),
        records = p.now.records_read,
        rate = format!("{:.0}/s", p.records_per_s()),
        files = f.map(|f| format!("{}/{}", f.files_done, f.files_total)),
        mib = f.map_or_else(
            || format!("{:.1}", mib(p.now.bytes_read)),
            |f| format!("{:.1}/{:.1}", mib(f.bytes_done), mib(f.bytes_total))
        ),
        percent = f.and_then(percent).map(|x| format!("{x:.1}")),
        event_time = f.and_then(|f| f.event_time).map(crate::clock::format_time),
        eta = p.eta.map(duration),
        emitted = p.now.emitted,
        lag = p.total_lag(),
        switch_pause_ms = f
            .and_then(|f| f.switch?.pause_ms)
            .map(|ms| format!("{ms:.1}")),
        "progress"
    );
}

/// Bytes in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The phase a tick shows: the source's, or `live` for a Kafka source.
fn phase(p: &Progress) -> &'static str {
    match &p.source {
        Some(f) => f.phase.name(),
        None if !p.lag.is_empty() => SourcePhase::Live.name(),
        None => "running",
    }
}

/// Bytes read of the total, in percent (`None`: nothing listed).
fn percent(f: &SourceFigures) -> Option<f64> {
    (f.bytes_total > 0).then(|| 100.0 * f.bytes_done as f64 / f.bytes_total as f64)
}

/// A duration as people read it: `1h 02m`, `3m 20s`, `12s`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// Records per second, short.
fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M rec/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k rec/s", r / 1e3)
    } else {
        format!("{r:.0} rec/s")
    }
}

/// The bar, made at the first tick; finished (left on screen) when the
/// reporter is dropped at the end of the run.
#[derive(Default)]
struct Bar {
    /// The bar, and whether it shows files (a length) or only a message.
    bar: Option<(ProgressBar, bool)>,
}

impl Bar {
    /// Show tick `p`.
    fn draw(&mut self, p: &Progress) {
        let files = p
            .source
            .as_ref()
            .filter(|f| f.phase == SourcePhase::Files && f.files_total > 0);
        let (bar, with_files) = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(0);
            *crate::lock_or_recover(&BAR) = Some(bar.clone());
            (bar, false)
        });
        if files.is_some() != *with_files {
            *with_files = files.is_some();
            bar.set_style(style(*with_files));
        }
        bar.set_prefix(phase(p));
        let mut msg = Vec::new();
        if let Some(f) = files {
            bar.set_length(f.bytes_total);
            bar.set_position(f.bytes_done);
            msg.push(format!("files {}/{}", f.files_done, f.files_total));
        }
        msg.push(rate(p.records_per_s()));
        if let Some(t) = p.source.as_ref().and_then(|f| f.event_time) {
            msg.push(format!("event time {}", crate::clock::format_time(t)));
        }
        if let Some(eta) = p.eta {
            msg.push(format!("{} left", duration(eta)));
        }
        if let Some(lag) = p.total_lag() {
            msg.push(format!("lag {lag} records"));
        }
        if files.is_none() {
            msg.push(format!(
                "{} records in, {} out",
                p.now.records_read, p.now.emitted
            ));
        }
        bar.set_message(msg.join(" · "));
        bar.tick();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some((bar, _)) = self.bar.take() {
            *crate::lock_or_recover(&BAR) = None;
            bar.finish();
        }
    }
}

/// The bar's look: with files, a bar of bytes; live, a line of figures.
fn style(with_files: bool) -> ProgressStyle {
    let template = if with_files {
        "{prefix:>9} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {msg}"
    } else {
        "{prefix:>9} {msg}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Standard error for the log, written above the bar while one is drawn.
pub(super) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = crate::lock_or_recover(&BAR).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf).map(|()| buf.len())),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(200)), "3m 20s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h 02m");
        assert_eq!(rate(1_500_000.0), "1.50M rec/s");
        assert_eq!(rate(2_500.0), "2.5k rec/s");
    }
}
