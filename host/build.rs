//! Builds the state-machine plugin from source and embeds it for `weir demo`.

use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    weir_build_support::rerun_if_plugin_sources_change(&workspace, &["plugins/state-machine"]);
    weir_build_support::build_rust_plugins(&workspace, &["state-machine"], &out);
}
