//! `follow` mode: a directory as a continuous stream of files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir::job::{RunOptions, run};
use weir_tests::{artifacts, file_source, read_output, state_machine_plan};

#[test]
fn follow_reads_files_that_arrive_later_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(events.join("0001.csv"), "1,a,1\n1,a,2\n").unwrap();
    let out = dir.path().join("out");
    let mut plan = state_machine_plan(&events, &out, 2, artifacts::STATE_MACHINE);
    file_source(&mut plan).follow = true;
    file_source(&mut plan).poll_interval = Duration::from_millis(20);
    let stop = Arc::new(AtomicBool::new(false));
    let options = RunOptions {
        stop: stop.clone(),
        ..RunOptions::default()
    };
    let job = std::thread::spawn(move || run(&plan, options));

    // New files arrive while the job runs; a hidden file is being written and
    // renamed when complete.
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(events.join("0002.csv"), "2,c,3\n2,c,4\n").unwrap();
    std::fs::write(events.join(".0003.csv"), "3,a,5\n3,b,6\n3,b,7\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::rename(events.join(".0003.csv"), events.join("0003.csv")).unwrap();

    let wanted = 3;
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_output(&out).len() < wanted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let report = job.join().unwrap().unwrap();
    assert_eq!(
        report.totals.records_read, 7,
        "every line read exactly once"
    );
    assert_eq!(
        read_output(&out),
        vec![
            r#"{"address":1,"state":"W","event":"a"}"#,
            r#"{"address":2,"state":"X","event":"c"}"#,
            r#"{"address":3,"state":"Y","event":"b"}"#,
        ]
    );
}
