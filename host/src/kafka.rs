//! What the Kafka source and sink share: client settings, the client
//! context (librdkafka's logs go to `tracing`), topic metadata and errors.
//! Everything here goes through `rdkafka` (librdkafka); no protocol code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::Error;

/// How long a metadata or offsets request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a topic's metadata may show it without partitions or leaders
/// (the moment after its creation) before it is called missing.
const TOPIC_SETTLE: Duration = Duration::from_secs(5);

/// librdkafka's logs and errors, into `tracing`; for a producer, the
/// records whose delivery failed.
#[derive(Debug, Default, Clone)]
pub struct Context {
    /// Records a delivery report said failed, until the producer's owner
    /// takes them ([`Context::take_undelivered`]). Consumers leave it empty.
    undelivered: Arc<Mutex<Vec<Undelivered>>>,
}

/// A record whose delivery failed, with why.
#[derive(Debug)]
pub struct Undelivered {
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub value: Vec<u8>,
    /// Why it was not delivered.
    pub error: KafkaError,
}

impl Context {
    /// The records whose delivery failed since the last call.
    pub fn take_undelivered(&self) -> Vec<Undelivered> {
        std::mem::take(&mut *crate::lock_or_recover(&self.undelivered))
    }

    /// Whether a delivery report said a record failed since the last
    /// [`Context::take_undelivered`].
    pub fn has_undelivered(&self) -> bool {
        !crate::lock_or_recover(&self.undelivered).is_empty()
    }
}

/// Whether `e` says the broker (or librdkafka, before sending) refuses this
/// record itself (too large, invalid), so sending it again cannot succeed,
/// as opposed to a failure of the connection, the broker or the producer.
pub fn refuses_the_record(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
        )
    )
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "weir::kafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "weir::kafka", fac, "{log_message}"),
            _ => tracing::debug!(target: "weir::kafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is reported as an error event too.
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(target: "weir::kafka", "{error}: {reason}");
        }
    }
}

impl ConsumerContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, m)) = result {
            crate::lock_or_recover(&self.undelivered).push(Undelivered {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                error: error.clone(),
            });
        }
    }
}

/// The settings Weir makes itself, on every client it builds: a job's
/// `properties` may not set them (the job file is refused at resolution,
/// [`refuse_owned`]), each with why.
pub const OWNED_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `brokers`"),
    ("group.id", "set the source's `group_id`"),
    (
        "enable.auto.commit",
        "offsets are committed after each checkpoint",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed after each checkpoint",
    ),
    (
        "isolation.level",
        "Weir reads `read_committed` (the exactly-once output and markers)",
    ),
    (
        "auto.offset.reset",
        "set the source's `start` and `on_offset_out_of_range`",
    ),
    ("enable.partition.eof", "Weir finds the ends itself"),
    (
        "partitioner",
        "output is partitioned as Kafka's Java client does (murmur2)",
    ),
    (
        "enable.idempotence",
        "the sink's producers are always idempotent",
    ),
    (
        "transactional.id",
        "one per job, topic and partition, so a restart fences the run before it",
    ),
];

/// Refuse `properties` (of the job-file table `table`) that set a key
/// Weir owns, naming every such key and why.
pub fn refuse_owned<'a>(
    table: &str,
    properties: impl IntoIterator<Item = &'a String>,
) -> crate::Result<()> {
    let set: Vec<&str> = properties.into_iter().map(String::as_str).collect();
    let owned: Vec<String> = OWNED_KEYS
        .iter()
        .filter(|(k, _)| set.contains(k))
        .map(|(k, why)| format!("`{k}` ({why})"))
        .collect();
    if owned.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{table} properties: {} set by Weir and cannot be overridden; remove {} from \
         properties",
        owned.join(", "),
        if owned.len() == 1 { "it" } else { "them" }
    )))
}

/// Which client [`client_config`] builds: each gets the job's properties
/// and then the settings Weir owns for it.
#[derive(Debug, Clone, Copy)]
pub enum Client<'a> {
    /// The source's consumer: manual assignment, `read_committed`, offsets
    /// committed to `group` by Weir after each checkpoint.
    Source {
        /// The consumer group (lag tools).
        group: &'a str,
    },
    /// A group job's member: the source's settings, but it reads nothing
    /// (it pauses what it is given), so no start offset is looked for.
    Member {
        /// The consumer group the job's processes share.
        group: &'a str,
        /// The KIP-848 protocol (`group.protocol = consumer`); otherwise
        /// the classic one with cooperative-sticky assignment.
        kip848: bool,
    },
    /// Metadata and offsets only (the sink's validation probe, the
    /// source's lag thread), as `read_committed` sees them or not.
    Probe {
        /// `read_committed` (the last stable offset) or the log's end.
        committed: bool,
    },
    /// Reads the sink's progress markers (`read_committed`, from the
    /// start, never commits).
    MarkerReader {
        /// A group id of its own (it is assigned, never joins).
        group: &'a str,
    },
    /// The sink's producer: idempotent, murmur2 partitioner, and
    /// transactional when the id is given.
    Producer {
        /// `transactional.id` for exactly once.
        transactional_id: Option<&'a str>,
    },
    /// Creates and describes the progress topic.
    Admin,
}

/// The one place Kafka client settings are made: Weir's defaults (which
/// the job may change), then the job's `properties` (security, SASL/SSL,
/// tuning), then the settings Weir owns for `client` (the job may not set
/// them: [`refuse_owned`]).
pub fn client_config(
    brokers: &str,
    properties: &[(String, String)],
    client: Client<'_>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    match client {
        Client::Source { .. } | Client::Member { .. } => {
            c.set("fetch.max.bytes", "104857600")
                .set("max.partition.fetch.bytes", "10485760")
                .set("queued.max.messages.kbytes", "131072");
            if let Client::Member { kip848: false, .. } = client {
                // A rebalance waits this long at most for a member that
                // does not rejoin (the classic protocol's rebalance
                // timeout). The member polls every 100 ms, and a revocation
                // takes at most the group's release wait and a drain, so a
                // minute (not librdkafka's 5) bounds the stall a stuck
                // member causes.
                c.set("max.poll.interval.ms", "60000");
            }
        }
        Client::Producer { transactional_id } => {
            c.set("linger.ms", "5");
            if transactional_id.is_some() {
                c.set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS);
            }
        }
        Client::Probe { .. } | Client::MarkerReader { .. } | Client::Admin => {}
    }
    for (k, v) in properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", brokers);
    match client {
        Client::Source { group } | Client::Member { group, .. } => {
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("isolation.level", "read_committed")
                .set("enable.partition.eof", "false")
                .set("auto.offset.reset", "error");
            if let Client::Member { kip848, .. } = client {
                // Nothing is read: no offsets to look for, so no errors
                // about missing ones.
                c.set("auto.offset.reset", "latest");
                match kip848 {
                    true => c.set("group.protocol", "consumer"),
                    false => c.set("partition.assignment.strategy", "cooperative-sticky"),
                };
            }
        }
        Client::Probe { committed } => {
            c.set(
                "isolation.level",
                if committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
        }
        Client::MarkerReader { group } => {
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "earliest");
        }
        Client::Producer { transactional_id } => {
            c.set("partitioner", "murmur2_random")
                .set("enable.idempotence", "true");
            if let Some(id) = transactional_id {
                c.set("transactional.id", id);
            }
        }
        Client::Admin => {}
    }
    c
}

/// Transaction timeout unless the job sets `transaction.timeout.ms`.
pub const TRANSACTION_TIMEOUT_MS: &str = "60000";

/// An error talking to Kafka: an external system, named with what Weir
/// was doing.
pub fn external(what: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let what = what.into();
    move |e| Error::External(format!("kafka: {what}: {e}"))
}

/// The number of partitions of `topic`, or a clear error if it does not
/// exist.
pub fn partition_count<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    brokers: &str,
    topic: &str,
) -> crate::Result<usize> {
    // Right after a topic is created the broker may answer its metadata
    // with an error (no leader elected yet) or no partitions; a job started
    // in that moment waits it out instead of calling the topic missing.
    let deadline = std::time::Instant::now() + TOPIC_SETTLE;
    loop {
        let md = client
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(external(format!(
                "reading metadata of topic `{topic}` from {brokers}"
            )))?;
        let found = md.topics().iter().find(|t| t.name() == topic).map(|t| {
            let leaderless = t.partitions().iter().any(|p| p.leader() < 0);
            (t.error(), t.partitions().len(), leaderless)
        });
        match found {
            Some((None, n, false)) if n > 0 => return Ok(n),
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Some((Some(e), _, _)) => {
                return Err(Error::Config(format!(
                    "kafka topic `{topic}` is not available on {brokers} ({e:?}); \
                     create it first, or check that the broker is healthy"
                )));
            }
            Some((None, n, _)) if n > 0 => return Ok(n),
            _ => {
                return Err(Error::Config(format!(
                    "kafka topic `{topic}` does not exist on {brokers} (create it first)"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Client, client_config};

    fn member(kip848: bool, properties: &[(&str, &str)]) -> rdkafka::ClientConfig {
        let properties: Vec<(String, String)> = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        client_config(
            "127.0.0.1:9092",
            &properties,
            Client::Member { group: "g", kip848 },
        )
    }

    #[test]
    fn a_group_member_bounds_its_rebalance_wait_unless_the_job_sets_it() {
        let classic = member(false, &[]);
        assert_eq!(classic.get("max.poll.interval.ms"), Some("60000"));
        assert_eq!(
            classic.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(classic.get("auto.offset.reset"), Some("latest"));
        assert_eq!(classic.get("group.id"), Some("g"));
        let set = member(false, &[("max.poll.interval.ms", "90000")]);
        assert_eq!(set.get("max.poll.interval.ms"), Some("90000"));
        let kip848 = member(true, &[]);
        assert_eq!(kip848.get("group.protocol"), Some("consumer"));
        assert_eq!(kip848.get("max.poll.interval.ms"), None);
        assert_eq!(kip848.get("partition.assignment.strategy"), None);
    }
}
