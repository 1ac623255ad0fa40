//! The `weir` CLI exactly as `host/src/main.rs` builds it, but inside the
//! test crate (`CARGO_BIN_EXE_weir-plain`): the `failpoints` feature is
//! compiled in here, and a test checks a binary that did not call
//! `weir::failpoint::enable` ignores `WEIR_FAILPOINT`.

fn main() {
    weir::cli::main();
}
