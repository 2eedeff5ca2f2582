//! The `drengine` command line. (Being written.)

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    0
}
