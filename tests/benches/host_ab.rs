//! The host path alone, for A/B of host changes: the file source into a
//! counting output, and the whole job with a native no-op operator
//! (source, router, batches, hand-off, sink), over a folder of
//! `address,event` files, best and median CPU ns per event.
//!
//! `WEIR_AB_EVENTS=DIR WEIR_AB_ROUNDS=7 cargo bench -p weir-tests --bench host_ab`

use std::sync::Arc;

use weir::config::{KeySpec, PluginSource};
use weir::job::{RunOptions, run_with};
use weir::plugin::OperatorFactory;
use weir_tests::stages::{self, Timed};

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let Ok(dir) = std::env::var("WEIR_AB_EVENTS") else {
        if benchmarking {
            eprintln!("set WEIR_AB_EVENTS (a folder of `address,event` files)");
        }
        return;
    };
    let rounds: usize = weir_tests::env_or("WEIR_AB_ROUNDS", 5) as usize;
    let out = tempfile::tempdir().expect("temp dir");
    let mut plan = weir::demo::state_machine_plan(
        dir.as_ref(),
        &out.path().join("out"),
        1,
        PluginSource::Path("unused.wasm".into()),
    );
    if let weir::config::SourceSpec::Files(files) = &mut plan.source {
        files.timestamp = KeySpec::None;
    }
    let noop: Vec<Arc<dyn OperatorFactory>> = vec![Arc::new(stages::NativeNoopFactory)];
    let (mut source, mut job) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        source.push(Timed::run(|| stages::host_source(&plan, 1)).ns_per_event());
        job.push(
            Timed::run(|| {
                run_with(&plan, &noop, RunOptions::default())
                    .expect("job")
                    .totals
                    .records_read
            })
            .ns_per_event(),
        );
    }
    for (name, mut v) in [("file source alone", source), ("native no-op job", job)] {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:<24} best {:>6.1}  median {:>6.1}  ns/event  ({} rounds)",
            v[0],
            v[v.len() / 2],
            v.len()
        );
    }
}
