//! The `drengine` binary: see `drengine --help`.

fn main() {
    std::process::exit(drengine::cli::main());
}
