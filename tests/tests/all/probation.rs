//! Probation means evidence: a swapped-in version is promoted only after
//! it ran its probation's batches (it waits for input, up to a deadline
//! after which it is rolled back), the answer says what was checked,
//! `weir plugin rollback` works on a stopped job, and a restart strategy
//! takes out a newly promoted version that fails.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use weir_tests::{artifacts, assert_same_output};

use crate::swaps::{
    Fed, digest, latest_digest, outcome, status, stop, swap, swap_command, text, variant, wait_read,
};

/// Swap `seq`'s record as the running job shows it.
fn record(fed: &Fed, seq: u64) -> serde_json::Value {
    let s = status(&fed.job);
    s["swaps"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["seq"] == seq).cloned())
        .unwrap_or_else(|| panic!("no swap {seq}: {s}"))
}

/// Set `fault` in the operator's configuration (the state machine ignores
/// it; the swap-fault plugin fails as it names).
fn set_fault(fed: &Fed, fault: &str) {
    let text = std::fs::read_to_string(fed.job.file()).unwrap();
    std::fs::write(
        fed.job.file(),
        text.replace("gap_ms = 40", &format!("gap_ms = 40, fault = \"{fault}\"")),
    )
    .unwrap();
}

/// The acceptance case: a version that fails on its first record, swapped
/// in while the input is idle, is not promoted however many checkpoint
/// intervals pass; once input arrives it fails on it and is rolled back;
/// the output is exactly the uninterrupted run's.
#[test]
fn a_swap_while_the_input_is_idle_waits_for_input_and_is_then_rolled_back() {
    let extra = "[checkpoints]\ninterval_ms = 100\n";
    let mut fed = Fed::new("probation-idle", 150_000, 2, extra, 3);
    set_fault(&fed, "trap");
    let child = fed.job.spawn(None);
    fed.job.wait_running();
    wait_read(&fed.job, fed.lines_fed());
    let o = swap(&fed.job, Path::new(artifacts::SWAP_FAULT), 4);
    assert!(o.status.success(), "swap request: {}", text(&o));
    // Ten checkpoint intervals of idle input: no evidence, no promotion.
    std::thread::sleep(Duration::from_millis(1000));
    let r = record(&fed, 1);
    assert_eq!(r["outcome"], "probation", "{r}");
    assert_eq!(r["checked_batches"], 0, "{r}");
    fed.feed();
    let r = outcome(&fed.job, 1);
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    let why = r["cause"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        ["trap", "panic", "unreachable"]
            .iter()
            .any(|c| why.contains(c)),
        "the cause names the failure: {why}"
    );
    let original = digest(artifacts::STATE_MACHINE);
    assert_eq!(status(&fed.job)["operators"][0], original.as_str());
    fed.feed();
    // The resumed run counts only what it read itself.
    crate::restart::wait_output(&fed);
    stop(&fed.job, child);
    assert_same_output(&fed.job.output(), &fed.expected, "output after a rollback");
    assert_eq!(latest_digest(&fed.job).as_deref(), Some(original.as_str()));
}

/// A probation whose input stays idle past its deadline is rolled back,
/// not promoted; a swap whose probation ran its batches is promoted, and
/// `weir plugin swap` says how many batches and records it checked.
#[test]
fn a_probation_past_its_deadline_is_rolled_back_and_a_promotion_says_what_it_checked() {
    let extra = "[checkpoints]\ninterval_ms = 100\n";
    let mut fed = Fed::new("probation-deadline", 200_000, 2, extra, 4);
    let child = fed.job.spawn(None);
    fed.job.wait_running();
    wait_read(&fed.job, fed.lines_fed());
    let b = variant(&fed.job.root, "b");
    let o = fed
        .job
        .weir()
        .args(["plugin", "swap"])
        .arg(fed.job.file())
        .args(["--operator", "op", "--plugin"])
        .arg(&b)
        .args(["--probation-batches", "4", "--probation-timeout", "0.5"])
        .output()
        .unwrap();
    let said = text(&o);
    assert!(!o.status.success(), "not promoted: {said}");
    assert!(
        said.contains("rolled back") && said.contains("deadline") && said.contains("0 of its 4"),
        "{said}"
    );
    let original = digest(artifacts::STATE_MACHINE);
    assert_eq!(status(&fed.job)["operators"][0], original.as_str());

    // With input flowing, the same version is promoted, and the answer
    // (waiting for the outcome) names the evidence.
    let waiting = fed
        .job
        .weir()
        .args(["plugin", "swap"])
        .arg(fed.job.file())
        .args(["--operator", "op", "--plugin"])
        .arg(&b)
        .args(["--probation-batches", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Input only once the new version is on probation (its barrier
    // placed): input fed before that would be read partly by the old
    // version, and fewer than 4 batches might reach the new one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let on_probation = |s: &serde_json::Value| {
        s["swaps"].as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["seq"] == 2 && r["outcome"] == "probation")
        })
    };
    while !on_probation(&status(&fed.job)) {
        assert!(
            Instant::now() < deadline,
            "the second swap did not reach its probation"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    fed.feed();
    let o = waiting.wait_with_output().unwrap();
    let said = text(&o);
    assert!(o.status.success(), "promoted: {said}");
    let r = outcome(&fed.job, 2);
    assert_eq!(r["outcome"], "promoted", "{r}");
    let batches = r["checked_batches"].as_u64().unwrap();
    let records = r["checked_records"].as_u64().unwrap();
    assert!(batches >= 4 && records >= batches, "{r}");
    assert!(
        said.contains(&format!(
            "checked {batches} of 4 probation batches ({records} records)"
        )),
        "{said}"
    );
    assert_eq!(
        status(&fed.job)["operators"][0],
        digest(b.to_str().unwrap()).as_str()
    );
    fed.feed();
    fed.feed();
    wait_read(&fed.job, fed.lines_fed());
    stop(&fed.job, child);
    assert_same_output(&fed.job.output(), &fed.expected, "output");
}

/// `weir plugin rollback` of a stopped job: the next run starts on the
/// version before the last promoted swap, from the newest checkpoint, and
/// the output is exactly once.
#[test]
fn a_stopped_jobs_rollback_runs_the_previous_version_next() {
    let extra = "[checkpoints]\ninterval_ms = 200\n";
    let mut fed = Fed::new("probation-offline", 200_000, 2, extra, 4);
    let child = fed.job.spawn(None);
    fed.job.wait_running();
    wait_read(&fed.job, fed.lines_fed());
    let b = variant(&fed.job.root, "b");
    let o = swap(&fed.job, &b, 4);
    assert!(o.status.success(), "swap: {}", text(&o));
    fed.feed();
    assert_eq!(outcome(&fed.job, 1)["outcome"], "promoted");
    wait_read(&fed.job, fed.lines_fed());
    stop(&fed.job, child);
    let new = digest(b.to_str().unwrap());
    assert_eq!(latest_digest(&fed.job).as_deref(), Some(new.as_str()));

    let file = fed.job.file();
    let file = file.to_str().unwrap();
    let said = fed
        .job
        .run_ok(&["plugin", "rollback", file, "--operator", "op"]);
    let original = digest(artifacts::STATE_MACHINE);
    assert!(
        said.contains("scheduled")
            && said.contains("is not running")
            && said.contains(&original[..12]),
        "{said}"
    );
    // Asked again: the same scheduled rollback.
    let again = fed
        .job
        .run_ok(&["plugin", "rollback", file, "--operator", "op"]);
    assert!(again.contains("swap 2 rollback"), "{again}");

    let child = fed.job.spawn(None);
    // It resumes at the end of what was fed: new input shows it running.
    fed.feed();
    fed.job.wait_running();
    assert_eq!(status(&fed.job)["operators"][0], original.as_str());
    fed.feed();
    // The resumed run counts only what it read itself.
    crate::restart::wait_output(&fed);
    stop(&fed.job, child);
    assert_same_output(
        &fed.job.output(),
        &fed.expected,
        "output across an offline rollback",
    );
    assert_eq!(latest_digest(&fed.job).as_deref(), Some(original.as_str()));
    let history = fed.job.run_ok(&["plugin", "history", file]);
    assert!(history.contains("swap 2 rollback"), "{history}");
    assert!(
        !history.contains("scheduled"),
        "taken by the run: {history}"
    );
}

/// A version that passes its probation and fails later (on a record
/// holding `boom`): the restart strategy restarts the job on the version
/// before it, from the newest checkpoint, instead of failing on it again;
/// the output is exactly once.
#[test]
fn a_newly_promoted_version_that_fails_is_rolled_back_by_the_restart_strategy() {
    let extra = "[checkpoints]\ninterval_ms = 100\n\
                 [restart]\nstrategy = \"fixed-delay\"\nattempts = 3\ndelay_ms = 50\n";
    let mut fed = Fed::new("probation-restart", 200_000, 2, extra, 4);
    set_fault(&fed, "boom");
    let child = fed.job.spawn(None);
    fed.job.wait_running();
    wait_read(&fed.job, fed.lines_fed());
    let o = swap_command(&fed.job, Path::new(artifacts::SWAP_FAULT), 4)
        .output()
        .unwrap();
    assert!(o.status.success(), "swap: {}", text(&o));
    fed.feed();
    assert_eq!(outcome(&fed.job, 1)["outcome"], "promoted");
    wait_read(&fed.job, fed.lines_fed());
    // A record the new version traps on (the state machine sends it to
    // the dead letters).
    let events = fed.job.root.join("events");
    std::fs::write(events.join(".boom.csv"), "7,boom,1\n").unwrap();
    std::fs::rename(
        events.join(".boom.csv"),
        events.join("events-000001-boom.csv"),
    )
    .unwrap();
    let original = digest(artifacts::STATE_MACHINE);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no restart on the old version");
        if let Some(s) = crate::restart::try_status(&fed.job)
            && s["restarts"] == 1
            && s["operators"][0] == original.as_str()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fed.feed();
    fed.feed();
    crate::restart::wait_output(&fed);
    stop(&fed.job, child);
    assert_same_output(
        &fed.job.output(),
        &fed.expected,
        "output across a restart that rolled back a new version",
    );
    let history = fed
        .job
        .run_ok(&["plugin", "history", fed.job.file().to_str().unwrap()]);
    assert!(
        history.contains("swap 2 rollback") && history.contains("restart strategy"),
        "{history}"
    );
    let dead = std::fs::read_to_string(fed.job.root.join("dead-letters.jsonl")).unwrap();
    assert!(
        dead.contains("boom"),
        "the old version sent it to the dead letters"
    );
}
