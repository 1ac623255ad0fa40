//! How far a source has come, for the progress display, `GET /status` and
//! the metrics: a [`SourceProgress`] handle of atomics that the file and
//! hybrid sources create and update (once per chunk of input, never a
//! read-modify-write per record), and the runtime reads as
//! [`SourceFigures`] whenever it asks (every second or so).
//!
//! The files part is the files and bytes read of the total listed (a
//! restored run counts what the checkpoint had read as done), the largest
//! event time read, and whether the files end (read once, not followed);
//! a hybrid source adds its phase (files, switching, live) and the times of
//! the switch: when the last file was read and when the first Kafka record
//! came.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::batch::NO_TIMESTAMP;

/// What a source is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourcePhase {
    /// Files (a file source, or a hybrid source's history).
    #[default]
    Files,
    /// Every file is read; the hybrid source is opening Kafka.
    Switching,
    /// Kafka, after the switch.
    Live,
}

impl SourcePhase {
    /// The phase as `/status` and the display name it.
    pub fn name(self) -> &'static str {
        match self {
            SourcePhase::Files => "files",
            SourcePhase::Switching => "switching",
            SourcePhase::Live => "live",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => SourcePhase::Switching,
            2 => SourcePhase::Live,
            _ => SourcePhase::Files,
        }
    }
}

/// A time not recorded yet, in the handle's `*_ns` fields.
const NOT_YET: u64 = u64::MAX;

/// How far a source has come; shared between its thread (writes) and the
/// runtime (reads).
#[derive(Debug)]
pub struct SourceProgress {
    /// [`SourcePhase`] as a number.
    phase: AtomicU8,
    /// Files listed (the folder or prefix at its last listing).
    files_total: AtomicU64,
    /// Files read to the end, restored ones included.
    files_done: AtomicU64,
    /// Bytes of the files listed.
    bytes_total: AtomicU64,
    /// Bytes read, including what a restored checkpoint had read.
    bytes_done: AtomicU64,
    /// Largest event time read ([`NO_TIMESTAMP`]: none yet).
    event_time: AtomicI64,
    /// Whether the files end (read once; `follow` never ends).
    bounded: AtomicBool,
    /// When the handle was made: the base of the `*_ns` times.
    created: Instant,
    /// The same as wall time (ms since the epoch).
    created_ms: i64,
    /// When the last file was read (hybrid), ns after `created`.
    files_ended_ns: AtomicU64,
    /// When the first Kafka record came after the switch, ns after
    /// `created`.
    first_live_ns: AtomicU64,
}

/// The switch of a hybrid source from its files to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SwitchFigures {
    /// When the last file was read, ms since the epoch.
    pub files_ended_ms: i64,
    /// From then to the first Kafka record read, ms (`None`: none yet).
    pub pause_ms: Option<f64>,
}

/// A copy of a [`SourceProgress`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SourceFigures {
    /// What the source is reading.
    pub phase: SourcePhase,
    /// Files listed.
    pub files_total: u64,
    /// Files read to the end.
    pub files_done: u64,
    /// Bytes of the files listed.
    pub bytes_total: u64,
    /// Bytes read.
    pub bytes_done: u64,
    /// Largest event time read, ms (`None`: none yet).
    pub event_time: Option<i64>,
    /// Whether the files end (an estimate of the time left makes sense).
    pub bounded: bool,
    /// The switch to Kafka, once the files are read (hybrid).
    pub switch: Option<SwitchFigures>,
}

impl Default for SourceProgress {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(0),
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            event_time: AtomicI64::new(NO_TIMESTAMP),
            bounded: AtomicBool::new(true),
            created: Instant::now(),
            created_ms: crate::clock::now_ms(),
            files_ended_ns: AtomicU64::new(NOT_YET),
            first_live_ns: AtomicU64::new(NOT_YET),
        }
    }
}

impl SourceProgress {
    /// A handle for files that end (`bounded`) or are followed.
    pub(crate) fn new(bounded: bool) -> Self {
        let p = Self::default();
        p.bounded.store(bounded, Ordering::Relaxed);
        p
    }

    /// The listing holds `files` files of `bytes` bytes in all.
    pub(crate) fn listed(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    /// A restored run starts with `files` files and `bytes` bytes read.
    pub(crate) fn resumed(&self, files: u64, bytes: u64) {
        self.files_done.store(files, Ordering::Relaxed);
        self.bytes_done.store(bytes, Ordering::Relaxed);
    }

    /// `n` more bytes read (once per chunk).
    pub(crate) fn read(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` files are read to the end now.
    pub(crate) fn files_done(&self, n: u64) {
        self.files_done.store(n, Ordering::Relaxed);
    }

    /// A record with event time `ts` was read: the only writer is the
    /// source's thread, so a plain load and a store only when it grows.
    #[inline]
    pub(crate) fn saw_time(&self, ts: i64) {
        if ts > self.event_time.load(Ordering::Relaxed) {
            self.event_time.store(ts, Ordering::Relaxed);
        }
    }

    /// Every file is read: the hybrid source opens Kafka.
    pub(crate) fn switching(&self) {
        self.files_ended_ns
            .store(self.since_created(), Ordering::Relaxed);
        self.phase.store(1, Ordering::Relaxed);
    }

    /// Kafka is open (also a hybrid source restored after its switch).
    pub(crate) fn live(&self) {
        self.phase.store(2, Ordering::Relaxed);
    }

    /// Whether the first Kafka record after the switch is still to come
    /// (a load; the caller then calls [`Self::first_live_record`]).
    #[inline]
    pub(crate) fn awaits_live_record(&self) -> bool {
        self.first_live_ns.load(Ordering::Relaxed) == NOT_YET
    }

    /// The first Kafka record after the switch was read now.
    pub(crate) fn first_live_record(&self) {
        let _ = self.first_live_ns.compare_exchange(
            NOT_YET,
            self.since_created(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Ns since the handle was made.
    fn since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(NOT_YET - 1)
    }

    /// The figures now.
    pub fn figures(&self) -> SourceFigures {
        let ended = self.files_ended_ns.load(Ordering::Relaxed);
        let first = self.first_live_ns.load(Ordering::Relaxed);
        let switch = (ended != NOT_YET).then(|| SwitchFigures {
            files_ended_ms: self.created_ms + (ended / 1_000_000) as i64,
            pause_ms: (first != NOT_YET).then(|| first.saturating_sub(ended) as f64 / 1e6),
        });
        let t = self.event_time.load(Ordering::Relaxed);
        SourceFigures {
            phase: SourcePhase::from_u8(self.phase.load(Ordering::Relaxed)),
            files_total: self.files_total.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            event_time: (t != NO_TIMESTAMP).then_some(t),
            bounded: self.bounded.load(Ordering::Relaxed),
            switch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_follow_the_phases_and_the_switch() {
        let p = SourceProgress::new(true);
        p.listed(3, 300);
        p.resumed(1, 100);
        p.read(50);
        p.saw_time(20);
        p.saw_time(10);
        let f = p.figures();
        assert_eq!(f.phase, SourcePhase::Files);
        assert_eq!((f.files_done, f.files_total), (1, 3));
        assert_eq!((f.bytes_done, f.bytes_total), (150, 300));
        assert_eq!(f.event_time, Some(20));
        assert!(f.switch.is_none());
        p.files_done(3);
        p.switching();
        let f = p.figures();
        assert_eq!(f.phase, SourcePhase::Switching);
        assert_eq!(f.switch.unwrap().pause_ms, None);
        p.live();
        assert!(p.awaits_live_record());
        std::thread::sleep(std::time::Duration::from_millis(2));
        p.first_live_record();
        assert!(!p.awaits_live_record());
        let f = p.figures();
        assert_eq!(f.phase, SourcePhase::Live);
        let pause = f.switch.unwrap().pause_ms.unwrap();
        assert!(pause >= 2.0, "{pause}");
        // Only the first live record counts.
        std::thread::sleep(std::time::Duration::from_millis(2));
        p.first_live_record();
        assert_eq!(p.figures().switch.unwrap().pause_ms, Some(pause));
    }
}
