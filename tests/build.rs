//! Builds every plugin the tests and benchmarks use from source, and writes
//! `artifacts.rs` with their paths; nothing is prebuilt or committed.

use std::fmt::Write;
use std::path::PathBuf;

/// (crate, constant) for every plugin the tests use.
const PLUGINS: &[(&str, &str)] = &[
    ("state-machine", "STATE_MACHINE"),
    ("trap-plugin", "TRAP"),
    ("loop-plugin", "LOOP"),
    ("hog-plugin", "HOG"),
    ("noop-plugin", "NOOP"),
    ("session-plugin", "SESSION"),
    ("echo-plugin", "ECHO"),
    ("swap-fault-plugin", "SWAP_FAULT"),
    ("restore-trap-plugin", "RESTORE_TRAP"),
    ("reformat-plugin", "REFORMAT"),
    ("incompatible-plugin", "INCOMPATIBLE"),
    ("shape-migrate-plugin", "SHAPE_MIGRATE"),
];

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    weir_build_support::rerun_if_plugin_sources_change(
        &workspace,
        &[
            "plugins",
            "tests/plugins",
            "tests/plugins-c",
            "envelope",
            "guest-sdk/c",
            "guest-sdk/python",
            "guest-sdk/js/weir-guest.js",
            "guest-sdk/js/build.mjs",
            "guest-sdk/js/package-lock.json",
            "guest-sdk/go",
            "tests/go-plugins",
        ],
    );
    let crates: Vec<&str> = PLUGINS.iter().map(|(c, _)| *c).collect();
    let paths = weir_build_support::build_rust_plugins(&workspace, &crates, &out);
    let mut built: Vec<(String, &str, PathBuf)> = PLUGINS
        .iter()
        .zip(paths)
        .map(|((krate, konst), path)| (format!("`{krate}`"), *konst, path))
        .collect();
    built.push((
        "`state-machine-py` (Python)".into(),
        "STATE_MACHINE_PY",
        weir_build_support::build_python_plugin(
            &workspace,
            "plugins/state-machine-py",
            "state-machine-py",
            &out,
        ),
    ));
    built.push((
        "`state-machine-js` (JavaScript)".into(),
        "STATE_MACHINE_JS",
        weir_build_support::build_js_plugin(
            &workspace,
            "plugins/state-machine-js/state-machine.js",
            "state-machine-js",
            &out,
        ),
    ));
    built.push((
        "`state-machine-c` (C)".into(),
        "STATE_MACHINE_C",
        weir_build_support::build_c_plugin(
            &workspace,
            "plugins/state-machine-c/state-machine.c",
            "state-machine-c",
            &out,
        ),
    ));
    built.push((
        "`state-ops-c` (C test plugin: a record's state calls)".into(),
        "STATE_OPS_C",
        weir_build_support::build_c_plugin(
            &workspace,
            "tests/plugins-c/state-ops.c",
            "state-ops-c",
            &out,
        ),
    ));
    built.push((
        "`state-machine-go` (Go)".into(),
        "STATE_MACHINE_GO",
        weir_build_support::build_go_plugin(
            &workspace,
            "plugins/state-machine-go",
            "state-machine-go",
            &out,
        ),
    ));
    built.push((
        "`wasi-probe` (Go test plugin)".into(),
        "WASI_PROBE_GO",
        weir_build_support::build_go_plugin(
            &workspace,
            "tests/go-plugins/wasi-probe",
            "wasi-probe-go",
            &out,
        ),
    ));
    built.push((
        "`session-go` (Go test plugin: the session plugin, with timers)".into(),
        "SESSION_GO",
        weir_build_support::build_go_plugin(
            &workspace,
            "tests/go-plugins/session-go",
            "session-go",
            &out,
        ),
    ));
    let wasip2 = weir_build_support::build_rust_plugins_for(
        &workspace,
        &["wasip2-plugin", "net-plugin"],
        &out,
        "wasm32-wasip2",
    );
    built.push((
        "`wasip2-plugin` (Rust for wasm32-wasip2)".into(),
        "WASIP2",
        wasip2[0].clone(),
    ));
    built.push((
        "`net-plugin` (Rust for wasm32-wasip2, imports wasi:sockets)".into(),
        "NET",
        wasip2[1].clone(),
    ));
    let mut src = String::new();
    for (what, konst, path) in built {
        writeln!(src, "/// The {what} component, built from source.").unwrap();
        writeln!(
            src,
            "pub const {konst}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(out.join("artifacts.rs"), src).expect("writing artifacts.rs");
}
