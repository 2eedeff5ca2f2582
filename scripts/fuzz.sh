#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz on the nightly toolchain) for
# SECS seconds each (default 60), or only the TARGETs named:
#
#   scripts/fuzz.sh [--dev] [SECS] [TARGET...]
#
# --dev builds the targets unoptimised (cargo-fuzz's `--dev`): about 4 min
# from clean on 2 cores instead of ~14, at a tenth of the executions per
# second. CI runs `scripts/fuzz.sh --dev 10` (scripts/test.sh) as a smoke
# run; a real search uses the optimised build.
#
# Installs cargo-fuzz (and the nightly toolchain) if missing. Each target
# starts from its seed corpus, which the target writes itself from real
# encodings (fuzz/src/lib.rs), plus whatever fuzz/corpus/TARGET kept from
# earlier runs. Prints the executions per target; the last line is JSON,
# {"target": execs, ...}. Fails if any target crashed: the input is then in
# fuzz/artifacts/TARGET/ and `cargo +nightly fuzz run --sanitizer none
# --codegen-units 16 TARGET FILE` replays it (the flags below: no rebuild;
# add --dev after a --dev run).
# FUZZ_JOBS=N runs N targets at once (default 1); FUZZ_NICE=N nices them.
set -euo pipefail
cd "$(dirname "$0")/.."
# Release code with debug assertions and overflow checks (cargo-fuzz's
# default), no sanitizer: the crate is safe Rust, and the C it links is not
# instrumented either way. One build for every target.
flags=(--sanitizer none --codegen-units 16)
if [ "${1:-}" = --dev ]; then
    flags+=(--dev)
    shift
fi
secs="${1:-60}"
shift || true
case "$secs" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [--dev] [SECS] [TARGET...]" >&2; exit 2 ;; esac

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build "${flags[@]}"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
run_one() {
    local t="$1"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if nice -n "${FUZZ_NICE:-0}" cargo +nightly fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
        >"$logs/$t.log" 2>&1; then
        echo ok >"$logs/$t.status"
    else
        echo failed >"$logs/$t.status"
    fi
}

jobs_max="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
    run_one "$t" &
done
wait

failed=()
json=""
for t in "${targets[@]}"; do
    execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logs/$t.log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
    execs="${execs:-0}"
    status="$(cat "$logs/$t.status" 2>/dev/null || echo failed)"
    printf '%-12s %12s execs in %ss  %s\n' "$t" "$execs" "$secs" "$status"
    if [ "$status" != ok ]; then
        failed+=("$t")
        echo "---- $t: the end of its log" >&2
        tail -n 40 "$logs/$t.log" >&2
    fi
    json="${json:+$json, }\"$t\": $execs"
done
echo "{$json}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
