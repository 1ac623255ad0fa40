//! `weir demo`: generate a few million state-machine events into a
//! temporary folder and run the embedded state-machine plugin over them,
//! printing alerts per second and a summary. Needs no server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    BatchSettings, EngineSettings, FileSinkSpec, FileSourceSpec, Format, KeySpec, OperatorSpec,
    Plan, PluginSource, SinkSpec, SourceSpec,
};
use crate::generate::{GenerateConfig, generate};
use crate::job::{JobReport, Progress, RunOptions, run};
use crate::{Error, Result};

/// The state-machine plugin, built from `plugins/state-machine` by the build
/// script.
pub static STATE_MACHINE_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/state-machine.wasm"));

/// Settings of `weir demo`.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Folder for events and output.
    pub dir: PathBuf,
    /// Events to generate.
    pub events: u64,
    /// Tasks.
    pub parallelism: usize,
    /// Distinct addresses (upper bound of the address range).
    pub addresses: u32,
    /// Generator seed.
    pub seed: u64,
}

/// The plan the demo runs: CSV events keyed by address, the embedded
/// state-machine plugin, alerts to `dir/out`.
pub fn state_machine_plan(
    events_dir: &Path,
    out_dir: &Path,
    parallelism: usize,
    plugin: PluginSource,
) -> Plan {
    Plan {
        name: "state-machine-demo".into(),
        parallelism,
        partitions: parallelism,
        source: SourceSpec::Files(FileSourceSpec {
            dir: events_dir.to_path_buf(),
            url: None,
            start_at: None,
            format: Format::Csv,
            key: KeySpec::Column(0),
            timestamp: KeySpec::Column(2),
            header: false,
            follow: false,
            poll_interval: Duration::from_millis(200),
            until: None,
            partition_from_name: false,
        }),
        watermark_delay_ms: 0,
        idle_timeout: Duration::from_secs(10),
        operators: vec![OperatorSpec {
            name: "state-machine".into(),
            plugin,
            config: vec![],
        }],
        sink: SinkSpec::Files(FileSinkSpec {
            dir: out_dir.to_path_buf(),
        }),
        dead_letter: Some(crate::config::DeadLetterSpec::File(
            out_dir.join("dead-letters.jsonl"),
        )),
        engine: EngineSettings::default(),
        batch: BatchSettings::default(),
        checkpoint: None,
        control: None,
        restart: crate::config::RestartStrategy::None,
    }
}

/// Run the demo, printing to stdout.
pub fn run_demo(cfg: &DemoConfig) -> Result<JobReport> {
    let events_dir = cfg.dir.join("events");
    let out_dir = cfg.dir.join("out");
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir).map_err(Error::io("clearing", &out_dir))?;
    }
    println!(
        "weir demo: generating {} state-machine events ({} addresses) into {}",
        cfg.events,
        cfg.addresses,
        events_dir.display()
    );
    let written = generate(
        &events_dir,
        &GenerateConfig {
            seed: cfg.seed,
            events: cfg.events,
            max_address: cfg.addresses.max(1),
            file_size: 16 << 20,
            ..GenerateConfig::default()
        },
    )
    .map_err(Error::io("generating events into", &events_dir))?;
    println!(
        "  wrote {} events ({} injected errors) in {} files, {:.1} MiB",
        written.events,
        written.injected_errors,
        written.files.len(),
        written.bytes as f64 / (1 << 20) as f64
    );
    println!(
        "running the state-machine plugin ({} KiB component) with parallelism {}",
        STATE_MACHINE_WASM.len() / 1024,
        cfg.parallelism
    );
    let plan = state_machine_plan(
        &events_dir,
        &out_dir,
        cfg.parallelism,
        PluginSource::Bytes(Arc::from(STATE_MACHINE_WASM)),
    );
    let progress = |p: &Progress| {
        let secs = p.interval.as_secs_f64().max(1e-9);
        println!(
            "  {:>5.1}s  events {:>8.0}/s  alerts {:>7.0}/s  alerts so far {}",
            p.elapsed.as_secs_f64(),
            (p.now.records_read - p.previous.records_read) as f64 / secs,
            (p.now.emitted - p.previous.emitted) as f64 / secs,
            p.now.emitted
        );
    };
    let report = run(
        &plan,
        RunOptions {
            progress: Some(Box::new(progress)),
            progress_every: Some(Duration::from_millis(250)),
            ..RunOptions::default()
        },
    )?;
    println!("summary:");
    println!("  events processed   {}", report.totals.records_read);
    println!(
        "  alerts raised      {} ({:.0} alerts/s)",
        report.totals.emitted,
        report.totals.emitted as f64 / report.elapsed.as_secs_f64().max(1e-9)
    );
    println!("  dead letters       {}", report.dead_letters);
    println!(
        "  time               {:.2} s wall, {:.2} s CPU",
        report.elapsed.as_secs_f64(),
        report.cpu.as_secs_f64()
    );
    println!(
        "  throughput         {:.2} M events/s, {:.2} M events per CPU-second",
        report.records_per_sec() / 1e6,
        report.records_per_cpu_sec() / 1e6
    );
    println!("  alerts are in      {}/part-*.jsonl", out_dir.display());
    Ok(report)
}
