#!/usr/bin/env bash
# The one test command (README.md). On a fresh machine it installs what the
# tests need, then runs:
#  - the Rust suite (unit, simulation, integration over real HTTP, libp2p on
#    loopback, redb files, the StorPool emulator), in the release profile;
#  - StorPool's own Python bindings against the emulator (conformance).
set -euo pipefail
cd "$(dirname "$0")/.."
export DRENGINE_SIM_SEEDS="${DRENGINE_SIM_SEEDS:-0..300}"
cargo build --release --bins
cargo test --release --all-targets
scripts/conformance.sh
scripts/api-schema.sh
