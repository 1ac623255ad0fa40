//! Benchmark: group mode (`assignment = "group"`). The state-machine job,
//! exactly once, on a 12-partition topic filled beforehand, run by 1, 2 and
//! 3 `weir run` processes of one consumer group on this machine: events
//! per second from the processes' start to the output holding every alert
//! the DFA raises (so it includes joining the group). Then the failover:
//! three processes on a live topic, one killed with SIGKILL; the time until
//! its partitions run elsewhere (session timeout, then the rebalance) and
//! until the output is complete again. State in the S3 test server when
//! `WEIR_S3_URL` is set, else a local folder.
//!
//! Needs the test broker: `eval "$(scripts/kafka.sh start)"` (and for S3
//! `eval "$(scripts/s3-server.sh start)"`), then
//! `cargo bench -p weir-tests --bench group` (`WEIR_BENCH_EVENTS`, default
//! 1 000 000; without `--bench` a small smoke run with one process).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::generate::{GenerateConfig, generate};
use weir_tests::kafka::{brokers, create_topic, produce_csv_dir, read_values};
use weir_tests::{artifacts, reference_alerts};

const PARTITIONS: i32 = 12;
const SESSION_MS: u64 = 6_000;

struct Bench {
    root: PathBuf,
    tag: String,
    store: String,
}

impl Bench {
    fn job(&self, name: &str) -> PathBuf {
        let file = self.root.join(format!("{name}.toml"));
        let store = format!("{}/{name}", self.store);
        std::fs::write(
            &file,
            format!(
                r#"
name = "{name}"
[source]
type = "kafka"
brokers = "{b}"
topic = "{name}-in"
group_id = "{name}"
assignment = "group"
format = "csv"
key_column = 0
timestamp_column = 2
properties = {{ "session.timeout.ms" = "{SESSION_MS}", "heartbeat.interval.ms" = "500" }}
[[operators]]
name = "state-machine"
plugin = "{plugin}"
[sink]
type = "kafka"
brokers = "{b}"
topic = "{name}-out"
[state]
url = "{store}"
[checkpoints]
interval_ms = 1000
"#,
                b = brokers(),
                plugin = artifacts::STATE_MACHINE,
            ),
        )
        .unwrap();
        file
    }

    fn spawn(&self, job: &Path, log: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_weir-it"))
            .env("WEIR_RUN_DIR", self.root.join("run"))
            .env("WEIR_LOG", "info")
            .current_dir(&self.root)
            .args(["run", job.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }
}

fn runs_started(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("partition assigned"))
        .count()
}

/// Partition runs a process runs now: started less released.
fn runs_now(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let released = text
        .lines()
        .filter(|l| l.contains("partition released"))
        .count();
    runs_started(log).saturating_sub(released)
}

fn wait_output(topic: &str, n: usize, limit: Duration) -> Duration {
    let t = Instant::now();
    while read_values(topic).len() < n {
        assert!(
            t.elapsed() < limit,
            "{topic}: output incomplete after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    t.elapsed()
}

fn stop(children: Vec<Child>) {
    for c in &children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
    }
    for mut c in children {
        let _ = c.wait();
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let events: u64 = if benchmarking {
        weir_tests::env_or("WEIR_BENCH_EVENTS", 1_000_000)
    } else {
        10_000
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let tag = format!("{}", std::process::id());
    generate(
        &root.join("events"),
        &GenerateConfig {
            seed: 5,
            events,
            max_address: events.div_ceil(2).max(1) as u32,
            error_prob: 0.01,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let expected = reference_alerts(&root.join("events")).len();
    let store = match std::env::var("WEIR_S3_URL") {
        Ok(url) => format!("{}/bench-group-{tag}", url.trim_end_matches('/')),
        Err(_) => root.join("state").display().to_string(),
    };
    let bench = Bench { root, tag, store };
    println!(
        "group bench: {events} events, {expected} alerts, {PARTITIONS} partitions, state in {}",
        bench.store
    );
    let counts: &[usize] = if benchmarking { &[1, 2, 3] } else { &[1] };
    println!(
        "{:>9} {:>10} {:>12} {:>22}",
        "processes", "seconds", "events/s", "all partitions running"
    );
    for &k in counts {
        let name = format!("bg{k}-{}", bench.tag);
        create_topic(&format!("{name}-in"), PARTITIONS);
        create_topic(&format!("{name}-out"), 4);
        produce_csv_dir(&bench.root.join("events"), &format!("{name}-in"));
        let job = bench.job(&name);
        let logs: Vec<PathBuf> = (0..k)
            .map(|i| bench.root.join(format!("{name}-{i}.log")))
            .collect();
        let t = Instant::now();
        let children: Vec<Child> = logs.iter().map(|l| bench.spawn(&job, l)).collect();
        let mut running = None;
        while read_values(&format!("{name}-out")).len() < expected {
            if running.is_none() && logs.iter().map(|l| runs_started(l)).sum::<usize>() >= 12 {
                running = Some(t.elapsed());
            }
            assert!(
                t.elapsed() < Duration::from_secs(900),
                "{name}: no complete output"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let secs = t.elapsed().as_secs_f64();
        stop(children);
        println!(
            "{k:>9} {secs:>10.1} {:>12.0} {:>22}",
            events as f64 / secs,
            running.map_or("–".into(), |r| format!("{:.1} s", r.as_secs_f64()))
        );
    }
    if !benchmarking {
        return;
    }
    // Failover: three processes on a live topic, one killed.
    let name = format!("bgf-{}", bench.tag);
    create_topic(&format!("{name}-in"), PARTITIONS);
    create_topic(&format!("{name}-out"), 4);
    let job = bench.job(&name);
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| bench.root.join(format!("{name}-{i}.log")))
        .collect();
    let mut children: Vec<Child> = logs.iter().map(|l| bench.spawn(&job, l)).collect();
    while logs.iter().map(|l| runs_started(l)).sum::<usize>() < 12 {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    produce_csv_dir(&bench.root.join("events"), &format!("{name}-in"));
    wait_output(
        &format!("{name}-out"),
        expected / 2,
        Duration::from_secs(600),
    );
    let lost = runs_now(&logs[0]);
    let before: usize = logs[1..].iter().map(|l| runs_started(l)).sum();
    let t = Instant::now();
    children[0].kill().unwrap();
    let _ = children[0].wait();
    while logs[1..].iter().map(|l| runs_started(l)).sum::<usize>() < before + lost {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the partitions never moved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let moved = t.elapsed();
    wait_output(&format!("{name}-out"), expected, Duration::from_secs(600));
    let complete = t.elapsed();
    stop(children.split_off(1));
    println!(
        "failover: kill -9 of a process running {lost} partitions; they run elsewhere after \
         {:.1} s (session timeout {:.1} s, then the rebalance and a {:.1} s start delay), the \
         output is complete {:.1} s after the kill",
        moved.as_secs_f64(),
        SESSION_MS as f64 / 1000.0,
        1.5,
        complete.as_secs_f64()
    );
}
