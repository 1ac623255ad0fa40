//! Exactly-once Kafka output under everything at once, and at size:
//! SIGKILL at random moments (the first run before its first checkpoint),
//! each restart a plain `weir run JOB` as a supervisor's loop runs it,
//! while the broker restarts at random moments
//! and every third checkpoint fails (the state store refusing it), with
//! epochs split into several transactions and spilled past their memory
//! budget; and (ignored, `scripts/soak.sh`) a 2 GiB epoch produced exactly
//! once with the process's memory bounded by the budget, across a crash
//! inside it.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir_tests::assert_same_output;
use weir_tests::kafka::{PrivateBroker, read_values, with_brokers};

use crate::kafka::{kafka_job, write_job};
use crate::savepoints::Job;

/// A small random generator (seed printed for a rerun).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// A plain `weir run JOB` (no flags: it resumes from the newest complete
/// checkpoint, or starts from the configured start when there is none, as
/// a supervisor's restart loop runs it), with `failpoint` armed if any;
/// output to the void, stderr to `log`.
fn start(job: &Job, failpoint: Option<&str>, log: &std::path::Path) -> Child {
    let mut c = job.weir();
    c.args(["run", job.file().to_str().unwrap()]);
    if let Some(f) = failpoint {
        c.env("WEIR_FAILPOINT", f);
    }
    c.stdout(Stdio::null())
        .env("WEIR_LOG", "info")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn kills_broker_restarts_and_failing_checkpoints_leave_the_output_exactly_once() {
    let broker = PrivateBroker::start(9592);
    with_brokers(&broker.brokers, || {
        let (job, expected) = kafka_job("eo-soak", 400_000);
        let out = format!("{}-out", job.name);
        write_job(&job, 2, &out, "", "interval_ms = 150");
        // Epochs in several transactions, most of them spilled.
        let text = std::fs::read_to_string(job.file()).unwrap();
        let sink_topic = format!("topic = \"{out}\"");
        let bounded = text.replace(
            &sink_topic,
            &format!("{sink_topic}\ntransaction_bytes = 16384\nepoch_memory_bytes = 32768"),
        );
        // The killed runs read without an end, so each is killed wherever
        // it is: mid input, in a checkpoint, a commit, or a broker restart.
        std::fs::write(job.file(), bounded.replace("until = \"latest\"", "")).unwrap();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        println!("soak seed {seed}");
        let mut rng = Lcg(seed);
        // scripts/soak.sh runs 100 (WEIR_CRASH_RUNS).
        let runs: u32 = std::env::var("WEIR_CRASH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        // Each run's log, kept after the test for a failure's diagnosis.
        let logs = std::env::temp_dir().join("weir-eo-soak-logs");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).unwrap();
        let (mut restarts, mut failed) = (0, 0);
        for run in 0..runs {
            let log = logs.join(format!("run-{run}.log"));
            let mut child = start(&job, Some("checkpoint-fails-every:3"), &log);
            // A run needs 2-3 s to start (restore, each partition's producer
            // fencing the killed run's, markers); the first is killed before
            // its first checkpoint.
            let wait = if run == 0 {
                Duration::from_millis(300 + rng.next(1000))
            } else {
                Duration::from_millis(2500 + rng.next(5000))
            };
            let at = Duration::from_millis(rng.next(wait.as_millis() as u64));
            let ended = std::thread::scope(|s| {
                // A broker restart at a random moment of every third run
                // (the run may be killed while the broker is away).
                if run % 3 == 1 {
                    restarts += 1;
                    s.spawn(|| {
                        std::thread::sleep(at);
                        broker.restart();
                    });
                }
                let started = Instant::now();
                while started.elapsed() < wait && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let ended = child.try_wait().unwrap();
                if ended.is_none() {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                }
                ended
            });
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            let done = err.matches("checkpoint complete").count();
            let refused = err.matches("checkpoint failed").count();
            println!("run {run}: {done} checkpoints complete, {refused} failed");
            if run == 0 {
                assert_eq!(
                    done, 0,
                    "the first run is killed before its first checkpoint"
                );
            }
            if let Some(status) = ended {
                // A supervisor restarts a run that failed; one that ends
                // well could not (it reads without an end).
                assert!(!status.success(), "an unbounded run ended by itself: {err}");
                println!(
                    "run {run} failed by itself: {}",
                    err.lines().last().unwrap_or("")
                );
                failed += 1;
            }
        }
        println!("{runs} runs, {restarts} broker restarts, {failed} ended by themselves");
        // The last run reads to the end offsets and finishes; its
        // checkpoints all succeed.
        std::fs::write(job.file(), &bounded).unwrap();
        let checkpoints = manifest::list(&job.store(), &job.name).unwrap();
        assert!(!checkpoints.is_empty(), "the runs completed checkpoints");
        println!("{} checkpoints kept", checkpoints.len());
        let final_log = logs.join("final.log");
        let status = start(&job, None, &final_log).wait().unwrap();
        if !status.success() {
            // The broker's view of the transactions on the progress topic.
            let tx = "org.apache.kafka.tools.TransactionsCommand";
            let server = broker.brokers.as_str();
            let progress = format!("{out}.weir-progress");
            let producers = broker.tool(
                tx,
                &[
                    "--bootstrap-server",
                    server,
                    "describe-producers",
                    "--topic",
                    &progress,
                    "--partition",
                    "0",
                ],
            );
            let hanging = broker.tool(
                tx,
                &[
                    "--bootstrap-server",
                    server,
                    "find-hanging",
                    "--broker-id",
                    "1",
                ],
            );
            let err = std::fs::read_to_string(&final_log).unwrap_or_default();
            panic!(
                "the final run failed (logs of every run in {}): {}\n\
                 producers of {progress}:\n{producers}\nhanging transactions:\n{hanging}",
                logs.display(),
                err.lines().last().unwrap_or("")
            );
        }
        assert_same_output(
            &read_values(&out),
            &expected,
            "alerts after kills, broker restarts and failed checkpoints, each restart a plain run",
        );
    });
}

/// The peak resident memory of `child` until it exits (sampled every
/// 20 ms from /proc), in MiB, and its exit status.
fn peak_rss_mib(child: &mut Child) -> (f64, std::process::ExitStatus) {
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (peak_kib as f64 / 1024.0, s);
        }
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "2 GiB through the broker: run by scripts/soak.sh"]
fn a_2_gib_epoch_is_produced_exactly_once_within_its_memory_budget() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    const RECORDS: usize = 2048;
    const SIZE: usize = 1 << 20;
    const BUDGET_MIB: usize = 64;
    let (input, output) = ("eo-big-in", "eo-big-out");
    let big = [("max.message.bytes", "2097152")];
    weir_tests::kafka::create_topic_with(input, 1, &big);
    weir_tests::kafka::create_topic_with(output, 1, &big);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", weir_tests::kafka::brokers())
        .set("message.max.bytes", "2097152")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut value = vec![0u8; SIZE];
    for i in 0..RECORDS {
        value.fill(b'a' + (i % 26) as u8);
        let key = format!("r{i}");
        let mut rec = BaseRecord::to(input)
            .key(key.as_bytes())
            .payload(&value[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One epoch: no periodic checkpoint before the input ends.
    let text = crate::kafka_faults::echo_job(
        "eo-big",
        input,
        output,
        "until = \"latest\"",
        &format!(
            "epoch_memory_bytes = {}\nproperties = {{ \"message.max.bytes\" = \"2097152\" }}",
            BUDGET_MIB << 20
        ),
    )
    .replace("interval_ms = 100", "interval_ms = 3600000");
    std::fs::write(dir.path().join("job.toml"), &text).unwrap();
    let weir = |args: &[&str], failpoint: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_weir-it"));
        c.current_dir(dir.path())
            .env("WEIR_RUN_DIR", dir.path().join("run"))
            .env("WEIR_LOG", "warn")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        if let Some(f) = failpoint {
            c.env("WEIR_FAILPOINT", f);
        }
        c.spawn().unwrap()
    };
    let log = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    // The epoch is produced in 16 MiB transactions; the run dies before
    // the 40th commit, with about 600 MiB of it in the topic.
    let started = Instant::now();
    let (first, status) = peak_rss_mib(&mut weir(
        &["run", "job.toml"],
        Some("kafka-before-commit:40"),
    ));
    assert!(
        !status.success(),
        "the failpoint aborted the run: {}",
        log()
    );
    let first_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (second, status) = peak_rss_mib(&mut weir(
        &["run", "job.toml", "--from-savepoint", "latest"],
        None,
    ));
    assert!(status.success(), "{}", log());
    let second_s = started.elapsed().as_secs_f64();
    let mut seen = vec![0u32; RECORDS];
    let mut bytes = 0u64;
    weir_tests::kafka::read_committed_with(output, Duration::from_secs(900), |_, _, v| {
        let eq = v.iter().position(|&b| b == b'=').unwrap();
        let i: usize = std::str::from_utf8(&v[1..eq]).unwrap().parse().unwrap();
        assert_eq!(v.len() - eq - 1, SIZE);
        assert!(v[eq + 1..].iter().all(|&b| b == b'a' + (i % 26) as u8));
        seen[i] += 1;
        bytes += v.len() as u64;
    });
    println!(
        "2 GiB epoch: {} MiB produced; peak RSS {first:.0} MiB in the run that crashed \
         ({first_s:.0} s), {second:.0} MiB in the restore that finished it ({second_s:.0} s); \
         budget {BUDGET_MIB} MiB",
        bytes >> 20
    );
    let wrong: Vec<usize> = (0..RECORDS).filter(|&i| seen[i] != 1).collect();
    assert!(
        wrong.is_empty(),
        "records not exactly once: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    // The budget plus a fixed overhead (the engine, librdkafka's consumer
    // queue of 128 MiB and a transaction in flight), far from the epoch.
    for peak in [first, second] {
        assert!(peak < (BUDGET_MIB + 448) as f64, "peak RSS {peak:.0} MiB");
    }
    weir_tests::kafka::create_topic(input, 1);
    weir_tests::kafka::create_topic(output, 1);
}
