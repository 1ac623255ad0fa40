//! Benchmark: Kafka -> state-machine plugin -> Kafka, exactly once, next to
//! a bare rdkafka consumer reading the same topic in the same run, and the
//! same job over files. Prints events/s and events per CPU-second for each,
//! and the end-to-end latency exactly-once adds (a probe record's time from
//! produce to visible for a `read_committed` consumer, exactly once and at
//! least once).
//!
//! Needs the test broker: `eval "$(scripts/kafka.sh start)"`, then
//! `cargo bench -p weir-tests --bench kafka` (`WEIR_BENCH_EVENTS` sets the
//! event count, default 3 000 000; without `--bench`, a small smoke run).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir::config::{JobFile, Plan};
use weir::generate::{GenerateConfig, generate};
use weir::job::{JobReport, RunOptions, run};
use weir::runtime::process_cpu_time;
use weir_tests::artifacts;
use weir_tests::kafka::{brokers, create_topic, produce_csv_dir};

const PARTITIONS: i32 = 6;

fn job(
    name: &str,
    input: &str,
    output: &str,
    until: &str,
    delivery: &str,
    interval_ms: u64,
) -> Plan {
    let text = format!(
        r#"
name = "{name}"
parallelism = 1
[source]
type = "kafka"
brokers = "{b}"
topic = "{input}"
format = "csv"
key_column = 0
timestamp_column = 2
{until}
[[operators]]
name = "state-machine"
plugin = "{plugin}"
[sink]
type = "kafka"
brokers = "{b}"
topic = "{output}"
delivery = "{delivery}"
[checkpoints]
interval_ms = {interval_ms}
[control]
enabled = false
"#,
        b = brokers(),
        plugin = artifacts::STATE_MACHINE,
    );
    let dir = std::env::temp_dir().join(format!("weir-bench-kafka-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("state folder");
    JobFile::parse(&text)
        .expect("job")
        .resolve(name, &dir)
        .expect("plan")
}

/// A bare consumer over every partition, `read_committed`, from the start
/// to the end offsets: (records, wall, CPU).
fn bare_consumer(topic: &str) -> (u64, Duration, Duration) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", "weir-bench-bare")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.max.bytes", "104857600")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "131072")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut end = Vec::new();
    for p in 0..PARTITIONS {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        tpl.add_partition_offset(topic, p, Offset::Offset(lo))
            .expect("tpl");
        end.push(hi);
    }
    let total: i64 = end.iter().sum();
    let (t, cpu) = (Instant::now(), process_cpu_time());
    consumer.assign(&tpl).expect("assign");
    let mut n = 0u64;
    let mut bytes = 0usize;
    while (n as i64) < total {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bytes += m.payload_len() + m.key().map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    std::hint::black_box(bytes);
    (n, t.elapsed(), process_cpu_time().saturating_sub(cpu))
}

fn row(label: &str, events: u64, wall: Duration, cpu: Duration) {
    println!(
        "{label:<38} {:>12.0} {:>14.0} {:>8.2}",
        events as f64 / wall.as_secs_f64(),
        events as f64 / cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
}

fn report_row(label: &str, r: &JobReport) {
    row(label, r.totals.records_read, r.elapsed, r.cpu);
}

/// Median time from producing a probe record to its alert being visible to
/// a `read_committed` consumer, with the job running unbounded.
fn probe_latency(delivery: &str, interval_ms: u64) -> Duration {
    let tag = format!("{delivery}-{}", std::process::id());
    let (input, output) = (
        format!("bench-lat-in-{tag}"),
        format!("bench-lat-out-{tag}"),
    );
    create_topic(&input, PARTITIONS);
    create_topic(&output, 1);
    let plan = job(
        &format!("bench-lat-{tag}"),
        &input,
        &output,
        "",
        delivery,
        interval_ms,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let handle = std::thread::spawn({
        let stop = stop.clone();
        move || {
            run(
                &plan,
                RunOptions {
                    stop,
                    ..RunOptions::default()
                },
            )
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", "weir-bench-latency")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&output, 0, Offset::Offset(0))
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut times = Vec::new();
    for i in 0..5u32 {
        // `b` as the first event of a new address is an invalid
        // transition: one alert per probe.
        let line = format!("{},b,{}", 900_000 + i, 1_700_000_000_000u64 + u64::from(i));
        let key = format!("{}", 900_000 + i);
        let t = Instant::now();
        producer
            .send(BaseRecord::to(&input).key(&key).payload(&line))
            .map_err(|(e, _)| e)
            .expect("produce");
        while producer.in_flight_count() > 0 {
            producer.poll(Duration::from_millis(1));
        }
        loop {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "probe {i} not visible"
            );
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(5)) {
                break;
            }
        }
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("job thread").expect("job");
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let events = if benchmarking {
        std::env::var("WEIR_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3_000_000)
    } else {
        20_000
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let events_dir = dir.path().join("events");
    generate(
        &events_dir,
        &GenerateConfig {
            seed: 3,
            events,
            max_address: 1_000_000,
            max_machines: 100_000,
            file_size: 64 << 20,
            ..GenerateConfig::default()
        },
    )
    .expect("generating events");
    let tag = std::process::id();
    let input = format!("bench-in-{tag}");
    create_topic(&input, PARTITIONS);
    let t = Instant::now();
    produce_csv_dir(&events_dir, &input);
    let produce_rate = events as f64 / t.elapsed().as_secs_f64();

    println!("kafka: {events} events, {PARTITIONS} partitions, 1M addresses, parallelism 1");
    println!(
        "{:<38} {:>12} {:>14} {:>8}",
        "run", "events/s", "events/CPU-s", "wall s"
    );
    println!(
        "{:<38} {produce_rate:>12.0}",
        "producer (rdkafka, for reference)"
    );
    let (n, wall, cpu) = bare_consumer(&input);
    assert_eq!(n, events);
    row("bare rdkafka consumer (read_committed)", n, wall, cpu);

    let output = format!("bench-out-{tag}");
    create_topic(&output, PARTITIONS);
    let plan = job(
        &format!("bench-eo-{tag}"),
        &input,
        &output,
        "until = \"latest\"",
        "exactly-once",
        1000,
    );
    let eo = run(&plan, RunOptions::default()).expect("kafka job");
    report_row("weir kafka -> sm -> kafka, exactly once", &eo);

    // The same job with the source's loop before batches: a message per
    // `poll` (the source reads the variable when it opens).
    let output_msg = format!("bench-out-msg-{tag}");
    create_topic(&output_msg, PARTITIONS);
    let plan = job(
        &format!("bench-eo-msg-{tag}"),
        &input,
        &output_msg,
        "until = \"latest\"",
        "exactly-once",
        1000,
    );
    // SAFETY: no other thread reads the environment meanwhile (the jobs
    // before this one have ended).
    unsafe { std::env::set_var("WEIR_KAFKA_CONSUME", "message") };
    let eo_msg = run(&plan, RunOptions::default()).expect("kafka job");
    unsafe { std::env::remove_var("WEIR_KAFKA_CONSUME") };
    report_row("  the same, a message per poll (before)", &eo_msg);
    assert_eq!(eo.totals.emitted, eo_msg.totals.emitted, "both loops agree");

    let output2 = format!("bench-out-alo-{tag}");
    create_topic(&output2, PARTITIONS);
    let plan = job(
        &format!("bench-alo-{tag}"),
        &input,
        &output2,
        "until = \"latest\"",
        "at-least-once",
        1000,
    );
    let alo = run(&plan, RunOptions::default()).expect("kafka job");
    report_row("weir kafka -> sm -> kafka, at least once", &alo);

    let files = weir::demo::state_machine_plan(
        &events_dir,
        &dir.path().join("out"),
        1,
        weir::config::PluginSource::Path(artifacts::STATE_MACHINE.into()),
    );
    let f = run(&files, RunOptions::default()).expect("file job");
    report_row("weir files -> sm -> files", &f);
    assert_eq!(eo.totals.emitted, f.totals.emitted, "kafka and files agree");

    let bare_cpu = n as f64 / cpu.as_secs_f64();
    println!(
        "kafka EO / bare consumer: {:.2} events/CPU-s ({:.2} events/s; a message per poll: {:.2} \
         events/CPU-s); kafka EO / files: {:.2} (events/CPU-s)",
        eo.records_per_cpu_sec() / bare_cpu,
        eo.records_per_sec() / (n as f64 / wall.as_secs_f64()),
        eo_msg.records_per_cpu_sec() / bare_cpu,
        eo.records_per_cpu_sec() / f.records_per_cpu_sec()
    );
    if benchmarking {
        for (delivery, interval) in [
            ("exactly-once", 1000),
            ("exactly-once", 200),
            ("at-least-once", 1000),
        ] {
            let lat = probe_latency(delivery, interval);
            println!(
                "latency produce -> visible (read_committed), {delivery}, checkpoint every {interval} ms: {} ms (median of 5)",
                lat.as_millis()
            );
        }
    }
}
