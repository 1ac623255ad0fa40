//! Talking to the test broker (a real Apache Kafka started by
//! `scripts/kafka.sh`): topics, producing events with Kafka's default
//! partitioner, reading a topic back as a `read_committed` consumer.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);

thread_local! {
    /// A broker this test thread uses instead of the shared one.
    static BROKERS: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The broker the tests use: `KAFKA_BROKERS`, set by
/// `eval "$(scripts/kafka.sh start)"` (scripts/test.sh does it), or the
/// one [`with_brokers`] names for this test thread.
pub fn brokers() -> String {
    if let Some(b) = BROKERS.with(|b| b.borrow().clone()) {
        return b;
    }
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: start the test broker with \
         `eval \"$(scripts/kafka.sh start)\"` (scripts/test.sh does)",
    )
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers());
    c
}

/// Create `name` with `partitions` partitions (deleted first if it exists,
/// with the progress topic an exactly-once sink kept for it).
pub fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(T));
    let progress = format!("{name}.weir-progress");
    let _ = futures::executor::block_on(admin.delete_topics(&[name, &progress], &opts));
    let deadline = Instant::now() + T;
    loop {
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let r = futures::executor::block_on(admin.create_topics([&topic], &opts)).unwrap();
        match &r[0] {
            Ok(_) => return,
            // A deletion still in progress.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((t, e)) => panic!("creating topic {t}: {e:?}"),
        }
    }
}

/// Create `name` with `partitions` partitions and topic settings `configs`
/// (e.g. `cleanup.policy`), deleted first if it exists.
pub fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(T));
    let _ = futures::executor::block_on(admin.delete_topics(&[name], &opts));
    let deadline = Instant::now() + T;
    loop {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let r = futures::executor::block_on(admin.create_topics([&topic], &opts)).unwrap();
        match &r[0] {
            Ok(_) => return,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((t, e)) => panic!("creating topic {t}: {e:?}"),
        }
    }
}

/// Produce every line of the CSV files in `dir` (name order) to `topic`,
/// keyed by its first column, with the Java client's default partitioner
/// (librdkafka's `murmur2_random`). Returns how many were produced.
pub fn produce_csv_dir(dir: &Path, topic: &str) -> u64 {
    let lines = crate::csv_lines(dir);
    produce(
        topic,
        lines.iter().map(|l| {
            let key = l.split(',').next().unwrap_or_default();
            (key.as_bytes(), l.as_bytes())
        }),
    )
}

/// Produce `(key, value)` records to `topic` with the default partitioner.
pub fn produce<'a>(topic: &str, records: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    let producer: BaseProducer = config()
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut n = 0;
    for (key, value) in records {
        let mut rec = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("producing: {e}"),
            }
        }
        n += 1;
    }
    producer.flush(T).unwrap();
    n
}

/// Produce `(key, value)` records to `topic` in one transaction, committed
/// or aborted (then a `read_committed` consumer never sees them).
pub fn produce_in_transaction(topic: &str, records: &[(&str, &str)], commit: bool) {
    let producer: BaseProducer = config()
        .set("partitioner", "murmur2_random")
        .set("transactional.id", format!("weir-tests-{topic}"))
        .create()
        .unwrap();
    producer.init_transactions(T).unwrap();
    producer.begin_transaction().unwrap();
    for (k, v) in records {
        producer
            .send(BaseRecord::to(topic).key(*k).payload(*v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(T).unwrap();
    if commit {
        producer.commit_transaction(T).unwrap();
    } else {
        producer.abort_transaction(T).unwrap();
    }
}

/// Delete the records of `topic`'s `partition` below `offset` (what
/// retention does to old records).
pub fn delete_records_before(topic: &str, partition: i32, offset: i64) {
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(T));
    let r = futures::executor::block_on(admin.delete_records(&tpl, &opts)).unwrap();
    for e in r.elements() {
        assert!(
            e.error().is_ok(),
            "deleting records of {topic}: {:?}",
            e.error()
        );
    }
}

/// Every committed record of `topic` (a `read_committed` consumer from the
/// start to the end offsets seen now): (partition, key, value).
pub fn read_committed(topic: &str) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    read_committed_with(topic, Duration::from_secs(120), |p, k, v| {
        out.push((p, k.to_vec(), v.to_vec()))
    });
    out
}

/// Hand every record of `topic` a `read_committed` consumer sees to `f`
/// (partition, key, value), without keeping them; within `limit`.
pub fn read_committed_with(topic: &str, limit: Duration, mut f: impl FnMut(i32, &[u8], &[u8])) {
    read_messages(topic, limit, |m| {
        f(
            m.partition(),
            m.key().unwrap_or_default(),
            m.payload().unwrap_or_default(),
        )
    })
}

/// A record as read back, with its headers.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its key (empty when none).
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its headers, as UTF-8 text.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Every record of `topic` a `read_committed` consumer sees, with headers.
pub fn read_records(topic: &str) -> Vec<Record> {
    use rdkafka::message::Headers;
    let mut out = Vec::new();
    read_messages(topic, Duration::from_secs(120), |m| {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_string(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Record {
            partition: m.partition(),
            key: m.key().unwrap_or_default().to_vec(),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        })
    });
    out
}

/// Wait (up to `limit`) until no transaction is open on any partition of
/// `topic`, and return each partition's (last stable offset, high
/// watermark) as last seen: equal once no transaction is open there (a
/// `read_committed` reader sees nothing from the first open one on). A
/// transaction's commit returns once the coordinator has logged it; the
/// markers that make its records readable reach the partitions after
/// that, and after a broker restart that can take a moment.
pub fn wait_for_no_open_transaction(topic: &str, limit: Duration) -> Vec<(i64, i64)> {
    let consumer = |isolation: &str| -> BaseConsumer {
        config()
            .set("group.id", "weir-tests-offsets")
            .set("isolation.level", isolation)
            .create()
            .unwrap()
    };
    let (stable, high) = (consumer("read_committed"), consumer("read_uncommitted"));
    let md = stable.fetch_metadata(Some(topic), T).unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let end = |c: &BaseConsumer, p: i32| c.fetch_watermarks(topic, p, T).map_or(-1, |(_, hi)| hi);
    let deadline = Instant::now() + limit;
    loop {
        let offsets: Vec<(i64, i64)> = (0..partitions)
            .map(|p| (end(&stable, p), end(&high, p)))
            .collect();
        let settled = offsets.iter().all(|&(s, h)| s >= 0 && s == h);
        if settled || Instant::now() > deadline {
            return offsets;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Hand every message of `topic` a `read_committed` consumer sees to `f`.
fn read_messages(
    topic: &str,
    limit: Duration,
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) {
    let consumer: BaseConsumer = config()
        .set("group.id", "weir-tests-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), T).unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut end = Vec::new();
    for p in 0..partitions {
        // Right after a broker restart a partition's offsets may be
        // unknown (an error, or -1): asked again, never taken as empty.
        let deadline = Instant::now() + T;
        let (lo, hi) = loop {
            match consumer.fetch_watermarks(topic, p, T) {
                Ok((lo, hi)) if lo >= 0 && hi >= 0 => break (lo, hi),
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "offsets of {topic} partition {p}: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        tpl.add_partition_offset(topic, p, Offset::Offset(lo))
            .unwrap();
        end.push(hi);
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        let pos = consumer.position().unwrap();
        let done =
            (0..partitions).all(|p| match pos.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o >= end[p as usize],
                _ => end[p as usize] == 0,
            });
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => f(&m),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            // Right after a broker restart or pause the connection may
            // still be down: asked again until the deadline.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::NetworkException,
            ))) => std::thread::sleep(Duration::from_millis(200)),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
}

/// The values of [`read_committed`], sorted.
pub fn read_values(topic: &str) -> Vec<String> {
    sorted_values(read_committed(topic))
}

/// The values of `records` (as [`read_committed`] returns them), sorted.
pub fn sorted_values(records: Vec<(i32, Vec<u8>, Vec<u8>)>) -> Vec<String> {
    let mut v: Vec<String> = records
        .into_iter()
        .map(|(_, _, v)| String::from_utf8(v).unwrap())
        .collect();
    v.sort();
    v
}

/// Run `f` with every helper here (and [`brokers`]) talking to `brokers`.
pub fn with_brokers<R>(brokers: &str, f: impl FnOnce() -> R) -> R {
    BROKERS.with(|b| *b.borrow_mut() = Some(brokers.to_string()));
    let r = f();
    BROKERS.with(|b| *b.borrow_mut() = None);
    r
}

/// A broker of its own for a test that restarts it (the shared one serves
/// the other tests meanwhile), started by `scripts/kafka.sh` on another
/// port and data folder; stopped on drop.
pub struct PrivateBroker {
    /// `127.0.0.1:<port>`.
    pub brokers: String,
    port: u16,
    data: std::path::PathBuf,
}

impl PrivateBroker {
    /// Start a broker on `port` (its controller on `port + 1`).
    pub fn start(port: u16) -> Self {
        let data = std::env::temp_dir().join(format!("weir-kafka-test-{port}"));
        let b = Self {
            brokers: format!("127.0.0.1:{port}"),
            port,
            data,
        };
        b.script("start");
        b
    }

    /// Stop the broker and start it again on the same data.
    pub fn restart(&self) {
        self.script("restart");
    }

    /// What a Kafka command-line tool prints when run against this broker
    /// (`scripts/kafka.sh run CLASS ARGS`, stdout and stderr): the broker's
    /// view for a failure's diagnosis.
    pub fn tool(&self, class: &str, args: &[&str]) -> String {
        match self.command("run").arg(class).args(args).output() {
            Ok(o) => {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            }
            Err(e) => format!("running {class}: {e}"),
        }
    }

    /// Freeze the broker process (SIGSTOP) for `d`, then let it go on
    /// (SIGCONT): an outage in which connections stay open and nothing
    /// answers.
    pub fn pause(&self, d: std::time::Duration) {
        let pid = std::fs::read_to_string(self.data.join("kafka.pid")).unwrap();
        let signal = |s: &str| {
            let ok = std::process::Command::new("kill")
                .args([s, pid.trim()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "kill {s} {pid}");
        };
        signal("-STOP");
        std::thread::sleep(d);
        signal("-CONT");
    }

    fn command(&self, command: &str) -> std::process::Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let mut c = std::process::Command::new("bash");
        c.arg(script)
            .arg(command)
            .env("KAFKA_PORT", self.port.to_string())
            .env("WEIR_KAFKA_DATA", &self.data);
        c
    }

    fn script(&self, command: &str) {
        let out = self.command(command).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/kafka.sh {command} on port {}: {}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateBroker {
    /// Stop the broker and remove its data; when the test failed, its
    /// logs are kept in `<data>-logs` first (the broker's view of a fault).
    fn drop(&mut self) {
        let _ = self.command("stop").output();
        if std::thread::panicking() {
            let keep = self.data.with_file_name(format!(
                "{}-logs",
                self.data.file_name().unwrap_or_default().to_string_lossy()
            ));
            let _ = std::fs::create_dir_all(&keep);
            for entry in std::fs::read_dir(&self.data)
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with("kafka.log") {
                    let _ = std::fs::copy(entry.path(), keep.join(name));
                }
            }
            eprintln!("the broker's logs are kept in {}", keep.display());
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Archive every committed record of `topic` into `dir` as Kafka
/// Connect's S3 sink names its files: `partition=<p>/<topic>+<p>+<first
/// offset, 10 digits>.csv`, `per_file` records (values, one per line) per
/// file. Returns how many records were archived.
pub fn archive_as_connect(topic: &str, dir: &Path, per_file: usize) -> usize {
    let mut by_partition: std::collections::BTreeMap<i32, Vec<(i64, Vec<u8>)>> =
        std::collections::BTreeMap::new();
    read_messages(topic, Duration::from_secs(120), |m| {
        by_partition
            .entry(m.partition())
            .or_default()
            .push((m.offset(), m.payload().unwrap_or_default().to_vec()));
    });
    let mut n = 0;
    for (p, records) in by_partition {
        let folder = dir.join(format!("partition={p}"));
        std::fs::create_dir_all(&folder).unwrap();
        for chunk in records.chunks(per_file) {
            let mut text = Vec::new();
            for (_, v) in chunk {
                text.extend_from_slice(v);
                text.push(b'\n');
            }
            let name = format!("{topic}+{p}+{:010}.csv", chunk[0].0);
            std::fs::write(folder.join(name), text).unwrap();
            n += chunk.len();
        }
    }
    n
}
