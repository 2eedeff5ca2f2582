#!/usr/bin/env bash
# The one entry point for every benchmark: scripts/bench.sh SCENARIO [options]
# Scenarios: apply, write, propagate, heal, schedule. Built with the release
# profile; prints a table and, as its last line, one JSON object of figures.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin drengine-bench --bin storpool-emulator
target_dir="$(scripts/target-dir.sh)"
exec "$target_dir/release/drengine-bench" "$@"
