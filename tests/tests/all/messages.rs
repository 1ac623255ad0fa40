//! What a refused restore and `weir diff` say: a manifest with no
//! partitions is called damaged (not "set partitions = 0"), another job's
//! savepoint says whose it is, a `file://` URL naming nothing creates
//! nothing, and `weir diff` names malformed and non-UTF-8 lines and exits 1
//! when the outputs differ.

use std::path::Path;

use crate::savepoints::Job;
use weir_tests::artifacts;

/// `weir run JOB` plus `args`, expected to be refused: its stderr.
fn refused(job: &Job, args: &[&str]) -> String {
    let out = job
        .weir()
        .arg("run")
        .arg(job.file())
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "refused: {err}");
    err
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            out.extend(tree(&e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_manifest_without_partitions_is_called_damaged() {
    let job = Job::new(
        "msg-no-partitions",
        2_000,
        artifacts::STATE_MACHINE,
        1,
        "[checkpoints]\ninterval_ms = 100\n",
    );
    let file = job.file();
    job.run_ok(&["run", file.to_str().unwrap()]);
    let state = job
        .root
        .join("weir-state/jobs/msg-no-partitions/checkpoints");
    let newest = tree(&state)
        .into_iter()
        .rfind(|p| p.ends_with("manifest.json"))
        .unwrap();
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&newest).unwrap()).unwrap();
    m["partitions"] = serde_json::json!([]);
    std::fs::write(&newest, m.to_string()).unwrap();
    let err = refused(&job, &["--from-savepoint", "latest"]);
    assert!(!err.contains("partitions = 0"), "{err}");
    assert!(
        err.contains("no partitions") && err.contains("damaged"),
        "{err}"
    );
}

#[test]
fn another_jobs_savepoint_says_whose_it_is() {
    let job = Job::new(
        "msg-mine",
        2_000,
        artifacts::STATE_MACHINE,
        1,
        "[checkpoints]\ninterval_ms = 100\n",
    );
    let file = job.file();
    // The other job: the same file under another name, same store.
    let text = std::fs::read_to_string(&file).unwrap();
    let other = job.root.join("other.toml");
    std::fs::write(
        &other,
        text.replace("name = \"msg-mine\"", "name = \"msg-theirs\"")
            .replace("path = \"out\"", "path = \"out-theirs\""),
    )
    .unwrap();
    job.run_ok(&["run", other.to_str().unwrap()]);
    // Its newest checkpoint, kept as savepoint `theirs`.
    let jobs = job.root.join("weir-state/jobs/msg-theirs");
    let newest = tree(&jobs.join("checkpoints"))
        .into_iter()
        .rfind(|p| p.ends_with("manifest.json"))
        .unwrap();
    let folder = Path::new(&newest).parent().unwrap();
    std::fs::create_dir_all(jobs.join("savepoints")).unwrap();
    std::fs::rename(folder, jobs.join("savepoints/theirs")).unwrap();
    let err = refused(&job, &["--from-savepoint", "theirs"]);
    assert!(
        err.contains("belongs to job `msg-theirs`"),
        "another job's savepoint: {err}"
    );
}

#[test]
fn a_file_url_naming_nothing_creates_nothing() {
    let job = Job::new("msg-url", 2_000, artifacts::STATE_MACHINE, 1, "");
    let before = tree(&job.root);
    let missing = job.root.join("nowhere/jobs/x/savepoints/y");
    let url = format!("file://{}", missing.display());
    let err = refused(&job, &["--from-savepoint", &url]);
    assert!(err.contains("no such folder"), "{err}");
    assert!(!job.root.join("nowhere").exists(), "{err}");
    let after: Vec<String> = tree(&job.root)
        .into_iter()
        .filter(|p| !p.contains("/run"))
        .collect();
    let before: Vec<String> = before.into_iter().filter(|p| !p.contains("/run")).collect();
    assert_eq!(after, before, "no weir-state/ or other folder left");
}

#[test]
fn weir_diff_names_malformed_lines_and_exits_1_when_outputs_differ() {
    let job = Job::new("msg-diff", 10, artifacts::STATE_MACHINE, 1, "");
    let (a, b) = (job.root.join("a"), job.root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let lines: &[u8] = b"{\"k\":1,\"v\":0}\n{\"k\":\"1\",\"v\":0}\nnot json\n{\"k\":\xff}\n";
    std::fs::write(a.join("part-0000-000000.jsonl"), lines).unwrap();
    std::fs::write(b.join("part-0000-000000.jsonl"), lines).unwrap();
    let (code, said) = job.diff(&[a.to_str().unwrap(), b.to_str().unwrap(), "--key", "k"]);
    assert_eq!(code, 0, "equal: {said}");
    assert!(said.contains("malformed 2 in A, 2 in B"), "{said}");
    assert!(said.contains("part-0000-000000.jsonl:3"), "{said}");
    assert!(
        said.contains("part-0000-000000.jsonl:4 (not UTF-8)"),
        "{said}"
    );
    std::fs::write(
        b.join("part-0000-000000.jsonl"),
        b"{\"k\":1,\"v\":0}\n{\"k\":\"1\",\"v\":1}\nnot json\n{\"k\":\xff}\n",
    )
    .unwrap();
    let (code, said) = job.diff(&[a.to_str().unwrap(), b.to_str().unwrap(), "--key", "k"]);
    assert_eq!(code, 1, "different: {said}");
    assert!(said.contains("changed key \"1\":"), "{said}");
    assert!(said.contains("equal 1  changed 1"), "{said}");
}
