#!/usr/bin/env bash
# A walk through drengine with the CLI only: protect a VM in zone-a, take
# recovery points, lose zone-a, fail over to zone-b, bring zone-a back, see
# the active-VM conflict in every zone and resolve it.
#
# Three zones (zone-a <-> zone-b <-> zone-c) run as separate `drengine run`
# processes so that one can be stopped, each driving an emulated StorPool
# cluster. Keys and configs are written by `drengine devnet --data-dir`.
#
#   scripts/demo.sh            # ports 7101-7103 (API), 7201-7203, 7301-7303
#   DEMO_BASE_PORT=9101 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

base="${DEMO_BASE_PORT:-7101}"
target="$(scripts/target-dir.sh)"
cargo build --quiet --bin drengine --bin storpool-emulator
bin="$target/debug/drengine"
emu="$target/debug/storpool-emulator"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ drengine %s\n' "$*"; "$bin" "$@"; }
api() { echo "http://127.0.0.1:$((base + $1))"; }
export DRENGINE_TOKEN=devnet

# Poll a CLI condition with a deadline (no blind sleeps).
wait_for() {
    local what="$1"; shift
    for _ in $(seq 1 600); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for: $what" >&2
    exit 1
}

say "Keys and configs for three zones (drengine devnet --data-dir writes them)"
RUST_LOG=warn "$bin" devnet --data-dir "$work" --base-port "$base" --no-engine --json >"$work/devnet.json" &
devnet=$!
wait_for "devnet configs" test -s "$work/devnet.json"
kill -INT "$devnet"; wait "$devnet" || true
# The demo runs the engine against emulated clusters on base+200...
for z in a b c; do
    i=$(( $(printf '%d' "'$z") - 97 ))
    cat >>"$work/zone-$z/config.toml" <<TOML

[storpool]
host = "127.0.0.1"
port = $((base + 200 + i))
token = "devnet-storpool"
TOML
    sed -i 's/^enabled = false/enabled = true/' "$work/zone-$z/config.toml"
done

say "Emulated StorPool clusters, then one node per zone"
"$emu" --token devnet-storpool --cluster "zone-a=127.0.0.1:$((base + 200))" \
    --cluster "zone-b=127.0.0.1:$((base + 201))" --cluster "zone-c=127.0.0.1:$((base + 202))" \
    2>"$work/emulator.log" &
pids+=($!)
start_zone() {
    RUST_LOG=warn "$bin" run --config "$work/zone-$1/config.toml" 2>"$work/zone-$1.log" &
    pids+=($!)
    eval "pid_$1=$!"
}
for z in a b c; do start_zone $z; done
for i in 0 1 2; do wait_for "zone API $i" "$bin" --api "$(api $i)" status; done
run --api "$(api 1)" peers

say "Protect vm-1 in zone-a, recovering to zone-b"
svc="$("$bin" --api "$(api 0)" --json protect --vm vm-1 --disk vm-1-root --disk vm-1-data \
    --recovery-zone zone-b --interval-s 60 --metadata '<domain name="vm-1"/>' --idempotency-key demo-vm-1 \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
echo "service $svc"
run --api "$(api 0)" services
wait_for "the service in zone-c (two hops)" "$bin" --api "$(api 2)" service show "$svc"

say "Recovery points: take one now and watch it reach zone-b"
run --api "$(api 0)" rp take "$svc"
wait_for "an RP complete in zone-b" sh -c \
    "'$bin' --api '$(api 1)' --json rp list '$svc' --complete-in zone-b | grep -q '\"id\"'"
run --api "$(api 1)" rp list "$svc"

say "Zone-a goes down"
kill -INT "$pid_a"; wait "$pid_a" || true
run --api "$(api 1)" peers

say "Fail over to zone-b (zone-a unreachable)"
run --api "$(api 1)" failover "$svc"

say "Zone-a comes back: the VM is active in two zones"
start_zone a
wait_for "zone-a back" "$bin" --api "$(api 0)" status
wait_for "the conflict in zone-a" sh -c \
    "'$bin' --api '$(api 0)' --json conflicts | grep -q active_vms"
run --api "$(api 0)" conflicts
run --api "$(api 2)" conflicts

say "The operator resolves it from zone-c: zone-b's VM stays active"
run --api "$(api 2)" resolve "$svc" active_vms --keep-zone zone-b
wait_for "no conflict left in zone-a" sh -c \
    "'$bin' --api '$(api 0)' --json conflicts | grep -q '\"conflicts\": \[\]'"
run --api "$(api 0)" service show "$svc"
say "Done"
