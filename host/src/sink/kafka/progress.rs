//! The exactly-once progress markers: the topic they go to (created if
//! missing, its settings checked) and reading each partition's latest
//! marker on restore.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;

use super::{KafkaSinkFactory, KafkaSinkSpec};
use crate::kafka::{
    Client, Context, REQUEST_TIMEOUT, TRANSACTION_TIMEOUT_MS, client_config, external,
    partition_count,
};
use crate::{Error, Result};

/// How far a partition's output got: epoch `id`, whole or its first
/// `records` (a part produced in a transaction of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marker {
    /// The newest epoch (checkpoint id) with output in the topic.
    pub id: u64,
    /// Records of epoch `id` produced (`None`: all of them).
    pub records: Option<u64>,
}

impl Marker {
    /// Order: later epochs, then further into an epoch, then whole.
    fn rank(&self) -> (u64, u64) {
        (self.id, self.records.unwrap_or(u64::MAX))
    }

    /// The marker a value holds (`id` or `id:records`).
    fn parse(value: &[u8]) -> Option<Marker> {
        let text = std::str::from_utf8(value).ok()?;
        Some(match text.split_once(':') {
            Some((id, n)) => Marker {
                id: id.parse().ok()?,
                records: Some(n.parse().ok()?),
            },
            None => Marker {
                id: text.parse().ok()?,
                records: None,
            },
        })
    }

    /// Records of epoch `epoch` already in the topic (`None`: none).
    pub fn produced(marker: Option<&Marker>, epoch: u64) -> Option<u64> {
        let m = marker?;
        match (epoch.cmp(&m.id), m.records) {
            (std::cmp::Ordering::Less, _) | (std::cmp::Ordering::Equal, None) => Some(u64::MAX),
            (std::cmp::Ordering::Equal, Some(n)) => Some(n),
            (std::cmp::Ordering::Greater, _) => None,
        }
    }
}

/// The key of a partition's marker: `<job>/<lineage>/<partition>`, where
/// the lineage names the history of checkpoints the epoch ids belong to
/// (ids restart in a new or emptied store, so ids of two histories must
/// never be compared). Histories from before lineages used
/// `<job>/<partition>`.
pub(super) fn marker_key(job: &str, lineage: Option<&str>, partition: usize) -> String {
    match lineage {
        Some(l) => format!("{job}/{l}/{partition}"),
        None => format!("{job}/{partition}"),
    }
}

impl KafkaSinkFactory {
    /// The newest marker under each key of this job in `spec`'s progress
    /// topic.
    pub(super) fn markers(&self, spec: &KafkaSinkSpec) -> Result<HashMap<String, Marker>> {
        let group = format!("weir-{}-progress-reader", self.job);
        let consumer: BaseConsumer<Context> = client_config(
            &spec.brokers,
            &spec.properties,
            Client::MarkerReader { group: &group },
        )
        .create_with_context(Context::default())
        .map_err(external("creating a progress reader"))?;
        let topic = &spec.progress_topic;
        let (lo, hi) = self.stable_watermarks(spec, &consumer)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(lo))
            .map_err(external("assigning the progress topic"))?;
        consumer
            .assign(&tpl)
            .map_err(external("assigning the progress topic"))?;
        let prefix = format!("{}/", self.job);
        let mut markers = HashMap::new();
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        let mut position = lo;
        while position < hi {
            if std::time::Instant::now() > deadline {
                return Err(Error::External(format!(
                    "kafka: reading progress markers from {topic} timed out at offset {position} of {hi}"
                )));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    position = m.offset() + 1;
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    if let (true, Some(marker)) = (
                        key.starts_with(&prefix),
                        Marker::parse(m.payload().unwrap_or_default()),
                    ) {
                        let e = markers.entry(key).or_insert(marker);
                        if marker.rank() > e.rank() {
                            *e = marker;
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                // A broker restarting meanwhile: librdkafka reconnects.
                Some(Err(e)) => tracing::warn!("reading {topic}: {e}; going on"),
                None => {
                    if let Ok(pos) = consumer.position()
                        && let Some(Offset::Offset(o)) =
                            pos.find_partition(topic, 0).map(|e| e.offset())
                    {
                        position = position.max(o);
                    }
                }
            }
        }
        Ok(markers)
    }

    /// The progress topic's offsets once no open transaction holds back its
    /// end: `read_committed` reads only up to the last stable offset, and a
    /// marker behind another producer's open transaction (another job
    /// sharing the topic, a zombie) would be missed. Such a transaction ends
    /// within the transaction timeout, committed or aborted by the broker.
    fn stable_watermarks(
        &self,
        spec: &KafkaSinkSpec,
        committed: &BaseConsumer<Context>,
    ) -> Result<(i64, i64)> {
        let topic = &spec.progress_topic;
        let plain: BaseConsumer<Context> = client_config(
            &spec.brokers,
            &spec.properties,
            Client::Probe { committed: false },
        )
        .create_with_context(Context::default())
        .map_err(external("creating a progress reader"))?;
        let timeout = spec
            .properties
            .iter()
            .find(|(k, _)| k == "transaction.timeout.ms")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(TRANSACTION_TIMEOUT_MS.parse().unwrap_or(60_000));
        // The broker aborts a transaction past its timeout at its next cleanup
        // pass (`transaction.abort.timed.out.transaction.cleanup.interval.ms`,
        // every 10 s by default).
        let deadline = std::time::Instant::now() + Duration::from_millis(timeout + 15_000);
        let read = |c: &BaseConsumer<Context>| {
            c.fetch_watermarks(topic, 0, REQUEST_TIMEOUT)
                .map_err(external(format!("reading the offsets of {topic}")))
        };
        // The end now; the last stable offset only moves forward and
        // reaches it once the transactions open now have ended.
        // A broker that restarts meanwhile is waited for.
        let retry = |e: Error| {
            if std::time::Instant::now() > deadline {
                return Err(e);
            }
            tracing::warn!("{e}; trying again");
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        };
        let end = loop {
            match read(&plain) {
                Ok((_, end)) => break end,
                Err(e) => retry(e)?,
            }
        };
        loop {
            match read(committed) {
                Ok((lo, stable)) if stable >= end => return Ok((lo, stable)),
                Ok((_, stable)) if std::time::Instant::now() > deadline => {
                    return Err(Error::External(format!(
                        "kafka: an open transaction on {topic} (last stable offset {stable}, \
                         end {end}) did not end within the transaction timeout; another run of \
                         this job may be producing: stop it and retry. If none is, the broker \
                         holds a transaction it will not end: `kafka-transactions.sh \
                         describe-producers --topic {topic} --partition 0` lists each open one \
                         by its start offset (the first is {stable}); abort each with \
                         `kafka-transactions.sh abort --topic {topic} --partition 0 \
                         --start-offset N`, then retry"
                    )));
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => retry(e)?,
            }
        }
    }

    /// Create the progress topic if it is missing (one partition,
    /// compacted: only the newest marker per key matters), and check the
    /// settings of one that exists: markers are read from partition 0 and
    /// must be kept for as long as a checkpoint may be restored, so a
    /// topic with more partitions, or one whose records are deleted by
    /// retention (`cleanup.policy` `delete`, or `compact,delete`), is
    /// refused before anything is written.
    pub(super) fn ensure_progress_topic(&self) -> Result<()> {
        let topic = &self.spec.progress_topic;
        let admin: AdminClient<Context> =
            client_config(&self.spec.brokers, &self.spec.properties, Client::Admin)
                .create_with_context(Context::default())
                .map_err(external("creating an admin client"))?;
        let new =
            NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        // A topic just created may be missing from the metadata for a
        // moment, and one being deleted still answers "already exists":
        // create and look again until it is there.
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        let partitions = loop {
            let results = futures::executor::block_on(admin.create_topics([&new], &opts))
                .map_err(external("creating the progress topic"))?;
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, e)) => {
                        return Err(Error::External(format!(
                            "kafka: creating progress topic {t}: {e}"
                        )));
                    }
                }
            }
            match partition_count(admin.inner(), &self.spec.brokers, topic) {
                Err(Error::Config(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => break other?,
            }
        };
        let described = futures::executor::block_on(
            admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts),
        )
        .map_err(external(format!("reading the settings of {topic}")))?;
        let policy = described
            .into_iter()
            .next()
            .ok_or_else(|| Error::External(format!("kafka: no settings returned for {topic}")))?
            .map_err(|e| Error::External(format!("kafka: reading the settings of {topic}: {e}")))?
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        let fix = "the progress topic keeps one marker per job and partition, read from \
                   partition 0 on every restore";
        if policy != "compact" {
            return Err(Error::Config(format!(
                "kafka progress topic {topic} has cleanup.policy `{policy}`: retention would \
                 delete markers, and a restore after that would write output twice ({fix}). \
                 Set its cleanup.policy to `compact` (kafka-configs.sh --alter --entity-type \
                 topics --entity-name {topic} --add-config cleanup.policy=compact), or name \
                 another progress_topic in [sink]"
            )));
        }
        if partitions != 1 {
            return Err(Error::Config(format!(
                "kafka progress topic {topic} has {partitions} partitions ({fix}): use a topic \
                 with one partition (name another progress_topic in [sink])"
            )));
        }
        Ok(())
    }
}
