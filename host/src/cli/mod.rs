//! The `weir` command line (clap; `anyhow` for errors, as CLI glue).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::checkpoint::store::StateStore;
use crate::checkpoint::{manifest, restore};
use crate::config::{JobFile, Plan};
use crate::demo::{DemoConfig, run_demo};
use crate::generate::{GenerateConfig, generate};
use crate::job::{RunOptions, run};
use crate::runtime::control;
use crate::runtime::swap::DEFAULT_PROBATION_BATCHES;
use crate::source::Completion;
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A stream processor whose operators are WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file until its input ends (or, with `follow`, until Ctrl-C).
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Override the job's parallelism.
        #[arg(long)]
        parallelism: Option<usize>,
        /// Start from a savepoint or checkpoint: its name, `latest`,
        /// `before:TIME` (ms or YYYY-MM-DDTHH:MM:SSZ, by event time), or the
        /// URL of a savepoint folder.
        #[arg(long, value_name = "SAVEPOINT")]
        from_savepoint: Option<String>,
    },
    /// Savepoints of a job: trigger (on the running job), list, show, delete.
    Savepoint {
        #[command(subcommand)]
        command: SavepointCommand,
    },
    /// Stop a running job, optionally with a final savepoint.
    Stop {
        /// The job file.
        job: PathBuf,
        /// Take a savepoint first; the job stops right after it.
        #[arg(long)]
        savepoint: bool,
        /// Name of that savepoint.
        #[arg(long)]
        name: Option<String>,
    },
    /// Generate state-machine events into a folder of CSV files.
    Generate {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Number of events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Random seed (same seed, same files).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Most state machines running at once.
        #[arg(long, default_value_t = 1000)]
        max_machines: usize,
        /// Lowest address.
        #[arg(long, default_value_t = 0)]
        min_address: u32,
        /// Highest address (exclusive).
        #[arg(long, default_value_t = 100_000)]
        max_address: u32,
        /// Probability of an invalid event.
        #[arg(long, default_value_t = 0.001)]
        error_prob: f64,
        /// Roll to a new file after this many bytes.
        #[arg(long, default_value_t = 64 << 20)]
        file_size: u64,
        /// Events per millisecond of event time.
        #[arg(long, default_value_t = 1)]
        events_per_ms: u64,
    },
    /// Work with components.
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Hot-swap plugins of a running job: swap, rollback, history.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// A what-if run: a second job from a savepoint of JOB over the same
    /// input, with a new plugin, writing to its own output folder (compare
    /// it with `weir diff`).
    Fork {
        /// The job file of the job to fork.
        job: PathBuf,
        /// The savepoint (or checkpoint) of JOB to start from: its name,
        /// `latest`, `before:TIME`.
        #[arg(long, value_name = "SAVEPOINT")]
        from_savepoint: String,
        /// The new component.
        #[arg(long)]
        plugin: PathBuf,
        /// The operator it replaces (default: the job's only operator).
        #[arg(long)]
        operator: Option<String>,
        /// Output folder (part files, as the file sink writes them, and
        /// `dead-letters.jsonl`).
        #[arg(long)]
        out: PathBuf,
        /// Stop before the first record at or after this event time (ms,
        /// or YYYY-MM-DDTHH:MM:SSZ); default: the end of the input.
        #[arg(long, value_name = "END")]
        until: Option<String>,
        /// Worker threads of the fork (its share of the CPU).
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
        /// Scheduling niceness of the fork (0-19): the live job keeps the
        /// CPU first.
        #[arg(long, default_value_t = 10)]
        nice: i32,
    },
    /// Compare two outputs (folders of part files): equal, changed, missing
    /// and extra records by key, and the first examples of each.
    Diff {
        /// The first output (the baseline).
        a: PathBuf,
        /// The second output.
        b: PathBuf,
        /// JSON field that holds a record's key (default: the whole line).
        #[arg(long)]
        key: Option<String>,
        /// How many examples of each kind to print.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate events and run the state-machine plugin over them (no servers).
    Demo {
        /// Number of events.
        #[arg(long, default_value_t = 3_000_000)]
        events: u64,
        /// Tasks.
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        /// Distinct addresses.
        #[arg(long, default_value_t = 100_000)]
        addresses: u32,
        /// Working folder (default: a folder under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SavepointCommand {
    /// Take a savepoint of the running job and wait until it is complete.
    Trigger {
        /// The job file.
        job: PathBuf,
        /// Savepoint name (default sp-<id>).
        #[arg(long)]
        name: Option<String>,
    },
    /// List checkpoints and savepoints: name, wall time, event time,
    /// position, size.
    List {
        /// The job file.
        job: PathBuf,
    },
    /// Print a savepoint's manifest; with `--keys`, also count and list the
    /// keys of every task's state (read from the keyed state envelope,
    /// without the plugin).
    Show {
        /// The job file.
        job: PathBuf,
        /// Savepoint name, checkpoint id, `latest` or `before:TIME`.
        name: String,
        /// Count the keys and list some of them.
        #[arg(long)]
        keys: bool,
        /// How many keys to list per task and operator with `--keys`.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Delete a savepoint.
    Delete {
        /// The job file.
        job: PathBuf,
        /// Savepoint name.
        name: String,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Swap an operator of the running job to a new component: pre-flight
    /// (compile, WIT version, imports, state version) before anything
    /// pauses, the swap at a barrier, then a probation; a failure of the
    /// new version rolls back to the old one with no record lost or
    /// duplicated. Waits for the outcome.
    Swap {
        /// The job file.
        job: PathBuf,
        /// The operator to swap.
        #[arg(long)]
        operator: String,
        /// The new component.
        #[arg(long)]
        plugin: PathBuf,
        /// Batches the new version must run before its probation can end
        /// (then at the next checkpoint).
        #[arg(long, default_value_t = DEFAULT_PROBATION_BATCHES)]
        probation_batches: u64,
        /// Return once swapped, without waiting for the probation's outcome.
        #[arg(long)]
        no_wait: bool,
    },
    /// Swap an operator back to the version before its last promoted swap.
    Rollback {
        /// The job file.
        job: PathBuf,
        /// The operator.
        #[arg(long)]
        operator: String,
        /// Batches of probation, as for `swap`.
        #[arg(long, default_value_t = DEFAULT_PROBATION_BATCHES)]
        probation_batches: u64,
    },
    /// List the job's swaps: times, digests, pause and outcome (read from
    /// the state store; the job need not run).
    History {
        /// The job file.
        job: PathBuf,
    },
}

#[derive(Subcommand)]
enum ComponentCommand {
    /// Turn a core module built with `weir-guest` (for wasm32-unknown-unknown)
    /// into a plugin component.
    New {
        /// The core module (`target/wasm32-unknown-unknown/release/<crate>.wasm`).
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        out: PathBuf,
    },
}

fn load_plan(job: &Path) -> anyhow::Result<Plan> {
    let file = JobFile::load(job)?;
    let base = job.parent().unwrap_or(Path::new("."));
    let name = job
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(file.resolve(&name, base)?)
}

fn open_store(plan: &Plan) -> anyhow::Result<StateStore> {
    let c = plan
        .checkpoint
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("job `{}` has checkpoints disabled", plan.name))?;
    Ok(StateStore::open(&c.store, Path::new("."))?)
}

fn savepoint(command: SavepointCommand) -> anyhow::Result<()> {
    match command {
        SavepointCommand::Trigger { job, name } => savepoint_trigger(&job, name),
        SavepointCommand::List { job } => savepoint_list(&job),
        SavepointCommand::Show {
            job,
            name,
            keys,
            limit,
        } => savepoint_show(&job, &name, keys.then_some(limit)),
        SavepointCommand::Delete { job, name } => savepoint_delete(&job, &name),
    }
}

/// `savepoint trigger`: ask the running job, wait until it is complete.
fn savepoint_trigger(job: &Path, name: Option<String>) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let endpoint = control::find(&plan.name)?;
    let path = match name {
        Some(n) => format!("/savepoint?name={n}"),
        None => "/savepoint".into(),
    };
    let (status, body) = endpoint.request("POST", &path)?;
    anyhow::ensure!(status == 200, "savepoint failed ({status}): {body}");
    println!("{body}");
    Ok(())
}

/// `savepoint list`: one line per checkpoint and savepoint, oldest first.
fn savepoint_list(job: &Path) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let store = open_store(&plan)?;
    println!(
        "{:<12} {:<28} {:<26} {:<26} {:>12}  position",
        "kind", "name", "wall time", "event time (watermark)", "bytes"
    );
    let (found, corrupt) = manifest::list_all(&store, &plan.name)?;
    for c in &corrupt {
        let name = c.folder.rsplit('/').next().unwrap_or_default();
        println!(
            "{:<12} {:<28} {}",
            "CORRUPT",
            name,
            format_args!(
                "{} (restore skips it; `weir savepoint delete` removes it)",
                c.detail
            )
        );
    }
    for f in found {
        let m = &f.manifest;
        let pos = describe_position(m);
        println!(
            "{:<12} {:<28} {:<26} {:<26} {:>12}  {pos}",
            format!("{:?}", m.kind).to_lowercase(),
            m.name,
            manifest::format_time(m.wall_time_ms),
            manifest::format_time(m.watermark),
            m.state_bytes()
        );
    }
    Ok(())
}

/// `savepoint show`: the manifest, or with `keys_limit` each partition's
/// key count and its first keys.
fn savepoint_show(job: &Path, name: &str, keys_limit: Option<usize>) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let store = open_store(&plan)?;
    let Some(limit) = keys_limit else {
        let f = manifest::select(&store, &plan.name, name)?;
        println!("{}", serde_json::to_string_pretty(&f.manifest)?);
        return Ok(());
    };
    let restored = restore::load(&store, &plan.name, name)?;
    for (t, task) in restored.partitions.iter().enumerate() {
        for op in &task.operators {
            print_keys(t, op, limit)?;
        }
    }
    Ok(())
}

/// Partition `t`'s state of `op`, read from the keyed state envelope
/// without the plugin: counts, then the `limit` smallest keys.
fn print_keys(t: usize, op: &restore::RestoredOperator, limit: usize) -> anyhow::Result<()> {
    let env = weir_envelope::Envelope::parse(&op.state).map_err(|e| {
        anyhow::anyhow!(
            "partition {t}, operator `{}`: not a keyed state envelope: {e}",
            op.name
        )
    })?;
    println!(
        "partition {t} operator `{}`: state version {}, {} keys, {} operator bytes, {} timers",
        op.name,
        env.state_version,
        env.count,
        env.operator.len(),
        op.timers.len()
    );
    // The smallest keys, whatever order the snapshot wrote them in (a
    // chunked snapshot writes them in its map's order); reading them all
    // also checks the whole envelope.
    let mut entries = env
        .entries()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("partition {t}: {e}"))?;
    if entries.len() > limit {
        entries.select_nth_unstable_by(limit, |a, b| a.0.cmp(b.0));
        entries.truncate(limit);
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, value) in entries {
        println!(
            "  {:<24} {} bytes: {}",
            String::from_utf8_lossy(key),
            value.len(),
            crate::digest::hex(value)
        );
    }
    Ok(())
}

/// `savepoint delete`: a savepoint (never a checkpoint) of the job.
fn savepoint_delete(job: &Path, name: &str) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let store = open_store(&plan)?;
    let folder = manifest::folder(&plan.name, manifest::Kind::Savepoint, name);
    // Whatever its manifest says (also a corrupt or missing one): a
    // savepoint is its folder.
    anyhow::ensure!(
        !store.list(&format!("{folder}/"))?.is_empty(),
        "no savepoint named `{name}` for job `{}`",
        plan.name
    );
    store.delete_prefix(&format!("{folder}/"))?;
    println!("deleted savepoint {name}");
    Ok(())
}

/// A source position for `savepoint list`: the file source's as
/// `file@offset (line n)`, Kafka's as `kafka topic p:offset ...`, others as
/// their JSON.
fn describe_position(m: &manifest::Manifest) -> String {
    let p = &m.source;
    let file = crate::source::file::FilePosition::from_value(&p.position);
    match (p.connector.as_str(), file) {
        ("files", Ok(f)) => match f.file {
            Some(file) => format!("{file}@{} (line {})", f.offset, f.line),
            None => "start".into(),
        },
        ("kafka", _) => {
            let offsets: Vec<String> = m
                .partitions
                .iter()
                .map(|e| format!("{}:{}", e.partition, e.source["offset"]))
                .collect();
            let topic = p.position["topic"].as_str().unwrap_or("?");
            format!("kafka {topic} {}", offsets.join(" "))
        }
        _ => format!("{}: {}", p.connector, p.position),
    }
}

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(stop) = STOP.get() {
        stop.store(true, Ordering::Relaxed);
    }
}

/// Ctrl-C and SIGTERM stop the job cleanly (a second one kills it).
fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = STOP.get_or_init(Arc::default).clone();
    // SAFETY: the handler only does an atomic load and store.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    stop
}

/// Run the CLI with the process arguments; exits the process on error.
pub fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "weir=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run {
            job,
            parallelism,
            from_savepoint,
        } => run_job(&job, parallelism, from_savepoint),
        Command::Savepoint { command } => savepoint(command),
        Command::Stop {
            job,
            savepoint,
            name,
        } => stop_job(&job, savepoint, name),
        Command::Generate {
            out,
            events,
            seed,
            max_machines,
            min_address,
            max_address,
            error_prob,
            file_size,
            events_per_ms,
        } => generate_events(
            &out,
            &GenerateConfig {
                seed,
                events,
                max_machines,
                min_address,
                max_address,
                error_prob,
                file_size,
                events_per_ms,
                ..GenerateConfig::default()
            },
        ),
        Command::Component {
            command: ComponentCommand::New { module, out },
        } => new_component(&module, &out),
        Command::Plugin { command } => plugin(command),
        Command::Fork {
            job,
            from_savepoint,
            plugin,
            operator,
            out,
            until,
            parallelism,
            nice,
        } => fork(
            &job,
            &from_savepoint,
            (&plugin, operator.as_deref()),
            &out,
            until.as_deref(),
            (parallelism, nice),
        ),
        Command::Diff {
            a,
            b,
            key,
            examples,
            json,
        } => {
            let report = crate::diff::diff(&a, &b, key.as_deref(), examples)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Command::Demo {
            events,
            parallelism,
            addresses,
            dir,
        } => {
            anyhow::ensure!(parallelism > 0, "--parallelism must be at least 1");
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("weir-demo"));
            run_demo(&DemoConfig {
                dir,
                events,
                parallelism,
                addresses,
                seed: 42,
            })?;
            Ok(())
        }
    }
}

/// `weir run`: run a job until its input ends or it is stopped.
fn run_job(
    job: &Path,
    parallelism: Option<usize>,
    from_savepoint: Option<String>,
) -> anyhow::Result<()> {
    let mut plan = load_plan(job)?;
    if let Some(p) = parallelism {
        anyhow::ensure!(p > 0, "--parallelism must be at least 1");
        // Partitions follow the parallelism unless the job file sets them.
        if plan.partitions == plan.parallelism && JobFile::load(job)?.partitions.is_none() {
            plan.partitions = p;
        }
        plan.parallelism = p;
    }
    let report = run(
        &plan,
        RunOptions {
            stop: stop_on_signals(),
            progress: Some(Box::new(|p| {
                tracing::info!(
                    records = p.now.records_read,
                    files = p.now.files_done,
                    mib = p.now.bytes_read >> 20,
                    rate = format!(
                        "{:.0}/s",
                        (p.now.records_read - p.previous.records_read) as f64
                            / p.interval.as_secs_f64()
                    ),
                    emitted = p.now.emitted,
                    lag = p.lag.iter().filter(|&&l| l >= 0).sum::<i64>(),
                    "progress"
                );
            })),
            progress_every: Some(std::time::Duration::from_secs(5)),
            from_savepoint,
            triggers: None,
            fork_of: None,
        },
    )
    .with_context(|| format!("job `{}` failed", plan.name))?;
    if let Some(from) = &report.restored_from {
        eprintln!("restored from {from}");
    }
    if report.dead_letters > 0
        && report.dead_letters >= report.totals.records_read + report.totals.malformed
    {
        eprintln!(
            "WARNING: every record of this run went to the dead-letter output ({} records): \
             check the source's format, key and timestamp settings, and why the operator \
             rejects them (the reasons are in the dead-letter output)",
            report.dead_letters
        );
    }
    eprintln!(
        "job `{}` {}: {} records in, {} out, {} dead letters, {} checkpoints, {:.2} s ({:.0} records/s, {:.0} per CPU-second)",
        report.name,
        match report.completion {
            Completion::EndOfInput => "done",
            Completion::Stopped => "stopped",
        },
        report.totals.records_read,
        report.totals.emitted,
        report.dead_letters,
        report.checkpoints.completed,
        report.elapsed.as_secs_f64(),
        report.records_per_sec(),
        report.records_per_cpu_sec()
    );
    Ok(())
}

/// `weir stop`: stop a running job, with a savepoint first if asked.
fn stop_job(job: &Path, savepoint: bool, name: Option<String>) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let endpoint = control::find(&plan.name)?;
    let mut path = format!("/stop?savepoint={savepoint}");
    if let Some(n) = name {
        path.push_str(&format!("&name={n}"));
    }
    let (status, body) = endpoint.request("POST", &path)?;
    anyhow::ensure!(status == 200, "stop failed ({status}): {body}");
    println!("{body}");
    Ok(())
}

/// `weir generate`: write state-machine events.
fn generate_events(out: &Path, cfg: &GenerateConfig) -> anyhow::Result<()> {
    let r = generate(out, cfg).with_context(|| format!("generating into {}", out.display()))?;
    println!(
        "wrote {} events ({} injected errors) in {} files ({} bytes) to {}",
        r.events,
        r.injected_errors,
        r.files.len(),
        r.bytes,
        out.display()
    );
    Ok(())
}

/// `weir component new`: a plugin component from a `weir-guest` module.
fn new_component(module: &Path, out: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let component = weir_build_support::componentize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a weir-guest module: {e}", module.display()))?;
    std::fs::write(out, &component).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {} ({} KiB)", out.display(), component.len() / 1024);
    Ok(())
}

fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Swap {
            job,
            operator,
            plugin,
            probation_batches,
            no_wait,
        } => {
            let plugin = std::fs::canonicalize(&plugin)
                .with_context(|| format!("the plugin {}", plugin.display()))?;
            let path = format!(
                "/swap?operator={}&plugin={}&probation_batches={probation_batches}",
                control::percent_encode(&operator),
                control::percent_encode(&plugin.to_string_lossy()),
            );
            swap_request(&job, &path, no_wait)
        }
        PluginCommand::Rollback {
            job,
            operator,
            probation_batches,
        } => {
            let path = format!(
                "/rollback?operator={}&probation_batches={probation_batches}",
                control::percent_encode(&operator)
            );
            swap_request(&job, &path, false)
        }
        PluginCommand::History { job } => plugin_history(&job),
    }
}

/// Ask the running job for a swap; then, unless `no_wait`, follow its
/// record in `GET /status` until it is promoted or rolled back.
fn swap_request(job: &Path, path: &str, no_wait: bool) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let endpoint = control::find(&plan.name)?;
    let (status, body) = endpoint.request("POST", path)?;
    let record: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 200 {
        let why = record["error"].as_str().unwrap_or(&body);
        anyhow::bail!("swap refused ({status}): {why}");
    }
    let seq = record["seq"].as_u64().unwrap_or_default();
    println!("{}", describe_swap(&record));
    if no_wait {
        return Ok(());
    }
    let mut record = record;
    loop {
        match record_outcome(&record).as_str() {
            "promoted" => return Ok(()),
            "rolled_back" => anyhow::bail!(
                "swap {seq} was rolled back: {}",
                record["cause"].as_str().unwrap_or("?")
            ),
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Ok((200, body)) = endpoint.request("GET", "/status") else {
            anyhow::bail!(
                "the job ended before swap {seq} had an outcome; `weir plugin history` tells \
                 which version its last checkpoint runs"
            );
        };
        let status: serde_json::Value = serde_json::from_str(&body)?;
        let Some(r) = status["swaps"]
            .as_array()
            .and_then(|s| s.iter().find(|r| r["seq"].as_u64() == Some(seq)))
        else {
            anyhow::bail!("swap {seq} is not in the job's status");
        };
        if record_outcome(r) != record_outcome(&record) {
            println!("{}", describe_swap(r));
        }
        record = r.clone();
    }
}

fn record_outcome(r: &serde_json::Value) -> String {
    r["outcome"].as_str().unwrap_or_default().to_string()
}

/// One line for a swap record.
fn describe_swap(r: &serde_json::Value) -> String {
    let short = |k: &str| {
        r[k].as_str()
            .unwrap_or("")
            .chars()
            .take(12)
            .collect::<String>()
    };
    let mut line = format!(
        "swap {} {} of `{}`: {} -> {} at {} (savepoint {}): {}",
        r["seq"],
        r["kind"].as_str().unwrap_or("swap"),
        r["operator"].as_str().unwrap_or("?"),
        short("from_digest"),
        short("to_digest"),
        r["requested_ms"]
            .as_i64()
            .map(manifest::format_time)
            .unwrap_or_default(),
        r["savepoint"].as_str().unwrap_or("?"),
        record_outcome(r).replace('_', " "),
    );
    if let Some(p) = r["pause"].as_object() {
        let ms = |k: &str| p.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
        line.push_str(&format!(
            "; pause {:.1} ms (snapshot {:.1}, instantiate {:.1}, restore {:.1})",
            ms("total_ms"),
            ms("snapshot_ms"),
            ms("instantiate_ms"),
            ms("restore_ms")
        ));
    }
    if let Some(c) = r["promoted_at"].as_u64() {
        line.push_str(&format!("; promoted at checkpoint {c}"));
    }
    if let Some(c) = r["cause"].as_str() {
        line.push_str(&format!("; cause: {c}"));
    }
    line
}

/// `plugin history`: every swap of the job, from the state store.
fn plugin_history(job: &Path) -> anyhow::Result<()> {
    let plan = load_plan(job)?;
    let store = open_store(&plan)?;
    let records = crate::runtime::swap::read_history(&store, &plan.name)?;
    if records.is_empty() {
        println!("job `{}` has no swaps", plan.name);
    }
    for r in records {
        println!("{}", describe_swap(&serde_json::to_value(r)?));
    }
    Ok(())
}

/// `weir fork`: the job from a savepoint with a new plugin, into its own
/// output folder.
fn fork(
    job: &Path,
    from_savepoint: &str,
    (plugin, operator): (&Path, Option<&str>),
    out: &Path,
    until: Option<&str>,
    (parallelism, nice): (usize, i32),
) -> anyhow::Result<()> {
    anyhow::ensure!(parallelism > 0, "--parallelism must be at least 1");
    let live = load_plan(job)?;
    let mut plan = live.clone();
    plan.name = format!("{}-fork", live.name);
    let i = match operator {
        Some(name) => plan
            .operators
            .iter()
            .position(|o| o.name == name)
            .ok_or_else(|| anyhow::anyhow!("job `{}` has no operator `{name}`", live.name))?,
        None if plan.operators.len() == 1 => 0,
        None => anyhow::bail!("the job has several operators: name one with --operator"),
    };
    plan.operators[i].plugin = crate::config::PluginSource::Path(plugin.to_path_buf());
    let until = until
        .map(|end| {
            manifest::parse_time(end)
                .ok_or_else(|| anyhow::anyhow!("--until `{end}` is not a time"))
        })
        .transpose()?;
    match &mut plan.source {
        crate::source::SourceSpec::Files(f) => {
            f.follow = false;
            f.until = until;
        }
        crate::source::SourceSpec::Kafka(k) => {
            // Its own consumer group (offsets are committed there for lag
            // tools), and an end: the offsets at its start, or `--until`.
            k.group_id = format!("{}-fork", k.group_id);
            k.until = Some(match until {
                Some(t) => crate::config::Until::Timestamp(t),
                None => crate::config::Until::Latest,
            });
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    plan.sink = crate::sink::SinkSpec::Files(crate::sink::FileSinkSpec {
        dir: out.to_path_buf(),
    });
    plan.dead_letter = Some(out.join("dead-letters.jsonl"));
    plan.control = None;
    plan.parallelism = parallelism;
    // Threads inherit the niceness: set it before the job starts any.
    // SAFETY: setpriority on this thread only reads its arguments.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice.clamp(0, 19)) } != 0 {
        tracing::warn!("cannot lower the fork's priority");
    }
    let report = run(
        &plan,
        RunOptions {
            stop: stop_on_signals(),
            from_savepoint: Some(from_savepoint.to_string()),
            fork_of: Some(live.name.clone()),
            ..RunOptions::default()
        },
    )
    .with_context(|| format!("fork `{}` failed", plan.name))?;
    eprintln!(
        "fork `{}` from {}: {} records in, {} out, {} dead letters, {:.2} s; output in {}",
        plan.name,
        report.restored_from.as_deref().unwrap_or(from_savepoint),
        report.totals.records_read,
        report.totals.emitted,
        report.dead_letters,
        report.elapsed.as_secs_f64(),
        out.display()
    );
    Ok(())
}
