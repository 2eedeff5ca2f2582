#!/usr/bin/env bash
# Conformance: StorPool's own Python bindings (storpool==7.3.0) against storpool-emulator.
#
# Installs the bindings and pytest (quietly, idempotent), builds the emulator in release mode,
# starts it with two clusters on free loopback ports, runs tests/python, and stops the
# emulator whatever happens. Extra arguments go to pytest. Exits non-zero on failure.
# `--setup` only installs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
"$PYTHON" -m pip install --quiet 'storpool==7.3.0' pytest
[ "${1:-}" = --setup ] && exit 0

# scripts/test.sh sets DRENGINE_SKIP_BUILD: its `cargo test` has just built every binary.
[ -n "${DRENGINE_SKIP_BUILD:-}" ] || cargo build --release --bin storpool-emulator
BIN="$(scripts/target-dir.sh)/release/storpool-emulator"

WORK="$(mktemp -d)"
PID=""
cleanup() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

TOKEN="conformance$RANDOM"
# Port 0: the emulator picks free ports and writes them to the ready file (no race).
"$BIN" --cluster zone-a=127.0.0.1:0 --cluster zone-b=127.0.0.1:0 \
    --token "$TOKEN" --bandwidth-mbps 40 --seed 1 \
    --ready-file "$WORK/ready.json" >"$WORK/emulator.out" 2>"$WORK/emulator.log" &
PID=$!

# Wait (with a deadline) for the emulator to be listening.
for _ in $(seq 1 200); do
    [[ -s "$WORK/ready.json" ]] && break
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "storpool-emulator exited early:" >&2
        cat "$WORK/emulator.log" >&2
        exit 1
    fi
    sleep 0.05
done
[[ -s "$WORK/ready.json" ]] || { echo "storpool-emulator did not start in time" >&2; exit 1; }

export SP_EMULATOR_ADDRS="$WORK/ready.json" SP_EMULATOR_TOKEN="$TOKEN"
status=0
"$PYTHON" -m pytest -q -p no:cacheprovider tests/python "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "--- emulator log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/emulator.log" >&2
fi
exit $status
