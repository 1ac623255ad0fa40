//! A/B of plugin builds over the same batches, in one process: the guest's
//! work alone (the batches are built once, before any timing), alternating
//! the plugins round by round so a change of the machine's speed hits both.
//!
//! `WEIR_AB_EVENTS=DIR WEIR_AB_PLUGINS=a.wasm,b.wasm WEIR_AB_ROUNDS=5 \
//!  cargo bench -p weir-tests --bench guest_ab`
//! prints, per plugin, the best and the median CPU ns per event.

use std::path::PathBuf;

use weir::batch::Batch;
use weir::plugin::{PluginInstance, WeirEngine};
use weir_tests::stages::{self, Timed};

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (Ok(dir), Ok(plugins)) = (
        std::env::var("WEIR_AB_EVENTS"),
        std::env::var("WEIR_AB_PLUGINS"),
    ) else {
        if benchmarking {
            eprintln!("set WEIR_AB_EVENTS (a folder of `address,event` files) and WEIR_AB_PLUGINS");
        }
        return;
    };
    let rounds: usize = weir_tests::env_or("WEIR_AB_ROUNDS", 5) as usize;
    let files = stages::files_of(std::path::Path::new(&dir));
    let size = weir::config::BatchSettings::default().max_records;
    let mut batches: Vec<Batch> = Vec::new();
    stages::for_each_batch(&files, size, |b| batches.push(b.clone()));
    let plugins: Vec<PathBuf> = plugins.split(',').map(PathBuf::from).collect();
    let engine = WeirEngine::new(Default::default()).expect("engine");
    let loaded: Vec<_> = plugins
        .iter()
        .map(|p| engine.load_file("ab", p).expect("load plugin"))
        .collect();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); plugins.len()];
    for _ in 0..rounds {
        for (k, l) in loaded.iter().enumerate() {
            let mut i = PluginInstance::new(&engine, l, 0).expect("instance");
            i.init(&[]).expect("init");
            let t = Timed::run(|| {
                let mut n = 0;
                for b in &batches {
                    std::hint::black_box(i.process(b, 0).expect("process"));
                    n += b.len() as u64;
                }
                n
            });
            ns[k].push(t.ns_per_event());
        }
    }
    for (p, mut v) in plugins.iter().zip(ns) {
        v.sort_by(f64::total_cmp);
        println!(
            "{:<40} best {:>6.1}  median {:>6.1}  ns/event  ({} rounds)",
            p.display(),
            v[0],
            v[v.len() / 2],
            v.len()
        );
    }
}
