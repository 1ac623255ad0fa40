//! The `weir` binary: see [`weir::cli`].

fn main() {
    weir::cli::main();
}
