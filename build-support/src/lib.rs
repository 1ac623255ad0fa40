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
    build_rust_plugins_for(workspace, crates, out_dir, TARGET)
}

/// Like [`build_rust_plugins`], for `target`: `wasm32-unknown-unknown`
/// (a core module, made a component here) or `wasm32-wasip2` (rustc links
/// a component that imports WASI 0.2 itself).
pub fn build_rust_plugins_for(
    workspace: &Path,
    crates: &[&str],
    out_dir: &Path,
    target: &str,
) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = workspace.join("target").join("plugins");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
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
        "building plugins {crates:?} for {target} failed (is the target installed? \
         `rustup target add {target}`)"
    );

    crates
        .iter()
        .map(|name| {
            let module_path = target_dir
                .join(target)
                .join("release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            let module = std::fs::read(&module_path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", module_path.display()));
            let component = if wasmparser::Parser::is_component(&module) {
                module
            } else {
                componentize(&module)
                    .unwrap_or_else(|e| panic!("cannot make a component of {name}: {e:#}"))
            };
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

/// Turn a core module into a plugin component.
///
/// A module carrying wit-bindgen's component-type section (Rust, C) is
/// encoded as it is. A module without one (Go: `go:wasmexport` functions
/// named as the canonical ABI names them, see `guest-sdk/go`) gets the
/// `operator-plugin` world of weir:plugin@0.1.0 embedded first. A module
/// that imports WASI preview 1 (`wasi_snapshot_preview1`: Go, C with stdio)
/// is adapted to WASI 0.2 with the preview1 reactor adapter, whose version
/// matches the host's wasmtime.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    let (has_world, preview1) = inspect_module(module)?;
    let mut module = match find_adapter_arena(module)? {
        Some(arena) if preview1 => add_adapter_realloc(module, arena)?,
        _ => module.to_vec(),
    };
    if !has_world {
        embed_operator_world(&mut module)?;
    }
    let mut encoder = wit_component::ComponentEncoder::default();
    let mut encoder = encoder.module(&module).map_err(|e| format!("{e:#}"))?;
    if preview1 {
        use wasi_preview1_component_adapter_provider as adapter;
        encoder = encoder
            .adapter(
                adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                adapter::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(|e| format!("{e:#}"))?;
    }
    encoder
        .validate(true)
        .encode()
        .map_err(|e| format!("{e:#}"))
}

/// Whether `module` has a `component-type` custom section, and whether it
/// imports WASI preview 1.
fn inspect_module(module: &[u8]) -> Result<(bool, bool), String> {
    let (mut has_world, mut preview1) = (false, false);
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload.map_err(|e| format!("not a Wasm module: {e}"))? {
            wasmparser::Payload::CustomSection(c) if c.name().starts_with("component-type") => {
                has_world = true
            }
            wasmparser::Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import.map_err(|e| format!("not a Wasm module: {e}"))?;
                    preview1 |= import.module == "wasi_snapshot_preview1";
                }
            }
            _ => {}
        }
    }
    Ok((has_world, preview1))
}

/// The start of the Go SDK's adapter arena (`guest-sdk/go/arena.go`),
/// followed by its size in decimal digits and `;`.
const ARENA_MAGIC: &[u8] = b"WEIR-GO-ADAPTER-ARENA-V1";

/// Where the adapter arena lies in linear memory (start, size), if the
/// module has one: found by its magic in an active data segment.
fn find_adapter_arena(module: &[u8]) -> Result<Option<(u32, u32)>, String> {
    let bad = |e: wasmparser::BinaryReaderError| format!("not a Wasm module: {e}");
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let wasmparser::Payload::DataSection(data) = payload.map_err(bad)? else {
            continue;
        };
        for segment in data {
            let segment = segment.map_err(bad)?;
            let wasmparser::DataKind::Active { offset_expr, .. } = segment.kind else {
                continue;
            };
            let Some(pos) = segment
                .data
                .windows(ARENA_MAGIC.len())
                .position(|w| w == ARENA_MAGIC)
            else {
                continue;
            };
            let mut ops = offset_expr.get_operators_reader();
            let wasmparser::Operator::I32Const { value: base } = ops.read().map_err(bad)? else {
                return Err("the adapter arena's data segment has no constant offset".into());
            };
            let digits = &segment.data[pos + ARENA_MAGIC.len()..];
            let end = digits.iter().position(|&b| b == b';');
            let size = end
                .and_then(|end| std::str::from_utf8(&digits[..end]).ok())
                .and_then(|d| d.parse::<u32>().ok())
                .ok_or("the adapter arena's size does not follow its magic")?;
            return Ok(Some((base as u32 + pos as u32, size)));
        }
    }
    Ok(None)
}

/// Add `cabi_realloc_adapter` to a Go module: a bump allocator over the
/// SDK's adapter arena, so the preview1 adapter does not call into the Go
/// runtime (which cannot take calls while it starts) for its state and
/// stack. The next free address is kept in the arena's header.
fn add_adapter_realloc(module: &[u8], (arena, size): (u32, u32)) -> Result<Vec<u8>, String> {
    use wasm_encoder::reencode::{Error, Reencode, utils};
    use wasm_encoder::{Function, Instruction as I, MemArg, ValType};

    /// Counts what the module defines, then appends the function.
    struct Inject {
        arena: u32,
        size: u32,
        types: u32,
        imported_funcs: u32,
        funcs: u32,
    }
    impl Reencode for Inject {
        type Error = std::convert::Infallible;
        fn parse_type_section(
            &mut self,
            types: &mut wasm_encoder::TypeSection,
            section: wasmparser::TypeSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_type_section(self, types, section)?;
            self.types = types.len();
            types.ty().function(
                [ValType::I32, ValType::I32, ValType::I32, ValType::I32],
                [ValType::I32],
            );
            Ok(())
        }
        fn parse_import_section(
            &mut self,
            imports: &mut wasm_encoder::ImportSection,
            section: wasmparser::ImportSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            for import in section.clone().into_imports() {
                if matches!(import?.ty, wasmparser::TypeRef::Func(_)) {
                    self.imported_funcs += 1;
                }
            }
            utils::parse_import_section(self, imports, section)
        }
        fn parse_function_section(
            &mut self,
            functions: &mut wasm_encoder::FunctionSection,
            section: wasmparser::FunctionSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_function_section(self, functions, section)?;
            self.funcs = functions.len();
            functions.function(self.types);
            Ok(())
        }
        fn parse_export_section(
            &mut self,
            exports: &mut wasm_encoder::ExportSection,
            section: wasmparser::ExportSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_export_section(self, exports, section)?;
            exports.export(
                "cabi_realloc_adapter",
                wasm_encoder::ExportKind::Func,
                self.imported_funcs + self.funcs,
            );
            Ok(())
        }
        fn parse_code_section(
            &mut self,
            code: &mut wasm_encoder::CodeSection,
            section: wasmparser::CodeSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_code_section(self, code, section)?;
            // (old, old_size, align, new_size) -> ptr; local 4: the pointer.
            let (old, align, new_size, p) = (0, 2, 3, 4);
            let next = MemArg {
                offset: 0,
                align: 2,
                target: wasm_encoder::MemArgTarget::Memory(0),
                ordering: None,
            };
            let header = (self.arena + 32) as i32;
            let end = self.arena.wrapping_add(self.size) as i32;
            let mut f = Function::new([(1, ValType::I32)]);
            let body = [
                // The adapter never grows an allocation.
                I::LocalGet(old),
                I::If(wasm_encoder::BlockType::Empty),
                I::Unreachable,
                I::End,
                I::I32Const(header),
                I::I32Load(next),
                I::LocalTee(p),
                I::I32Eqz,
                I::If(wasm_encoder::BlockType::Empty),
                I::I32Const(header + 32),
                I::LocalSet(p),
                I::End,
                // p = (p + align - 1) & -align
                I::LocalGet(p),
                I::LocalGet(align),
                I::I32Add,
                I::I32Const(1),
                I::I32Sub,
                I::I32Const(0),
                I::LocalGet(align),
                I::I32Sub,
                I::I32And,
                I::LocalTee(p),
                I::LocalGet(new_size),
                I::I32Add,
                I::I32Const(end),
                I::I32GtU,
                I::If(wasm_encoder::BlockType::Empty),
                I::Unreachable,
                I::End,
                I::I32Const(header),
                I::LocalGet(p),
                I::LocalGet(new_size),
                I::I32Add,
                I::I32Store(next),
                I::LocalGet(p),
                I::End,
            ];
            for i in &body {
                f.instruction(i);
            }
            code.function(&f);
            Ok(())
        }
    }
    let mut inject = Inject {
        arena,
        size,
        types: 0,
        imported_funcs: 0,
        funcs: 0,
    };
    let mut out = wasm_encoder::Module::new();
    inject
        .parse_core_module(&mut out, wasmparser::Parser::new(0), module)
        .map_err(|e| format!("adding the adapter's allocator: {e:?}"))?;
    Ok(out.finish())
}

/// The WIT of weir:plugin@0.1.0, which modules without their own
/// component-type section (Go) are built against.
const WIT_0_1_0: &str = include_str!("../../wit/v0.1.0/weir.wit");

/// Embed the `operator-plugin` world of weir:plugin@0.1.0 into `module`.
fn embed_operator_world(module: &mut Vec<u8>) -> Result<(), String> {
    let mut resolve = wit_parser_component::Resolve::default();
    let pkg = resolve
        .push_str("weir.wit", WIT_0_1_0)
        .map_err(|e| format!("{e:#}"))?;
    let world = resolve
        .select_world(&[pkg], Some("operator-plugin"))
        .map_err(|e| format!("{e:#}"))?;
    wit_component::embed_component_metadata(
        module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .map_err(|e| format!("{e:#}"))
}

/// Build the Go operator in `workspace/plugin_dir` (a Go module using
/// `guest-sdk/go`) into `out_dir/<name>.wasm`: `go build` for wasip1 as a
/// reactor (`-buildmode=c-shared`), then [`componentize`]. Go is
/// `$WEIR_GO`, else `/usr/local/go/bin/go`, else `go` on `PATH`.
pub fn build_go_plugin(workspace: &Path, plugin_dir: &str, name: &str, out_dir: &Path) -> PathBuf {
    let go = go_command();
    let module = out_dir.join(format!("{name}.core.wasm"));
    let status = Command::new(&go)
        .current_dir(workspace.join(plugin_dir))
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .args(["build", "-buildmode=c-shared", "-trimpath", "-o"])
        .arg(&module)
        .arg(".")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run Go ({}) to build {plugin_dir}: {e}. Weir's Go operators need Go 1.24 \
                 or newer (Go 1.26 is tested): install it at /usr/local/go or put `go` on PATH, \
                 or set WEIR_GO (scripts/install-toolchains.sh checks it)",
                go.display()
            )
        });
    assert!(status.success(), "go build failed for {plugin_dir}");
    let bytes =
        std::fs::read(&module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()));
    let component =
        componentize(&bytes).unwrap_or_else(|e| panic!("making a component of {name}: {e}"));
    let out = out_dir.join(format!("{name}.wasm"));
    write_if_changed(&out, &component);
    out
}

fn go_command() -> PathBuf {
    if let Some(go) = std::env::var_os("WEIR_GO") {
        return PathBuf::from(go);
    }
    let standard = Path::new("/usr/local/go/bin/go");
    if standard.is_file() {
        return standard.to_path_buf();
    }
    PathBuf::from("go")
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
