//! An epoch's records within a memory budget. Exactly once, a partition
//! holds what it emitted until the checkpoint that covers it is durable and
//! its output produced. The records are kept in segments of at most
//! `transaction_bytes` (each produced in a transaction of its own); when
//! the partition's epochs in memory outgrow `epoch_memory_bytes`, the
//! sealed segments go to the job's state store (`jobs/<job>/sink-spill/<run>/
//! <partition>/<n>`, written once, never replaced) and only their names
//! stay. A checkpoint's sink state lists an epoch's spilled segments, its
//! blob holds the segments still in memory, so an epoch of any size costs
//! the budget in memory and each byte is uploaded about once, however
//! many checkpoints fail before one completes. A spilled segment is
//! deleted once its epoch was produced whole.

use std::sync::Arc;

use serde_json::{Value, json};

use super::epochs;
use crate::batch::{Batch, RecordRef};
use crate::sink::Spill;
use crate::{Error, Result};

/// A segment in the state store: its name and record count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spilled {
    /// The object's key in the state store.
    pub key: String,
    /// Its records.
    pub records: u64,
}

/// One epoch's records: the spilled segments, then those in memory (the
/// last one still open while the epoch is being written).
#[derive(Debug, Default)]
pub(super) struct EpochBuf {
    /// Spilled segments, oldest first (they precede every one in memory).
    pub spilled: Vec<Spilled>,
    /// Segments in memory, in order.
    pub memory: Vec<Batch>,
}

/// A segment to produce: in memory, or to be read from the store.
pub(super) enum Segment<'a> {
    /// Held in memory.
    Memory(&'a Batch),
    /// In the state store.
    Spilled(&'a Spilled),
}

impl Segment<'_> {
    /// Its record count.
    pub fn records(&self) -> u64 {
        match self {
            Segment::Memory(b) => b.len() as u64,
            Segment::Spilled(s) => s.records,
        }
    }
}

impl EpochBuf {
    /// Append a record, sealing the open segment first when the record
    /// would take it past `segment_bytes`. Returns whether one was sealed.
    pub fn push(&mut self, r: RecordRef<'_>, segment_bytes: usize) -> bool {
        let seal = self.memory.last().is_none_or(|s| {
            !s.is_empty() && s.byte_size() + r.key.len() + r.value.len() > segment_bytes
        });
        if seal {
            self.memory.push(Batch::new());
        }
        if let Some(s) = self.memory.last_mut() {
            s.push(r.key, r.value, r.timestamp);
        }
        seal && self.memory.len() > 1
    }

    /// Bytes of records held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.memory
            .iter()
            .map(|b| b.byte_size() + b.len() * 8)
            .sum()
    }

    /// Records, spilled and in memory.
    pub fn records(&self) -> u64 {
        self.segments().iter().map(Segment::records).sum()
    }

    /// The segments in order.
    pub fn segments(&self) -> Vec<Segment<'_>> {
        self.spilled
            .iter()
            .map(Segment::Spilled)
            .chain(self.memory.iter().map(Segment::Memory))
            .collect()
    }
}

/// Where a partition's segments spill.
pub(super) struct Spiller {
    /// The job's state store.
    pub store: Arc<dyn Spill>,
    /// `jobs/<job>/sink-spill/<run>/<partition>`.
    pub prefix: String,
    /// The next segment's number.
    pub next: u64,
}

impl Spiller {
    /// Spill `buf`'s segments in memory, all of them or (`keep_open`) all
    /// but the last.
    pub fn spill(&mut self, buf: &mut EpochBuf, keep_open: bool) -> Result<()> {
        let keep = usize::from(keep_open).min(buf.memory.len());
        let sealed: Vec<Batch> = buf.memory.drain(..buf.memory.len() - keep).collect();
        for b in sealed.into_iter().filter(|b| !b.is_empty()) {
            let key = format!("{}/{}", self.prefix, self.next);
            self.next += 1;
            let bytes = epochs::encode(&[(0, std::slice::from_ref(&b))]);
            self.store.put(&key, bytes.into())?;
            buf.spilled.push(Spilled {
                key,
                records: b.len() as u64,
            });
        }
        Ok(())
    }
}

/// Read a spilled segment back.
pub(super) fn load(store: &dyn Spill, s: &Spilled) -> Result<Batch> {
    let bytes = store.get(&s.key)?.ok_or_else(|| Error::Savepoint {
        location: s.key.clone(),
        detail: "a spilled segment of Kafka output the checkpoint lists is missing from the \
                 state store"
            .into(),
    })?;
    let b = epochs::decode(&bytes)?
        .into_iter()
        .flat_map(|(_, segments)| segments)
        .next()
        .unwrap_or_default();
    if b.len() as u64 != s.records {
        return Err(Error::Savepoint {
            location: s.key.clone(),
            detail: format!(
                "a spilled segment of Kafka output holds {} records, its checkpoint says {}",
                b.len(),
                s.records
            ),
        });
    }
    Ok(b)
}

/// Delete the spilled segments of an epoch produced whole (a failure only
/// leaves an object behind).
pub(super) fn forget(store: Option<&dyn Spill>, spilled: &[Spilled]) {
    for s in spilled {
        if let Some(Err(e)) = store.map(|st| st.delete(&s.key)) {
            tracing::warn!("deleting spilled output {}: {e}", s.key);
        }
    }
}

/// The sink state's record of spilled segments, by epoch id.
pub(super) fn to_json<'a>(epochs: impl Iterator<Item = (u64, &'a [Spilled])>) -> Value {
    let map: serde_json::Map<String, Value> = epochs
        .filter(|(_, s)| !s.is_empty())
        .map(|(id, s)| {
            let list: Vec<Value> = s.iter().map(|s| json!([s.key, s.records])).collect();
            (id.to_string(), Value::Array(list))
        })
        .collect();
    Value::Object(map)
}

/// Epoch `id`'s spilled segments as a sink state lists them.
pub(super) fn from_json(state: &Value, id: u64) -> Result<Vec<Spilled>> {
    let Some(list) = state.get("spilled").and_then(|m| m.get(id.to_string())) else {
        return Ok(Vec::new());
    };
    let bad = || {
        Error::Internal(format!(
            "kafka sink state: bad spilled segments of epoch {id}"
        ))
    };
    list.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|e| {
            Some(Spilled {
                key: e.get(0)?.as_str()?.to_string(),
                records: e.get(1)?.as_u64()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Objects in a map (the state store's part in this logic).
    #[derive(Default)]
    struct Objects(Mutex<HashMap<String, bytes::Bytes>>);

    impl Spill for Objects {
        fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<()> {
            self.0.lock().unwrap().insert(key.into(), bytes);
            Ok(())
        }
        fn get(&self, key: &str) -> Result<Option<bytes::Bytes>> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
    }

    fn record(i: usize) -> (Vec<u8>, Vec<u8>) {
        (format!("k{i}").into_bytes(), vec![b'v'; 100])
    }

    #[test]
    fn segments_seal_at_their_size_and_spill_in_order_keeping_the_open_one() {
        let store = Arc::new(Objects::default());
        let mut spiller = Spiller {
            store: store.clone(),
            prefix: "job/sink-spill/run/0".into(),
            next: 0,
        };
        let mut buf = EpochBuf::default();
        let mut sealed = 0;
        for i in 0..100 {
            let (k, v) = record(i);
            let r = RecordRef {
                key: &k,
                value: &v,
                timestamp: 0,
            };
            sealed += usize::from(buf.push(r, 1000));
        }
        // About 102 bytes a record: 9 to a 1000-byte segment.
        assert_eq!(buf.memory.len(), 12);
        assert_eq!(sealed, 11);
        assert_eq!(buf.records(), 100);
        spiller.spill(&mut buf, true).unwrap();
        assert_eq!((buf.spilled.len(), buf.memory.len()), (11, 1));
        assert_eq!(buf.records(), 100, "nothing lost by spilling");
        assert!(buf.memory_bytes() < 1100);
        // Read back in order: the records as they were pushed.
        let mut keys = Vec::new();
        for s in &buf.spilled {
            let b = load(&*store, s).unwrap();
            keys.extend(b.iter().map(|r| String::from_utf8(r.key.to_vec()).unwrap()));
        }
        keys.extend(
            buf.memory[0]
                .iter()
                .map(|r| String::from_utf8(r.key.to_vec()).unwrap()),
        );
        let want: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        assert_eq!(keys, want);
        // The state lists them; a missing or changed segment is refused.
        let state = json!({ "spilled": to_json([(7u64, buf.spilled.as_slice())].into_iter()) });
        assert_eq!(from_json(&state, 7).unwrap(), buf.spilled);
        assert!(from_json(&state, 8).unwrap().is_empty());
        forget(Some(&*store), &buf.spilled[..1]);
        let err = load(&*store, &buf.spilled[0]).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        let mut wrong = buf.spilled[1].clone();
        wrong.records += 1;
        assert!(load(&*store, &wrong).is_err());
    }
}
