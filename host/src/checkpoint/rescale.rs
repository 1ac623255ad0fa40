//! Rescaling a restore point: a file job started from a checkpoint or
//! savepoint with another number of partitions gets each key's state,
//! timers included, in the partition the routing now sends that key to
//! (`murmur2(key) % partitions`, as the router computes it).
//!
//! Per partition a checkpoint holds:
//! - each operator's state: split by key. The blob must be a keyed state
//!   envelope (`wit/STATE.md`) whose header (state version, shape,
//!   operator-wide bytes) is the same in every old partition; every new
//!   partition gets that header, so operator-wide state is copied to each,
//!   and the entries whose keys the routing now sends there. Keys are
//!   unique across old partitions (each key lived in the one partition it
//!   was routed to), so merged entries form a valid envelope;
//! - each operator's timers: split by key the same way;
//! - the watermark: every new partition gets the smallest old one (its
//!   keys come from any old partition);
//! - the source's position: one for all partitions (files), nothing to
//!   split; sources whose partitions are the input's (Kafka, hybrid) are
//!   refused;
//! - the sink's state: the sink decides (`SinkFactory::rescale`).
//!
//! A plugin says its state cannot be split by not writing an envelope (an
//! opaque snapshot), or by operator-wide bytes that differ between
//! partitions (state that belongs to the partition, not to a key); the
//! host also refuses state under a key the routing would not have sent to
//! its partition (an operator after one that changes keys, or a source
//! without a key). Every refusal says why and names the operator; nothing
//! is touched before it.

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_envelope::Envelope;

use super::restore::{Restored, RestoredOperator, RestoredPartition};
use crate::Result;
use crate::batch::Timer;
use crate::partition::partition_for_key;
use crate::sink::SinkFactory;

/// The partition the router sends `key` to among `partitions`.
fn route(key: &[u8], partitions: usize) -> usize {
    if partitions > 1 {
        partition_for_key(key, partitions as u32) as usize
    } else {
        0
    }
}

/// `r` (a restore point of a file job) onto `partitions` partitions.
/// `keyed`: `None` when the job does not read files (its partitions are
/// a topic's), else whether its source gives records a key (else they are
/// spread round-robin, and state cannot be split by key). `sinks` moves
/// the sink's state. Refused with a message naming the reason and what to
/// do.
pub(crate) fn rescale(
    r: Restored,
    partitions: usize,
    keyed: Option<bool>,
    sinks: &dyn SinkFactory,
) -> Result<Restored> {
    let from = r.partitions.len();
    let refuse = |detail: String| {
        r.error(format!(
            "it holds {from} partitions and this job has {partitions}: {detail}"
        ))
    };
    let connector = r.manifest.source.connector.as_str();
    let Some(keyed) = keyed.filter(|_| connector == "files") else {
        return Err(refuse(format!(
            "it was taken from a `{connector}` source, and a job that reads a Kafka topic (or \
             a hybrid job) has the topic's partitions, which cannot change (a restore moves \
             them between threads only): restore it into a topic with {from} partitions, \
             with any parallelism"
        )));
    };
    if from == 0 || partitions == 0 {
        return Err(refuse("no partitions to move".into()));
    }
    let sink_states: Vec<_> = r.partitions.iter().map(|p| p.sink.clone()).collect();
    let sinks = sinks.rescale(&sink_states, partitions).map_err(&refuse)?;
    let operators = split_operators(&r.partitions, partitions, keyed).map_err(&refuse)?;
    let watermark = r
        .partitions
        .iter()
        .map(|p| p.watermark)
        .min()
        .unwrap_or(i64::MIN);
    let new = operators
        .into_iter()
        .zip(sinks)
        .map(|(operators, sink)| RestoredPartition {
            watermark,
            source: serde_json::Value::Null,
            sink,
            operators,
        })
        .collect();
    Ok(Restored {
        partitions: new,
        ..r
    })
}

/// Every operator's state and timers, split: per new partition, its
/// operators in chain order.
fn split_operators(
    old: &[RestoredPartition],
    partitions: usize,
    keyed: bool,
) -> std::result::Result<Vec<Vec<RestoredOperator>>, String> {
    let chain = old[0].operators.len();
    if let Some((p, _)) = old
        .iter()
        .enumerate()
        .find(|(_, p)| p.operators.len() != chain)
    {
        return Err(format!(
            "partition {p} holds another number of operators than partition 0 (damaged)"
        ));
    }
    let mut out: Vec<Vec<RestoredOperator>> = (0..partitions).map(|_| Vec::new()).collect();
    for i in 0..chain {
        let ops: Vec<&RestoredOperator> = old.iter().map(|p| &p.operators[i]).collect();
        for (p, op) in split_operator(&ops, partitions, keyed)?
            .into_iter()
            .enumerate()
        {
            out[p].push(op);
        }
    }
    Ok(out)
}

/// One operator, as every old partition holds it (`old[p]`), split onto
/// `partitions` partitions.
pub(crate) fn split_operator(
    old: &[&RestoredOperator],
    partitions: usize,
    keyed: bool,
) -> std::result::Result<Vec<RestoredOperator>, String> {
    let first = old[0];
    let name = &first.name;
    if let Some(p) = old
        .iter()
        .position(|o| o.digest != first.digest || o.state_version != first.state_version)
    {
        return Err(format!(
            "operator `{name}`: partition {p} holds state of another plugin version than \
             partition 0 (a swap was on probation when it was taken?), and states of two \
             versions cannot be merged: restore it with its {} partitions, take a new \
             savepoint, and rescale that one",
            old.len()
        ));
    }
    let states = split_states(old, partitions, keyed)?;
    let timers = split_timers(old, partitions, keyed)?;
    Ok(states
        .into_iter()
        .zip(timers)
        .map(|(state, timers)| RestoredOperator {
            name: name.clone(),
            digest: first.digest.clone(),
            state_version: first.state_version,
            state,
            timers,
        })
        .collect())
}

/// Why state under `key` in old partition `p` cannot be split, if it
/// cannot.
fn misplaced(
    what: &str,
    name: &str,
    key: &[u8],
    p: usize,
    from: usize,
    keyed: bool,
) -> Option<String> {
    if !keyed {
        return Some(format!(
            "operator `{name}` holds {what} and the source has no key (records are spread \
             round-robin), so it cannot be split by key: restore it with its {from} partitions \
             (set `partitions = {from}`; any parallelism)"
        ));
    }
    let q = route(key, from);
    (q != p).then(|| {
        format!(
            "operator `{name}` holds {what} for key {} in partition {p}, but the routing sends \
             that key to partition {q}: its keys are not the record keys the host routes by \
             (an operator after one that changes keys?), so it cannot be split by key: \
             restore it with its {from} partitions (set `partitions = {from}`; any parallelism)",
            show_key(key)
        )
    })
}

/// A key for a message: UTF-8 text quoted, else hex; long keys cut.
fn show_key(key: &[u8]) -> String {
    let cut = &key[..key.len().min(48)];
    let more = if cut.len() < key.len() { "..." } else { "" };
    match std::str::from_utf8(cut) {
        Ok(s) => format!("{s:?}{more}"),
        Err(_) => format!("0x{}{more}", crate::digest::hex(cut)),
    }
}

/// The state blobs split by key. Empty blobs everywhere (no state) stay
/// empty; otherwise each must be an envelope with the same header.
fn split_states(
    old: &[&RestoredOperator],
    partitions: usize,
    keyed: bool,
) -> std::result::Result<Vec<Bytes>, String> {
    let name = &old[0].name;
    let from = old.len();
    if old.iter().all(|o| o.state.is_empty()) {
        return Ok(vec![Bytes::new(); partitions]);
    }
    let envelopes = old
        .iter()
        .enumerate()
        .map(|(p, o)| {
            Envelope::parse(&o.state).map_err(|e| {
                format!(
                    "operator `{name}`: its state in partition {p} is not a keyed state \
                     envelope ({e}): the plugin writes a state the host cannot read by key, so \
                     it cannot be split: restore it with its {from} partitions (set \
                     `partitions = {from}`; any parallelism)"
                )
            })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let header = envelopes[0].header();
    if let Some(p) = envelopes.iter().position(|e| e.header() != header) {
        let e = &envelopes[p];
        let what = if e.operator != envelopes[0].operator {
            "operator-wide state (not tied to a key) than partition 0: it belongs to each \
             partition, so it can be neither split nor copied"
        } else {
            "state header (state version or shape) than partition 0"
        };
        return Err(format!(
            "operator `{name}`: partition {p} holds another {what}: restore it with its {from} \
             partitions (set `partitions = {from}`; any parallelism)"
        ));
    }
    let mut split: Vec<BTreeMap<&[u8], &[u8]>> = (0..partitions).map(|_| BTreeMap::new()).collect();
    for (p, env) in envelopes.iter().enumerate() {
        for entry in env.entries() {
            let (key, value) = entry.map_err(|e| {
                format!("operator `{name}`: its state in partition {p} is damaged: {e}")
            })?;
            if let Some(why) = misplaced("state", name, key, p, from, keyed) {
                return Err(why);
            }
            if split[route(key, partitions)].insert(key, value).is_some() {
                return Err(format!(
                    "operator `{name}`: key {} has state in two partitions (damaged)",
                    show_key(key)
                ));
            }
        }
    }
    Ok(split
        .into_iter()
        .map(|entries| {
            let size: usize = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
            let mut blob = Vec::with_capacity(header.len() + 8 + size);
            blob.extend_from_slice(header);
            blob.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            for (key, value) in entries {
                weir_envelope::write_entry_with(&mut blob, key, |b| b.extend_from_slice(value));
            }
            Bytes::from(blob)
        })
        .collect())
}

/// The timers split by key.
fn split_timers(
    old: &[&RestoredOperator],
    partitions: usize,
    keyed: bool,
) -> std::result::Result<Vec<Vec<Timer>>, String> {
    let from = old.len();
    let mut split: Vec<Vec<Timer>> = (0..partitions).map(|_| Vec::new()).collect();
    for (p, o) in old.iter().enumerate() {
        for t in &o.timers {
            if let Some(why) = misplaced("a timer", &o.name, &t.key, p, from, keyed) {
                return Err(why);
            }
            split[route(&t.key, partitions)].push(t.clone());
        }
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_envelope::{Shape, Writer};

    const SHAPE: Shape<'static> = Shape {
        name: "counter",
        migrates_from: &[],
    };

    /// An operator of old partition `p` of `from` holding `keys` (value:
    /// the key reversed) and a timer per key, operator-wide bytes `wide`.
    fn op(keys: &[&[u8]], wide: &[u8]) -> RestoredOperator {
        let mut sorted = keys.to_vec();
        sorted.sort();
        let mut w = Writer::new(1, &SHAPE, wide, 0);
        for k in &sorted {
            let v: Vec<u8> = k.iter().rev().copied().collect();
            w.entry(k, &v);
        }
        RestoredOperator {
            name: "op".into(),
            digest: "d".into(),
            state_version: 1,
            state: Bytes::from(w.finish()),
            timers: keys
                .iter()
                .map(|k| Timer {
                    key: k.to_vec(),
                    time: k.len() as i64,
                })
                .collect(),
        }
    }

    /// `n` keys, grouped by the partition of `from` they route to.
    fn keys_by_partition(n: usize, from: usize) -> Vec<Vec<Vec<u8>>> {
        let mut out = vec![Vec::new(); from];
        for i in 0..n {
            let k = format!("key-{i}").into_bytes();
            out[route(&k, from)].push(k);
        }
        out
    }

    fn ops_of(keys: &[Vec<Vec<u8>>], wide: &[u8]) -> Vec<RestoredOperator> {
        keys.iter()
            .map(|ks| op(&ks.iter().map(Vec::as_slice).collect::<Vec<_>>(), wide))
            .collect()
    }

    fn entries(blob: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Envelope::parse(blob)
            .unwrap()
            .entries()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn every_key_lands_where_the_routing_sends_it_with_its_timers() {
        for (from, to) in [(4, 2), (4, 8), (3, 5), (1, 4), (4, 1)] {
            let keys = keys_by_partition(500, from);
            let old = ops_of(&keys, b"wide");
            let refs: Vec<&RestoredOperator> = old.iter().collect();
            let new = split_operator(&refs, to, true).unwrap();
            assert_eq!(new.len(), to);
            let mut seen = 0;
            for (q, o) in new.iter().enumerate() {
                let env = Envelope::parse(&o.state).unwrap();
                assert_eq!(env.operator, b"wide", "operator-wide bytes copied");
                assert_eq!(env.shape, Some("counter"));
                let es = entries(&o.state);
                assert_eq!(es.len() as u64, env.count);
                assert!(es.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
                for (k, v) in &es {
                    assert_eq!(route(k, to), q, "{from}->{to}");
                    assert_eq!(v, &k.iter().rev().copied().collect::<Vec<_>>());
                }
                assert_eq!(o.timers.len(), es.len());
                assert!(o.timers.iter().all(|t| route(&t.key, to) == q));
                seen += es.len();
            }
            assert_eq!(seen, 500, "{from}->{to}: no key lost or doubled");
        }
    }

    #[test]
    fn stateless_operators_stay_stateless() {
        let empty = RestoredOperator {
            name: "op".into(),
            digest: "d".into(),
            state_version: 1,
            state: Bytes::new(),
            timers: Vec::new(),
        };
        let new = split_operator(&[&empty, &empty], 3, false).unwrap();
        assert!(
            new.iter()
                .all(|o| o.state.is_empty() && o.timers.is_empty())
        );
        // An envelope without entries, keyless source: fine too.
        let none = op(&[], b"");
        let new = split_operator(&[&none, &none], 3, false).unwrap();
        assert!(new.iter().all(|o| entries(&o.state).is_empty()));
    }

    #[test]
    fn what_cannot_be_split_is_refused_naming_the_operator() {
        let keys = keys_by_partition(40, 2);
        let good = ops_of(&keys, b"");
        // Not an envelope.
        let mut opaque = good[1].clone();
        opaque.state = Bytes::from_static(b"opaque bytes");
        let err = split_operator(&[&good[0], &opaque], 4, true).unwrap_err();
        assert!(
            err.contains("operator `op`") && err.contains("not a keyed state envelope"),
            "{err}"
        );
        assert!(err.contains("partitions = 2"), "{err}");
        // Operator-wide state that differs.
        let other = ops_of(&keys, b"count=7");
        let err = split_operator(&[&good[0], &other[1]], 4, true).unwrap_err();
        assert!(err.contains("operator-wide state"), "{err}");
        // A key in a partition the routing does not send it to.
        let err = split_operator(&[&good[1], &good[0]], 4, true).unwrap_err();
        assert!(err.contains("the routing sends that key"), "{err}");
        // A source without a key.
        let err = split_operator(&[&good[0], &good[1]], 4, false).unwrap_err();
        assert!(err.contains("no key"), "{err}");
        // Two plugin versions.
        let mut newer = good[1].clone();
        newer.digest = "e".into();
        let err = split_operator(&[&good[0], &newer], 4, true).unwrap_err();
        assert!(err.contains("another plugin version"), "{err}");
    }

    fn restored(connector: &str, old: Vec<RestoredOperator>, watermarks: &[i64]) -> Restored {
        use super::super::manifest::{Kind, Manifest, SourcePosition};
        Restored {
            location: "here".into(),
            manifest: Manifest {
                format: 2,
                job: "job".into(),
                kind: Kind::Savepoint,
                id: 3,
                name: "sp".into(),
                wall_time_ms: 0,
                watermark: 0,
                max_event_time: 0,
                host_version: String::new(),
                wit_version: String::new(),
                parallelism: old.len(),
                source: SourcePosition {
                    connector: connector.into(),
                    position: serde_json::Value::Null,
                },
                partitions: Vec::new(),
            },
            partitions: old
                .into_iter()
                .zip(watermarks)
                .map(|(op, &watermark)| RestoredPartition {
                    watermark,
                    source: serde_json::Value::Null,
                    sink: None,
                    operators: vec![op],
                })
                .collect(),
        }
    }

    #[test]
    fn a_restore_point_gets_the_smallest_watermark_and_topics_are_refused() {
        let stdout = crate::sink::open(&crate::sink::SinkSpec::Stdout, "job", None).unwrap();
        let old = ops_of(&keys_by_partition(100, 2), b"");
        let r = restored("files", old.clone(), &[50, 20]);
        let new = rescale(r, 3, Some(true), stdout.as_ref()).unwrap();
        assert_eq!(new.partitions.len(), 3);
        assert!(new.partitions.iter().all(|p| p.watermark == 20));
        let keys: usize = new
            .partitions
            .iter()
            .map(|p| entries(&p.operators[0].state).len())
            .sum();
        assert_eq!(keys, 100);
        for (connector, keyed) in [("kafka", Some(true)), ("files", None)] {
            let r = restored(connector, old.clone(), &[0, 0]);
            let err = rescale(r, 3, keyed, stdout.as_ref())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("it holds 2 partitions and this job has 3")
                    && err.contains("topic's partitions"),
                "{err}"
            );
        }
    }

    #[test]
    fn keys_are_shown_readably() {
        assert_eq!(show_key(b"abc"), "\"abc\"");
        assert_eq!(show_key(&[0xff, 0]), "0xff00");
        assert!(show_key(&[b'a'; 100]).ends_with("..."));
    }
}
