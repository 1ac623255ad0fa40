//! The `weir` CLI, built inside the test crate so tests can run it as a
//! process (`CARGO_BIN_EXE_weir-it`), with the test failpoints armed by
//! `WEIR_FAILPOINT` (the `failpoints` feature, [`weir::failpoint`]).

fn main() {
    weir::failpoint::enable();
    weir::cli::main();
}
