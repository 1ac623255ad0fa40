//! The `weir` command line: the clap definitions and the dispatch here,
//! the commands' logic in one file per group (`anyhow` for errors, as CLI
//! glue; the work itself is in the library):
//! - `run`: `weir run` and `weir stop`, and the signals that stop a run;
//! - `savepoint`: `weir savepoint trigger|list|show|delete`;
//! - `status`: `weir status`, a running or stopped job's figures;
//! - `plugin`: `weir plugin swap|rollback|history`;
//! - `fork`: `weir fork` and `weir diff`, a what-if run and its comparison;
//! - `files`: `weir files index`, files mapped to event times;
//! - `tools`: `weir generate`, `weir component new`, `weir cache clean`
//!   and `weir demo`;
//! - `produce`: `weir generate --kafka`, the events produced to a topic;
//! - `new`: `weir new`, a plugin project per language, and `weir component
//!   build-c`.

use std::path::{Path, PathBuf};

use crate::checkpoint::store::StateStore;
use crate::config::{JobFile, Plan};
use crate::generate::GenerateConfig;
use crate::runtime::swap::{DEFAULT_PROBATION_BATCHES, DEFAULT_PROBATION_TIMEOUT};
use clap::{Parser, Subcommand};

mod files;
mod fork;
mod group;
mod new;
mod plugin;
mod produce;
mod progress;
mod run;
mod savepoint;
mod status;
mod tools;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A stream processor whose operators are WebAssembly components"
)]
struct Cli {
    /// The command.
    #[command(subcommand)]
    command: Command,
    /// How logs on standard error look: `text` (coloured only on a
    /// terminal, and never with `NO_COLOR` set) or `json` (one object per
    /// line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The format of the log on standard error.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Log to standard error at the level `WEIR_LOG` asks (default
/// `weir=info`) in `format`.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "weir=info".into()),
        )
        .with_writer(progress::LogWriter);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            // Colour only for a person at a terminal (not a file or
            // journald), and never with `NO_COLOR` set (no-color.org).
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            logs.with_ansi(colour).init();
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file until its input ends (or, with `follow`, until
    /// stopped). With checkpoints on, it resumes from the job's newest
    /// complete checkpoint or savepoint when there is one.
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Override the job's parallelism (the partitions follow it unless
        /// the job file sets them; a files job's savepoint of another
        /// partition count is rescaled, split by key).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Start from a savepoint or checkpoint: its name, `latest`,
        /// `before:TIME` (ms or YYYY-MM-DDTHH:MM:SSZ, by event time), or the
        /// URL of a savepoint folder.
        #[arg(long, value_name = "SAVEPOINT", conflicts_with = "fresh")]
        from_savepoint: Option<String>,
        /// Start over from the source's configured start, not from the
        /// newest checkpoint; the sink's earlier output is replaced.
        #[arg(long)]
        fresh: bool,
    },
    /// Savepoints of a job: trigger (on the running job), list, show, delete.
    Savepoint {
        #[command(subcommand)]
        command: SavepointCommand,
    },
    /// What a job is doing: its figures while it runs (from its control
    /// endpoint), else its last checkpoint from the store.
    Status {
        /// The job file.
        job: PathBuf,
        /// Print JSON (for scripts) instead of tables.
        #[arg(long)]
        json: bool,
        /// Print only the path of the job's address file (`addr`, `token`
        /// and `pid` of its control endpoint while it runs), for curl.
        #[arg(long, conflicts_with = "json")]
        addr_file: bool,
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
        /// Return once the job is told to stop, without waiting until it
        /// has exited.
        #[arg(long)]
        no_wait: bool,
    },
    /// Generate state-machine events into a folder of CSV files, or
    /// produce them to a Kafka topic (keyed by address).
    Generate {
        /// Output folder.
        #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
        out: Option<PathBuf>,
        /// Produce to Kafka instead: the brokers (host:port,...).
        #[arg(long, value_name = "BROKERS", requires = "topic")]
        kafka: Option<String>,
        /// The topic to produce to (it must exist).
        #[arg(long, requires = "kafka")]
        topic: Option<String>,
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
    /// Files of a source: `index` maps each file to its event times.
    Files {
        #[command(subcommand)]
        command: files::FilesCommand,
    },
    /// Work with components.
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Write a plugin project (Rust, Python, JavaScript or C) with a
    /// `build.sh` that builds it and a job that runs it on a sample input.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: new::Lang,
        /// The folder to write (default: ./NAME); must be empty or absent.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Weir source tree whose SDKs and WIT files it uses (default:
        /// the one this weir was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// The compiled-component cache: `clean` empties it.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
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
        /// Write into a non-empty --out (an earlier fork's output there is
        /// replaced; files the fork did not write are kept).
        #[arg(long)]
        overwrite: bool,
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
        /// Batches the new version must run before it can be promoted
        /// (at the checkpoint right after them; it waits for input).
        #[arg(long, default_value_t = DEFAULT_PROBATION_BATCHES)]
        probation_batches: u64,
        /// Seconds to wait for those batches; past them the swap is rolled
        /// back, not promoted.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_PROBATION_TIMEOUT.as_secs_f64())]
        probation_timeout: f64,
        /// Return once swapped, without waiting for the probation's outcome.
        #[arg(long)]
        no_wait: bool,
    },
    /// Swap an operator back to the version before its last promoted swap.
    /// A stopped job's next run starts on that version (from its newest
    /// checkpoint).
    Rollback {
        /// The job file.
        job: PathBuf,
        /// The operator.
        #[arg(long)]
        operator: String,
        /// Batches of probation, as for `swap` (a running job).
        #[arg(long, default_value_t = DEFAULT_PROBATION_BATCHES)]
        probation_batches: u64,
        /// Seconds to wait for them, as for `swap` (a running job).
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_PROBATION_TIMEOUT.as_secs_f64())]
        probation_timeout: f64,
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
    /// Turn a core module into a plugin component: one built with
    /// `weir-guest` for wasm32-unknown-unknown, or a Go reactor module
    /// (`GOOS=wasip1`, with the preview1 adapter added; see
    /// scripts/go-operator.sh).
    New {
        /// The core module (`target/wasm32-unknown-unknown/release/<crate>.wasm`).
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        out: PathBuf,
        /// Keep the module's DWARF debug info (stripped by default: it can
        /// be 20 times the code).
        #[arg(long)]
        keep_debug: bool,
    },
    /// Build C sources (with `weir.h`) into a plugin component: bindings,
    /// clang for wasm32-wasi, then a component.
    BuildC {
        /// The C sources.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// Where to write the component.
        #[arg(short, long)]
        out: PathBuf,
        /// The Weir source tree (its `guest-sdk/c` and `wit/`; default:
        /// the one this weir was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Remove every compiled component from the cache folder (they are
    /// compiled again when next used).
    Clean {
        /// The cache folder (default: $WEIR_CACHE_DIR, else
        /// $XDG_CACHE_HOME/weir/components, else ~/.cache/weir/components).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Read and resolve a job file: the file as written (what it sets) and its
/// plan. The job is named by the file's `name`, else the file's stem.
fn load_job(job: &Path) -> anyhow::Result<(JobFile, Plan)> {
    let file = JobFile::load(job)?;
    let base = job.parent().unwrap_or(Path::new("."));
    let name = job
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plan = file.resolve(&name, base)?;
    Ok((file, plan))
}

/// The plan of a job file.
fn load_plan(job: &Path) -> anyhow::Result<Plan> {
    Ok(load_job(job)?.1)
}

/// The job's state store; an error when its checkpoints are off.
fn open_store(plan: &Plan) -> anyhow::Result<StateStore> {
    crate::job::open_store(plan)?
        .ok_or_else(|| anyhow::anyhow!("job `{}` has checkpoints disabled", plan.name))
}

/// Run the CLI with the process arguments; exits the process on error.
pub fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Run {
            job,
            parallelism,
            from_savepoint,
            fresh,
        } => run::run_job(&job, parallelism, from_savepoint, fresh),
        Command::Savepoint { command } => savepoint::savepoint(command),
        Command::Status {
            job,
            json,
            addr_file,
        } => status::status(&job, json, addr_file),
        Command::Stop {
            job,
            savepoint,
            name,
            no_wait,
        } => run::stop_job(&job, (savepoint, name), !no_wait),
        Command::Generate {
            out,
            kafka,
            topic,
            events,
            seed,
            max_machines,
            min_address,
            max_address,
            error_prob,
            file_size,
            events_per_ms,
        } => tools::generate_events(
            (out.as_deref(), kafka.as_deref().zip(topic.as_deref())),
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
            command:
                ComponentCommand::New {
                    module,
                    out,
                    keep_debug,
                },
        } => tools::new_component(&module, &out, keep_debug),
        Command::Component {
            command: ComponentCommand::BuildC { sources, out, sdk },
        } => new::build_c(&sources, sdk.as_deref(), &out),
        Command::New {
            name,
            lang,
            dir,
            sdk,
        } => new::new_project(&name, lang, dir.as_deref(), sdk.as_deref()),
        Command::Cache {
            command: CacheCommand::Clean { dir },
        } => tools::clean_cache(dir),
        Command::Plugin { command } => plugin::plugin(command),
        Command::Files { command } => files::files(command),
        Command::Fork {
            job,
            from_savepoint,
            plugin,
            operator,
            out,
            until,
            parallelism,
            nice,
            overwrite,
        } => fork::fork(
            &job,
            &from_savepoint,
            (&plugin, operator.as_deref()),
            &out,
            until.as_deref(),
            (parallelism, nice, overwrite),
        ),
        Command::Diff {
            a,
            b,
            key,
            examples,
            json,
        } => fork::diff(&a, &b, key.as_deref(), examples, json),
        Command::Demo {
            events,
            parallelism,
            addresses,
            dir,
        } => tools::demo(events, parallelism, addresses, dir),
    }
}
