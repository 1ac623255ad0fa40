//! The Kafka sink's epochs in a checkpoint: the blob that holds the
//! records of every epoch not yet produced, and the check on restore that
//! it holds the epochs the sink state lists.
//!
//! Blob layout ([`crate::codec`]): per segment of an epoch its epoch id
//! (`u64`), record count (`u32`), then per record its key and its value
//! (length-prefixed bytes); an epoch's segments follow each other (an
//! empty epoch is one empty segment). Blobs from before segments hold one
//! segment per epoch and read the same.

use serde_json::Value;

use crate::batch::{Batch, NO_TIMESTAMP};
use crate::codec::{self, Reader};
use crate::{Error, Result};

/// An epoch: its id (the checkpoint that covers it) and its records in
/// segments (each at most the sink's transaction size, produced in a
/// transaction of its own).
pub(super) type Epoch = (u64, Vec<Batch>);

/// Epochs (each id with its segments) as a blob.
pub(super) fn encode(epochs: &[(u64, &[Batch])]) -> Vec<u8> {
    let size: usize = epochs
        .iter()
        .flat_map(|(_, s)| s.iter())
        .map(|b| 12 + b.len() * 8 + b.byte_size())
        .sum();
    let mut out = Vec::with_capacity(size + epochs.len() * 12);
    let empty = [Batch::new()];
    for (id, segments) in epochs {
        let segments = if segments.is_empty() {
            &empty[..]
        } else {
            segments
        };
        for b in segments {
            codec::put_u64(&mut out, *id);
            codec::put_u32(&mut out, b.len() as u32);
            for r in b.iter() {
                codec::put_bytes(&mut out, r.key);
                codec::put_bytes(&mut out, r.value);
            }
        }
    }
    out
}

/// The epochs of a blob written by [`encode`].
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<Epoch>> {
    let truncated =
        |e: codec::Truncated| Error::Internal(format!("kafka sink blob in a checkpoint is {e}"));
    let mut r = Reader::new(bytes);
    let mut epochs: Vec<Epoch> = Vec::new();
    while !r.is_empty() {
        let id = r.u64().map_err(truncated)?;
        let count = r.u32().map_err(truncated)?;
        let mut b = Batch::new();
        for _ in 0..count {
            let key = r.bytes().map_err(truncated)?;
            let value = r.bytes().map_err(truncated)?;
            b.push(key, value, NO_TIMESTAMP);
        }
        match epochs.last_mut() {
            Some((last, segments)) if *last == id => segments.push(b),
            _ => epochs.push((id, vec![b])),
        }
    }
    for (_, segments) in &mut epochs {
        segments.retain(|b| !b.is_empty());
    }
    Ok(epochs)
}

/// Refuse a restore whose blob does not hold the epochs the partition's
/// sink state lists (`"epochs"`, written with it at the same barrier):
/// the blob and the state would describe different output.
pub(super) fn verify(
    topic: &str,
    partition: usize,
    checkpoint: u64,
    state: &Value,
    epochs: &[Epoch],
) -> Result<()> {
    let listed: Option<Vec<u64>> = state
        .get("epochs")
        .and_then(Value::as_array)
        .and_then(|ids| ids.iter().map(Value::as_u64).collect());
    let held: Vec<u64> = epochs.iter().map(|(id, _)| *id).collect();
    if listed.as_ref() == Some(&held) {
        return Ok(());
    }
    let listed = listed.map_or_else(|| "no epochs".into(), |l| format!("epochs {l:?}"));
    Err(Error::Savepoint {
        location: format!("kafka topic {topic}"),
        detail: format!(
            "partition {partition}: the sink state of checkpoint {checkpoint} lists {listed}, \
             but its blob holds epochs {held:?}: the checkpoint is damaged"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn epochs_round_trip_and_refuse_truncation() {
        let mut a = Batch::new();
        a.push(b"k1", b"v1", 0);
        a.push(b"", b"value two", 0);
        let mut b = Batch::new();
        b.push(b"k3", b"v3", 0);
        let epochs = [(3u64, vec![a, b]), (4u64, Vec::new())];
        let views: Vec<(u64, &[Batch])> = epochs.iter().map(|(i, s)| (*i, &s[..])).collect();
        let bytes = encode(&views);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, 3);
        let recs: Vec<_> = back[0]
            .1
            .iter()
            .flat_map(|s| s.iter())
            .map(|r| (r.key, r.value))
            .collect();
        assert_eq!(
            recs,
            vec![
                (&b"k1"[..], &b"v1"[..]),
                (&b""[..], &b"value two"[..]),
                (&b"k3"[..], &b"v3"[..])
            ]
        );
        assert_eq!(back[0].1.len(), 2, "segments are kept apart");
        assert_eq!((back[1].0, back[1].1.len()), (4, 0));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_blob_must_hold_the_epochs_the_state_lists() {
        let epochs = vec![(3u64, Vec::new()), (4u64, Vec::new())];
        let state = json!({ "topic": "out", "epochs": [3, 4] });
        verify("out", 1, 4, &state, &epochs).unwrap();
        for state in [
            json!({ "topic": "out", "epochs": [4] }),
            json!({ "topic": "out" }),
        ] {
            let err = verify("out", 1, 4, &state, &epochs).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("partition 1") && msg.contains("checkpoint 4"),
                "{msg}"
            );
        }
    }
}
