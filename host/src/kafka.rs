//! What the Kafka source and sink share: client settings, the client
//! context (librdkafka's logs go to `tracing`), topic metadata and errors.
//! Everything here goes through `rdkafka` (librdkafka); no protocol code.

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::Error;

/// How long a metadata or offsets request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// librdkafka's logs and errors, into `tracing`.
#[derive(Debug, Default, Clone)]
pub struct Context;

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
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// A client configuration: the brokers, then the job's own properties
/// (which win).
pub fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

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
    let md = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(external(format!(
            "reading metadata of topic `{topic}` from {brokers}"
        )))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| {
            Error::Config(format!("kafka topic `{topic}` does not exist on {brokers}"))
        })?;
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(Error::Config(format!(
            "kafka topic `{topic}` does not exist on {brokers} (create it first)"
        )));
    }
    Ok(t.partitions().len())
}
