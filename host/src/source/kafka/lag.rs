//! The consumer lag: the end of each partition's log, asked for off the
//! source thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{KafkaSourceSpec, LAG_EVERY};
use crate::kafka::{Client, Context, client_config, external};
use crate::{Error, Result};

/// A thread that asks the broker for the end of each partition's log every
/// [`LAG_EVERY`] (a request per partition that must not hold up reading),
/// for the consumer lag in progress lines and metrics.
pub(super) struct LogEnds {
    /// Each partition's end as last seen (-1: not seen yet).
    ends: Arc<Mutex<Vec<i64>>>,
    /// Tells the thread to end.
    done: Arc<AtomicBool>,
    /// The thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl LogEnds {
    /// Start asking for the ends of the `partitions` of `spec`'s topic.
    pub(super) fn start(spec: &KafkaSourceSpec, partitions: usize) -> Result<Self> {
        let client: BaseConsumer<Context> = client_config(
            &spec.brokers,
            &spec.properties,
            Client::Probe { committed: true },
        )
        .create_with_context(Context::default())
        .map_err(external("creating a consumer for the lag"))?;
        let ends = Arc::new(Mutex::new(vec![-1; partitions]));
        let done = Arc::new(AtomicBool::new(false));
        let topic = spec.topic.clone();
        let ids: Vec<i32> = (0..partitions).map(|p| spec.kafka_id(p)).collect();
        let thread = std::thread::Builder::new()
            .name("weir-kafka-lag".into())
            .spawn({
                let (ends, done) = (ends.clone(), done.clone());
                move || {
                    while !done.load(Ordering::Relaxed) {
                        for (p, &id) in ids.iter().enumerate() {
                            let hi = client
                                .fetch_watermarks(&topic, id, Duration::from_secs(2))
                                .map_or(-1, |(_, hi)| hi);
                            crate::lock_or_recover(&ends)[p] = hi;
                        }
                        let t = Instant::now();
                        while t.elapsed() < LAG_EVERY && !done.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("spawning the lag thread: {e}")))?;
        Ok(Self {
            ends,
            done,
            thread: Some(thread),
        })
    }

    /// Each partition's end as last seen (-1: not seen yet).
    pub(super) fn ends(&self) -> Vec<i64> {
        crate::lock_or_recover(&self.ends).clone()
    }
}

impl Drop for LogEnds {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
