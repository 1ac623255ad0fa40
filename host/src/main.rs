//! The `weir` command line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir::config::JobFile;
use weir::demo::{DemoConfig, run_demo};
use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};

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

fn main() {
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
    let cli = Cli::parse();
    match cli.command {
        Command::Run { job, parallelism } => {
            let file = JobFile::load(&job)?;
            let base = job.parent().unwrap_or(Path::new("."));
            let name = job
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut plan = file.resolve(&name, base)?;
            if let Some(p) = parallelism {
                anyhow::ensure!(p > 0, "--parallelism must be at least 1");
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
                            "progress"
                        );
                    })),
                    progress_every: Some(std::time::Duration::from_secs(5)),
                },
            )
            .with_context(|| format!("job `{}` failed", plan.name))?;
            eprintln!(
                "job `{}` done: {} records in, {} out, {} dead letters, {:.2} s ({:.0} records/s, {:.0} per CPU-second)",
                report.name,
                report.totals.records_read,
                report.totals.emitted,
                report.dead_letters,
                report.elapsed.as_secs_f64(),
                report.records_per_sec(),
                report.records_per_cpu_sec()
            );
        }
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
        } => {
            let cfg = GenerateConfig {
                seed,
                events,
                max_machines,
                min_address,
                max_address,
                error_prob,
                file_size,
                events_per_ms,
                ..GenerateConfig::default()
            };
            let r = generate(&out, &cfg)
                .with_context(|| format!("generating into {}", out.display()))?;
            println!(
                "wrote {} events ({} injected errors) in {} files ({} bytes) to {}",
                r.events,
                r.injected_errors,
                r.files.len(),
                r.bytes,
                out.display()
            );
        }
        Command::Component {
            command: ComponentCommand::New { module, out },
        } => {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let component = weir_build_support::componentize(&bytes).map_err(|e| {
                anyhow::anyhow!("{}: not a weir-guest module: {e}", module.display())
            })?;
            std::fs::write(&out, &component)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} ({} KiB)", out.display(), component.len() / 1024);
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
        }
    }
    Ok(())
}
