//! `weir generate`, `weir component new` and `weir demo`: events for the
//! state-machine example, a plugin component from a `weir-guest` module,
//! and the demo that runs one over the other.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::demo::{DemoConfig, run_demo};
use crate::generate::{GenerateConfig, generate};

/// `weir generate`: write state-machine events.
pub(super) fn generate_events(out: &Path, cfg: &GenerateConfig) -> anyhow::Result<()> {
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
pub(super) fn new_component(module: &Path, out: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let component = weir_build_support::componentize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a weir-guest module: {e}", module.display()))?;
    std::fs::write(out, &component).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {} ({} KiB)", out.display(), component.len() / 1024);
    Ok(())
}

/// `weir demo`: generate events and run the state-machine plugin over them.
pub(super) fn demo(
    events: u64,
    parallelism: usize,
    addresses: u32,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
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
