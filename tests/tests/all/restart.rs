//! `[restart]` strategies, end to end with the `weir` binary: a job that
//! fails while running restarts inside the process from its newest
//! checkpoint as `fixed-delay` or `failure-rate` allow, then fails with a
//! message naming the plugin and the strategy; `none` fails at once; the
//! output across restarts is exactly an uninterrupted run's; the count is
//! in `GET /status` and `/metrics`.

use std::time::{Duration, Instant};

use weir_tests::{artifacts, assert_same_output};

use crate::savepoints::Job;
use crate::swaps::{Fed, endpoint, stop};

/// `GET /status` of the running job, or `None` while it has no endpoint
/// (between two attempts).
pub(crate) fn try_status(job: &Job) -> Option<serde_json::Value> {
    let e = weir::runtime::control::find_in(&job.root.join("run"), &job.name).ok()?;
    match e.request("GET", "/status") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Wait until the committed output of a following job holds as many
/// lines as an uninterrupted run's (restarts reset the read counters).
pub(crate) fn wait_output(fed: &Fed) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while fed.job.output().len() < fed.expected.len() {
        assert!(
            Instant::now() < deadline,
            "the output has {} of {} lines",
            fed.job.output().len(),
            fed.expected.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pass-through job (the trap plugin) over 20k events and one more file
/// holding a record it traps on, with `extra` in its job file.
fn trapping(name: &str, extra: &str) -> Job {
    let job = Job::new(
        name,
        20_000,
        artifacts::TRAP,
        1,
        &format!("[checkpoints]\ninterval_ms = 50\n{extra}"),
    );
    std::fs::write(job.root.join("events/zz-boom.csv"), "7,boom,1\n").unwrap();
    job
}

/// `weir run` of `job` to its end: success, and what it said.
fn run(job: &Job, failpoint: Option<&str>) -> (bool, String) {
    let mut c = job.weir();
    c.arg("run").arg(job.file());
    if let Some(f) = failpoint {
        c.env("WEIR_FAILPOINT", f);
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn fixed_delay_restarts_its_attempts_then_fails_naming_the_plugin_and_the_strategy() {
    let job = trapping(
        "restart-fixed",
        "[restart]\nstrategy = \"fixed-delay\"\nattempts = 2\ndelay_ms = 20\n",
    );
    let (ok, said) = run(&job, None);
    assert!(!ok, "the job fails in the end: {said}");
    assert_eq!(said.matches("restarting in 20 ms").count(), 2, "{said}");
    assert!(
        said.contains("plugin `op` failed")
            && said.contains("boom")
            && said.contains("after 2 restarts")
            && said.contains("restart strategy fixed-delay: 2 attempts, 20 ms apart"),
        "{said}"
    );
}

#[test]
fn no_restart_strategy_fails_at_the_first_failure() {
    let job = trapping("restart-none", "");
    let (ok, said) = run(&job, None);
    assert!(!ok, "{said}");
    assert!(
        said.contains("plugin `op` failed") && said.contains("boom"),
        "{said}"
    );
    assert!(!said.contains("restarting in"), "no restart: {said}");
}

/// Failure-rate: failures further apart than the interval are restarted
/// however many they are; two inside it (with one allowed) fail the job.
#[test]
fn failure_rate_counts_only_the_failures_inside_its_interval() {
    let every_commit = Some("task-fails-after-commits:1");
    let extra = |interval_ms: u64, delay_ms: u64| {
        format!(
            "[checkpoints]\ninterval_ms = 20\n[batch]\nmax_records = 32\n\
             [restart]\nstrategy = \"failure-rate\"\nmax_failures_per_interval = 1\n\
             failure_rate_interval_ms = {interval_ms}\ndelay_ms = {delay_ms}\n"
        )
    };
    // Restarts 150 ms apart, an interval of 50 ms: never two inside it.
    let job = Job::new(
        "restart-rate-apart",
        1_000_000,
        artifacts::STATE_MACHINE,
        1,
        &extra(50, 150),
    );
    let expected = job.reference();
    let (ok, said) = run(&job, every_commit);
    assert!(ok, "{said}");
    let restarts = said.matches("restarting in 150 ms").count();
    assert!(restarts >= 2, "restarted each time: {said}");
    assert_same_output(
        &job.output(),
        &expected,
        "output across failure-rate restarts",
    );

    // An interval of a minute: the second failure fails the job.
    let job = Job::new(
        "restart-rate-inside",
        1_000_000,
        artifacts::STATE_MACHINE,
        1,
        &extra(60_000, 10),
    );
    let (ok, said) = run(&job, every_commit);
    assert!(!ok, "{said}");
    assert_eq!(said.matches("restarting in 10 ms").count(), 1, "{said}");
    assert!(
        said.contains("plugin `op` failed")
            && said.contains("after 1 restarts")
            && said.contains("failure-rate: at most 1 failures per 60000 ms"),
        "{said}"
    );
}

/// Many restarts inside one process (a failure after every committed
/// checkpoint), at parallelism 2: the committed output is exactly an
/// uninterrupted run's.
#[test]
fn output_across_in_process_restarts_is_exactly_once() {
    let job = Job::new(
        "restart-exactly-once",
        1_000_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 20\n[batch]\nmax_records = 32\n\
         [restart]\nstrategy = \"fixed-delay\"\nattempts = 10000\ndelay_ms = 0\n",
    );
    let expected = job.reference();
    let (ok, said) = run(&job, Some("task-fails-after-commits:2"));
    assert!(ok, "{said}");
    let restarts = said.matches("restarting in 0 ms").count();
    assert!(restarts >= 1, "{restarts} restarts: {said}");
    assert_same_output(
        &job.output(),
        &expected,
        &format!("output across {restarts} in-process restarts"),
    );
}

/// The restart count is in `GET /status` and in the Prometheus metrics.
#[test]
fn the_restart_count_is_in_status_and_metrics() {
    let extra = "[checkpoints]\ninterval_ms = 50\n\
                 [restart]\nstrategy = \"fixed-delay\"\nattempts = 100\ndelay_ms = 10\n";
    let mut fed = Fed::new("restart-status", 100_000, 1, extra, 2);
    let mut c = fed.job.weir();
    c.arg("run")
        .arg(fed.job.file())
        .env("WEIR_FAILPOINT", "task-fails-after-commits:10")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    fed.job.wait_running();
    // Idle input while checkpoints commit; the next piece's first batch
    // fails.
    std::thread::sleep(Duration::from_millis(1000));
    fed.feed();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        assert!(Instant::now() < deadline, "no restart seen");
        if let Some(s) = try_status(&fed.job)
            && s["restarts"].as_u64().unwrap_or(0) >= 1
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let n = status["restarts"].as_u64().unwrap();
    let (code, metrics) = endpoint(&fed.job).request("GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("weir_restarts_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    let counted: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= n, "{line} vs {n}");
    wait_output(&fed);
    stop(&fed.job, child);
    assert_same_output(&fed.job.output(), &fed.expected, "output across restarts");
}
