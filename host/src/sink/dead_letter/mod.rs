//! The dead-letter output: records a source could not parse, records an
//! operator refused and records the sink could not write, each as one JSON
//! line with the reason, where it came from and the record itself
//! (`value`, lossy UTF-8, plus `value_base64` when the bytes are not
//! UTF-8, so nothing is lost); or, to a Kafka topic, as the record itself
//! with the rest in headers ([`topic`]). Every checkpoint flushes them
//! first, so a checkpoint never covers a dead letter that is not written.

mod topic;

pub use topic::TopicSpec;

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::batch::{Origin, Origins};
use crate::{Error, Result, lock};

/// Where a dead letter came from.
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// The source could not parse the record.
    Source,
    /// An operator rejected the record.
    Operator {
        /// Operator name.
        operator: &'a str,
        /// The partition whose instance refused it.
        partition: usize,
    },
    /// The sink could not write the record (e.g. the broker refused it).
    Sink {
        /// The partition whose output it was.
        partition: usize,
    },
}

/// One dead letter.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Who refused it.
    pub stage: Stage<'a>,
    /// Why.
    pub reason: &'a str,
    /// Where the source read it, if known (described by the source's
    /// [`Origins`]: file and line, topic partition and offset).
    pub origin: Option<Origin>,
    /// The record key, if any.
    pub key: Option<&'a [u8]>,
    /// The record (for file sources: the whole line).
    pub value: &'a [u8],
}

/// Where dead letters go: a resolved `[dead_letter]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterSpec {
    /// A JSON-lines file, appended to.
    File(PathBuf),
    /// A Kafka topic.
    Topic(TopicSpec),
}

/// Where the writer sends them.
enum Out {
    /// JSON lines to a file or standard error.
    Lines(Mutex<Box<dyn Write + Send>>),
    /// Records to a Kafka topic.
    Topic(topic::TopicOutput),
}

/// The shared dead-letter writer.
pub struct DeadLetters {
    /// Where they go, for messages.
    path: Option<PathBuf>,
    /// The output.
    out: Out,
    origins: Arc<dyn Origins>,
    count: AtomicU64,
    /// Written per stage: source, operator, sink.
    by_stage: [AtomicU64; 3],
    /// The last [`RECENT`] written (values cut to [`RECENT_VALUE`] bytes),
    /// oldest first, for the status page.
    recent: Mutex<VecDeque<Value>>,
}

/// Dead letters kept for [`DeadLetters::recent`].
const RECENT: usize = 10;

/// Longest value kept for [`DeadLetters::recent`], bytes.
const RECENT_VALUE: usize = 200;

/// The stages [`DeadLetters::by_stage`] counts, in its order.
pub const STAGES: [&str; 3] = ["source", "operator", "sink"];

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("path", &self.path)
            .finish()
    }
}

impl DeadLetters {
    /// Open `spec`'s output (`None`: standard error) for job `job`;
    /// `origins` describes where records came from.
    pub fn open(
        spec: Option<&DeadLetterSpec>,
        job: &str,
        origins: Arc<dyn Origins>,
    ) -> Result<Self> {
        let (path, out) = match spec {
            Some(DeadLetterSpec::File(p)) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(Error::io("creating dead-letter folder", dir))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(Error::io("opening dead-letter file", p))?;
                let w: Box<dyn Write + Send> = Box::new(std::io::BufWriter::new(f));
                (Some(p.clone()), Out::Lines(Mutex::new(w)))
            }
            Some(DeadLetterSpec::Topic(t)) => (
                Some(PathBuf::from(format!("kafka topic {}", t.topic))),
                Out::Topic(topic::TopicOutput::open(t, job)?),
            ),
            None => (None, Out::Lines(Mutex::new(Box::new(std::io::stderr())))),
        };
        Ok(Self {
            path,
            out,
            origins,
            count: AtomicU64::new(0),
            by_stage: Default::default(),
            recent: Mutex::default(),
        })
    }

    /// A dead-letter output to standard error for records without
    /// origins (unit tests of sinks).
    #[cfg(test)]
    pub fn to_stderr() -> Arc<Self> {
        struct NoOrigins;
        impl Origins for NoOrigins {
            fn describe(&self, _: Origin, _: &mut Map<String, Value>) {}
        }
        Arc::new(Self::open(None, "test", Arc::new(NoOrigins)).expect("stderr opens"))
    }

    /// Write one dead letter.
    pub fn write(&self, d: &DeadLetter<'_>) -> Result<()> {
        let mut m = Map::new();
        match d.stage {
            Stage::Source => {
                m.insert("stage".into(), json!("source"));
            }
            Stage::Operator {
                operator,
                partition,
            } => {
                m.insert("stage".into(), json!("operator"));
                m.insert("operator".into(), json!(operator));
                m.insert("partition".into(), json!(partition));
            }
            Stage::Sink { partition } => {
                m.insert("stage".into(), json!("sink"));
                m.insert("partition".into(), json!(partition));
            }
        }
        m.insert("reason".into(), json!(d.reason));
        if let Some(o) = d.origin {
            self.origins.describe(o, &mut m);
        }
        if let Some(k) = d.key {
            m.insert("key".into(), json!(String::from_utf8_lossy(k)));
        }
        m.insert("value".into(), json!(String::from_utf8_lossy(d.value)));
        if std::str::from_utf8(d.value).is_err() {
            m.insert("value_base64".into(), json!(base64(d.value)));
        }
        let mut line =
            serde_json::to_vec(&Value::Object(m)).map_err(|e| Error::Internal(e.to_string()))?;
        line.push(b'\n');
        match &self.out {
            Out::Lines(out) => {
                let mut out = lock(out, "dead-letter output")?;
                out.write_all(&line).map_err(self.io_err())?;
            }
            Out::Topic(t) => t.send(d.key, d.value, &self.headers(d))?,
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let stage = match d.stage {
            Stage::Source => 0,
            Stage::Operator { .. } => 1,
            Stage::Sink { .. } => 2,
        };
        self.by_stage[stage].fetch_add(1, Ordering::Relaxed);
        if let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(&line) {
            m.remove("value_base64");
            if let Some(Value::String(v)) = m.get_mut("value")
                && v.len() > RECENT_VALUE
            {
                let cut = (0..=RECENT_VALUE)
                    .rev()
                    .find(|&i| v.is_char_boundary(i))
                    .unwrap_or(0);
                v.truncate(cut);
            }
            m.insert("time_ms".into(), json!(crate::clock::now_ms()));
            let mut recent = crate::lock_or_recover(&self.recent);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(Value::Object(m));
        }
        Ok(())
    }

    /// The headers of a dead letter to a topic: where it came from and why.
    fn headers(&self, d: &DeadLetter<'_>) -> Vec<(String, String)> {
        let mut h = vec![("weir.reason".to_string(), d.reason.to_string())];
        let (stage, partition) = match d.stage {
            Stage::Source => ("source", None),
            Stage::Operator {
                operator,
                partition,
            } => {
                h.push(("weir.operator".into(), operator.to_string()));
                ("operator", Some(partition))
            }
            Stage::Sink { partition } => ("sink", Some(partition)),
        };
        h.push(("weir.stage".into(), stage.into()));
        if let Some(p) = partition {
            h.push(("weir.partition".into(), p.to_string()));
        }
        if let Some(o) = d.origin {
            let mut m = Map::new();
            self.origins.describe(o, &mut m);
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s,
                    v => v.to_string(),
                };
                h.push((format!("weir.source.{k}"), v));
            }
        }
        h
    }

    /// Make what was written durable where it goes: flushed to the file,
    /// or delivered to the topic (an undelivered one is an error).
    pub fn flush(&self) -> Result<()> {
        match &self.out {
            Out::Lines(out) => lock(out, "dead-letter output")?
                .flush()
                .map_err(self.io_err()),
            Out::Topic(t) => t.flush(),
        }
    }

    /// How many were written per stage, in [`STAGES`] order.
    pub fn by_stage(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.by_stage[i].load(Ordering::Relaxed))
    }

    /// The last few written, oldest first (values cut short, with the
    /// time they were written as `time_ms`).
    pub fn recent(&self) -> Vec<Value> {
        crate::lock_or_recover(&self.recent)
            .iter()
            .cloned()
            .collect()
    }

    /// How many were written.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn io_err(&self) -> impl FnOnce(std::io::Error) -> Error {
        Error::io(
            "writing dead letters to",
            self.path.clone().unwrap_or_else(|| "stderr".into()),
        )
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn writes_json_lines_with_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl/dead.jsonl");
        struct Lines;
        impl Origins for Lines {
            fn describe(&self, o: Origin, out: &mut Map<String, Value>) {
                out.insert("line".into(), json!(o.offset));
            }
        }
        let spec = DeadLetterSpec::File(path.clone());
        let dl = DeadLetters::open(Some(&spec), "test", Arc::new(Lines)).unwrap();
        dl.write(&DeadLetter {
            stage: Stage::Source,
            reason: "not UTF-8",
            origin: Some(Origin { unit: 0, offset: 3 }),
            key: None,
            value: b"\xff1,a",
        })
        .unwrap();
        dl.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["line"], 3);
        assert_eq!(v["reason"], "not UTF-8");
        assert_eq!(v["value_base64"], "/zEsYQ==");
        assert_eq!(dl.count(), 1);
    }
}
