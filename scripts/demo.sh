#!/usr/bin/env bash
# A walk through drengine with the CLI: protect a VM in zone-a, take
# recovery points, lose zone-a (its node and its StorPool cluster), fail over
# to zone-b, bring zone-a back, see the active-VM conflict in every zone and
# resolve it, watch replication turn around, and fail back to zone-a with a
# planned migration.
#
# Each zone (zone-a <-> zone-b <-> zone-c) runs as its own `drengine run`
# process, so that zone-a can really go down; keys and configs come from
# `drengine devnet --configs-only`, and one `storpool-emulator` process serves
# the three zones' StorPool clusters. The only thing done without drengine is
# what the CMP does in StorPool: create the VM's disks.
#
#   scripts/demo.sh            # APIs on 7101-7103, sync 7201-7203, StorPool 7301-7303
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
    local rc=$?
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        for log in "$work"/*.log; do
            [ -e "$log" ] && { echo "--- $log"; tail -n 20 "$log"; }
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ drengine %s\n' "$*"; "$bin" "$@"; }
api() { echo "http://127.0.0.1:$((base + $1))"; }
storpool() { echo "http://127.0.0.1:$((base + 200 + $1))"; }
export DRENGINE_TOKEN=devnet
zone_b="$(api 1)"

# Poll a condition with a deadline (no blind sleeps).
wait_for() {
    local what="$1"; shift
    for _ in $(seq 1 600); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for: $what" >&2
    exit 1
}
# check API PYTHON-EXPR ARGS...: the JSON answer of `drengine ARGS`, as v,
# makes the expression true.
check() {
    local url="$1" expr="$2"; shift 2
    "$bin" --api "$url" --json "$@" |
        python3 -c "import json, sys; v = json.load(sys.stdin); sys.exit(0 if ($expr) else 1)"
}
# The emulator's fault switch (a test hook of the emulator, not StorPool's API).
emulator_faults() {
    curl -sf -XPOST "$(storpool 1)/_emulator/faults" -d "$1" >/dev/null
}

say "Keys and configs for three zones"
run devnet --data-dir "$work" --base-port "$base" --configs-only

say "The StorPool clusters (emulated), then one drengine node per zone"
"$emu" --token devnet-storpool --cluster "zone-a=127.0.0.1:$((base + 200))" \
    --cluster "zone-b=127.0.0.1:$((base + 201))" --cluster "zone-c=127.0.0.1:$((base + 202))" \
    >"$work/emulator.log" 2>&1 &
pids+=($!)
start_zone() {
    RUST_LOG=warn "$bin" run --config "$work/zone-$1/config.toml" >"$work/zone-$1.log" 2>&1 &
    pids+=($!)
    eval "pid_$1=$!"
}
for z in a b c; do start_zone $z; done
for i in 0 1 2; do wait_for "zone API $i" "$bin" --api "$(api $i)" status; done
wait_for "zone-b linked to zone-a and zone-c" check "$zone_b" \
    'len(v["peers"]) == 2 and all(p["connected"] for p in v["peers"])' peers
# A node signs writes only once a peer confirmed it holds its zone's newest event.
for i in 0 1 2; do wait_for "zone $i ready" check "$(api $i)" 'v["rebuild"]["state"] == "ready"' status; done
run --api "$zone_b" peers

say "The CMP's VM vm-1 has two disks in zone-a's StorPool cluster"
for disk in vm-1-root vm-1-data; do
    printf '$ curl -XPOST %s/ctrl/1.0/VolumeCreate -d {"name": "%s", ...}\n' "$(storpool 0)" "$disk"
    curl -sf -XPOST "$(storpool 0)/ctrl/1.0/VolumeCreate" \
        -H 'Authorization: Storpool v1:devnet-storpool' \
        -d "{\"name\": \"$disk\", \"size\": 1048576}" >/dev/null
done

say "Protect vm-1 in zone-a: an RP every 60s, replicated to zone-b"
run --api "$(api 0)" protect --id vm-1 --vm vm-1 --disk vm-1-root --disk vm-1-data \
    --recovery-zone zone-b --interval-s 60 --metadata '<domain name="vm-1"/>'
run --api "$(api 0)" services
wait_for "vm-1 in zone-c (two hops away)" "$bin" --api "$(api 2)" service show vm-1

say "Take a recovery point now and watch it reach zone-b"
run --api "$(api 0)" rp take vm-1
wait_for "an RP complete in zone-b" check "$zone_b" 'len(v["rps"]) > 0' \
    rp list vm-1 --complete-in zone-b
run --api "$zone_b" rp list vm-1

say "Zone-a goes dark: its drengine node and its StorPool cluster stop"
kill -INT "$pid_a"; wait "$pid_a" || true
emulator_faults '{"cluster": "zone-a", "down": "refuse"}'
wait_for "zone-b to see zone-a down" check "$zone_b" \
    'not any(p["connected"] for p in v["peers"] if p["zone"] == "zone-a")' peers
run --api "$zone_b" peers

say "Fail vm-1 over to zone-b, from the newest RP complete there"
run --api "$zone_b" failover vm-1 --yes
run --api "$zone_b" services

say "Zone-a comes back with vm-1 still running there: active in two zones"
emulator_faults '{"cluster": "zone-a", "down": "up"}'
start_zone a
wait_for "zone-a back and ready" check "$(api 0)" 'v["rebuild"]["state"] == "ready"' status
wait_for "the conflict in zone-a" check "$(api 0)" \
    'any(c["kind"] == "active_vms" for c in v["conflicts"])' conflicts
run --api "$(api 0)" conflicts
run --api "$(api 2)" services --in-conflict

say "The operator resolves it from zone-c: zone-b's VM stays active"
run --api "$(api 2)" resolve vm-1 active_vms --keep-zone zone-b --yes
wait_for "no conflict left in zone-a" check "$(api 0)" 'v["conflicts"] == []' conflicts

say "Replication turns around: zone-b now protects vm-1 to zone-a"
wait_for "the policy reversed" check "$zone_b" 'v["policy"]["recovery_zone"] == "zone-a"' \
    service show vm-1
run --api "$zone_b" service show vm-1
run --api "$zone_b" rp take vm-1
wait_for "a zone-b RP complete in zone-a" check "$(api 0)" \
    'any(r["origin"] == "zone-b" for r in v["rps"])' rp list vm-1 --complete-in zone-a
run --api "$(api 0)" rp list vm-1

say "Fail back to zone-a, planned: zone-b stops vm-1 and takes a final RP"
run --api "$zone_b" migrate vm-1 --target zone-a --yes
echo "(zone-a refuses --complete, exit code 4, until the final RP is complete there)"
wait_for "the migration completed in zone-a" "$bin" --api "$(api 0)" migrate vm-1 --complete --yes
run --api "$(api 0)" migrate vm-1 --complete --yes
wait_for "replication back towards zone-b" check "$(api 0)" \
    'v["policy"]["recovery_zone"] == "zone-b"' service show vm-1
run --api "$(api 0)" services
say "Done"
