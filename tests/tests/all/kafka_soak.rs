//! Exactly-once Kafka output under everything at once, and at size:
//! SIGKILL at random moments while the broker restarts at random moments
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

/// `weir run` of the job, from `latest` once a checkpoint exists, with
/// `failpoint` armed; output to the void, stderr to `log`.
fn start(job: &Job, failpoint: &str, log: &std::path::Path) -> Child {
    let mut c = job.weir();
    c.args(["run", job.file().to_str().unwrap()]);
    if !manifest::list(&job.store(), &job.name).unwrap().is_empty() {
        c.args(["--from-savepoint", "latest"]);
    }
    c.env("WEIR_FAILPOINT", failpoint)
        .stdout(Stdio::null())
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
        let log = job.root.join("run.log");
        let (mut restarts, mut failed) = (0, 0);
        for run in 0..runs {
            let mut child = start(&job, "checkpoint-fails-every:3", &log);
            // A run needs 2-3 s to start (restore, each partition's producer
            // fencing the killed run's, markers).
            let wait = Duration::from_millis(2500 + rng.next(5000));
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
        job.run_ok(&[
            "run",
            job.file().to_str().unwrap(),
            "--from-savepoint",
            "latest",
        ]);
        assert_same_output(
            &read_values(&out),
            &expected,
            "alerts after kills, broker restarts and failed checkpoints",
        );
    });
}
