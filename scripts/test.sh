#!/usr/bin/env bash
# The one test command (README.md). On a fresh machine it installs what the
# tests need, then runs:
#  - the Rust suite (unit, simulation, integration over real HTTP, libp2p on
#    loopback, redb files, the StorPool emulator), in the release profile;
#  - StorPool's own Python bindings against the emulator (conformance);
#  - schemathesis against the OpenAPI document a running devnet serves;
#  - promtool on the alerting rules (config/alerts.yaml) and their tests;
#  - the dashboard (/ui/) in headless chromium against a devnet (scripts/ui-test.sh);
#  - a 10 s smoke run of every fuzz target (scripts/fuzz.sh --dev).
# It ends with one line counting the Rust, Python and browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export DRENGINE_SIM_SEEDS="${DRENGINE_SIM_SEEDS:-0..300}"
tmp="$(mktemp -d)"
log="$tmp/cargo-test.log"
pylog="$tmp/conformance.log"
uilog="$tmp/ui-test.log"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

# The installs (pip, the schemathesis virtualenv, Debian's prometheus and
# chromium, playwright-core from npm) wait on
# the network, not the CPU: they run beside the build, and each is waited for
# (and its log shown on failure) before its check runs.
setup() {
    local name="$1"
    shift
    "$@" >"$tmp/setup-$name.log" 2>&1 &
    echo $! >"$tmp/setup-$name.pid"
}
setup_done() {
    local name="$1"
    if ! wait "$(cat "$tmp/setup-$name.pid")"; then
        cat "$tmp/setup-$name.log" >&2
        echo "setup of $name failed" >&2
        exit 1
    fi
}
setup conformance scripts/conformance.sh --setup
setup api-schema scripts/api-schema.sh --setup
setup alerts scripts/check-alerts.sh --setup
setup ui scripts/ui-test.sh --setup

# A node without the devnet feature has no path into the emulator; keep it building.
cargo check --release --no-default-features --lib --bin drengine
# A short fuzz run of every target (fuzz/, cargo-fuzz on nightly, both
# installed if missing): the unoptimised build (~4 min from clean), 10 s a
# target, two at a time. It fails on any crash; the execution counts are
# in the log.
FUZZ_JOBS=2 scripts/fuzz.sh --dev 10
# Builds the library, every binary and every test target, then runs them.
cargo test --release --all-targets 2>&1 | tee "$log"
# The scripts below use the binaries `cargo test` just built (building them
# again with the dependencies' non-test features would rebuild the library).
export DRENGINE_SKIP_BUILD=1
setup_done conformance
scripts/conformance.sh 2>&1 | tee "$pylog"
setup_done api-schema
scripts/api-schema.sh
setup_done alerts
scripts/check-alerts.sh
setup_done ui
scripts/ui-test.sh 2>&1 | tee "$uilog"

# Rust: every "test result: ok. N passed; M failed"; Python: pytest's last
# summary; the browser: "ui: N passed, M failed".
{
    grep -hoE 'test result: [a-z]+\. [0-9]+ passed; [0-9]+ failed' "$log" || true
    { grep -hoE '^[0-9]+ passed' "$pylog" || true; } | tail -n 1
    grep -hoE '^ui: [0-9]+ passed, [0-9]+ failed' "$uilog" || true
} | awk '{ for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
        END { printf "tests: %d passed, %d failed\n", p, f }'
