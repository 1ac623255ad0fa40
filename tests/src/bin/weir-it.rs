//! The `weir` CLI, built inside the test crate so tests can run it as a
//! process (`CARGO_BIN_EXE_weir-it`).

fn main() {
    weir::cli::main();
}
