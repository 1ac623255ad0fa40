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
