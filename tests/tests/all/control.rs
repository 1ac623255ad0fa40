//! The control endpoint as an attacker or a careless client meets it: no
//! token, a wrong token, a web page (Origin, Host), slow and silent
//! clients, oversized requests, too many connections, and a run folder
//! or address file somebody else prepared.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use weir::runtime::control::{Endpoint, HEAD_DEADLINE, MAX_CONNECTIONS};
use weir_tests::artifacts;

use crate::savepoints::Job;

/// The job's control endpoint (address and token), from its run folder.
fn endpoint(job: &Job) -> weir::Result<Endpoint> {
    weir::runtime::control::find_in(&job.root.join("run"), &job.name)
}

/// Start `job`, wait until it reads; its endpoint.
fn start(job: &Job) -> (Child, Endpoint) {
    let child = job.spawn(None);
    job.wait_running();
    (child, endpoint(job).unwrap())
}

/// Stop `job` with `weir stop`; it must exit cleanly.
fn stop(job: &Job, mut child: Child) {
    job.run_ok(&["stop", job.file().to_str().unwrap()]);
    let status = child.wait().unwrap();
    assert!(status.success(), "stopped cleanly: {status}");
}

/// The job still runs and answers a proper request.
fn still_running(child: &mut Child, endpoint: &Endpoint) {
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the job still runs");
    let (status, body) = endpoint.request("GET", "/status").unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Send `head` as it is on a new connection; the status and the whole
/// response.
fn raw(addr: &str, head: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    read_response(&mut conn)
}

fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// A request head with these extra header lines.
fn head(method: &str, path: &str, host: &str, headers: &[String]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("Connection: close\r\n\r\n");
    h
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[test]
fn a_request_without_the_token_or_with_a_wrong_one_is_refused_and_the_job_keeps_running() {
    let job = Job::following("control-token", "");
    let (mut child, ep) = start(&job);
    let addr = ep.addr.as_str();
    assert_eq!(ep.token.len(), 64, "32 random bytes in hex");
    assert!(ep.token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(ep.pid, child.id());

    let last = if ep.token.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &ep.token[..63]);
    let attempts = [
        vec![],
        vec![bearer(&wrong)],
        vec![bearer("")],
        vec![bearer(&ep.token[..32])],
        vec![format!("Authorization: Basic {}", ep.token)],
        vec![format!("Authorization: {}", ep.token)],
    ];
    for headers in &attempts {
        for (method, path) in [
            ("GET", "/status"),
            ("GET", "/metrics"),
            ("POST", "/stop"),
            ("POST", "/savepoint?name=stolen"),
        ] {
            let (status, response) = raw(addr, &head(method, path, addr, headers));
            assert_eq!(status, 401, "{method} {path} {headers:?}: {response}");
            assert!(!response.contains("records_read"), "{response}");
        }
    }
    still_running(&mut child, &ep);
    let list = job.run_ok(&["savepoint", "list", job.file().to_str().unwrap()]);
    assert!(!list.contains("stolen"), "no savepoint was taken: {list}");

    // The right token, by hand, is enough.
    let (status, response) = raw(addr, &head("GET", "/status", addr, &[bearer(&ep.token)]));
    assert_eq!(status, 200, "{response}");
    stop(&job, child);
    assert!(endpoint(&job).is_err(), "the address file is gone");
}

#[test]
fn a_request_from_a_web_page_or_another_host_name_is_refused_even_with_the_token() {
    let job = Job::following("control-origin", "");
    let (mut child, ep) = start(&job);
    let addr = ep.addr.as_str();
    let port = addr.rsplit(':').next().unwrap();
    let token = bearer(&ep.token);
    let refused = [
        (
            addr.to_string(),
            vec![token.clone(), "Origin: http://evil.example".into()],
        ),
        (
            addr.to_string(),
            vec![token.clone(), format!("Origin: http://{addr}")],
        ),
        (addr.to_string(), vec![token.clone(), "Origin: null".into()]),
        (
            addr.to_string(),
            vec![token.clone(), "Sec-Fetch-Site: cross-site".into()],
        ),
        // DNS rebinding: a name the attacker controls, resolved to 127.0.0.1.
        (format!("evil.example:{port}"), vec![token.clone()]),
        ("127.0.0.1:1".to_string(), vec![token.clone()]),
        (
            addr.to_string(),
            vec![token.clone(), format!("Host: evil.example:{port}")],
        ),
    ];
    for (host, headers) in &refused {
        for (method, path) in [("POST", "/stop"), ("GET", "/status")] {
            let (status, response) = raw(addr, &head(method, path, host, headers));
            assert_eq!(
                status, 403,
                "{method} {path} Host {host} {headers:?}: {response}"
            );
        }
    }
    still_running(&mut child, &ep);
    // localhost:PORT is this endpoint too.
    let (status, response) = raw(
        addr,
        &head("GET", "/status", &format!("localhost:{port}"), &[token]),
    );
    assert_eq!(status, 200, "{response}");
    stop(&job, child);
}

/// Run `weir ARGS`; the output and how long it took.
fn timed(job: &Job, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = job.weir().args(args).output().unwrap();
    (out, started.elapsed())
}

#[test]
fn slow_and_silent_clients_do_not_hold_up_savepoints_or_stop() {
    let job = Job::following("control-slow", "");
    let (mut child, ep) = start(&job);
    let file = job.file();
    let file = file.to_str().unwrap();

    // Silent connections: a server answering one at a time would wait
    // HEAD_DEADLINE for each before the CLI's turn.
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&ep.addr).unwrap())
        .collect();
    // A trickle: one byte a second, within any per-read timeout.
    let addr = ep.addr.clone();
    let trickle = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let started = Instant::now();
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        for b in b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n" {
            conn.write_all(&[*b]).unwrap();
            // Wait a second for an answer before the next byte.
            if let Ok(n @ 1..) = conn.read(&mut buf) {
                response.extend_from_slice(&buf[..n]);
                break;
            }
        }
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = conn.read_to_end(&mut response);
        (
            started.elapsed(),
            String::from_utf8_lossy(&response).into_owned(),
        )
    });
    std::thread::sleep(Duration::from_millis(200));

    let (out, took) = timed(
        &job,
        &["savepoint", "trigger", file, "--name", "while-slow"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"name\":\"while-slow\""),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "answered at once: {took:?}");

    // The trickle is cut at the head deadline, not kept alive byte by byte.
    let (lasted, response) = trickle.join().unwrap();
    assert!(
        lasted < HEAD_DEADLINE + Duration::from_secs(3),
        "cut after {lasted:?}: {response}"
    );
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");

    // More silent ones (the first ones may still hold their slots for a
    // moment after their 408), then stop with a savepoint.
    let more: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(&ep.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (out, took) = timed(&job, &["stop", file, "--savepoint", "--name", "last"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"name\":\"last\""),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "answered at once: {took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end with slow clients connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "stopped cleanly: {status}");
    drop((silent, more));
}

#[test]
fn an_oversized_request_head_is_refused() {
    let job = Job::following("control-big", "");
    let (mut child, ep) = start(&job);
    let addr = ep.addr.as_str();
    let pad = format!("X-Pad: {}", "a".repeat(16 * 1024));
    let (status, response) = raw(
        addr,
        &head("GET", "/status", addr, &[bearer(&ep.token), pad.clone()]),
    );
    assert_eq!(status, 431, "{response}");
    // Many small headers add up the same.
    let many: Vec<String> = (0..2000).map(|i| format!("X-H{i}: v")).collect();
    let (status, response) = raw(addr, &head("GET", "/status", addr, &many));
    assert_eq!(status, 431, "{response}");
    // A head that does not end is cut as well.
    let (status, response) = raw(addr, &"a".repeat(40 * 1024));
    assert_eq!(status, 431, "{response}");
    still_running(&mut child, &ep);
    stop(&job, child);
}

#[test]
fn too_many_connections_are_answered_503_and_the_endpoint_recovers() {
    let job = Job::following("control-busy", "");
    let (mut child, ep) = start(&job);
    let opened = Instant::now();
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(&ep.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, response) = raw(
        &ep.addr,
        &head("GET", "/status", &ep.addr, &[bearer(&ep.token)]),
    );
    assert!(
        opened.elapsed() < HEAD_DEADLINE,
        "checked while all are held"
    );
    assert_eq!(status, 503, "{response}");
    // The silent ones time out; then requests are served again.
    std::thread::sleep(HEAD_DEADLINE + Duration::from_secs(1));
    still_running(&mut child, &ep);
    drop(held);
    stop(&job, child);
}

/// `weir run` of `job` fails at once; its stderr.
fn run_fails(job: &Job) -> String {
    let (out, took) = timed(job, &["run", job.file().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the run was refused: {err}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    err
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_run_folder_that_is_a_symlink_or_open_to_others_is_refused() {
    // A symbolic link to somebody else's folder.
    let job = Job::new("control-symlink", 2_000, artifacts::STATE_MACHINE, 1, "");
    let run = job.root.join("run");
    let elsewhere = job.root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&elsewhere, &run).unwrap();
    let err = run_fails(&job);
    assert!(err.contains("run folder"), "{err}");
    assert!(err.contains(&run.display().to_string()), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert!(entries(&elsewhere).is_empty(), "{:?}", entries(&elsewhere));
    // The CLI does not read through it either.
    std::fs::write(
        elsewhere.join("control-symlink.addr"),
        r#"{"addr":"127.0.0.1:9","token":"00","pid":1}"#,
    )
    .unwrap();
    let (out, _) = timed(&job, &["stop", job.file().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("symbolic link"), "{err}");

    // A folder everybody may write to.
    let job = Job::new("control-open", 2_000, artifacts::STATE_MACHINE, 1, "");
    let run = job.root.join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = run_fails(&job);
    assert!(err.contains(&run.display().to_string()), "{err}");
    assert!(err.contains("mode is 777"), "{err}");
    assert!(entries(&run).is_empty(), "{:?}", entries(&run));

    // Group access alone is refused too.
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o750)).unwrap();
    let err = run_fails(&job);
    assert!(err.contains("mode is 750"), "{err}");
    assert!(entries(&run).is_empty(), "{:?}", entries(&run));
}

#[test]
fn a_missing_run_folder_is_made_private_and_a_planted_address_link_is_not_followed() {
    let job = Job::following("control-planted", "");
    let run = job.root.join("run");
    // The first run makes the folder, 0700, and a 0600 address file.
    let (child, _) = start(&job);
    assert_eq!(std::fs::metadata(&run).unwrap().mode() & 0o777, 0o700);
    let addr_file = run.join("control-planted.addr");
    let meta = std::fs::symlink_metadata(&addr_file).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o777, 0o600);
    stop(&job, child);
    assert!(!addr_file.exists(), "removed when the job ends");

    // A link planted where the address file goes is replaced, not written
    // through.
    let victim = job.root.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    symlink(&victim, &addr_file).unwrap();
    let (child, ep) = start(&job);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let meta = std::fs::symlink_metadata(&addr_file).unwrap();
    assert!(meta.is_file(), "the link was replaced");
    assert_eq!(meta.mode() & 0o777, 0o600);
    let (status, _) = ep.request("GET", "/status").unwrap();
    assert_eq!(status, 200);
    stop(&job, child);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(entries(&run).is_empty(), "{:?}", entries(&run));
}

/// `weir_checkpoints_failed_total` as `/metrics` says it.
fn failed_checkpoints(ep: &Endpoint) -> u64 {
    let (code, body) = ep.request("GET", "/metrics").unwrap();
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find(|l| l.starts_with("weir_checkpoints_failed_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no weir_checkpoints_failed_total in {body}"))
}

#[test]
fn a_savepoint_name_in_use_is_refused_with_409_and_is_not_a_failed_checkpoint() {
    let job = Job::following("control-name-taken", "");
    let (mut child, ep) = start(&job);
    let file = job.file();
    let file = file.to_str().unwrap();
    job.run_ok(&["savepoint", "trigger", file, "--name", "before-fix"]);
    let failed = failed_checkpoints(&ep);

    let (code, body) = ep.request("POST", "/savepoint?name=before-fix").unwrap();
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("`before-fix` is taken"), "{body}");

    let out = job
        .weir()
        .args(["savepoint", "trigger", file, "--name", "before-fix"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a taken name fails the command: {err}"
    );
    assert!(
        err.contains("savepoint refused") && err.contains("`before-fix` is taken"),
        "{err}"
    );

    // Nor does a stop with a taken name stop the job.
    let out = job
        .weir()
        .args(["stop", file, "--savepoint", "--name", "before-fix"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("`before-fix` is taken"), "{err}");
    still_running(&mut child, &ep);

    assert_eq!(
        failed_checkpoints(&ep),
        failed,
        "no failed checkpoint counted"
    );
    let (_, status) = ep.request("GET", "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["checkpoints_failed"], 0, "{status}");

    job.run_ok(&["stop", file]);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stopped cleanly: {log}");
    assert!(!log.contains("checkpoint failed"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn weir_stop_returns_once_the_job_has_exited_so_it_can_run_again_at_once() {
    let job = Job::following("control-stop-waits", "");
    let (mut child, _) = start(&job);
    let file = job.file();
    let file = file.to_str().unwrap();
    let said = job.run_ok(&["stop", file]);
    assert!(said.contains("has exited"), "{said}");
    assert!(
        child.try_wait().unwrap().is_some(),
        "the job has exited when `weir stop` returns"
    );

    // A run right away is not refused as already running.
    let mut again = job.spawn(None);
    job.wait_running();
    assert!(again.try_wait().unwrap().is_none(), "the second run runs");

    // `--no-wait` returns once the job is told; it exits on its own.
    let said = job.run_ok(&["stop", file, "--no-wait"]);
    assert!(!said.contains("has exited"), "{said}");
    let status = again.wait().unwrap();
    assert!(status.success(), "stopped cleanly: {status}");
}
