#!/usr/bin/env bash
# The one test command (README.md): installs what the tests need, then runs
# the Rust test suite (unit, simulation, integration over real HTTP/libp2p/redb)
# and the Python conformance tests against the StorPool emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
export DRENGINE_SIM_SEEDS="${DRENGINE_SIM_SEEDS:-0..300}"
cargo build --release --bins
cargo test --release --all-targets
