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

use crate::config::{Plan, SinkSpec, SourceSpec};
use crate::job::{JobReport, RunOptions};
use crate::kafka::{Client, client_config, external};
use crate::runtime::Trigger;
use crate::sink::dead_letter::DeadLetterSpec;
use crate::source::kafka::{GroupProtocol, KafkaSourceSpec};
use crate::{Error, Result};

/// How long a revoked partition's run may take for its final checkpoint
/// before it is stopped without one.
const RELEASE_WAIT: Duration = Duration::from_secs(60);

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
    /// A partition's run failed: the process ends with it.
    failed: Option<Error>,
    report: GroupReport,
}

impl Members {
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
                self.failed
                    .get_or_insert(Error::Internal(format!("spawning partition {p}'s run: {e}")));
            }
        }
    }

    /// Stop partition `p`'s run: after a final checkpoint, unless `lost`.
    fn release(&mut self, p: usize, lost: bool) {
        let Some(o) = self.owned.remove(&p) else {
            return;
        };
        let started = Instant::now();
        if lost {
            o.stop.store(true, Ordering::Relaxed);
        } else if o.triggers.send(Trigger::Checkpoint { stop: true }).is_err() {
            o.stop.store(true, Ordering::Relaxed);
        }
        while !o.thread.is_finished() {
            if started.elapsed() > RELEASE_WAIT {
                o.stop.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let result = o.thread.join();
        tracing::info!(
            partition = p,
            lost,
            ms = started.elapsed().as_millis() as u64,
            "group: partition released"
        );
        self.ended(p, result, true);
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

    /// Join runs that ended by themselves.
    fn reap(&mut self) {
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
    sub.control = None;
    if let Some(DeadLetterSpec::File(path)) = &mut sub.dead_letter {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".p{p}"));
        path.set_file_name(name);
    }
    sub
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
            let mut m = crate::lock_or_recover(&self.members);
            for e in tpl.elements() {
                m.release(e.partition() as usize, lost);
            }
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
                    m.start(e.partition() as usize);
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
    let members = Arc::new(Mutex::new(Members {
        plan: plan.clone(),
        owned: BTreeMap::new(),
        failed: None,
        report: GroupReport::default(),
    }));
    let mut config = client_config(
        &k.brokers,
        &k.properties,
        Client::Source { group: &k.group_id },
    );
    match k.group {
        Some(GroupProtocol::Consumer) => config.set("group.protocol", "consumer"),
        _ => config.set("partition.assignment.strategy", "cooperative-sticky"),
    };
    let consumer: BaseConsumer<MemberContext> = config
        .create_with_context(MemberContext {
            members: members.clone(),
        })
        .map_err(external(format!("creating the group member for {}", k.brokers)))?;
    consumer
        .subscribe(&[&k.topic])
        .map_err(external(format!("joining group {} on {}", k.group_id, k.topic)))?;
    tracing::info!(group = %k.group_id, topic = %k.topic, protocol = ?k.group, "group: joined");
    let failed = loop {
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Err(e)) => tracing::warn!("group: {e}"),
            Some(Ok(_)) | None => {}
        }
        let mut m = crate::lock_or_recover(&members);
        m.reap();
        if let Some(e) = m.failed.take() {
            break Some(e);
        }
    };
    // Final checkpoints first, then leave the group (the revocation that
    // follows finds nothing left to stop).
    {
        let mut m = crate::lock_or_recover(&members);
        let owned: Vec<usize> = m.owned.keys().copied().collect();
        for p in owned {
            m.release(p, failed.is_some());
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
