#!/usr/bin/env bash
# The one test command (README.md). On a fresh machine it installs what the
# tests need, then runs:
#  - the Rust suite (unit, simulation, integration over real HTTP, libp2p on
#    loopback, redb files, the StorPool emulator), in the release profile;
#  - StorPool's own Python bindings against the emulator (conformance);
#  - schemathesis against the OpenAPI document a running devnet serves.
# It ends with one line counting the Rust and Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export DRENGINE_SIM_SEEDS="${DRENGINE_SIM_SEEDS:-0..300}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

cargo build --release --bins
# A node without the devnet feature has no path into the emulator; keep it building.
cargo check --release --no-default-features --lib --bin drengine
cargo test --release --all-targets 2>&1 | tee "$log"
pylog="$(mktemp)"
scripts/conformance.sh 2>&1 | tee "$pylog"
scripts/api-schema.sh
# A short round of every fuzz target (scripts/fuzz.sh SECS for a longer one).
scripts/fuzz.sh 10

# Rust: every "test result: ok. N passed; M failed"; Python: pytest's last summary.
{
    grep -hoE 'test result: [a-z]+\. [0-9]+ passed; [0-9]+ failed' "$log" || true
    { grep -hoE '^[0-9]+ passed' "$pylog" || true; } | tail -n 1
} | awk '{ for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
        END { printf "tests: %d passed, %d failed\n", p, f }'
rm -f "$pylog"
