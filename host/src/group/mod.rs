//! Group mode (`[source] assignment = "group"`): several `weir run`
//! processes with the same job file share a topic's partitions through the
//! Kafka consumer group, with no cluster manager of Weir's own.
//!
//! One consumer per process is the group member: it subscribes to the
//! topic and never reads records (it pauses what it is assigned). Each
//! partition the group assigns to the process runs as its own run of the
//! job, named `<job>.p<partition>`, reading that one partition with manual
//! `assign`: its own checkpoints in the shared state store, its own owner
//! generation ([`crate::checkpoint::claim`]) and its own transactional id.
//! - **Assigned**: the run restores the partition's newest complete
//!   checkpoint (whoever took it), fences the earlier owner's output and
//!   state writes, and takes a checkpoint at once, so a late write of an
//!   earlier owner never becomes the partition's newest state.
//! - **Revoked** (a rebalance hands it to another process): the run takes
//!   a final checkpoint and commits its output before the member lets the
//!   partition go (the rebalance callback waits for it).
//! - **Lost** (this process was away past its session timeout): the run
//!   stops at once; the new owner has fenced it.
//! - A partition's run that fails ends the process with the error, so the
//!   group moves its partitions to the others.
//!
//! The protocol: the classic group protocol with the cooperative-sticky
//! assignor (incremental rebalances, any broker), or KIP-848
//! (`group_protocol = "consumer"`, brokers from Kafka 4.0).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;

use crate::checkpoint::manifest::{self, Kind};
use crate::checkpoint::store::StateStore;
use crate::config::{Plan, SinkSpec, SourceSpec};
use crate::job::{JobReport, RunOptions};
use crate::kafka::{Client, client_config, external};
use crate::runtime::Trigger;
use crate::sink::dead_letter::DeadLetterSpec;
use crate::source::kafka::{GroupProtocol, KafkaSourceSpec};
use crate::{Error, Result};

/// How long a revoked partition's run may take for its final checkpoint
/// before it is stopped without one (its next owner then recomputes what
/// followed its last checkpoint: still exactly once, only slower).
const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// A partition's run starts once it has been assigned this long: members
/// that join one after another move partitions a few times in a row, and
/// a run not started yet is handed on at no cost.
const START_DELAY: Duration = Duration::from_millis(1500);

/// What a group-mode process did.
#[derive(Debug, Default)]
pub struct GroupReport {
    /// Each partition run this process ran, in the order they ended.
    pub runs: Vec<(usize, JobReport)>,
}

/// The name of partition `p`'s run of group job `job`.
pub fn partition_run_name(job: &str, p: usize) -> String {
    format!("{job}.p{p}")
}

/// Whether `plan` is a group job.
pub fn is_group(plan: &Plan) -> bool {
    matches!(&plan.source, SourceSpec::Kafka(k) if k.group.is_some())
}

/// A partition's run.
struct Owned {
    stop: Arc<AtomicBool>,
    triggers: Sender<Trigger>,
    thread: JoinHandle<Result<JobReport>>,
}

/// The partitions this process runs, shared with the rebalance callbacks.
struct Members {
    plan: Plan,
    owned: BTreeMap<usize, Owned>,
    /// Assigned, not started yet: since when.
    pending: BTreeMap<usize, Instant>,
    /// Released runs still stopping.
    leaving: Vec<(usize, Owned)>,
    /// A partition's run failed: the process ends with it.
    failed: Option<Error>,
    report: GroupReport,
}

impl Members {
    /// Partition `p` was assigned here: its run starts after
    /// [`START_DELAY`].
    fn assigned(&mut self, p: usize) {
        if !self.owned.contains_key(&p) {
            self.pending.entry(p).or_insert_with(Instant::now);
        }
    }

    /// Start the runs assigned for [`START_DELAY`].
    fn start_due(&mut self) {
        let due: Vec<usize> = self
            .pending
            .iter()
            .filter(|(_, at)| at.elapsed() >= START_DELAY)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            self.pending.remove(&p);
            self.start(p);
        }
    }

    /// Start the run of partition `p`.
    fn start(&mut self, p: usize) {
        if self.owned.contains_key(&p) {
            return;
        }
        let plan = partition_plan(&self.plan, p);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        // The first barrier after the restore: the new owner's state
        // supersedes anything an earlier owner writes late.
        let _ = tx.send(Trigger::Checkpoint { stop: false });
        let options = RunOptions {
            stop: stop.clone(),
            resume: true,
            triggers: Some(rx),
            ..RunOptions::default()
        };
        tracing::info!(partition = p, "group: partition assigned; starting its run");
        match std::thread::Builder::new()
            .name(format!("weir-p{p}"))
            .spawn(move || crate::job::run(&plan, options))
        {
            Ok(thread) => {
                self.owned.insert(
                    p,
                    Owned {
                        stop,
                        triggers: tx,
                        thread,
                    },
                );
            }
            Err(e) => {
                self.failed.get_or_insert(Error::Internal(format!(
                    "spawning partition {p}'s run: {e}"
                )));
            }
        }
    }

    /// Stop the runs of partitions `ps`, all at once: each after a final
    /// checkpoint, unless `lost`. Called from the rebalance callback, so it
    /// waits at most [`RELEASE_WAIT`] (not at all for lost partitions,
    /// which another process owns already): a run still going then is
    /// told to stop and finishes on its own (`leaving`). Whatever it
    /// writes after the new owner started is fenced.
    fn release(&mut self, ps: &[usize], lost: bool) {
        let started = Instant::now();
        let mut going = Vec::new();
        for &p in ps {
            if self.pending.remove(&p).is_some() {
                continue;
            }
            let Some(o) = self.owned.remove(&p) else {
                continue;
            };
            if lost || o.triggers.send(Trigger::Checkpoint { stop: true }).is_err() {
                o.stop.store(true, Ordering::Relaxed);
            }
            going.push((p, o));
        }
        let wait = if lost { Duration::ZERO } else { RELEASE_WAIT };
        while started.elapsed() < wait && going.iter().any(|(_, o)| !o.thread.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for (p, o) in going {
            let done = o.thread.is_finished();
            tracing::info!(
                partition = p,
                lost,
                ms = started.elapsed().as_millis() as u64,
                "group: partition released{}",
                if done {
                    ""
                } else {
                    " (its run is still stopping)"
                }
            );
            if done {
                self.ended(p, o.thread.join(), true);
            } else {
                o.stop.store(true, Ordering::Relaxed);
                self.leaving.push((p, o));
            }
        }
    }

    /// Record how partition `p`'s run ended; `asked`: this process stopped
    /// it (a revocation, a loss or the process's stop).
    fn ended(&mut self, p: usize, result: std::thread::Result<Result<JobReport>>, asked: bool) {
        match result {
            Ok(Ok(report)) if asked => self.report.runs.push((p, report)),
            Ok(Ok(_)) => {
                self.failed.get_or_insert(Error::Config(format!(
                    "partition {p}'s run ended by itself; group jobs run until stopped"
                )));
            }
            Ok(Err(Error::Fenced(why))) => {
                tracing::warn!(partition = p, "group: {why}");
            }
            Ok(Err(e)) if asked => {
                // Stopped for a revocation or a loss: the next owner
                // restores the newest checkpoint that completed.
                tracing::warn!(partition = p, "group: partition's run ended with: {e}");
            }
            Ok(Err(e)) => {
                tracing::error!(partition = p, "group: partition's run failed: {e}");
                self.failed.get_or_insert(e);
            }
            Err(_) => {
                self.failed
                    .get_or_insert(Error::Internal(format!("partition {p}'s run panicked")));
            }
        }
    }

    /// Join runs that ended by themselves, and released runs that
    /// finished stopping.
    fn reap(&mut self) {
        let (done, going): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leaving)
            .into_iter()
            .partition(|(_, o)| o.thread.is_finished());
        self.leaving = going;
        for (p, o) in done {
            self.ended(p, o.thread.join(), true);
        }
        let done: Vec<usize> = self
            .owned
            .iter()
            .filter(|(_, o)| o.thread.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for p in done {
            if let Some(o) = self.owned.remove(&p) {
                let stopped = o.stop.load(Ordering::Relaxed);
                self.ended(p, o.thread.join(), stopped);
            }
        }
    }
}

/// The plan of partition `p`'s run.
fn partition_plan(plan: &Plan, p: usize) -> Plan {
    let mut sub = plan.clone();
    sub.name = partition_run_name(&plan.name, p);
    if let SourceSpec::Kafka(k) = &mut sub.source {
        k.only = Some(p);
    }
    sub.partitions = 1;
    sub.parallelism = 1;
    // Its own endpoint on a free port, found as `<job>.p<partition>` in the
    // run folder (`weir status` of a group job lists them).
    if let Some(a) = &mut sub.control {
        a.set_port(0);
    }
    if let Some(DeadLetterSpec::File(path)) = &mut sub.dead_letter {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".p{p}"));
        path.set_file_name(name);
    }
    sub
}

/// Savepoint requests older than this are not taken by partitions that
/// move to a new owner later.
const REQUEST_MAX_AGE_MS: i64 = 3_600_000;

fn requests_prefix(job: &str) -> String {
    format!("jobs/{job}/group/savepoint-requests/")
}

/// Ask every owner of group job `job` for savepoint `name` (of each
/// partition it runs, now or later).
pub fn request_savepoint(store: &StateStore, job: &str, name: &str) -> Result<()> {
    let body = serde_json::json!({ "requested_ms": crate::clock::now_ms() }).to_string();
    store.put(&format!("{}{name}", requests_prefix(job)), body.into())
}

/// Whether partition `p` of group job `job` holds savepoint `name`.
pub fn savepoint_done(store: &StateStore, job: &str, p: usize, name: &str) -> Result<bool> {
    let folder = manifest::folder(&partition_run_name(job, p), Kind::Savepoint, name);
    Ok(store.get(&format!("{folder}/manifest.json"))?.is_some())
}

/// The partition count of a group job's topic.
pub fn topic_partitions(k: &KafkaSourceSpec) -> Result<usize> {
    let probe: BaseConsumer<crate::kafka::Context> =
        client_config(&k.brokers, &k.properties, Client::Probe { committed: true })
            .create_with_context(crate::kafka::Context::default())
            .map_err(external(format!("connecting to {}", k.brokers)))?;
    crate::kafka::partition_count(probe.client(), &k.brokers, &k.topic)
}

/// Savepoint requests this process has seen, and which of its partition
/// runs took them.
#[derive(Default)]
struct Requests {
    /// Request name -> when it was made (ms).
    seen: BTreeMap<String, i64>,
    /// (partition, request) already asked of the partition's run.
    asked: std::collections::BTreeSet<(usize, String)>,
}

impl Requests {
    /// Read the requests in the store; ask each partition run that does
    /// not hold a recent one yet.
    fn poll(&mut self, store: &StateStore, job: &str, m: &Members) -> Result<()> {
        let prefix = requests_prefix(job);
        for (key, _) in store.list(&prefix)? {
            let Some(name) = key.strip_prefix(&prefix) else {
                continue;
            };
            if !self.seen.contains_key(name) {
                let at = store
                    .get(&key)?
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["requested_ms"].as_i64())
                    .unwrap_or(0);
                self.seen.insert(name.to_string(), at);
            }
        }
        let now = crate::clock::now_ms();
        for (name, at) in &self.seen {
            if now.saturating_sub(*at) > REQUEST_MAX_AGE_MS {
                continue;
            }
            for (p, o) in &m.owned {
                if self.asked.contains(&(*p, name.clone())) {
                    continue;
                }
                if !savepoint_done(store, job, *p, name)? {
                    tracing::info!(partition = p, savepoint = %name, "group: savepoint requested");
                    let _ = o.triggers.send(Trigger::Savepoint {
                        name: Some(name.clone()),
                        stop: false,
                        reply: None,
                    });
                }
                self.asked.insert((*p, name.clone()));
            }
        }
        Ok(())
    }
}

/// What group mode does not take, with why.
fn check(plan: &Plan, k: &KafkaSourceSpec) -> Result<()> {
    let refuse = |m: &str| Err(Error::Config(format!("assignment = \"group\": {m}")));
    if plan.checkpoint.is_none() {
        return refuse(
            "needs [checkpoints] and a state store every process reaches (S3): a \
             partition's state moves to its next owner through it",
        );
    }
    if matches!(plan.sink, SinkSpec::Files(_)) {
        return refuse(
            "the sink must be a Kafka topic (or stdout): files would be written per process",
        );
    }
    if k.until.is_some() {
        return refuse("`until` is not taken: a group job runs until stopped");
    }
    Ok(())
}

/// The group member's client context: librdkafka's logs into `tracing`,
/// and the rebalance callbacks that start and stop partitions' runs.
struct MemberContext {
    members: Arc<Mutex<Members>>,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        crate::kafka::Context::default().log(level, fac, msg);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::Context::default().error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            let ps: Vec<usize> = tpl
                .elements()
                .iter()
                .map(|e| e.partition() as usize)
                .collect();
            crate::lock_or_recover(&self.members).release(&ps, lost);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // The member reads nothing: each partition's run does.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!("group: pausing the member's partitions: {e}");
                }
                let mut m = crate::lock_or_recover(&self.members);
                for e in tpl.elements() {
                    m.assigned(e.partition() as usize);
                }
            }
            Rebalance::Error(e) => tracing::warn!("group: rebalance error: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Run `plan` (a group job) until `stop` is set or a partition's run
/// fails: join the group, run the partitions it assigns here, hand them
/// back on revocation; at the end take each one's final checkpoint and
/// leave the group.
pub fn run(plan: &Plan, stop: Arc<AtomicBool>) -> Result<GroupReport> {
    let SourceSpec::Kafka(k) = &plan.source else {
        return Err(Error::Internal("group mode without a Kafka source".into()));
    };
    check(plan, k)?;
    let store = crate::job::open_store(plan)?
        .ok_or_else(|| Error::Internal("a group job without a state store".into()))?;
    crate::checkpoint::claim::refuse_mixed(&store, &plan.name, true)?;
    let members = Arc::new(Mutex::new(Members {
        plan: plan.clone(),
        owned: BTreeMap::new(),
        pending: BTreeMap::new(),
        leaving: Vec::new(),
        failed: None,
        report: GroupReport::default(),
    }));
    let config = client_config(
        &k.brokers,
        &k.properties,
        Client::Member {
            group: &k.group_id,
            kip848: k.group == Some(GroupProtocol::Consumer),
        },
    );
    let consumer: BaseConsumer<MemberContext> = config
        .create_with_context(MemberContext {
            members: members.clone(),
        })
        .map_err(external(format!(
            "creating the group member for {}",
            k.brokers
        )))?;
    consumer.subscribe(&[&k.topic]).map_err(external(format!(
        "joining group {} on {}",
        k.group_id, k.topic
    )))?;
    tracing::info!(group = %k.group_id, topic = %k.topic, protocol = ?k.group, "group: joined");
    let mut requests = Requests::default();
    let mut last_poll = Instant::now();
    let failed = loop {
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            tracing::warn!("group: {e}");
        }
        let mut m = crate::lock_or_recover(&members);
        m.start_due();
        m.reap();
        if let Some(e) = m.failed.take() {
            break Some(e);
        }
        if last_poll.elapsed() >= Duration::from_secs(1) {
            last_poll = Instant::now();
            if let Err(e) = requests.poll(&store, &plan.name, &m) {
                tracing::warn!("group: reading savepoint requests: {e}");
            }
        }
    };
    // Final checkpoints first, then leave the group (the revocation that
    // follows finds nothing left to stop).
    {
        let mut m = crate::lock_or_recover(&members);
        m.pending.clear();
        let owned: Vec<usize> = m.owned.keys().copied().collect();
        m.release(&owned, failed.is_some());
        // Runs still stopping: given a while more, then the process ends
        // (what they did not finish, their next owners recompute).
        let deadline = Instant::now() + RELEASE_WAIT;
        while !m.leaving.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            m.reap();
        }
    }
    consumer.unsubscribe();
    drop(consumer);
    let mut m = crate::lock_or_recover(&members);
    match failed.or_else(|| m.failed.take()) {
        Some(e) => Err(e),
        None => Ok(std::mem::take(&mut m.report)),
    }
}
