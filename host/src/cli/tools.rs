//! `weir generate`, `weir component new`, `weir cache clean` and `weir
//! demo`: events for the state-machine example, a plugin component from a
//! core module (debug info stripped), the compiled-component cache emptied,
//! and the demo that runs one over the other.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::demo::{DemoConfig, run_demo};
use crate::generate::{GenerateConfig, generate};

/// `weir generate`: write state-machine events into the folder `out`, or
/// produce them to `(brokers, topic)`.
pub(super) fn generate_events(
    (out, kafka): (Option<&Path>, Option<(&str, &str)>),
    cfg: &GenerateConfig,
) -> anyhow::Result<()> {
    if let Some((brokers, topic)) = kafka {
        return super::produce::generate_to_kafka(brokers, topic, cfg);
    }
    let out = out.context("--out or --kafka is required")?;
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

/// `weir component new`: a plugin component from a core module, without
/// its DWARF debug info unless `keep_debug`.
pub(super) fn new_component(module: &Path, out: &Path, keep_debug: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let bytes = if keep_debug {
        bytes
    } else {
        strip_debug(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", module.display()))?
    };
    let component = weir_build_support::componentize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a weir-guest module: {e}", module.display()))?;
    std::fs::write(out, &component).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} KiB)",
        out.display(),
        component.len().div_ceil(1024)
    );
    Ok(())
}

/// A core module without its `.debug_*` custom sections (DWARF, as rustc's
/// `strip = "debuginfo"` removes them); every other section is kept as it
/// is, the component-type section and the name section included.
fn strip_debug(module: &[u8]) -> Result<Vec<u8>, String> {
    const HEADER: usize = 8;
    if module.len() < HEADER || &module[..4] != b"\0asm" {
        return Err("not a WebAssembly module (no `\\0asm` header)".into());
    }
    let mut out = module[..HEADER].to_vec();
    let mut at = HEADER;
    while at < module.len() {
        let start = at;
        let id = module[at];
        at += 1;
        let size = leb_u32(module, &mut at)? as usize;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= module.len())
            .ok_or("a section runs past the end of the module")?;
        let debug = id == 0 && {
            let mut p = at;
            let len = leb_u32(module, &mut p)? as usize;
            module
                .get(p..p.saturating_add(len).min(end))
                .is_some_and(|name| name.starts_with(b".debug_"))
        };
        if !debug {
            out.extend_from_slice(&module[start..end]);
        }
        at = end;
    }
    Ok(out)
}

/// Read an unsigned LEB128 u32 at `*at`, moving past it.
fn leb_u32(bytes: &[u8], at: &mut usize) -> Result<u32, String> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at).ok_or("a section header runs past the end")?;
        *at += 1;
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a section size is not a valid LEB128 u32".into())
}

/// `weir cache clean`: remove every compiled component from the cache
/// folder (`dir`, else the default one).
pub(super) fn clean_cache(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(dir) = dir.or_else(crate::plugin::default_cache_dir) else {
        println!(
            "no compiled-component cache folder (WEIR_CACHE_DIR, XDG_CACHE_HOME and HOME are unset)"
        );
        return Ok(());
    };
    let r =
        crate::plugin::cache::clean(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
    println!(
        "removed {} compiled components ({:.1} MiB) from {}",
        r.files,
        r.bytes as f64 / f64::from(1 << 20),
        dir.display()
    );
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

#[cfg(test)]
mod tests {
    /// A module: header, a custom section `name`, a `.debug_info` one,
    /// then a type section (id 1, empty vector).
    fn module() -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[0, 6, 4, b'n', b'a', b'm', b'e', 9]);
        let debug = b".debug_info";
        m.extend_from_slice(&[0, 1 + debug.len() as u8 + 3, debug.len() as u8]);
        m.extend_from_slice(debug);
        m.extend_from_slice(&[1, 2, 3]);
        m.extend_from_slice(&[1, 1, 0]);
        m
    }

    #[test]
    fn stripping_removes_debug_sections_only() {
        let m = module();
        let s = super::strip_debug(&m).unwrap();
        let mut want = b"\0asm\x01\0\0\0".to_vec();
        want.extend_from_slice(&[0, 6, 4, b'n', b'a', b'm', b'e', 9, 1, 1, 0]);
        assert_eq!(s, want);
    }

    #[test]
    fn a_truncated_module_is_an_error_not_a_panic() {
        let m = module();
        for cut in 0..m.len() - 1 {
            let _ = super::strip_debug(&m[..cut]);
        }
        assert!(super::strip_debug(&m[..m.len() - 1]).is_err());
        assert!(super::strip_debug(b"hello").is_err());
    }
}
