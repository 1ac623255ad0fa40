//! Reading the source's partitions a batch at a time.
//!
//! `BaseConsumer::poll` hands out one message per call: an event polled off
//! the consumer queue (the queue's lock taken for each), an `Arc` allocated
//! for it, and the clock read. Here each assigned partition's fetch queue is
//! forwarded to one queue of the source's own, and
//! `rd_kafka_consume_batch_queue` takes up to [`BATCH`] messages off it in
//! one call, under one lock. The consumer's own queue (errors about the
//! cluster, commit results) is still served by `BaseConsumer::poll`, which
//! now finds no messages there.
//!
//! librdkafka advances each partition's position past the messages a batch
//! returns and past transaction markers, as `poll` does.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::kafka::Context;
use crate::{Error, Result};

/// Messages taken off the queue per call.
pub(super) const BATCH: usize = 1024;

/// One message of a batch, borrowed from librdkafka until the next fill.
pub(super) struct View<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The Kafka timestamp in ms, when the record has one.
    pub time: Option<i64>,
}

/// The source's queue, every assigned partition forwarded to it, and the
/// messages of the last batch (destroyed at the next fill, or on drop).
pub(super) struct BatchQueue {
    queue: *mut rdsys::rd_kafka_queue_t,
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
    len: usize,
}

// SAFETY: librdkafka's queues and messages may be used from any thread;
// the source owns this queue and its messages, on one thread at a time.
unsafe impl Send for BatchQueue {}

impl BatchQueue {
    /// Forward `partitions` of `topic` to a new queue. Call before
    /// `assign`, so no message reaches the consumer queue first.
    pub(super) fn forward(
        consumer: &BaseConsumer<Context>,
        topic: &str,
        partitions: impl IntoIterator<Item = i32>,
    ) -> Result<Self> {
        let rk = consumer.client().native_ptr();
        let name = CString::new(topic)
            .map_err(|_| Error::Config(format!("topic name {topic:?} holds a NUL byte")))?;
        // SAFETY: `rk` is the live consumer's handle; the queue is destroyed
        // in `drop`, which runs before the consumer's (field order of the
        // source).
        let queue = unsafe { rdsys::rd_kafka_queue_new(rk) };
        let this = Self {
            queue,
            messages: vec![std::ptr::null_mut(); BATCH],
            len: 0,
        };
        for p in partitions {
            // SAFETY: as above; the partition's queue handle is released
            // right after it is forwarded.
            unsafe {
                let pq = rdsys::rd_kafka_queue_get_partition(rk, name.as_ptr(), p);
                if pq.is_null() {
                    return Err(Error::External(format!(
                        "kafka: no fetch queue for {topic}/{p}"
                    )));
                }
                rdsys::rd_kafka_queue_forward(pq, queue);
                rdsys::rd_kafka_queue_destroy(pq);
            }
        }
        Ok(this)
    }

    /// Destroy the last batch's messages, then take the next batch: what is
    /// queued now, up to [`BATCH`]; when nothing is, wait up to `wait` for
    /// the first message. Returns how many messages the batch holds.
    pub(super) fn fill(&mut self, wait: Duration) -> usize {
        self.release();
        let take = |timeout_ms: i32, size: usize, buf: &mut [*mut rdsys::rd_kafka_message_t]| {
            // SAFETY: `buf` holds at least `size` slots; librdkafka fills
            // the first n and returns n (or -1 on a bad argument).
            let n = unsafe {
                rdsys::rd_kafka_consume_batch_queue(self.queue, timeout_ms, buf.as_mut_ptr(), size)
            };
            n.max(0) as usize
        };
        // The batch call waits until the batch is full or the timeout: the
        // first message is waited for alone, the rest taken as they are.
        let mut n = take(0, BATCH, &mut self.messages);
        if n == 0 && !wait.is_zero() {
            n = take(wait.as_millis() as i32, 1, &mut self.messages);
        }
        self.len = n;
        n
    }

    /// Message `i` of the batch, or the error librdkafka put in its place.
    pub(super) fn get(&self, i: usize) -> std::result::Result<View<'_>, KafkaError> {
        debug_assert!(i < self.len);
        // SAFETY: the first `len` slots are live messages until `release`,
        // which needs `&mut self`; their buffers live as long.
        unsafe {
            let m = &*self.messages[i];
            if m.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(
                    m.err,
                )));
            }
            let bytes = |p: *mut std::ffi::c_void, len: usize| {
                (!p.is_null()).then(|| std::slice::from_raw_parts(p as *const u8, len))
            };
            let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            let ts = rdsys::rd_kafka_message_timestamp(m, &mut kind);
            Ok(View {
                partition: m.partition,
                offset: m.offset,
                key: bytes(m.key, m.key_len),
                payload: bytes(m.payload, m.len).unwrap_or_default(),
                time: (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
                    && ts >= 0)
                    .then_some(ts),
            })
        }
    }

    fn release(&mut self) {
        for m in &mut self.messages[..self.len] {
            // SAFETY: each is a live message of the last batch, destroyed once.
            unsafe { rdsys::rd_kafka_message_destroy(*m) };
            *m = std::ptr::null_mut();
        }
        self.len = 0;
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        self.release();
        // SAFETY: the handle from `rd_kafka_queue_new`, destroyed once,
        // before the consumer (the partitions still forwarding to it hold
        // their own reference).
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue) };
    }
}

/// Whether the source reads in batches (the default) or a message per
/// `poll` (`WEIR_KAFKA_CONSUME=message`: the loop before batches, kept to
/// measure one against the other in the same benchmark run).
pub(super) fn batched() -> bool {
    std::env::var("WEIR_KAFKA_CONSUME").as_deref() != Ok("message")
}
