//! Builds Weir plugins from source, for build scripts.
//!
//! A Rust plugin is compiled for `wasm32-unknown-unknown` (so it imports no
//! WASI at all) and then turned into a component with `wit-component`, using
//! the component-type section `wit-bindgen` embeds. Build scripts call
//! [`build_rust_plugins`] and get one `.wasm` component per crate; nothing is
//! prebuilt or committed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target plugins are compiled for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Compile the named workspace crates for [`TARGET`] in release mode and turn
/// each into a component written to `out_dir/<crate>.wasm`.
///
/// `workspace` is the workspace root. Returns the component paths in the
/// order of `crates`. Panics with a readable message on failure, as build
/// scripts do.
pub fn build_rust_plugins(workspace: &Path, crates: &[&str], out_dir: &Path) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = workspace.join("target").join("plugins");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(&target_dir);
    for name in crates {
        cmd.arg("-p").arg(name);
    }
    // The outer build's flags and wrappers are for the host, not the guest.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    // Plugins ship without debug info (the workspace's release profile keeps
    // line tables for host profiling) and with whole-program optimization:
    // small guests build in seconds with it, and run faster and smaller.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build plugins: {e}"));
    assert!(
        status.success(),
        "building plugins {crates:?} for {TARGET} failed (is the target installed? \
         `rustup target add {TARGET}`)"
    );

    crates
        .iter()
        .map(|name| {
            let module_path = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            let module = std::fs::read(&module_path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", module_path.display()));
            let component = componentize(&module)
                .unwrap_or_else(|e| panic!("cannot make a component of {name}: {e:#}"));
            let out = out_dir.join(format!("{name}.wasm"));
            write_if_changed(&out, &component);
            out
        })
        .collect()
}

/// The `componentize-py` to use: `$WEIR_COMPONENTIZE_PY`, else the one
/// `scripts/install-toolchains.sh` installs, else the one on `PATH`.
fn componentize_py() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_COMPONENTIZE_PY") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("WEIR_PY_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir/py-venv")));
    match venv.map(|v| v.join("bin/componentize-py")) {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("componentize-py"),
    }
}

/// Build the Python plugin in `workspace/plugin_dir` (entry module `app`,
/// with the Python SDK in `guest-sdk/python`) into `out_dir/<name>.wasm`
/// with componentize-py, WASI stubbed out.
pub fn build_python_plugin(
    workspace: &Path,
    plugin_dir: &str,
    name: &str,
    out_dir: &Path,
) -> PathBuf {
    let out = out_dir.join(format!("{name}.wasm"));
    let tool = componentize_py();
    let status = Command::new(&tool)
        .current_dir(workspace)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-d", "wit/v0.1.0", "-w", "operator-plugin", "componentize", "app", "-p"])
        .arg(plugin_dir)
        .args(["-p", "guest-sdk/python", "-s", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} to build {plugin_dir}: {e} (install it with scripts/install-toolchains.sh)",
                tool.display()
            )
        });
    assert!(
        status.success(),
        "componentize-py failed to build {plugin_dir}"
    );
    out
}

/// Build the JavaScript plugin whose entry module is `workspace/entry` into
/// `out_dir/<name>.wasm` with componentize-js (`guest-sdk/js/build.mjs`;
/// `npm ci` in `guest-sdk/js` first, as `scripts/install-toolchains.sh` does).
pub fn build_js_plugin(workspace: &Path, entry: &str, name: &str, out_dir: &Path) -> PathBuf {
    let out = out_dir.join(format!("{name}.wasm"));
    let status = Command::new("node")
        .current_dir(workspace)
        .arg("guest-sdk/js/build.mjs")
        .arg(entry)
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run node to build {entry}: {e}"));
    assert!(
        status.success(),
        "building {entry} failed (is componentize-js installed? run scripts/install-toolchains.sh)"
    );
    out
}

/// Generate the C bindings of the `operator-plugin` world (`wit-bindgen c`
/// as a library) into `out_dir`: `operator_plugin.h`, `operator_plugin.c`
/// and `operator_plugin_component_type.o`.
pub fn generate_c_bindings(workspace: &Path, out_dir: &Path) -> Result<(), String> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(workspace.join("wit/v0.1.0"))
        .map_err(|e| format!("{e:#}"))?;
    let world = resolve
        .select_world(&[pkg], Some("operator-plugin"))
        .map_err(|e| format!("{e:#}"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| format!("{e:#}"))?;
    for (name, contents) in files.iter() {
        write_if_changed(&out_dir.join(name), contents);
    }
    Ok(())
}

/// Build the C plugin whose source is `workspace/source` (with the header-only
/// helper in `guest-sdk/c`) into `out_dir/<name>.wasm`: bindings by
/// [`generate_c_bindings`], clang for `wasm32-wasi` (Debian's clang, lld and
/// wasi-libc), then [`componentize`].
pub fn build_c_plugin(workspace: &Path, source: &str, name: &str, out_dir: &Path) -> PathBuf {
    let gen_dir = out_dir.join(format!("{name}-bindings"));
    std::fs::create_dir_all(&gen_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", gen_dir.display()));
    generate_c_bindings(workspace, &gen_dir)
        .unwrap_or_else(|e| panic!("generating C bindings: {e}"));
    let module = out_dir.join(format!("{name}.core.wasm"));
    let clang = std::env::var("WEIR_CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .current_dir(workspace)
        .args(["--target=wasm32-wasi", "--sysroot=/usr", "-mexec-model=reactor", "-O2", "-Wall", "-Werror"])
        .arg("-I")
        .arg(&gen_dir)
        .args(["-I", "guest-sdk/c"])
        .arg(source)
        .arg(gen_dir.join("operator_plugin.c"))
        .arg(gen_dir.join("operator_plugin_component_type.o"))
        .arg("-o")
        .arg(&module)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {clang} to build {source}: {e} (install clang, lld, wasi-libc: scripts/install-toolchains.sh)")
        });
    assert!(status.success(), "clang failed to build {source}");
    let bytes =
        std::fs::read(&module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()));
    let component =
        componentize(&bytes).unwrap_or_else(|e| panic!("making a component of {name}: {e}"));
    let out = out_dir.join(format!("{name}.wasm"));
    write_if_changed(&out, &component);
    out
}

/// Turn a core module carrying wit-bindgen's component-type section into a
/// component.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// Tell cargo to rerun the build script when anything a plugin build reads
/// changes.
pub fn rerun_if_plugin_sources_change(workspace: &Path, dirs: &[&str]) {
    for dir in ["wit", "guest-sdk/src", "guest-sdk/Cargo.toml", "Cargo.lock"]
        .iter()
        .chain(dirs)
    {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return;
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
