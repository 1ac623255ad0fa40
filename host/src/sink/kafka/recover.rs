//! Settling the output a restored checkpoint covers: each partition's
//! marker read, the epochs past it produced, before the run goes on.
//!
//! A checkpoint's sink state says where its epochs were meant to go (the
//! brokers, topic and progress topic) and in which history (the lineage).
//! When the job's `[sink]` still says the same, the partitions' producers
//! are kept for the run. When it changed (another topic, or at least
//! once), the epochs are still produced where they were meant to go, with
//! that topic's transactional ids and markers, and the new sink starts
//! after the checkpoint: nothing the old topic was promised is dropped.

use std::collections::BTreeMap;

use rdkafka::producer::BaseProducer;
use serde_json::Value;

use super::epochs;
use super::progress::{Marker, marker_key};
use super::spill::{self, EpochBuf, Spilled};
use super::transaction::{IDS_VERSION, Target, legacy_transactional_id, produce_epoch};
use super::{KafkaSinkFactory, KafkaSinkSpec, transactional_id};
use crate::kafka::Context;
use crate::sink::RestoredSink;
use crate::sink::dead_letter::DeadLetters;
use crate::{Error, Result};

/// Where a checkpoint's epochs were meant to go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Destination {
    brokers: String,
    topic: String,
    progress_topic: String,
}

/// What a partition has left to produce.
struct Plan {
    partition: usize,
    /// Each epoch with records left: its id, records, and how many of
    /// them were produced already.
    redo: Vec<(u64, EpochBuf, u64)>,
    /// Spilled segments of epochs produced whole (deleted once settled).
    produced: Vec<Spilled>,
}

impl KafkaSinkFactory {
    /// Settle every restored partition's epochs (see the module), and take
    /// the run's lineage from the checkpoint (a new one without one).
    pub(super) fn settle_restored(
        &self,
        restored: &[Option<RestoredSink>],
        dead_letters: &DeadLetters,
    ) -> Result<()> {
        // Exactly-once states list their epochs; at least once keeps none.
        let states: Vec<(usize, &RestoredSink)> = restored
            .iter()
            .enumerate()
            .filter_map(|(p, s)| Some((p, s.as_ref()?)))
            .filter(|(_, s)| s.state.get("epochs").is_some())
            .collect();
        let lineage = match states.first() {
            // A checkpoint from before lineages: its markers have none.
            Some((_, s)) => s
                .state
                .get("lineage")
                .and_then(Value::as_str)
                .map(String::from),
            None => Some(super::new_lineage()),
        };
        let _ = self.lineage.set(lineage.clone());
        let mut by_destination: BTreeMap<Destination, Vec<(usize, &RestoredSink)>> =
            BTreeMap::new();
        for (p, s) in states {
            by_destination
                .entry(self.destination(&s.state))
                .or_default()
                .push((p, s));
        }
        // Every check first: a refusal comes before anything is written.
        let mut work = Vec::new();
        for (dest, states) in by_destination {
            let current = self.exactly_once && dest == self.current();
            let spec = KafkaSinkSpec {
                brokers: dest.brokers.clone(),
                topic: dest.topic.clone(),
                progress_topic: dest.progress_topic.clone(),
                ..self.spec.clone()
            };
            let producers = self.producers_for(&spec, &states, current)?;
            let plans = self.plans(&spec, &states, lineage.as_deref(), current)?;
            work.push((spec, producers, plans, current));
        }
        for (spec, producers, plans, current) in work {
            for plan in plans {
                let p = plan.partition;
                spill::forget(self.spill.as_deref(), &plan.produced);
                if !plan.redo.is_empty() {
                    let producer = producers
                        .get(&p)
                        .ok_or_else(|| Error::Internal(format!("no producer for partition {p}")))?;
                    self.redo(&spec, producer, (lineage.as_deref(), dead_letters), &plan)?;
                }
            }
            if current {
                crate::lock(&self.producers, "kafka producers")?.extend(producers);
            }
        }
        Ok(())
    }

    /// Produce what `plan` has left, with its markers.
    fn redo(
        &self,
        spec: &KafkaSinkSpec,
        producer: &BaseProducer<Context>,
        (lineage, dead_letters): (Option<&str>, &DeadLetters),
        plan: &Plan,
    ) -> Result<()> {
        let key = marker_key(&self.job, lineage, plan.partition);
        let target = Target {
            producer,
            spec,
            marker_key: &key,
            partition: plan.partition,
            dead_letters,
            spill: self.spill.as_deref(),
        };
        for (id, epoch, from) in &plan.redo {
            produce_epoch(&target, *id, &epoch.segments(), *from)?;
            spill::forget(target.spill, &epoch.spilled);
        }
        tracing::info!(
            partition = plan.partition,
            topic = %spec.topic,
            epochs = plan.redo.len(),
            "produced the output the restored checkpoint covers"
        );
        Ok(())
    }

    /// The job's sink now.
    fn current(&self) -> Destination {
        Destination {
            brokers: self.spec.brokers.clone(),
            topic: self.spec.topic.clone(),
            progress_topic: self.spec.progress_topic.clone(),
        }
    }

    /// Where a sink state's epochs were meant to go; states from before
    /// the brokers and progress topic were recorded name only the topic
    /// (the job's brokers, and the default progress topic unless the topic
    /// is still the job's).
    fn destination(&self, state: &Value) -> Destination {
        let text = |k: &str| state.get(k).and_then(Value::as_str).map(String::from);
        let topic = text("topic").unwrap_or_else(|| self.spec.topic.clone());
        let progress_topic = text("progress_topic").unwrap_or_else(|| {
            if topic == self.spec.topic {
                self.spec.progress_topic.clone()
            } else {
                format!("{topic}.weir-progress")
            }
        });
        Destination {
            brokers: text("brokers").unwrap_or_else(|| self.spec.brokers.clone()),
            topic,
            progress_topic,
        }
    }

    /// A transactional producer per partition for `spec`'s topic, each
    /// started: `init_transactions` aborts the transaction a crashed run
    /// left open, which until then holds back what `read_committed` reads
    /// of the progress topic (hiding markers committed after it). Legacy
    /// ids a checkpoint still used are fenced once first.
    fn producers_for(
        &self,
        spec: &KafkaSinkSpec,
        states: &[(usize, &RestoredSink)],
        current: bool,
    ) -> Result<std::collections::HashMap<usize, BaseProducer<Context>>> {
        let mut producers = std::collections::HashMap::new();
        for &(p, s) in states {
            if s.state.get("ids").and_then(Value::as_u64) < Some(IDS_VERSION) {
                let legacy = legacy_transactional_id(&self.job, &spec.topic, p);
                drop(self.create_producer_for(spec, p, Some(&legacy))?);
                tracing::info!(partition = p, id = %legacy, "fenced the legacy transactional id");
            }
            let producer = match current {
                true => self.producer(p)?,
                false => {
                    let id = transactional_id(&self.job, &spec.topic, p);
                    self.create_producer_for(spec, p, Some(&id))?
                }
            };
            producers.insert(p, producer);
        }
        Ok(producers)
    }

    /// Each partition's epochs past its marker; a marker past the
    /// checkpoint in the job's own topic refuses the run.
    fn plans(
        &self,
        spec: &KafkaSinkSpec,
        states: &[(usize, &RestoredSink)],
        lineage: Option<&str>,
        current: bool,
    ) -> Result<Vec<Plan>> {
        let markers = self.markers(spec)?;
        let mut plans = Vec::new();
        for &(p, s) in states {
            let marker = markers.get(&marker_key(&self.job, lineage, p));
            if let Some(m) = marker.filter(|m| current && m.id > s.checkpoint) {
                return Err(Error::Savepoint {
                    location: format!("kafka topic {}", spec.topic),
                    detail: format!(
                        "partition {p} already committed the output of checkpoint {} to the \
                         topic, after this one ({}): restoring it would write that output \
                         twice. Restore the newest checkpoint (`latest`), or send this run to \
                         another topic ([sink] topic)",
                        m.id, s.checkpoint
                    ),
                });
            }
            let epochs = epochs::decode(s.blob.as_deref().unwrap_or_default())?;
            epochs::verify(&spec.topic, p, s.checkpoint, &s.state, &epochs)?;
            let mut plan = Plan {
                partition: p,
                redo: Vec::new(),
                produced: Vec::new(),
            };
            for (id, memory) in epochs {
                let epoch = EpochBuf {
                    spilled: spill::from_json(&s.state, id)?,
                    memory,
                };
                match Marker::produced(marker, id).unwrap_or(0) {
                    n if n >= epoch.records() => plan.produced.extend(epoch.spilled),
                    n => plan.redo.push((id, epoch, n)),
                }
            }
            plans.push(plan);
        }
        Ok(plans)
    }
}
